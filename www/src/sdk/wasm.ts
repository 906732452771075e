/**
 * The node's WebAssembly, fetched and compiled once per page and handed to every worker that
 * runs it (the node's worker and its piece workers), rather than each worker carrying or fetching
 * its own copy. A compiled `WebAssembly.Module` is posted to a worker, not copied as bytes.
 */
import wasmUrl from '../generated/node/estuary_node_bg.wasm?url&no-inline';
import { NodeError } from './errors';

/**
 * Where the node's WebAssembly is, by default: the `.wasm` file shipped with the SDK (in
 * `assets/`, its name hashed by content), found from the SDK's own URL.
 */
export const NODE_WASM_URL: string = new URL(wasmUrl, import.meta.url).href;

/** The node's WebAssembly: a URL to fetch it from, or a module already compiled. */
export type WasmSource = string | URL | WebAssembly.Module;

const compiled = new Map<string, Promise<WebAssembly.Module>>();

/**
 * The node's WebAssembly module, compiled (streaming, as it downloads) the first time a URL is
 * asked for and kept for the page's lifetime: starting a second node neither fetches nor
 * compiles again. A failed fetch is not kept, so a later call tries again.
 */
export async function nodeWasm(source: WasmSource = NODE_WASM_URL): Promise<WebAssembly.Module> {
  if (source instanceof WebAssembly.Module) return source;
  let url: string;
  try {
    url = new URL(source, globalThis.location?.href).href;
  } catch (e) {
    throw new NodeError(`Not a URL for the node's WebAssembly: ${String(source)}`, { cause: e });
  }
  let module = compiled.get(url);
  if (!module) {
    module = compile(url);
    compiled.set(url, module);
    module.catch(() => compiled.delete(url));
  }
  return module;
}

async function compile(url: string): Promise<WebAssembly.Module> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new NodeError(`The node's WebAssembly could not be fetched from ${url}.`, { cause: e });
  }
  if (!response.ok) throw new NodeError(`The node's WebAssembly could not be fetched from ${url}: HTTP ${response.status}.`);
  try {
    // Streaming compilation needs the server to say `application/wasm`; otherwise compile the bytes.
    if (response.headers.get('content-type')?.split(';')[0]?.trim() === 'application/wasm') {
      return await WebAssembly.compileStreaming(response);
    }
    return await WebAssembly.compile(await response.arrayBuffer());
  } catch (e) {
    throw new NodeError(`The node's WebAssembly from ${url} does not compile: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}
