// Shared by the end-to-end tests: start `estuary dev` in a temporary state directory, drive the
// page in headless Chromium, and talk to the chain directly.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const outputDir = join(root, 'tests/e2e/output');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const scratch = [];
process.on('exit', () => {
  if (process.env.ESTUARY_KEEP_TMP) return;
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process exits (kept with ESTUARY_KEEP_TMP=1). */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** Starts the stack on free ports (with `extra` arguments of `estuary dev`); resolves once
 *  dev.json is written. */
export async function startStack(extra = []) {
  const stateDir = tempDir('estuary-e2e-');
  const log = join(stateDir, 'dev.log');
  const out = openSync(log, 'a');
  const bin = process.env.ESTUARY_BIN ?? join(root, 'target/debug/estuary');
  const child = spawn(
    bin,
    ['dev', '--state-dir', stateDir, '--anvil-port', '0', '--oracle-port', '0', '--dapp-port', '0',
      '--sp-port', '0', '--www-dist', join(root, 'www/dist'), ...extra],
    { stdio: ['ignore', out, out], detached: true, env: { ...process.env, ESTUARY_LOG: process.env.ESTUARY_LOG ?? 'info' } },
  );
  let exited = null;
  child.on('exit', (code, signal) => (exited = { code, signal }));
  const devJson = join(stateDir, 'dev.json');
  // Up to three deployments of a minute each (`estuary dev` makes a hung one again).
  for (let i = 0; i < 2400 && !existsSync(devJson); i++) {
    if (exited) throw new Error(`estuary dev exited early (${JSON.stringify(exited)}):\n${readFileSync(log, 'utf8')}`);
    await sleep(100);
  }
  if (!existsSync(devJson)) throw new Error(`estuary dev did not come up in 240 s:\n${readFileSync(log, 'utf8')}`);
  const info = JSON.parse(readFileSync(devJson, 'utf8'));
  return {
    info,
    stateDir,
    devJson,
    child,
    log: () => readFileSync(log, 'utf8'),
    exited: () => exited,
    /** SIGTERM to `estuary dev` alone: it must stop its children itself. */
    async stop(timeoutMs = 20_000) {
      if (exited) return exited;
      child.kill('SIGTERM');
      for (let i = 0; i < timeoutMs / 100 && !exited; i++) await sleep(100);
      return exited;
    },
    /** Last resort after a failure: the whole process group. */
    kill() {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}

export async function rpc(url, method, params = []) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

const chromiumOptions = {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Exact JS heap sizes (performance.memory), for the memory test.
    '--enable-precise-memory-info',
  ],
};

export async function launchBrowser() {
  return chromium.launch(chromiumOptions);
}

/**
 * A browser with a profile on disk, as a person's is: its storage (OPFS) is on disk with the
 * usual quota, where a fresh context's is kept in memory and small.
 */
export async function launchPersistent(profileDir, options = {}) {
  return chromium.launchPersistentContext(profileDir, { ...chromiumOptions, ...options });
}

/**
 * An injected EIP-1193 wallet backed by an anvil account: anvil signs for its own accounts, so
 * the wallet forwards every call to the node. `reject: true` makes it refuse transactions the
 * way a person clicking "Reject" does (EIP-1193 code 4001). `chainId` starts it on another
 * chain than the node's, knowing only that one: it then answers `wallet_switchEthereumChain` to
 * an unknown chain with 4902, as MetaMask does, learns chains from `wallet_addEthereumChain`
 * (kept in `window.__addedChains`), and emits `chainChanged`; `window.__setWalletChain(id)` is
 * the person switching networks in the wallet, `window.__setWalletAccount(address)` choosing
 * another account (`null`: disconnecting the site). Calls are recorded in `window.__walletCalls`.
 */
export async function injectWallet(context, { rpcUrl, account, reject = false, chainId = null }) {
  await context.addInitScript(
    ({ rpcUrl, account, reject, chainId }) => {
      let id = 0;
      let chain = chainId;
      const known = new Set(chainId === null ? [] : [chainId]);
      const listeners = new Set();
      const accountListeners = new Set();
      let current = account;
      // The person choosing another account in the wallet.
      window.__setWalletAccount = (next) => {
        current = next;
        for (const l of accountListeners) l(next ? [next] : []);
      };
      window.__walletCalls = [];
      window.__addedChains = [];
      window.__setWalletChain = (next) => {
        chain = next;
        for (const l of listeners) l('0x' + next.toString(16));
      };
      window.ethereum = {
        isEstuaryTestWallet: true,
        async request({ method, params = [] }) {
          window.__walletCalls.push(method);
          if (method === 'eth_requestAccounts' || method === 'eth_accounts') return current ? [current] : [];
          if (method === 'eth_sendTransaction' && reject) {
            throw Object.assign(new Error('User rejected the request.'), { code: 4001 });
          }
          if (chain !== null && method === 'eth_chainId') return '0x' + chain.toString(16);
          if (chain !== null && method === 'wallet_switchEthereumChain') {
            const next = Number(BigInt(params[0].chainId));
            if (!known.has(next)) throw Object.assign(new Error('Unrecognized chain ID.'), { code: 4902 });
            window.__setWalletChain(next);
            return null;
          }
          if (chain !== null && method === 'wallet_addEthereumChain') {
            window.__addedChains.push(params[0]);
            known.add(Number(BigInt(params[0].chainId)));
            return null;
          }
          const res = await fetch(rpcUrl, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
          });
          const body = await res.json();
          if (body.error) throw Object.assign(new Error(body.error.message), body.error);
          return body.result;
        },
        on(event, listener) {
          if (event === 'chainChanged') listeners.add(listener);
          if (event === 'accountsChanged') accountListeners.add(listener);
        },
        removeListener(event, listener) {
          listeners.delete(listener);
          accountListeners.delete(listener);
        },
      };
    },
    { rpcUrl, account, reject, chainId },
  );
}

export function ensureOutputDir() {
  mkdirSync(outputDir, { recursive: true });
  return outputDir;
}

/** Uploads the content the page added, connects `account`, pins it from the page and waits for
 *  it to be reported; returns the request's id. */
export async function uploadAndPinAdded(page, account) {
  await page.getByTestId('upload').click();
  await page.getByTestId('add-message').filter({ hasText: 'Uploaded' }).waitFor({ timeout: 60_000 });
  await page.getByTestId('connect').click();
  await page.getByTestId('wallet-status').filter({ hasText: account }).waitFor();
  await page.getByTestId('pin-added').click();
  await page.locator('[data-testid="request-status"][data-status="reported"]').waitFor({ timeout: 60_000 });
  return (await page.getByTestId('request-id').textContent()).replace('#', '');
}

/** A page of the dapp on `stack` in a fresh context of `browser`, its wallet `account`
 *  (refusing transactions when `reject`, on chain `chainId` when given), loaded with its node
 *  ready; `errors` collects its uncaught errors. */
export async function openPage(browser, stack, { account, reject = false, chainId = null } = {}) {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  await injectWallet(context, { rpcUrl: stack.info.rpc_url, account, reject, chainId });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(stack.info.dapp_url);
  await page.locator('[data-testid="node-status"][data-ready="true"]').waitFor({ timeout: 30_000 });
  return { page, errors };
}
