/** Messages between the page and the node's Web Worker. */
import type { CidInfo, Inclusion, PieceInfo } from '../generated/node/estuary_node.js';
import type { UploadAuth } from './auth';
import type { AddEntry, AddResult, DownloadSource, Downloaded, ImportProfile, StoredCar } from './files';
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
  | { id: number; ok: false; error: { name: string; message: string } };

/** Sent once by the worker: `ready`, or why it could not start. */
export type Hello = { hello: 'ready' } | { hello: 'failed'; message: string };
