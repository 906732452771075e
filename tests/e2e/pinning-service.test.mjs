// The oracle's IPFS Pinning Service API on the real stack: the npm compliance suite
// (@ipfs-shipyard/pinning-service-compliance) in full, and a pin fetched from the origin it names.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { root, startStack } from './support.mjs';

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
    const dir = mkdtempSync(join(tmpdir(), 'estuary-psa-'));
    mkdirSync(join(dir, 'site'));
    writeFileSync(join(dir, 'site/index.html'), '<h1>from the origin</h1>');
    writeFileSync(join(dir, 'site/data.bin'), Buffer.alloc(300_000, 7));
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
      const served = await fetch(`http://127.0.0.1:${gateway}/ipfs/${added.root}?format=car`);
      assert.equal(served.status, 200);
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
