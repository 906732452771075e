/**
 * What the pages that send transactions and follow the chain share: a poller that stops when
 * its page is left (even mid-read), and a transaction panel (one transaction at a time; what it
 * does and costs before the wallet opens, its state after, failures in words).
 */
import type { TxDone, TxHooks } from '../sdk';

/** How often the pages that follow the chain read it again. */
export const REFRESH_MS = 3000;

/** The page's element `id` (an error if the page lacks it). */
export function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing from the page`);
  return found as T;
}

/** Runs `tick` every `ms` while started; `stop` ends it, also during a tick. */
export class Poller {
  #timer: number | undefined;
  #generation = 0;

  /** A token that `stop` (or a new `start`) makes stale. */
  get generation(): number {
    return this.#generation;
  }

  /** Starts ticking, unless stopped since `generation` was read. */
  start(tick: () => Promise<unknown>, ms: number, generation = this.#generation): void {
    if (generation !== this.#generation) return;
    const run = async () => {
      if (generation !== this.#generation) return;
      await tick().catch(() => undefined);
      if (generation === this.#generation) this.#timer = window.setTimeout(() => void run(), ms);
    };
    void run();
  }

  stop(): void {
    this.#generation++;
    if (this.#timer !== undefined) window.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

const CONFIRM = 'Confirm the transaction in your wallet…';

/** A page's transactions, shown in its message and transaction lines. */
export class TxPanel {
  busy = false;
  #what = '';

  constructor(
    private readonly message: HTMLElement,
    private readonly line: HTMLElement,
    private readonly disable: HTMLButtonElement[],
  ) {}

  say(text: string, kind: 'info' | 'error' = 'info'): void {
    this.message.textContent = text;
    this.message.className = `message ${kind}`;
  }

  #show(state: string, text: string): void {
    this.line.hidden = false;
    this.line.dataset.state = state;
    this.line.textContent = text;
  }

  /** The hooks a transaction reports to: its quote before the wallet opens, then its hash. */
  hooks(): TxHooks {
    return {
      onQuote: (q) => {
        this.#what = `${q.summary}.`;
        this.#show('quoted', this.#what);
        this.say(CONFIRM);
      },
      onSent: (hash) => this.#show('sent', `${this.#what} Sent ${hash}; waiting for it to be mined…`),
    };
  }

  /** A button that runs `work` as this panel's transaction, then `after`. */
  button(label: string, testid: string, work: () => Promise<TxDone | undefined>, after: () => Promise<unknown>): HTMLButtonElement {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.dataset.testid = testid;
    b.addEventListener('click', () => void this.run(work, after));
    return b;
  }

  /** Runs `work` unless another transaction is under way; then `after` (a refresh). */
  async run(work: () => Promise<TxDone | undefined>, after: () => Promise<unknown>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    for (const b of this.disable) b.disabled = true;
    try {
      const done = await work();
      if (done) {
        this.#show('mined', `${this.#what} Sent ${done.txHash}; mined in block ${done.block}.`);
        if (this.message.textContent === CONFIRM) this.say('Done: the transaction is mined.');
      }
    } catch (e) {
      this.say(e instanceof Error ? e.message : String(e), 'error');
    } finally {
      // Still busy while refreshing: the poller skips its tick rather than run beside it.
      await after().catch(() => undefined);
      this.busy = false;
      for (const b of this.disable) b.disabled = false;
    }
  }
}
