//! Deals at providers the oracle chooses: one scheduler over any backend that proposes a deal to
//! a named provider ([`DealBackend`]), and the first such backend, contract deals through a
//! `DealClient` (FRC-0068: Boost's contract-deal flow, and Curio's contract check).
//!
//! ```text
//!   store: reported pieces, closed buckets ──► a contract order per piece (id assigned here)
//!   each round, per open order:
//!     replicas (proposal events folded) + market reads (DealStateView) + scores (/providers)
//!     ├─ offered, not published by its start ──► backend.withdraw (lapsed: the SP's failure)
//!     ├─ published or active, and the market says gone ──► the SP's failure, not counted
//!     └─ fewer live than the target ──► placement::choose ──► placement::proposal_terms
//!            (pre-flight: no gas) ──► record `sending` ──► backend.propose (key per attempt)
//!   DealClient events ──► estuary_chain::Watcher ──► store::ProposalLogs ──► deal_events
//! ```
//!
//! - **Who is chosen** is [`crate::domain::placement::choose`]: the operator's `--provider`
//!   policies, never two replicas at one provider, organisation and region caps, then the score
//!   of `/providers` (success rate decayed by age, speed), a provider that failed the piece last.
//! - **Exactly once, through restarts**: a proposal is recorded with its exact terms before it
//!   is sent, under the ledger key `propose/<client>/<order>/f0<provider>/<attempt>`. A
//!   transaction still pending is adopted (the ledger); one mined before a stop is bound by the
//!   watcher from its `DealProposalOffered` (held until the watcher has read past the head seen
//!   at start); the same terms sent again are answered by the contract with the live
//!   proposal's id (`DealClientDuplicate`), which is adopted.
//! - **A lapse goes elsewhere**: a proposal its provider did not publish by the deal's start
//!   epoch can never be published (the market refuses a start in the past); it is withdrawn
//!   (`cancelDealProposal`, which frees its escrow), counts as the provider's failure in its
//!   score, and the replica is proposed to the next provider.
//! - **Pre-flight**: the terms are checked against the `DealClient`'s own policy before
//!   anything is sent; the escrow is the contract's own check, answered by `eth_estimateGas`
//!   (`DealClientEscrowTooLow`), which costs no gas. A verified deal needs the client's DataCap
//!   (read from the DataCap actor through `DealStateView.dataCapOf`, once a round) to cover its
//!   piece beside the proposals not yet published: the market takes a piece's size of it when
//!   the provider publishes, and drops a deal it does not cover. Each refusal is written on
//!   the order.
//!
//! Real sources followed: boost `storagemarket/contract_deal_monitor.go` (what Boost reads from
//! the proposal event), builtin-actors v18 `actors/market/src/lib.rs` (a deal not activated by
//! its start epoch is dropped; `publish_storage_deals` refuses a start in the past), and
//! `contracts/src/DealClient.sol` in this repository.

use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
};
use estuary_chain::{TxError, TxManager, WatchState};
use estuary_contracts::{DealClient, deal_client::DealClient::DealClientErrors};
use estuary_piece::PieceCid;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{
        deal::{Backend, Replica, ReplicaState},
        now_ms,
        placement::{
            ClientPolicy, DataCapLeft, DealAsk, DealTerms, PlacementRules, ProposalPreflight,
            ProviderPolicy, Situation, choose, proposal_terms, verified_allocation,
        },
        provider::ScoreRules,
    },
    store::{OrderWithReplicas, ProposalRecord, ProposalState, Store, StoreError},
};

/// Pieces taken into orders per round.
const BATCH: u64 = 16;
/// A withdrawal the contract refused is tried again after this long.
const RETRY: Duration = Duration::from_secs(60);
/// A provider that failed a piece this many times is not asked for it again.
const MAX_FAILURES: u32 = 3;

/// Whether the `DealStateView` at `view` answers `dataCapOf` for `client`, as the DataCap
/// pre-flight of verified deals needs: `Err` with what to do when it cannot (a view deployed
/// before `dataCapOf`, or no contract at all, answers nothing a call can decode); a read that
/// fails for another reason (an endpoint down) is `Ok` with a warning, and the pre-flight reads
/// it again before each proposal.
pub async fn check_datacap_view<P: Provider>(
    provider: &P,
    view: Address,
    client: Address,
) -> Result<(), String> {
    let read = estuary_contracts::DealStateView::new(view, provider).dataCapOf(client).call().await;
    match read {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(e, alloy::contract::Error::ZeroData(..))
                || e.as_revert_data().is_some_and(|data| data.is_empty()) =>
        {
            Err(format!(
                "--deal-verified: the DealStateView at {view:#x} does not answer dataCapOf (an \
                 older deployment, or no DealStateView): redeploy it (contracts/script/Deploy.s.sol)"
            ))
        }
        Err(e) => {
            warn!(error = %e, "--deal-verified: the client's DataCap could not be read at start; read again before each proposal");
            Ok(())
        }
    }
}

