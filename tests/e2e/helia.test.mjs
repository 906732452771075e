// Bitswap against a real Helia node (npm `helia`, installed apart in tests/interop): the oracle
// pins a DAG whose only origin is the Helia node, and a second Helia node fetches a pinned DAG
// from the oracle. Both sides speak their own Bitswap; nothing else holds the data.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CarBlockIterator } from '@ipld/car';
import { sha256 } from 'multiformats/hashes/sha2';
import { root, startStack } from './support.mjs';

const estuaryBin = process.env.ESTUARY_BIN ?? join(root, 'target/debug/estuary');
const interop = join(root, 'tests/interop/helia-node.mjs');

/** Deterministic bytes, different per seed. */
function bytes(length, seed) {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function concat(chunks) {
  const parts = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

/** A block from a Helia blockstore (Helia 7 streams it in chunks). */
async function heliaBlock(node, cid) {
  const got = node.blockstore.get(cid);
  if (got instanceof Uint8Array) return got;
  if (typeof got?.then === 'function') return new Uint8Array(await got);
  return new Uint8Array(await concat(got));
}

describe('Helia interop over bitswap', () => {
  let stack;
  let token;
  let helia;
  const nodes = [];

  before(async () => {
    assert.ok(existsSync(join(root, 'tests/interop/node_modules/helia')), 'Helia is installed by scripts/setup --browser');
    helia = await import(interop);
    stack = await startStack();
    token = execFileSync(estuaryBin, ['oracle', 'token', 'add', 'helia', '--db', join(stack.stateDir, 'oracle.sqlite')])
      .toString()
      .trim();
  });

  after(async () => {
    for (const node of nodes) await node.stop().catch(() => {});
    stack?.kill();
  });

  async function pin(cid, origins) {
    const api = `${stack.info.oracle_url}/pins`;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const created = await fetch(api, { method: 'POST', headers, body: JSON.stringify({ cid, origins }) });
    assert.equal(created.status, 202, await created.clone().text());
    const { requestid } = await created.json();
    let status;
    for (let i = 0; i < 600; i++) {
      status = await (await fetch(`${api}/${requestid}`, { headers })).json();
      if (status.status === 'pinned' || status.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return status;
  }

  test('the oracle pins a DAG from a Helia node as its only origin', async () => {
    const node = await helia.heliaNode();
    nodes.push(node);
    const fs = helia.unixfs(node);
    // A folder with a 3 MB file (several leaves under a parent) and a small one.
    const big = bytes(3_000_000, 7);
    const small = new TextEncoder().encode('served by Helia\n');
    let dir = await fs.addDirectory();
    dir = await fs.cp(await fs.addBytes(big), dir, 'big.bin');
    dir = await fs.cp(await fs.addBytes(small), dir, 'small.txt');
    const origins = node.libp2p.getMultiaddrs().map(String);
    assert.ok(origins.length > 0 && origins[0].includes('/p2p/'), origins.join(' '));

    const status = await pin(dir.toString(), origins);
    assert.equal(status.status, 'pinned', JSON.stringify(status));

    // Every block the oracle now serves is Helia's block for that CID, and the file reads back.
    const car = await fetch(`${stack.info.oracle_url}/ipfs/${dir}?format=car`);
    assert.equal(car.status, 200);
    const iterator = await CarBlockIterator.fromBytes(new Uint8Array(await car.arrayBuffer()));
    let count = 0;
    for await (const block of iterator) {
      const digest = await sha256.digest(block.bytes);
      assert.deepEqual(digest.digest, block.cid.multihash.digest, `block ${block.cid} does not match its CID`);
      assert.deepEqual(block.bytes, await heliaBlock(node, block.cid));
      count++;
    }
    assert.ok(count >= 5, `${count} blocks`);
    console.log(`pinned ${dir} (${count} blocks) from Helia over bitswap`);
  });

  test('a Helia node fetches a DAG the oracle pinned, from the oracle over bitswap', async () => {
    const source = await helia.heliaNode();
    nodes.push(source);
    const data = bytes(1_500_000, 11);
    const cid = await helia.unixfs(source).addBytes(data);
    const status = await pin(cid.toString(), source.libp2p.getMultiaddrs().map(String));
    assert.equal(status.status, 'pinned', JSON.stringify(status));
    await source.stop();

    // A fresh Helia node that only knows the oracle.
    const reader = await helia.heliaNode();
    nodes.push(reader);
    const p2p = await (await fetch(`${stack.info.oracle_url}/p2p`)).json();
    const tcpAddr = p2p.addrs.find((a) => !a.includes('/ws'));
    assert.ok(tcpAddr, JSON.stringify(p2p));
    await reader.libp2p.dial(helia.multiaddr(tcpAddr));
    const got = await concat(helia.unixfs(reader).cat(cid, { signal: AbortSignal.timeout(30_000) }));
    assert.deepEqual(new Uint8Array(got), data);
  });

  test('a Helia node that lacks the DAG: the pin says so and is not pinned', async () => {
    const holder = await helia.heliaNode();
    const empty = await helia.heliaNode();
    nodes.push(holder, empty);
    const missing = await helia.unixfs(holder).addBytes(bytes(1000, 3));
    const api = `${stack.info.oracle_url}/pins`;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const body = { cid: missing.toString(), origins: empty.libp2p.getMultiaddrs().map(String) };
    const created = await fetch(api, { method: 'POST', headers, body: JSON.stringify(body) });
    const { requestid } = await created.json();
    let status;
    for (let i = 0; i < 300; i++) {
      status = await (await fetch(`${api}/${requestid}`, { headers })).json();
      if (status.info?.reason_code) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.notEqual(status.status, 'pinned', JSON.stringify(status));
    // The account sees a reason code and a public reason, never which peer failed how…
    assert.equal(status.info.reason_code, 'retrying', JSON.stringify(status));
    assert.doesNotMatch(status.info.status_details, /does not have|12D3Koo/, JSON.stringify(status));
    // …the operator does.
    const job = await (
      await fetch(`${stack.info.oracle_url}/jobs/api/helia/${requestid}`, {
        headers: { authorization: `Bearer ${stack.info.api_token}` },
      })
    ).json();
    assert.match(job.error, new RegExp(`peer ${empty.libp2p.peerId} does not have block ${missing}`));
  });
});
