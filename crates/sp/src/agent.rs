//! The agent's loops: the evaluator turns leads into decisions, the worker moves each piece of
//! work one step at a time, the indexer lists verified pieces' blocks, the keeper withdraws
//! excess bonds and tips.
//!
//! ```text
//!  evaluator: pending lead ─► live work? note it : read the offer ─► domain::policy::evaluate
//!                                                   ─► Store::decide (decision + new work)
//!  worker:    live work, due ─► one step for its state (below) ─► Store::transition
//!               claiming   slot already ours? adopt : claim (bond)            ─► fetching
//!               fetching   piece held? : download + verify (resumable)        ─► sealing
//!               sealing    deal on chain? adopt : Sealer::hand_over           ─► activating
//!               activating Sealer::poll until the sector is proven            ─► proving | active
//!               proving    slot active? adopt : publish                       ─► active
//!               active     collect on schedule; term over or deal gone: reopen ─► ended
//!               releasing  after the deadline: reopen (the slot goes back)    ─► failed
//! ```
//!
//! Each step reads the chain before it writes to it, and its state is stored before its
//! effect, so a step interrupted anywhere is simply run again. A step that fails for a reason
//! that may pass (an RPC error, a full disk) is retried with a growing delay; one that waits for
//! the chain (a deadline, a proof) comes back after an epoch or so.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::primitives::{Bytes, U256};
use estuary_chain::TxError;
use estuary_contracts::perpetual::PerpetualStorage::{self, PerpetualStorageErrors};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    chain::{
        ChainClient, ReadError,
        contracts::{ClaimOutcome, slot_proposal_id, slot_state},
    },
    domain::{
        Deal, ExpectedPiece, Input, Policy, WorkKind, WorkState, now_ms,
        origin::http_urls,
        policy::{Skip, evaluate},
    },
    fetch::{FetchError, Fetcher},
    index,
    sealer::{SealError, SealJob, SealProgress, Sealer},
    store::{Decision, Lead, NewWork, PieceRow, Store, StoreError, TransitionError, Work},
};

/// How long an offer whose claim was refused waits before it is looked at again, after its
/// first refusal in a row; each further one doubles it, up to [`REFUSED_LOOK_AGAIN_MAX_MS`]
/// (an event about the offer, such as its slot reopening, brings it back sooner).
const REFUSED_LOOK_AGAIN_MS: u64 = 60_000;

/// The longest wait after refusals in a row: an hour (24 refused claims a day, not 1,440).
const REFUSED_LOOK_AGAIN_MAX_MS: u64 = 3_600_000;

/// How long an offer waits after `refusals` refused claims in a row: a minute, doubling.
pub fn refused_wait_ms(refusals: u32) -> u64 {
    let doublings = refusals.saturating_sub(1).min(16);
    REFUSED_LOOK_AGAIN_MS.saturating_mul(1 << doublings).min(REFUSED_LOOK_AGAIN_MAX_MS)
}

/// Counters kept by this process (for metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Downloads that ended in a verified piece.
    pub downloads_ok: AtomicU64,
    /// Downloads given up.
    pub downloads_failed: AtomicU64,
    /// Retrieval responses started, by route.
    pub piece_requests: AtomicU64,
    /// See `piece_requests`.
    pub block_requests: AtomicU64,
    /// Retrieval requests refused for load.
    pub retrievals_shed: AtomicU64,
    /// Active slots the order's client marked lost (`markLost`): their pay ended while their
    /// deals stay live.
    pub slots_marked_lost: AtomicU64,
}

/// What the loops share.
pub struct Ctx<S> {
    /// The database.
    pub store: Store,
    /// The contracts.
    pub chain: ChainClient,
    /// The sealer.
    pub sealer: S,
    /// Downloads.
    pub fetcher: Fetcher,
    /// What to take.
    pub policy: Policy,
    /// Where pieces live (`pieces/`) and downloads happen (`partial/`).
    pub data_dir: PathBuf,
    /// Downloads at once.
    pub downloads: Semaphore,
    /// Bytes held by each running download, by work id.
    pub progress: Arc<Mutex<HashMap<i64, Arc<AtomicU64>>>>,
    /// Epochs between collections.
    pub collect_interval: u64,
    /// The `PerpetualStorage` contracts (for the keeper's withdrawals).
    pub perpetual: Vec<alloy::primitives::Address>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Pause between looks at the work.
    pub tick: Duration,
}

