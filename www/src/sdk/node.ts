import type { UploadAuth } from './auth';
import { concat, getBytes } from 'ethers';
import type { DownloadSource, Downloaded } from './download';
import {
  CancelledError,
  DownloadError,
  EstuaryError,
  InclusionError,
  InvalidCidError,
  NodeError,
  ServeError,
  StorageError,
  UploadError,
} from './errors';
import type { AddProgress, ImportProfile } from './import';
import type { PieceInclusion, ProofData } from './inclusion';
import type { ServeStatus } from './serve';
import { type WasmSource, nodeWasm } from './wasm';

/** Rebuilds the SDK error the worker threw, by its name, with its HTTP fields. */
function errorFrom(error: WireError): Error {
  const { message, url, status, code } = error;
  if (error.name === 'StorageError') return new StorageError(message);
  if (error.name === 'UploadError') return new UploadError(message, { url, status, code });
  if (error.name === 'DownloadError') return new DownloadError(message, { url, status, code });
  if (error.name === 'ServeError') return new ServeError(message);
  if (error.name === 'InclusionError') return new InclusionError(message);
  return new NodeError(message);
}
import type {
  AddEntry,
  AddResult,
  CidInfo,
  Hello,
  Inclusion,
  MemoryUse,
  Method,
  NodeMethods,
  PieceInfo,
  PieceProgress,
  Request,
  Response,
  Start,
  StoredCar,
  WireError,
} from './protocol';

/**
 * The browser node, running in its own Web Worker. Every method returns a promise; failures are
 * `EstuaryError` subclasses.
 */
export class EstuaryNode {
  #worker: Worker;
  #nextId = 1;
  #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; progress?: (p: PieceProgress) => void }
  >();

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.onmessage = (event: MessageEvent<Response>) => {
      const msg = event.data;
      const waiter = this.#pending.get(msg.id);
      if (!waiter) return;
      if ('progress' in msg) {
        waiter.progress?.(msg.progress);
        return;
      }
      this.#pending.delete(msg.id);
      if (msg.ok) waiter.resolve(msg.value);
      else waiter.reject(errorFrom(msg.error));
    };
    worker.onerror = (event) => {
      const error = new NodeError(`the browser node crashed: ${event.message}`);
      for (const waiter of this.#pending.values()) waiter.reject(error);
      this.#pending.clear();
    };
  }

