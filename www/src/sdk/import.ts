/**
 * Import: files and folders to a UnixFS DAG and a CAR in the browser's storage, with the CAR's
 * piece commitment computed in the same pass — run inside the node's Web Worker. Files are read
 * through `Blob.stream()` and the CAR is written as it is produced, so memory stays flat
 * whatever the size.
 */
import type { CarImporter, ImportedCar } from '../generated/node/estuary_node.js';
import { EstuaryError } from './errors';
import type { ParallelPieceHasher } from './piece';
import { appender, carsDir, storageError, writeJson } from './storage';

/** One file to add, with its path inside the folder (`a/b.txt`; ignored for a single file). */
export interface AddEntry {
  path: string;
  file: Blob;
}

/** Progress of a long operation: bytes done so far and the total. */
export interface Progress {
  bytes: number;
  total: number;
}

/** Progress of `add`: file bytes read (`bytes` of `total`), and what the CAR holds so far. */
export interface AddProgress extends Progress {
  /** Blocks written to the CAR (each distinct block once). */
  blocks: number;
  /** CAR bytes stored in the browser's storage. */
  stored: number;
}

/**
 * The UnixFS import profiles: `unixfs-v1-2025` (IPIP-499: CIDv1, 1 MiB raw leaves, 1024 links;
 * the default), `kubo-cidv1` (`ipfs add --cid-version=1`) and `unixfs-v0-2015` (`ipfs add`).
 */
export type ImportProfile = 'unixfs-v1-2025' | 'kubo-cidv1' | 'unixfs-v0-2015';

/** What `add` produced: the DAG's root, the CAR's piece, and where the CAR is kept. */
export interface AddResult extends Omit<ImportedCar, 'header' | 'pieceCidV2' | 'pieceCidV1' | 'paddedSize'> {
  /** The import profile used. */
  profile: ImportProfile;
  /** Piece CID v2 of the CAR. */
  pieceCidV2: string;
  /** Piece CID v1. */
  pieceCidV1: string;
  /** Padded piece size. */
  paddedSize: number;
  /** Name of the CAR in the browser's storage, for `upload` and `remove`. */
  car: string;
}

