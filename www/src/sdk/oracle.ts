import type { DealStatus } from './deals';
import { OracleError } from './errors';

/** A pin request as the oracle reports it (`GET /requests/{id}`). */
export interface PinRequestStatus {
  id: string;
  chain_id: number;
  contract: string;
  requester: string;
  cid: string | null;
  cid_bytes: string;
  block: number;
  tx_hash: string;
  /** Where the request is: queued → fetching → pinned → packed → reported, or failing → failed (reported on chain), quarantined, cancelled. */
  status: RequestState;
  /**
   * Why it failed or is being retried, as a code: a failure code (`not_found`, `too_large`,
   * `timeout`, `invalid_content`, `unsupported`, `refused`, `internal`, `unspecified`), or
   * `quarantined`, `retrying`, `cancelled`.
   */
  reason_code?: string | null;
  /** The code in a short sentence. */
  reason?: string | null;
  /** The failure's detail (which source failed how): shown to the oracle's operator only. */
  error: string | null;
  attempts: number;
  dag_blocks: number | null;
  dag_bytes: number | null;
  /** Piece CID v2 of the packed CAR. */
  piece_cid: string | null;
  padded_size: number | null;
  car_size: number | null;
  /** The transaction that reported the pin on chain. */
  report_tx: string | null;
  /** Each replica of the pin on Filecoin (on a single request's status). */
  deals?: DealStatus[];
  /** A pin larger than a deal: the pieces its CAR was split into, in order. */
  pieces?: { seq: number; offset: number; length: number; piece_cid: string; padded_size: number }[];
  /** The bucket its piece is in, once packed: `open` (filling) or `closed` (its aggregate dealt). */
  bucket?: { id: number; state: 'open' | 'closed' };
  /**
   * Its replicas against their target, once it has an order: of its least kept order (for a
   * pin split across pieces, its least kept part); `failed` when no order of it is live (the
   * one counted failed).
   */
  replicas?: { active: number; target: number; failed: boolean };
}

/** A request's lifecycle states. */
export type RequestState =
  | 'queued'
  | 'fetching'
  | 'pinned'
  | 'packed'
  | 'reported'
  | 'failing'
  | 'failed'
  | 'quarantined'
  | 'cancelled';

/** States a request never leaves by itself. */
export const FINAL_STATES: readonly RequestState[] = ['reported', 'failed', 'quarantined', 'cancelled'];

/** The request, or `null` if the oracle has not seen it yet. */
export async function requestStatus(oracleUrl: string, id: bigint): Promise<PinRequestStatus | null> {
  let res: Response;
  try {
    res = await fetch(`${oracleUrl}/requests/${id}`);
  } catch (e) {
    throw new OracleError(`The oracle at ${oracleUrl} cannot be reached.`, { cause: e });
  }
  if (res.status === 404) return null;
  if (!res.ok) throw new OracleError(`The oracle answered HTTP ${res.status}.`);
  return (await res.json()) as PinRequestStatus;
}

/** Polls until the oracle has seen request `id`. */
export async function waitForRequest(
  oracleUrl: string,
  id: bigint,
  { signal, intervalMs = 500 }: { signal?: AbortSignal; intervalMs?: number } = {},
): Promise<PinRequestStatus> {
  for (;;) {
    signal?.throwIfAborted();
    const status = await requestStatus(oracleUrl, id);
    if (status) return status;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Follows request `id` until it reaches a final state, calling `onUpdate` whenever its state
 * changes. Resolves with the final status.
 */
export async function followRequest(
  oracleUrl: string,
  id: bigint,
  onUpdate: (status: PinRequestStatus) => void,
  { signal, intervalMs = 500 }: { signal?: AbortSignal; intervalMs?: number } = {},
): Promise<PinRequestStatus> {
  let last: RequestState | undefined;
  for (;;) {
    signal?.throwIfAborted();
    const status = await requestStatus(oracleUrl, id);
    if (status && status.status !== last) {
      last = status.status;
      onUpdate(status);
    }
    if (status && FINAL_STATES.includes(status.status)) return status;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The oracle's metrics over time (`GET /metrics/history`). */
export interface MetricsHistory {
  /** Time between samples, ms. */
  every_ms: number;
  /** Each sample's time, unix ms, oldest first. */
  times: number[];
  /** Each series (`name{labels}`): its value at each time, null where the sample lacked it. */
  series: Record<string, (number | null)[]>;
}

/**
 * The series of the metrics `names` the oracle sampled (after `since`, unix ms), read with the
 * operator's API `token`.
 */
export async function metricsHistory(
  oracleUrl: string,
  token: string,
  names: string[],
  since?: number,
): Promise<MetricsHistory> {
  const query = new URLSearchParams({ names: names.join(',') });
  if (since !== undefined) query.set('since', String(since));
  const url = `${oracleUrl}/metrics/history?${query}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  } catch (e) {
    throw new OracleError(`The oracle at ${oracleUrl} cannot be reached.`, { url, cause: e });
  }
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { error?: string; code?: string };
    const message = res.status === 401 ? 'The oracle refused the token.' : (body.error ?? `The oracle answered HTTP ${res.status}.`);
    throw new OracleError(message, { url, status: res.status, code: body.code });
  }
  return (await res.json()) as MetricsHistory;
}
