/**
 * Files and folders to a CAR in the Origin Private File System, and resumable uploads of it to
 * the oracle — run inside the node's Web Worker. Files are read through `Blob.stream()` and the
 * CAR is written as it is produced, so memory stays flat whatever the size.
 */
import type { CarImporter, ImportedCar, VerifiedDownload } from '../generated/node/estuary_node.js';
import { type UploadAuth, base64 } from './auth';
import { EstuaryError } from './errors';
import type { ParallelPieceHasher } from './piece';

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

/** Storage is full or unavailable. */
export class StorageError extends EstuaryError {
  override name = 'StorageError';
}

/** A download failed verification or could not be fetched. */
export class DownloadError extends EstuaryError {
  override name = 'DownloadError';
}

/** Where `download` gets blocks: the peer this node is connected to, a gateway, or either. */
export type DownloadSource = 'auto' | 'peer' | 'gateway';

/** A verified download: the file (kept in the browser's storage) and where its blocks came from. */
export interface Downloaded {
  file: File;
  from: 'peer' | 'gateway';
  /** Why the peer could not give the file, when `auto` fell back to the gateway. */
  peerError?: string;
}

/** The Rust libp2p node's download, as `downloadVerified` uses it. */
export interface PeerDownloader {
  readonly connected: boolean;
  download(root: string, onBytes: (bytes: Uint8Array) => void): Promise<number>;
}

/**
 * Downloads the file `cid` and verifies every block as it arrives (its hash, and its place in
 * the file's DAG), writing the file to the browser's storage. Blocks come from `peer` over
 * Bitswap (`from: 'peer'`), from the trustless gateway at `gatewayUrl` as a CAR
 * (`'gateway'`), or from the peer when connected and else — or when the peer fails — from the
 * gateway (`'auto'`, the default).
 */
