import type { Eip1193Provider } from 'ethers';
import {
  EstuaryError,
  EstuaryNode,
  InvalidCidError,
  Wallet,
  WrongChainError,
  chainName,
  loadConfig,
  switchChain,
  watchAccounts,
  watchChain,
  chainReader,
  epochTimes,
  checkDealsOnChain,
  followDeals,
  carFile,
  pieceCommitment,
  pieceInclusion,
  recordedOnChain,
  followRequest,
  requestStatus,
  type AddEntry,
  type AddResult,
  type CidInfo,
  type DownloadSource,
  type EstuaryConfig,
  type ImportProfile,
  type PinQuote,
  type PinRecord,
  type PinRequestStatus,
  type DealStatus,
  type RequestState,
  type ServeStatus,
  type Session,
} from './sdk';

import { FilesList, type PinOfFile, fileRows } from './pages/files';
import { ProvidersPage } from './pages/providers';
import { Poller, el } from './pages/shared';
import { pinOfAddress, startRouter } from './router';

declare global {
  interface Window {
    ethereum?: Eip1193Provider;
  }
}


const ui = {
  nodeStatus: el('node-status'),
  serveStatus: el('serve-status'),
  walletStatus: el('wallet-status'),
  walletNetwork: el('wallet-network'),
  tx: el('tx'),
  connect: el<HTMLButtonElement>('connect'),
  switchChain: el<HTMLButtonElement>('switch-chain'),
  form: el<HTMLFormElement>('pin-form'),
  cid: el<HTMLInputElement>('cid'),
  cidInfo: el('cid-info'),
  pin: el<HTMLButtonElement>('pin'),
  message: el('message'),
  request: el('request'),
  requestId: el('request-id'),
  requestCid: el('request-cid'),
  requestRequester: el('request-requester'),
  requestTx: el('request-tx'),
  requestStatus: el('request-status'),
  requestTimeline: el<HTMLOListElement>('request-timeline'),
  requestDealsTitle: el('request-deals-title'),
  requestDealsSummary: el('request-deals-summary'),
  requestDeals: el<HTMLUListElement>('request-deals'),
  pieceFile: el<HTMLInputElement>('piece-file'),
  pieceProgress: el<HTMLProgressElement>('piece-progress'),
  pieceResult: el('piece-result'),
  pieceV2: el('piece-v2'),
  pieceV1: el('piece-v1'),
  piecePadded: el('piece-padded'),
  pieceSpeed: el('piece-speed'),
  pieceMessage: el('piece-message'),
  drop: el('drop'),
  filesInput: el<HTMLInputElement>('files-input'),
  folderInput: el<HTMLInputElement>('folder-input'),
  addProgress: el<HTMLProgressElement>('add-progress'),
  addResult: el('add-result'),
  addRoot: el('add-root'),
  addPiece: el('add-piece'),
  addSize: el('add-size'),
  addLink: el<HTMLAnchorElement>('add-link'),
  upload: el<HTMLButtonElement>('upload'),
  pinAdded: el<HTMLButtonElement>('pin-added'),
  cancelAdd: el<HTMLButtonElement>('cancel-add'),
  addMessage: el('add-message'),
  downloadForm: el<HTMLFormElement>('download-form'),
  downloadCid: el<HTMLInputElement>('download-cid'),
  downloadFrom: el<HTMLSelectElement>('download-from'),
  addProfile: el<HTMLSelectElement>('add-profile'),
  addStats: el('add-stats'),
  files: el<HTMLUListElement>('files'),
  filesSearch: el<HTMLInputElement>('files-search'),
  filesState: el<HTMLSelectElement>('files-state'),
  filesHint: el('files-hint'),
  downloadMessage: el('download-message'),
  downloadLink: el<HTMLAnchorElement>('download-link'),
  verifyBox: el('verify-box'),
  verify: el<HTMLButtonElement>('verify'),
  verifySummary: el('verify-summary'),
  verifySteps: el<HTMLUListElement>('verify-steps'),
};

/** The pin whose deals are shown, to verify: its request, piece and CID. */
let verifying: { id: bigint; piece: string; cid: string } | undefined;

let node: EstuaryNode | undefined;
let config: EstuaryConfig | undefined;
let wallet: Wallet | undefined;
let busy = false;

function say(text: string, kind: 'info' | 'error' = 'info'): void {
  ui.message.textContent = text;
  ui.message.className = `message ${kind}`;
}

function describe(info: CidInfo): string {
  const codec = info.codecName ?? `codec 0x${info.codec.toString(16)}`;
  return `CIDv${info.version} · ${codec} · ${info.bytes.length} bytes`;
}

async function validate(): Promise<CidInfo | undefined> {
  const text = ui.cid.value;
  if (!node) return undefined;
  if (text.trim() === '') {
    ui.cidInfo.textContent = '';
    ui.cidInfo.className = 'hint';
    return undefined;
  }
  try {
    const info = await node.parseCid(text);
    ui.cidInfo.textContent = describe(info);
    ui.cidInfo.className = 'hint valid';
    return info;
  } catch (e) {
    ui.cidInfo.textContent = e instanceof Error ? e.message : String(e);
    ui.cidInfo.className = 'hint invalid';
    return undefined;
  }
}

function refresh(): void {
  ui.pin.disabled = busy || !node || !config;
  ui.connect.disabled = busy || !config;
}

