/**
 * Perpetual storage (`PerpetualStorage`): an order keeps N replicas of a piece on Filecoin, each
 * for a term, paying its bounty to the SP that holds it; SPs claim its slots themselves. This
 * module creates and manages a client's orders with its wallet, says what each transaction
 * will do and cost before the wallet opens, and reads orders and their replicas over time from
 * the chain.
 */
import {
  Contract,
  Interface,
  getAddress,
  isError,
  toBeHex,
  zeroPadValue,
  type ContractRunner,
  type Log,
} from 'ethers';
import { CID } from 'multiformats/cid';
import { abi as perpetualAbi } from '../../../contracts/artifacts/PerpetualStorage.json';
import type { EstuaryConfig } from './config';
import { EstuaryError } from './errors';
import { type TxDone, type TxHooks, type TxTarget, eventIn, sendTx } from './tx';

export type { TxDone, TxHooks, TxQuote } from './tx';
import { type Wallet, cidText, coinOf, logsInRanges, shortMessage } from './chain';

export const perpetualInterface = new Interface(perpetualAbi);

/** What an order asks for. */
export interface OrderParams {
  /** The piece: its v1 piece CID (`baga…`). */
  pieceCid: string;
  /** The content's root CID. */
  payloadCid: string;
  /** The piece's padded size. */
  paddedSize: number;
  /** The CAR's size: what providers download. */
  carSize: number;
  /** Replicas to keep (1–32). */
  replicas: number;
  /** What each replica's SP is paid over one term, wei. */
  bounty: bigint;
  /** Epochs each replica lasts (the contract's `minTerm`–`maxTerm`). */
  term: number;
  /** Only verified (Fil+) deals. */
  verified?: boolean;
  /** Where providers download the CAR (`https://…`, at most 8). */
  origins: string[];
}

/** An order as the contract keeps it. */
export interface PerpetualOrder {
  id: bigint;
  client: string;
  /** Replicas wanted. */
  replicas: number;
  /** Slots claimed or holding a replica. */
  inUse: number;
  /** Replicas active (sealed, their deals active). */
  active: number;
  verified: boolean;
  suspended: boolean;
  cancelled: boolean;
  /** Funds not yet committed to a slot, wei. */
  balance: bigint;
  /** The bounty per replica term, wei. */
  bounty: bigint;
  paddedSize: number;
  term: number;
  carSize: number;
  /** The piece (v1 piece CID text). */
  pieceCid: string;
  /** The content's root CID text. */
  payloadCid: string;
  origins: string[];
  /** Providers holding or having claimed a slot (`f0…`). */
  holders: string[];
}




/** An order's replicas over time, from its events: at each block that changed them. */
export interface ReplicaHistory {
  blocks: number[];
  /** Slots claimed or holding a replica. */
  inUse: number[];
  /** Replicas active. */
  active: number[];
}

/** The contract's bounds on orders. */
export interface PerpetualLimits {
  minTerm: number;
  maxTerm: number;
  maxReplicas: number;
  claimWindow: number;
}

const CUSTOM_ERRORS: Record<string, string> = {
  PerpetualStorageBadPieceCid: 'the piece CID is not a v1 piece CID',
  PerpetualStorageBadPayloadCid: 'the content CID is malformed',
  PerpetualStorageBadSize: 'the CAR does not fit the padded size',
  PerpetualStorageBadReplicas: 'the replicas must be from 1 to 32',
  PerpetualStorageBadBounty: 'the bounty must be above zero',
  PerpetualStorageBadTerm: 'the term is outside what the contract allows',
  PerpetualStorageBadOrigins: 'the origins are empty, too long or too many',
  PerpetualStorageNotClient: 'only the order’s client may do this',
  PerpetualStorageOrderClosed: 'the order is cancelled',
  PerpetualStorageNoOrder: 'there is no such order',
  PerpetualStorageNothingToWithdraw: 'nothing to withdraw',
};


