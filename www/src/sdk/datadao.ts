/**
 * The DataDAO: members propose CIDs to keep, vote, and an accepted CID is pinned and then kept
 * on Filecoin by a perpetual storage order the DAO funds (the oracle funds it once the pin is
 * reported). Read without a wallet (`DataDao.proposals`); proposed, voted and executed with one.
 */
import { Contract, type ContractRunner, Interface, getAddress } from 'ethers';
import { CID } from 'multiformats/cid';
import { abi as dataDaoAbi } from '../../../contracts/artifacts/DataDAO.json';
import { type Wallet, cidText } from './chain';
import type { EstuaryConfig } from './config';
import { EstuaryError } from './errors';
import { type TxDone, type TxHooks, type TxTarget, eventIn, sendTx } from './tx';

export const dataDaoInterface = new Interface(dataDaoAbi);

/** Where a proposal is (`DataDAO.State`). */
export type ProposalState = 'open' | 'accepted' | 'rejected' | 'funded' | 'expired';
const STATES: (ProposalState | 'none')[] = ['none', 'open', 'accepted', 'rejected', 'funded', 'expired'];
/** States a proposal never leaves. */
const FINAL: ProposalState[] = ['rejected', 'funded', 'expired'];

/** A proposal as the contract keeps it. */
export interface DaoProposal {
  id: bigint;
  proposer: string;
  /** The CID proposed (text). */
  cid: string;
  /** Its size as proposed, bytes. */
  size: number;
  /** When voting closes, unix seconds. */
  deadline: number;
  up: number;
  down: number;
  /** Votes that must be cast for it to pass. */
  quorum: number;
  /** The block whose membership votes on it. */
  snapshot: number;
  state: ProposalState;
  /** The budget reserved for its order, wei (once accepted). */
  budget: bigint;
  /** Last second for its order to be funded, once accepted. */
  fundBy: number;
  /** Its pin request on `EstuaryPinning`, once accepted. */
  pinRequest: bigint | null;
  /** Its `PerpetualStorage` order, once funded. */
  orderId: bigint | null;
}

const ERRORS: Record<string, string> = {
  DataDAONotMember: 'only members may do this',
  DataDAOInvalidCid: 'the CID is malformed',
  DataDAOBadSize: 'the size must be above zero',
  DataDAOUnknownProposal: 'there is no such proposal',
  DataDAOSelfVote: 'a member may not vote on their own proposal',
  DataDAODoubleVote: 'this member has voted already',
  DataDAOVotingClosed: 'voting on it has closed',
  DataDAOVotingOpen: 'voting on it is still open',
  DataDAOWrongState: 'the proposal is not in a state that allows this',
  DataDAOTreasuryTooSmall: 'the treasury cannot pay the pin and the order',
  DataDAOBadOrderTerms: 'the DAO has no order terms set',
  DataDAOFundingClosed: 'the time to fund its order has passed',
  DataDAOFundingOpen: 'its order may still be funded',
};

function target(config: EstuaryConfig): TxTarget {
  const address = config.contracts.DataDAO;
  if (!address) throw new EstuaryError('The stack names no DataDAO contract.');
  return { address: getAddress(address), name: 'DataDAO', iface: dataDaoInterface, errors: ERRORS };
}

/** A member's (or anyone's) use of the DataDAO, through its wallet. */
export class DataDao {
  readonly #config: EstuaryConfig;
  readonly #wallet: Wallet;
  readonly #target: TxTarget;

  constructor(config: EstuaryConfig, wallet: Wallet) {
    this.#config = config;
    this.#wallet = wallet;
    this.#target = target(config);
  }