async function connect(): Promise<Wallet> {
  if (!config) throw new EstuaryError('The page has not loaded its configuration.');
  try {
    wallet = await Wallet.connect(window.ethereum, config);
  } catch (e) {
    if (e instanceof WrongChainError) {
      offerSwitch(e.current, e.expected);
      // A switch made in the wallet itself connects too.
      watchWallet();
    }
    throw e;
  }
  ui.walletNetwork.hidden = true;
  ui.switchChain.hidden = true;
  ui.walletStatus.textContent = `Connected: ${wallet.address}`;
  ui.connect.textContent = 'Reconnect';
  watchWallet();
  void showFiles();
  return wallet;
}

/** A wallet on another chain: say so, and offer the switch (or to add the chain). */
function offerSwitch(current: number, expected: number): void {
  ui.walletNetwork.textContent = `Your wallet is on ${chainName(current)}; Estuary here runs on ${chainName(expected)}. Switch before pinning: nothing is sent until then.`;
  ui.walletNetwork.hidden = false;
  ui.switchChain.textContent = `Switch to ${chainName(expected)}`;
  ui.switchChain.hidden = false;
}

let unwatch: (() => void) | undefined;

/** Follows the wallet's network: a switch away disconnects the page until it comes back. */
function watchWallet(): void {
  if (unwatch || !window.ethereum || !config) return;
  const expected = config.chain_id;
  unwatch = watchChain(window.ethereum, (current) => {
    if (current === expected) {
      if (!wallet) void guarded(connect);
      return;
    }
    wallet = undefined;
    ui.walletStatus.textContent = 'Not connected: the wallet changed network.';
    ui.connect.textContent = 'Connect wallet';
    offerSwitch(current, expected);
  });
  // Another account chosen in the wallet: the page follows it; none left: disconnected.
  watchAccounts(window.ethereum, (accounts) => {
    if (!wallet) return;
    if (accounts[0]?.toLowerCase() === wallet.address.toLowerCase()) return;
    wallet = undefined;
    if (accounts.length === 0) {
      ui.walletStatus.textContent = 'Not connected: the wallet disconnected this site.';
      ui.connect.textContent = 'Connect wallet';
      void showFiles();
      return;
    }
    void guarded(connect);
  });
}

/** *Your files*: this browser's CARs and this wallet's pins, one row per root. */
const files = new FilesList(ui.files, ui.filesSearch, ui.filesState, ui.filesHint, {
  select: (car) => {
    added = car;
    uploaded = car.uploaded;
    showAdded(car);
    refreshAdd();
    if (!car.uploaded) ui.upload.click();
  },
  remove: (car) => void node?.removeCar(car.car).then(showFiles),
}, size);

/** How often *Your files* is read again while shown (its pins' deals move by themselves). */
const FILES_REFRESH_MS = 5000;

/** Bumped by every `showFiles`: an older one still reading does not overwrite a newer one. */
let filesGeneration = 0;

/** The connected account's pin requests read so far, and the block to read on from. */
let pinRecords: { address: string; records: PinRecord[]; next: number } | undefined;
/** Each request's last status from the oracle, and when it was read (ms). */
const pinStatuses = new Map<bigint, { status: PinRequestStatus | null; at: number }>();
/** A settled request (final, or with every replica active) is asked again this often. */
const SETTLED_MS = 60_000;
/** Status requests in flight at once. */
const STATUS_READS = 4;

/** Whether `status` is not expected to move soon. */
function settled(status: PinRequestStatus | null): boolean {
  if (!status) return false;
  if (['failed', 'quarantined', 'cancelled'].includes(status.status)) return true;
  const r = status.replicas;
  return r !== undefined && r.active >= r.target && !(status.deals ?? []).some((d) => d.state === 'expiring');
}

/**
 * Lists this browser's CARs and the connected account's pin requests, each with where it is
 * through deals (the oracle's `/requests/{id}`). The requests' events are read on from where the
 * last read stopped; statuses are asked a few at a time, settled ones once a minute; a failed
 * read keeps what was shown.
 */
