/**
 * Piece commitments on every core of the browser: the payload is cut into runs (aligned
 * subtrees of 254 KiB of payload), runs are hashed to their roots in a pool of Web Workers,
 * and one streaming `PieceHasher` joins the roots in order. The result is the same as one
 * `PieceHasher` fed every byte; memory stays bounded (a few batches in flight per worker).
 */
import type { PieceHasher, PieceInfo } from '../generated/node/estuary_node.js';
import { NodeError } from './errors';
import type { Start } from './protocol';

/** A batch for a helper worker: whole runs of payload. */
export interface PieceJob {
  id: number;
  bytes: ArrayBuffer;
}

/** A helper worker's answer: the runs' roots (32 bytes each), or why it could not. */
export type PieceJobResult = { id: number; roots: Uint8Array } | { id: number; error: string };

/** Memory a thread uses: its WebAssembly memory and its JS heap (bytes; the JS heap is 0
 * where the browser does not tell). */
export interface MemoryUse {
  wasm: number;
  js: number;
}

/** The wasm exports a hasher needs in the thread that owns it. */
export interface PieceWasm {
  PieceHasher: new () => PieceHasher;
  pieceRunPayload: () => number;
}

/** Progress of a long hash: bytes hashed so far, and the total when known. */
export interface PieceProgress {
  bytes: number;
  total?: number;
}

/** Helper workers that hash runs. Start once, share between hashers, `close` when done. */
export class PieceWorkerPool {
  #workers: Worker[];
  #load: number[];
  #nextId = 1;
  #waiting = new Map<number, { resolve: (r: Uint8Array) => void; reject: (e: Error) => void }>();
  #memoryWaiting = new Map<number, (use: MemoryUse) => void>();
  /** Input buffers handed back by the workers, for reuse. */
  readonly spare: ArrayBuffer[] = [];

  private constructor(workers: Worker[]) {
    this.#workers = workers;
    this.#load = workers.map(() => 0);
    workers.forEach((worker, index) => {
      worker.onmessage = (
        event: MessageEvent<(PieceJobResult & { bytes: ArrayBuffer }) | { memory: number; use: MemoryUse }>,
      ) => {
        const msg = event.data;
        if ('memory' in msg) {
          this.#memoryWaiting.get(msg.memory)?.(msg.use);
          this.#memoryWaiting.delete(msg.memory);
          return;
        }
        this.#load[index] = (this.#load[index] ?? 1) - 1;
        if (this.spare.length < 2 * workers.length) this.spare.push(msg.bytes);
        const waiter = this.#waiting.get(msg.id);
        if (!waiter) return;
        this.#waiting.delete(msg.id);
        if ('roots' in msg) waiter.resolve(msg.roots);
        else waiter.reject(new NodeError(`piece worker: ${msg.error}`));
      };
      worker.onerror = (event) => this.#failAll(new NodeError(`a piece worker crashed: ${event.message}`));
    });
  }

  /** What the helper workers use, summed. */
  async memory(): Promise<MemoryUse> {
    const uses = await Promise.all(
      this.#workers.map(
        (worker) =>
          new Promise<MemoryUse>((resolve) => {
            const id = this.#nextId++;
            this.#memoryWaiting.set(id, resolve);
            worker.postMessage({ memory: id });
          }),
      ),
    );
    return uses.reduce((a, b) => ({ wasm: a.wasm + b.wasm, js: a.js + b.js }), { wasm: 0, js: 0 });
  }

  /**
   * Starts `size` helper workers (default: one per logical core), each running `wasm` (the
   * node's module, compiled once: `nodeWasm`), and waits until they are ready.
   */
  static async start(wasm: WebAssembly.Module, size = navigator.hardwareConcurrency || 2): Promise<PieceWorkerPool> {
    const workers = Array.from({ length: Math.max(1, size) }, () => {
      const worker = new Worker(new URL('../piece-worker.ts', import.meta.url), { type: 'module' });
      worker.postMessage({ wasm } satisfies Start);
      return worker;
    });
    try {
      await Promise.all(
        workers.map(
          (worker) =>
            new Promise<void>((resolve, reject) => {
              worker.onmessage = (event: MessageEvent<{ ready: boolean; error?: string }>) => {
                if (event.data.ready) resolve();
                else reject(new NodeError(`a piece worker failed to start: ${event.data.error}`));
              };
              worker.onerror = (event) => reject(new NodeError(`a piece worker failed to start: ${event.message}`));
            }),
        ),
      );
    } catch (e) {
      for (const worker of workers) worker.terminate();
      throw e;
    }
    return new PieceWorkerPool(workers);
  }

  /** Helper workers in the pool. */
  get size(): number {
    return this.#workers.length;
  }

  /**
   * The roots of the whole runs in `bytes` (its buffer is transferred: the caller loses it).
   * Goes to the least busy worker.
   */
  runRoots(bytes: ArrayBuffer): Promise<Uint8Array> {
    let index = 0;
    for (let i = 1; i < this.#load.length; i++) if (this.#load[i]! < this.#load[index]!) index = i;
    this.#load[index] = this.#load[index]! + 1;
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#workers[index]!.postMessage({ id, bytes } satisfies PieceJob, [bytes]);
    });
  }

  #failAll(error: Error): void {
    for (const waiter of this.#waiting.values()) waiter.reject(error);
    this.#waiting.clear();
  }

  /** Stops the workers; pending hashes fail. */
  close(): void {
    for (const worker of this.#workers) worker.terminate();
    this.#failAll(new NodeError('the piece worker pool was closed'));
  }
}

