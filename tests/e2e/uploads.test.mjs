// Uploads on the real stack with tus-js-client 4 (the client Uppy uses; installed apart in
// tests/tus): each upload is cut after two chunks and resumed from where the oracle stopped, with
// every kind of credential the oracle takes — an account's token, a pre-signed URL, a Sign-In with
// Ethereum session, and a pin request's signature — and an anonymous one is refused.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Interface } from 'ethers';
import { root, rpc, startStack, tempDir } from './support.mjs';

const estuaryBin = process.env.ESTUARY_BIN ?? join(root, 'target/debug/estuary');
const tusModule = join(root, 'tests/tus/node_modules/tus-js-client/lib.es5/node/index.js');
const pinning = new Interface(JSON.parse(readFileSync(join(root, 'contracts/artifacts/EstuaryPinning.json'))).abi);
const CHUNK = 256 * 1024;

/** A file made into a CAR by `estuary add`: its root and the CAR's bytes. */
function carOf(seed, size) {
  const dir = tempDir('estuary-e2e-tus-');
  const data = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    data[i] = x & 0xff;
  }
  writeFileSync(join(dir, 'data.bin'), data);
  const added = JSON.parse(execFileSync(estuaryBin, ['add', join(dir, 'data.bin'), '--car', join(dir, 'data.car'), '--json']));
  return { root: added.root, car: readFileSync(join(dir, 'data.car')) };
}