  /**
   * The last `last` proposals, newest first, read with `runner` (no wallet needed). Those in
   * `known` that can no longer change (rejected, funded, expired) are not read again.
   */
  static async proposals(
    config: EstuaryConfig,
    runner: ContractRunner,
    last = 50,
    known: ReadonlyMap<bigint, DaoProposal> = new Map(),
  ): Promise<DaoProposal[]> {
    const c = new Contract(target(config).address, dataDaoInterface, runner);
    const count = (await c.getFunction('proposalCount')()) as bigint;
    const ids: bigint[] = [];
    for (let id = count; id > 0n && id > count - BigInt(last); id--) ids.push(id);
    return Promise.all(
      ids.map(async (id) => {
        const had = known.get(id);
        if (had && FINAL.includes(had.state)) return had;
        const [p, request, order] = (await Promise.all([
          c.getFunction('getProposal')(id),
          c.getFunction('pinRequestOf')(id),
          c.getFunction('orderOf')(id),
        ])) as [
          {
            proposer: string;
            deadline: bigint;
            up: bigint;
            down: bigint;
            state: bigint;
            snapshot: bigint;
            quorum: bigint;
            size: bigint;
            budget: bigint;
            fundBy: bigint;
            cid: string;
          },
          bigint,
          bigint,
        ];
        const state = STATES[Number(p.state)];
        if (state === undefined || state === 'none') throw new EstuaryError(`Proposal #${id} has a state this page does not know (${p.state}).`);
        return {
          id,
          proposer: p.proposer,
          cid: cidText(p.cid),
          size: Number(p.size),
          deadline: Number(p.deadline),
          up: Number(p.up),
          down: Number(p.down),
          quorum: Number(p.quorum),
          snapshot: Number(p.snapshot),
          state,
          budget: p.budget,
          fundBy: Number(p.fundBy),
          pinRequest: request === 0n ? null : request,
          orderId: order === 0n ? null : order,
        };
      }),
    );
  }

  #reader(): Contract {
    return new Contract(this.#target.address, dataDaoInterface, this.#wallet.provider);
  }

  /** Whether this wallet is a member now. */
  async isMember(): Promise<boolean> {
    return (await this.#reader().getFunction('isMember')(this.#wallet.address)) as boolean;
  }

  /**
   * Whether this wallet may vote on `p` now, as the contract decides: a member as of its block,
   * not its proposer, not voted yet, voting open (`now`, the chain's time).
   */
  async canVote(p: DaoProposal, now: number): Promise<boolean> {
    if (p.state !== 'open' || now >= p.deadline) return false;
    if (p.proposer.toLowerCase() === this.#wallet.address.toLowerCase()) return false;
    const c = this.#reader();
    const [member, voted] = (await Promise.all([
      c.getFunction('wasMember')(this.#wallet.address, p.snapshot),
      c.getFunction('hasVoted')(p.id, this.#wallet.address),
    ])) as [boolean, boolean];
    return member && !voted;
  }

  /** Whether this wallet has voted on proposal `id`. */
  async hasVoted(id: bigint): Promise<boolean> {
    return (await this.#reader().getFunction('hasVoted')(id, this.#wallet.address)) as boolean;
  }

  /** Proposes `cid` (text) of `size` bytes for the DAO to keep (members only). */
  async propose(cid: string, size: number, hooks: TxHooks = {}): Promise<TxDone & { proposalId: bigint }> {
    let bytes: Uint8Array;
    try {
      bytes = CID.parse(cid.trim()).bytes;
    } catch (e) {
      throw new EstuaryError(`Not a CID: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const done = await sendTx(this.#wallet, this.#config.chain_id, this.#target, `Propose ${cid.trim()} (${size} bytes) to the DataDAO`, 'createCIDProposal', [bytes, size], 0n, hooks);
    const event = eventIn(dataDaoInterface, done.logs, 'CIDProposed', this.#target.address);
    if (!event) throw new EstuaryError('The proposal was made but no CIDProposed event was found.');
    return { ...done, proposalId: event.args.id as bigint };
  }

  /** Votes on proposal `id` (members as of its block, once, never on one's own). */
  vote(id: bigint, up: boolean, hooks: TxHooks = {}): Promise<TxDone> {
    return sendTx(this.#wallet, this.#config.chain_id, this.#target, `Vote ${up ? 'for' : 'against'} proposal #${id}`, 'voteCIDProposal', [id, up], 0n, hooks);
  }

  /** Expires accepted proposal `id` whose order was not funded in time (anyone may): its budget returns. */
  expire(id: bigint, hooks: TxHooks = {}): Promise<TxDone> {
    return sendTx(this.#wallet, this.#config.chain_id, this.#target, `Expire proposal #${id}`, 'expireProposal', [id], 0n, hooks);
  }

  /** Closes proposal `id` after its vote: accepted (its CID pinned, its budget reserved) or rejected. */
  execute(id: bigint, hooks: TxHooks = {}): Promise<TxDone> {
    return sendTx(this.#wallet, this.#config.chain_id, this.#target, `Execute proposal #${id}`, 'execute', [id], 0n, hooks);
  }
}
