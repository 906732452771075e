import { EstuaryError } from './errors';

/** Where the stack lives: served as /estuary.json by `estuary dev`. */
export interface EstuaryConfig {
  rpc_url: string;
  chain_id: number;
  contracts: { EstuaryPinning: string } & Record<string, string>;
  oracle_url: string;
  /** The block before the contracts were deployed: where their events start. */
  deploy_block?: number;
}

export async function loadConfig(url = '/estuary.json'): Promise<EstuaryConfig> {
  let res: Response;
  try {
    res = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    throw new EstuaryError(`cannot load ${url}: ${String(e)}`, { cause: e });
  }
  if (!res.ok) throw new EstuaryError(`cannot load ${url}: HTTP ${res.status}`);
  const config = (await res.json()) as EstuaryConfig;
  if (!config.contracts?.EstuaryPinning || !config.oracle_url || !config.chain_id) {
    throw new EstuaryError(`${url} is missing contracts.EstuaryPinning, oracle_url or chain_id`);
  }
  return config;
}
