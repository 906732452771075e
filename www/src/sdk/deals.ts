/**
 * Deals: a pin's replicas on Filecoin as the oracle tracks them, the storage providers it scores,
 * and the proofs that a pin's piece is inside its deals.
 */
import { OracleError } from './errors';
import { type PieceInclusion, pieceInclusion } from './inclusion';
import { type PinRequestStatus, requestStatus } from './oracle';

/** One replica of a pin on Filecoin, as the oracle tracks it. */
export interface DealStatus {
  /** The market's deal id, once published. */
  deal_id: number | null;
  /** The storage provider (`f0…`). */
  provider: string;
  /**
   * `claimed` (proposed), `published`, `active`, `expiring`, `expired`, `slashed`, `failed`,
   * `not_found`, `mismatch`, `reopened`, or `lost` (active, but its provider's last reads of
   * it failed: being replaced elsewhere).
   */
  state: string;
  /** First and last epoch of the deal's term, once active. */
  start_epoch: number | null;
  end_epoch: number | null;
  /** The pin's piece. */
  piece_cid: string;
  /** The bucket's aggregate the pin is inside (none when the pin is its deal's own piece). */
  aggregate_piece_cid: string | null;
  /** The deal's own piece (the pin's, its aggregate's, or a part's of a split pin). */
  deal_piece_cid: string;
  /** How the deal was made: `perpetual`, `datadao` or `contract`. */
  backend: string;
  /**
   * When the oracle last read the replica back from its provider (ms since 1970), if it has:
   * a span of the piece checked against the piece's commitment (and, for a single CAR, its
   * root block against its CID).
   */
  last_probe?: number | null;
  /** Whether that read gave the piece's bytes. */
  last_probe_ok?: boolean | null;
  /**
   * For a direct deal (made without the market, Curio DDO: `deal_id` is `null`), where the
   * chain records it: the `DealClient` and the proposal whose activation it recorded
   * (`getProposal`); `EstuaryPinning` proves pins in it as deal `NO_DEAL` at `provider`.
   */
  direct?: { client: string; proposal: string };
}

/** A storage provider as the oracle scores it (`GET /providers`). */
export interface ProviderStatus {
  /** `f0…`. */
  address: string;
  /** The miner actor id. */
  provider: number;
  /** 0–1: deal success (recent failures weigh most), speed, and retrieval probes. */
  score: number;
  /** Replicas active now. */
  deals_active: number;
  /** Replicas proposed or published, not yet active. */
  in_flight: number;
  /** Reads of its replicas that gave the piece's bytes. */
  probes_ok: number;
  /** Reads that did not. */
  probes_failed: number;
  /** Its replicas found lost (and replaced elsewhere). */
  replicas_lost: number;
  /** Mean latency of its recent verified reads. */
  probe_latency_ms: number | null;
  /** Block of its last failure. */
  last_failure: number | null;
  /** Suspended by the operator: no new deals. */
  suspended: boolean;
  /**
   * Where the oracle reads its replicas back: `operator` (the operator's `url=`, not shown),
   * `registry` (the URL its miner registered in the ProviderRegistry: `registered_url`), or
   * `null` (not read back).
   */
  url_source: 'operator' | 'registry' | null;
  /** The URL its miner registered, when that is where it is read back. */
  registered_url: string | null;
}

/** The storage providers the oracle has seen, best score first. */
export async function listProviders(oracleUrl: string): Promise<ProviderStatus[]> {
  let res: Response;
  try {
    res = await fetch(`${oracleUrl}/providers`);
  } catch (e) {
    throw new OracleError(`The oracle at ${oracleUrl} cannot be reached.`, { cause: e });
  }
  if (!res.ok) throw new OracleError(`The oracle answered HTTP ${res.status}.`);
  const body = (await res.json()) as { results?: ProviderStatus[] };
  return body.results ?? [];
}

/**
 * Follows the Filecoin deals of request `id` (every `intervalMs`) until `replicas` of them are
 * active at different providers, or `signal` aborts; calls `onUpdate` whenever they change.
 * Resolves with the last deals seen.
 */
export async function followDeals(
  oracleUrl: string,
  id: bigint,
  onUpdate: (deals: DealStatus[]) => void,
  { replicas = 3, signal, intervalMs = 2000 }: { replicas?: number; signal?: AbortSignal; intervalMs?: number } = {},
): Promise<DealStatus[]> {
  let last = '';
  for (;;) {
    signal?.throwIfAborted();
    const status = await requestStatus(oracleUrl, id);
    const deals = status?.deals ?? [];
    const key = JSON.stringify(deals);
    if (key !== last) {
      last = key;
      onUpdate(deals);
    }
    const active = new Set(deals.filter((d) => d.state === 'active').map((d) => d.provider));
    if (active.size >= replicas) return deals;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * A pin request by its id, followed through to Filecoin through the oracle at `oracleUrl`: where
 * it is, its replicas, and the proofs that its pieces are inside them. Nothing is asked until a
 * method is called; each call asks again.
 */
export class Pin {
  constructor(
    readonly oracleUrl: string,
    readonly requestId: bigint,
  ) {}

  /** The request as the oracle reports it, or null while the oracle has not seen it. */
  status(): Promise<PinRequestStatus | null> {
    return requestStatus(this.oracleUrl, this.requestId);
  }

  /** Its replicas on Filecoin now: provider, deal id, state, term and last probe of each. */
  async deals(): Promise<DealStatus[]> {
    return (await this.status())?.deals ?? [];
  }

  /** Follows its deals until `replicas` are active at different providers (see `followDeals`). */
  followDeals(
    onUpdate: (deals: DealStatus[]) => void,
    options?: { replicas?: number; signal?: AbortSignal; intervalMs?: number },
  ): Promise<DealStatus[]> {
    return followDeals(this.oracleUrl, this.requestId, onUpdate, options);
  }

  /**
   * The pieces its deals hold, with their proofs (`/inclusion`): one for a pin packed whole, one
   * per part for a pin split across pieces, in order. Empty before it is packed; once packed,
   * rejects with an `OracleError` (404) while a piece is in no deal yet, as `pieceInclusion` does.
   */
  async inclusion(): Promise<PieceInclusion[]> {
    const status = await this.status();
    const pieces = status?.pieces?.length ? status.pieces.map((p) => p.piece_cid) : status?.piece_cid ? [status.piece_cid] : [];
    return Promise.all(pieces.map((piece) => pieceInclusion(this.oracleUrl, piece)));
  }
}