/** An order with slots open: what a storage provider could claim now. */
export interface OpenSlots {
  id: bigint;
  /** The piece (v1 piece CID text) and its padded size. */
  pieceCid: string;
  paddedSize: number;
  /** What a provider downloads. */
  carSize: number;
  origins: string[];
  term: number;
  verified: boolean;
  /** Slots open now (replicas wanted less slots in use). */
  open: number;
  /** The bounty a claim now locks (risen while replicas are missing), wei. */
  bounty: bigint;
  /** The bond a claim now puts up, wei. */
  bond: bigint;
}

/** A client's perpetual storage orders, through its wallet. */
export class Perpetual {
  readonly address: string;
  readonly #wallet: Wallet;
  readonly #chainId: number;
  readonly #target: TxTarget;
  readonly #config: EstuaryConfig;

  /** `PerpetualStorage` of `config`, used through `wallet`. */
  constructor(config: EstuaryConfig, wallet: Wallet) {
    const address = config.contracts.PerpetualStorage;
    if (!address) throw new EstuaryError('The stack names no PerpetualStorage contract.');
    this.address = getAddress(address);
    this.#wallet = wallet;
    this.#chainId = config.chain_id;
    this.#config = config;
    this.#target = { address: this.address, name: 'PerpetualStorage', iface: perpetualInterface, errors: CUSTOM_ERRORS };
  }

  #reader(): Contract {
    return new Contract(this.address, perpetualInterface, this.#wallet.provider);
  }

  async #writer(): Promise<Contract> {
    return new Contract(this.address, perpetualInterface, await this.#wallet.provider.getSigner(this.#wallet.address));
  }

  #coin(wei: bigint): string {
    return coinOf(wei, this.#chainId);
  }

  /**
   * The orders with slots open now, among the `last` created (newest first), read with `runner`
   * (no wallet needed): what storage providers could claim, at what bounty and bond.
   */
  static async openSlots(config: EstuaryConfig, runner: ContractRunner, last = 100): Promise<OpenSlots[]> {
    const address = config.contracts.PerpetualStorage;
    if (!address) throw new EstuaryError('The stack names no PerpetualStorage contract.');
    const c = new Contract(address, perpetualInterface, runner);
    const count = (await c.getFunction('orderCount')()) as bigint;
    const out: OpenSlots[] = [];
    for (let id = count; id > 0n && id > count - BigInt(last); id--) {
      const o = (await c.getFunction('getOrder')(id)) as {
        replicas: bigint;
        inUse: bigint;
        suspended: boolean;
        cancelled: boolean;
        verified: boolean;
        paddedSize: bigint;
        term: bigint;
        carSize: bigint;
        pieceCid: string;
        origins: string[];
      };
      if (o.cancelled || o.suspended || o.inUse >= o.replicas) continue;
      const [bounty, bond] = (await Promise.all([c.getFunction('currentBounty')(id), c.getFunction('bondFor')(id)])) as [bigint, bigint];
      out.push({
        id,
        pieceCid: cidText(o.pieceCid),
        paddedSize: Number(o.paddedSize),
        carSize: Number(o.carSize),
        origins: [...o.origins],
        term: Number(o.term),
        verified: o.verified,
        open: Number(o.replicas - o.inUse),
        bounty,
        bond,
      });
    }
    return out;
  }

  /** The contract's bounds on orders, read with `runner` (a wallet's provider, or `chainReader`). */
  static async limits(config: EstuaryConfig, runner: ContractRunner): Promise<PerpetualLimits> {
    const address = config.contracts.PerpetualStorage;
    if (!address) throw new EstuaryError('The stack names no PerpetualStorage contract.');
    const c = new Contract(address, perpetualInterface, runner);
    const [minTerm, maxTerm, maxReplicas, claimWindow] = await Promise.all([
      c.getFunction('minTerm')(),
      c.getFunction('maxTerm')(),
      c.getFunction('MAX_REPLICAS')(),
      c.getFunction('claimWindow')(),
    ]);
    return { minTerm: Number(minTerm), maxTerm: Number(maxTerm), maxReplicas: Number(maxReplicas), claimWindow: Number(claimWindow) };
  }

