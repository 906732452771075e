// Browser → contract → oracle, through the real stack that `estuary dev` starts.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Piece } from '@web3-storage/data-segment';
import { Interface, formatEther, id as id_, parseEther, toBeHex, zeroPadValue } from 'ethers';
import {
  ensureOutputDir, injectWallet, launchBrowser, openPage as openDapp, root, rpc, startStack, tempDir, uploadAndPinAdded,
} from './support.mjs';

const estuaryBin = process.env.ESTUARY_BIN ?? join(root, 'target/debug/estuary');

const CID = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy';
const require = createRequire(import.meta.url);
// requestCount() selector
const REQUEST_COUNT = '0x5badbe4c';

/** The dapp's pages: the link to each, its address, and what shows once it has loaded. */
const PAGES = [
  { nav: 'nav-files', route: '#/', ready: '[data-testid="node-status"][data-ready="true"]' },
  { nav: 'nav-perpetual', route: '#/perpetual', ready: '[data-testid="order-estimate"]' },
  { nav: 'nav-dao', route: '#/dao', ready: '[data-testid="dao-member"]' },
  { nav: 'nav-providers', route: '#/providers', ready: '[data-testid="providers-summary"]' },
  { nav: 'nav-operator', route: '#/operator', ready: '[data-testid="operator-status"]' },
];

/**
 * Clicks Verify on the page's request until its answer is: proven inside at least three active
 * deals (a replica may be between deals for a moment), with every step checked: the piece this
 * page computed when it added the content (`addedHere`), the piece recorded on chain, the proof
 * in the browser when the deals hold an aggregate (`holds` is `segment`), and each deal on chain.
 */
