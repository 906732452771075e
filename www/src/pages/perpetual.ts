/**
 * The perpetual storage page (`#/perpetual`): a client's `PerpetualStorage` orders. Create one
 * for a piece (prefilled from the content this browser added last), with what it costs shown
 * before the wallet opens; fund it, change its bounty or replicas, suspend, resume or cancel it,
 * withdraw the refund; and see its replicas over time (uPlot). Followed every 3 s while shown,
 * with the wallet already connected (following never asks the wallet to connect): the orders'
 * events are read once, then only the blocks since.
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatEther, parseEther } from 'ethers';
import {
  type AddResult,
  type EstuaryConfig,
  Perpetual,
  chainReader,
  coinOf,
  type PerpetualOrder,
  type TxDone,
  type Wallet,
} from '../sdk';
import { Poller, REFRESH_MS, TxPanel, el } from './shared';

export class PerpetualPage {
  #config: EstuaryConfig;
  #connected: () => Wallet | undefined;
  #connect: () => Promise<Wallet>;
  #added: () => AddResult | undefined;
  #ui = {
    form: el<HTMLFormElement>('order-form'),
    piece: el<HTMLInputElement>('order-piece'),
    payload: el<HTMLInputElement>('order-payload'),
    padded: el<HTMLInputElement>('order-padded'),
    car: el<HTMLInputElement>('order-car'),
    replicas: el<HTMLInputElement>('order-replicas'),
    term: el<HTMLInputElement>('order-term'),
    bounty: el<HTMLInputElement>('order-bounty'),
    funding: el<HTMLInputElement>('order-funding'),
    origins: el<HTMLTextAreaElement>('order-origins'),
    estimate: el('order-estimate'),
    create: el<HTMLButtonElement>('order-create'),
    message: el('perpetual-message'),
    tx: el('perpetual-tx'),
    hint: el('orders-hint'),
    withdraw: el<HTMLButtonElement>('withdraw'),
    orders: el<HTMLUListElement>('orders'),
    chart: el('order-chart'),
  };
  #poller = new Poller();
  #tx: TxPanel;
  #charted: bigint | undefined;
  #plot: uPlot | undefined;
  #prefilled: string | undefined;
  /** The orders read so far, for the wallet they were read for: ids with their blocks, and the
   *  last block scanned. */
  #seen: { address: string; orders: { id: bigint; block: number }[]; scanned: number } | undefined;
  /** Whether the person typed the funding (then it is not reset to the default). */
  #fundingEdited = false;

  /**
   * `connected` gives the wallet connected now (read with, never asked to connect); `connect`
   * asks for one, for a transaction; `added` the content this browser added last.
   */
  constructor(
    config: EstuaryConfig,
    connected: () => Wallet | undefined,
    connect: () => Promise<Wallet>,
    added: () => AddResult | undefined,
  ) {
    this.#config = config;
    this.#connected = connected;
    this.#connect = connect;
    this.#added = added;
    const ui = this.#ui;
    this.#tx = new TxPanel(ui.message, ui.tx, [ui.create]);
    for (const input of [ui.replicas, ui.term, ui.bounty, ui.funding]) input.addEventListener('input', () => this.#estimate());
    ui.replicas.addEventListener('input', () => this.#defaultFunding());
    ui.bounty.addEventListener('input', () => this.#defaultFunding());
    ui.funding.addEventListener('input', () => {
      this.#fundingEdited = ui.funding.value.trim() !== '';
    });
    ui.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.#guard(() => this.#create());
    });
    ui.withdraw.addEventListener('click', () =>
      void this.#guard(async () => {
        const p = await this.#perpetual();
        const done = await p.withdraw(this.#tx.hooks());
        this.#tx.say('Your refunds were sent to your wallet.');
        return done;
      }),
    );
  }

  /** Shown: prefill, read the orders, and follow them. */
  async enter(): Promise<void> {
    this.leave();
    const generation = this.#poller.generation;
    this.#prefill();
    const wallet = this.#connected();
    if (!wallet) {
      this.#ui.hint.textContent = 'Connect your wallet to see your orders (the Files page, or Create order).';
    }
    try {
      const limits = await Perpetual.limits(this.#config, wallet?.provider ?? chainReader(this.#config));
      if (!this.#ui.term.value) this.#ui.term.value = String(limits.minTerm);
      this.#ui.term.min = String(limits.minTerm);
      this.#ui.term.max = String(limits.maxTerm);
      this.#ui.replicas.max = String(limits.maxReplicas);
    } catch (e) {
      this.#tx.say(e instanceof Error ? e.message : String(e), 'error');
      return;
    }
    this.#defaultFunding();
    this.#poller.start(
      async () => {
        if (!this.#tx.busy) await this.#showOrders();
      },
      REFRESH_MS,
      generation,
    );
  }

  /** Hidden: stop following. */
  leave(): void {
    this.#poller.stop();
  }

  #prefill(): void {
    const added = this.#added();
    if (!added || this.#prefilled === added.car) return;
    this.#prefilled = added.car;
    const ui = this.#ui;
    ui.piece.value = added.pieceCidV1;
    ui.payload.value = added.root;
    ui.padded.value = String(added.paddedSize);
    ui.car.value = String(added.carSize);
    // The oracle serves a pinned piece's CAR by its piece CID: providers download it there.
    ui.origins.value = `${this.#config.oracle_url}/piece/${added.pieceCidV2}`;
  }

  #coin(wei: bigint): string {
    return coinOf(wei, this.#config.chain_id);
  }

  #defaultFunding(): void {
    if (this.#fundingEdited) return this.#estimate();
    const bounty = this.#parse(this.#ui.bounty.value);
    const replicas = Number(this.#ui.replicas.value);
    // A claim locks the bounty as it has risen while the order lacked replicas: up to twice it.
    if (bounty !== undefined && replicas > 0) this.#ui.funding.value = formatEther(2n * bounty * BigInt(replicas));
    this.#estimate();
  }

  #parse(fil: string): bigint | undefined {
    try {
      return parseEther(fil.trim());
    } catch {
      return undefined;
    }
  }

  /** What the order will cost, in words, before anything is signed. */
  #estimate(): void {
    const ui = this.#ui;
    const replicas = Number(ui.replicas.value);
    const term = Number(ui.term.value);
    const bounty = this.#parse(ui.bounty.value);
    const funding = this.#parse(ui.funding.value);
    if (!(replicas > 0) || !(term > 0) || bounty === undefined || funding === undefined) {
      ui.estimate.textContent = 'Give the replicas, term, bounty and funding to see the cost.';
      return;
    }
    const perTerm = bounty * BigInt(replicas);
    const epochSecs = this.#config.chain_id === 31337 ? 1 : 30;
    const hours = (term * epochSecs) / 3600;
    const terms = perTerm > 0n ? Number((funding * 100n) / perTerm) / 100 : 0;
    ui.estimate.textContent =
      `${replicas} replicas × ${this.#coin(bounty)} = ${this.#coin(perTerm)} a term of ${term} epochs ` +
      `(about ${hours < 48 ? `${hours.toFixed(1)} hours` : `${(hours / 24).toFixed(0)} days`}). ` +
      `A claim locks the bounty risen by up to 100 % while the order lacks replicas, so a term costs ` +
      `${this.#coin(perTerm)} to ${this.#coin(2n * perTerm)}. Funding ${this.#coin(funding)} now covers ` +
      `${terms} term${terms === 1 ? '' : 's'} at the base bounty; gas is shown before your wallet opens.`;
  }

  /** For a transaction: asks the wallet to connect if it is not. */
  async #perpetual(): Promise<Perpetual> {
    return new Perpetual(this.#config, this.#connected() ?? (await this.#connect()));
  }

  /** Runs one transaction at a time; shows it mined, or says why it failed. */
  #guard(work: () => Promise<TxDone | undefined>): Promise<void> {
    return this.#tx.run(work, () => this.#showOrders());
  }

  async #create(): Promise<TxDone> {
    const ui = this.#ui;
    const bounty = this.#parse(ui.bounty.value);
    const funding = this.#parse(ui.funding.value);
    if (bounty === undefined || funding === undefined) throw new Error('The bounty and the funding are amounts of FIL, e.g. 0.01.');
    const p = await this.#perpetual();
    const done = await p.createOrder(
      {
        pieceCid: ui.piece.value.trim(),
        payloadCid: ui.payload.value.trim(),
        paddedSize: Number(ui.padded.value),
        carSize: Number(ui.car.value),
        replicas: Number(ui.replicas.value),
        bounty,
        term: Number(ui.term.value),
        origins: ui.origins.value.split('\n').map((o) => o.trim()).filter(Boolean),
      },
      funding,
      this.#tx.hooks(),
    );
    this.#charted = done.orderId;
    this.#tx.say(`Order #${done.orderId} is on chain; storage providers can claim its slots.`);
    return done;
  }

  async #showOrders(): Promise<void> {
    const ui = this.#ui;
    const wallet = this.#connected();
    if (!wallet) return;
    const p = new Perpetual(this.#config, wallet);
    let orders: PerpetualOrder[];
    try {
      // The orders' creations: read once, then only the blocks since.
      if (this.#seen?.address !== wallet.address) this.#seen = { address: wallet.address, orders: [], scanned: (this.#config.deploy_block ?? 0) - 1 };
      const seen = this.#seen;
      const latest = await p.currentBlock();
      if (latest > seen.scanned) {
        const found = await p.ordersOf(this.#config, wallet.address, seen.scanned + 1, latest);
        seen.orders = [...found, ...seen.orders];
        seen.scanned = latest;
      }
      orders = await Promise.all(seen.orders.slice(0, 50).map((o) => p.getOrder(o.id)));
      const refunds = await p.withdrawable();
      ui.withdraw.hidden = refunds === 0n;
      ui.withdraw.textContent = `Withdraw ${this.#coin(refunds)} of refunds`;
    } catch (e) {
      ui.hint.textContent = `Your orders could not be read: ${e instanceof Error ? e.message : String(e)}`;
      return;
    }
    ui.hint.textContent = orders.length ? '' : 'No orders from this wallet yet.';
    // Not while the person is typing in an order's fields: the rows would lose it.
    const typing = document.activeElement instanceof HTMLInputElement && ui.orders.contains(document.activeElement);
    if (!typing) ui.orders.replaceChildren(...orders.map((o) => this.#row(p, o)));
    const charted = this.#charted ?? orders[0]?.id;
    const from = this.#seen?.orders.find((o) => o.id === charted)?.block;
    if (charted !== undefined) await this.#chart(p, charted, from);
  }

  #row(p: Perpetual, o: PerpetualOrder): HTMLLIElement {
    const li = document.createElement('li');
    li.dataset.order = String(o.id);
    li.dataset.active = String(o.active);
    li.dataset.inUse = String(o.inUse);
    const state = o.cancelled ? 'cancelled' : o.suspended ? 'suspended' : 'open';
    li.dataset.state = state;
    const text = document.createElement('span');
    text.textContent =
      `#${o.id} · ${o.pieceCid} · ${o.active} of ${o.replicas} replicas active (${o.inUse} claimed)` +
      // Slots in use above the target (a target lowered, or a replica near its term's end renewed
      // at another SP): none opens until they are vacated.
      (o.inUse > o.replicas ? ` · ${o.inUse - o.replicas} in use above the target` : '') +
      ` · balance ${this.#coin(o.balance)} · bounty ${this.#coin(o.bounty)} a term · ${state}` +
      (o.holders.length ? ` · at ${o.holders.join(', ')}` : '');
    li.append(text);
    if (o.cancelled) return li;
    const button = (label: string, testid: string, work: () => Promise<TxDone | undefined>) =>
      this.#tx.button(label, testid, work, () => this.#showOrders());
    const replicas = document.createElement('input');
    replicas.type = 'number';
    replicas.min = '1';
    replicas.max = '32';
    replicas.value = String(o.replicas);
    replicas.setAttribute('aria-label', `Replicas of order ${o.id}`);
    replicas.dataset.testid = 'order-set-replicas';
    const bounty = document.createElement('input');
    bounty.value = formatEther(o.bounty);
    bounty.setAttribute('aria-label', `Bounty of order ${o.id} (FIL a term)`);
    bounty.dataset.testid = 'order-set-bounty';
    const controls = document.createElement('div');
    controls.className = 'order-controls';
    controls.append(
      button(`Fund a term (${this.#coin(o.bounty * BigInt(o.replicas))})`, 'order-fund', () => p.fund(o.id, o.bounty * BigInt(o.replicas), this.#tx.hooks())),
      replicas,
      button('Set replicas', 'order-replicas-set', () => p.setReplicas(o.id, Number(replicas.value), this.#tx.hooks())),
      bounty,
      button('Set bounty', 'order-bounty-set', async () => {
        const wei = this.#parse(bounty.value);
        if (wei === undefined) throw new Error('The bounty is an amount of FIL, e.g. 0.01.');
        return p.setBounty(o.id, wei, this.#tx.hooks());
      }),
      button(o.suspended ? 'Resume' : 'Suspend', 'order-suspend', () => p.setSuspended(o.id, !o.suspended, this.#tx.hooks())),
      button('Cancel and refund', 'order-cancel', () => p.cancel(o.id, this.#tx.hooks())),
      button('Chart', 'order-chart-show', async () => {
        this.#charted = o.id;
        return undefined;
      }),
    );
    li.append(controls);
    return li;
  }

  async #chart(p: Perpetual, id: bigint, fromBlock?: number): Promise<void> {
    const ui = this.#ui;
    let h;
    try {
      h = await p.history(this.#config, id, fromBlock);
    } catch (e) {
      this.#plot?.destroy();
      this.#plot = undefined;
      delete ui.chart.dataset.drawn;
      ui.chart.textContent = `The order's replicas could not be read: ${e instanceof Error ? e.message : String(e)}`;
      return;
    }
    // Up to now: the last counts hold until the current block.
    const now = await p.currentBlock();
    const blocks = [...h.blocks, now];
    const data: uPlot.AlignedData = [blocks, [...h.inUse, h.inUse.at(-1) ?? 0], [...h.active, h.active.at(-1) ?? 0]];
    ui.chart.dataset.order = String(id);
    ui.chart.dataset.points = String(h.blocks.length);
    ui.chart.dataset.active = String(h.active.at(-1) ?? 0);
    const width = Math.max(240, ui.chart.clientWidth - 8);
    if (this.#plot && ui.chart.dataset.drawn === String(id)) {
      this.#plot.setData(data);
      return;
    }
    this.#plot?.destroy();
    ui.chart.replaceChildren();
    const caption = document.createElement('p');
    caption.className = 'chart-title';
    caption.textContent = `Order #${id}: replicas by block`;
    ui.chart.append(caption);
    const steps = uPlot.paths.stepped?.({ align: 1 });
    this.#plot = new uPlot(
      {
        width,
        height: 180,
        scales: { x: { time: false } },
        series: [
          { label: 'block' },
          { label: 'claimed', stroke: '#e8590c', width: 2, paths: steps },
          { label: 'active', stroke: '#0b7285', width: 2, paths: steps },
        ],
        axes: [{ label: 'block' }, { label: 'replicas', size: 50 }],
        legend: { live: false },
      },
      data,
      ui.chart,
    );
    ui.chart.dataset.drawn = String(id);
  }
}
