/**
 * The storage providers page (`#/providers`): the SPs the oracle deals with, best score first,
 * with what they hold, how their read-backs went, their last failure and where they are read
 * back from (`GET /providers`);
 * the perpetual orders' open slots, read from the chain: what an SP can claim now, at what
 * bounty and bond; and the DealClient's contract-deal proposals, open ones first. Read when the
 * page is shown and when asked.
 */
import { DealProposals, type EstuaryConfig, Perpetual, chainReader, coinOf, listProviders } from '../sdk';

/** A table row's cells, each with its text. */
function cells(texts: string[]): HTMLTableCellElement[] {
  return texts.map((text) => {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  });
}

export class ProvidersPage {
  #config: EstuaryConfig;
  #summary = document.getElementById('providers-summary')!;
  #refresh = document.getElementById('providers-refresh') as HTMLButtonElement;
  #body = (document.getElementById('providers') as HTMLTableElement).tBodies[0]!;
  #slotsSummary = document.getElementById('slots-summary')!;
  #slots = (document.getElementById('slots') as HTMLTableElement).tBodies[0]!;
  #proposalsSummary = document.getElementById('deal-proposals-summary')!;
  #proposals = (document.getElementById('deal-proposals') as HTMLTableElement).tBodies[0]!;
  #dealProposals: DealProposals | undefined;

  constructor(config: EstuaryConfig) {
    this.#config = config;
    this.#refresh.addEventListener('click', () => void this.show());
  }

  /** Reads the providers and the open slots, and shows them. */
  async show(): Promise<void> {
    void this.#showSlots();
    void this.#showProposals();
    this.#refresh.disabled = true;
    try {
      const providers = await listProviders(this.#config.oracle_url);
      this.#summary.textContent =
        providers.length === 0
          ? 'The oracle has not dealt with a storage provider yet.'
          : `${providers.length} storage provider${providers.length === 1 ? '' : 's'}, best score first.`;
      this.#body.replaceChildren(
        ...providers.map((p) => {
          const tr = document.createElement('tr');
          tr.dataset.provider = p.address;
          const probes = p.probes_ok + p.probes_failed;
          const status = p.suspended ? 'suspended' : p.replicas_lost > 0 ? 'lost replicas' : 'ok';
          tr.append(...cells([
            p.address,
            p.score.toFixed(3),
            String(p.deals_active),
            String(p.in_flight),
            probes === 0 ? '–' : `${p.probes_ok} of ${probes}`,
            String(p.replicas_lost),
            p.last_failure === null ? 'none' : `block ${p.last_failure}`,
            status,
            p.url_source === 'registry'
              ? (p.registered_url ?? 'registered')
              : p.url_source === 'operator'
                ? "the operator's url="
                : 'not read back',
          ]));
          return tr;
        }),
      );
    } catch (e) {
      this.#summary.textContent = `The providers could not be read: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      this.#refresh.disabled = false;
    }
  }

  async #showSlots(): Promise<void> {
    try {
      const orders = await Perpetual.openSlots(this.#config, chainReader(this.#config));
      const open = orders.reduce((n, o) => n + o.open, 0);
      this.#slotsSummary.textContent = orders.length
        ? `${open} open slot${open === 1 ? '' : 's'} in ${orders.length} order${orders.length === 1 ? '' : 's'}, newest first.`
        : 'No open slots among the last 100 orders.';
      const coin = (wei: bigint) => coinOf(wei, this.#config.chain_id);
      this.#slots.replaceChildren(
        ...orders.map((o) => {
          const tr = document.createElement('tr');
          tr.dataset.order = String(o.id);
          tr.append(...cells([
            `#${o.id}`,
            o.pieceCid,
            `${(o.paddedSize / 2 ** 20).toFixed(o.paddedSize < 2 ** 20 ? 3 : 0)} MiB`,
            String(o.open),
            coin(o.bounty),
            coin(o.bond),
            `${o.term} epochs${o.verified ? ', verified' : ''}`,
          ]));
          return tr;
        }),
      );
    } catch (e) {
      this.#slotsSummary.textContent = `The open slots could not be read: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  async #showProposals(): Promise<void> {
    try {
      if (!this.#config.contracts.DealClient) {
        this.#proposalsSummary.textContent = 'The stack has no DealClient contract.';
        return;
      }
      this.#dealProposals ??= new DealProposals(this.#config, chainReader(this.#config));
      const all = await this.#dealProposals.read();
      // Open ones first (newest first), then the rest.
      const shown = [...all.filter((p) => p.open), ...all.filter((p) => !p.open)];
      const open = all.filter((p) => p.open).length;
      this.#proposalsSummary.textContent = all.length
        ? `${open} open proposal${open === 1 ? '' : 's'} of ${all.length}, open ones first.`
        : 'No contract-deal proposals yet.';
      const coin = (wei: bigint) => coinOf(wei, this.#config.chain_id);
      this.#proposals.replaceChildren(
        ...shown.map((p) => {
          const tr = document.createElement('tr');
          tr.dataset.proposal = p.id;
          tr.dataset.open = String(p.open);
          const state = p.cancelled ? 'cancelled' : p.open ? 'open' : p.published >= p.replicas ? 'taken' : 'past its start';
          tr.append(...cells([
            `${p.id.slice(0, 10)}…`,
            p.pieceCid,
            `${(p.pieceSize / 2 ** 20).toFixed(p.pieceSize < 2 ** 20 ? 3 : 0)} MiB${p.verified ? ', verified' : ''}`,
            p.provider === null ? 'any provider' : `f0${p.provider}`,
            `${p.published} of ${p.replicas} published, ${p.active} active`,
            coin(p.pricePerEpoch),
            `${p.startEpoch} to ${p.endEpoch}`,
            state,
          ]));
          return tr;
        }),
      );
    } catch (e) {
      this.#proposalsSummary.textContent = `The proposals could not be read: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
}
