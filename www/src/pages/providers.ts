/**
 * The storage providers page (`#/providers`): the SPs the oracle deals with, best score first,
 * with what they hold and how their read-backs went (`GET /providers`), and the perpetual
 * orders' open slots, read from the chain: what an SP can claim now, at what bounty and bond.
 * Read when the page is shown and when asked.
 */
import { type EstuaryConfig, Perpetual, chainReader, coinOf, listProviders } from '../sdk';

export class ProvidersPage {
  #config: EstuaryConfig;
  #summary = document.getElementById('providers-summary')!;
  #refresh = document.getElementById('providers-refresh') as HTMLButtonElement;
  #body = (document.getElementById('providers') as HTMLTableElement).tBodies[0]!;
  #slotsSummary = document.getElementById('slots-summary')!;
  #slots = (document.getElementById('slots') as HTMLTableElement).tBodies[0]!;

  constructor(config: EstuaryConfig) {
    this.#config = config;
    this.#refresh.addEventListener('click', () => void this.show());
  }

  /** Reads the providers and the open slots, and shows them. */
  async show(): Promise<void> {
    void this.#showSlots();
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
          for (const text of [
            p.address,
            p.score.toFixed(3),
            String(p.deals_active),
            String(p.in_flight),
            probes === 0 ? '–' : `${p.probes_ok} of ${probes}`,
            String(p.replicas_lost),
            status,
          ]) {
            const td = document.createElement('td');
            td.textContent = text;
            tr.append(td);
          }
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
          for (const text of [
            `#${o.id}`,
            o.pieceCid,
            `${(o.paddedSize / 2 ** 20).toFixed(o.paddedSize < 2 ** 20 ? 3 : 0)} MiB`,
            String(o.open),
            coin(o.bounty),
            coin(o.bond),
            `${o.term} epochs${o.verified ? ', verified' : ''}`,
          ]) {
            const td = document.createElement('td');
            td.textContent = text;
            tr.append(td);
          }
          return tr;
        }),
      );
    } catch (e) {
      this.#slotsSummary.textContent = `The open slots could not be read: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
}