/// A deal proposed to one named provider.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    /// The ledger key it is sent under (one per attempt).
    pub key: String,
    /// The piece's v1 CID bytes.
    pub piece_v1: &'a [u8],
    /// Padded piece size.
    pub padded_size: u64,
    /// The CAR's size: what the provider downloads.
    pub car_size: u64,
    /// The payload's root CID, as text (the deal's label).
    pub label: &'a str,
    /// Where the provider downloads the CAR.
    pub location: String,
    /// Verified (Fil+).
    pub verified: bool,
    /// Provider, epochs, price and collateral.
    pub terms: DealTerms,
}

/// What a backend answers to a proposal or a withdrawal it did not make.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// A live proposal with the same terms exists (sent before a restart): this is its id.
    #[error("already proposed as {0}")]
    Duplicate(B256),
    /// Its start epoch is too near or past: it can no longer be sent.
    #[error("too late: {0}")]
    Late(String),
    /// A pre-flight check only the backend can make failed (no gas paid).
    #[error("pre-flight: {0}")]
    Preflight(ProposalPreflight),
    /// The backend refuses it for good; the text says why.
    #[error("refused: {0}")]
    Refused(String),
    /// A withdrawal of a proposal that is withdrawn already.
    #[error("withdrawn already")]
    Withdrawn,
    /// Not sent, or not known to be (`maybe_sent`: it may be on chain).
    #[error("not sent: {error}")]
    Failed {
        /// What failed.
        error: String,
        /// Whether it may be on chain or in a mempool.
        maybe_sent: bool,
    },
}

/// A backend that proposes deals to providers the scheduler names. Contract deals through
/// `DealClient` are the first; Boost's mk1.2, Curio's mk20 and PDP can follow without touching
/// the scheduler: each says what it checks a proposal against, proposes, and withdraws.
pub trait DealBackend: Send + Sync {
    /// Which backend it is (stored with its orders).
    fn kind(&self) -> Backend;

    /// Where its orders and proposals are kept (for contract deals, the `DealClient`).
    fn client(&self) -> Address;

    /// The bounds it checks a proposal against.
    fn policy(&self) -> impl Future<Output = Result<ClientPolicy, BackendError>> + Send;

    /// Sends `proposal`, exactly once per key through restarts; returns its id and transaction.
    fn propose(
        &self,
        proposal: &Proposal<'_>,
    ) -> impl Future<Output = Result<(B256, Option<String>), BackendError>> + Send;