async function showFiles(): Promise<void> {
  const generation = ++filesGeneration;
  const cars = node ? await node.listCars().catch(() => []) : [];
  let failed = '';
  const w = wallet;
  if (w && config) {
    const { oracle_url } = config;
    try {
      if (pinRecords?.address !== w.address) pinRecords = { address: w.address, records: [], next: config.deploy_block ?? 0 };
      const mine = pinRecords;
      const head = await w.provider.getBlockNumber();
      const found = await w.pins(config, { fromBlock: mine.next });
      const known = new Set(mine.records.map((r) => r.requestId));
      mine.records.push(...found.filter((r) => !known.has(r.requestId)));
      mine.next = Math.max(mine.next, head + 1);
      const now = Date.now();
      const due = mine.records.filter((r) => {
        const last = pinStatuses.get(r.requestId);
        return !last || now - last.at >= (settled(last.status) ? SETTLED_MS : 0);
      });
      for (let i = 0; i < due.length; i += STATUS_READS) {
        await Promise.all(
          due.slice(i, i + STATUS_READS).map(async (r) => {
            const status = await requestStatus(oracle_url, r.requestId).catch(() => undefined);
            if (status !== undefined) pinStatuses.set(r.requestId, { status, at: Date.now() });
          }),
        );
      }
    } catch (e) {
      failed = `Could not read your pins again: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  if (generation !== filesGeneration) return;
  const records = w && pinRecords?.address === w.address ? pinRecords.records : [];
  const pins: PinOfFile[] = records.map((record) => ({ record, status: pinStatuses.get(record.requestId)?.status ?? null }));
  const empty = w ? 'Nothing added in this browser or pinned by this account yet.' : 'Nothing added in this browser yet; connect your wallet to list the pins it made.';
  files.render(fileRows(cars, pins), empty);
  if (failed) ui.filesHint.textContent = failed;
}

async function pin(): Promise<void> {
  if (!node || !config) return;
  say('');
  let info: CidInfo;
  try {
    info = await node.parseCid(ui.cid.value);
  } catch (e) {
    // Refused here: no transaction is sent for a malformed CID.
    say(e instanceof InvalidCidError ? `Not a valid CID: ${e.message}` : String(e), 'error');
    return;
  }
  const w = wallet ?? (await connect());
  say('Estimating the transaction…');
  // What it does and costs is shown before the wallet opens; then its state.
  let what = '';
  const tx = (state: string, text: string) => {
    ui.tx.hidden = false;
    ui.tx.dataset.state = state;
    ui.tx.textContent = text;
  };
  const hooks = {
    onQuote: (q: PinQuote) => {
      what = `Sending ${q.summary}.`;
      tx('quoted', what);
      say('Confirm the transaction in your wallet…');
    },
    onSent: (hash: string) => tx('sent', `${what} Sent ${hash}; waiting for it to be mined…`),
  };
  // Content added here is fetched from this browser when the oracle does not have it uploaded.
  const fromHere = serving && added?.root === info.string && !uploaded;
  const receipt = fromHere
    ? await w.pin(config, info.bytes, { origins: [`/p2p/${serving!.peerId}`] }, hooks)
    : await w.pin(config, info.bytes, undefined, hooks);
  tx('mined', `${what} Sent ${receipt.txHash}; mined in block ${receipt.block}: request #${receipt.requestId}.`);
  const signal = showRequest(receipt.requestId, info.string, receipt.requester, `${receipt.txHash} (block ${receipt.block})`);
  // The pin has its own address from now on (a reload, or a link, shows it again).
  location.hash = `#/pin/${receipt.requestId}`;
  ui.requestStatus.textContent = 'on chain — waiting for the oracle';
  const timeline = new Timeline(ui.requestTimeline);
  timeline.reach('queued');
  say(`Request #${receipt.requestId} is on chain.`);
  void showFiles();
  await followPin(config, receipt.requestId, info.string, timeline, signal);
}

/** The pin request the card shows, and what stops following it. */
let shown: { id: bigint; follow: AbortController } | undefined;

/** Shows request `id` on the card (stopping the one shown before); returns what stops following it. */
function showRequest(id: bigint, cid: string, requester: string, tx: string): AbortSignal {
  shown?.follow.abort();
  shown = { id, follow: new AbortController() };
  ui.request.hidden = false;
  ui.requestId.textContent = `#${id}`;
  ui.requestCid.textContent = cid;
  ui.requestRequester.textContent = requester;
  ui.requestTx.textContent = tx;
  ui.requestDealsTitle.hidden = true;
  ui.requestDealsSummary.hidden = true;
  ui.requestDeals.replaceChildren();
  ui.verifyBox.hidden = true;
  return shown.follow.signal;
}

/** A pin's address (`#/pin/{id}`): its request on the card, as the oracle has it, followed. */
async function openPin(id: bigint): Promise<void> {
  if (!config || shown?.id === id) return;
  let status: PinRequestStatus | null;
  try {
    status = await requestStatus(config.oracle_url, id);
  } catch (e) {
    say(e instanceof Error ? e.message : String(e), 'error');
    return;
  }
  if (!status) {
    say(`The oracle has not seen request #${id}.`, 'error');
    return;
  }
  const cid = status.cid ?? status.cid_bytes;
  const signal = showRequest(id, cid, status.requester, `${status.tx_hash} (block ${status.block})`);
  const timeline = new Timeline(ui.requestTimeline);
  // Its steps' times are not known here: shown without them.
  timeline.reach(status.status, status.reason, '');
  ui.requestStatus.dataset.status = status.status;
  ui.requestStatus.textContent = `${status.status}${status.piece_cid ? ` — piece ${status.piece_cid}` : ''}`;
  ui.request.scrollIntoView({ block: 'start' });
  await followPin(config, id, cid, timeline, signal).catch(() => undefined);
}

/** Follows request `id` to its end on the card, then its deals (with Verify once there are some). */
async function followPin(config: EstuaryConfig, id: bigint, cid: string, timeline: Timeline, signal: AbortSignal): Promise<void> {
  const final = await followRequest(
    config.oracle_url,
    id,
    (status) => {
      const detail = status.piece_cid ? ` — piece ${status.piece_cid}` : '';
      ui.requestStatus.textContent = `${status.status}${detail}`;
      ui.requestStatus.dataset.status = status.status;
      timeline.reach(status.status, status.reason);
    },
    { signal },
  );
  void showFiles();
  say(
    final.status === 'reported'
      ? `Request #${final.id} is pinned and reported on chain.`
      : `The oracle could not pin request #${final.id} (${final.status}): ${final.reason ?? 'unknown reason'}`,
    final.status === 'reported' ? 'info' : 'error',
  );
  if (final.status === 'reported') {
    const whole = final.piece_cid ? { id, piece: final.piece_cid, cid } : undefined;
    void showDeals(config.oracle_url, id, whole, signal);
  }
}

/** Dates of the deal epochs shown, as the chain places them. */
const dates = new Map<number, Date>();
/** The replicas shown last. */
let shownDeals: DealStatus[] = [];
/** Epochs placed for good (past ones), and those being asked. */
const placed = new Set<number>();
const asking = new Set<number>();

/** An epoch with its date when known: `7 Dec 2026, 05:02 (epoch 1234)`. */
function term(epoch: number): string {
  const date = dates.get(epoch);
  return date ? `${date.toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' })} (epoch ${epoch})` : `epoch ${epoch}`;
}

/** The pin's replicas, one a line: provider, state, deal, its term with dates, its last read. */
function renderDeals(deals: DealStatus[]): void {
  ui.requestDeals.replaceChildren(
    ...deals.map((d) => {
      const li = document.createElement('li');
      li.dataset.provider = d.provider;
      li.dataset.state = d.state;
      const deal = d.deal_id === null ? '' : ` · deal #${d.deal_id}`;
      const from = d.start_epoch === null ? '' : ` · from ${term(d.start_epoch)}`;
      const until = d.end_epoch === null ? '' : `${from ? ' to' : ' · until'} ${term(d.end_epoch)}`;
      const at = d.last_probe ? new Date(d.last_probe).toLocaleTimeString() : '';
      const probe =
        d.last_probe_ok === true
          ? ` · read back and checked at ${at}`
          : d.last_probe_ok === false
            ? ` · its last read back failed (${at})`
            : '';
      li.textContent = `${d.provider} · ${d.state}${deal}${from}${until}${probe}`;
      return li;
    }),
  );
}

/** Where the pin is on Filecoin: its replicas, followed until three are active. */
async function showDeals(oracleUrl: string, id: bigint, pin: typeof verifying, signal?: AbortSignal) {
  verifying = pin;
  ui.verifyBox.hidden = true;
  ui.verifySummary.textContent = '';
  ui.verifySteps.replaceChildren();
  ui.requestDealsTitle.hidden = false;
  ui.requestDealsSummary.hidden = false;
  ui.requestDealsSummary.textContent = 'Waiting for storage providers to take the deals…';
  try {
    await followDeals(oracleUrl, id, (deals) => {
      if (signal?.aborted) return;
      const active = new Set(deals.filter((d) => d.state === 'active').map((d) => d.provider));
      ui.requestDealsSummary.textContent =
        deals.length === 0
          ? 'Waiting for storage providers to take the deals…'
          : `${active.size} active replica${active.size === 1 ? '' : 's'} on Filecoin`;
      shownDeals = deals;
      renderDeals(deals);
      // Their terms as dates once the chain places them: a past epoch's date is its block's
      // (asked once); a future one is estimated again each time.
      const epochs = deals
        .flatMap((d) => [d.start_epoch, d.end_epoch])
        .filter((e): e is number => e !== null && !placed.has(e) && !asking.has(e));
      if (epochs.length && config) {
        for (const e of epochs) asking.add(e);
        const reader = wallet?.provider ?? chainReader(config);
        void epochTimes(reader, epochs)
          .then(({ head, dates: found }) => {
            for (const [epoch, date] of found) {
              dates.set(epoch, date);
              if (epoch <= head) placed.add(epoch);
            }
            // An epoch with no block (a null round, a pruned node) is not asked again.
            for (const e of epochs) if (e <= head && !found.has(e)) placed.add(e);
            if (!signal?.aborted && found.size > 0) renderDeals(shownDeals);
          })
          .catch(() => undefined)
          .finally(() => {
            for (const e of epochs) asking.delete(e);
          });
      }
      if (verifying && deals.some((d) => d.deal_id !== null)) ui.verifyBox.hidden = false;
    });
  } catch (e) {
    if (signal?.aborted) return;
    ui.requestDealsSummary.textContent = `The deals could not be read: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/**
 * Verify: is the pin's piece inside its deals? The oracle gives the proof; what it proves is
 * checked here and on chain: the piece this browser computed (when it added the content), the
 * piece recorded on chain for the request, the FRC-0058 proof in WebAssembly, and each deal as
 * the storage market gives it (its piece, its state, and PoDSI's checks).
 */
async function verifyPin(): Promise<void> {
  const pin = verifying;
  if (!pin || !config || !node) return;
  const { id, piece, cid } = pin;
  ui.verify.disabled = true;
  ui.verifySummary.textContent = 'Checking…';
  delete ui.verifySummary.dataset.proven;
  ui.verifySteps.replaceChildren();
  // A check passed (✓) or failed (✗), or what is taken on the oracle's word (null: ℹ).
  const step = (text: string, ok: boolean | null) => {
    const li = document.createElement('li');
    li.dataset.ok = String(ok);
    li.textContent = `${ok === null ? 'ℹ' : ok ? '✓' : '✗'} ${text}`;
    ui.verifySteps.append(li);
  };
  try {
    // What the deals hold: the pin's piece, or each part of a pin split across pieces (known
    // once its deals are ordered, after it is reported: asked now).
    const status = await requestStatus(config.oracle_url, id);
    const parts = status?.pieces?.length ? [...status.pieces].sort((a, b) => a.seq - b.seq) : undefined;
    const pieces = parts ? parts.map((p) => p.piece_cid) : [piece];
    // Each piece's proof and deals; a part in no deal yet fails on its own line.
    const inclusions = await Promise.all(
      pieces.map((p) =>
        pieceInclusion(config!.oracle_url, p).then(
          (inclusion) => {
            if (inclusion.piece_cid !== p) throw new EstuaryError(`The oracle answered for piece ${inclusion.piece_cid}, not ${p}.`);
            return inclusion;
          },
          (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
        ),
      ),
    );
    let computed = true;
    if (added?.root === cid) {
      computed = added.pieceCidV2 === piece;
      step(
        computed
          ? 'This browser computed the same piece for the content it added.'
          : `This browser computed piece ${added.pieceCidV2} for the content it added, not ${piece}.`,
        computed,
      );
    }
    const reader = wallet?.provider ?? chainReader(config);
    const whole = pieceCommitment(piece);
    const recorded = await recordedOnChain(reader, config.contracts.EstuaryPinning, id, whole);
    step(
      recorded
        ? `On chain, EstuaryPinning recorded piece ${piece} (${size(whole.size_pc)}) for request #${id}, as the oracle reported it pinned.`
        : `EstuaryPinning recorded another piece for request #${id} than ${piece}.`,
      recorded,
    );
    const split = parts !== undefined;
    // A split pin's parts: that they tile its CAR is checked here; that they are its bytes, by
    // this browser when it has the CAR (each part's piece computed from its span), otherwise it
    // is the oracle's word.
    let partsHere = false;
    if (parts) {
      let at = 0;
      for (const p of parts) at = p.offset === at ? at + p.length : NaN;
      const tiled = at === status?.car_size;
      step(
        tiled
          ? `It is larger than a deal: it is kept as ${parts.length} pieces, spans of its CAR's ${size(at)} in order, each in deals of its own.`
          : `The parts the oracle names do not tile the pin's CAR (${size(status?.car_size ?? 0)}).`,
        tiled,
      );
      if (tiled && added?.root === cid && computed) {
        const car = await carFile(added.car);
        const found = await Promise.all(parts.map((p) => node!.pieceOf(car.slice(p.offset, p.offset + p.length))));
        partsHere = found.every((f, i) => f.pieceCidV2 === parts[i]!.piece_cid);
        step(
          partsHere
            ? 'This browser computed each part\'s piece from the spans of the CAR it added: the same parts.'
            : 'This browser computed other pieces for the spans of the CAR it added than the oracle names.',
          partsHere,
        );
      } else if (tiled) {
        step("That each part is the pin's bytes is the oracle's word here (this browser does not have the CAR).", null);
      }
      if (!tiled || (added?.root === cid && !partsHere)) computed = false;
    }
    const dealStateView = config.contracts.DealStateView;
    if (!dealStateView) throw new EstuaryError('The stack names no DealStateView contract to check deals with.');
    // Per piece: the deals that store it now, and those published but not sealed yet.
    let stored = Infinity;
    let sealing = Infinity;
    for (const [i, inclusion] of inclusions.entries()) {
      const part = split ? `Part ${i + 1} of ${pieces.length} (${pieces[i]}): ` : '';
      if (inclusion instanceof Error) {
        step(`${part}${inclusion.message}`, false);
        stored = 0;
        sealing = 0;
        continue;
      }
      const agg = inclusion.aggregate;
      if (agg) {
        const local = await node.verifyInclusion(inclusion);
        step(
          `${part}In this browser: the piece is inside aggregate ${agg.piece_cid} (${size(local.aggregateSize)}) at byte ${local.offset}, and the aggregate's index lists it (the FRC-0058 proof, checked in WebAssembly).`,
          true,
        );
      } else {
        step(`${part}The deals hold the piece itself, not an aggregate: there is no proof to check in the browser.`, true);
      }
      const checks = await checkDealsOnChain(reader, dealStateView, inclusion);
      for (const c of checks) {
        const what =
          c.holds === 'segment'
            ? `holds the aggregate, and PoDSI accepts the proof: the piece starts at byte ${c.offset} of the deal's data`
            : 'holds the piece itself';
        step(
          c.proven
            ? `${part}On chain, the storage market says deal #${c.dealId} at ${c.provider} (${c.state}) ${what}.`
            : `${part}Deal #${c.dealId} at ${c.provider} (${c.state}) does not prove it: ${c.failure}.`,
          c.proven,
        );
      }
      stored = Math.min(stored, checks.filter((c) => c.stored).length);
      sealing = Math.min(sealing, checks.filter((c) => c.proven && c.state === 'published').length);
    }
    const ok = recorded && computed;
    if (!ok) [stored, sealing] = [0, 0];
    const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
    const subject = !split
      ? 'your piece is'
      : partsHere
        ? `each of the ${pieces.length} parts of your pin is`
        : `each of the ${pieces.length} parts the oracle names for your pin is`;
    ui.verifySummary.dataset.proven = String(stored);
    ui.verifySummary.textContent =
      stored + sealing > 0
        ? `Proven: ${subject} inside ${split ? 'at least ' : ''}${plural(stored, 'active Filecoin deal')}` +
          (sealing > 0 ? `, and ${plural(sealing, 'published deal')} not sealed yet` : '') +
          ', checked here and by the storage market on chain.'
        : 'Not proven: see what failed below.';
  } catch (e) {
    ui.verifySummary.dataset.proven = 'error';
    ui.verifySummary.textContent = `Could not verify: ${e instanceof Error ? e.message : String(e)}`;
  } finally {
    ui.verify.disabled = false;
  }
}

/** The steps a pin request goes through, with the oracle's state that marks each one. */
const STEPS: { state: RequestState; label: string }[] = [
  { state: 'queued', label: 'On chain' },
  { state: 'fetching', label: 'Fetching the DAG' },
  { state: 'pinned', label: 'Pinned' },
  { state: 'packed', label: 'Packed into a piece' },
  { state: 'reported', label: 'Reported on chain' },
];

/**
 * A request's live timeline: each step is marked done, with the time it was first seen, once
 * the request reaches it or a later one (polling can miss a short step); a failure is added as
 * its own step.
 */
class Timeline {
  #items: HTMLLIElement[];
  #seen = new Map<number, string>();

  constructor(private list: HTMLOListElement) {
    this.#items = STEPS.map(({ state, label }) => {
      const li = document.createElement('li');
      li.dataset.step = state;
      li.dataset.state = 'todo';
      li.textContent = label;
      return li;
    });
    list.replaceChildren(...this.#items);
  }

  /** Marks `state` reached now (at `time`; '' when not known, as for a pin opened later). */
  reach(state: RequestState, error?: string | null, time = new Date().toLocaleTimeString()): void {
    const at = STEPS.findIndex((s) => s.state === state);
    if (at < 0) {
      // failing (retrying), failed, quarantined, cancelled: shown after the last step reached.
      const note = state === 'failing' ? 'retrying' : state;
      const li = this.list.querySelector<HTMLLIElement>('li[data-step="problem"]') ?? document.createElement('li');
      li.dataset.step = 'problem';
      li.dataset.state = state === 'failing' ? 'current' : 'failed';
      li.textContent = `${note}${error ? `: ${error}` : ''}${time ? ` · ${time}` : ''}`;
      this.list.append(li);
      return;
    }
    this.list.querySelector('li[data-step="problem"]')?.remove();
    this.#items.forEach((li, i) => {
      if (i <= at && !this.#seen.has(i)) this.#seen.set(i, time);
      const done = i < at || (i === at && (state === 'reported' || i === 0));
      li.dataset.state = done ? 'done' : i === at ? 'current' : 'todo';
      const seen = this.#seen.get(i);
      li.textContent = seen ? `${STEPS[i]!.label} · ${seen}` : STEPS[i]!.label;
    });
  }
}

