// Worker side of serving: the blocks of the CARs kept in this browser, found by CID, answered
// over libp2p (the Rust node's Bitswap) to the oracle the node dials.
import { ServeError } from './errors';
import { carFile } from './storage';

/** What `carSection` (wasm) reads at the start of a CAR section. */
export interface CarSection {
  varint: number;
  length: number;
  cid?: Uint8Array;
  cidLength?: number;
}

/** The Rust libp2p node, as the worker uses it. */
export interface P2pNodeLike {
  readonly peerId: string;
  readonly key: Uint8Array;
  readonly connected: boolean;
  readonly blocksSent: number;
  stop(): void;
}

/** Where this browser's libp2p node stands. */
export interface ServeStatus {
  /** The node's peer id: a pin request's origin `/p2p/<peerId>` is fetched from this browser. */
  peerId: string;
  /** Whether the connection to the oracle is up (it is dialled again while down). */
  connected: boolean;
  /** Blocks indexed and served so far. */
  blocks: number;
  blocksSent: number;
}

interface Located {
  car: string;
  at: number;
  length: number;
}

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** CID → where its bytes are, over every CAR indexed. */
export class BlockIndex {
  #blocks = new Map<string, Located>();
  #files = new Map<string, Promise<File>>();
  #cars = new Set<string>();

  constructor(private readonly carSection: (bytes: Uint8Array, block: boolean) => CarSection) {}

  get size(): number {
    return this.#blocks.size;
  }

  /** Indexes one stored CAR (CARv1, as `add` writes it), reading only section headers. */
  async addCar(name: string): Promise<void> {
    if (this.#cars.has(name)) return;
    const file = await carFile(name);
    const head = async (at: number) => new Uint8Array(await file.slice(at, at + 128).arrayBuffer());
    const header = this.carSection(await head(0), false);
    let at = header.varint + header.length;
    while (at < file.size) {
      const section = this.carSection(await head(at), true);
      const cidLength = section.cidLength ?? 0;
      const start = at + section.varint + cidLength;
      if (section.cid) this.#blocks.set(hex(section.cid), { car: name, at: start, length: section.length - cidLength });
      at += section.varint + section.length;
    }
    this.#cars.add(name);
    this.#files.set(name, Promise.resolve(file));
  }

  /** Forgets a removed CAR's blocks. */
  removeCar(name: string): void {
    for (const [key, located] of this.#blocks) if (located.car === name) this.#blocks.delete(key);
    this.#cars.delete(name);
    this.#files.delete(name);
  }

  /** The block `cid` (binary), or undefined. */
  async get(cid: Uint8Array): Promise<Uint8Array | undefined> {
    const located = this.#blocks.get(hex(cid));
    if (!located) return undefined;
    const file = await this.#files.get(located.car);
    if (!file) return undefined;
    return new Uint8Array(await file.slice(located.at, located.at + located.length).arrayBuffer());
  }
}

/** The stored key of this browser's libp2p node (one peer id across reloads). */
export async function loadKey(): Promise<Uint8Array | undefined> {
  try {
    const root = await navigator.storage.getDirectory();
    const file = await (await root.getFileHandle('p2p.key')).getFile();
    return new Uint8Array(await file.arrayBuffer());
  } catch {
    return undefined;
  }
}

export async function saveKey(key: Uint8Array): Promise<void> {
  const root = await navigator.storage.getDirectory();
  const handle = await root.getFileHandle('p2p.key', { create: true });
  const access = await handle.createSyncAccessHandle();
  try {
    access.truncate(0);
    access.write(key, { at: 0 });
    access.flush();
  } finally {
    access.close();
  }
}

/** The oracle's WebSocket multiaddr, from its `/p2p` endpoint. */
export async function oracleP2pAddress(oracleUrl: string): Promise<string> {
  let info: { addrs?: string[] };
  try {
    const res = await fetch(`${oracleUrl.replace(/\/$/, '')}/p2p`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    info = await res.json();
  } catch (e) {
    throw new ServeError(`The oracle does not say how to reach it over libp2p: ${String(e)}`, { cause: e });
  }
  const ws = info.addrs?.find((a) => /\/(ws|wss|tls\/ws)\//.test(a));
  if (!ws) throw new ServeError('The oracle offers no WebSocket address a browser can dial.');
  return ws;
}