/** The chunks of a stream, checking `signal` between them. */
export async function* streamChunks(
  stream: ReadableStream<Uint8Array<ArrayBuffer>>,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array<ArrayBuffer>> {
  const reader = stream.getReader();
  try {
    for (;;) {
      signal?.throwIfAborted();
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Feeds one file's bytes to `importer` (its file begun), writing the CAR bytes produced. When
 * the profile's leaves are raw, the bytes are gathered into whole leaves and each leaf is
 * hashed with WebCrypto — the CPU's SHA instructions, which WebAssembly does not have — and
 * only its length and digest go to the engine, which returns the CAR bytes around it;
 * otherwise the engine hashes. Same DAG and CAR either way. Whole leaves that lie inside one
 * chunk are hashed and written where they are, without a copy, so the source must not reuse a
 * chunk's memory once it has handed it over (streams and `Blob.stream()` do not).
 */
export async function importChunks(
  importer: CarImporter,
  chunks: AsyncIterable<Uint8Array<ArrayBuffer>>,
  write: (car: Uint8Array) => Promise<void> | void,
  onBytes?: (n: number) => void,
): Promise<void> {
  const leafSize = importer.leafSize();
  if (leafSize === undefined) {
    for await (const chunk of chunks) {
      await write(importer.push(chunk));
      onBytes?.(chunk.length);
    }
    return;
  }
  // Up to HASHING leaves are hashed at once (WebCrypto answers asynchronously, from another
  // thread), and handed to the importer in order.
  const hashing: { bytes: Uint8Array; digest: Promise<ArrayBuffer> }[] = [];
  const handOldest = async () => {
    const { bytes, digest } = hashing.shift()!;
    const { head, data, tail } = importer.pushLeaf(bytes.length, new Uint8Array(await digest)) as {
      head: Uint8Array;
      data: boolean;
      tail: Uint8Array;
    };
    await write(head);
    if (data) await write(bytes);
    await write(tail);
  };
  const hash = async (bytes: Uint8Array<ArrayBuffer>) => {
    hashing.push({ bytes, digest: crypto.subtle.digest('SHA-256', bytes) });
    if (hashing.length >= HASHING) await handOldest();
  };
  let leaf = new Uint8Array(leafSize);
  let fill = 0;
  for await (const chunk of chunks) {
    let at = 0;
    // Whole leaves inside the chunk are hashed where they are (chunks are not reused).
    for (; fill === 0 && chunk.length - at >= leafSize; at += leafSize) {
      await hash(chunk.subarray(at, at + leafSize));
    }
    while (at < chunk.length) {
      const take = Math.min(leafSize - fill, chunk.length - at);
      leaf.set(chunk.subarray(at, at + take), fill);
      fill += take;
      at += take;
      if (fill === leafSize) {
        await hash(leaf);
        leaf = new Uint8Array(leafSize);
        fill = 0;
      }
    }
    onBytes?.(chunk.length);
  }
  if (fill > 0) await hash(leaf.subarray(0, fill));
  while (hashing.length > 0) await handOldest();
}

/** Leaves hashed at once by `importChunks` (each one leaf of memory: 8 MiB at 1 MiB leaves). */
const HASHING = 8;

/**
 * Imports `entries` into a CAR in the browser's storage. The importer builds the DAG and the CAR;
 * the CAR's piece is computed from the same bytes by `pieces` (a worker pool), in the same pass.
 */
export async function addEntries(
  makeImporter: (paths: string[] | undefined, profile: ImportProfile) => CarImporter,
  pieces: ParallelPieceHasher,
  entries: AddEntry[],
  options: { folder: boolean; profile?: ImportProfile; onProgress?: (p: AddProgress) => void; signal?: AbortSignal },
): Promise<AddResult> {
  const { folder, onProgress, signal } = options;
  const profile = options.profile ?? 'unixfs-v1-2025';
  if (entries.length === 0) throw new EstuaryError('Nothing to add.');
  if (!folder && entries.length !== 1) throw new EstuaryError('Add one file, or a folder.');
  const total = entries.reduce((n, e) => n + e.file.size, 0);
  const name = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}.car`;
  const dir = await carsDir();
  const handle = await dir.getFileHandle(name, { create: true });
  const out = await handle.createSyncAccessHandle();
  let importer: CarImporter;
  try {
    // A folder's files are declared up front; the importer says in which order they must come
    // (Estuary's canonical CAR order, the one the oracle rebuilds from the blocks).
    importer = makeImporter(folder ? entries.map((e) => e.path) : undefined, profile);
  } catch (e) {
    out.close();
    await dir.removeEntry(name).catch(() => {});
    throw new EstuaryError(e instanceof Error ? e.message : String(e));
  }
  const file = appender(out);
  let done = 0;
  const write = async (bytes: Uint8Array) => {
    file.write(bytes);
    if (bytes.length > 0) await pieces.update(bytes);
  };
  try {
    for (let n = 0; n < entries.length; n++) {
      const entry = entries[importer.beginFile()]!;
      await importChunks(importer, streamChunks(entry.file.stream(), signal), write, (n) => {
        done += n;
        onProgress?.({ bytes: done, total, blocks: importer.blocks, stored: file.offset });
      });
      await write(importer.endFile());
    }
    const result = importer.finish();
    await write(result.tail);
    // The real header has the provisional one's length: overwrite it in place, and in the piece.
    out.write(result.header, { at: 0 });
    out.flush();
    onProgress?.({ bytes: total, total, blocks: result.blocks, stored: file.offset });
    const piece = await pieces.finish(result.header);
    const { header: _h, tail: _t, ...rest } = result;
    const added: AddResult = {
      ...rest,
      profile,
      pieceCidV2: piece.pieceCidV2,
      pieceCidV1: piece.pieceCidV1,
      paddedSize: piece.paddedSize,
      car: name,
    };
    await writeJson(dir, `${name}.json`, { ...added, addedAt: Date.now(), uploaded: false });
    return added;
  } catch (e) {
    out.close();
    await dir.removeEntry(name).catch(() => {});
    throw storageError(e);
  } finally {
    try {
      out.close();
    } catch {
      // already closed
    }
    importer.free();
  }
}