async function guarded(work: () => Promise<unknown>): Promise<void> {
  busy = true;
  refresh();
  try {
    await work();
  } catch (e) {
    say(e instanceof Error ? e.message : String(e), 'error');
    console.error(e);
  } finally {
    busy = false;
    refresh();
  }
}

async function pieceOfFile(): Promise<void> {
  const file = ui.pieceFile.files?.[0];
  if (!node || !file) return;
  ui.pieceResult.hidden = true;
  ui.pieceMessage.textContent = '';
  ui.pieceProgress.hidden = false;
  ui.pieceProgress.value = 0;
  const started = performance.now();
  try {
    const piece = await node.pieceOf(file, {
      onProgress: ({ bytes }) => (ui.pieceProgress.value = file.size ? bytes / file.size : 1),
    });
    const seconds = (performance.now() - started) / 1000;
    ui.pieceV2.textContent = piece.pieceCidV2;
    ui.pieceV1.textContent = piece.pieceCidV1;
    ui.piecePadded.textContent = `${piece.paddedSize} bytes (payload ${piece.payloadSize})`;
    ui.pieceSpeed.textContent = `${(file.size / 1e6 / Math.max(seconds, 1e-3)).toFixed(1)} MB/s`;
    ui.pieceResult.hidden = false;
  } catch (e) {
    ui.pieceMessage.textContent = e instanceof Error ? e.message : String(e);
    ui.pieceMessage.className = 'message error';
  } finally {
    ui.pieceProgress.hidden = true;
  }
}

