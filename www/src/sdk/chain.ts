import {
  BrowserProvider,
  Contract,
  Interface,
  formatEther,
  getAddress,
  getBytes,
  isError,
  zeroPadValue,
  type Eip1193Provider,
  type Log,
  type Provider,
} from 'ethers';
import { type Session, type UploadAuth, requestUploadMessage, signIn } from './auth';
import { CID } from 'multiformats/cid';
// The ABI only: a named import lets the bundle leave the artifact's bytecode out.
import { abi as pinningAbi } from '../../../contracts/artifacts/EstuaryPinning.json';
import type { EstuaryConfig } from './config';
import { ContractError, EstuaryError, WalletError, WrongChainError } from './errors';

/** Gas added to a pin's estimate: one zero-to-non-zero storage write (EIP-2200: 20,000). */
const PIN_GAS_MARGIN = 20_000n;

export const pinningInterface = new Interface(pinningAbi);

/** Reasons of `EstuaryPinningInvalidCid`, by `CidLib.CidError` value. */
const CID_ERRORS = [
  'None',
  'the CID is empty',
  'the CID is too long',
  'a varint in the CID is malformed',
  'the CID version is not supported',
  'the multihash digest length is not allowed',
  'the multihash length does not match its digest',
  'the content codec is not one IPFS serves',
  'the hash function is unknown or its digest has the wrong length',
];

export interface PinReceipt {
  requestId: bigint;
  requester: string;
  txHash: string;
  block: number;
}

/** A pin request an account made, as the chain recorded it (`PinRequested`). */
export interface PinRecord {
  requestId: bigint;
  /** The CID as text (`bafy…`, `Qm…`); the hex of its bytes if they do not decode. */
  cid: string;
  block: number;
  txHash: string;
}

/** Blocks per `eth_getLogs` call: Lotus (Filecoin's FEVM) refuses ranges over 2880 epochs. */
const LOG_RANGE = 2880;

/** A connected EIP-1193 wallet on the stack's chain. */
export class Wallet {
  private constructor(
    readonly provider: BrowserProvider,
    readonly address: string,
  ) {}

  /**
   * Asks the wallet for an account on `config.chain_id`. A wallet on another chain gets a
   * `WrongChainError` (with `current` and `expected`), so the page can offer the switch
   * (`switchChain`) before any transaction; `{ switchChain: true }` asks the wallet at once.
   */
  static async connect(
    eip1193: Eip1193Provider | undefined,
    config: EstuaryConfig,
    options: { switchChain?: boolean } = {},
  ): Promise<Wallet> {
    if (!eip1193) throw new WalletError('No wallet found: install an Ethereum wallet extension.');
    let accounts: string[];
    try {
      accounts = (await eip1193.request({ method: 'eth_requestAccounts' })) as string[];
    } catch (e) {
      throw new WalletError(`The wallet refused to connect: ${shortMessage(e)}`, { cause: e });
    }
    const address = accounts[0];
    if (!address) throw new WalletError('The wallet returned no account.');
    let current = await walletChain(eip1193);
    if (current !== config.chain_id && options.switchChain) {
      await switchChain(eip1193, config);
      current = await walletChain(eip1193);
    }
    if (current !== config.chain_id) {
      throw new WrongChainError(
        `Your wallet is on ${chainName(current)}; Estuary here runs on ${chainName(config.chain_id)}.`,
        current,
        config.chain_id,
      );
    }
    // Made once the wallet is on the right chain: ethers keeps the network it first sees.
    const provider = new BrowserProvider(eip1193, config.chain_id);
    provider.pollingInterval = 500;
    return new Wallet(provider, getAddress(address));
  }

