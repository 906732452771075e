/**
 * Is my piece really inside that SP's deal? The oracle gives a pin's FRC-0058 inclusion proof
 * (`GET /inclusion/{piece}`); this module checks what it proves rather than take its word: in the browser
 * (`EstuaryNode.verifyInclusion`, Rust compiled to WebAssembly) and on chain, where
 * `DealStateView.checkInclusion` asks the storage market actor for each deal's piece and runs
 * PoDSI's checks against it (one `eth_call` per deal, no wallet or gas needed).
 */
import { Contract, Interface, JsonRpcProvider, type ContractRunner } from 'ethers';
import { abi as dealStateViewAbi } from '../../../contracts/artifacts/DealStateView.json';
import { pinningInterface } from './chain';
import type { EstuaryConfig } from './config';
import { CID } from 'multiformats/cid';
import { varint } from 'multiformats';
import { EstuaryError, OracleError } from './errors';
import type { DealStatus } from './deals';

export const dealStateViewInterface = new Interface(dealStateViewAbi);

/** A Merkle path as FRC-0058's `ProofData`: the node's index at its level, siblings bottom up (`0x` hex). */
export interface ProofData {
  index: number;
  path: string[];
}

/** A piece's place in its bucket's aggregate, with its proof. */
export interface AggregateInclusion {
  /** The aggregate (v2 piece CID): the deals' piece. */
  piece_cid: string;
  /** Its commitment (`0x` hex of the 32-byte digest): FRC-0058's `commPa`. */
  comm_pa: string;
  /** Its padded size, the deal's: `sizePa`. */
  size_pa: number;
  /** Where the piece starts in it, padded bytes. */
  offset: number;
  /** From the piece's root to the aggregate's root. */
  proof_subtree: ProofData;
  /** From the piece's entry in the aggregate's index to the aggregate's root. */
  proof_index: ProofData;
}

/** What the oracle says of a piece's inclusion in its deals (`GET /inclusion/{piece}`). */
export interface PieceInclusion {
  /** The piece (v2 piece CID). */
  piece_cid: string;
  /** Its commitment: `commPc`. */
  comm_pc: string;
  /** Its padded size: `sizePc`. */
  size_pc: number;
  /** Its place in its bucket's aggregate; `null` when the deals hold the piece itself. */
  aggregate: AggregateInclusion | null;
  /** The deals holding it; each names its `deal_piece_cid` (the aggregate, or the piece). */
  deals: DealStatus[];
}

/** The inclusion proof of `pieceCid` (v2) and the deals that hold it, as the oracle gives them. */
export async function pieceInclusion(oracleUrl: string, pieceCid: string): Promise<PieceInclusion> {
  const url = `${oracleUrl}/inclusion/${encodeURIComponent(pieceCid)}`;
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new OracleError(`The oracle at ${oracleUrl} cannot be reached.`, { url, cause: e });
  }
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { error?: string; code?: string };
    throw new OracleError(body.error ?? `The oracle answered HTTP ${res.status}.`, {
      url,
      status: res.status,
      code: body.code,
    });
  }
  return (await res.json()) as PieceInclusion;
}

/**
 * What the storage market actor says of a deal (`DealStateView.Status`), and `ended`: active in
 * the market's state, but past the end of its term (not yet settled by the market's cron).
 */
export type MarketState = 'published' | 'active' | 'ended' | 'not_found' | 'expired' | 'unknown';
const MARKET_STATES: MarketState[] = ['published', 'active', 'not_found', 'expired', 'unknown'];

/** Why PoDSI refuses a proof (`PoDSI.Failure`, go-data-segment's checks in order). */
const FAILURES = [
  'none',
  'the piece size is not a power of two',
  'the subtree proof is deeper than 63 levels',
  'the subtree proof’s index is wider than its tree',
  'the aggregate’s size overflows',
  'the index proof is deeper than 63 levels',
  'the index proof’s index is wider than its tree',
  'the piece’s subtree and its index entry lead to different aggregates',
  'the index size overflows',
  'the two proofs give different aggregate sizes',
  'the index entry lies outside the aggregate’s index',
  'the proof leads to another piece than the deal’s',
];