  /** Sends `method(args)` with `value` (see `sendTx`). */
  #send(action: string, method: string, args: unknown[], value: bigint, hooks: TxHooks): Promise<TxDone & { logs: readonly Log[] }> {
    return sendTx(this.#wallet, this.#chainId, this.#target, action, method, args, value, hooks);
  }


  /**
   * Creates an order, funding it with `funding` (wei; a term of every replica is
   * `replicas × bounty`). Resolves with its id once mined.
   */
  async createOrder(p: OrderParams, funding: bigint, hooks: TxHooks = {}): Promise<TxDone & { orderId: bigint }> {
    let piece: Uint8Array;
    let payload: Uint8Array;
    try {
      piece = CID.parse(p.pieceCid).bytes;
      payload = CID.parse(p.payloadCid).bytes;
    } catch (e) {
      throw new EstuaryError(`Not a CID: ${shortMessage(e)}`, { cause: e });
    }
    const params = {
      pieceCid: piece,
      payloadCid: payload,
      paddedSize: p.paddedSize,
      carSize: p.carSize,
      replicas: p.replicas,
      bounty: p.bounty,
      term: p.term,
      verified: p.verified ?? false,
      origins: p.origins,
    };
    const action = `Create an order for ${p.replicas} replicas of ${p.pieceCid}, each paid ${this.#coin(p.bounty)} a term of ${p.term} epochs`;
    const done = await this.#send(action, 'createOrder', [params], funding, hooks);
    const created = eventIn(perpetualInterface, done.logs, 'OrderCreated', this.address);
    if (!created) throw new EstuaryError('The order was created but no OrderCreated event was found.');
    return { ...done, orderId: created.args.orderId as bigint };
  }

  /** Adds `amount` (wei) to order `id`'s funds. */
  fund(id: bigint, amount: bigint, hooks: TxHooks = {}): Promise<TxDone> {
    return this.#send(`Fund order #${id} with ${this.#coin(amount)}`, 'fund', [id], amount, hooks);
  }

  /** Sets the bounty of slots claimed from now on (wei per replica term). */
  setBounty(id: bigint, bounty: bigint, hooks: TxHooks = {}): Promise<TxDone> {
    return this.#send(`Set order #${id}'s bounty to ${this.#coin(bounty)} a term`, 'setBounty', [id, bounty], 0n, hooks);
  }

  /** Sets the replicas wanted; below the slots in use, none opens until enough are vacated. */
  setReplicas(id: bigint, replicas: number, hooks: TxHooks = {}): Promise<TxDone> {
    return this.#send(`Set order #${id} to ${replicas} replicas`, 'setReplicaTarget', [id, replicas], 0n, hooks);
  }

  /** Stops (or resumes) new claims; replicas made keep their terms. */
  setSuspended(id: bigint, suspended: boolean, hooks: TxHooks = {}): Promise<TxDone> {
    return this.#send(`${suspended ? 'Suspend' : 'Resume'} order #${id}`, 'setSuspended', [id, suspended], 0n, hooks);
  }

  /** Cancels the order: what no slot holds is refunded (to `withdraw`). */
  cancel(id: bigint, hooks: TxHooks = {}): Promise<TxDone> {
    return this.#send(`Cancel order #${id} and refund what no slot holds`, 'cancel', [id], 0n, hooks);
  }

  /** The chain's current block. */
  currentBlock(): Promise<number> {
    return this.#wallet.provider.getBlockNumber();
  }