impl<S> std::fmt::Debug for Ctx<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("miner", &self.chain.miner()).finish_non_exhaustive()
    }
}

/// Why a step did not finish (it is retried).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("{0}")]
    Other(String),
}

impl<S: Sealer> Ctx<S> {
    /// Where verified pieces are kept.
    pub fn piece_path(&self, v2: &str) -> PathBuf {
        self.data_dir.join("pieces").join(format!("{v2}.car"))
    }

    fn partial_path(&self, id: i64) -> PathBuf {
        self.data_dir.join("partial").join(format!("{id}.part"))
    }

    /// Milliseconds from now until `epochs` epochs have passed (at least one tick).
    fn after_epochs(&self, epochs: u64) -> u64 {
        now_ms().saturating_add(
            epochs.saturating_mul(self.policy.epoch_ms).max(self.tick.as_millis() as u64),
        )
    }

    async fn apply(&self, w: &Work, input: Input) -> Result<(), StepError> {
        match self.store.transition(w.id, w.kind, w.state, &input, now_ms()).await {
            Ok(to) => {
                info!(work = %w.key(), from = w.state.as_str(), to = to.as_str(), ?input, "work moved");
                if to.is_terminal() {
                    // Its order or proposal may be worth another look (a slot to claim again).
                    // A refused claim not for a while: what refused it (another's claim, a key
                    // that does not control the miner) does not change at once, and each look
                    // would take the offer and be refused again, a new piece of work each time.
                    let not_before = match input {
                        Input::ClaimRefused { .. } => {
                            // The work has ended: the lead is looked at again whatever this
                            // count's read gives (one refusal if it fails).
                            let refusals = self
                                .store
                                .refusals_in_a_row(w.contract, &w.reference)
                                .await
                                .unwrap_or_else(|e| {
                                    warn!(work = %w.key(), error = %e, "counting refused claims");
                                    1
                                });
                            now_ms().saturating_add(refused_wait_ms(refusals))
                        }
                        _ => 0,
                    };
                    self.store.touch_lead(w.kind, w.contract, &w.reference, not_before).await?;
                }
                Ok(())
            }
            Err(TransitionError::Stale { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    // ------------------------------------------------------------------ evaluator

    /// Looks at every pending lead once.
    pub async fn evaluate_pending(&self) -> Result<(), StoreError> {
        for lead in self.store.pending_leads(now_ms(), 64).await? {
            if let Err(e) = self.evaluate_lead(&lead).await {
                warn!(kind = lead.kind.as_str(), reference = %lead.reference, error = %e, "could not evaluate an offer; will look again");
            }
        }
        Ok(())
    }

    async fn evaluate_lead(&self, lead: &Lead) -> Result<(), StepError> {
        let now = now_ms();
        if let Some(w) = self.store.live_work_for(lead.kind, lead.contract, &lead.reference).await?
        {
            let note = format!("work #{} is {}", w.id, w.state.as_str());
            self.store.decide(lead, &Decision::Note(note), None, now).await?;
            return Ok(());
        }
        let (mut offer, details) = match lead.kind {
            WorkKind::Slot => {
                let order = lead.order().ok_or_else(|| StepError::Other("bad order id".into()))?;
                self.chain.slot_offer(lead.contract, order).await?
            }
            WorkKind::Proposal => {
                let id =
                    lead.proposal().ok_or_else(|| StepError::Other("bad proposal id".into()))?;
                self.chain.proposal_offer(lead.contract, id).await?
            }
        };
        if let Some(failed) =
            self.store.last_failure_for(lead.kind, lead.contract, &lead.reference).await?
            && (failed.kind == WorkKind::Proposal || failed.deadline.is_some())
            && failed.origins == details.origins
        {
            offer.failed_before = Some(failed.reason.unwrap_or_default());
        }
        let load = self.store.load().await?;
        let decision =
            match (evaluate(&self.policy, &offer, &load, self.chain.miner()), details.piece) {
                (Err(skip), _) => Err(skip),
                (Ok(()), None) => {
                    Err(Skip::BadSizes { car_size: offer.car_size, piece_size: offer.piece_size })
                }
                (Ok(()), Some(piece)) => Ok(NewWork {
                    kind: lead.kind,
                    contract: lead.contract,
                    reference: lead.reference.clone(),
                    piece_cid: piece.cid_v1().to_string(),
                    padded_size: piece.padded_size,
                    car_size: piece.car_size,
                    origins: details.origins.clone(),
                    proposal_id: lead.proposal(),
                    start_epoch: details.start_epoch,
                    end_epoch: details.end_epoch,
                    collateral: details.collateral,
                }),
            };
        match decision {
            Ok(work) => {
                let id = self.store.decide(lead, &Decision::Take(work), None, now).await?;
                info!(kind = lead.kind.as_str(), reference = %lead.reference, work = ?id, "offer taken");
            }
            Err(skip) => {
                let retry = skip
                    .may_change()
                    .then(|| now.saturating_add(self.tick.as_millis() as u64 * 10));
                info!(kind = lead.kind.as_str(), reference = %lead.reference, reason = %skip, "offer skipped");
                self.store.decide(lead, &Decision::Skip(skip), retry, now).await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ worker

    /// Runs one step of `w` and records a failure for a retry.
    pub async fn step(&self, w: Work) {
        let result = match w.state {
            WorkState::Claiming => self.claim(&w).await,
            WorkState::Fetching => self.fetch(&w).await,
            WorkState::Sealing => self.seal(&w).await,
            WorkState::Activating => self.activate(&w).await,
            WorkState::Proving => self.prove(&w).await,
            WorkState::Active => self.keep(&w).await,
            WorkState::Releasing => self.release(&w).await,
            WorkState::Ended | WorkState::Failed => Ok(()),
        };
        if let Err(e) = result {
            let attempts = w.attempts.saturating_add(1).min(10);
            let delay = (500u64 << attempts).min(60_000);
            warn!(work = %w.key(), state = w.state.as_str(), error = %e, retry_in_ms = delay, "step failed");
            if let Err(e) =
                self.store.record_attempt(w.id, &e.to_string(), now_ms() + delay, now_ms()).await
            {
                warn!(work = %w.key(), error = %e, "could not record the failed step");
            }
        }
    }

    async fn claim(&self, w: &Work) -> Result<(), StepError> {
        let order =
            w.order().ok_or_else(|| StepError::Other("slot work without an order".into()))?;
        let miner = self.chain.miner();
        let slot = self.chain.slot(w.contract, order).await?;
        if slot.state != slot_state::OPEN {
            // Claimed already: the transaction went through before a restart.
            let deadline = slot.deadline;
            let proposal_id = slot_proposal_id(order, miner, deadline, w.collateral);
            return self.apply(w, Input::Claimed { deadline, proposal_id }).await;
        }
        match self.chain.claim(w.contract, order, w.collateral, format!("claim/{}", w.key())).await
        {
            Ok(ClaimOutcome::Claimed { deadline, proposal_id }) => {
                self.apply(w, Input::Claimed { deadline, proposal_id }).await
            }
            Ok(ClaimOutcome::Refused(reason)) => {
                self.apply(w, Input::ClaimRefused { reason }).await
            }
            Err(e) => Err(e.into()),
        }
    }

    fn expected(w: &Work) -> Result<ExpectedPiece, StepError> {
        let cid: cid::Cid =
            w.piece_cid.parse().map_err(|e| StepError::Other(format!("piece CID: {e}")))?;
        ExpectedPiece::from_v1_bytes(&cid.to_bytes(), w.padded_size, w.car_size)
            .ok_or_else(|| StepError::Other("the work's piece cannot be right".into()))
    }

    /// The epoch a work's deal must be active by.
    fn must_start_by(w: &Work) -> Option<u64> {
        w.deadline.or(w.start_epoch)
    }

    async fn fetch(&self, w: &Work) -> Result<(), StepError> {
        let expected = Self::expected(w)?;
        let name = expected.name();
        let path = self.piece_path(&name);
        let held = self.store.piece(&name).await?.is_some();
        if held && path.exists() {
            return self.apply(w, Input::Verified).await;
        }
        let partial = self.partial_path(w.id);
        if !held && path.exists() {
            // Verified and kept, then killed before it was recorded: check it again from the
            // disk (no network) as a finished download.
            std::fs::rename(&path, &partial)
                .map_err(|e| StepError::Other(format!("{}: {e}", path.display())))?;
        }
        let head = self.chain.head().await?;
        if let Some(by) = Self::must_start_by(w)
            && head > by
        {
            let reason = format!("epoch {by} passed before the piece was fetched");
            return self.apply(w, Input::Abandon { reason }).await;
        }
        let urls = http_urls(&w.origins, &expected.url_cid());
        let _permit =
            self.downloads.acquire().await.map_err(|_| StepError::Other("shutting down".into()))?;
        for dir in [partial.parent(), path.parent()].into_iter().flatten() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StepError::Other(format!("{}: {e}", dir.display())))?;
        }
        let progress = Arc::new(AtomicU64::new(0));
        let network = Arc::new(AtomicU64::new(0));
        self.progress.lock().expect("not poisoned").insert(w.id, Arc::clone(&progress));
        info!(work = %w.key(), piece = %name, size = w.car_size, origins = urls.len(), "downloading");
        let result = self.fetcher.fetch(&urls, &expected, &partial, &progress, &network).await;
        self.progress.lock().expect("not poisoned").remove(&w.id);
        self.store.add_fetched(w.id, network.load(Ordering::Relaxed)).await?;
        match result {
            Ok(fetched) => {
                std::fs::rename(&partial, &path)
                    .map_err(|e| StepError::Other(format!("keeping the piece: {e}")))?;
                self.store
                    .add_piece(&PieceRow {
                        id: 0,
                        name: name.clone(),
                        piece_v1: w.piece_cid.clone(),
                        piece_v2: expected.cid_v2().map(|c| c.to_string()),
                        car_size: w.car_size,
                        padded_size: w.padded_size,
                        path: path.display().to_string(),
                        indexed: 0,
                        blocks: 0,
                        roots: None,
                        index_error: None,
                        verified_ms: now_ms(),
                    })
                    .await?;
                self.stats.downloads_ok.fetch_add(1, Ordering::Relaxed);
                info!(work = %w.key(), piece = %name, network = fetched.network_bytes, resumed_from = fetched.resumed_from, "piece verified");
                self.apply(w, Input::Verified).await
            }
            Err(e) if e.is_retryable() => Err(StepError::Other(e.to_string())),
            Err(e) => {
                self.stats.downloads_failed.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_file(&partial);
                let reason = match &e {
                    FetchError::Mismatch(m) => format!("wrong piece: {m}"),
                    other => other.to_string(),
                };
                self.apply(w, Input::Abandon { reason }).await
            }
        }
    }

    /// The sealing job of `w`; with its proposal CBOR only when `proposal` (a slot's offer can
    /// be read only until its deal is published).
    async fn job(&self, w: &Work, proposal: bool) -> Result<SealJob, StepError> {
        let expected = Self::expected(w)?;
        let name = expected.name();
        let proposal_id =
            w.proposal_id.ok_or_else(|| StepError::Other("no deal offer id".into()))?;
        let (proposal, start, end) = match w.kind {
            WorkKind::Slot => {
                let order = w.order().ok_or_else(|| StepError::Other("no order".into()))?;
                let start = w.deadline.ok_or_else(|| StepError::Other("no deadline".into()))?;
                let term = self.chain.order_term(w.contract, order).await?;
                let cbor = if proposal {
                    self.chain.slot_proposal(w.contract, proposal_id).await?
                } else {
                    Bytes::new()
                };
                (cbor, start, start + term)
            }
            WorkKind::Proposal => (
                if proposal {
                    self.chain.proposal_cbor(w.contract, proposal_id).await?
                } else {
                    Bytes::new()
                },
                w.start_epoch.unwrap_or_default(),
                w.end_epoch.unwrap_or_default(),
            ),
        };
        Ok(SealJob {
            work: w.key(),
            kind: w.kind,
            contract: w.contract,
            miner: self.chain.miner(),
            piece_v1: w.piece_cid.clone(),
            piece_path: self.piece_path(&name),
            piece_v2: expected.cid_v2().map(|c| c.to_string()).unwrap_or_default(),
            padded_size: w.padded_size,
            car_size: w.car_size,
            proposal,
            proposal_id,
            start_epoch: start,
            end_epoch: end,
            order: w.order(),
        })
    }

    /// This miner's deal for the work, if the chain knows one (a market deal published, or a
    /// direct deal's activation the `DealClient` recorded), or why the work is over.
    async fn published(&self, w: &Work) -> Result<Result<Option<Deal>, String>, StepError> {
        match w.kind {
            WorkKind::Slot => {
                let order = w.order().ok_or_else(|| StepError::Other("no order".into()))?;
                let slot = self.chain.slot(w.contract, order).await?;
                Ok(match slot.state {
                    slot_state::DEALT | slot_state::ACTIVE => Ok(Some(Deal::Market(slot.dealId))),
                    slot_state::CLAIMED => Ok(None),
                    _ => Err("the slot was reopened".to_owned()),
                })
            }
            WorkKind::Proposal => {
                let id = w.proposal().ok_or_else(|| StepError::Other("no proposal id".into()))?;
                let (deal, cancelled) = self.chain.proposal_deal(w.contract, id).await?;
                Ok(match (deal, cancelled) {
                    (Some((deal, _)), _) => Ok(Some(deal)),
                    (None, true) => Err("the proposal was cancelled".to_owned()),
                    (None, false) => Ok(None),
                })
            }
        }
    }

    async fn seal(&self, w: &Work) -> Result<(), StepError> {
        match self.published(w).await? {
            Ok(Some(deal)) => return self.apply(w, Input::Published { deal }).await,
            Err(reason) => return self.apply(w, Input::Abandon { reason }).await,
            Ok(None) => {}
        }
        let head = self.chain.head().await?;
        if let Some(by) = Self::must_start_by(w)
            && head > by
        {
            let reason = format!("epoch {by} passed before the deal was published");
            return self.apply(w, Input::Abandon { reason }).await;
        }
        let job = self.job(w, true).await?;
        match self.sealer.hand_over(&job).await {
            Ok(deal) => self.apply(w, Input::Published { deal }).await,
            Err(SealError::Fail(reason)) => self.apply(w, Input::Abandon { reason }).await,
            Err(SealError::Retry(reason)) => Err(StepError::Other(reason)),
        }
    }

    async fn activate(&self, w: &Work) -> Result<(), StepError> {
        let deal = w.deal().ok_or_else(|| StepError::Other("no deal".into()))?;
        let job = self.job(w, false).await?;
        match self.sealer.poll(&job, deal, false).await {
            Ok(SealProgress::Active { sector }) => self.apply(w, Input::Activated { sector }).await,
            Ok(SealProgress::Gone(reason)) => self.apply(w, Input::Abandon { reason }).await,
            Ok(SealProgress::Sealing) => {
                let head = self.chain.head().await?;
                if let Some(by) = Self::must_start_by(w)
                    && head > by
                {
                    let reason = format!("the sector was not proven by epoch {by}");
                    return self.apply(w, Input::Abandon { reason }).await;
                }
                self.store.defer(w.id, self.after_epochs(1)).await?;
                Ok(())
            }
            Err(SealError::Fail(reason)) => self.apply(w, Input::Abandon { reason }).await,
            Err(SealError::Retry(reason)) => Err(StepError::Other(reason)),
        }
    }

    async fn prove(&self, w: &Work) -> Result<(), StepError> {
        let order = w.order().ok_or_else(|| StepError::Other("no order".into()))?;
        let slot = self.chain.slot(w.contract, order).await?;
        match slot.state {
            slot_state::ACTIVE => return self.apply(w, Input::Proven { start: slot.start }).await,
            slot_state::DEALT => {}
            _ => {
                let reason = "the slot was reopened before it was proven".to_owned();
                return self.apply(w, Input::Abandon { reason }).await;
            }
        }
        let head = self.chain.head().await?;
        if head > slot.deadline {
            let reason = format!("the claim's deadline {} passed before publish", slot.deadline);
            return self.apply(w, Input::Abandon { reason }).await;
        }
        match self.chain.publish(w.contract, order, format!("publish/{}", w.key())).await {
            Ok(receipt) => {
                let start = receipt
                    .decoded_log::<PerpetualStorage::SlotActivated>()
                    .map_or(head, |l| l.data.start);
                self.apply(w, Input::Proven { start }).await
            }
            Err(TxError::WouldRevert { source }) => {
                match source.as_decoded_interface_error::<PerpetualStorageErrors>() {
                    Some(PerpetualStorageErrors::PerpetualStorageDealNotActive(_)) => {
                        self.store.defer(w.id, self.after_epochs(1)).await?;
                        Ok(())
                    }
                    Some(PerpetualStorageErrors::PerpetualStorageClaimExpired(_)) => {
                        let reason = "the claim expired before publish".to_owned();
                        self.apply(w, Input::Abandon { reason }).await
                    }
                    _ => Err(StepError::Tx(TxError::WouldRevert { source })),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Active work: collect on schedule; end it when its term is over or its deal is gone.
    async fn keep(&self, w: &Work) -> Result<(), StepError> {
        let head = self.chain.head().await?;
        let deal = w.deal().ok_or_else(|| StepError::Other("no deal".into()))?;
        let gone = match self.sealer.poll(&self.job(w, false).await?, deal, true).await {
            Ok(SealProgress::Gone(reason)) => Some(reason),
            Ok(_) => None,
            Err(e) => {
                debug!(work = %w.key(), error = %e, "could not ask the sealer");
                None
            }
        };
        match w.kind {
            WorkKind::Proposal => {
                let end = w.end_epoch.unwrap_or(u64::MAX);
                if head >= end {
                    return self
                        .apply(w, Input::Ended { reason: "the deal's term is over".into() })
                        .await;
                }
                if let Some(reason) = gone {
                    return self.apply(w, Input::Ended { reason }).await;
                }
                let next = end.saturating_sub(head).min(self.collect_interval.max(1));
                self.store.defer(w.id, self.after_epochs(next)).await?;
                Ok(())
            }
            WorkKind::Slot => {
                let order = w.order().ok_or_else(|| StepError::Other("no order".into()))?;
                let slot = self.chain.slot(w.contract, order).await?;
                let ended = gone.map(|g| format!("{g}; the replica ends"));
                if slot.state != slot_state::ACTIVE {
                    // Marked lost by the order's client: the slot's pay ended, its deal did not.
                    if self.chain.excluded(w.contract, order).await? {
                        self.stats.slots_marked_lost.fetch_add(1, Ordering::Relaxed);
                        warn!(
                            order,
                            "the order's client marked this replica lost (its retrieval probes failed): its pay ended and this miner may not claim the order again; the deal stays live until its sector ends"
                        );
                        let reason = "marked lost by the order's client: its pay ended".into();
                        return self.apply(w, Input::Ended { reason }).await;
                    }
                    // A replica whose deal is gone was reopened by this agent, perhaps by a
                    // transaction mined after its first try seemed to fail: the deal's end is
                    // the reason, not the reopening.
                    let reason = ended.unwrap_or_else(|| "the slot was reopened".to_owned());
                    return self.apply(w, Input::Ended { reason }).await;
                }
                let term_end = slot.payEnd;
                let over = if head >= term_end {
                    Some("the replica's term is complete".to_owned())
                } else {
                    ended
                };
                if let Some(reason) = over {
                    let paid = match self
                        .chain
                        .reopen(w.contract, order, format!("reopen/{}", w.key()))
                        .await
                    {
                        Ok(paid) => paid,
                        Err(e)
                            if matches!(
                                revert(&e),
                                Some(PerpetualStorageErrors::PerpetualStorageNotClaimed(_))
                            ) =>
                        {
                            U256::ZERO
                        }
                        Err(e) => return Err(e.into()),
                    };
                    self.store.add_collected(w.id, paid, head).await?;
                    return self.apply(w, Input::Ended { reason }).await;
                }
                if head >= w.last_collect.saturating_add(self.collect_interval)
                    || w.last_collect == 0
                {
                    let key = format!("collect/{}", w.key());
                    let paid = self.chain.collect(w.contract, order, key).await?;
                    self.store.add_collected(w.id, paid, head).await?;
                    info!(work = %w.key(), %paid, "bounty collected");
                }
                let next = term_end.saturating_sub(head).min(self.collect_interval.max(1));
                self.store.defer(w.id, self.after_epochs(next)).await?;
                Ok(())
            }
        }
    }

    /// Abandoned slot work: once its deadline is past, reopen the slot (the bond is forfeit by
    /// the contract's rule; the keeper's tip comes back to this agent).
    async fn release(&self, w: &Work) -> Result<(), StepError> {
        let order = w.order().ok_or_else(|| StepError::Other("no order".into()))?;
        let slot = self.chain.slot(w.contract, order).await?;
        if slot.state == slot_state::OPEN {
            return self.apply(w, Input::Released).await;
        }
        if slot.state == slot_state::ACTIVE {
            // Proven after all: it can only be reopened once its replica is over.
            self.store.defer(w.id, self.after_epochs(self.collect_interval.max(1))).await?;
            return Ok(());
        }
        let head = self.chain.head().await?;
        if head <= slot.deadline {
            self.store.defer(w.id, self.after_epochs(slot.deadline + 1 - head)).await?;
            return Ok(());
        }
        match self.chain.reopen(w.contract, order, format!("reopen/{}", w.key())).await {
            Ok(_) => self.apply(w, Input::Released).await,
            Err(e) => match revert(&e) {
                Some(PerpetualStorageErrors::PerpetualStorageNotClaimed(_)) => {
                    self.apply(w, Input::Released).await
                }
                Some(PerpetualStorageErrors::PerpetualStorageSlotStillLive(_)) => {
                    self.store.defer(w.id, self.after_epochs(1)).await?;
                    Ok(())
                }
                _ => Err(e.into()),
            },
        }
    }

    // ------------------------------------------------------------------ indexer, keeper

    /// Lists the blocks of every piece not yet indexed.
    pub async fn index_pending(&self) -> Result<(), StoreError> {
        for piece in self.store.unindexed_pieces().await? {
            let store = self.store.clone();
            let handle = tokio::runtime::Handle::current();
            let path = PathBuf::from(&piece.path);
            let id = piece.id;
            let outcome = tokio::task::spawn_blocking(move || {
                index::index_car(&path, |batch| {
                    handle.block_on(store.add_blocks(id, &batch)).map_err(|e| e.to_string())
                })
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("the indexer panicked: {e}")))?;
            match outcome {
                Ok(done) => {
                    let roots: Vec<String> = done.roots.iter().map(ToString::to_string).collect();
                    self.store
                        .set_indexed(
                            piece.id,
                            Ok(serde_json::json!(roots).to_string()),
                            done.blocks,
                        )
                        .await?;
                    info!(piece = %piece.name, blocks = done.blocks, "piece indexed");
                }
                Err(index::IndexError::NotCar(e)) => {
                    self.store.set_indexed(piece.id, Err(e.to_string()), 0).await?;
                    warn!(piece = %piece.name, error = %e, "piece is not a readable CAR; served by piece CID only");
                }
                Err(e) => warn!(piece = %piece.name, error = %e, "indexing failed; will retry"),
            }
        }
        Ok(())
    }

    /// Withdraws excess bonds and tips held by the `PerpetualStorage` contracts.
    pub async fn withdraw_all(&self) {
        for contract in &self.perpetual {
            match self.chain.withdrawable(*contract).await {
                Ok(amount) if !amount.is_zero() => {
                    if let Err(e) =
                        self.chain.withdraw(*contract, format!("withdraw/{contract:#x}")).await
                    {
                        debug!(%contract, error = %e, "withdraw failed; will retry");
                    }
                }
                Ok(_) => {}
                Err(e) => debug!(%contract, error = %e, "could not read withdrawable"),
            }
        }
    }
}

fn revert(e: &TxError) -> Option<PerpetualStorageErrors> {
    match e {
        TxError::WouldRevert { source } => {
            source.as_decoded_interface_error::<PerpetualStorageErrors>()
        }
        _ => None,
    }
}

/// The evaluator: looks at pending leads every tick.
pub async fn run_evaluator<S: Sealer>(ctx: Arc<Ctx<S>>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = ctx.evaluate_pending().await {
            warn!(error = %e, "evaluator: database error");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(ctx.tick) => {}
        }
    }
}

/// The worker: one step per due piece of work, each on its own task, never two at once for
/// the same work.
pub async fn run_worker<S: Sealer>(ctx: Arc<Ctx<S>>, shutdown: CancellationToken) {
    let running: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        match ctx.store.live_works().await {
            Ok(works) => {
                let now = now_ms();
                for w in works {
                    if w.next_try_ms > now || !running.lock().expect("not poisoned").insert(w.id) {
                        continue;
                    }
                    let ctx = Arc::clone(&ctx);
                    let running = Arc::clone(&running);
                    tasks.spawn(async move {
                        let id = w.id;
                        ctx.step(w).await;
                        running.lock().expect("not poisoned").remove(&id);
                    });
                }
            }
            Err(e) => warn!(error = %e, "worker: database error"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(ctx.tick) => {}
        }
    }
    tasks.shutdown().await;
}

/// Keeps `url` registered as the miner's retrieval URL in `registry`, so that oracles reading
/// it probe this provider's replicas: read at start and every hour, sent again only when it
/// differs (from the agent's key, which must control the miner). A refusal or a chain error is
/// logged and tried again a minute later, then less and less often, hourly at most.
pub async fn run_registration(
    chain: ChainClient,
    registry: alloy::primitives::Address,
    url: String,
    shutdown: CancellationToken,
) {
    const HOUR: Duration = Duration::from_secs(3600);
    let mut retry = Duration::from_secs(60);
    loop {
        let wait = match register(&chain, registry, &url).await {
            Ok(()) => {
                retry = Duration::from_secs(60);
                HOUR
            }
            Err(why) => {
                warn!(%registry, %url, %why, retry_in = ?retry, "registering the retrieval URL failed");
                let wait = retry;
                retry = (retry * 2).min(HOUR);
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One look at the registry, and `url` registered if it is not.
async fn register(
    chain: &ChainClient,
    registry: alloy::primitives::Address,
    url: &str,
) -> Result<(), String> {
    let current = chain.registered_url(registry).await.map_err(|e| e.to_string())?;
    if current == url {
        debug!(%registry, url, "retrieval URL registered");
        return Ok(());
    }
    chain
        .register_url(registry, url)
        .await
        .map_err(|e| crate::chain::contracts::revert_name(&e).unwrap_or_else(|| e.to_string()))?;
    // What the registry holds now (a transaction adopted after a restart may have set another).
    let now = chain.registered_url(registry).await.map_err(|e| e.to_string())?;
    if now != url {
        return Err(format!("sent, but the registry holds {now:?}"));
    }
    info!(%registry, url, was = %current, "retrieval URL registered");
    Ok(())
}

/// The indexer and the keeper's withdrawals.
pub async fn run_housekeeping<S: Sealer>(ctx: Arc<Ctx<S>>, shutdown: CancellationToken) {
    let mut round = 0u64;
    loop {
        if let Err(e) = ctx.index_pending().await {
            warn!(error = %e, "indexer: database error");
        }
        if round.is_multiple_of(20) {
            ctx.withdraw_all().await;
        }
        round += 1;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(ctx.tick * 2) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refused_wait_ms;

    #[test]
    fn refused_claims_wait_a_minute_doubling_up_to_an_hour() {
        let waits: Vec<u64> = (0..=8).map(refused_wait_ms).collect();
        assert_eq!(
            waits,
            [60_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]
        );
        assert_eq!(refused_wait_ms(u32::MAX), 3_600_000);
    }
}
