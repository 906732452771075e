// The oracle's IPFS Pinning Service API on the real stack: the npm compliance suite
// (@ipfs-shipyard/pinning-service-compliance) in full, and a pin fetched from the origin it names.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CarBlockIterator } from '@ipld/car';
import * as dagPb from '@ipld/dag-pb';
import { UnixFS } from 'ipfs-unixfs';
import { CID } from 'multiformats/cid';
import { sha256 } from 'multiformats/hashes/sha2';
import { root, startStack, tempDir } from './support.mjs';

const estuaryBin = process.env.ESTUARY_BIN ?? join(root, 'target/debug/estuary');
const suiteDir = join(root, 'tests/compliance');
const suitePkg = join(suiteDir, 'node_modules/@ipfs-shipyard/pinning-service-compliance');

function run(cmd, args, options) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Reads a CAR with @ipld/car, checking every block against its CID; returns roots and blocks. */
async function verifiedCar(bytes) {
  const iterator = await CarBlockIterator.fromBytes(bytes);
  const blocks = new Map();
  const order = [];
  for await (const { cid, bytes: data } of iterator) {
    const digest = await sha256.digest(data);
    assert.deepEqual(digest.digest, cid.multihash.digest, `block ${cid} does not match its CID`);
    blocks.set(cid.toString(), data);
    order.push(cid.toString());
  }
  return { roots: (await iterator.getRoots()).map(String), blocks, order };
}

/** Follows `path` through dag-pb directories, then collects the file bytes the CAR holds, as
 * [offset, bytes] pieces (subtrees left out of the CAR are skipped by their sizes). */
function unixfsPieces(blocks, root, path) {
  let cid = CID.parse(root);
  for (const name of path.split('/').filter(Boolean)) {
    const node = dagPb.decode(blocks.get(cid.toString()));
    cid = node.Links.find((l) => l.Name === name).Hash;
  }
  const pieces = [];
  const walk = (c, offset) => {
    const data = blocks.get(c.toString());
    if (!data) return;
    if (c.code === 0x55) return void pieces.push([offset, data]);
    const node = dagPb.decode(data);
    const fs = UnixFS.unmarshal(node.Data);
    if (fs.data?.length) pieces.push([offset, fs.data]);
    let at = offset + (fs.data?.length ?? 0);
    node.Links.forEach((link, i) => {
      walk(link.Hash, at);
      at += Number(fs.blockSizes[i]);
    });
  };
  walk(cid, 0);
  return pieces;
}