describe('uploads with tus-js-client', () => {
  let stack;
  let tus;
  let token;

  before(async () => {
    assert.ok(existsSync(tusModule), 'tus-js-client is installed by scripts/setup --browser');
    tus = (await import(tusModule)).default;
    stack = await startStack();
    token = execFileSync(estuaryBin, ['oracle', 'token', 'add', 'uploader', '--db', join(stack.stateDir, 'oracle.sqlite')])
      .toString()
      .trim();
  });

  after(() => stack?.kill());

  /** One tus-js-client run: resolves with the upload's URL and the last response, or rejects. */
  function run(car, options, { cutAfter } = {}) {
    return new Promise((resolve, reject) => {
      let chunks = 0;
      const upload = new tus.Upload(car, {
        chunkSize: CHUNK,
        retryDelays: null,
        ...options,
        onChunkComplete: () => {
          chunks += 1;
          if (cutAfter && chunks === cutAfter) {
            // The connection is cut, as a closed tab or a lost network would: no termination.
            upload.abort(false).then(() => resolve({ url: upload.url, cut: true }), reject);
          }
        },
        onSuccess: ({ lastResponse }) => resolve({ url: upload.url, root: lastResponse.getHeader('upload-root') }),
        onError: reject,
      });
      upload.start();
    });
  }

  /** Cut after two chunks, then resumed by a new client from the upload's URL. */
  async function cutAndResume(car, options, resumeOptions = options) {
    const first = await run(car, options, { cutAfter: 2 });
    assert.ok(first.cut && first.url, 'the first run was cut');
    const head = await fetch(first.url, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0', ...resumeOptions.headers } });
    const offset = Number(head.headers.get('upload-offset'));
    assert.equal(offset, 2 * CHUNK, 'the oracle kept the two chunks it had');
    assert.ok(head.headers.get('upload-expires'), 'an unfinished upload says when it expires');
    let resent = Infinity;
    const done = await run(car, {
      ...resumeOptions,
      endpoint: undefined,
      uploadUrl: first.url,
      onProgress: (sent) => (resent = Math.min(resent, sent)),
    });
    assert.equal(done.url, first.url);
    assert.ok(resent >= offset - CHUNK, `resumed at ${resent}, the oracle had ${offset}`);
    return done;
  }

  test('an anonymous upload is refused', async () => {
    const { car } = carOf(1, 100_000);
    const error = await run(car, { endpoint: `${stack.info.oracle_url}/uploads` }).then(
      () => null,
      (e) => e,
    );
    assert.ok(error, 'the upload was taken');
    assert.equal(error.originalResponse.getStatus(), 401);
  });

  test('with an account token: cut, resumed and verified', async () => {
    const { root: want, car } = carOf(2, 1_500_000);
    const options = {
      endpoint: `${stack.info.oracle_url}/uploads`,
      headers: { authorization: `Bearer ${token}` },
      metadata: { filename: 'data.car' },
    };
    const done = await cutAndResume(car, options);
    assert.equal(done.root, want);
    const head = await fetch(done.url, { method: 'HEAD', headers: options.headers });
    assert.equal(head.headers.get('upload-root'), want);
    assert.match(head.headers.get('upload-metadata'), /filename/);
    // Another account's client cannot reach it.
    const stranger = await fetch(done.url, { method: 'HEAD' });
    assert.equal(stranger.status, 401);
  });

  test('with a pre-signed URL: one upload of its size, for the account that made it', async () => {
    const { root: want, car } = carOf(3, 1_200_000);
    const made = await fetch(`${stack.info.oracle_url}/uploads/presign`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ max_bytes: car.length, expires_in: 600 }),
    });
    assert.equal(made.status, 201);
    const { url } = await made.json();
    const options = { endpoint: `${stack.info.oracle_url}${url}` };
    const done = await cutAndResume(car, options);
    assert.equal(done.root, want);
    // Used up.
    const again = await run(car, options).then(() => null, (e) => e);
    assert.equal(again?.originalResponse.getStatus(), 403);
  });

  test('with a Sign-In with Ethereum session', async () => {
    const { root: want, car } = carOf(4, 900_000);
    const account = stack.info.accounts[3];
    const { nonce } = await (await fetch(`${stack.info.oracle_url}/auth/nonce`, { method: 'POST' })).json();
    const domain = new URL(stack.info.dapp_url).host;
    const now = new Date();
    const message = [
      `${domain} wants you to sign in with your Ethereum account:`, account, '', 'Upload to Estuary.', '',
      `URI: ${stack.info.dapp_url}`, 'Version: 1', `Chain ID: ${stack.info.chain_id}`, `Nonce: ${nonce}`,
      `Issued At: ${now.toISOString()}`, `Expiration Time: ${new Date(now.getTime() + 600_000).toISOString()}`,
    ].join('\n');
    // anvil signs for its own accounts, as a wallet would (personal_sign).
    const signature = await rpc(stack.info.rpc_url, 'personal_sign', [`0x${Buffer.from(message).toString('hex')}`, account]);
    const signedIn = await fetch(`${stack.info.oracle_url}/auth/siwe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message, signature }),
    });
    assert.equal(signedIn.status, 201, await signedIn.clone().text());
    const session = await signedIn.json();
    assert.equal(session.account.toLowerCase(), account.toLowerCase());
    const done = await cutAndResume(car, {
      endpoint: `${stack.info.oracle_url}/uploads`,
      headers: { authorization: `Bearer ${session.token}` },
    });
    assert.equal(done.root, want);
  });

  test('tied to a pin request, by its requester, up to its size hint: then pinned', async () => {
    const { root: want, car } = carOf(5, 1_000_000);
    const account = stack.info.accounts[4];
    const contract = stack.info.contracts.EstuaryPinning;
    const fee = BigInt(await rpc(stack.info.rpc_url, 'eth_call', [{ to: contract, data: pinning.encodeFunctionData('fee') }, 'latest']));
    const { CID } = await import('multiformats/cid');
    const data = pinning.encodeFunctionData('pinToEstuary(bytes,(string,string[],uint64))', [
      CID.parse(want).bytes,
      { name: 'tus', origins: [], sizeHint: BigInt(car.length) },
    ]);
    const hash = await rpc(stack.info.rpc_url, 'eth_sendTransaction', [{ from: account, to: contract, data, value: `0x${fee.toString(16)}` }]);
    let receipt = null;
    while (!receipt) {
      receipt = await rpc(stack.info.rpc_url, 'eth_getTransactionReceipt', [hash]);
      if (!receipt) await new Promise((r) => setTimeout(r, 200));
    }
    const requested = receipt.logs.map((l) => pinning.parseLog(l)).find((l) => l?.name === 'PinRequested');
    const id = requested.args.requestId.toString();
    // Once the oracle has seen the request, its requester signs for the upload.
    for (let i = 0; i < 300 && (await fetch(`${stack.info.oracle_url}/requests/${id}`)).status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const text = `Upload to Estuary the content of pin request ${id}\nChain ID: ${stack.info.chain_id}\nContract: ${contract}`;
    const sign = (from) => rpc(stack.info.rpc_url, 'personal_sign', [`0x${Buffer.from(text).toString('hex')}`, from]);
    const endpoint = `${stack.info.oracle_url}/uploads`;
    // Not the requester's signature: refused.
    const stranger = await run(car, { endpoint, metadata: { request: id, signature: await sign(stack.info.accounts[5]) } })
      .then(() => null, (e) => e);
    assert.equal(stranger?.originalResponse.getStatus(), 401);
    const done = await cutAndResume(car, { endpoint, metadata: { request: id, signature: await sign(account) } });
    assert.equal(done.root, want);
    let status;
    for (let i = 0; i < 600; i++) {
      status = await (await fetch(`${stack.info.oracle_url}/requests/${id}`)).json();
      if (status.status === 'reported') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status.status, 'reported', JSON.stringify(status));
    assert.equal(status.error, null, 'no internal detail is public');
  });
});