let added: AddResult | undefined;
let uploaded = false;
/** This browser's libp2p node, serving its CARs' blocks to the oracle (once connected). */
let serving: ServeStatus | undefined;

/** Connects the node to the oracle over libp2p, so pins of added content need no upload. */
async function startServing(): Promise<void> {
  if (!node || !config) return;
  ui.serveStatus.textContent = 'Connecting to the oracle over libp2p…';
  try {
    serving = await node.serve(config.oracle_url);
    ui.serveStatus.textContent = `Serving this browser's uploads over libp2p as ${serving.peerId}.`;
    ui.serveStatus.dataset.peer = serving.peerId;
  } catch (e) {
    ui.serveStatus.textContent = `Not serving over libp2p (upload instead): ${e instanceof Error ? e.message : String(e)}`;
  }
  refreshAdd();
}
/** Cancels the add or upload under way. */
let cancel: AbortController | undefined;

function cancellable(): AbortSignal {
  cancel = new AbortController();
  ui.cancelAdd.hidden = false;
  return cancel.signal;
}

function doneCancellable(): void {
  cancel = undefined;
  ui.cancelAdd.hidden = true;
}

function sayAdd(text: string, kind: 'info' | 'error' = 'info'): void {
  ui.addMessage.textContent = text;
  ui.addMessage.className = `message ${kind}`;
}

