/** Messages between the page and the node's Web Worker. */
import type { CidInfo, Inclusion, PieceInfo } from '../generated/node/estuary_node.js';
import type { UploadAuth } from './auth';
import type { HttpFields } from './errors';
import type { DownloadSource, Downloaded } from './download';
import type { AddEntry, AddResult, ImportProfile } from './import';
import type { StoredCar } from './storage';
import type { MemoryUse, PieceProgress } from './piece';
import type { ServeStatus } from './serve';

export type { AddEntry, AddResult, CidInfo, Inclusion, MemoryUse, PieceInfo, PieceProgress, ServeStatus, StoredCar };

/** The worker's methods: name → [arguments, result]. */
export interface NodeMethods {
  parseCid: [[text: string], CidInfo];
  pieceOf: [[blob: Blob], PieceInfo];
  add: [[entries: AddEntry[], folder: boolean, profile: ImportProfile | undefined], AddResult];
  upload: [[car: string, oracleUrl: string, auth: UploadAuth | undefined], { root: string }];
  removeCar: [[car: string], void];
  listCars: [[], StoredCar[]];
  download: [[cid: string, gatewayUrl: string, from: DownloadSource], Downloaded];
  memory: [[], MemoryUse];
  serve: [[oracleUrl: string], ServeStatus];
  serveStatus: [[], ServeStatus | null];
  verifyInclusion: [
    [piece: string, aggregate: string, subtreeIndex: number, subtreePath: Uint8Array, indexIndex: number, indexPath: Uint8Array],
    Inclusion,
  ];
}

export type Method = keyof NodeMethods;

export interface Request<M extends Method = Method> {
  id: number;
  method: M;
  args: NodeMethods[M][0];
}

/** Asks the worker to stop request `cancel` (its caller's `AbortSignal` fired). */
export interface Cancel {
  cancel: number;
}

export type Response =
  | { id: number; progress: PieceProgress }
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: WireError };

/** Sent once by the worker: `ready`, or why it could not start. */
export type Hello = { hello: 'ready' } | { hello: 'failed'; message: string };

/** An error as it crosses the worker boundary: its class by name, its message and its HTTP fields. */
export interface WireError extends HttpFields {
  name: string;
  message: string;
}

/** The page's first message to a worker running the node's WebAssembly: the module, compiled once. */
export interface Start {
  wasm: WebAssembly.Module;
}
