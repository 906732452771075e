/**
 * The storage providers page (`#/providers`): the SPs the oracle deals with, best score first,
 * with what they hold and how their read-backs went (`GET /providers`). Read when the page is
 * shown and when asked.
 */
import { type EstuaryConfig, listProviders } from '../sdk';

export class ProvidersPage {
  #config: EstuaryConfig;
  #summary = document.getElementById('providers-summary')!;
  #refresh = document.getElementById('providers-refresh') as HTMLButtonElement;
  #body = (document.getElementById('providers') as HTMLTableElement).tBodies[0]!;

  constructor(config: EstuaryConfig) {
    this.#config = config;
    this.#refresh.addEventListener('click', () => void this.show());
  }

  /** Reads the providers and shows them. */
  async show(): Promise<void> {
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
}
