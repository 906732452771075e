// Constant memory: a 2 GiB file goes through `add` (DAG + CAR + piece CID in one pass) and the
// resumable upload with the page's total memory — the page's JS heap, and the WebAssembly
// memory and JS heap of the node's worker and of its piece workers — sampled every 250 ms and
// kept under 256 MiB.
import assert from 'node:assert/strict';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ensureOutputDir, injectWallet, launchPersistent, startStack, tempDir } from './support.mjs';

const GIB = 1 << 30;
const LIMIT = 256 * (1 << 20);
const SIZE = Number(process.env.ESTUARY_MEMORY_TEST_BYTES ?? 2 * GIB);

/** A file of `size` bytes whose 1 MiB blocks all differ, written in 64 MiB pieces. */
function bigFile(path, size) {
  const piece = Buffer.alloc(64 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < piece.length; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    piece.writeUInt32LE(x, i);
  }
  const fd = openSync(path, 'w');
  try {
    for (let written = 0, n = 0; written < size; written += piece.length, n++) {
      // Mark every 1 MiB block of this piece with the piece's number, so no block repeats.
      for (let b = 0; b < piece.length; b += 1 << 20) piece.writeUInt32LE(n, b);
      writeSync(fd, piece, 0, Math.min(piece.length, size - written));
    }
  } finally {
    closeSync(fd);
  }
}

describe('memory', () => {
  let stack;
  let context;
  let dir;

  before(async () => {
    stack = await startStack();
    dir = tempDir('estuary-e2e-memory-');
    context = await launchPersistent(join(dir, 'profile'), { viewport: { width: 900, height: 900 } });
  });

  after(async () => {
    await context?.close();
    stack?.kill();
  });

  test('a 2 GiB file is added and uploaded with the page under 256 MiB', { timeout: 1_500_000 }, async () => {
    const file = join(dir, 'two-gib.bin');
    bigFile(file, SIZE);
    await injectWallet(context, { rpcUrl: stack.info.rpc_url, account: stack.info.accounts[6] });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await page.goto(stack.info.dapp_url);
    await page.locator('[data-testid="node-status"][data-ready="true"]').waitFor({ timeout: 30_000 });
    await page.evaluate(() => {
      const peak = { total: 0, wasm: 0, js: 0, page: 0, samples: 0 };
      window.__memoryPeak = peak;
      window.__memorySampler = setInterval(async () => {
        const use = await window.estuaryNode.memory();
        const pageHeap = performance.memory?.usedJSHeapSize ?? 0;
        const total = use.wasm + use.js + pageHeap;
        peak.samples++;
        if (total > peak.total) Object.assign(peak, { total, wasm: use.wasm, js: use.js, page: pageHeap });
      }, 250);
    });

    const started = Date.now();
    console.log(`memory: ${SIZE} bytes written to ${file}`);
    await page.getByTestId('files-input').setInputFiles(file);
    console.log('memory: file handed to the page');
    const watch = setInterval(async () => {
      const text = await page.getByTestId('add-message').textContent().catch(() => '');
      console.log(`memory: page says ${JSON.stringify(text)}`);
    }, 5_000);
    try {
      await page.locator('[data-testid="add-result"]:not([hidden])').waitFor({ timeout: 1_200_000 });
    } finally {
      clearInterval(watch);
    }
    const addSeconds = (Date.now() - started) / 1000;
    const uploadStarted = Date.now();
    await page.getByTestId('upload').click();
    await page.getByTestId('add-message').filter({ hasText: 'Uploaded' }).waitFor({ timeout: 1_200_000 });
    const uploadSeconds = (Date.now() - uploadStarted) / 1000;
    const peak = await page.evaluate(() => {
      clearInterval(window.__memorySampler);
      return window.__memoryPeak;
    });
    const mib = (n) => (n / (1 << 20)).toFixed(1);
    const summary = {
      bytes: SIZE,
      add_seconds: addSeconds,
      add_mb_per_s: SIZE / 1e6 / addSeconds,
      upload_seconds: uploadSeconds,
      peak_total_mib: Number(mib(peak.total)),
      peak_wasm_mib: Number(mib(peak.wasm)),
      peak_workers_js_mib: Number(mib(peak.js)),
      peak_page_js_mib: Number(mib(peak.page)),
      samples: peak.samples,
    };
    writeFileSync(join(ensureOutputDir(), 'memory.json'), JSON.stringify(summary, null, 2));
    console.log(`memory: ${JSON.stringify(summary)}`);
    assert.ok(peak.samples > 10, `memory was sampled (${peak.samples} samples)`);
    assert.ok(peak.wasm > 0 && peak.page > 0, 'wasm memory and JS heap were both measured');
    assert.ok(
      peak.total <= LIMIT,
      `peak ${mib(peak.total)} MiB (wasm ${mib(peak.wasm)}, workers' JS ${mib(peak.js)}, page JS ${mib(peak.page)}) > 256 MiB`,
    );
    // The upload reached the oracle whole: its root is the one the page computed.
    const root = await page.getByTestId('add-root').textContent();
    const head = await fetch(`${stack.info.oracle_url}/ipfs/${root}?format=raw`, { method: 'HEAD' });
    assert.equal(head.status, 200, 'the oracle holds the root block');
    assert.deepEqual(errors, []);
  });
});