export async function downloadVerified(
  makeDownload: (cid: string) => VerifiedDownload,
  cid: string,
  gatewayUrl: string,
  options: { from?: DownloadSource; peer?: PeerDownloader; onProgress?: (p: Progress) => void } = {},
): Promise<Downloaded> {
  const from = options.from ?? 'auto';
  // The CID is checked before anything is opened.
  try {
    makeDownload(cid).free();
  } catch (e) {
    throw new DownloadError(e instanceof Error ? e.message : String(e));
  }
  const peer = options.peer;
  if (from === 'peer' && !peer?.connected) {
    throw new DownloadError('This node is not connected to a peer to download from (start serving first).');
  }
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle('downloads', { create: true });
  const handle = await dir.getFileHandle(cid, { create: true });
  const out = await handle.createSyncAccessHandle();
  let peerError: string | undefined;
  let got: Downloaded['from'] = 'gateway';
  try {
    if (from !== 'gateway' && peer?.connected) {
      out.truncate(0);
      const file = appender(out);
      try {
        await peer.download(cid, (bytes) => {
          file.write(bytes);
          options.onProgress?.({ bytes: file.offset, total: 0 });
        });
        got = 'peer';
      } catch (e) {
        peerError = e instanceof Error ? e.message : String(e);
        if (from === 'peer') throw new DownloadError(`The peer could not give ${cid}: ${peerError}`, { cause: e });
      }
    }
    if (got === 'gateway') {
      out.truncate(0);
      await fromGateway(makeDownload(cid), cid, gatewayUrl, appender(out), options.onProgress);
    }
    out.flush();
    out.close();
  } catch (e) {
    try {
      out.close();
    } catch {
      // already closed
    }
    await dir.removeEntry(cid).catch(() => {});
    if (e instanceof EstuaryError) throw e;
    throw new DownloadError(`Verification failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const done: Downloaded = { file: await handle.getFile(), from: got };
  if (peerError !== undefined) done.peerError = peerError;
  return done;
}

/** Streams the gateway's CAR of `cid` through `download` into `file`. */
async function fromGateway(
  download: VerifiedDownload,
  cid: string,
  gatewayUrl: string,
  file: ReturnType<typeof appender>,
  onProgress?: (p: Progress) => void,
): Promise<void> {
  try {
    const response = await fetch(`${gatewayUrl}/ipfs/${cid}?format=car&dag-scope=all`, {
      headers: { accept: 'application/vnd.ipld.car' },
    }).catch((e: unknown) => {
      throw new DownloadError(`The gateway at ${gatewayUrl} cannot be reached.`, { cause: e });
    });
    if (response.status === 404) throw new DownloadError(`${cid} is not available from ${gatewayUrl}.`);
    if (!response.ok || !response.body) throw new DownloadError(`The gateway answered HTTP ${response.status}.`);
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      file.write(download.push(value));
      onProgress?.({ bytes: file.offset, total: 0 });
    }
    file.write(download.finish());
  } finally {
    download.free();
  }
}

/** The oracle refused or failed the upload. */
export class UploadError extends EstuaryError {
  override name = 'UploadError';
}

export async function carsDir(): Promise<FileSystemDirectoryHandle> {
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle('cars', { create: true });
  } catch (e) {
    throw new StorageError(`The browser's storage is not available: ${String(e)}`, { cause: e });
  }
}

/** Appends to an OPFS file through its sync access handle, keeping the offset reached. */
function appender(out: FileSystemSyncAccessHandle): { write(bytes: Uint8Array): void; readonly offset: number } {
  let offset = 0;
  return {
    write(bytes: Uint8Array) {
      if (bytes.length === 0) return;
      try {
        out.write(bytes, { at: offset });
      } catch (e) {
        throw storageError(e);
      }
      offset += bytes.length;
    },
    get offset() {
      return offset;
    },
  };
}

function storageError(e: unknown): Error {
  if (e instanceof DOMException && e.name === 'QuotaExceededError') {
    return new StorageError('The browser ran out of storage for this upload (quota exceeded). Free some space or add less.', { cause: e });
  }
  return e instanceof Error ? e : new Error(String(e));
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

/** Removes a CAR (and its upload state) from the browser's storage. */
export async function removeCar(name: string): Promise<void> {
  const dir = await carsDir();
  for (const suffix of ['', '.upload', '.json']) await dir.removeEntry(`${name}${suffix}`).catch(() => {});
}

/** A CAR kept in this browser, as `listCars` reports it. */
export interface StoredCar extends AddResult {
  addedAt: number;
  /** Whether the oracle has the whole CAR. */
  uploaded: boolean;
  /** Bytes the oracle had when last asked, for an upload under way (resume it with `upload`). */
  uploadedBytes: number | null;
}

async function writeJson(dir: FileSystemDirectoryHandle, name: string, value: unknown): Promise<void> {
  const handle = await dir.getFileHandle(name, { create: true });
  const access = await handle.createSyncAccessHandle();
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  access.truncate(0);
  access.write(bytes, { at: 0 });
  access.flush();
  access.close();
}

async function readJson<T>(dir: FileSystemDirectoryHandle, name: string): Promise<T | null> {
  try {
    return JSON.parse(await (await (await dir.getFileHandle(name)).getFile()).text()) as T;
  } catch {
    return null;
  }
}

/** The CARs kept in this browser (newest first), with their upload progress. */
export async function listCars(): Promise<StoredCar[]> {
  const dir = await carsDir();
  const out: StoredCar[] = [];
  for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
    if (!name.endsWith('.car.json')) continue;
    const meta = await readJson<Omit<StoredCar, 'uploadedBytes'>>(dir, name);
    if (!meta) continue;
    const state = await readState(dir, meta.car);
    let uploadedBytes: number | null = null;
    if (state && !meta.uploaded) {
      const head = await fetch(state.url, { method: 'HEAD', headers: tusHeaders(state.token) }).catch(() => null);
      uploadedBytes = head?.ok ? Number(head.headers.get('upload-offset') ?? 0) : 0;
    }
    // CARs added before profiles were recorded used the default one.
    out.push({ ...meta, profile: meta.profile ?? 'unixfs-v1-2025', uploadedBytes });
  }
  return out.sort((a, b) => b.addedAt - a.addedAt);
}

/** An upload under way, kept beside its CAR so a reload resumes it. */
interface UploadState {
  url: string;
  size: number;
  /** The bearer token it was made with (a session or a write token), if any. */
  token?: string;
}

async function readState(dir: FileSystemDirectoryHandle, name: string): Promise<UploadState | null> {
  try {
    const file = await (await dir.getFileHandle(`${name}.upload`)).getFile();
    return JSON.parse(await file.text()) as UploadState;
  } catch {
    return null;
  }
}

async function writeState(dir: FileSystemDirectoryHandle, name: string, state: UploadState): Promise<void> {
  await writeJson(dir, `${name}.upload`, state);
}

/** Chunk size of upload requests: at most this much is sent again after a failure. */
export const UPLOAD_CHUNK = 4 << 20;

/** The headers of every tus request, with the bearer token if there is one. */
function tusHeaders(token?: string): Record<string, string> {
  return token ? { 'tus-resumable': '1.0.0', authorization: `Bearer ${token}` } : { 'tus-resumable': '1.0.0' };
}

/** Why the oracle refused, from its JSON error body. */
async function refusal(response: Response): Promise<string> {
  const body = (await response.json().catch(() => ({}))) as { error?: string; code?: string };
  return body.error ?? `HTTP ${response.status}`;
}

/**
 * Uploads CAR `name` to the oracle at `oracleUrl` with the tus 1.0.0 protocol (resumable: the
 * upload's URL is kept with the CAR, so after a reload or a lost connection it continues from
 * what the oracle has). `auth` says who the upload is for (a session from `signIn`, a write
 * token, a pre-signed URL, or the signature of the pin request it is the content of); it is
 * needed to start an upload, not to resume one. Resolves with the CAR's root once the oracle has
 * verified every block.
 */
export async function uploadCar(
  name: string,
  oracleUrl: string,
  auth: UploadAuth | undefined,
  onProgress?: (p: Progress) => void,
  signal?: AbortSignal,
): Promise<{ root: string }> {
  const dir = await carsDir();
  let file: File;
  try {
    file = await (await dir.getFileHandle(name)).getFile();
  } catch (e) {
    throw new StorageError(`There is no CAR named ${name} in this browser.`, { cause: e });
  }
  let state = await readState(dir, name);
  let offset = 0;
  if (state) {
    const head = await fetch(state.url, { method: 'HEAD', headers: tusHeaders(state.token), signal }).catch(() => null);
    if (head?.ok) offset = Number(head.headers.get('upload-offset') ?? 0);
    else state = null;
  }
  if (!state) {
    if (!auth) throw new UploadError('The oracle takes uploads from signed-in accounts only: sign in first.');
    const token = 'token' in auth ? auth.token : undefined;
    const headers: Record<string, string> = { ...tusHeaders(token), 'upload-length': String(file.size) };
    if ('request' in auth) {
      headers['upload-metadata'] = `request ${base64(auth.request)},signature ${base64(auth.signature)}`;
    }
    const endpoint = 'presignedUrl' in auth ? new URL(auth.presignedUrl, oracleUrl).toString() : `${oracleUrl}/uploads`;
    const created = await fetch(endpoint, { method: 'POST', headers, signal }).catch((e: unknown) => {
      throw new UploadError(`The oracle at ${oracleUrl} cannot be reached.`, { cause: e });
    });
    if (created.status !== 201) throw new UploadError(`The oracle refused the upload: ${await refusal(created)}`);
    state = { url: new URL(created.headers.get('location') ?? '', oracleUrl).toString(), size: file.size, token };
    await writeState(dir, name, state);
  }
  let failures = 0;
  for (;;) {
    signal?.throwIfAborted();
    onProgress?.({ bytes: offset, total: file.size });
    const chunk = file.slice(offset, Math.min(offset + UPLOAD_CHUNK, file.size));
    let response: Response;
    try {
      response = await fetch(state.url, {
        method: 'PATCH',
        headers: { ...tusHeaders(state.token), 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
        body: chunk,
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      // Connection lost: ask what arrived and go on from there.
      if (++failures > 8) throw new UploadError('The upload keeps failing: the oracle cannot be reached.', { cause: e });
      await new Promise((r) => setTimeout(r, 250 * 2 ** failures));
      const head = await fetch(state.url, { method: 'HEAD', headers: tusHeaders(state.token) }).catch(() => null);
      if (head?.ok) offset = Number(head.headers.get('upload-offset') ?? offset);
      continue;
    }
    failures = 0;
    if (response.status === 204 || response.status === 409) {
      offset = Number(response.headers.get('upload-offset') ?? offset);
      const root = response.headers.get('upload-root');
      if (response.status === 204 && offset >= file.size && root) {
        onProgress?.({ bytes: file.size, total: file.size });
        await dir.removeEntry(`${name}.upload`).catch(() => {});
        const meta = await readJson<Record<string, unknown>>(dir, `${name}.json`);
        if (meta) await writeJson(dir, `${name}.json`, { ...meta, uploaded: true });
        return { root };
      }
      continue;
    }
    throw new UploadError(`The oracle refused the upload: ${await refusal(response)}`);
  }
}
