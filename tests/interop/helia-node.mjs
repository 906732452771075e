// A Helia node for the end-to-end tests: Helia's own bitswap over libp2p on TCP, loopback only
// (noise, yamux, identify), no bootstrap, no routing, no HTTP, blocks in memory.
import { withBitswap } from '@helia/bitswap';
import { withLibp2pLight } from '@helia/libp2p';
import { identify } from '@libp2p/identify';
import { noise } from '@libp2p/noise';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { createHeliaLight } from 'helia';

export { unixfs } from '@helia/unixfs';
export { multiaddr } from '@multiformats/multiaddr';
export { CID } from 'multiformats/cid';

// Helia 7 uses Promise.withResolvers (Node 22); this machine's Node is 20.
Promise.withResolvers ??= function withResolvers() {
  let resolve;
  let reject;
  const promise = new this((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

export async function heliaNode() {
  const helia = withBitswap(
    withLibp2pLight(createHeliaLight({}), {
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
    }),
  );
  await helia.start();
  return helia;
}