  /** What this wallet may withdraw (refunds), wei. */
  async withdrawable(): Promise<bigint> {
    return (await this.#reader().getFunction('withdrawable')(this.#wallet.address)) as bigint;
  }

  /** Sends this wallet's refunds to it. */
  withdraw(hooks: TxHooks = {}): Promise<TxDone> {
    return this.#send('Withdraw your refunds', 'withdraw', [], 0n, hooks);
  }

  /** Order `id` as the contract keeps it. */
  getOrder(id: bigint): Promise<PerpetualOrder> {
    return Perpetual.readOrder(this.#config, this.#wallet.provider, id);
  }

  /** Order `id` as the contract keeps it, read with `runner` (no wallet needed). */
  static async readOrder(config: EstuaryConfig, runner: ContractRunner, id: bigint): Promise<PerpetualOrder> {
    const address = config.contracts.PerpetualStorage;
    if (!address) throw new EstuaryError('The stack names no PerpetualStorage contract.');
    const v = (await new Contract(address, perpetualInterface, runner).getFunction('getOrder')(id)) as {
      client: string;
      replicas: bigint;
      inUse: bigint;
      active: bigint;
      verified: boolean;
      suspended: boolean;
      cancelled: boolean;
      balance: bigint;
      bounty: bigint;
      paddedSize: bigint;
      term: bigint;
      carSize: bigint;
      pieceCid: string;
      payloadCid: string;
      origins: string[];
      holders: bigint[];
    };
    return {
      id,
      client: v.client,
      replicas: Number(v.replicas),
      inUse: Number(v.inUse),
      active: Number(v.active),
      verified: v.verified,
      suspended: v.suspended,
      cancelled: v.cancelled,
      balance: v.balance,
      bounty: v.bounty,
      paddedSize: Number(v.paddedSize),
      term: Number(v.term),
      carSize: Number(v.carSize),
      pieceCid: cidText(v.pieceCid),
      payloadCid: cidText(v.payloadCid),
      origins: [...v.origins],
      holders: v.holders.map((h) => `f0${h}`),
    };
  }

  /**
   * The orders `client` (default: this wallet) created, with the block of each, newest first:
   * from `fromBlock` (default: the deployment) to `toBlock` (default: the latest).
   */
  async ordersOf(
    config: EstuaryConfig,
    client = this.#wallet.address,
    fromBlock = config.deploy_block ?? 0,
    toBlock?: number,
  ): Promise<{ id: bigint; block: number }[]> {
    const topic = perpetualInterface.getEvent('OrderCreated')!.topicHash;
    const logs = await this.#logs([topic, null, zeroPadValue(client, 32)], fromBlock, toBlock);
    return logs.map((l) => ({ id: BigInt(l.topics[1]!), block: l.blockNumber })).reverse();
  }

  /**
   * Order `id`'s replicas over time: slots in use and active after each block that changed
   * them, from `fromBlock` (its creation's block, if known; default: the deployment).
   */
  async history(config: EstuaryConfig, id: bigint, fromBlock = config.deploy_block ?? 0): Promise<ReplicaHistory> {
    const names = ['SlotClaimed', 'SlotActivated', 'SlotReopened', 'SlotLost'];
    const topics = names.map((n) => perpetualInterface.getEvent(n)!.topicHash);
    const logs = await this.#logs([topics, toBeHex(id, 32)], fromBlock);
    const out: ReplicaHistory = { blocks: [], inUse: [], active: [] };
    const state = new Map<string, 'claimed' | 'active'>();
    for (const log of logs) {
      const parsed = perpetualInterface.parseLog(log);
      if (!parsed) continue;
      const provider = String(parsed.args.provider);
      if (parsed.name === 'SlotClaimed') state.set(provider, 'claimed');
      else if (parsed.name === 'SlotActivated') state.set(provider, 'active');
      else state.delete(provider);
      const values = [...state.values()];
      const at = out.blocks.length - 1;
      if (at >= 0 && out.blocks[at] === log.blockNumber) {
        out.inUse[at] = values.length;
        out.active[at] = values.filter((s) => s === 'active').length;
      } else {
        out.blocks.push(log.blockNumber);
        out.inUse.push(values.length);
        out.active.push(values.filter((s) => s === 'active').length);
      }
    }
    return out;
  }

  async #logs(topics: (string | string[] | null)[], fromBlock: number, toBlock?: number): Promise<Log[]> {
    try {
      return await logsInRanges(this.#wallet.provider, this.address, topics, fromBlock, toBlock);
    } catch (e) {
      throw new EstuaryError(`The orders could not be read: ${shortMessage(e)}`, { cause: e });
    }
  }
}
