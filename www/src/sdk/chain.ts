import { BrowserProvider, Contract, Interface, getAddress, getBytes, isError, zeroPadValue, type Eip1193Provider } from 'ethers';
import { type Session, type UploadAuth, requestUploadMessage, signIn } from './auth';
import { CID } from 'multiformats/cid';
import artifact from '../../../contracts/artifacts/EstuaryPinning.json';
import type { EstuaryConfig } from './config';
import { ContractError, EstuaryError, WalletError } from './errors';

/** Gas added to a pin's estimate: one zero-to-non-zero storage write (EIP-2200: 20,000). */
const PIN_GAS_MARGIN = 20_000n;

export const pinningInterface = new Interface(artifact.abi);

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

  /** Asks the wallet for an account and makes sure it is on `config.chain_id`. */
  static async connect(eip1193: Eip1193Provider | undefined, config: EstuaryConfig): Promise<Wallet> {
    if (!eip1193) throw new WalletError('No wallet found: install an Ethereum wallet extension.');
    const provider = new BrowserProvider(eip1193);
    provider.pollingInterval = 500;
    let accounts: string[];
    try {
      accounts = (await provider.send('eth_requestAccounts', [])) as string[];
    } catch (e) {
      throw new WalletError(`The wallet refused to connect: ${shortMessage(e)}`, { cause: e });
    }
    const address = accounts[0];
    if (!address) throw new WalletError('The wallet returned no account.');
    const { chainId } = await provider.getNetwork();
    if (chainId !== BigInt(config.chain_id)) {
      try {
        await provider.send('wallet_switchEthereumChain', [
          { chainId: '0x' + config.chain_id.toString(16) },
        ]);
      } catch (e) {
        throw new WalletError(
          `The wallet is on chain ${chainId}; switch it to chain ${config.chain_id}.`,
          { cause: e },
        );
      }
    }
    return new Wallet(provider, address);
  }

  /**
   * Sends `pinToEstuary(cid)` with the contract's current fee (and a gas limit above the estimate
   * by the cost of writing an empty storage slot) and waits for it to be mined. With
   * `options`, sends `pinToEstuary(cid, {name, origins, sizeHint})`: `origins` are multiaddrs the
   * oracle fetches from first (`/p2p/<peer id>` of a browser node serving the content, or a
   * gateway's `/ip4/…/tcp/…/http`).
   */
  async pin(config: EstuaryConfig, cid: Uint8Array, options?: PinOptions): Promise<PinReceipt> {
    const signer = await this.provider.getSigner(this.address);
    const pinning = new Contract(config.contracts.EstuaryPinning, pinningInterface, signer);
    let receipt;
    try {
      const fee = (await pinning.getFunction('fee')()) as bigint;
      const call = options
        ? pinning.getFunction('pinToEstuary(bytes,(string,string[],uint64))')
        : pinning.getFunction('pinToEstuary(bytes)');
      const args: unknown[] = options
        ? [cid, { name: options.name ?? '', origins: options.origins ?? [], sizeHint: options.sizeHint ?? 0n }]
        : [cid];
      // The estimate plus the price of filling an empty storage slot: a report mined between the
      // estimate and the pin can empty the contract's fee escrow, which the pin then fills again.
      const gasLimit = (await call.estimateGas(...args, { value: fee })) + PIN_GAS_MARGIN;
      const tx = await call(...args, { value: fee, gasLimit });
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
      const latest = await this.provider.getBlockNumber();
      for (let from = options.fromBlock ?? config.deploy_block ?? 0; from <= latest; from += LOG_RANGE) {
        const logs = await this.provider.getLogs({
          address: config.contracts.EstuaryPinning,
          topics: [topic, null, requester],
          fromBlock: from,
          toBlock: Math.min(from + LOG_RANGE - 1, latest),
        });
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
      }
    } catch (e) {
      throw explain(e);
    }
    // Logs come oldest first, and request ids grow with time.
    return out.reverse();
  }
}

/** A CID's bytes (hex, as ethers gives `bytes`) as text. */
function cidText(hex: string): string {
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

function shortMessage(e: unknown): string {
  if (e && typeof e === 'object' && 'shortMessage' in e) return String(e.shortMessage);
  return e instanceof Error ? e.message : String(e);
}

/** Turns an ethers failure into an SDK error with a message a person can act on. */
export function explain(e: unknown): EstuaryError {
  if (isError(e, 'ACTION_REJECTED')) {
    return new WalletError('You rejected the transaction in your wallet.', { cause: e });
  }
  if (isError(e, 'CALL_EXCEPTION')) {
    const data = e.data ?? undefined;
    const decoded = data ? pinningInterface.parseError(data) : null;
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