/** One deal, checked on chain. */
export interface DealCheck {
  dealId: number;
  /** The provider the market names (`f0…`); the oracle's when the deal is not in the market. */
  provider: string;
  /** The deal as the market reports it. */
  state: MarketState;
  /** Whether the provider keeps the data now: the deal is active, within its term. */
  stored: boolean;
  /** The deal's piece commitment, as the market gives it (`0x` hex; zero when not in the market). */
  dealCommP: string;
  /** How the deal holds the piece: inside its aggregate (`segment`) or as its own piece (`piece`). */
  holds: 'segment' | 'piece';
  /** Whether the deal is in the market and holds the piece, as PoDSI (or the deal's own piece) shows. */
  proven: boolean;
  /** Why not, in words (`null` when proven). */
  failure: string | null;
  /** Where the piece starts in the deal's piece, padded bytes (when proven). */
  offset: number | null;
}

interface DealStateResult {
  status: bigint;
  provider: bigint;
  commP: string;
  pieceSize: bigint;
  start: bigint;
  duration: bigint;
}

/**
 * Checks each deal of `inclusion` (each deal id once) on chain through `DealStateView` at
 * `dealStateView`, with `runner` (a wallet's provider, or a `JsonRpcProvider` on the chain's
 * RPC): a deal of the aggregate by `checkInclusion` (PoDSI against the market's piece for the
 * deal, which must be the aggregate `inclusion` names), a deal of the piece itself by comparing
 * the market's piece with it. Which of the two a deal is comes from the oracle's answer: a
 * wrong one only makes a deal fail its check. A proven deal keeps the data (`stored`) only
 * while active and within its term, as the current block says.
 */
