/**
 * The DataDAO page (`#/dao`): the DAO's proposals, newest first, read from the chain every 3 s
 * (no wallet needed), with votes, quorum and when voting closes (by the chain's clock); a
 * member proposes a CID (filled from the content added last) and votes; anyone executes a
 * closed vote; an accepted CID is pinned, and once the oracle funds its order, the order and its
 * replicas are shown.
 */
import { type AddResult, DataDao, type DaoProposal, type EstuaryConfig, Perpetual, type TxDone, type Wallet, chainReader } from '../sdk';
import { Poller, REFRESH_MS, TxPanel, el } from './shared';

export class DataDaoPage {
  #config: EstuaryConfig;
  #connected: () => Wallet | undefined;
  #connect: () => Promise<Wallet>;
  #added: () => AddResult | undefined;
  #ui = {
    member: el('dao-member'),
    form: el<HTMLFormElement>('dao-form'),
    cid: el<HTMLInputElement>('dao-cid'),
    size: el<HTMLInputElement>('dao-size'),
    propose: el<HTMLButtonElement>('dao-propose'),
    message: el('dao-message'),
    tx: el('dao-tx'),
    hint: el('proposals-hint'),
    proposals: el<HTMLUListElement>('proposals'),
  };
  #poller = new Poller();
  #tx: TxPanel;

  constructor(config: EstuaryConfig, connected: () => Wallet | undefined, connect: () => Promise<Wallet>, added: () => AddResult | undefined) {
    this.#config = config;
    this.#connected = connected;
    this.#connect = connect;
    this.#added = added;
    this.#tx = new TxPanel(this.#ui.message, this.#ui.tx, [this.#ui.propose]);
    this.#ui.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.#guard(async () => {
        const dao = new DataDao(this.#config, this.#connected() ?? (await this.#connect()));
        const done = await dao.propose(this.#ui.cid.value, Number(this.#ui.size.value), this.#tx.hooks());
        this.#tx.say(`Proposal #${done.proposalId} is on chain; members vote until its deadline.`);
        return done;
      });
    });
  }

  /** Shown: fill the form from the content added last, and follow the proposals. */
  enter(): void {
    const added = this.#added();
    if (added && !this.#ui.cid.value) {
      this.#ui.cid.value = added.root;
      this.#ui.size.value = String(added.carSize);
    }
    this.#poller.stop();
    this.#poller.start(async () => {
      if (!this.#tx.busy) await this.#show();
    }, REFRESH_MS);
  }

  /** Hidden: stop following. */
  leave(): void {
    this.#poller.stop();
  }

  #guard(work: () => Promise<TxDone>): Promise<void> {
    return this.#tx.run(work, () => this.#show());
  }

  /** Proposals already read (those final are not read again). */
  #known = new Map<bigint, DaoProposal>();

  async #show(): Promise<void> {
    try {
      await this.#read();
    } catch (e) {
      this.#ui.hint.textContent = `The proposals could not be read: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  async #read(): Promise<void> {
    const ui = this.#ui;
    const wallet = this.#connected();
    // Reads go to the chain's RPC (batched), not through the wallet.
    const reader = chainReader(this.#config);
    const dao = wallet ? new DataDao(this.#config, wallet) : undefined;
    const [proposals, member, block] = await Promise.all([
      DataDao.proposals(this.#config, reader, 50, this.#known),
      dao?.isMember(),
      reader.getBlock('latest'),
    ]);
    for (const p of proposals) this.#known.set(p.id, p);
    const now = block?.timestamp ?? Math.floor(Date.now() / 1000);
    ui.member.textContent = !wallet
      ? 'Connect your wallet to propose or vote; anyone may read and execute.'
      : member
        ? `You are a member (${wallet.address}): you may propose CIDs and vote on others'.`
        : `${wallet.address} is not a member: members propose and vote; anyone may execute a closed vote.`;
    ui.member.dataset.member = String(Boolean(member));
    ui.hint.textContent = proposals.length ? 'The last 50 proposals, newest first.' : 'No proposals yet.';
    // Votes as the contract allows them: membership as of each proposal's block.
    const votable = dao ? await Promise.all(proposals.map((p) => dao.canVote(p, now))) : proposals.map(() => false);
    const orders = await Promise.all(
      proposals.map((p) => (p.orderId === null ? undefined : Perpetual.readOrder(this.#config, reader, p.orderId).catch(() => undefined))),
    );
    ui.proposals.replaceChildren(
      ...proposals.map((p, i) => this.#row(p, now, votable[i] ?? false, orders[i])),
    );
  }

  #row(p: DaoProposal, now: number, votable: boolean, order: { active: number; replicas: number } | undefined): HTMLLIElement {
    const li = document.createElement('li');
    li.dataset.proposal = String(p.id);
    li.dataset.state = p.state;
    const open = p.state === 'open' && now < p.deadline;
    const closes = new Date(p.deadline * 1000).toLocaleTimeString();
    const votes = `${p.up} for, ${p.down} against, ${p.quorum} needed`;
    const where =
      p.state === 'open'
        ? open
          ? `voting until ${closes}`
          : 'voting closed: to execute'
        : p.state === 'funded' && p.orderId !== null
          ? `order #${p.orderId}${order ? `: ${order.active} of ${order.replicas} replicas active` : ''}`
          : p.state === 'accepted'
            ? now > p.fundBy
              ? `pinned as request #${p.pinRequest}; its order was not funded in time: to expire`
              : `pinned as request #${p.pinRequest}; its order is funded once the pin is reported`
            : p.state;
    const text = document.createElement('span');
    text.textContent = `#${p.id} · ${p.cid} · ${p.state} · ${votes} · ${where}`;
    li.append(text);
    const button = (label: string, testid: string, work: () => Promise<TxDone>) =>
      this.#tx.button(label, testid, work, () => this.#show());
    const controls = document.createElement('div');
    controls.className = 'order-controls';
    // Each transaction signs with the wallet connected when it is clicked.
    const dao = async () => new DataDao(this.#config, this.#connected() ?? (await this.#connect()));
    if (votable) {
      controls.append(
        button('Vote for', 'dao-vote-for', async () => (await dao()).vote(p.id, true, this.#tx.hooks())),
        button('Vote against', 'dao-vote-against', async () => (await dao()).vote(p.id, false, this.#tx.hooks())),
      );
    }
    if (p.state === 'accepted' && now > p.fundBy) {
      controls.append(button('Expire', 'dao-expire', async () => (await dao()).expire(p.id, this.#tx.hooks())));
    }
    if (p.state === 'open' && !open) {
      controls.append(
        button('Execute', 'dao-execute', async () => (await dao()).execute(p.id, this.#tx.hooks())),
      );
    }
    if (controls.childElementCount) li.append(controls);
    return li;
  }
}