    /// Withdraws proposal `id`, which can no longer become a deal.
    fn withdraw(&self, id: B256) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Contract deals through one `DealClient` (the oracle's operator key is one of its operators).
#[derive(Debug, Clone)]
pub struct ContractBackend {
    tx: TxManager,
    client: Address,
}

impl ContractBackend {
    /// Proposals at `client`, sent with `tx`.
    pub fn new(tx: TxManager, client: Address) -> Self {
        Self { tx, client }
    }

    fn refusal(source: &alloy::contract::Error) -> BackendError {
        match source.as_decoded_interface_error::<DealClientErrors>() {
            Some(DealClientErrors::DealClientDuplicate(d)) => BackendError::Duplicate(d.id),
            Some(DealClientErrors::DealClientBadStart(s)) => BackendError::Late(format!(
                "start epoch {} is before the contract's earliest {}",
                s.startEpoch, s.earliest
            )),
            Some(DealClientErrors::DealClientEscrowTooLow(e)) => {
                BackendError::Preflight(ProposalPreflight::Escrow {
                    needed: u128::try_from(e.needed).unwrap_or(u128::MAX),
                    available: u128::try_from(e.available).unwrap_or(u128::MAX),
                })
            }
            Some(DealClientErrors::DealClientNotCancellable(_)) => BackendError::Withdrawn,
            Some(other) => BackendError::Refused(format!("{other:?}")),
            // Not the contract's answer (an estimate that failed for another reason: an
            // endpoint's error, a rate limit): tried again.
            None => BackendError::Failed { error: source.to_string(), maybe_sent: false },
        }
    }

    fn failed(e: &TxError) -> BackendError {
        BackendError::Failed { error: e.to_string(), maybe_sent: e.may_be_on_chain() }
    }
}

fn epoch(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl DealBackend for ContractBackend {
    fn kind(&self) -> Backend {
        Backend::Contract
    }

    fn client(&self) -> Address {
        self.client
    }

    async fn policy(&self) -> Result<ClientPolicy, BackendError> {
        let dc = DealClient::new(self.client, self.tx.provider());
        let failed = |e: &dyn std::fmt::Display| BackendError::Failed {
            error: format!("reading dealPolicy: {e}"),
            maybe_sent: false,
        };
        // Read leniently: a `DealClient` deployed before `acceptDirect` answers a word less.
        let answer = dc.dealPolicy().call_raw().await.map_err(|e| failed(&e))?;
        let p = estuary_contracts::decode_deal_policy(&answer).map_err(|e| failed(&e))?;
        let epochs = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(ClientPolicy {
            min_duration: epochs(p.minDuration),
            max_duration: epochs(p.maxDuration),
            min_start_delay: epochs(p.minStartDelay),
            max_end_delay: epochs(p.maxEndDelay),
            min_collateral_per_byte: u128::try_from(p.minProviderCollateralPerByte)
                .unwrap_or(u128::MAX),
        })
    }

    async fn propose(&self, p: &Proposal<'_>) -> Result<(B256, Option<String>), BackendError> {
        let dc = DealClient::new(self.client, self.tx.provider());
        let request = DealClient::DealRequest {
            pieceCid: Bytes::from(p.piece_v1.to_vec()),
            pieceSize: p.padded_size,
            verifiedDeal: p.verified,
            label: p.label.to_owned(),
            startEpoch: epoch(p.terms.start_epoch),
            endEpoch: epoch(p.terms.end_epoch),
            storagePricePerEpoch: U256::from(p.terms.price_per_epoch),
            providerCollateral: U256::from(p.terms.provider_collateral),
            clientCollateral: U256::ZERO,
            provider: p.terms.provider,
            replicas: 1,
            locationRef: p.location.clone(),
            carSize: p.car_size,
            skipIpniAnnounce: false,
            removeUnsealedCopy: false,
        };
        match self.tx.send(dc.makeDealProposal(request), std::slice::from_ref(&p.key)).await {
            Ok(receipt) => {
                let tx = format!("{:#x}", receipt.transaction_hash);
                let id = receipt
                    .decoded_log::<DealClient::DealProposalOffered>()
                    .filter(|l| l.address == self.client)
                    .map(|l| l.data.id)
                    .ok_or_else(|| {
                        BackendError::Refused(format!("transaction {tx} made no proposal"))
                    })?;
                Ok((id, Some(tx)))
            }
            Err(TxError::WouldRevert { source }) => Err(Self::refusal(&source)),
            Err(e) => Err(Self::failed(&e)),
        }
    }

    async fn withdraw(&self, id: B256) -> Result<(), BackendError> {
        let dc = DealClient::new(self.client, self.tx.provider());
        let key = format!("withdraw/{:#x}/{id:#x}", self.client);
        match self.tx.send(dc.cancelDealProposal(id), &[key]).await {
            Ok(_) => Ok(()),
            Err(TxError::WouldRevert { source }) => Err(Self::refusal(&source)),
            Err(e) => Err(Self::failed(&e)),
        }
    }
}

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The providers dealt with, and their policies.
    pub providers: Vec<ProviderPolicy>,
    /// The operator's price cap, verified flag, organisation and region caps.
    pub rules: PlacementRules,
    /// Duration and start delay of every deal.
    pub ask: DealAsk,
    /// Replicas per piece.
    pub replicas: u16,
    /// With buckets: the largest piece a bucket takes (larger ones get their own order).
    pub bucketed: Option<u64>,
    /// The oracle's URL as providers reach it (`{public_url}/piece/{piece}`).
    pub public_url: String,
    /// The `DealStateView` the market is read through (none: events only).
    pub view: Option<Address>,
    /// An active deal ending within this many epochs shows as expiring.
    pub expiring_epochs: u64,
    /// An active replica ending within this many epochs is renewed: a new proposal is made
    /// ahead of its end (it must exceed the start delay for the two to overlap).
    pub renew_epochs: u64,
    /// How scores are computed.
    pub scores: ScoreRules,
    /// Between rounds.
    pub every: Duration,
}

/// Why a round stopped (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read from the chain failed.
    #[error("reading the chain: {0}")]
    Chain(String),
}

/// What a proposal's replica is now, for the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Being sent, offered, published or active, and not refuted: it counts (or will).
    Live,
    /// Offered, and the watcher has read past its start without seeing it published: to
    /// withdraw.
    Lapsing,
    /// The provider failed it (lapsed, published but not proven by its start, or its deal gone
    /// before its end).
    ProviderFailed,
    /// Over, through no fault of the provider (refused, or its term complete).
    Over,
    /// Active, and ending within the renewal window: still held, no longer counted, so that
    /// its renewal is proposed ahead of its end (to the same provider first, unless it failed
    /// the piece).
    Renewing,
}

