/**
 * Download: a file fetched by its CID from a peer over Bitswap or from a trustless gateway,
 * every block verified as it streams in and written to the browser's storage — run inside the
 * node's Web Worker.
 */
import type { VerifiedDownload } from '../generated/node/estuary_node.js';
import { DownloadError, EstuaryError } from './errors';
import type { Progress } from './import';
import { appender, carsDir } from './storage';

/** Where `download` gets blocks: the peer this node is connected to, a gateway, or either. */
export type DownloadSource = 'auto' | 'peer' | 'gateway';

/** A verified download: the file (kept in the browser's storage) and where its blocks came from. */
export interface Downloaded {
  file: File;
  from: 'peer' | 'gateway';
  /** Why the peer could not give the file, when `auto` fell back to the gateway. */
  peerError?: string;
  /**
   * The gateway read the blocks from the storage providers holding the pin's deals (the oracle
   * keeps no copy of it now: it is cold), as its `x-estuary-source: providers` said.
   */
  fromProviders?: boolean;
}

/** The Rust libp2p node's download, as `downloadVerified` uses it. */
export interface PeerDownloader {
  readonly connected: boolean;
  download(root: string, onBytes: (bytes: Uint8Array) => void): Promise<number>;
}

/**
 * Downloads the file `cid` and verifies every block as it arrives (its hash, and its place in
 * the file's DAG), writing the file to the browser's storage. Blocks come from `peer` over
 * Bitswap (`from: 'peer'`), from the trustless gateway at `gatewayUrl` as a CAR
 * (`'gateway'`), or from the peer when connected and else — or when the peer fails — from the
 * gateway (`'auto'`, the default).
 */
export async function downloadVerified(
  makeDownload: (cid: string) => VerifiedDownload,
  cid: string,
  gatewayUrl: string,
  options: { from?: DownloadSource; peer?: PeerDownloader; onProgress?: (p: Progress) => void } = {},
): Promise<Downloaded> {
  const from = options.from ?? 'auto';
  // The CID is checked before anything is opened.
  try {
    makeDownload(cid).free();
  } catch (e) {
    throw new DownloadError(e instanceof Error ? e.message : String(e));
  }
  const peer = options.peer;
  if (from === 'peer' && !peer?.connected) {
    throw new DownloadError('This node is not connected to a peer to download from (start serving first).');
  }
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle('downloads', { create: true });
  const handle = await dir.getFileHandle(cid, { create: true });
  const out = await handle.createSyncAccessHandle();
  let peerError: string | undefined;
  let got: Downloaded['from'] = 'gateway';
  let fromProviders = false;
  try {
    if (from !== 'gateway' && peer?.connected) {
      out.truncate(0);
      const file = appender(out);
      try {
        await peer.download(cid, (bytes) => {
          file.write(bytes);
          options.onProgress?.({ bytes: file.offset, total: 0 });
        });
        got = 'peer';
      } catch (e) {
        peerError = e instanceof Error ? e.message : String(e);
        if (from === 'peer') throw new DownloadError(`The peer could not give ${cid}: ${peerError}`, { cause: e });
      }
    }
    if (got === 'gateway') {
      out.truncate(0);
      fromProviders = await fromGateway(makeDownload(cid), cid, gatewayUrl, appender(out), options.onProgress);
    }
    out.flush();
    out.close();
  } catch (e) {
    try {
      out.close();
    } catch {
      // already closed
    }
    await dir.removeEntry(cid).catch(() => {});
    if (e instanceof EstuaryError) throw e;
    throw new DownloadError(`Verification failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const done: Downloaded = { file: await handle.getFile(), from: got };
  if (peerError !== undefined) done.peerError = peerError;
  if (fromProviders) done.fromProviders = true;
  return done;
}

/**
 * Streams the gateway's CAR of `cid` through `download` into `file`; resolves with whether the
 * gateway read it from the storage providers.
 */
async function fromGateway(
  download: VerifiedDownload,
  cid: string,
  gatewayUrl: string,
  file: ReturnType<typeof appender>,
  onProgress?: (p: Progress) => void,
): Promise<boolean> {
  try {
    const url = `${gatewayUrl}/ipfs/${cid}?format=car&dag-scope=all`;
    const response = await fetch(url, {
      headers: { accept: 'application/vnd.ipld.car' },
    }).catch((e: unknown) => {
      throw new DownloadError(`The gateway at ${gatewayUrl} cannot be reached.`, { cause: e, url });
    });
    if (response.status === 404) throw new DownloadError(`${cid} is not available from ${gatewayUrl}.`, { url, status: 404 });
    if (!response.ok || !response.body) {
      throw new DownloadError(`The gateway answered HTTP ${response.status}.`, { url, status: response.status });
    }
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      file.write(download.push(value));
      onProgress?.({ bytes: file.offset, total: 0 });
    }
    file.write(download.finish());
    return response.headers.get('x-estuary-source') === 'providers';
  } finally {
    download.free();
  }
}