  /**
   * What `pin` will send, and its most it can cost, before the wallet opens: the contract's fee
   * plus the gas limit at the current maximum fee per gas.
   */
  async quotePin(config: EstuaryConfig, cid: Uint8Array, options?: PinOptions): Promise<PinQuote> {
    const pinning = new Contract(config.contracts.EstuaryPinning, pinningInterface, await this.provider.getSigner(this.address));
    try {
      const fee = (await pinning.getFunction('fee')()) as bigint;
      const { call, args } = pinCall(pinning, cid, options);
      // The estimate plus the price of filling an empty storage slot: a report mined between the
      // estimate and the pin can empty the contract's fee escrow, which the pin then fills again.
      const gasLimit = (await call.estimateGas(...args, { value: fee })) + PIN_GAS_MARGIN;
      const { perGas, fields } = await feeFields(this.provider, config.chain_id);
      return {
        fees: fields,
        contract: getAddress(config.contracts.EstuaryPinning),
        action: options ? 'pinToEstuary(cid, {name, origins, sizeHint})' : 'pinToEstuary(cid)',
        fee,
        gasLimit,
        maxFeePerGas: perGas,
        maxCost: fee + gasLimit * perGas,
        summary: `pinToEstuary to ${getAddress(config.contracts.EstuaryPinning)}: a fee of ${coinOf(fee, config.chain_id)} and at most ${gasLimit} gas, ${coinOf(fee + gasLimit * perGas, config.chain_id)} in all at most`,
      };
    } catch (e) {
      throw explain(e);
    }
  }

  /**
   * Sends `pinToEstuary(cid)` with the contract's current fee (and a gas limit above the estimate
   * by the cost of writing an empty storage slot) and waits for it to be mined. With
   * `options`, sends `pinToEstuary(cid, {name, origins, sizeHint})`: `origins` are multiaddrs the
   * oracle fetches from first (`/p2p/<peer id>` of a browser node serving the content, or a
   * gateway's `/ip4/…/tcp/…/http`).
   */
  async pin(
    config: EstuaryConfig,
    cid: Uint8Array,
    options?: PinOptions,
    hooks: { onQuote?: (quote: PinQuote) => void; onSent?: (txHash: string) => void } = {},
  ): Promise<PinReceipt> {
    const quote = await this.quotePin(config, cid, options);
    hooks.onQuote?.(quote);
    const signer = await this.provider.getSigner(this.address);
    const pinning = new Contract(config.contracts.EstuaryPinning, pinningInterface, signer);
    let receipt;
    try {
      const { call, args } = pinCall(pinning, cid, options);
      const tx = await call(...args, { value: quote.fee, gasLimit: quote.gasLimit, ...quote.fees });
      hooks.onSent?.(tx.hash);
      receipt = await tx.wait();
    } catch (e) {
      throw explain(e);
    }
    if (!receipt || receipt.status !== 1) throw new EstuaryError('The transaction failed.');
    for (const log of receipt.logs) {
      const parsed = pinningInterface.parseLog(log);
      if (parsed?.name === 'PinRequested') {
        return {
          requestId: parsed.args.requestId as bigint,
          requester: parsed.args.requester as string,
          txHash: receipt.hash,
          block: receipt.blockNumber,
        };
      }
    }
    throw new EstuaryError('The transaction was mined but emitted no PinRequested event.');
  }

  /**
   * Signs in to the oracle with this account (Sign-In with Ethereum): one `personal_sign` of an
   * EIP-4361 message naming this page's host, the chain and an expiry. The session it returns
   * lets `node.upload` create uploads owned by this address.
   */
  async signIn(config: EstuaryConfig, options?: { domain?: string; uri?: string; expiresInSeconds?: number }): Promise<Session> {
    const signer = await this.provider.getSigner(this.address);
    try {
      return await signIn(config.oracle_url, signer, this.address, config.chain_id, options);
    } catch (e) {
      if (e instanceof EstuaryError) throw e;
      throw new WalletError(`The wallet did not sign in: ${shortMessage(e)}`, { cause: e });
    }
  }

  /**
   * The `auth` for uploading the content of this account's pin request `requestId` (made with a
   * `sizeHint`): one `personal_sign`. The oracle takes the upload once it has seen the request,
   * up to its size hint, and only if the CAR's root is the request's CID.
   */
  async signRequestUpload(config: EstuaryConfig, requestId: bigint): Promise<UploadAuth> {
    const signer = await this.provider.getSigner(this.address);
    const text = requestUploadMessage(config.chain_id, getAddress(config.contracts.EstuaryPinning), requestId);
    try {
      return { request: requestId.toString(), signature: await signer.signMessage(text) };
    } catch (e) {
      throw new WalletError(`The wallet did not sign: ${shortMessage(e)}`, { cause: e });
    }
  }