  /**
   * Starts the node's worker and waits until its WebAssembly is ready. `wasm`: where the node's
   * WebAssembly is (default: the file shipped beside the SDK, `NODE_WASM_URL`) or the module
   * itself. It is fetched and compiled once per page, in this thread, and the module is handed
   * to the node's worker and its piece workers.
   */
  static async start(options: { wasm?: WasmSource } = {}): Promise<EstuaryNode> {
    let module: WebAssembly.Module;
    try {
      module = await nodeWasm(options.wasm);
    } catch (e) {
      throw new NodeError(`the browser node failed to start: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const worker = new Worker(new URL('../worker.ts', import.meta.url), { type: 'module' });
    worker.postMessage({ wasm: module } satisfies Start);
    try {
      await new Promise<void>((resolve, reject) => {
        worker.onmessage = (event: MessageEvent<Hello>) => {
          if (event.data.hello === 'ready') resolve();
          else reject(new NodeError(`the browser node failed to start: ${event.data.message}`));
        };
        worker.onerror = (event) => reject(new NodeError(`the browser node failed to start: ${event.message}`));
      });
    } catch (e) {
      // A node that did not start keeps nothing: its worker and memory go.
      worker.terminate();
      throw e;
    }
    return new EstuaryNode(worker);
  }

  #call<M extends Method>(method: M, ...args: NodeMethods[M][0]): Promise<NodeMethods[M][1]> {
    return this.#callWithProgress(method, undefined, ...args);
  }

  #callWithProgress<M extends Method>(
    method: M,
    progress: ((p: PieceProgress) => void) | undefined,
    ...args: NodeMethods[M][0]
  ): Promise<NodeMethods[M][1]> {
    return this.#callCancellable(method, progress, undefined, ...args);
  }

  /** Sends a request; when `signal` fires, the worker is told to stop it and it rejects. */
  #callCancellable<M extends Method>(
    method: M,
    progress: ((p: PieceProgress) => void) | undefined,
    signal: AbortSignal | undefined,
    ...args: NodeMethods[M][0]
  ): Promise<NodeMethods[M][1]> {
    signal?.throwIfAborted();
    const id = this.#nextId++;
    const request: Request<M> = { id, method, args };
    return new Promise((resolve, reject) => {
      const onAbort = () => this.#worker.postMessage({ cancel: id });
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.#pending.set(id, {
        resolve: (v) => {
          done();
          (resolve as (v: unknown) => void)(v);
        },
        reject: (e) => {
          done();
          reject(signal?.aborted ? new CancelledError('Cancelled.', { cause: e }) : e);
        },
        progress,
      });
      this.#worker.postMessage(request);
    });
  }

  /** Parses a CID's text form. Throws `InvalidCidError` saying what is wrong. */
  async parseCid(text: string): Promise<CidInfo> {
    try {
      return await this.#call('parseCid', text);
    } catch (e) {
      if (e instanceof NodeError) throw new InvalidCidError(e.message, { cause: e });
      throw e;
    }
  }

  /**
   * The Filecoin piece (commP) of a file or any `Blob`: piece CID v1 and v2, padded and payload
   * sizes. The file is streamed, never held whole, and hashed on every core (simd128 WebAssembly
   * in a pool of Web Workers). `onProgress` hears the bytes hashed so far. Throws `NodeError` for a
   * file that cannot be read or one past 64 GiB padded.
   */
  pieceOf(blob: Blob, options: { onProgress?: (p: PieceProgress) => void } = {}): Promise<PieceInfo> {
    return this.#callWithProgress('pieceOf', options.onProgress, blob);
  }

  /**
   * Turns one file, or a folder's files (with their relative paths), into a UnixFS DAG and a CAR
   * kept in the browser's storage (OPFS), computing the CAR's piece CID in the same pass — the
   * same root, CAR and piece as `estuary add PATH --car F --profile P`. Files are streamed, never
   * held whole. `profile` defaults to `unixfs-v1-2025`; `onProgress` hears the file bytes read,
   * the blocks written and the CAR bytes stored; `signal` cancels (nothing is left behind).
   */
  add(
    entries: AddEntry[],
    options: {
      folder?: boolean;
      profile?: ImportProfile;
      onProgress?: (p: AddProgress) => void;
      signal?: AbortSignal;
    } = {},
  ): Promise<AddResult> {
    const folder = options.folder ?? entries.length > 1;
    const progress = options.onProgress as ((p: PieceProgress) => void) | undefined;
    return this.#callCancellable('add', progress, options.signal, entries, folder, options.profile);
  }

  /**
   * Uploads a CAR made by `add` to the oracle (tus 1.0.0), resumably: after a lost connection or
   * a reload, calling it again continues where the oracle stopped receiving. `auth` says whose
   * upload it is — a session from `Wallet.signIn`, an account's token, a pre-signed upload URL,
   * or `Wallet.signRequestUpload` for the content of the wallet's own pin request; the oracle
   * refuses anonymous uploads. It is needed to start an upload, not to resume one.
   */
  upload(
    car: string,
    oracleUrl: string,
    options: { auth?: UploadAuth; onProgress?: (p: PieceProgress) => void; signal?: AbortSignal } = {},
  ): Promise<{ root: string }> {
    return this.#callCancellable('upload', options.onProgress, options.signal, car, oracleUrl, options.auth);
  }

  /**
   * What the node uses: its worker's and its piece workers' WebAssembly memory and JS heaps
   * (bytes; JS heaps where the browser reports them, as Chromium does).
   */
  memory(): Promise<MemoryUse> {
    return this.#call('memory');
  }

  /**
   * Checks `inclusion`'s FRC-0058 proof here, in WebAssembly (`estuary-piece`, go-data-segment's
   * checks): that its piece is a data segment of its aggregate at the offset the proof names,
   * with its entry in the aggregate's index, and that the commitments and sizes it names
   * (`comm_pc`, `size_pc`, `comm_pa`, `size_pa`: what the on-chain checks use) are those of its
   * piece CIDs. Resolves with where it lies; rejects with an `InclusionError` saying which check
   * failed, or an `EstuaryError` when the deals hold the piece itself (there is no proof to
   * check: compare the deal's piece, as `checkDealsOnChain` does).
   */
  async verifyInclusion(inclusion: PieceInclusion): Promise<Inclusion> {
    const agg = inclusion.aggregate;
    if (!agg) {
      return Promise.reject(new EstuaryError(`The deals hold piece ${inclusion.piece_cid} itself: there is no proof to check.`));
    }
    const bytes = (p: ProofData) => getBytes(p.path.length === 0 ? '0x' : concat(p.path));
    const found = await this.#call(
      'verifyInclusion',
      inclusion.piece_cid,
      agg.piece_cid,
      agg.proof_subtree.index,
      bytes(agg.proof_subtree),
      agg.proof_index.index,
      bytes(agg.proof_index),
    );
    const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
    if (!same(found.pieceCommP, inclusion.comm_pc) || found.pieceSize !== inclusion.size_pc) {
      throw new InclusionError(`The commitment named for piece ${inclusion.piece_cid} is not its own.`);
    }
    if (!same(found.aggregateCommP, agg.comm_pa) || found.aggregateSize !== agg.size_pa) {
      throw new InclusionError(`The commitment named for aggregate ${agg.piece_cid} is not its own.`);
    }
    return found;
  }

  /** The CARs kept in this browser (newest first), with their upload progress. */
  listCars(): Promise<StoredCar[]> {
    return this.#call('listCars');
  }

  /**
   * Downloads file `cid`, verifying every block (its hash and its place under `cid`) as it
   * streams in; resolves with the file, kept in the browser's storage, and where it came from.
   * `from`: `'peer'` — over Bitswap from the oracle this node is connected to (`serve` first);
   * `'gateway'` — as a CAR from the trustless gateway at `gatewayUrl`; `'auto'` (default) — the
   * peer when connected, the gateway otherwise or when the peer fails (`peerError` says why).
   * Throws `DownloadError` for anything that does not verify or cannot be had.
   */
  download(
    cid: string,
    gatewayUrl: string,
    options: { from?: DownloadSource; onProgress?: (p: PieceProgress) => void } = {},
  ): Promise<Downloaded> {
    return this.#callWithProgress('download', options.onProgress, cid, gatewayUrl, options.from ?? 'auto');
  }

  /**
   * Serves the blocks of every CAR kept in this browser (and of those added later) to the oracle
   * at `oracleUrl`, over libp2p: the node dials the oracle's WebSocket address and answers its
   * Bitswap wants. A pin request whose origins include `/p2p/<peerId>` is then fetched from this
   * browser, with no upload. The peer id is kept across reloads. Throws `ServeError` when the
   * oracle cannot be reached.
   */
  serve(oracleUrl: string): Promise<ServeStatus> {
    return this.#call('serve', oracleUrl);
  }

  /** Where serving stands, or null before `serve`. */
  serveStatus(): Promise<ServeStatus | null> {
    return this.#call('serveStatus');
  }

  /** Removes a CAR made by `add` from the browser's storage. */
  removeCar(car: string): Promise<void> {
    return this.#call('removeCar', car);
  }

  /** Stops the worker; pending calls fail. */
  terminate(): void {
    this.#worker.terminate();
    const error = new NodeError('the browser node was stopped');
    for (const waiter of this.#pending.values()) waiter.reject(error);
    this.#pending.clear();
  }
}