/// How a proposal stands, from its own replica (its events folded alone, the market's word on
/// its deal attached) and `read`, the block the proposal watcher has read up to. The market
/// publishes a deal only up to its start epoch (builtin-actors v18 `actors/market/src/lib.rs`:
/// `publish_storage_deals` refuses `start_epoch < curr_epoch`), so once the watcher has read
/// past the start, a proposal still only offered has lapsed. Judged on what the watcher has
/// read, never the head: an event not yet read is not taken for one that never came. A deal not
/// activated by its start is dropped by the market (cron's `process_deal_init_timed_out`),
/// which its read then says (`expired`): a published replica fails on the market's word only.
fn standing(p: &ProposalRecord, replica: Option<&Replica>, read: u64, renew: u64) -> Standing {
    let past_start = read > p.start_epoch;
    match p.state {
        ProposalState::Sending => Standing::Live,
        ProposalState::Lapsed => Standing::ProviderFailed,
        ProposalState::Failed => Standing::Over,
        ProposalState::Offered => match replica.map(|r| r.state) {
            None | Some(ReplicaState::Claimed) if past_start => Standing::Lapsing,
            None | Some(ReplicaState::Claimed) => Standing::Live,
            Some(ReplicaState::Reopened) => Standing::ProviderFailed,
            // Published: whether it was proven by its start is the market's to say (a deal not
            // activated by then is dropped, and reads `expired`); a read that fails or has not
            // come yet concludes nothing.
            Some(ReplicaState::Published | ReplicaState::Active) => {
                let gone = replica.is_some_and(Replica::gone);
                // Its provider no longer serves it (its last probes failed): replaced.
                let lost = replica.is_some_and(Replica::lost);
                let ending = replica.and_then(|r| r.end_epoch).unwrap_or(p.end_epoch);
                let active = replica.is_some_and(|r| r.state == ReplicaState::Active);
                // Gone at or past its end by the market's own clock: its term is complete (the
                // watcher may lag the market's read).
                let complete = replica.and_then(|r| r.market).is_some_and(|m| m.epoch >= ending);
                if !gone && !lost && active && ending <= read.saturating_add(renew) {
                    Standing::Renewing
                } else if !gone && !lost {
                    Standing::Live
                } else if complete || read >= p.end_epoch {
                    Standing::Over
                } else {
                    Standing::ProviderFailed
                }
            }
        },
    }
}

/// The providers of an order's attempts whose replica its probes found lost: never asked for
/// the piece again while the order lives, whatever the attempt's standing now (its term may be
/// over), unless a later probe finds the replica again.
fn lost_providers<'a>(
    mine: &[(&ProposalRecord, Standing)],
    replica_of: impl Fn(&ProposalRecord) -> Option<&'a Replica>,
) -> Vec<u64> {
    let mut lost: Vec<u64> = mine
        .iter()
        .filter(|(p, _)| replica_of(p).is_some_and(Replica::lost))
        .map(|(p, _)| p.provider)
        .collect();
    lost.sort_unstable();
    lost.dedup();
    lost
}

/// Chooses providers for every piece's replicas and keeps its backend's proposals moving.
#[derive(Debug)]
pub struct Scheduler<B> {
    store: Store,
    backend: B,
    chain: DynProvider,
    config: SchedulerConfig,
    watcher: watch::Receiver<WatchState>,
    wake: Option<watch::Receiver<u64>>,
}

impl<B: DealBackend> Scheduler<B> {
    /// Deals through `backend`, reading the chain through `chain`; the backend's event watcher
    /// reports on `watcher`.
    pub fn new(
        store: Store,
        backend: B,
        chain: DynProvider,
        mut config: SchedulerConfig,
        watcher: watch::Receiver<WatchState>,
    ) -> Self {
        config.public_url = config.public_url.trim_end_matches('/').to_owned();
        Self { store, backend, chain, config, watcher, wake: None }
    }