  /**
   * The pin requests this account made, newest first: `PinRequested` events naming it as the
   * requester, from `fromBlock` (default: the contract's deployment block from the config, else
   * 0) to the latest block, read in ranges the RPC accepts.
   */
  async pins(config: EstuaryConfig, options: { fromBlock?: number } = {}): Promise<PinRecord[]> {
    const topic = pinningInterface.getEvent('PinRequested')!.topicHash;
    const requester = zeroPadValue(this.address, 32);
    const out: PinRecord[] = [];
    try {
      const from = options.fromBlock ?? config.deploy_block ?? 0;
      const logs = await logsInRanges(this.provider, config.contracts.EstuaryPinning, [topic, null, requester], from);
      for (const log of logs) {
        const parsed = pinningInterface.parseLog(log);
        if (!parsed) continue;
        out.push({
          requestId: parsed.args.requestId as bigint,
          cid: cidText(parsed.args.cid as string),
          block: log.blockNumber,
          txHash: log.transactionHash,
        });
      }
    } catch (e) {
      throw explain(e);
    }
    // Logs come oldest first, and request ids grow with time.
    return out.reverse();
  }
}

/** What `Wallet.pin` will send, and the most it can cost (wei), shown before the wallet opens. */
export interface PinQuote {
  /** The `EstuaryPinning` contract (checksummed). */
  contract: string;
  /** The call, in words. */
  action: string;
  /** The contract's fee, sent as value. */
  fee: bigint;
  /** The gas limit sent. */
  gasLimit: bigint;
  /** The highest price per gas the transaction may pay. */
  maxFeePerGas: bigint;
  /** `fee + gasLimit × maxFeePerGas`. */
  maxCost: bigint;
  /** All of it in a sentence (amounts in the chain's coin). */
  summary: string;
  /** The fee fields and chain the transaction is sent with (what bounds its cost). */
  fees: Awaited<ReturnType<typeof feeFields>>['fields'];
}

/** The `pinToEstuary` overload and arguments for `cid` and `options`. */
function pinCall(pinning: Contract, cid: Uint8Array, options?: PinOptions) {
  const call = options
    ? pinning.getFunction('pinToEstuary(bytes,(string,string[],uint64))')
    : pinning.getFunction('pinToEstuary(bytes)');
  const args: unknown[] = options
    ? [cid, { name: options.name ?? '', origins: options.origins ?? [], sizeHint: options.sizeHint ?? 0n }]
    : [cid];
  return { call, args };
}

/** Chains Estuary knows by name, with their coin (for `wallet_addEthereumChain`). */
const CHAINS: Record<number, { name: string; symbol: string }> = {
  314: { name: 'Filecoin', symbol: 'FIL' },
  314159: { name: 'Filecoin Calibration', symbol: 'tFIL' },
  31337: { name: 'Estuary local chain', symbol: 'tFIL' },
};

/** An amount in the chain's coin (`0.01 tFIL`). */
export function coinOf(wei: bigint, chainId: number): string {
  return `${formatEther(wei)} ${CHAINS[chainId]?.symbol ?? 'FIL'}`;
}

/** A chain in words: its name when known, and its id. */
export function chainName(id: number): string {
  const known = CHAINS[id];
  return known ? `${known.name} (chain ${id})` : `chain ${id}`;
}

/** The chain the wallet is on (`eth_chainId`). */
export async function walletChain(eip1193: Eip1193Provider): Promise<number> {
  try {
    return Number(BigInt((await eip1193.request({ method: 'eth_chainId' })) as string));
  } catch (e) {
    throw new WalletError(`The wallet did not say which chain it is on: ${shortMessage(e)}`, { cause: e });
  }
}

/**
 * Asks the wallet to switch to the stack's chain (`wallet_switchEthereumChain`, EIP-3326); a
 * wallet that does not know it (error 4902) is asked to add it first
 * (`wallet_addEthereumChain`, EIP-3085, with the stack's RPC URL), then to switch.
 */
