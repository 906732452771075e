#!/usr/bin/env node
// Piece commitment in headless Chromium: serves the built dapp (www/dist, which includes
// bench.html) on loopback, opens bench.html, and prints a Markdown table of its results.
// usage: node tests/bench/piece-browser.mjs [MiB]   (default 100; run scripts/build first)
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { launchBrowser, root } from '../e2e/support.mjs';

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

const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.__bench?.done, null, { timeout: 600_000, polling: 1000 });
  const bench = await page.evaluate(() => window.__bench);
  if (bench.error) throw new Error(`${bench.error} after ${JSON.stringify(bench.results)}`);
  const version = browser.version();
  console.log(`| ${mib} MiB in Chromium ${version} | seconds | MB/s | piece |`);
  console.log('|---|---|---|---|');
  for (const r of bench.results) {
    console.log(`| ${r.name} | ${r.seconds.toFixed(2)} | ${r.mbPerS.toFixed(1)} | ${r.piece.slice(0, 24)}… |`);
  }
  const [ours, fr32, ds] = bench.results;
  console.log(`\nestuary / fr32 npm: ${(ours.mbPerS / fr32.mbPerS).toFixed(2)}×; estuary / data-segment: ${(ours.mbPerS / ds.mbPerS).toFixed(1)}×`);
} finally {
  await browser.close();
  server.close();
}