/**
 * A streaming piece hasher whose work is spread over a `PieceWorkerPool`. `update` with chunks in
 * order (await each call: it applies back-pressure), then `finish`.
 */
export class ParallelPieceHasher {
  #pool: PieceWorkerPool;
  #local: PieceHasher;
  #run: number;
  #batchBytes: number;
  #batch: Uint8Array<ArrayBuffer> | null = null;
  #batchFill = 0;
  #inFlight: Promise<Uint8Array>[] = [];
  #bytes = 0;

  /**
   * `wasm`: the node's exports in this thread (after `init()`); `batchRuns`: runs per job
   * (default 16, about 4 MiB).
   */
  constructor(pool: PieceWorkerPool, wasm: PieceWasm, batchRuns = 16) {
    this.#pool = pool;
    this.#local = new wasm.PieceHasher();
    this.#run = wasm.pieceRunPayload();
    this.#batchBytes = this.#run * Math.max(1, Math.floor(batchRuns));
  }

  /** Payload bytes added so far. */
  get payloadSize(): number {
    return this.#bytes;
  }

  /** Adds bytes. */
  async update(chunk: Uint8Array): Promise<void> {
    this.#bytes += chunk.length;
    // The first run goes through the local hasher: it holds the tree's leftmost edge.
    const firstRun = this.#run - this.#local.payloadSize;
    if (firstRun > 0 && this.#inFlight.length === 0 && this.#batchFill === 0) {
      const head = chunk.subarray(0, firstRun);
      this.#local.update(head);
      chunk = chunk.subarray(head.length);
    }
    while (chunk.length > 0) {
      if (this.#batch === null) {
        const spare = this.#pool.spare.pop();
        this.#batch = new Uint8Array(spare?.byteLength === this.#batchBytes ? spare : new ArrayBuffer(this.#batchBytes));
        this.#batchFill = 0;
      }
      const take = Math.min(chunk.length, this.#batchBytes - this.#batchFill);
      this.#batch.set(chunk.subarray(0, take), this.#batchFill);
      this.#batchFill += take;
      chunk = chunk.subarray(take);
      if (this.#batchFill === this.#batchBytes) {
        this.#dispatch(this.#batch.buffer as ArrayBuffer);
        this.#batch = null;
        this.#batchFill = 0;
        // Back-pressure: at most two jobs per worker in flight.
        while (this.#inFlight.length >= 2 * this.#pool.size) await this.#joinOldest();
      }
    }
  }

  #dispatch(buffer: ArrayBuffer): void {
    this.#inFlight.push(this.#pool.runRoots(buffer));
  }

  async #joinOldest(): Promise<void> {
    const roots = await this.#inFlight.shift()!;
    this.#local.pushRunRoots(roots);
  }

  /**
   * The piece of everything added (FRC-0069: less than 127 bytes, even none, is zero-padded),
   * with the first `prefix.length` bytes (at most 127) replaced by `prefix` when given.
   */
  async finish(prefix?: Uint8Array): Promise<PieceInfo> {
    let tail: Uint8Array = new Uint8Array(0);
    if (this.#batch !== null) {
      const filled = this.#batch.subarray(0, this.#batchFill);
      const whole = filled.length - (filled.length % this.#run);
      if (whole > 0) this.#dispatch(filled.slice(0, whole).buffer);
      tail = filled.subarray(whole);
      this.#batch = null;
    }
    while (this.#inFlight.length > 0) await this.#joinOldest();
    this.#local.update(tail);
    return prefix ? this.#local.finishWithPrefix(prefix) : this.#local.finish();
  }
}

/**
 * The piece of a `Blob` (a `File`, say), read as a stream: the reading overlaps the hashing, and
 * `onProgress` hears about every chunk.
 */
export async function pieceOfBlob(
  blob: Blob,
  pool: PieceWorkerPool,
  wasm: PieceWasm,
  onProgress?: (progress: PieceProgress) => void,
): Promise<PieceInfo> {
  const hasher = new ParallelPieceHasher(pool, wasm);
  const reader = blob.stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    await hasher.update(value);
    onProgress?.({ bytes: hasher.payloadSize, total: blob.size });
  }
  return hasher.finish();
}