export async function switchChain(eip1193: Eip1193Provider, config: EstuaryConfig): Promise<void> {
  const chainId = '0x' + config.chain_id.toString(16);
  const ask = (method: string, params: unknown[]) => eip1193.request({ method, params });
  try {
    await ask('wallet_switchEthereumChain', [{ chainId }]);
    return;
  } catch (e) {
    if (errorCode(e) !== 4902) {
      throw new WalletError(`The wallet did not switch to ${chainName(config.chain_id)}: ${shortMessage(e)}`, { cause: e });
    }
  }
  const known = CHAINS[config.chain_id];
  try {
    await ask('wallet_addEthereumChain', [
      {
        chainId,
        chainName: known?.name ?? `Estuary chain ${config.chain_id}`,
        nativeCurrency: { name: known?.symbol ?? 'FIL', symbol: known?.symbol ?? 'FIL', decimals: 18 },
        rpcUrls: [config.rpc_url],
      },
    ]);
    // EIP-3085 wallets may switch as they add; asking again is harmless.
    await ask('wallet_switchEthereumChain', [{ chainId }]);
  } catch (e) {
    throw new WalletError(`The wallet did not add ${chainName(config.chain_id)}: ${shortMessage(e)}`, { cause: e });
  }
}

/**
 * Calls `onChange` with the wallet's chain whenever it changes (EIP-1193 `chainChanged`);
 * returns what stops it. A wallet without events is never called back.
 */
export function watchChain(eip1193: Eip1193Provider, onChange: (chainId: number) => void): () => void {
  const events = eip1193 as Eip1193Provider & {
    on?: (event: string, listener: (chainId: string) => void) => void;
    removeListener?: (event: string, listener: (chainId: string) => void) => void;
  };
  const listener = (chainId: string) => onChange(Number(BigInt(chainId)));
  events.on?.('chainChanged', listener);
  return () => events.removeListener?.('chainChanged', listener);
}

/** An EIP-1193 error's code, also where MetaMask mobile nests it (`data.originalError.code`). */
/**
 * Calls `onChange` with the wallet's accounts whenever they change (EIP-1193
 * `accountsChanged`: another account chosen, or none when the site is disconnected); returns
 * what stops it.
 */
export function watchAccounts(eip1193: Eip1193Provider, onChange: (accounts: string[]) => void): () => void {
  const events = eip1193 as Eip1193Provider & {
    on?: (event: string, listener: (accounts: string[]) => void) => void;
    removeListener?: (event: string, listener: (accounts: string[]) => void) => void;
  };
  const listener = (accounts: string[]) => onChange(Array.isArray(accounts) ? accounts : []);
  events.on?.('accountsChanged', listener);
  return () => events.removeListener?.('accountsChanged', listener);
}

function errorCode(e: unknown): number | undefined {
  const at = (v: unknown, key: string): unknown => (v && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined);
  for (const code of [at(e, 'code'), at(at(at(e, 'data'), 'originalError'), 'code')]) {
    if (typeof code === 'number') return code;
  }
  return /unrecognized chain/i.test(shortMessage(e)) ? 4902 : undefined;
}

/**
 * The fee fields a transaction is sent with, so that the most it costs is what its quote said:
 * the current maximum fee per gas (and priority fee), or the gas price where the chain has no
 * EIP-1559 fees; and the chain it is meant for.
 */
export async function feeFields(provider: Provider, chainId: number): Promise<{
  perGas: bigint;
  fields: { chainId: number; maxFeePerGas?: bigint; maxPriorityFeePerGas?: bigint; gasPrice?: bigint };
}> {
  const fees = await provider.getFeeData();
  if (fees.maxFeePerGas !== null) {
    return {
      perGas: fees.maxFeePerGas,
      fields: { chainId, maxFeePerGas: fees.maxFeePerGas, maxPriorityFeePerGas: fees.maxPriorityFeePerGas ?? 0n },
    };
  }
  return { perGas: fees.gasPrice ?? 0n, fields: { chainId, gasPrice: fees.gasPrice ?? 0n } };
}

