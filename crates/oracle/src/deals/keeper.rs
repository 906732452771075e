//! The keeper: each round it reads what the storage market says of the deals of the oracle's
//! open orders (through `DealStateView`, batched), stores it, and sends the transactions that
//! keep the orders' slots moving:
//!
//! ```text
//!   store: open orders + replicas ──► market::read(deal ids) ──► classify ──► store (deal_market)
//!        └─► domain::market::keep(replicas, head) ──► TxManager::send(reopen | markLost | collect, key)
//! ```
//!
//! - a claim not proven by its deadline (an SP that never publishes) is reopened, so another SP
//!   can claim the slot (the contract refuses the same provider twice for an order while it
//!   holds a slot, and pays the keeper's tip from the lapsed bond);
//! - an active replica whose term is over, or whose deal the market says is gone, is reopened;
//! - with `--mark-lost-after-secs`, an active replica of the operator's orders its probes found
//!   lost is marked lost (`markLost`: its provider excluded from the order for good, paid what
//!   it earned and a loss fee) once it has been lost that long, its provider once served it and
//!   its last probe is recent and failed ([`crate::domain::market::MarkLostRules`]); never for
//!   most providers at once (more likely the oracle's fault). A DataDAO's orders have the DAO
//!   as client: their replicas are marked through it (`DataDAO.markReplicaLost`, which the
//!   oracle may send as the DAO's operator) when the keeper knows the DAO, and not at all
//!   otherwise;
//! - with `--deal-collect-epochs`, an active replica's accrued bounty is collected for its SP
//!   once that many epochs have passed since it was last paid (`BountyPaid`, whoever called).
//! - an active replica of the operator's orders whose term ends within `--deal-renew-epochs` is
//!   renewed ahead of its end: the order's target is raised by one (`setReplicaTarget`), so that
//!   another SP claims and seals a new replica while the old one still runs, and lowered back as
//!   soon as it is claimed, below the slots in use, so that the ending slot does not open again,
//!   or in the window's last quarter if nobody claims it ([`crate::domain::market::retarget`]). Before each change the order is read on chain: a
//!   target already there is not sent again, and a raise the order's balance cannot pay a claim
//!   for waits (said once). A DataDAO's orders have the DAO as client: when the keeper knows
//!   the DAO (`--datadao-address`), their targets are set through it (`DataDAO.renewReplicas`,
//!   as its operator), around the replicas the DAO keeps of the order (`orderReplicas`, read
//!   from the DAO at most every `DAO_REPLICAS_TTL` and again before each change: its owner may
//!   have changed them) and at most twice them, as the DAO allows; without it, not renewed
//!   ahead.
//!
//! Each transaction has a ledger key naming the slot's claim (and, for a collection, the epoch
//! last paid): a pending one is adopted after a restart, not sent again. The contract checks
//! every reopening itself, so a keeper that acts on a stale view costs an `eth_estimateGas`, not
//! gas: the refusal is logged and the task tried again after `RETRY`. A mark of loss is the
//! exception: the contract takes the client's word, hence the rules above.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use estuary_chain::{TxError, TxManager};
use estuary_contracts::{
    DataDAO, PerpetualStorage, perpetual::PerpetualStorage::PerpetualStorageErrors,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    domain::{
        deal::{Backend, ReplicaState},
        market::{
            Expected, KeeperAction, KeeperRules, KeeperTask, MarkLostRules, MarketView, Targets,
            classify, keep, raise_funded, retarget,
        },
        now_ms,
    },
    store::{OrderWithReplicas, Store},
};

/// A task the contract refused is asked again after this long.
const RETRY: Duration = Duration::from_secs(60);
/// How long the replicas a DataDAO keeps of an order (`orderReplicas`) are taken as read: its
/// owner's changes are seen within this.
const DAO_REPLICAS_TTL: Duration = Duration::from_secs(300);

/// The keeper's settings.
#[derive(Debug, Clone, Copy)]
pub struct KeeperConfig {
    /// The `DealStateView` the market is read through (none: no market reads).
    pub view: Option<Address>,
    /// Between rounds.
    pub every: Duration,
    /// An active deal ending within this many epochs shows as expiring.
    pub expiring_epochs: u64,
    /// Collect every this many epochs of a replica's term (none: never).
    pub collect_every: Option<u64>,
    /// Mark lost on chain the replicas of the operator's orders its probes found lost (none:
    /// never; `--mark-lost-after-secs`).
    pub mark_lost: Option<MarkLostRules>,
    /// The DataDAO this oracle operates (`--datadao-address`): its orders' lost replicas are
    /// marked, and their ending replicas renewed, through it, under the same rules.
    pub datadao: Option<Address>,
    /// Renew an active replica of the operator's orders (and the DataDAO's) whose term ends
    /// within this many epochs, at most half its term (0: replicas are replaced once their term
    /// is over).
    pub renew_epochs: u64,
}

