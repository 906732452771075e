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
  status: 'queued' | 'failed';
  error: string | null;
}

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
