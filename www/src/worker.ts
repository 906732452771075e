/// <reference lib="webworker" />
// The browser node: Estuary's Rust core compiled to WebAssembly, run off the main thread.
import init, { parseCid } from './generated/node/estuary_node.js';
import type { Hello, Method, NodeMethods, Request, Response } from './sdk/protocol';

const scope = self as unknown as DedicatedWorkerGlobalScope;

const methods: { [M in Method]: (...args: NodeMethods[M][0]) => NodeMethods[M][1] } = {
  parseCid: (text) => parseCid(text),
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
  scope.onmessage = (event: MessageEvent<Request>) => {
    const { id, method, args } = event.data;
    let response: Response;
    try {
      const fn = methods[method] as (...a: unknown[]) => unknown;
      if (typeof fn !== 'function') throw new Error(`unknown method ${String(method)}`);
      response = { id, ok: true, value: fn(...args) };
    } catch (e) {
      response = { id, ok: false, error: errorOf(e) };
    }
    scope.postMessage(response);
  };
  scope.postMessage({ hello: 'ready' } satisfies Hello);
}

void start();