async function verifyInPage(page, holds, addedHere = false) {
  await page.locator('#verify-box:not([hidden])').waitFor({ timeout: 30_000 });
  const summary = page.getByTestId('verify-summary');
  let text = '';
  let steps = [];
  const started = Date.now();
  for (;;) {
    await page.getByTestId('verify').click();
    await page.locator('[data-testid="verify-summary"][data-proven]').waitFor({ timeout: 60_000 });
    text = await summary.textContent();
    steps = await page.locator('[data-testid="verify-steps"] li').allTextContents();
    if (Number(await summary.getAttribute('data-proven')) >= 3) break;
    assert.ok(Date.now() - started < 60_000, `proven inside three active deals: ${text}\n${steps.join('\n')}`);
    await sleep(1000);
  }
  const all = steps.join('\n');
  assert.match(text, /^Proven: your piece is inside \d+ active Filecoin deals/);
  assert.equal(steps.some((s) => s === '✓ This browser computed the same piece for the content it added.'), addedHere, all);
  assert.ok(steps.some((s) => /^✓ On chain, EstuaryPinning recorded piece bafkzcib\w+ \([\d.]+ \w+\) for request #\d+/.test(s)), all);
  assert.equal(steps.some((s) => /^✓ In this browser: the piece is inside aggregate bafkzcib/.test(s)), holds === 'segment', all);
  const onChain = steps.filter((s) => /^✓ On chain, the storage market says deal #\d+ at f0\d+ \(active\)/.test(s));
  assert.ok(onChain.length >= 3, all);
}

/** Waits (150 s at most) for request `id` at the oracle `oracle` to have three active deals at
 *  three SPs; returns them. */
async function activeDeals(oracle, id) {
  let deals = [];
  const started = Date.now();
  while (Date.now() - started < 150_000) {
    const r = await (await fetch(`${oracle}/requests/${id}`)).json();
    deals = (r.deals ?? []).filter((d) => d.state === 'active');
    if (new Set(deals.map((d) => d.provider)).size >= 3) return deals;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  assert.fail(`no three active deals at three SPs: ${JSON.stringify(deals)}`);
}

async function expectEventually(check, message, ms = 60_000) {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > ms) throw new Error(message);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function portOpen(url) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('dapp on the local stack', () => {
  let stack;
  let browser;
  /** Content the first test had pinned (the oracle holds its DAG): its root and CAR size. */
  let pinned;

  before(async () => {
    stack = await startStack();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    stack?.kill();
  });

  const openPage = (options) => openDapp(browser, stack, options);

  const requestCount = async () =>
    BigInt(await rpc(stack.info.rpc_url, 'eth_call', [
      { to: stack.info.contracts.EstuaryPinning, data: REQUEST_COUNT }, 'latest',
    ]));

  test('dev.json names every service', () => {
    const { info } = stack;
    assert.equal(info.chain_id, 31337);
    assert.match(info.rpc_url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(info.oracle_url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(info.dapp_url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(info.contracts.EstuaryPinning, /^0x[0-9a-fA-F]{40}$/);
    assert.match(info.api_token, /^[0-9a-f]{64}$/);
  });

  test('a CID uploaded to the oracle and pinned from the page is pinned and reported on chain', async () => {
    // The content: a file made into a CAR by `estuary add`, uploaded in two parts.
    const dir = tempDir('estuary-e2e-add-');
    const file = join(dir, 'data.bin');
    writeFileSync(file, Buffer.from(Array.from({ length: 2_500_000 }, (_, i) => (i * 7919) % 251)));
    const added = JSON.parse(execFileSync(estuaryBin, ['add', file, '--car', join(dir, 'data.car'), '--json']));
    pinned = { cid: added.root, size: readFileSync(join(dir, 'data.car')).length };
    const car = readFileSync(join(dir, 'data.car'));
    // Uploads belong to someone: here the operator's account (its token, from dev.json).
    const tus = { 'tus-resumable': '1.0.0', authorization: `Bearer ${stack.info.api_token}` };
    const anonymous = await fetch(`${stack.info.oracle_url}/uploads`, {
      method: 'POST',
      headers: { 'tus-resumable': '1.0.0', 'upload-length': String(car.length) },
    });
    assert.equal(anonymous.status, 401, 'an anonymous upload is refused');
    const created = await fetch(`${stack.info.oracle_url}/uploads`, {
      method: 'POST',
      headers: { ...tus, 'upload-length': String(car.length) },
    });
    assert.equal(created.status, 201);
    const upload = `${stack.info.oracle_url}${created.headers.get('location')}`;
    const half = Math.floor(car.length / 2);
    for (const [offset, part] of [[0, car.subarray(0, half)], [half, car.subarray(half)]]) {
      const r = await fetch(upload, {
        method: 'PATCH',
        headers: { ...tus, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
        body: part,
      });
      assert.ok(r.ok, `upload answered ${r.status}`);
    }

    // Not anvil's accounts 1-3: they control the stack's SP agents, which send their own
    // transactions (claims, publications) at any time.
    const account = stack.info.accounts[7];
    const { page, errors } = await openPage({ account });
    await page.getByTestId('cid-input').fill(added.root);
    await assert.doesNotReject(page.getByTestId('cid-info').filter({ hasText: 'CIDv1 · dag-pb' }).waitFor());
    await page.getByTestId('connect').click();
    await page.getByTestId('wallet-status').filter({ hasText: account }).waitFor();
    await page.getByTestId('pin').click();
    await page.locator('[data-testid="request-status"][data-status="reported"]').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('request-requester').textContent(), account);
    assert.equal(await page.getByTestId('request-cid').textContent(), added.root);
    await page.getByTestId('message').filter({ hasText: 'pinned and reported on chain' }).waitFor();
    // The timeline: every step from on chain to reported is done, each with the time it was seen.
    const steps = await page.locator('[data-testid="request-timeline"] li').evaluateAll((lis) =>
      lis.map((li) => [li.dataset.step, li.dataset.state, li.textContent]),
    );
    assert.deepEqual(steps.map(([step, state]) => `${step}:${state}`), [
      'queued:done', 'fetching:done', 'pinned:done', 'packed:done', 'reported:done',
    ]);
    for (const [, , text] of steps) assert.match(text, / · \d/, `a step without its time: ${text}`);
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-pinned.png'), fullPage: true });

    const id = (await page.getByTestId('request-id').textContent()).replace('#', '');
    // *Your files*: the account's pins, read from the chain's events, each with where it is.
    const listed = page.locator(`[data-testid="files"] li[data-requests~="${id}"][data-status="reported"]`);
    await listed.waitFor({ timeout: 30_000 });
    assert.match(await listed.textContent(), new RegExp(`^${added.root} · (pinned, reported on chain|in bucket #\\d+, waiting for it to fill|deals .*)piece ${added.piece_cid} · #${id}$`));
    // The list filters by any part of a row and by state.
    await page.getByTestId('files-search').fill(added.root.slice(-12));
    assert.ok(await listed.isVisible());
    await page.getByTestId('files-search').fill(`#${id}`);
    assert.ok(await listed.isVisible());
    await page.getByTestId('files-search').fill('no such cid');
    assert.ok(await listed.isHidden());
    assert.equal(await page.getByTestId('files-hint').textContent(), 'Nothing matches the search.');
    await page.getByTestId('files-search').fill('');
    await page.getByTestId('files-state').selectOption('problem');
    assert.ok(await listed.isHidden());
    // The row is shown under its own group only. Its deals come while this runs (the list is read
    // again every few seconds), so it may move from `progress` to `filecoin` between two checks:
    // a check counts when the row was in the same group before and after it.
    const inGroup = async () => {
      const group = await listed.getAttribute('data-group');
      assert.ok(['progress', 'filecoin'].includes(group), group);
      await page.getByTestId('files-state').selectOption(group);
      const shown = await listed.isVisible();
      await page.getByTestId('files-state').selectOption(group === 'progress' ? 'filecoin' : 'progress');
      const hidden = await listed.isHidden();
      return (await listed.getAttribute('data-group')) === group ? { shown, hidden } : undefined;
    };
    let filtered;
    for (let i = 0; i < 10 && !filtered; i++) filtered = await inGroup();
    assert.deepEqual(filtered, { shown: true, hidden: true }, 'the row under its group only');
    await page.getByTestId('files-state').selectOption('');
    const res = await fetch(`${stack.info.oracle_url}/requests/${id}`);
    assert.equal(res.status, 200);
    const request = await res.json();
    assert.equal(request.status, 'reported');
    assert.equal(request.requester, account);
    assert.equal(request.cid, added.root);
    assert.equal(request.piece_cid, added.piece_cid, "the oracle's piece is estuary add's");
    assert.equal(request.contract, stack.info.contracts.EstuaryPinning.toLowerCase());

    // On Filecoin: the pin's bucket's aggregate gets three active deals at three SPs, and the
    // pin's inclusion in each is proven on chain (reportDeal, checked by PoDSI: one DealProven
    // per deal, for this request).
    const deals = await activeDeals(stack.info.oracle_url, id);
    // The page shows them: "is my file on Filecoin yet?" answered where it was pinned.
    await page.locator('[data-testid="request-deals"] li[data-state="active"]').nth(2).waitFor({ timeout: 60_000 });
    assert.match(await page.getByTestId('request-deals-summary').textContent(), /^3 active replicas on Filecoin$/);
    // Each replica's term with its dates, as the chain places its epochs.
    const dated = /from \d{1,2} \w{3} \d{4}, \d{2}:\d{2} \(epoch \d+\) to \d{1,2} \w{3} \d{4}, \d{2}:\d{2} \(epoch \d+\)/;
    let lines = [];
    for (let i = 0; i < 60 && lines.filter((l) => dated.test(l)).length < 3; i++) {
      if (i) await sleep(250);
      lines = await page.locator('[data-testid="request-deals"] li[data-state="active"]').allTextContents();
    }
    assert.ok(lines.filter((l) => dated.test(l)).length >= 3, lines.join('\n'));
    // The providers' page lists the three SPs holding them, each with an active replica (read
    // when shown and when asked: refreshed until the oracle's scores have caught up).
    await page.getByTestId('nav-providers').click();
    assert.ok(await page.getByTestId('request-deals').isHidden(), 'one page at a time');
    const activeIn = async (p) =>
      Number(await page.locator(`[data-testid="providers"] tr[data-provider="${p}"] td`).nth(2).textContent({ timeout: 1000 }).catch(() => '0'));
    let shown = [];
    for (let i = 0; i < 30; i++) {
      await page.getByTestId('providers-refresh').click();
      await page.waitForFunction(() => !document.querySelector('[data-testid="providers-refresh"]').disabled);
      shown = await Promise.all(deals.map((d) => activeIn(d.provider)));
      if (shown.every((n) => n >= 1)) break;
      await sleep(500);
    }
    assert.ok(shown.every((n) => n >= 1), `each provider shows its active replica: ${shown}`);
    assert.match(
      await page.locator(`[data-testid="providers"] tr[data-provider="${deals[0].provider}"] td`).nth(6).textContent(),
      /^(none|block \d+)$/,
      'its last failure',
    );
    // Where it is read back: the URL its agent registered (the oracle reads the registry for a
    // provider once it holds an active replica, within a round).
    const readBackAt = () =>
      page.locator(`[data-testid="providers"] tr[data-provider="${deals[0].provider}"] td`).nth(8).textContent({ timeout: 1000 }).catch(() => '');
    let at = await readBackAt();
    for (let i = 0; i < 60 && !/^http:/.test(at); i++) {
      await sleep(500);
      await page.getByTestId('providers-refresh').click();
      await page.waitForFunction(() => !document.querySelector('[data-testid="providers-refresh"]').disabled);
      at = await readBackAt();
    }
    assert.match(at, /^http:\/\/127\.0\.0\.1:\d+$/, 'where it is read back: the URL its agent registered');
    await page.getByTestId('nav-files').click();
    await page.getByTestId('request-deals').waitFor();
    for (const d of deals) {
      assert.equal(d.piece_cid, added.piece_cid);
      assert.match(d.aggregate_piece_cid ?? '', /^bafkzcib/, "inside its bucket's aggregate");
    }
    const topic = id_('DealProven(uint256,uint64,uint64,uint64)');
    const requestTopic = zeroPadValue(toBeHex(BigInt(id)), 32);
    let proven = [];
    const started = Date.now();
    while (Date.now() - started < 120_000) {
      proven = await rpc(stack.info.rpc_url, 'eth_getLogs', [
        { address: stack.info.contracts.EstuaryPinning, topics: [topic, requestTopic], fromBlock: '0x0' },
      ]);
      if (proven.length >= 3) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    assert.equal(proven.length, 3, 'the pin proven inside each of its three deals');
    // Verify, as the person who pinned it: the proof checked in the page's WebAssembly and each
    // deal on chain through DealStateView (the market's piece, PoDSI).
    await verifyInPage(page, 'segment');
    // The pin has its own address: reloaded there, the page shows it again, reported, with its
    // three active replicas, and Verify proves it again.
    assert.equal(
      await page.locator(`[data-testid="files"] li[data-requests~="${id}"] a[href="#/pin/${id}"]`).textContent(),
      `#${id}`,
    );
    await page.goto(`${stack.info.dapp_url}/#/pin/${id}`);
    await page.reload();
    await page.locator('[data-testid="request-status"][data-status="reported"]').waitFor({ timeout: 30_000 });
    assert.equal(await page.getByTestId('request-id').textContent(), `#${id}`);
    assert.equal(await page.getByTestId('request-cid').textContent(), added.root);
    await page.locator('[data-testid="request-deals"] li[data-state="active"]').nth(2).waitFor({ timeout: 30_000 });
    await verifyInPage(page, 'segment');
    assert.deepEqual(errors, []);
  });

  test('a folder added in the page matches estuary add, uploads, and is pinned from the upload', async () => {
    const dir = tempDir('estuary-e2e-folder-');
    const folder = join(dir, 'album');
    mkdirSync(join(folder, 'sub', 'deeper'), { recursive: true });
    const noise = (n, seed) => {
      const out = Buffer.alloc(n);
      let x = seed >>> 0 || 1;
      for (let i = 0; i < n; i++) {
        x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
        out[i] = x & 0xff;
      }
      return out;
    };
    writeFileSync(join(folder, 'a.txt'), 'hello from the browser\n');
    writeFileSync(join(folder, 'Z.bin'), noise(3_000_000, 7));
    writeFileSync(join(folder, 'sub', 'b.bin'), noise(1_500_000, 9));
    writeFileSync(join(folder, 'sub', 'deeper', 'c.txt'), 'deep\n');
    const native = JSON.parse(execFileSync(estuaryBin, ['add', folder, '--car', join(dir, 'n.car'), '--json']));

    const account = stack.info.accounts[5];
    const { page, errors } = await openPage({ account });
    await page.getByTestId('folder-input').setInputFiles(folder);
    await page.locator('[data-testid="add-result"]:not([hidden])').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('add-root').textContent(), native.root, 'root CID as estuary add');
    assert.equal(await page.getByTestId('add-piece').textContent(), native.piece_cid, 'piece CID as estuary add');
    assert.match(await page.getByTestId('add-stats').textContent(), /Read 4\.\d MiB of 4\.\d MiB · \d+ blocks · 4\.\d MiB stored/);

    // The other profiles give what `estuary add --profile` gives.
    for (const profile of ['unixfs-v0-2015', 'kubo-cidv1']) {
      const other = JSON.parse(
        execFileSync(estuaryBin, ['add', folder, '--profile', profile, '--car', join(dir, `${profile}.car`), '--json']),
      );
      await page.getByTestId('add-profile').selectOption(profile);
      await page.getByTestId('folder-input').setInputFiles(folder);
      await page.getByTestId('add-root').filter({ hasText: other.root }).waitFor({ timeout: 60_000 });
      assert.equal(await page.getByTestId('add-piece').textContent(), other.piece_cid, `piece CID as estuary add --profile ${profile}`);
    }
    await page.getByTestId('add-profile').selectOption('unixfs-v1-2025');
    await page.getByTestId('folder-input').setInputFiles(folder);
    await page.getByTestId('add-root').filter({ hasText: native.root }).waitFor({ timeout: 60_000 });

    const id = await uploadAndPinAdded(page, account);
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-added.png'), fullPage: true });
    const request = await (await fetch(`${stack.info.oracle_url}/requests/${id}`)).json();
    assert.equal(request.cid, native.root);
    // One canonical block order: the piece the page computed (estuary add's) is the one reported.
    assert.equal(request.piece_cid, native.piece_cid, "the oracle's piece is the page's");

    // On Filecoin: three active deals at three SPs (the stack's SP agents take the order's slots,
    // fetch, seal and prove). Larger than half a bucket, the pin is its deals' own piece.
    const deals = await activeDeals(stack.info.oracle_url, id);
    for (const d of deals) {
      assert.equal(d.piece_cid, native.piece_cid, 'the pin is the piece the page computed');
      assert.equal(d.deal_piece_cid, d.aggregate_piece_cid ?? native.piece_cid);
    }
    // *Your files*: the folder's row (added here, uploaded, pinned) reaches 3 of 3 active.
    const row = page.locator(`[data-testid="files"] li[data-root="${native.root}"]`);
    await row.filter({ hasText: 'deals active 3 of 3' }).waitFor({ timeout: 30_000 });
    assert.ok(['active', 'expiring'].includes(await row.getAttribute('data-state')));
    assert.match(await row.textContent(), new RegExp(`kept in this browser · piece ${native.piece_cid} · #${id}`));
    await page.getByTestId('files-state').selectOption('filecoin');
    assert.ok(await row.isVisible());
    await page.getByTestId('files-state').selectOption('');
    await verifyInPage(page, deals[0].aggregate_piece_cid ? 'segment' : 'piece', true);
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-verified.png'), fullPage: true });

    // Perpetual storage of the folder, from the page: the order's form is filled from the add,
    // says what it costs before the wallet opens, and the order is created, claimed and made
    // active by the stack's SPs (downloading the CAR from the oracle), charted, funded,
    // changed, suspended, cancelled, and its refund withdrawn.
    await page.getByTestId('nav-perpetual').click();
    // The page loads when first shown, then fills the form from the add.
    await page.waitForFunction(() => document.querySelector('[data-testid="order-piece"]').value !== '');
    assert.match(await page.getByTestId('order-piece').inputValue(), /^baga6ea4sea/);
    assert.equal(await page.getByTestId('order-payload').inputValue(), native.root);
    assert.equal(await page.getByTestId('order-origins').inputValue(), `${stack.info.oracle_url}/piece/${native.piece_cid}`);
    await page.getByTestId('order-replicas').fill('2');
    await page.getByTestId('order-bounty').fill('0.001');
    await page.getByTestId('order-estimate').filter({ hasText: /^2 replicas × 0\.001 tFIL = 0\.002 tFIL a term of \d+ epochs/ }).waitFor();
    assert.equal(await page.getByTestId('order-funding').inputValue(), '0.004', 'twice a term: the bounty may rise');
    await page.getByTestId('order-create').click();
    const ptx = page.locator('[data-testid="perpetual-tx"][data-state="mined"]');
    await ptx.waitFor({ timeout: 30_000 });
    assert.match(
      await ptx.textContent(),
      /^Create an order for 2 replicas of baga\w+, each paid 0\.001 tFIL a term of \d+ epochs: sends 0\.004 tFIL and at most \d+ gas to PerpetualStorage 0x[0-9a-fA-F]{40}, [\d.]+ tFIL in all at most\. Sent 0x[0-9a-f]{64}; mined in block \d+\.$/,
    );
    const order = page.locator('[data-testid="orders"] li').first();
    await order.waitFor({ timeout: 30_000 });
    const orderId = await order.getAttribute('data-order');
    await page.locator(`[data-testid="orders"] li[data-order="${orderId}"][data-active="2"]`).waitFor({ timeout: 120_000 });
    assert.match(await order.textContent(), /2 of 2 replicas active \(2 claimed\)/);
    await page.locator(`[data-testid="order-chart"][data-order="${orderId}"][data-active="2"]`).waitFor({ timeout: 30_000 });
    assert.ok(Number(await page.getByTestId('order-chart').getAttribute('data-points')) >= 2, 'claims, then activations');
    assert.equal(await page.getByTestId('order-chart').locator('canvas').count(), 1);
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-perpetual.png'), fullPage: true });
    // A transaction from the page, until it is mined (its own: the line changes).
    const mined = async (action) => {
      const earlier = await page.getByTestId('perpetual-tx').textContent();
      await action();
      await page.waitForFunction(
        (earlier) => {
          const tx = document.querySelector('[data-testid="perpetual-tx"]');
          return tx.dataset.state === 'mined' && tx.textContent !== earlier;
        },
        earlier,
        { timeout: 30_000 },
      );
    };
    const balance = async () => parseEther((await order.textContent()).match(/balance ([\d.]+) tFIL/)[1]);
    const before = await balance();
    assert.ok(before < parseEther('0.002'), 'each claim locked its bounty, risen a little');
    await mined(() => order.getByTestId('order-fund').click());
    let after = before;
    for (let i = 0; i < 60 && after === before; i++) {
      await sleep(250);
      after = await balance();
    }
    assert.equal(after, before + parseEther('0.002'), 'funded by a term');
    await order.getByTestId('order-set-bounty').fill('0.002');
    await mined(() => order.getByTestId('order-bounty-set').click());
    await page.locator(`[data-testid="orders"] li[data-order="${orderId}"]`).filter({ hasText: 'bounty 0.002 tFIL a term' }).waitFor({ timeout: 15_000 });
    // Four replicas wanted: the stack's third SP claims one, and the fourth slot stays open (three
    // SPs), as the providers page shows from the chain.
    await order.getByTestId('order-set-replicas').fill('4');
    await mined(() => order.getByTestId('order-replicas-set').click());
    await page.getByTestId('nav-providers').click();
    const slot = page.locator(`[data-testid="slots"] tr[data-order="${orderId}"]`);
    await page.getByTestId('slots-summary').filter({ hasNotText: 'What a storage provider can claim now' }).waitFor({ timeout: 15_000 });
    assert.equal(await slot.count(), 1, await page.getByTestId('slots-summary').textContent());
    const open = Number(await slot.locator('td').nth(3).textContent());
    assert.ok(open >= 1 && open <= 2, `open slots: ${open}`);
    assert.match(await slot.locator('td').nth(1).textContent(), /^baga6ea4sea/);
    assert.match(await page.getByTestId('slots-summary').textContent(), /open slots? in \d+ orders?/);
    await page.getByTestId('nav-perpetual').click();
    await order.waitFor();
    // Fewer replicas than the slots in use: no slot is taken from its SP, and none opens until
    // enough are vacated (how the oracle ends a renewal's overlap).
    await order.getByTestId('order-set-replicas').fill('1');
    await mined(() => order.getByTestId('order-replicas-set').click());
    await page.locator(`[data-testid="orders"] li[data-order="${orderId}"]`).filter({ hasText: /of 1 replicas active \([23] claimed\) · [12] in use above the target/ }).waitFor({ timeout: 15_000 });
    await mined(() => order.getByTestId('order-suspend').click());
    await page.locator(`[data-testid="orders"] li[data-order="${orderId}"][data-state="suspended"]`).waitFor({ timeout: 15_000 });
    // Suspended: no claim takes from the balance any more; what is left is the refund.
    const left = await balance();
    await mined(() => page.locator(`[data-testid="orders"] li[data-order="${orderId}"]`).getByTestId('order-cancel').click());
    await page.locator(`[data-testid="orders"] li[data-order="${orderId}"][data-state="cancelled"]`).waitFor({ timeout: 15_000 });
    const refund = formatEther(left).replace('.', '\.');
    await page.getByTestId('withdraw').filter({ hasText: new RegExp(`^Withdraw ${refund} tFIL of refunds$`) }).waitFor({ timeout: 15_000 });
    await mined(() => page.getByTestId('withdraw').click());
    await page.locator('[data-testid="withdraw"][hidden]').waitFor({ state: 'attached', timeout: 15_000 });
    assert.deepEqual(errors, []);
  });

  test('a folder added in the page is fetched by the oracle from the browser over libp2p, with no upload', async () => {
    const dir = tempDir('estuary-e2e-p2p-');
    const folder = join(dir, 'served');
    mkdirSync(join(folder, 'sub'), { recursive: true });
    writeFileSync(join(folder, 'note.txt'), 'only this browser has me\n');
    writeFileSync(join(folder, 'sub', 'data.bin'), Buffer.from(Array.from({ length: 2_500_000 }, (_, i) => (i * 131 + 17) % 251)));
    const native = JSON.parse(execFileSync(estuaryBin, ['add', folder, '--car', join(dir, 'n.car'), '--json']));

    const account = stack.info.accounts[6];
    const { page, errors } = await openPage({ account });
    // The node dials the oracle's WebSocket address as the page starts.
    await page.locator('[data-testid="serve-status"][data-peer]').waitFor({ timeout: 30_000 });
    const peer = await page.getByTestId('serve-status').getAttribute('data-peer');
    await page.getByTestId('folder-input').setInputFiles(folder);
    await page.locator('[data-testid="add-result"]:not([hidden])').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('add-root').textContent(), native.root);
    const pagePiece = await page.getByTestId('add-piece').textContent();
    assert.equal(pagePiece, native.piece_cid, 'the page computes estuary add\'s piece');
    await page.getByTestId('connect').click();
    await page.getByTestId('wallet-status').filter({ hasText: account }).waitFor();
    // Pinnable at once: the oracle can fetch it from here.
    await page.getByTestId('pin-added').click();
    await page.locator('[data-testid="request-status"][data-status="reported"]').waitFor({ timeout: 90_000 });
    const id = (await page.getByTestId('request-id').textContent()).replace('#', '');
    const request = await (await fetch(`${stack.info.oracle_url}/requests/${id}`)).json();
    assert.equal(request.cid, native.root);
    // Fetched block by block over Bitswap, packed in the canonical order: the page's piece.
    assert.equal(request.piece_cid, pagePiece, "the oracle's piece is the page's");
    const status = await page.evaluate(() => window.estuaryNode.serveStatus());
    assert.equal(status.peerId, peer);
    assert.ok(status.blocksSent >= native.blocks, `the browser sent ${status.blocksSent} of ${native.blocks} blocks`);
    // The oracle now holds it: its gateway serves the root.
    const served = await fetch(`${stack.info.oracle_url}/ipfs/${native.root}?format=raw`);
    assert.equal(served.status, 200);
    assert.deepEqual(errors, []);
  });

  test('an upload interrupted by a reload resumes where the oracle stopped', async () => {
    const dir = tempDir('estuary-e2e-resume-');
    const file = join(dir, 'big.bin');
    const big = Buffer.alloc(24_000_000);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(file, big);
    const native = JSON.parse(execFileSync(estuaryBin, ['add', file, '--car', join(dir, 'b.car'), '--json']));

    const context = await browser.newContext({ viewport: { width: 400, height: 900 } });
    await injectWallet(context, { rpcUrl: stack.info.rpc_url, account: stack.info.accounts[7] });
    // Cut the upload after two chunks, as a tab closed mid-upload would.
    let patches = 0;
    let sent = 0;
    let cut = false;
    await context.route('**/uploads/**', async (route) => {
      const request = route.request();
      if (request.method() === 'PATCH') {
        patches += 1;
        if (patches === 3 && !cut) {
          cut = true;
          await route.abort('connectionreset');
          return;
        }
        sent += request.postDataBuffer()?.length ?? 0;
      }
      await route.continue();
    });
    const page = await context.newPage();
    await page.goto(stack.info.dapp_url);
    await page.locator('[data-testid="node-status"][data-ready="true"]').waitFor({ timeout: 30_000 });
    await page.getByTestId('files-input').setInputFiles(file);
    await page.locator('[data-testid="add-result"]:not([hidden])').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('add-root').textContent(), native.root);
    await page.getByTestId('upload').click();
    await expectEventually(() => cut, 'the upload was never cut');
    await page.reload();
    await page.locator('[data-testid="node-status"][data-ready="true"]').waitFor({ timeout: 30_000 });
    const paused = page.locator('[data-testid="files"] li[data-state="paused"]').first();
    await paused.waitFor({ timeout: 30_000 });
    await paused.getByRole('button', { name: 'Resume upload' }).click();
    await page.getByTestId('add-message').filter({ hasText: 'Uploaded' }).waitFor({ timeout: 60_000 });
    const carSize = readFileSync(join(dir, 'b.car')).length;
    assert.ok(sent <= carSize + 4 * 1024 * 1024, `sent ${sent} bytes for a ${carSize}-byte CAR`);
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-mobile.png'), fullPage: true });
    await context.close();
  });

  test('a download is verified block by block, over libp2p or from the gateway; a tampered block is refused', async () => {
    const dir = tempDir('estuary-e2e-download-');
    const file = join(dir, 'doc.bin');
    const bytes = Buffer.alloc(5_000_000);
    for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((i * 2246822519) >>> 0, i);
    writeFileSync(file, bytes);
    const added = JSON.parse(execFileSync(estuaryBin, ['add', file, '--car', join(dir, 'doc.car'), '--json']));
    const car = readFileSync(join(dir, 'doc.car'));
    const tus = { 'tus-resumable': '1.0.0', authorization: `Bearer ${stack.info.api_token}` };
    const created = await fetch(`${stack.info.oracle_url}/uploads`, {
      method: 'POST',
      headers: { ...tus, 'upload-length': String(car.length) },
    });
    const upload = `${stack.info.oracle_url}${created.headers.get('location')}`;
    const patch = { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' };
    assert.ok((await fetch(upload, { method: 'PATCH', headers: patch, body: car })).ok);

    const { page, errors } = await openPage({ account: stack.info.accounts[8] });
    const downloaded = async (from) => {
      await page.getByTestId('download-from').selectOption(from);
      await page.getByTestId('download-cid').fill(added.root);
      await page.getByTestId('download-button').click();
      const message = page.getByTestId('download-message').filter({ hasText: 'Verified:' });
      await message.waitFor({ timeout: 60_000 });
      const href = await page.getByTestId('download-link').getAttribute('href');
      const digest = await page.evaluate(async (url) => {
        const data = await (await fetch(url)).arrayBuffer();
        const hash = await crypto.subtle.digest('SHA-256', data);
        return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, '0')).join('');
      }, href);
      assert.equal(digest, createHash('sha256').update(bytes).digest('hex'), `the file downloaded from ${from} is the file`);
      const text = await message.textContent();
      await page.evaluate(() => {
        document.querySelector('[data-testid="download-message"]').textContent = '';
      });
      return text;
    };
    // Over libp2p: the page's node asks the oracle for the blocks over Bitswap.
    await page.locator('[data-testid="serve-status"][data-peer]').waitFor({ timeout: 30_000 });
    const oracleSent = async () => (await (await fetch(`${stack.info.oracle_url}/p2p`)).json()).blocks_sent;
    const sentBefore = await oracleSent();
    assert.match(await downloaded('peer'), /over libp2p/);
    assert.ok((await oracleSent()) - sentBefore >= 6, 'the oracle sent the file\'s blocks over Bitswap');
    assert.match(await downloaded('gateway'), /gateway/);
    assert.match(await downloaded('auto'), /over libp2p/);

    // A CID the oracle does not hold: the peer says so, clearly.
    await page.getByTestId('download-from').selectOption('peer');
    await page.getByTestId('download-cid').fill('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku');
    await page.getByTestId('download-button').click();
    await page.locator('[data-testid="download-message"].error').waitFor({ timeout: 60_000 });
    assert.match(await page.getByTestId('download-message').textContent(), /does not have block/);

    // The same download through a gateway that flips one byte of the CAR.
    const tampered = await openPage({ account: stack.info.accounts[8] });
    await tampered.page.getByTestId('download-from').selectOption('gateway');
    await tampered.page.context().route('**/ipfs/**', async (route) => {
      const response = await route.fetch();
      const body = Buffer.from(await response.body());
      body[body.length - 10] ^= 1;
      await route.fulfill({ response, body });
    });
    await tampered.page.getByTestId('download-cid').fill(added.root);
    await tampered.page.getByTestId('download-button').click();
    await tampered.page.locator('[data-testid="download-message"].error').waitFor({ timeout: 60_000 });
    assert.match(await tampered.page.getByTestId('download-message').textContent(), /does not match|hash/i);
    assert.equal(await tampered.page.getByTestId('download-link').isHidden(), true);
    assert.deepEqual(errors, []);
  });

  test('adding a large file can be cancelled, leaving nothing behind', async () => {
    const dir = tempDir('estuary-e2e-cancel-');
    const file = join(dir, 'huge.bin');
    const big = Buffer.alloc(300_000_000);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(file, big);
    const { page, errors } = await openPage({ account: stack.info.accounts[9] });
    await page.locator('[data-testid="files"][data-loaded]').waitFor({ state: 'attached' });
    const before = await page.locator('[data-testid="files"] li[data-car]').count();
    await page.getByTestId('files-input').setInputFiles(file);
    await page.waitForFunction(() => {
      const bar = document.querySelector('[data-testid="add-progress"]');
      return bar && !bar.hidden && bar.value > 0.02;
    }, null, { timeout: 60_000 });
    await page.getByTestId('cancel-add').click();
    await page.getByTestId('add-message').filter({ hasText: 'Cancelled' }).waitFor({ timeout: 30_000 });
    assert.equal(await page.getByTestId('add-result').isHidden(), true);
    await page.reload();
    await page.locator('[data-testid="node-status"][data-ready="true"]').waitFor({ timeout: 30_000 });
    await page.locator('[data-testid="files"][data-loaded]').waitFor({ state: 'attached' });
    assert.equal(await page.locator('[data-testid="files"] li[data-car]').count(), before, 'no CAR left behind');
    assert.deepEqual(errors, []);
  });

  test('the SDK as shipped (www/dist/sdk) runs in a page with no bundler, ethers from an import map, its wasm fetched once: add gives estuary add\'s root and piece', async (t) => {
    const dir = tempDir('estuary-e2e-sdk-');
    const text = 'imported from /sdk/estuary-sdk.js\n'.repeat(1000);
    writeFileSync(join(dir, 'note.txt'), text);
    const native = JSON.parse(
      execFileSync(estuaryBin, ['add', join(dir, 'note.txt'), '--profile', 'kubo-cidv1', '--car', join(dir, 'n.car'), '--json']),
    );
    // A dapp's own page: no bundler, ethers (a peer dependency of the SDK) mapped to its ESM build.
    const context = await browser.newContext();
    const base = stack.info.dapp_url;
    await context.route(`${base}/example.html`, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: '<!doctype html><html lang="en"><head><title>A dapp</title>' +
          '<script type="importmap">{"imports":{"ethers":"/vendor/ethers.js"}}</script></head><body><p>A dapp</p></body></html>',
      }));
    await context.route(`${base}/vendor/ethers.js`, (route) =>
      route.fulfill({ contentType: 'text/javascript', path: join(root, 'node_modules/ethers/dist/ethers.min.js') }));
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    const fetched = [];
    page.on('response', (r) => fetched.push(r));
    await page.goto(`${base}/example.html`);
    const added = await page.evaluate(async (text) => {
      const t0 = performance.now();
      const sdk = await import('/sdk/estuary-sdk.js');
      const t1 = performance.now();
      const node = await sdk.EstuaryNode.start();
      const t2 = performance.now();
      const steps = [];
      const result = await node.add([{ path: '', file: new Blob([text]) }], {
        folder: false,
        profile: 'kubo-cidv1',
        onProgress: (p) => steps.push(p),
      });
      await node.removeCar(result.car);
      // A second node on the page neither fetches nor compiles the wasm again.
      const second = await sdk.EstuaryNode.start();
      const cid = await second.parseCid(result.root);
      second.terminate();
      node.terminate();
      return {
        root: result.root, piece: result.pieceCidV2, profile: result.profile, last: steps.at(-1), parsed: cid.string,
        wasm: sdk.NODE_WASM_URL, importMs: t1 - t0, startMs: t2 - t1,
      };
    }, text);
    t.diagnostic(`first load: the SDK (and ethers) imported in ${Math.round(added.importMs)} ms, ` +
      `the node started (its wasm fetched and compiled once, its workers ready) in ${Math.round(added.startMs)} ms`);
    assert.equal(added.root, native.root);
    assert.equal(added.parsed, native.root);
    assert.equal(added.piece, native.piece_cid);
    assert.equal(added.profile, 'kubo-cidv1');
    assert.equal(added.last.bytes, text.length);
    assert.ok(added.last.blocks >= 1 && added.last.stored > text.length, JSON.stringify(added.last));
    // One copy of the wasm, fetched once for the page, its node worker and their piece workers;
    // the SDK and its worker scripts are small (no wasm inside, no ethers inside).
    assert.match(added.wasm, new RegExp(`^${base}/sdk/assets/estuary_node_bg-[\\w-]+\\.wasm$`));
    const wasm = fetched.filter((r) => r.url().endsWith('.wasm'));
    assert.deepEqual(wasm.map((r) => r.url()), [added.wasm]);
    const scripts = fetched.filter((r) => r.url().startsWith(`${base}/sdk/`) && r.url().endsWith('.js'));
    assert.ok(scripts.length >= 3, scripts.map((r) => r.url()).join(' '));
    for (const r of scripts) {
      const size = (await (await fetch(r.url())).arrayBuffer()).byteLength;
      assert.ok(size < 200_000, `${r.url()}: ${size} bytes`);
    }
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a file larger than a deal is split into pieces; Verify proves each part inside deals of its own', async () => {
    const dir = tempDir('estuary-e2e-split-');
    const file = join(dir, 'big.bin');
    // 9 MB of noise: its CAR is larger than the stack's 8 MiB deals.
    writeFileSync(file, randomBytes(9_000_000));
    const account = stack.info.accounts[6];
    const { page, errors } = await openPage({ account });
    await page.getByTestId('files-input').setInputFiles(file);
    await page.locator('[data-testid="add-result"]:not([hidden])').waitFor({ timeout: 60_000 });
    const id = await uploadAndPinAdded(page, account);
    // Each part gets three active deals at three SPs (its own orders).
    let request;
    const started = Date.now();
    for (;;) {
      request = await (await fetch(`${stack.info.oracle_url}/requests/${id}`)).json();
      const parts = (request.pieces ?? []).map((p) => p.piece_cid);
      const active = (part) => new Set(request.deals.filter((d) => d.deal_piece_cid === part && d.state === 'active').map((d) => d.provider)).size;
      if (parts.length >= 2 && parts.every((part) => active(part) >= 3)) break;
      assert.ok(Date.now() - started < 150_000, `each part in three active deals: ${JSON.stringify(request)}`);
      await sleep(1000);
    }
    const parts = request.pieces.length;
    // Verify, part by part.
    await page.locator('#verify-box:not([hidden])').waitFor({ timeout: 30_000 });
    await page.getByTestId('verify').click();
    await page.locator('[data-testid="verify-summary"][data-proven]').waitFor({ timeout: 60_000 });
    const summary = await page.getByTestId('verify-summary').textContent();
    const steps = await page.locator('[data-testid="verify-steps"] li').allTextContents();
    const all = `${summary}\n${steps.join('\n')}`;
    assert.match(summary, new RegExp(`^Proven: each of the ${parts} parts of your pin is inside at least [3-9] active Filecoin deals`), all);
    assert.ok(steps.includes('✓ This browser computed the same piece for the content it added.'), all);
    assert.ok(steps.some((s) => s.startsWith(`✓ On chain, EstuaryPinning recorded piece ${request.piece_cid} (`)), all);
    assert.ok(steps.some((s) => s.startsWith(`✓ It is larger than a deal: it is kept as ${parts} pieces, spans of its CAR's `)), all);
    assert.ok(steps.includes("✓ This browser computed each part's piece from the spans of the CAR it added: the same parts."), all);
    for (const [i, part] of request.pieces.entries()) {
      const proven = steps.filter((s) =>
        s.startsWith(`✓ Part ${i + 1} of ${parts} (${part.piece_cid}): On chain, the storage market says deal #`) && s.includes('(active)'));
      assert.ok(proven.length >= 3, `part ${i + 1}: ${all}`);
    }
    assert.ok(steps.every((s) => s.startsWith('✓')), all);
    assert.deepEqual(errors, []);
  });

  test('a malformed CID is refused in the page and no transaction is sent', async () => {
    // An account no SP agent sends from (anvil's 1-3 do), so its nonce moves only if the page
    // sends.
    const account = stack.info.accounts[8];
    const { page } = await openPage({ account });
    const before = await requestCount();
    const nonce = await rpc(stack.info.rpc_url, 'eth_getTransactionCount', [account, 'latest']);

    await page.getByTestId('cid-input').fill('bafy-this-is-not-a-cid');
    await page.locator('[data-testid="cid-info"].invalid').waitFor();
    await page.getByTestId('pin').click();
    await page.getByTestId('message').filter({ hasText: 'Not a valid CID' }).waitFor();

    const calls = await page.evaluate(() => window.__walletCalls);
    assert.ok(!calls.includes('eth_sendTransaction'), `wallet calls: ${calls}`);
    assert.equal(await requestCount(), before);
    assert.equal(await rpc(stack.info.rpc_url, 'eth_getTransactionCount', [account, 'latest']), nonce);
  });

  test('a wallet on another network is offered the switch, the chain added, and a switch away disconnects it', async () => {
    const account = stack.info.accounts[4];
    const { page, errors } = await openPage({ account, chainId: 314 });
    const before = await requestCount();
    // Pinning on the wrong network sends nothing: the page says so and offers the switch.
    await page.getByTestId('cid-input').fill(CID);
    await page.getByTestId('pin').click();
    const network = page.getByTestId('wallet-network');
    await network.filter({ hasText: 'Your wallet is on Filecoin (chain 314)' }).waitFor();
    assert.match(await network.textContent(), /Estuary here runs on Estuary local chain \(chain 31337\)/);
    let calls = await page.evaluate(() => window.__walletCalls);
    assert.ok(!calls.includes('eth_sendTransaction') && !calls.includes('eth_estimateGas'), `wallet calls: ${calls}`);
    // The wallet does not know the chain (4902): it is asked to add it, with the stack's RPC.
    await page.getByTestId('switch-chain').filter({ hasText: 'Switch to Estuary local chain (chain 31337)' }).click();
    await page.getByTestId('wallet-status').filter({ hasText: `Connected: ${account}` }).waitFor();
    assert.ok(await network.isHidden());
    const added = await page.evaluate(() => window.__addedChains);
    assert.equal(added.length, 1);
    assert.equal(added[0].chainId, '0x7a69');
    assert.deepEqual(added[0].rpcUrls, [stack.info.rpc_url]);
    calls = await page.evaluate(() => window.__walletCalls);
    const switches = calls.filter((c) => c === 'wallet_switchEthereumChain').length;
    assert.ok(calls.indexOf('wallet_addEthereumChain') > calls.indexOf('wallet_switchEthereumChain'), `${calls}`);
    assert.equal(switches, 2, 'refused (4902), then after the add');
    // Before the wallet opens, the page says what the transaction does and costs.
    await page.getByTestId('pin').click();
    const tx = page.locator('[data-testid="tx"][data-state="mined"]');
    await tx.waitFor({ timeout: 30_000 });
    assert.match(
      await tx.textContent(),
      /^Sending pinToEstuary to 0x[0-9a-fA-F]{40}: a fee of [\d.]+ tFIL and at most \d+ gas, [\d.]+ tFIL in all at most\. Sent 0x[0-9a-f]{64}; mined in block \d+: request #\d+\.$/,
    );
    calls = await page.evaluate(() => window.__walletCalls);
    assert.ok(calls.indexOf('eth_estimateGas') < calls.indexOf('eth_sendTransaction'), `estimated before the wallet opens: ${calls}`);
    assert.equal(await requestCount(), before + 1n);
    // The person switches the wallet to another network: the page disconnects and offers it back.
    await page.evaluate(() => window.__setWalletChain(314159));
    await network.filter({ hasText: 'Your wallet is on Filecoin Calibration (chain 314159)' }).waitFor();
    assert.match(await page.getByTestId('wallet-status').textContent(), /Not connected: the wallet changed network/);
    await page.evaluate(() => window.__setWalletChain(31337));
    await page.getByTestId('wallet-status').filter({ hasText: `Connected: ${account}` }).waitFor();
    // Another account chosen in the wallet: the page follows it; none: it says disconnected.
    const other = stack.info.accounts[9];
    await page.evaluate((a) => window.__setWalletAccount(a), other);
    await page.getByTestId('wallet-status').filter({ hasText: `Connected: ${other}` }).waitFor();
    await page.evaluate(() => window.__setWalletAccount(null));
    await page.getByTestId('wallet-status').filter({ hasText: 'Not connected: the wallet disconnected this site.' }).waitFor();
    assert.deepEqual(errors, []);
  });

  test('the operator dashboard charts the oracle\'s metrics over time; every page fits 360 px and 1280 px', async () => {
    const { page, errors } = await openPage({ account: stack.info.accounts[3] });
    await page.getByTestId('nav-operator').click();
    assert.equal(new URL(page.url()).hash, '#/operator');
    assert.equal(await page.getByTestId('nav-operator').getAttribute('aria-current'), 'page');
    // The page loads when first shown, then asks for the token.
    await page.getByTestId('operator-status').filter({ hasText: 'API token' }).waitFor();
    // A wrong token is refused and said so; the right one shows the charts.
    await page.getByTestId('operator-token').fill('not-the-token');
    await page.getByTestId('operator-show').click();
    await page.getByTestId('operator-status').filter({ hasText: 'The oracle refused the token.' }).waitFor();
    await page.getByTestId('operator-token').fill(stack.info.api_token);
    await page.getByTestId('operator-show').click();
    // The stack samples every 2 s, and the tests above have pinned and dealt (this one runs after
    // them, in this file's order): charts with lines and points.
    const chart = (key) => page.locator(`[data-testid="chart"][data-chart="${key}"]`);
    for (const key of ['requests', 'rates', 'bytes', 'replicas', 'success', 'time']) {
      await chart(key).waitFor({ timeout: 30_000 });
    }
    await page.waitForFunction(
      () => [...document.querySelectorAll('[data-testid="chart"]')].every((f) => Number(f.dataset.points) >= 3),
      null,
      { timeout: 30_000 },
    );
    for (const key of ['requests', 'bytes', 'replicas', 'success', 'time']) {
      assert.ok(Number(await chart(key).getAttribute('data-series')) >= 1, `${key} has a line`);
      assert.equal(await chart(key).locator('canvas').count(), 1, `${key} is drawn`);
    }
    assert.ok(Number(await chart('success').getAttribute('data-series')) >= 3, 'one line per SP');
    assert.match(await chart('requests').locator('.u-legend').textContent(), /reported/);
    // Reloaded on its address, the page comes back with the token kept for this tab.
    await page.reload();
    await chart('requests').waitFor({ timeout: 30_000 });
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-operator.png'), fullPage: true });
    // Each page at 360 px and at 1280 px: nothing wider than the screen, and nothing in the
    // console's errors (the page loaded again with the console followed).
    const consoleErrors = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    await page.reload();
    await page.locator('[data-testid="node-status"][data-ready="true"]').waitFor({ timeout: 30_000 });
    for (const [width, nav] of [360, 1280].flatMap((w) => PAGES.map((p) => [w, p.nav]))) {
      await page.setViewportSize({ width, height: 800 });
      await page.getByTestId(nav).click();
      await page.waitForTimeout(300);
      const [scroll, client, wide] = await page.evaluate(() => [
        document.documentElement.scrollWidth,
        document.documentElement.clientWidth,
        [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
          .slice(0, 5)
          .map((e) => `${e.tagName}#${e.id}.${e.className}`),
      ]);
      assert.ok(scroll <= client, `${nav} at ${width} px: ${scroll} px wide in a ${client} px window: ${wide}`);
    }
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(errors, []);
  });

  test('a DataDAO proposal is made, voted and executed in the page, and its CID reaches a perpetual order', async () => {
    assert.ok(pinned, 'runs after the first test, whose content the oracle holds');
    const url = stack.info.rpc_url;
    const [proposer, voter] = [stack.info.accounts[7], stack.info.accounts[8]];
    const dao = stack.info.contracts.DataDAO;
    const daoAbi = new Interface(['function setMember(address,bool)', 'function owner() view returns (address)']);
    const [owner] = daoAbi.decodeFunctionResult('owner', await rpc(url, 'eth_call', [{ to: dao, data: daoAbi.encodeFunctionData('owner') }, 'latest']));
    // The DAO's owner (the deployer) makes the two members; the treasury gets the pin fee and
    // the order's budget.
    const mined = async (hash) => {
      for (let i = 0; i < 100; i++) {
        const receipt = await rpc(url, 'eth_getTransactionReceipt', [hash]);
        if (receipt) return assert.equal(receipt.status, '0x1', `transaction ${hash} from the DAO's owner ${owner}: ${JSON.stringify(receipt)}`);
        await sleep(200);
      }
      assert.fail(`transaction ${hash} not mined`);
    };
    for (const member of [proposer, voter]) {
      // A gas limit of its own: the estimate (the next block's) can fall short of a checkpoint
      // written in a later one.
      const call = { from: owner, to: dao, gas: toBeHex(300_000), data: daoAbi.encodeFunctionData('setMember', [member, true]) };
      await rpc(url, 'eth_call', [call, 'latest']).catch((e) => assert.fail(`setMember: ${e.message} ${JSON.stringify(e.data ?? e)}`));
      await mined(await rpc(url, 'eth_sendTransaction', [call]));
    }
    const treasury = { from: owner, to: dao, gas: toBeHex(100_000), value: toBeHex(parseEther('5')) };
    await rpc(url, 'eth_call', [treasury, 'latest']).catch((e) => assert.fail(`treasury: ${e.message}`));
    await mined(await rpc(url, 'eth_sendTransaction', [treasury]));

    const { page, errors } = await openPage({ account: proposer });
    await page.getByTestId('connect').click();
    await page.waitForFunction((a) => document.querySelector('[data-testid="wallet-status"]').textContent.includes(a), proposer);
    await page.getByTestId('nav-dao').click();
    await page.locator('[data-testid="dao-member"][data-member="true"]').waitFor({ timeout: 30_000 });
    await page.getByTestId('dao-cid').fill(pinned.cid);
    await page.getByTestId('dao-size').fill(String(pinned.size));
    await page.getByTestId('dao-propose').click();
    await page.getByTestId('dao-message').filter({ hasText: /^Proposal #\d+ is on chain/ }).waitFor({ timeout: 30_000 });
    const id = (await page.getByTestId('dao-message').textContent()).match(/#(\d+)/)[1];
    const row = page.locator(`[data-testid="proposals"] li[data-proposal="${id}"]`);
    await row.waitFor({ timeout: 15_000 });
    assert.match(await row.textContent(), new RegExp(`#${id} · ${pinned.cid} · open · 0 for, 0 against, 1 needed · voting until`));
    assert.equal(await row.getByTestId('dao-vote-for').count(), 0, 'no vote on one\'s own proposal');
    // The other member votes, from the same page with the wallet's other account.
    await page.evaluate((a) => window.__setWalletAccount(a), voter);
    await page.waitForFunction((a) => document.querySelector('[data-testid="wallet-status"]').textContent.includes(a), voter);
    await row.getByTestId('dao-vote-for').click({ timeout: 15_000 });
    await page.locator(`[data-testid="proposals"] li[data-proposal="${id}"]`).filter({ hasText: '1 for, 0 against' }).waitFor({ timeout: 30_000 });
    // Voting closes (the chain's clock moves past the deadline); anyone executes.
    await rpc(url, 'evm_increaseTime', [301]);
    await rpc(url, 'evm_mine', []);
    await row.getByTestId('dao-execute').click({ timeout: 15_000 });
    // Accepted: its CID is pinned, and once the oracle reports the pin it funds the DAO's order,
    // which the stack's SPs take.
    await page.locator(`[data-testid="proposals"] li[data-proposal="${id}"][data-state="accepted"], [data-testid="proposals"] li[data-proposal="${id}"][data-state="funded"]`).waitFor({ timeout: 30_000 });
    await page.locator(`[data-testid="proposals"] li[data-proposal="${id}"][data-state="funded"]`).waitFor({ timeout: 120_000 });
    assert.match(await row.textContent(), /· funded · 1 for, 0 against, 1 needed · order #\d+: \d of 3 replicas active$/);
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-dao.png'), fullPage: true });
    assert.deepEqual(errors, []);
  });

  test('every page passes axe-core: no serious or critical accessibility violations', async () => {
    const { page, errors } = await openPage({ account: stack.info.accounts[3] });
    await page.getByTestId('connect').click();
    await page.getByTestId('wallet-status').filter({ hasText: 'Connected' }).waitFor();
    const found = [];
    for (const { nav, ready } of PAGES) {
      await page.getByTestId(nav).click();
      await page.locator(ready).first().waitFor({ timeout: 30_000 });
      await page.waitForTimeout(500);
      await page.addScriptTag({ path: require.resolve('axe-core/axe.min.js') });
      const violations = await page.evaluate(async () => {
        const result = await window.axe.run(document, { resultTypes: ['violations'] });
        return result.violations
          .filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
      });
      found.push(...violations.map((v) => `${nav}: ${v}`));
    }
    assert.deepEqual(found, []);
    assert.deepEqual(errors, []);
  });

  test('each page, opened by its address, does not shift while it loads; its first paint is recorded', async (t) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await injectWallet(context, { rpcUrl: stack.info.rpc_url, account: stack.info.accounts[3] });
    // Layout shifts as Chromium reports them (the Layout Instability API), summed as CLS does:
    // shifts right after an input do not count.
    await context.addInitScript(() => {
      window.__shift = 0;
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__shift += entry.value;
      }).observe({ type: 'layout-shift', buffered: true });
    });
    const figures = [];
    for (const { route, ready } of PAGES) {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e));
      await page.goto(`${stack.info.dapp_url}/${route}`);
      await page.locator(ready).first().waitFor({ timeout: 30_000 });
      // Whatever loads after the page's first answers (the node, the chain's reads) has landed.
      await page.waitForTimeout(1500);
      const { shift, fcp } = await page.evaluate(() => ({
        shift: window.__shift,
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
      }));
      figures.push(`${route} first contentful paint ${fcp === null ? '?' : Math.round(fcp)} ms, layout shift ${shift.toFixed(4)}`);
      // "Good" cumulative layout shift, as Core Web Vitals define it, is at most 0.1.
      assert.ok(shift <= 0.1, `${route}: layout shift ${shift}`);
      assert.ok(fcp !== null, `${route}: no first contentful paint`);
      assert.deepEqual(errors, [], route);
      await page.close();
    }
    for (const line of figures) t.diagnostic(line);
    await context.close();
  });

  test('a contract-deal proposal at the DealClient is on the providers page, with its terms, open', async () => {
    const url = stack.info.rpc_url;
    const client = stack.info.contracts.DealClient;
    const abi = new Interface([
      'function owner() view returns (address)',
      'function makeDealProposal((bytes pieceCid, uint64 pieceSize, bool verifiedDeal, string label, int64 startEpoch, int64 endEpoch, uint256 storagePricePerEpoch, uint256 providerCollateral, uint256 clientCollateral, uint64 provider, uint16 replicas, string locationRef, uint64 carSize, bool skipIpniAnnounce, bool removeUnsealedCopy) r) returns (bytes32)',
    ]);
    const [owner] = abi.decodeFunctionResult('owner', await rpc(url, 'eth_call', [{ to: client, data: abi.encodeFunctionData('owner') }, 'latest']));
    // The DealClient's owner (the deployer) proposes a deal for a piece, naming a provider none
    // of the stack's SP agents is (f099999): none takes it, so it stays open.
    const piece = Piece.fromPayload(new Uint8Array(5000).fill(7)).toInfo();
    const head = Number(await rpc(url, 'eth_blockNumber', []));
    const request = {
      pieceCid: piece.link.bytes, pieceSize: piece.size, verifiedDeal: false, label: CID,
      startEpoch: head + 1000, endEpoch: head + 1600, storagePricePerEpoch: 0n,
      providerCollateral: piece.size * 100_000n, clientCollateral: 0n, provider: 99_999n, replicas: 1,
      locationRef: 'http://127.0.0.1:9/never.car', carSize: 5000n, skipIpniAnnounce: false, removeUnsealedCopy: false,
    };
    const call = { from: owner, to: client, gas: toBeHex(1_000_000), data: abi.encodeFunctionData('makeDealProposal', [request]) };
    await rpc(url, 'eth_call', [call, 'latest']).catch((e) => assert.fail(`makeDealProposal: ${e.message} ${JSON.stringify(e.data ?? e)}`));
    const hash = await rpc(url, 'eth_sendTransaction', [call]);
    for (let i = 0; ; i++) {
      const receipt = await rpc(url, 'eth_getTransactionReceipt', [hash]);
      if (receipt) {
        assert.equal(receipt.status, '0x1', JSON.stringify(receipt));
        break;
      }
      assert.ok(i < 100, `transaction ${hash} not mined`);
      await sleep(200);
    }

    const { page, errors } = await openPage({ account: stack.info.accounts[6] });
    await page.getByTestId('nav-providers').click();
    const row = page.locator('[data-testid="deal-proposals"] tr[data-open="true"]').filter({ hasText: piece.link.toString() });
    await row.waitFor({ timeout: 30_000 });
    const cells = await row.locator('td').allTextContents();
    assert.deepEqual(cells.slice(1), [
      piece.link.toString(), '0.008 MiB', 'f099999', '0 of 1 published, 0 active', cells[5], `${head + 1000} to ${head + 1600}`, 'open',
    ]);
    assert.match(cells[5], /^0(\.0+)? /, 'free: no price an epoch');
    assert.match(await page.getByTestId('deal-proposals-summary').textContent(), /^\d+ open proposals? of \d+, open ones first\.$/);
    await page.screenshot({ path: join(ensureOutputDir(), 'dapp-providers.png'), fullPage: true });
    assert.deepEqual(errors, []);
  });

  test('no wallet and blocked scripts never blank the page: each part says what is missing, the rest works', async () => {
    // No wallet injected; an ad blocker's work: the node's WebAssembly and the chart library.
    const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
    await context.route(/\.wasm$/, (route) => route.abort('blockedbyclient'));
    await context.route(/uPlot[^/]*\.js$/, (route) => route.abort('blockedbyclient'));
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    await page.goto(stack.info.dapp_url);
    await page.getByTestId('node-status').filter({ hasText: 'failed to start' }).waitFor({ timeout: 30_000 });
    assert.ok(await page.getByTestId('cid-input').isVisible(), 'the files page is there');
    await page.getByTestId('connect').click();
    await page.getByTestId('message').filter({ hasText: 'No wallet found: install an Ethereum wallet extension.' }).waitFor();
    // The operator page's script cannot load: it says so; shown again, it is tried again.
    await page.getByTestId('nav-operator').click();
    await page.getByTestId('operator-status').filter({ hasText: 'This page could not load' }).waitFor({ timeout: 15_000 });
    await page.getByTestId('nav-providers').click();
    await page.getByTestId('providers-summary').filter({ hasNotText: 'once it has seen them' }).waitFor({ timeout: 15_000 });
    assert.ok(await page.getByTestId('providers').isVisible());
    await page.getByTestId('nav-files').click();
    // The files page, or its hint when there are none, once it is shown again.
    await page.getByTestId('files').or(page.getByTestId('files-hint')).first().waitFor({ timeout: 15_000 });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a transaction rejected in the wallet shows a clear message', async () => {
    const account = stack.info.accounts[3];
    const { page } = await openPage({ account, reject: true });
    const before = await requestCount();
    await page.getByTestId('cid-input').fill(CID);
    await page.getByTestId('pin').click();
    await page.getByTestId('message').filter({ hasText: 'You rejected the transaction' }).waitFor();
    assert.equal(await requestCount(), before);
  });

  test('the piece CID of a file, hashed in Web Workers, matches @web3-storage/data-segment, and the file never leaves the browser', async () => {
    const { page, errors } = await openPage({ account: stack.info.accounts[4] });
    // Three runs of the tree and a ragged tail, so the helper workers and the tail both count.
    const bytes = new Uint8Array(3 * 260_096 * 4 + 12_345);
    let x = 0x2545f491;
    for (let i = 0; i < bytes.length; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      bytes[i] = x & 0xff;
    }
    const want = Piece.fromPayload(bytes);
    // The file never leaves the browser: no request carries more than a small body meanwhile
    // (the page's JSON-RPC reads and the like).
    const sent = [];
    page.on('request', (r) => {
      const body = r.postDataBuffer()?.length ?? 0;
      if (body > 4096) sent.push(`${r.method()} ${r.url()}: ${body} bytes`);
    });
    await page.getByTestId('piece-file').setInputFiles({
      name: 'data.bin', mimeType: 'application/octet-stream', buffer: Buffer.from(bytes),
    });
    await page.locator('[data-testid="piece-result"]:not([hidden])').waitFor({ timeout: 60_000 });
    assert.equal(await page.getByTestId('piece-v2').textContent(), want.link.toString());
    assert.match(await page.getByTestId('piece-padded').textContent(), new RegExp(`^${want.size} bytes`));

    // Tiny files are pieces too (FRC-0069 pads them to 127 bytes).
    const tiny = Buffer.from('tiny');
    await page.getByTestId('piece-file').setInputFiles({ name: 'tiny.txt', mimeType: 'text/plain', buffer: tiny });
    const tinyWant = Piece.fromPayload(tiny).link.toString();
    await page.getByTestId('piece-v2').filter({ hasText: tinyWant }).waitFor();
    assert.deepEqual(sent, []);
    assert.deepEqual(errors, []);
  });

  test('SIGTERM stops everything the stack started', async () => {
    const { info } = stack;
    assert.ok(await portOpen(info.rpc_url));
    // dev.json names the three simulated SPs' agents, each up for its miner.
    assert.deepEqual(info.sps.map((sp) => sp.miner), ['f01000', 'f01001', 'f01002']);
    for (const sp of info.sps) {
      const health = await (await fetch(`${sp.url}/health`)).json();
      assert.equal(health.miner, sp.miner);
    }
    const exit = await stack.stop();
    assert.ok(exit, `estuary dev did not exit:\n${stack.log()}`);
    assert.equal(exit.code, 0, stack.log());
    for (const url of [info.rpc_url, info.oracle_url, info.dapp_url, ...info.sps.map((sp) => sp.url)]) {
      assert.equal(await portOpen(url), false, `${url} still answers`);
    }
    assert.equal(existsSync(stack.devJson), false, 'dev.json is removed');
  });
});