function size(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} bytes` : `${v.toFixed(1)} ${units[u]}`;
}

function refreshAdd(): void {
  ui.upload.disabled = busy || !added || uploaded || !config;
  // Pinnable once the oracle can fetch it: uploaded, or served from this browser over libp2p.
  ui.pinAdded.disabled = busy || !added || !(uploaded || serving) || !config;
}

/** Shows `car` as the content added: its root, piece, sizes and gateway link. */
function showAdded(car: AddResult): void {
  ui.addRoot.textContent = car.root;
  ui.addPiece.textContent = car.pieceCidV2;
  ui.addSize.textContent = `${size(car.fileBytes)} in ${car.blocks} blocks; CAR ${size(car.carSize)}`;
  ui.addLink.href = config ? `${config.oracle_url}/ipfs/${car.root}?format=car` : '#';
  ui.addResult.hidden = false;
}

async function addFiles(entries: AddEntry[], folder: boolean): Promise<void> {
  if (!node || entries.length === 0) return;
  added = undefined;
  uploaded = false;
  ui.addResult.hidden = true;
  sayAdd('');
  ui.addProgress.hidden = false;
  ui.addProgress.value = 0;
  try {
    added = await node.add(entries, {
      folder,
      profile: ui.addProfile.value as ImportProfile,
      signal: cancellable(),
      onProgress: ({ bytes, total, blocks, stored }) => {
        ui.addProgress.value = total ? bytes / total : 1;
        ui.addStats.textContent = `Read ${size(bytes)} of ${size(total)} · ${blocks} blocks · ${size(stored)} stored`;
      },
    });
    showAdded(added);
    sayAdd('Ready to upload.');
    void showFiles();
  } catch (e) {
    sayAdd(e instanceof Error ? e.message : String(e), 'error');
  } finally {
    doneCancellable();
    ui.addProgress.hidden = true;
    refreshAdd();
  }
}

/** Where a session from signing in is kept across reloads (it ends by itself). */
const SESSION_KEY = 'estuary.session';

/**
 * A session at the oracle for the connected account: the one kept from an earlier sign-in if it
 * is this account's and has time left, else a new one (the wallet signs an EIP-4361 message).
 */
async function session(): Promise<Session> {
  if (!config) throw new EstuaryError('The page has not loaded its configuration.');
  const w = wallet ?? (await connect());
  try {
    const kept = JSON.parse(localStorage.getItem(SESSION_KEY) ?? 'null') as Session | null;
    if (kept && kept.account.toLowerCase() === w.address.toLowerCase() && Date.parse(kept.expires) > Date.now() + 60_000) {
      return kept;
    }
  } catch {
    // Nothing usable kept: sign in.
  }
  sayAdd('Sign in with your wallet to upload…');
  const fresh = await w.signIn(config);
  localStorage.setItem(SESSION_KEY, JSON.stringify(fresh));
  return fresh;
}

async function uploadAdded(): Promise<void> {
  if (!node || !added || !config) return;
  // Uploads belong to an account: this wallet's, signed in (kept until the session ends).
  const { token } = await session();
  ui.addProgress.hidden = false;
  sayAdd('Uploading…');
  try {
    const done = await node.upload(added.car, config.oracle_url, {
      auth: { token },
      signal: cancellable(),
      onProgress: ({ bytes, total }) => (ui.addProgress.value = total ? bytes / total : 1),
    });
    uploaded = true;
    ui.upload.dataset.done = 'true';
    sayAdd(`Uploaded: the oracle verified every block of ${done.root}.`);
  } finally {
    doneCancellable();
    void showFiles();
    ui.addProgress.hidden = true;
    refreshAdd();
  }
}

function entriesFromInput(input: HTMLInputElement, folder: boolean): AddEntry[] {
  return Array.from(input.files ?? [], (file) => {
    // A folder's files carry "folder/sub/name": keep the path inside the folder.
    const rel = folder ? file.webkitRelativePath.split('/').slice(1).join('/') : file.name;
    return { path: rel || file.name, file };
  });
}

async function entriesFromDrop(items: DataTransferItemList): Promise<{ entries: AddEntry[]; folder: boolean }> {
  const entries: AddEntry[] = [];
  const walk = async (entry: FileSystemEntry, path: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((ok, fail) => (entry as FileSystemFileEntry).file(ok, fail));
      entries.push({ path, file });
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((ok, fail) => reader.readEntries(ok, fail));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child, path ? `${path}/${child.name}` : child.name);
      }
    }
  };
  const roots = Array.from(items, (i) => i.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  if (roots.length === 1 && roots[0]!.isDirectory) {
    await walk(roots[0]!, '');
    return { entries, folder: true };
  }
  for (const root of roots) await walk(root, root.name);
  return { entries, folder: entries.length > 1 };
}

ui.cancelAdd.addEventListener('click', () => cancel?.abort());
ui.verify.addEventListener('click', () => void verifyPin());

ui.filesInput.addEventListener('change', () => {
  const entries = entriesFromInput(ui.filesInput, false);
  void addFiles(entries, entries.length > 1);
});
ui.folderInput.addEventListener('change', () => void addFiles(entriesFromInput(ui.folderInput, true), true));
ui.drop.addEventListener('dragover', (event) => {
  event.preventDefault();
  ui.drop.classList.add('over');
});
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.drop.classList.remove('over');
  if (!event.dataTransfer) return;
  void entriesFromDrop(event.dataTransfer.items).then(({ entries, folder }) => addFiles(entries, folder));
});
ui.upload.addEventListener('click', () => {
  busy = true;
  refreshAdd();
  void uploadAdded()
    .catch((e: unknown) => sayAdd(e instanceof Error ? e.message : String(e), 'error'))
    .finally(() => {
      busy = false;
      refreshAdd();
      refresh();
    });
});
ui.pinAdded.addEventListener('click', () => {
  if (!added) return;
  ui.cid.value = added.root;
  void validate();
  void guarded(pin);
});
for (const button of document.querySelectorAll<HTMLButtonElement>('button.copy')) {
  button.addEventListener('click', () => {
    const text = document.getElementById(button.dataset.copy ?? '')?.textContent ?? '';
    void navigator.clipboard?.writeText(text);
  });
}

async function download(): Promise<void> {
  if (!node || !config) return;
  const cid = ui.downloadCid.value.trim();
  ui.downloadLink.hidden = true;
  ui.downloadMessage.className = 'message';
  ui.downloadMessage.textContent = 'Downloading…';
  try {
    const { file, from, peerError, fromProviders } = await node.download(cid, config.oracle_url, {
      from: ui.downloadFrom.value as DownloadSource,
      onProgress: ({ bytes }) => (ui.downloadMessage.textContent = `Verified ${size(bytes)}…`),
    });
    ui.downloadLink.href = URL.createObjectURL(file);
    ui.downloadLink.download = cid;
    ui.downloadLink.hidden = false;
    const source =
      from === 'peer'
        ? 'from the oracle over libp2p'
        : fromProviders
          ? "from the oracle's gateway, which read it from the storage providers holding its deals (the oracle keeps no copy of it now)"
          : "from the oracle's gateway";
    ui.downloadMessage.dataset.from = fromProviders ? 'providers' : from;
    const fallback = peerError ? ` (the peer could not: ${peerError})` : '';
    ui.downloadMessage.textContent = `Verified: ${size(file.size)} ${source}${fallback}, every block checked.`;
  } catch (e) {
    ui.downloadMessage.textContent = e instanceof Error ? e.message : String(e);
    ui.downloadMessage.className = 'message error';
  }
}

ui.downloadForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void download();
});

ui.cid.addEventListener('input', () => void validate());
ui.pieceFile.addEventListener('change', () => void pieceOfFile());
ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  void guarded(pin);
});
ui.connect.addEventListener('click', () => void guarded(connect));
ui.switchChain.addEventListener('click', () =>
  void guarded(async () => {
    if (!config || !window.ethereum) return;
    await switchChain(window.ethereum, config);
    await connect();
  }),
);

async function main(): Promise<void> {
  refresh();
  const [loadedNode, loadedConfig] = await Promise.allSettled([EstuaryNode.start(), loadConfig()]);
  if (loadedNode.status === 'fulfilled') {
    node = loadedNode.value;
    // The running node, for the browser console and the end-to-end tests (memory, say).
    (window as Window & { estuaryNode?: EstuaryNode }).estuaryNode = node;
    ui.nodeStatus.textContent = 'Browser node ready.';
    ui.nodeStatus.dataset.ready = 'true';
  } else {
    ui.nodeStatus.textContent = String(loadedNode.reason);
  }
  if (loadedConfig.status === 'fulfilled') {
    config = loadedConfig.value;
  } else {
    say(String(loadedConfig.reason), 'error');
  }
  refresh();
  refreshAdd();
  void validate();
  void startServing();
  const providers = config ? new ProvidersPage(config) : undefined;
  // The pages with charts (uPlot) are loaded when first shown: the files page does not wait.
  // A page whose script cannot load (an ad blocker, a lost connection) says so on itself and is
  // tried again when next shown; the others go on.
  const loaded = config;
  const loadedPages = new Set<string>();
  const lazy = <T>(name: string, load: () => Promise<T>, status: string) => {
    let page: Promise<T> | undefined;
    return (): Promise<T> =>
      (page ??= load().then((p) => {
        loadedPages.add(name);
        return p;
      }).catch((e: unknown) => {
        page = undefined;
        const where = el(status);
        where.textContent = `This page could not load (${e instanceof Error ? e.message : String(e)}). Show it again to retry.`;
        where.className = 'message error';
        throw e;
      }));
  };
  const operator = lazy('operator', () => import('./pages/operator').then((m) => new m.OperatorPage(loaded!)), 'operator-status');
  const perpetual = lazy(
    'perpetual',
    () => import('./pages/perpetual').then((m) => new m.PerpetualPage(loaded!, () => wallet, connect, () => added)),
    'perpetual-message',
  );
  const dao = lazy(
    'dao',
    () => import('./pages/datadao').then((m) => new m.DataDaoPage(loaded!, () => wallet, connect, () => added)),
    'dao-message',
  );
  // A pin's address shows it on the files page, now and whenever the address changes to one.
  const pinned = () => {
    const id = pinOfAddress();
    if (id !== undefined) void openPin(id);
  };
  window.addEventListener('hashchange', pinned);
  pinned();
  // *Your files* follows its rows through deals while the files page is shown.
  const filesPoller = new Poller();
  startRouter((entered, left) => {
    if (left === 'files') filesPoller.stop();
    // Not while the tab is hidden.
    if (entered === 'files') filesPoller.start(() => (document.hidden ? Promise.resolve() : showFiles()), FILES_REFRESH_MS);
    const pages = { operator, perpetual, dao } as const;
    // Left: only a page that loaded is told (one that failed is not loaded again for it).
    if (left && left in pages && loadedPages.has(left)) {
      void pages[left as keyof typeof pages]()
        .then((p) => p.leave())
        .catch(() => undefined);
    }
    if (!loaded) return;
    if (entered in pages) {
      void pages[entered as keyof typeof pages]()
        .then((p) => p.enter())
        .catch(() => undefined);
    }
    if (entered === 'providers') void providers?.show();
  });
}

void main();
