/**
 * Contract deals: the `DealClient` proposals a storage provider can take (FRC-0068, as Boost
 * and Estuary's SP agents take them), read from the chain without a wallet.
 */
import { Contract, Interface, type Provider } from 'ethers';
import { abi as dealClientAbi } from '../../../contracts/artifacts/DealClient.json';
import { cidText, logsInRanges } from './chain';
import type { EstuaryConfig } from './config';
import { EstuaryError } from './errors';

/** The `DealClient` contract's interface (its ABI). */
export const dealClientInterface = new Interface(dealClientAbi);

/** A proposal as `DealClient.getProposal` gives it, with what an SP needs to decide. */
export interface DealProposal {
  /** The proposal's id (`bytes32`, the `DealProposalCreate` topic Boost reads). */
  id: string;
  /** The piece (v1 piece CID text). */
  pieceCid: string;
  /** Padded piece size, bytes. */
  pieceSize: number;
  /** The payload's root CID (the deal's label). */
  label: string;
  verified: boolean;
  startEpoch: number;
  endEpoch: number;
  /** attoFIL per epoch. */
  pricePerEpoch: bigint;
  providerCollateral: bigint;
  /** The one provider that may take it (its actor id), or null: any provider. */
  provider: number | null;
  /** Deals it asks for. */
  replicas: number;
  /** Deals published for it so far, and how many of them are active (sector proven). */
  published: number;
  active: number;
  /** Where the CAR is downloaded from, and its size. */
  locationRef: string;
  carSize: number;
  cancelled: boolean;
  /** Whether a provider can still take it: not cancelled, replicas left, start epoch ahead. */
  open: boolean;
}

interface ProposalView {
  request: {
    pieceCid: string;
    pieceSize: bigint;
    verifiedDeal: boolean;
    label: string;
    startEpoch: bigint;
    endEpoch: bigint;
    storagePricePerEpoch: bigint;
    providerCollateral: bigint;
    provider: bigint;
    replicas: bigint;
    locationRef: string;
    carSize: bigint;
  };
  cancelled: boolean;
  deals: { activated: bigint }[];
}

/**
 * The proposals of the stack's `DealClient`, followed from its events: each read finds the new
 * `DealProposalOffered` events since the last (from the deployment block the first time) and
 * reads again only the proposals that are not final (cancelled, every replica taken, or past
 * their start epoch).
 */
export class DealProposals {
  readonly #contract: Contract;
  readonly #reader: Provider;
  readonly #address: string;
  #next: number;
  /** Ids, oldest first, and the same as a set. */
  readonly #ids: string[] = [];
  readonly #seen = new Set<string>();
  readonly #final = new Map<string, DealProposal>();
  /** The read under way: a second caller waits for it rather than scan the same blocks. */
  #reading: Promise<DealProposal[]> | undefined;

  constructor(config: EstuaryConfig, reader: Provider) {
    const address = config.contracts.DealClient;
    if (!address) throw new EstuaryError('The stack names no DealClient contract.');
    this.#address = address;
    this.#reader = reader;
    this.#contract = new Contract(address, dealClientInterface, reader);
    this.#next = config.deploy_block ?? 0;
  }

  /** The newest `last` proposals (newest first), each as the contract has it now. */
  read(last = 100): Promise<DealProposal[]> {
    this.#reading ??= this.#read(last).finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  async #read(last: number): Promise<DealProposal[]> {
    const head = await this.#reader.getBlockNumber();
    if (head >= this.#next) {
      const topic = dealClientInterface.getEvent('DealProposalOffered')!.topicHash;
      const logs = await logsInRanges(this.#reader, this.#address, [topic], this.#next, head);
      for (const log of logs) {
        const id = log.topics[1];
        if (id && !this.#seen.has(id)) {
          this.#seen.add(id);
          this.#ids.push(id);
        }
      }
      this.#next = head + 1;
    }
    const ids = this.#ids.slice(-last).reverse();
    // Eight `getProposal` calls at a time.
    const out: DealProposal[] = [];
    for (let i = 0; i < ids.length; i += 8) {
      out.push(...(await Promise.all(ids.slice(i, i + 8).map((id) => this.#final.get(id) ?? this.#proposal(id, head)))));
    }
    return out;
  }

  async #proposal(id: string, head: number): Promise<DealProposal> {
    const v = (await this.#contract.getFunction('getProposal')(id)) as ProposalView;
    const r = v.request;
    const replicas = Number(r.replicas);
    const published = v.deals.length;
    const proposal: DealProposal = {
      id,
      pieceCid: cidText(r.pieceCid),
      pieceSize: Number(r.pieceSize),
      label: r.label,
      verified: r.verifiedDeal,
      startEpoch: Number(r.startEpoch),
      endEpoch: Number(r.endEpoch),
      pricePerEpoch: r.storagePricePerEpoch,
      providerCollateral: r.providerCollateral,
      provider: r.provider === 0n ? null : Number(r.provider),
      replicas,
      published,
      active: v.deals.filter((d) => d.activated >= 0n).length,
      locationRef: r.locationRef,
      carSize: Number(r.carSize),
      cancelled: v.cancelled,
      open: !v.cancelled && published < replicas && Number(r.startEpoch) > head,
    };
    // Nothing changes a proposal that cannot be taken any more, but its deals' activation.
    if (!proposal.open && (proposal.cancelled || proposal.active === published)) this.#final.set(id, proposal);
    return proposal;
  }
}
