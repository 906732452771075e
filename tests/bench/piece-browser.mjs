#!/usr/bin/env node
// Piece commitment in headless Chromium: serves the built dapp (www/dist, which includes
// bench.html) on loopback, opens bench.html, and prints a Markdown table of its results.
// usage: node tests/bench/piece-browser.mjs [MiB]   (default 100; run scripts/build first)
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { CID } from 'multiformats/cid';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { launchPersistent, root } from '../e2e/support.mjs';

const mib = Number(process.argv[2] ?? 100);
const dist = join(root, 'www/dist');
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
const server = createServer(async (req, res) => {
  const path = normalize(new URL(req.url, 'http://x').pathname).replace(/^(\.\.[/\\])+/, '');
  try {
    const body = await readFile(join(dist, path === '/' ? 'index.html' : path));
    res.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/bench.html?mib=${mib}`;

// A profile on disk, as a person's is: a fresh context keeps OPFS in memory behind IPC, which
// writes at a fraction of the speed (a 100 MiB CAR took 0.8 s to write there).
const profile = mkdtempSync(join(tmpdir(), 'estuary-bench-'));
const context = await launchPersistent(profile);
const browser = context.browser();
try {
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.__bench?.done, null, { timeout: 600_000, polling: 1000 });
  const bench = await page.evaluate(() => window.__bench);
  if (bench.error) throw new Error(`${bench.error} after ${JSON.stringify(bench.results)}`);
  const version = browser?.version() ?? (await page.evaluate(() => navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1]));
  console.log(`| ${mib} MiB in Chromium ${version} | seconds | MB/s | piece |`);
  console.log('|---|---|---|---|');
  for (const r of bench.results) {
    console.log(`| ${r.name} | ${r.seconds.toFixed(2)} | ${r.mbPerS.toFixed(1)} | ${r.piece.slice(0, 24)}… |`);
  }
  const [one, many, fr32, ds] = bench.results;
  const row = (start) => bench.results.find((r) => r.name.startsWith(start));
  const [add, dagCar, jsAdd] = [row('estuary node.add'), row('estuary CarImporter'), row('ipfs-unixfs-importer')];
  for (const ours of [add, dagCar]) {
    if (ours.piece !== jsAdd.piece) throw new Error(`the importers disagree: ${ours.piece} vs ${jsAdd.piece}`);
  }
  console.log(`\none-pass add (DAG + CAR + piece, CAR to OPFS): ${add.mbPerS.toFixed(1)} MB/s`);
  console.log(`DAG + CAR: ${dagCar.mbPerS.toFixed(1)} MB/s = ${(dagCar.mbPerS / jsAdd.mbPerS).toFixed(2)}× the JS importer + CAR writer`);
  const pieces = new Set([one.piece, many.piece, ds.piece]);
  // The fr32 package reports the FRC-0069 multihash in hex: the v2 piece CID's multihash.
  const multihash = Buffer.from(CID.parse(one.piece).multihash.bytes).toString('hex');
  if (pieces.size !== 1 || multihash !== fr32.piece) {
    throw new Error(`the hashers disagree: ${[...pieces].join(', ')}, fr32 ${fr32.piece}`);
  }
  for (const ours of [one, many]) {
    console.log(`\n${ours.name}: ${(ours.mbPerS / fr32.mbPerS).toFixed(2)}× fr32 npm, ${(ours.mbPerS / ds.mbPerS).toFixed(1)}× data-segment`);
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  server.close();
}
