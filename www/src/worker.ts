/// <reference lib="webworker" />
// The browser node: Estuary's Rust core compiled to WebAssembly, run off the main thread.
import init, {
  type InitOutput,
  CarImporter,
  P2pNode,
  PieceHasher,
  carSection,
  VerifiedDownload,
  parseCid,
  pieceRunPayload,
  verifyInclusion,
} from './generated/node/estuary_node.js';
import { downloadVerified } from './sdk/download';
import { type ImportProfile, addEntries } from './sdk/import';
import { listCars, removeCar } from './sdk/storage';
import { uploadCar } from './sdk/upload';
import { ParallelPieceHasher, PieceWorkerPool, pieceOfBlob } from './sdk/piece';
import { BlockIndex, type CarSection, type ServeStatus, loadKey, oracleP2pAddress, saveKey } from './sdk/serve';
import { ServeError } from './sdk/errors';
import type { Cancel, Hello, Method, NodeMethods, PieceProgress, Request, Response, Start, WireError } from './sdk/protocol';

const scope = self as unknown as DedicatedWorkerGlobalScope;

/** The node's WebAssembly instance, once started. */
let wasm: InitOutput | undefined;

/** Helper workers for piece hashing (one per logical core), started with the node. */
let pool: PieceWorkerPool;

/** The blocks of the stored CARs, and the libp2p node serving them (after `serve`). */
const blockIndex = new BlockIndex((bytes, block) => carSection(bytes, block) as CarSection);
let p2p: Promise<P2pNode> | undefined;

async function serveStatus(): Promise<ServeStatus | null> {
  if (!p2p) return null;
  const node = await p2p;
  return { peerId: node.peerId, connected: node.connected, blocks: blockIndex.size, blocksSent: node.blocksSent };
}

async function startServing(oracleUrl: string): Promise<P2pNode> {
  const address = await oracleP2pAddress(oracleUrl);
  for (const car of await listCars()) await blockIndex.addCar(car.car);
  const key = await loadKey();
  let node: P2pNode;
  try {
    node = await P2pNode.start(address, (cid: Uint8Array) => blockIndex.get(cid), key);
  } catch (e) {
    throw new ServeError(`Could not connect to the oracle over libp2p (${address}): ${errorOf(e).message}`, { cause: e });
  }
  if (!key) await saveKey(node.key);
  return node;
}

type Handler<M extends Method> = (
  context: { progress: (p: PieceProgress) => void; signal: AbortSignal },
  ...args: NodeMethods[M][0]
) => NodeMethods[M][1] | Promise<NodeMethods[M][1]>;

/** Requests under way, to cancel. */
const running = new Map<number, AbortController>();

const methods: { [M in Method]: Handler<M> } = {
  parseCid: (_ctx, text) => parseCid(text),
  pieceOf: ({ progress }, blob) => pieceOfBlob(blob, pool, { PieceHasher, pieceRunPayload }, progress),
  add: async ({ progress, signal }, entries, folder, profile) => {
    const pieces = new ParallelPieceHasher(pool, { PieceHasher, pieceRunPayload });
    const importer = (paths: string[] | undefined, p: ImportProfile) => new CarImporter(p, paths, false);
    const added = await addEntries(importer, pieces, entries, { folder, profile, onProgress: progress, signal });
    if (p2p) await blockIndex.addCar(added.car);
    return added;
  },
  upload: ({ progress, signal }, car, oracleUrl, auth) => uploadCar(car, oracleUrl, auth, progress, signal),
  removeCar: async (_ctx, car) => {
    blockIndex.removeCar(car);
    await removeCar(car);
  },
  serve: async (_ctx, oracleUrl) => {
    p2p ??= startServing(oracleUrl).catch((e: unknown) => {
      p2p = undefined;
      throw e;
    });
    await p2p;
    return (await serveStatus())!;
  },
  serveStatus: () => serveStatus(),
  listCars: () => listCars(),
  download: async ({ progress }, cid, gatewayUrl, from) => {
    const peer = from !== 'gateway' && p2p ? await p2p.catch(() => undefined) : undefined;
    return downloadVerified((c) => new VerifiedDownload(c), cid, gatewayUrl, { from, peer, onProgress: progress });
  },
  verifyInclusion: (_ctx, piece, aggregate, subtreeIndex, subtreePath, indexIndex, indexPath) => {
    try {
      return verifyInclusion(piece, aggregate, subtreeIndex, subtreePath, indexIndex, indexPath);
    } catch (e) {
      const error = new Error(errorOf(e).message);
      error.name = 'InclusionError';
      throw error;
    }
  },
  memory: async () => {
    const js = (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? 0;
    const own = { wasm: wasm?.memory.buffer.byteLength ?? 0, js };
    const helpers = await pool.memory();
    return { wasm: own.wasm + helpers.wasm, js: own.js + helpers.js };
  },
};

/** An error as it crosses to the page: its name, message and HTTP fields, nothing else. */
function errorOf(e: unknown): WireError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const { url, status, code } = e as { url?: unknown; status?: unknown; code?: unknown };
  return {
    name: String(e.name),
    message: String(e.message),
    url: typeof url === 'string' ? url : undefined,
    status: typeof status === 'number' ? status : undefined,
    code: typeof code === 'string' ? code : undefined,
  };
}

/** Starts the node with the WebAssembly module the page compiled (`Start`, its first message). */
async function start(module: WebAssembly.Module): Promise<void> {
  try {
    wasm = await init({ module_or_path: module });
    // The piece workers start with the node, not on the first add: picking files takes the
    // person longer than starting them, and the first add then runs at full speed. They are
    // given the same module: compiled once, by the page.
    pool = await PieceWorkerPool.start(module);
  } catch (e) {
    scope.postMessage({ hello: 'failed', message: errorOf(e).message } satisfies Hello);
    return;
  }
  scope.onmessage = async (event: MessageEvent<Request | Cancel>) => {
    if ('cancel' in event.data) {
      running.get(event.data.cancel)?.abort();
      return;
    }
    const { id, method, args } = event.data;
    const progress = (p: PieceProgress) => scope.postMessage({ id, progress: p } satisfies Response);
    const controller = new AbortController();
    running.set(id, controller);
    let response: Response;
    try {
      const fn = methods[method] as (...a: unknown[]) => unknown;
      if (typeof fn !== 'function') throw new Error(`unknown method ${String(method)}`);
      response = { id, ok: true, value: await fn({ progress, signal: controller.signal }, ...args) };
    } catch (e) {
      response = { id, ok: false, error: errorOf(e) };
    } finally {
      running.delete(id);
    }
    try {
      scope.postMessage(response);
    } catch (e) {
      // A value that cannot cross to the page: the call fails rather than never settling.
      scope.postMessage({ id, ok: false, error: errorOf(e) } satisfies Response);
    }
  };
  scope.postMessage({ hello: 'ready' } satisfies Hello);
}

scope.onmessage = (event: MessageEvent<Start>) => {
  scope.onmessage = null;
  scope.onmessageerror = null;
  void start(event.data.wasm);
};
// The module could not be received (another agent cluster, say): say so rather than wait.
scope.onmessageerror = () => {
  scope.postMessage({ hello: 'failed', message: "the node's WebAssembly module could not be received" } satisfies Hello);
};