/// Reads the market and keeps the slots of the orders at one `PerpetualStorage` contract.
#[derive(Debug)]
pub struct Keeper {
    store: Store,
    tx: TxManager,
    contract: Address,
    config: KeeperConfig,
    /// The contract's `MAX_REPLICAS` (read with its claim window).
    max_replicas: u16,
    /// Orders whose renewal waits for funds (said once each).
    unfunded: HashSet<u64>,
    /// The replicas the DataDAO keeps of each of its orders (`orderReplicas`), and when read.
    dao_replicas: HashMap<u64, (u16, Instant)>,
    /// DataDAO orders whose `orderReplicas` could not be had (said once each, until it can).
    dao_unknown: HashSet<u64>,
    tried: HashMap<String, Instant>,
    wake: Option<tokio::sync::watch::Receiver<u64>>,
}

impl Keeper {
    /// A keeper of `contract`'s orders made by this oracle, sending with `tx`.
    pub fn new(store: Store, tx: TxManager, contract: Address, config: KeeperConfig) -> Self {
        Self {
            store,
            tx,
            contract,
            config,
            max_replicas: 0,
            unfunded: HashSet::new(),
            dao_replicas: HashMap::new(),
            dao_unknown: HashSet::new(),
            tried: HashMap::new(),
            wake: None,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut claim_window = None;
        loop {
            if claim_window.is_none() {
                let ps = PerpetualStorage::new(self.contract, self.tx.provider());
                claim_window = match (ps.claimWindow().call().await, ps.MAX_REPLICAS().call().await)
                {
                    (Ok(window), Ok(max)) => {
                        self.max_replicas = max;
                        Some(window)
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        warn!(error = %e, "keeper: the contract's claim window and replica limit");
                        None
                    }
                };
            }
            if let Some(claim_window) = claim_window {
                let rules = KeeperRules {
                    claim_window,
                    collect_every: self.config.collect_every,
                    mark_lost: self.config.mark_lost,
                    now_ms: crate::domain::now_ms(),
                };
                if let Err(e) = self.round(&rules).await {
                    warn!(error = %e, "keeper round failed; retried");
                }
            }
            if !super::tick(self.config.every, &mut self.wake, &shutdown).await {
                return;
            }
        }
    }

    /// Runs a round as soon as `wake` is woken, too (`estuary oracle repair --now`).
    #[must_use]
    pub fn with_wake(mut self, wake: &super::Wake) -> Self {
        self.wake = Some(wake.subscribe());
        self
    }

    /// One round: the market read and stored, then the transactions due.
    pub async fn round(&mut self, rules: &KeeperRules) -> Result<(), String> {
        let head = self.tx.provider().get_block_number().await.map_err(|e| e.to_string())?;
        let mut orders = self.store.open_orders(self.contract).await.map_err(|e| e.to_string())?;
        if let Some(view) = self.config.view
            && let Err(e) = track(
                &self.store,
                self.tx.provider(),
                view,
                &mut orders,
                self.config.expiring_epochs,
            )
            .await
        {
            // The last answers stored stand; lapsed claims and finished terms are still kept.
            warn!(error = %e, "keeper: the market read failed; retried next round");
        }
        let contract = format!("{:#x}", self.contract);
        // A DataDAO's orders have the DAO as client: only it may mark their replicas lost, which
        // it does for its operator (this oracle) when the keeper knows it.
        let theirs = KeeperRules { mark_lost: None, ..*rules };
        // Each task with whether its order is a DataDAO's.
        let mut tasks: Vec<(KeeperTask, bool)> = orders
            .iter()
            .filter(|o| !o.cancelled)
            .filter_map(|o| Some((o.order.order_id?, o)))
            .flat_map(|(id, o)| {
                let dao = o.order.backend == Backend::DataDao;
                let rules = if dao && self.config.datadao.is_none() { &theirs } else { rules };
                keep(&contract, id, &o.replicas, head, rules).into_iter().map(move |t| (t, dao))
            })
            .collect();
        // A mark is for good and on the oracle's word: when it would mark most providers at
        // once, the fault is more likely the oracle's (its network, its `url=`) than theirs.
        let marking: HashSet<u64> = tasks
            .iter()
            .filter(|(t, _)| t.action == KeeperAction::MarkLost)
            .map(|(t, _)| t.provider)
            .collect();
        let holding: HashSet<u64> = orders
            .iter()
            .flat_map(|o| o.replicas.iter())
            .filter(|r| r.state == ReplicaState::Active)
            .map(|r| r.provider)
            .collect();
        if marking.len() >= 2 && marking.len() * 2 > holding.len() {
            warn!(
                marking = marking.len(),
                holding = holding.len(),
                "keeper: most providers look lost at once; nothing marked lost (check the oracle's network and url=)"
            );
            tasks.retain(|(t, _)| t.action != KeeperAction::MarkLost);
        }
        // The orders' targets (the operator's, and the DataDAO's through the DAO when the keeper
        // knows it), from what the slots' tasks leave: a lowering goes before them (a slot this
        // round vacates must not open beside a raised target), a raise after them. Renewal off
        // (0): a target raised before is still lowered.
        let mut lower = Vec::new();
        let operates_dao = self.config.datadao.is_some();
        let ours = |o: &&OrderWithReplicas| o.order.backend != Backend::DataDao || operates_dao;
        for o in orders.iter().filter(|o| !o.cancelled).filter(ours) {
            let Some(id) = o.order.order_id else { continue };
            let dao = o.order.backend == Backend::DataDao;
            let vacating: Vec<u64> = tasks
                .iter()
                .filter(|(t, _)| t.order_id == id)
                .filter(|(t, _)| {
                    matches!(t.action, KeeperAction::Reopen(_) | KeeperAction::MarkLost)
                })
                .map(|(t, _)| t.provider)
                .collect();
            let targets = Targets {
                base: o.order.replicas_target,
                on_chain: o.replicas_on_chain,
                max: self.max_replicas,
            };
            let renew = self.config.renew_epochs;
            let plan =
                |targets| retarget(&contract, id, targets, &o.replicas, &vacating, head, renew);
            let task = if dao {
                // A DataDAO's order: the DAO's own replicas (its owner may have changed them
                // since the order was made, with no event the oracle reads), as last read (at
                // most `DAO_REPLICAS_TTL` ago); a change is planned again on a fresh read.
                match self.dao_targets(id, targets, false).await.and_then(&plan) {
                    Some(_) => self.dao_targets(id, targets, true).await.and_then(&plan),
                    None => None,
                }
            } else {
                plan(targets)
            };
            if let Some(t) = task {
                match t.action {
                    KeeperAction::SetTarget { from, to } if to < from => lower.push((t, dao)),
                    _ => tasks.push((t, dao)),
                }
            }
        }
        lower.append(&mut tasks);
        let tasks = lower;
        self.tried.retain(|_, at| at.elapsed() < RETRY);
        for (task, dao) in tasks {
            if self.tried.contains_key(&task.key) {
                continue;
            }
            self.send(&task, dao).await;
        }
        Ok(())
    }

    /// The DataDAO and its proposal whose order `order_id` is (a DataDAO's order is marked lost
    /// and renewed through it), or none (said why).
    async fn dao_proposal(&self, order_id: u64) -> Option<(Address, u64)> {
        let dao = self.config.datadao?;
        match self.store.dao_proposal_of_order(&format!("{dao:#x}"), order_id).await {
            Ok(Some(proposal)) => Some((dao, proposal)),
            Ok(None) => {
                warn!(order = order_id, %dao, "keeper: a DataDAO order no proposal of the DAO funded; left alone");
                None
            }
            Err(e) => {
                warn!(order = order_id, error = %e, "keeper: the DAO's proposal of an order; retried");
                None
            }
        }
    }

    /// `targets` of DataDAO order `order_id` on the DAO's replicas (read fresh, or as last
    /// read): its base, and up to twice it, which the DAO allows. None while they are unknown.
    async fn dao_targets(
        &mut self,
        order_id: u64,
        targets: Targets,
        fresh: bool,
    ) -> Option<Targets> {
        let base = self.dao_replicas(order_id, fresh).await.filter(|b| *b > 0)?;
        Some(Targets { base, max: self.max_replicas.min(base.saturating_mul(2)), ..targets })
    }

    /// The replicas the DataDAO keeps of its order `order_id` (`orderReplicas`), read again
    /// after `DAO_REPLICAS_TTL` or if `fresh`; none if it cannot be had (said once until it
    /// can; retried next round).
    async fn dao_replicas(&mut self, order_id: u64, fresh: bool) -> Option<u16> {
        if let Some((replicas, at)) = self.dao_replicas.get(&order_id)
            && at.elapsed() < DAO_REPLICAS_TTL
            && !fresh
        {
            return Some(*replicas);
        }
        let read = match self.config.datadao {
            Some(dao) => match self
                .store
                .dao_proposal_of_order(&format!("{dao:#x}"), order_id)
                .await
            {
                Ok(Some(proposal)) => DataDAO::new(dao, self.tx.provider())
                    .orderReplicas(U256::from(proposal))
                    .call()
                    .await
                    .map_err(|e| {
                        format!(
                            "reading the DAO's orderReplicas (a DAO older than renewReplicas?): {e}"
                        )
                    }),
                Ok(None) => Err("no proposal of the DAO funded it".to_owned()),
                Err(e) => Err(e.to_string()),
            },
            None => Err("no DataDAO is operated".to_owned()),
        };
        match read {
            Ok(replicas) => {
                self.dao_unknown.remove(&order_id);
                self.dao_replicas.insert(order_id, (replicas, Instant::now()));
                Some(replicas)
            }
            Err(why) => {
                if self.dao_unknown.insert(order_id) {
                    warn!(order = order_id, %why, "keeper: a DataDAO order's replicas unknown; not renewed (said once)");
                }
                None
            }
        }
    }

    /// Whether `task`'s change of target to `to` is still to be made, as the order stands on
    /// chain: not when the target is already `to` (its event not read yet) or the order is
    /// cancelled, nor a raise whose claims the balance cannot pay (said once per order): a raise
    /// no SP could claim would only cost gas.
    async fn target_due(&mut self, task: &KeeperTask, to: u16, dao: bool) -> Result<bool, String> {
        let ps = PerpetualStorage::new(self.contract, self.tx.provider());
        let order = U256::from(task.order_id);
        let o = ps.getOrder(order).call().await.map_err(|e| e.to_string())?;
        if o.replicas == to || o.cancelled {
            return Ok(false);
        }
        if to <= o.replicas {
            return Ok(true);
        }
        // Raising a fully active order restarts its bounty's rise: a claim right after locks
        // the base bounty. Otherwise the bounty has risen already.
        let bounty = if o.active >= o.replicas {
            o.bounty.to::<u128>()
        } else {
            ps.currentBounty(order).call().await.map_err(|e| e.to_string())?.to::<u128>()
        };
        let balance = o.balance.to::<u128>();
        let funded = raise_funded(o.replicas, to, bounty, balance);
        if funded {
            self.unfunded.remove(&task.order_id);
        } else if self.unfunded.insert(task.order_id) {
            let fix = if dao {
                "the DAO's owner tops it up: DataDAO.topUpOrder"
            } else {
                "fund it, or raise --deal-funded-terms"
            };
            warn!(
                order = task.order_id,
                bounty,
                balance,
                fix,
                "keeper: a replica near its term's end is not renewed ahead: the order cannot pay for another claim"
            );
        }
        Ok(funded)
    }

    async fn send(&mut self, task: &KeeperTask, dao: bool) {
        // Its own handle on the provider: `target_due` borrows the keeper meanwhile.
        let ps = PerpetualStorage::new(self.contract, self.tx.provider().clone());
        let (order, provider) = (U256::from(task.order_id), task.provider);
        let what = match task.action {
            KeeperAction::Reopen(why) => why.as_str(),
            KeeperAction::MarkLost => "lost",
            KeeperAction::Collect { .. } => "collect",
            KeeperAction::SetTarget { .. } => "renewal target",
        };
        let keys = [task.key.clone()];
        let sent = match task.action {
            KeeperAction::Reopen(_) => self.tx.send(ps.reopen(order, provider), &keys).await,
            KeeperAction::MarkLost if dao => {
                let Some((dao, proposal)) = self.dao_proposal(task.order_id).await else {
                    self.tried.insert(task.key.clone(), Instant::now());
                    return;
                };
                let dao = DataDAO::new(dao, self.tx.provider());
                self.tx.send(dao.markReplicaLost(U256::from(proposal), provider), &keys).await
            }
            KeeperAction::MarkLost => self.tx.send(ps.markLost(order, provider), &keys).await,
            KeeperAction::Collect { .. } => self.tx.send(ps.collect(order, provider), &keys).await,
            KeeperAction::SetTarget { to, .. } if dao => {
                match self.target_due(task, to, true).await {
                    Ok(true) => {
                        let Some((dao, proposal)) = self.dao_proposal(task.order_id).await else {
                            self.tried.insert(task.key.clone(), Instant::now());
                            return;
                        };
                        let dao = DataDAO::new(dao, self.tx.provider());
                        self.tx.send(dao.renewReplicas(U256::from(proposal), to), &keys).await
                    }
                    Ok(false) => return,
                    Err(e) => {
                        warn!(order = task.order_id, error = %e, "keeper: reading the order; retried");
                        return;
                    }
                }
            }
            KeeperAction::SetTarget { to, .. } => match self.target_due(task, to, false).await {
                Ok(true) => self.tx.send(ps.setReplicaTarget(order, to), &keys).await,
                // Asked again next round (a read or two, no gas): funded by then, or the
                // target's event read.
                Ok(false) => return,
                Err(e) => {
                    warn!(order = task.order_id, error = %e, "keeper: reading the order; retried");
                    return;
                }
            },
        };
        match sent {
            Ok(receipt) => {
                let tx = format!("{:#x}", receipt.transaction_hash);
                info!(order = task.order_id, provider, %what, %tx, "keeper");
                // Not asked again before the watcher has read its event.
                self.tried.insert(task.key.clone(), Instant::now());
            }
            Err(TxError::WouldRevert { source }) => {
                let why = source
                    .as_decoded_interface_error::<PerpetualStorageErrors>()
                    .map(|e| format!("{e:?}"))
                    .or_else(|| {
                        source
                            .as_decoded_interface_error::<DataDAO::DataDAOErrors>()
                            .map(|e| format!("{e:?}"))
                    })
                    .unwrap_or_else(|| source.to_string());
                info!(order = task.order_id, provider, %what, reason = %why, "keeper: refused; asked again later");
                // The DAO's replicas may have changed since they were read (its owner's
                // `setOrderReplicas`): read again next round.
                if dao {
                    self.dao_replicas.remove(&task.order_id);
                }
                self.tried.insert(task.key.clone(), Instant::now());
            }
            Err(e) => {
                warn!(order = task.order_id, provider, %what, error = %e, "keeper: not sent; retried");
                self.tried.insert(task.key.clone(), Instant::now());
            }
        }
    }
}

/// Reads the market for the deals of `orders`' published and active replicas, keeps the
/// answers, and puts them on the replicas. A failed read changes nothing. (The keeper's, and
/// the contract-deal scheduler's.)
pub(crate) async fn track<P: Provider + Clone + 'static>(
    store: &Store,
    provider: &P,
    view: Address,
    orders: &mut [OrderWithReplicas],
    expiring_epochs: u64,
) -> Result<(), String> {
    // A deal the market already called gone (expired, slashed) is not read again: those
    // answers are final (a contract deal's replica stays `active` in its events after its end).
    let settled = |r: &crate::domain::deal::Replica| {
        r.market.is_some_and(|m| {
            matches!(
                m.state,
                crate::domain::market::MarketState::Expired
                    | crate::domain::market::MarketState::Slashed
            )
        })
    };
    let mut ids: Vec<u64> = orders
        .iter()
        .flat_map(|o| o.replicas.iter())
        .filter(|r| matches!(r.state, ReplicaState::Published | ReplicaState::Active))
        .filter(|r| !settled(r))
        .filter_map(|r| r.deal_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    let reads = super::market::read(provider, view, &ids)
        .await
        .map_err(|e| format!("reading the market (retried): {e}"))?;
    let reads: HashMap<u64, _> = reads.into_iter().map(|r| (r.deal_id, r)).collect();
    let mut views: Vec<(u64, MarketView)> = Vec::new();
    for order in orders.iter_mut() {
        let piece = &order.order.piece_v1;
        let Some(commp) = piece.len().checked_sub(32).and_then(|at| piece[at..].try_into().ok())
        else {
            continue;
        };
        for r in &mut order.replicas {
            if !matches!(r.state, ReplicaState::Published | ReplicaState::Active) {
                continue;
            }
            let Some(read) = r.deal_id.and_then(|id| reads.get(&id)) else { continue };
            let expected =
                Expected { provider: r.provider, commp, padded_size: order.order.padded_size };
            let next = classify(read, &expected, r.market.as_ref(), expiring_epochs);
            if r.market.map(|m| m.state) != Some(next.state) {
                debug!(deal = read.deal_id, state = next.state.as_str(), "market");
            }
            r.market = Some(next);
            views.push((read.deal_id, next));
        }
    }
    store.record_market(&views, now_ms()).await.map_err(|e| e.to_string())
}