describe('Pinning Service API', () => {
  let stack;
  let token;

  before(async () => {
    stack = await startStack();
    // A token made the way an operator makes one, in the oracle's own database.
    token = execFileSync(estuaryBin, ['oracle', 'token', 'add', 'compliance', '--db', join(stack.stateDir, 'oracle.sqlite')])
      .toString()
      .trim();
  });

  after(() => stack?.kill());

  test('passes the whole @ipfs-shipyard/pinning-service-compliance suite', async () => {
    assert.ok(existsSync(suitePkg), 'the suite is installed by scripts/setup --browser');
    // The suite writes its report to <package>/dist/docs/<host>.json and .md.
    const docs = join(suitePkg, 'dist/docs');
    mkdirSync(docs, { recursive: true });
    const summary = join(docs, '127.0.0.1.json');
    const report = join(docs, '127.0.0.1.md');
    rmSync(summary, { force: true });
    rmSync(report, { force: true });
    const { code, out } = await run(
      process.execPath,
      ['--import', join(suiteDir, 'offline-spec.mjs'), join(suitePkg, 'dist/src/index.js'), '-s', stack.info.oracle_url, token],
      { cwd: suiteDir },
    );
    assert.ok(existsSync(summary) && existsSync(report), `the suite wrote no report (exit ${code}):\n${out.slice(-4000)}`);
    const result = JSON.parse(readFileSync(summary, 'utf8'));
    const md = readFileSync(report, 'utf8');
    // Each check lists its expectations as "Expectations (passed/total successful)".
    let passed = 0;
    let total = 0;
    for (const [, p, t] of md.matchAll(/Expectations \((\d+)\/(\d+) successful\)/g)) {
      passed += Number(p);
      total += Number(t);
    }
    const failures = md.split('\n').filter((l) => l.includes('❌'));
    assert.equal(result.failed, 0, `${result.failed} of ${result.total} checks failed (see ${report}):\n${failures.join('\n')}`);
    assert.equal(result.total, 9, 'all nine checks of the suite ran');
    assert.equal(passed, total, `${total - passed} expectations failed (see ${report}):\n${failures.join('\n')}`);
    assert.ok(total >= 100, `only ${total} expectations ran`);
    console.log(`compliance: ${result.passed}/${result.total} checks, ${passed}/${total} expectations passed`);
  });

  test('a pin is fetched from the HTTP origin it names and reaches pinned', async () => {
    // Content only an origin of the client's has: a folder made into a CAR by `estuary add`,
    // served by a small trustless gateway on loopback.
    const dir = tempDir('estuary-psa-');
    mkdirSync(join(dir, 'site'));
    writeFileSync(join(dir, 'site/index.html'), '<h1>from the origin</h1>');
    writeFileSync(join(dir, 'site/data.bin'), Buffer.from(Array.from({ length: 3_000_000 }, (_, i) => (i * 7919) % 253)));
    const added = JSON.parse(
      execFileSync(estuaryBin, ['add', join(dir, 'site'), '--car', join(dir, 'site.car'), '--car-order', 'dfs', '--json']),
    );
    const car = readFileSync(join(dir, 'site.car'));
    const asked = [];
    const origin = createServer((req, res) => {
      asked.push(req.url);
      if (req.url.startsWith(`/ipfs/${added.root}`)) {
        res.writeHead(200, { 'content-type': 'application/vnd.ipld.car' });
        res.end(car);
      } else {
        res.writeHead(404).end();
      }
    });
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    try {
      const api = `${stack.info.oracle_url}/pins`;
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const body = {
        cid: added.root,
        name: 'site',
        origins: [`/ip4/127.0.0.1/tcp/${origin.address().port}/http`],
        meta: { app: 'e2e' },
      };
      const created = await fetch(api, { method: 'POST', headers, body: JSON.stringify(body) });
      assert.equal(created.status, 202);
      const status = await created.json();
      assert.ok(['queued', 'pinning', 'pinned'].includes(status.status));
      assert.match(status.delegates[0], /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/http$/);

      let pin;
      for (let i = 0; i < 300; i++) {
        pin = await (await fetch(`${api}/${status.requestid}`, { headers })).json();
        if (pin.status === 'pinned' || pin.status === 'failed') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(pin.status, 'pinned', JSON.stringify(pin));
      assert.ok(asked.some((u) => u.includes('format=car')), `origin was asked ${asked}`);
      // The oracle now serves it from its own gateway, the delegate it named.
      const gateway = status.delegates[0].match(/tcp\/(\d+)/)[1];
      const base = `http://127.0.0.1:${gateway}/ipfs/${added.root}`;
      const served = await fetch(`${base}?format=car`);
      assert.equal(served.status, 200);
      // Checked by an independent reader (@ipld/car, multiformats, ipfs-unixfs): the whole DAG,
      // then a path with a byte range, which must hold exactly the blocks for those bytes.
      const whole = await verifiedCar(new Uint8Array(await served.arrayBuffer()));
      assert.deepEqual(whole.roots, [added.root]);
      assert.equal(whole.order[0], added.root);
      const fileBytes = readFileSync(join(dir, 'site/data.bin'));
      const ranged = await fetch(`${base}/data.bin?format=car&dag-scope=entity&entity-bytes=1500000:1600000`);
      assert.equal(ranged.status, 200);
      const part = await verifiedCar(new Uint8Array(await ranged.arrayBuffer()));
      // The directory, the file's root and the one 1 MiB leaf that holds those bytes.
      assert.equal(part.blocks.size, 3, `${part.blocks.size} of ${whole.blocks.size} blocks`);
      const pieces = unixfsPieces(part.blocks, added.root, 'data.bin');
      const covered = Buffer.alloc(fileBytes.length);
      const have = new Uint8Array(fileBytes.length);
      for (const [offset, bytes] of pieces) {
        covered.set(bytes, offset);
        have.fill(1, offset, offset + bytes.length);
      }
      const [from, to] = [1_500_000, 1_600_001];
      assert.ok(have.subarray(from, to).every((x) => x === 1), 'the range is covered');
      assert.ok(covered.subarray(from, to).equals(fileBytes.subarray(from, to)), 'and its bytes are right');
      const html = await fetch(`${base}/index.html?format=car&dag-scope=entity`);
      const page = await verifiedCar(new Uint8Array(await html.arrayBuffer()));
      const htmlPieces = unixfsPieces(page.blocks, added.root, 'index.html');
      assert.equal(Buffer.concat(htmlPieces.map(([, b]) => b)).toString(), '<h1>from the origin</h1>');
      // Filters find it; a read of another account's pins does not.
      const list = await (await fetch(`${api}?status=pinned&meta=${encodeURIComponent('{"app":"e2e"}')}`, { headers })).json();
      assert.equal(list.count, 1);
      assert.equal(list.results[0].pin.cid, added.root);
      const other = await fetch(`${api}/${status.requestid}`, { headers: { authorization: `Bearer ${stack.info.api_token}` } });
      assert.equal(other.status, 404);
    } finally {
      origin.close();
    }
  });
});
