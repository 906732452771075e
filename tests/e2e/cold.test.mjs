// A cold pin, downloaded in the page: the oracle drops its copy of a pin (and the pin's blocks)
// once its replicas are all active and read back from their SPs (`estuary dev --cold-after-secs
// 0`); the page's download through the oracle's gateway is then read from the SPs, every block
// checked here, and the page says where it came from.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchBrowser, openPage, startStack, tempDir, uploadAndPinAdded } from './support.mjs';

describe('a cold pin', () => {
  let stack;
  let browser;

  before(async () => {
    stack = await startStack(['--cold-after-secs', '0']);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    stack?.kill();
  });

  test('dropped by the oracle once its replicas are read back, is downloaded in the page from the SPs, every block checked', async () => {
    const account = stack.info.accounts[5];
    const { page, errors } = await openPage(browser, stack, { account });
    // 5 MB: over half the stack's 8 MiB buckets, so the pin is its deals' own piece (an
    // aggregate's pieces keep their copy).
    const dir = tempDir('estuary-e2e-cold-');
    const bytes = randomBytes(5_000_000);
    writeFileSync(join(dir, 'cold.bin'), bytes);
    await page.getByTestId('files-input').setInputFiles(join(dir, 'cold.bin'));
    await page.locator('[data-testid="add-result"]:not([hidden])').waitFor({ timeout: 60_000 });
    const root = await page.getByTestId('add-root').textContent();
    const id = await uploadAndPinAdded(page, account).catch((e) => assert.fail(`${e.message}\n${stack.log().slice(-6000)}`));
    const request = await (await fetch(`${stack.info.oracle_url}/requests/${id}`)).json();
    const packed = join(stack.stateDir, 'oracle-data', 'packed', `${request.piece_cid}.car`);
    assert.ok(existsSync(packed), `the oracle's copy: ${packed}`);
    // Three replicas active, read back from their SPs: the copy goes.
    const started = Date.now();
    while (existsSync(packed)) {
      assert.ok(Date.now() - started < 180_000, `the copy was never dropped: ${JSON.stringify(
        (await (await fetch(`${stack.info.oracle_url}/requests/${id}`)).json()).deals)}`);
      await sleep(1000);
    }
    // Its blocks go too (a collection every 2 s takes blocks written 30 s before): the gateway
    // then says it reads the pin from the SPs.
    const gateway = `${stack.info.oracle_url}/ipfs/${root}?format=car`;
    const source = async () => (await fetch(gateway, { method: 'HEAD' })).headers.get('x-estuary-source');
    while ((await source()) !== 'providers') {
      assert.ok(Date.now() - started < 240_000, 'the pin\'s blocks were never dropped');
      await sleep(1000);
    }
    // The page downloads it through the gateway: read from the SPs, verified block by block.
    await page.getByTestId('download-cid').fill(root);
    await page.getByTestId('download-from').selectOption('gateway');
    await page.getByTestId('download-button').click();
    await page.locator('[data-testid="download-message"][data-from="providers"]').waitFor({ timeout: 60_000 });
    assert.match(
      await page.getByTestId('download-message').textContent(),
      /^Verified: 4\.8 MiB from the oracle's gateway, which read it from the storage providers holding its deals \(the oracle keeps no copy of it now\), every block checked\.$/,
    );
    const digest = await page.evaluate(async () => {
      const href = document.querySelector('[data-testid="download-link"]').href;
      const data = await (await fetch(href)).arrayBuffer();
      return Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', data)), (b) => b.toString(16).padStart(2, '0')).join('');
    });
    assert.equal(digest, createHash('sha256').update(bytes).digest('hex'), 'the same bytes');
    assert.deepEqual(errors, []);
    await page.context().close();
  });
});
