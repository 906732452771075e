/// <reference lib="webworker" />
// A piece-hashing helper: hashes whole runs of payload to their subtree roots for a
// ParallelPieceHasher in another thread (see sdk/piece.ts).
import init, { type InitOutput, pieceRunRoots } from './generated/node/estuary_node.js';
import type { MemoryUse, PieceJob, PieceJobResult } from './sdk/piece';
import type { Start } from './sdk/protocol';

const scope = self as unknown as DedicatedWorkerGlobalScope;

/** Bytes of JS heap in use in this thread (Chromium's `performance.memory`; 0 elsewhere). */
function jsHeapUsed(): number {
  return (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? 0;
}

// The first message is the node's WebAssembly module, compiled once by the page.
scope.onmessage = (start: MessageEvent<Start>) => {
  scope.onmessage = null;
  scope.onmessageerror = null;
  init({ module_or_path: start.data.wasm }).then(serve, (e: unknown) => scope.postMessage({ ready: false, error: String(e) }));
};

scope.onmessageerror = () => scope.postMessage({ ready: false, error: "the node's WebAssembly module could not be received" });

function serve(wasm: InitOutput): void {
  scope.onmessage = (event: MessageEvent<PieceJob | { memory: number }>) => {
    if ('memory' in event.data) {
      const use: MemoryUse = { wasm: wasm.memory.buffer.byteLength, js: jsHeapUsed() };
      scope.postMessage({ memory: event.data.memory, use });
      return;
    }
    const { id, bytes } = event.data;
    let result: PieceJobResult;
    try {
      const roots = pieceRunRoots(new Uint8Array(bytes));
      result = { id, roots };
    } catch (e) {
      result = { id, error: e instanceof Error ? e.message : String(e) };
    }
    // Hand the input buffer back for reuse, with the roots.
    const transfer: Transferable[] = [bytes];
    if ('roots' in result) transfer.push(result.roots.buffer);
    scope.postMessage({ ...result, bytes }, transfer);
  };
  scope.postMessage({ ready: true });
}