/** A revert's custom error, if its data names one of `iface`'s (`null` for no data or another). */
export function revertOf(iface: Interface, e: unknown): ReturnType<Interface['parseError']> {
  const data = e && typeof e === 'object' && 'data' in e && typeof e.data === 'string' ? e.data : '';
  if (data.length < 10) return null;
  try {
    return iface.parseError(data);
  } catch {
    return null;
  }
}

/**
 * The logs of `address` matching `topics`, from `fromBlock` to `toBlock` (default: the latest
 * block), oldest first, read in ranges the RPC accepts.
 */
export async function logsInRanges(
  provider: Provider,
  address: string,
  topics: (string | string[] | null)[],
  fromBlock: number,
  toBlock?: number,
): Promise<Log[]> {
  const out: Log[] = [];
  const latest = toBlock ?? (await provider.getBlockNumber());
  for (let from = fromBlock; from <= latest; from += LOG_RANGE) {
    out.push(...(await provider.getLogs({ address, topics, fromBlock: from, toBlock: Math.min(from + LOG_RANGE - 1, latest) })));
  }
  return out;
}

/** A CID's bytes (hex, as ethers gives `bytes`) as text. */
export function cidText(hex: string): string {
  try {
    return CID.decode(getBytes(hex)).toString();
  } catch {
    return hex;
  }
}

/** What a pin request may say besides its CID. */
export interface PinOptions {
  /** A name for people. */
  name?: string;
  /** Multiaddrs to fetch the content from (at most 20). */
  origins?: string[];
  /** The DAG's size in bytes, if known (0: unknown). */
  sizeHint?: bigint;
}

/** An ethers error's short message, or any error's message. */
export function shortMessage(e: unknown): string {
  if (e && typeof e === 'object' && 'shortMessage' in e) return String(e.shortMessage);
  return e instanceof Error ? e.message : String(e);
}

/** Turns an ethers failure into an SDK error with a message a person can act on. */
export function explain(e: unknown): EstuaryError {
  if (isError(e, 'ACTION_REJECTED')) {
    return new WalletError('You rejected the transaction in your wallet.', { cause: e });
  }
  if (isError(e, 'CALL_EXCEPTION')) {
    const decoded = revertOf(pinningInterface, e);
    if (decoded?.name === 'EstuaryPinningInvalidCid') {
      const reason = CID_ERRORS[Number(decoded.args[0])] ?? 'unknown reason';
      return new ContractError(`The contract refused the CID: ${reason}.`, decoded.name, { cause: e });
    }
    return new ContractError(`The contract reverted: ${shortMessage(e)}`, decoded?.name ?? 'unknown', {
      cause: e,
    });
  }
  return new EstuaryError(`The transaction could not be sent: ${shortMessage(e)}`, { cause: e });
}

/**
 * When chain epochs (block numbers) fall, as dates: a past epoch at its block's own time, a
 * future one from the latest block's time and the chain's mean block time over the last
 * `window` blocks (30 s on Filecoin, 1 s on the dev chain). Epochs it cannot place are left out.
 * `head` is the latest block it read (an epoch at or below it has its block's own date).
 */
export async function epochTimes(
  reader: Provider,
  epochs: number[],
  window = 1000,
): Promise<{ head: number; dates: Map<number, Date> }> {
  const out = new Map<number, Date>();
  const latest = await reader.getBlock('latest');
  if (!latest) return { head: 0, dates: out };
  const earlier = await reader.getBlock(Math.max(0, latest.number - window));
  const span = earlier ? latest.number - earlier.number : 0;
  const mean = earlier && span > 0 ? (latest.timestamp - earlier.timestamp) / span : 30;
  await Promise.all(
    [...new Set(epochs)].map(async (epoch) => {
      if (epoch > latest.number) {
        out.set(epoch, new Date((latest.timestamp + (epoch - latest.number) * mean) * 1000));
        return;
      }
      const block = await reader.getBlock(epoch).catch(() => null);
      if (block) out.set(epoch, new Date(block.timestamp * 1000));
    }),
  );
  return { head: latest.number, dates: out };
}
