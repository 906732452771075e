/// <reference lib="webworker" />
// The browser node: Estuary's Rust core compiled to WebAssembly, run off the main thread.
import init, {
  CarImporter,
  PieceHasher,
  VerifiedDownload,
  parseCid,
  pieceRunPayload,
} from './generated/node/estuary_node.js';
import { addEntries, downloadVerified, listCars, removeCar, uploadCar } from './sdk/files';
import { ParallelPieceHasher, PieceWorkerPool, pieceOfBlob } from './sdk/piece';
import type { Hello, Method, NodeMethods, PieceProgress, Request, Response } from './sdk/protocol';

const scope = self as unknown as DedicatedWorkerGlobalScope;

/** Helper workers for piece hashing, started on first use (one per logical core). */
let pool: Promise<PieceWorkerPool> | undefined;

type Handler<M extends Method> = (
  progress: (p: PieceProgress) => void,
  ...args: NodeMethods[M][0]
) => NodeMethods[M][1] | Promise<NodeMethods[M][1]>;

const methods: { [M in Method]: Handler<M> } = {
  parseCid: (_progress, text) => parseCid(text),
  pieceOf: async (progress, blob) => {
    pool ??= PieceWorkerPool.start();
    return pieceOfBlob(blob, await pool, { PieceHasher, pieceRunPayload }, progress);
  },
  add: async (progress, entries, folder) => {
    pool ??= PieceWorkerPool.start();
    const pieces = new ParallelPieceHasher(await pool, { PieceHasher, pieceRunPayload });
    return addEntries((f) => new CarImporter(undefined, f, false), pieces, entries, folder, progress);
  },
  upload: (progress, car, oracleUrl) => uploadCar(car, oracleUrl, progress),
  removeCar: (_progress, car) => removeCar(car),
  listCars: () => listCars(),
  download: (progress, cid, gatewayUrl) =>
    downloadVerified((c) => new VerifiedDownload(c), cid, gatewayUrl, progress),
};

function errorOf(e: unknown): { name: string; message: string } {
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}

async function start(): Promise<void> {
  try {
    await init();
  } catch (e) {
    scope.postMessage({ hello: 'failed', message: errorOf(e).message } satisfies Hello);
    return;
  }
  scope.onmessage = async (event: MessageEvent<Request>) => {
    const { id, method, args } = event.data;
    const progress = (p: PieceProgress) => scope.postMessage({ id, progress: p } satisfies Response);
    let response: Response;
    try {
      const fn = methods[method] as (...a: unknown[]) => unknown;
      if (typeof fn !== 'function') throw new Error(`unknown method ${String(method)}`);
      response = { id, ok: true, value: await fn(progress, ...args) };
    } catch (e) {
      response = { id, ok: false, error: errorOf(e) };
    }
    scope.postMessage(response);
  };
  scope.postMessage({ hello: 'ready' } satisfies Hello);
}

void start();