export async function checkDealsOnChain(
  runner: ContractRunner,
  dealStateView: string,
  inclusion: PieceInclusion,
): Promise<DealCheck[]> {
  const view = new Contract(dealStateView, dealStateViewInterface, runner);
  const epoch = await runner.provider?.getBlockNumber();
  const seen = new Set<number>();
  const checks: DealCheck[] = [];
  for (const deal of inclusion.deals) {
    if (deal.deal_id === null || seen.has(deal.deal_id)) continue;
    seen.add(deal.deal_id);
    const agg = inclusion.aggregate;
    const holds = agg !== null && deal.deal_piece_cid === agg.piece_cid ? 'segment' : 'piece';
    if (holds === 'piece' && deal.deal_piece_cid !== inclusion.piece_cid) continue;
    let state: DealStateResult;
    let proven: boolean;
    let failure: string | null = null;
    let offset: number | null = null;
    try {
      if (holds === 'segment' && agg) {
        const proof = {
          proofSubtree: { index: agg.proof_subtree.index, path: agg.proof_subtree.path },
          proofIndex: { index: agg.proof_index.index, path: agg.proof_index.path },
        };
        const piece = { commPc: inclusion.comm_pc, sizePc: inclusion.size_pc };
        const out = (await view.getFunction('checkInclusion').staticCall(deal.deal_id, proof, piece)) as unknown as [
          DealStateResult,
          boolean,
          bigint,
          bigint,
        ];
        [state, proven] = [out[0], out[1]];
        if (proven && state.commP.toLowerCase() !== agg.comm_pa.toLowerCase()) {
          proven = false;
          failure = 'the deal holds another aggregate than the one checked in the browser';
        } else if (proven) offset = Number(out[3]);
        else if (Number(out[2]) !== 0) failure = FAILURES[Number(out[2])] ?? `PoDSI failure ${out[2]}`;
      } else {
        state = (await view.getFunction('getDeal').staticCall(deal.deal_id)) as unknown as DealStateResult;
        const inMarket = state.status === 0n || state.status === 1n;
        proven = inMarket && state.commP.toLowerCase() === inclusion.comm_pc.toLowerCase() && Number(state.pieceSize) === inclusion.size_pc;
        if (proven) offset = 0;
        else if (inMarket) failure = 'the deal holds another piece';
      }
    } catch (e) {
      throw new EstuaryError(`Deal #${deal.deal_id} could not be checked on chain: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
    let market = MARKET_STATES[Number(state.status)] ?? 'unknown';
    if (market === 'active' && epoch !== undefined && state.start + state.duration <= BigInt(epoch)) market = 'ended';
    if (!proven && failure === null) {
      failure = market === 'not_found' ? 'the market has no such deal' : market === 'expired' ? 'the deal has ended' : 'the market did not answer';
    }
    checks.push({
      dealId: deal.deal_id,
      provider: state.provider > 0n ? `f0${state.provider}` : deal.provider,
      state: market,
      stored: proven && market === 'active',
      dealCommP: state.commP,
      holds,
      proven,
      failure,
      offset,
    });
  }
  return checks;
}

/** A read-only connection to the stack's chain (`config.rpc_url`): checks need no wallet. */
export function chainReader(config: EstuaryConfig): JsonRpcProvider {
  return new JsonRpcProvider(config.rpc_url, config.chain_id, { staticNetwork: true });
}

/**
 * Whether `EstuaryPinning` at `pinning` recorded `inclusion`'s piece (commitment and padded
 * size) for request `requestId` when the oracle reported it pinned: the link from the request
 * made on chain to the piece the proofs are about.
 */
export async function recordedOnChain(
  runner: ContractRunner,
  pinning: string,
  requestId: bigint,
  inclusion: Pick<PieceInclusion, 'comm_pc' | 'size_pc'>,
): Promise<boolean> {
  const contract = new Contract(pinning, pinningInterface, runner);
  const s = (await contract.getFunction('getRequest').staticCall(requestId)) as unknown as {
    commP: string;
    paddedSize: bigint;
  };
  return s.commP.toLowerCase() === inclusion.comm_pc.toLowerCase() && Number(s.paddedSize) === inclusion.size_pc;
}

/** The multihash of a v2 piece CID (FRC-0069): fr32-sha2-256-trunc254-padded-binary-tree. */
const PIECE_MULTIHASH = 0x1011;

/**
 * The commitment (`0x` hex) and padded size a v2 piece CID names (FRC-0069: its digest is the
 * padding as a varint, the tree's height, then the 32-byte root; the padded size is 32 bytes ×
 * 2^height), in the shape `recordedOnChain` compares. Throws `EstuaryError` for text that is
 * not a v2 piece CID.
 */
export function pieceCommitment(pieceCidV2: string): Pick<PieceInclusion, 'comm_pc' | 'size_pc'> {
  let cid: CID;
  try {
    cid = CID.parse(pieceCidV2);
  } catch (e) {
    throw new EstuaryError(`Not a CID: ${pieceCidV2}`, { cause: e });
  }
  const digest = cid.multihash.digest;
  if (cid.multihash.code !== PIECE_MULTIHASH) throw new EstuaryError(`Not a v2 piece CID: ${pieceCidV2}`);
  let padding: number;
  try {
    [, padding] = varint.decode(digest);
  } catch (e) {
    throw new EstuaryError(`Not a v2 piece CID: ${pieceCidV2}`, { cause: e });
  }
  const height = digest[padding];
  const root = digest.subarray(padding + 1);
  if (height === undefined || height > 58 || root.length !== 32) throw new EstuaryError(`Not a v2 piece CID: ${pieceCidV2}`);
  const hex = Array.from(root, (b) => b.toString(16).padStart(2, '0')).join('');
  return { comm_pc: `0x${hex}`, size_pc: 32 * 2 ** height };
}