    async fn head(&self) -> Result<u64, SchedulerError> {
        self.chain.get_block_number().await.map_err(|e| SchedulerError::Chain(e.to_string()))
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Proposals left `sending` by an earlier process (or whose send may have gone through):
        // held until the watcher has read past this head (their offer binds them first).
        let mut held: HashMap<(u64, u64, u64), u64> = HashMap::new();
        let mut first = true;
        let mut tried: HashMap<B256, Instant> = HashMap::new();
        loop {
            // Read every round: the owner may change it (a proposal is planned on today's).
            let policy = self
                .backend
                .policy()
                .await
                .inspect_err(|e| warn!(error = %e, "deal scheduler: the backend's policy"))
                .ok();
            if first {
                match (self.head().await, self.store.proposals(self.backend.client()).await) {
                    (Ok(head), Ok(proposals)) => {
                        for p in proposals.iter().filter(|p| p.state == ProposalState::Sending) {
                            held.insert((p.order_id, p.provider, p.attempt), head);
                        }
                        first = false;
                    }
                    (Err(e), _) => warn!(error = %e, "deal scheduler: waiting for the chain"),
                    (_, Err(e)) => warn!(error = %e, "deal scheduler: waiting for the database"),
                }
            }
            if let (Some(policy), false) = (&policy, first)
                && let Err(e) = self.round(policy, &mut held, &mut tried).await
            {
                warn!(error = %e, "deal scheduler round failed; retried");
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

    /// One round: new pieces become orders; each order's proposals are sent, withdrawn when
    /// lapsed, and made anew where replicas are short.
    async fn round(
        &self,
        policy: &ClientPolicy,
        held: &mut HashMap<(u64, u64, u64), u64>,
        tried: &mut HashMap<B256, Instant>,
    ) -> Result<(), SchedulerError> {
        let client = self.backend.client();
        let head = self.head().await?;
        for piece in self.store.pieces_to_order(client, BATCH, self.config.bucketed).await? {
            let Ok(cid) = piece.piece_cid.parse::<PieceCid>() else {
                warn!(piece = %piece.piece_cid, "deal scheduler: not a piece CID; no order");
                continue;
            };
            let v1 = cid.to_v1().to_cid().to_bytes();
            self.store
                .record_contract_order(client, &piece, &v1, self.config.replicas, head, now_ms())
                .await?;
        }
        let mut orders = self.store.open_orders(client).await?;
        if let Some(view) = self.config.view
            && let Err(e) = super::keeper::track(
                &self.store,
                &self.chain,
                view,
                &mut orders,
                self.config.expiring_epochs,
            )
            .await
        {
            warn!(error = %e, "deal scheduler: the market read failed; retried next round");
        }
        let proposals = self.store.proposals(client).await?;
        let replicas = self.store.proposal_replicas(client).await?;
        let scores: HashMap<u64, f64> = self
            .store
            .providers(Some(head), &self.config.scores)
            .await?
            .into_iter()
            .map(|p| (p.provider, p.score))
            .collect();
        let suspended = self.store.suspended_providers().await?;
        let read = self.watcher.borrow().cursor.unwrap_or(0);
        let mut by_order: HashMap<u64, Vec<(&ProposalRecord, Standing)>> = HashMap::new();
        // Padded bytes proposed to each provider and not yet active, over every order.
        let mut in_flight: HashMap<u64, u64> = HashMap::new();
        let sizes: HashMap<u64, u64> =
            orders.iter().filter_map(|o| Some((o.order.order_id?, o.order.padded_size))).collect();
        // Verified deals: padded bytes of the live proposals not yet published, which the market
        // will take from the client's DataCap when their providers publish them.
        let mut pending_cap = 0u64;
        for p in &proposals {
            let replica = p.proposal_id.as_ref().and_then(|id| replicas.get(id));
            let s = standing(p, replica, read, self.config.renew_epochs);
            if s == Standing::Live && replica.is_none_or(|r| r.state != ReplicaState::Active) {
                *in_flight.entry(p.provider).or_default() +=
                    sizes.get(&p.order_id).copied().unwrap_or(0);
            }
            if s == Standing::Live && replica.is_none_or(|r| r.state == ReplicaState::Claimed) {
                pending_cap =
                    pending_cap.saturating_add(sizes.get(&p.order_id).copied().unwrap_or(0));
            }
            by_order.entry(p.order_id).or_default().push((p, s));
        }
        // Read once a round, when a verified proposal is about to be made.
        let mut datacap: Option<Result<DataCapLeft, String>> = None;
        tried.retain(|_, at| at.elapsed() < RETRY);
        for order in &orders {
            let Some(order_id) = order.order.order_id else { continue };
            let mine = by_order.remove(&order_id).unwrap_or_default();
            // Every attempt that is not over, not only each provider's latest: a provider with
            // a live attempt, or one being withdrawn, is not asked again.
            let mut live: Vec<u64> = Vec::new();
            let mut busy: Vec<u64> = Vec::new();
            let mut renewing: Vec<u64> = Vec::new();
            let mut failures: HashMap<u64, u32> = HashMap::new();
            busy.extend(lost_providers(&mine, |p| {
                p.proposal_id.as_ref().and_then(|id| replicas.get(id))
            }));
            for (p, s) in &mine {
                match s {
                    Standing::Live => {
                        if !live.contains(&p.provider) {
                            live.push(p.provider);
                        }
                        let key = (p.order_id, p.provider, p.attempt);
                        if p.state == ProposalState::Sending {
                            if held.get(&key).is_some_and(|until| read < *until) {
                                continue;
                            }
                            held.remove(&key);
                            self.send(order, p, held).await?;
                        }
                    }
                    Standing::Lapsing => {
                        busy.push(p.provider);
                        *failures.entry(p.provider).or_default() += 1;
                        self.withdraw(p, tried).await?;
                    }
                    Standing::ProviderFailed => {
                        *failures.entry(p.provider).or_default() += 1;
                    }
                    Standing::Renewing => renewing.push(p.provider),
                    Standing::Over => {}
                }
            }
            let wanted = usize::from(order.order.replicas_target).saturating_sub(live.len());
            if wanted == 0 {
                continue;
            }
            let failed: Vec<u64> = failures.keys().copied().collect();
            let exhausted: Vec<u64> = failures
                .iter()
                .filter(|(_, n)| **n >= MAX_FAILURES)
                .map(|(p, _)| *p)
                .chain(busy)
                .collect();
            let now = Situation {
                padded_size: order.order.padded_size,
                held: &live,
                failed: &failed,
                excluded: &exhausted,
                // The provider of an ending deal renews it first, unless it failed the piece.
                preferred: &renewing,
                suspended: &suspended,
                scores: &scores,
                in_flight: &in_flight,
            };
            let choice = choose(&self.config.providers, &self.config.rules, &now, wanted);
            if choice.chosen.is_empty() {
                let why = format!(
                    "{} of {} replicas live; no provider can take another: {:?}",
                    live.len(),
                    order.order.replicas_target,
                    choice.skipped
                );
                self.store
                    .contract_order_note(client, order_id, Some(&why), false, now_ms())
                    .await?;
                continue;
            }
            for provider in choice.chosen {
                let Some(policy_of) = self.config.providers.iter().find(|p| p.provider == provider)
                else {
                    continue;
                };
                let terms = match proposal_terms(
                    order.order.padded_size,
                    order.order.car_size,
                    policy_of,
                    policy,
                    &self.config.ask,
                    head,
                ) {
                    Ok(terms) => terms,
                    Err(refused) => {
                        // Settings the contract's policy refuses (or a policy changed): said on
                        // the order and planned again next round, when the policy is read anew.
                        self.no_proposal(order, order_id, provider, &refused).await?;
                        break;
                    }
                };
                let attempt = mine
                    .iter()
                    .filter(|(p, _)| p.provider == provider)
                    .map(|(p, _)| p.attempt + 1)
                    .max()
                    .unwrap_or(0);
                let record = ProposalRecord {
                    client,
                    order_id,
                    provider,
                    attempt,
                    piece_v1: alloy::hex::encode(&order.order.piece_v1),
                    state: ProposalState::Sending,
                    proposal_id: None,
                    start_epoch: terms.start_epoch,
                    end_epoch: terms.end_epoch,
                    price: terms.price_per_epoch.to_string(),
                    collateral: terms.provider_collateral.to_string(),
                    sent_block: head,
                    tx_hash: None,
                    error: None,
                };
                if self.config.rules.verified {
                    let duration = terms.end_epoch.saturating_sub(terms.start_epoch);
                    if let Err(refused) = verified_allocation(order.order.padded_size, duration) {
                        // Settings the registry will never take (a piece under 1 MiB, a term
                        // out of bounds): said on the order, no gas.
                        self.no_proposal(order, order_id, provider, &refused).await?;
                        break;
                    }
                    if datacap.is_none() {
                        datacap = Some(self.datacap(pending_cap, read).await);
                    }
                    let taken = match datacap.as_mut() {
                        Some(Ok(left)) => left.take(order.order.padded_size),
                        Some(Err(e)) => Err(ProposalPreflight::DataCapUnread(e.clone())),
                        None => Ok(()),
                    };
                    if let Err(refused) = taken {
                        // No proposal the market would drop: said on the order, and planned
                        // again next round (the client's DataCap may be topped up meanwhile).
                        self.no_proposal(order, order_id, provider, &refused).await?;
                        break;
                    }
                }
                if self.store.record_proposal(&record, now_ms()).await? {
                    *in_flight.entry(provider).or_default() += order.order.padded_size;
                    self.send(order, &record, held).await?;
                }
            }
        }
        Ok(())
    }

    /// Says on `order` (its id `order_id`; and in the log) why no proposal goes to `provider`
    /// this round.
    async fn no_proposal(
        &self,
        order: &OrderWithReplicas,
        order_id: u64,
        provider: u64,
        refused: &ProposalPreflight,
    ) -> Result<(), SchedulerError> {
        let why = format!("pre-flight: {refused}");
        warn!(piece = %order.order.piece_cid, provider, reason = %why, "no proposal");
        let client = self.backend.client();
        self.store.contract_order_note(client, order_id, Some(&why), false, now_ms()).await?;
        Ok(())
    }

    /// What the client's DataCap leaves for verified proposals, `pending` bytes of them already
    /// made and not yet published by block `at`: its balance at that block as the DataCap actor
    /// answers it, read through `DealStateView.dataCapOf` (the same call on Calibration and on
    /// the local chain).
    async fn datacap(&self, pending: u64, at: u64) -> Result<DataCapLeft, String> {
        let view = self.config.view.ok_or("no --deal-state-view-address to read it through")?;
        let view = estuary_contracts::DealStateView::new(view, &self.chain);
        // At the block the proposal watcher has read up to: the pending proposals are those it
        // has not seen published by then, so both describe one state of the chain.
        let call = view.dataCapOf(self.backend.client()).block(at.into());
        let read = call.call().await.map_err(|e| e.to_string())?;
        if read.exitCode != alloy::primitives::I256::ZERO {
            return Err(format!("the DataCap actor answered exit code {}", read.exitCode));
        }
        // More than 2^64 bytes of DataCap is more than any piece needs.
        let balance = u64::try_from(read.dataCap).unwrap_or(u64::MAX);
        Ok(DataCapLeft { balance, pending })
    }

    /// Sends a recorded proposal with its recorded terms, and keeps what came of it.
    async fn send(
        &self,
        order: &OrderWithReplicas,
        p: &ProposalRecord,
        held: &mut HashMap<(u64, u64, u64), u64>,
    ) -> Result<(), SchedulerError> {
        let client = self.backend.client();
        let (Ok(price), Ok(collateral)) = (p.price.parse::<u128>(), p.collateral.parse::<u128>())
        else {
            let why = "its stored price or collateral is not a number";
            self.store.proposal_moved(p, ProposalState::Failed, Some(why), now_ms()).await?;
            return Ok(());
        };
        let terms = DealTerms {
            provider: p.provider,
            start_epoch: p.start_epoch,
            end_epoch: p.end_epoch,
            price_per_epoch: price,
            provider_collateral: collateral,
            escrow: price.saturating_mul(u128::from(p.end_epoch.saturating_sub(p.start_epoch))),
        };
        let proposal = Proposal {
            key: format!("propose/{client:#x}/{}/f0{}/{}", p.order_id, p.provider, p.attempt),
            piece_v1: &order.order.piece_v1,
            padded_size: order.order.padded_size,
            car_size: order.order.car_size,
            label: &order.order.payload_cid,
            location: format!("{}/piece/{}", self.config.public_url, order.order.piece_cid),
            verified: self.config.rules.verified,
            terms,
        };
        let piece = &order.order.piece_cid;
        match self.backend.propose(&proposal).await {
            Ok((id, tx)) => {
                info!(%piece, provider = p.provider, proposal = %id, "deal proposed");
                let id = format!("{id:#x}");
                self.store.proposal_offered(p, &id, tx.as_deref(), now_ms()).await?;
                self.store.contract_order_note(client, p.order_id, None, false, now_ms()).await?;
            }
            Err(BackendError::Duplicate(id)) => {
                info!(%piece, provider = p.provider, proposal = %id, "deal proposed before; adopted");
                self.store.proposal_offered(p, &format!("{id:#x}"), None, now_ms()).await?;
            }
            Err(e @ (BackendError::Late(_) | BackendError::Withdrawn)) => {
                // It cannot be sent any more: a new attempt follows next round. (Had an earlier
                // send been mined after all, the watcher binds it from its offer.)
                let why = e.to_string();
                warn!(%piece, provider = p.provider, reason = %why, "proposal not sent");
                self.store.proposal_moved(p, ProposalState::Failed, Some(&why), now_ms()).await?;
                self.store
                    .contract_order_note(client, p.order_id, Some(&why), false, now_ms())
                    .await?;
            }
            Err(BackendError::Preflight(refused)) => {
                let why = format!("pre-flight: {refused}");
                warn!(%piece, provider = p.provider, reason = %why, "proposal waits");
                self.store.proposal_moved(p, ProposalState::Sending, Some(&why), now_ms()).await?;
                let failed = !refused.may_pass_later();
                self.store
                    .contract_order_note(client, p.order_id, Some(&why), failed, now_ms())
                    .await?;
            }
            Err(BackendError::Refused(why)) => {
                // Terms the backend will never take: the operator's settings need a change.
                warn!(%piece, provider = p.provider, reason = %why, "proposal refused");
                let why = format!("refused: {why}");
                self.store.proposal_moved(p, ProposalState::Failed, Some(&why), now_ms()).await?;
                self.store
                    .contract_order_note(client, p.order_id, Some(&why), true, now_ms())
                    .await?;
            }
            Err(BackendError::Failed { error, maybe_sent }) => {
                warn!(%piece, provider = p.provider, %error, "proposal not sent; retried");
                if maybe_sent {
                    let now = self.head().await.unwrap_or(p.sent_block).saturating_add(1);
                    held.insert((p.order_id, p.provider, p.attempt), now);
                }
                let why = format!("sending: {error}");
                self.store.proposal_moved(p, ProposalState::Sending, Some(&why), now_ms()).await?;
            }
        }
        Ok(())
    }

    /// Withdraws a lapsed proposal (its escrow is freed; its provider failed it).
    async fn withdraw(
        &self,
        p: &ProposalRecord,
        tried: &mut HashMap<B256, Instant>,
    ) -> Result<(), SchedulerError> {
        let Some(id) = p.proposal_id.as_deref().and_then(|t| t.parse::<B256>().ok()) else {
            return Ok(());
        };
        if tried.contains_key(&id) {
            return Ok(());
        }
        let why = format!("not published by its start epoch {}", p.start_epoch);
        match self.backend.withdraw(id).await {
            Ok(()) | Err(BackendError::Withdrawn) => {
                info!(provider = p.provider, proposal = %id, "lapsed proposal withdrawn");
                self.store.proposal_moved(p, ProposalState::Lapsed, Some(&why), now_ms()).await?;
            }
            Err(e) => {
                warn!(provider = p.provider, proposal = %id, error = %e, "withdrawal failed; retried");
                tried.insert(id, Instant::now());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::market::{MarketState, MarketView};

    fn proposal(state: ProposalState) -> ProposalRecord {
        ProposalRecord {
            client: Address::ZERO,
            order_id: 1,
            provider: 1000,
            attempt: 0,
            piece_v1: String::new(),
            state,
            proposal_id: Some(format!("{:#x}", B256::ZERO)),
            start_epoch: 100,
            end_epoch: 1000,
            price: "0".into(),
            collateral: "0".into(),
            sent_block: 1,
            tx_hash: None,
            error: None,
        }
    }

    fn replica(state: ReplicaState, market: Option<MarketState>) -> Replica {
        Replica {
            provider: 1000,
            state,
            deal_id: Some(5),
            start_epoch: None,
            end_epoch: None,
            since_block: 1,
            deadline: Some(100),
            paid_until: None,
            market: market.map(|state| MarketView {
                state,
                epoch: 1,
                start_epoch: None,
                end_epoch: None,
            }),
            probe: None,
            direct: None,
        }
    }

    #[test]
    fn a_proposal_stands_as_its_replica_and_the_market_say() {
        use ReplicaState as R;
        let offered = proposal(ProposalState::Offered);
        // The start is epoch 100: judged on what the watcher has read.
        let at = |r: Option<Replica>, read| standing(&offered, r.as_ref(), read, 100);
        assert_eq!(at(None, 50), Standing::Live, "the watcher has not seen it yet");
        assert_eq!(at(None, 101), Standing::Lapsing, "read past its start, never seen offered");
        assert_eq!(at(Some(replica(R::Claimed, None)), 100), Standing::Live);
        assert_eq!(at(Some(replica(R::Claimed, None)), 101), Standing::Lapsing);
        assert_eq!(at(Some(replica(R::Published, None)), 100), Standing::Live);
        assert_eq!(at(Some(replica(R::Published, None)), 101), Standing::Live, "no read yet");
        assert_eq!(
            at(Some(replica(R::Published, Some(MarketState::Expired))), 101),
            Standing::ProviderFailed,
            "published, never proven by its start: the market dropped it"
        );
        assert_eq!(at(Some(replica(R::Active, None)), 500), Standing::Live);
        // Ending (epoch 1000) within the renewal window of 100: renewed ahead of its end.
        assert_eq!(at(Some(replica(R::Active, None)), 899), Standing::Live);
        assert_eq!(at(Some(replica(R::Active, None)), 900), Standing::Renewing);
        let expiring = replica(R::Active, Some(MarketState::Expiring));
        assert_eq!(at(Some(expiring), 950), Standing::Renewing);
        let slashed = replica(R::Active, Some(MarketState::Slashed));
        assert_eq!(at(Some(slashed), 500), Standing::ProviderFailed);
        assert_eq!(at(Some(slashed), 1000), Standing::Over, "its term is complete");
        let unknown = replica(R::Active, Some(MarketState::Unknown));
        assert_eq!(at(Some(unknown), 500), Standing::Live, "an unknown answer refutes nothing");
        assert_eq!(at(Some(replica(R::Reopened, None)), 500), Standing::ProviderFailed);
        // Its last probes failed: lost, replaced; at its term's end, over all the same.
        let mut lost = replica(R::Active, None);
        lost.probe = Some(crate::domain::probe::after(None, false, 1, 1));
        assert_eq!(at(Some(lost), 500), Standing::ProviderFailed);
        assert_eq!(at(Some(lost), 950), Standing::ProviderFailed, "not renewed there");
        assert_eq!(standing(&offered, Some(&lost), 1000, 100), Standing::Over);
        // Its provider is not asked again for the piece, also once that deal is over.
        let mut other = proposal(ProposalState::Offered);
        other.provider += 1;
        let mine = [(&offered, Standing::Over), (&other, Standing::Live)];
        let kept = replica(R::Active, None);
        let of =
            |p: &ProposalRecord| Some(if p.provider == offered.provider { &lost } else { &kept });
        assert_eq!(lost_providers(&mine, of), [offered.provider]);
        lost.probe = Some(crate::domain::probe::after(lost.probe.as_ref(), true, 2, 1));
        let of = |_: &ProposalRecord| Some(&lost);
        assert!(lost_providers(&mine, of).is_empty(), "found again by a probe that verifies");
        let s = |state| standing(&proposal(state), None, 500, 100);
        assert_eq!(s(ProposalState::Sending), Standing::Live);
        assert_eq!(s(ProposalState::Lapsed), Standing::ProviderFailed);
        assert_eq!(s(ProposalState::Failed), Standing::Over);
    }
}
