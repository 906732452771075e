//! `EstuaryOracle` store jobs fulfilled with deals: a store job is pinned and packed like a pin
//! job, its piece goes into a bucket like any pin's, and once enough deals holding the bucket's
//! aggregate are active, the job is fulfilled with `EstuaryResults.StoreResult` — its piece,
//! and per deal the deal id, its provider and the FRC-0058 proof that the piece is inside the
//! deal's piece. `EstuaryOracle.fulfill` checks every deal against the market and the proof on
//! chain before the consumer's callback, so a consumer only ever receives deals that hold.
//!
//! ```text
//!   store jobs reported (pinned, packed), no result yet
//!     ──► piece larger than an aggregate takes ──► fulfill(false, why)
//!     ──► bucket closed, aggregate in deals ──► active replicas at different providers
//!         ≥ the replicas asked ──► Aggregate::build ──► proof of the piece
//!         ──► fulfill(true, StoreResult) (TxManager, key fulfill/<oracle>/<id>) ──► store_results
//! ```
//!
//! What a job may ask is settled when it is read ([`crate::domain::request::StoreOffer`]): at
//! most the replicas this oracle's orders keep, verified only if its deals are. The contract
//! fulfils a job once, so a result sent again after a crash is refused, never doubled.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, FixedBytes},
    sol_types::SolValue,
};
use estuary_chain::{TxError, TxManager};
use estuary_contracts::{
    EstuaryOracle,
    oracle::{EstuaryOracle::EstuaryOracleErrors, EstuaryResults, PoDSI},
};
use estuary_piece::aggregate::MerkleProof;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    deals::buckets::{BucketError, aggregate_of},
    domain::{JobSource, deal::OrderState, now_ms},
    store::{Store, StoreError, StoreJob},
};

/// Jobs looked at per round.
const BATCH: u64 = 500;
/// A refused fulfilment is tried again after this long.
const RETRY: Duration = Duration::from_secs(60);

/// Why a round stopped (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum StoreJobError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bucket cannot be aggregated.
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// Where a store job's result is.
enum Ready {
    /// Not yet: its bucket is open, or its deals are not all active.
    Wait,
    /// Never: why.
    Fail(String),
    /// Its result.
    Result(EstuaryResults::StoreResult),
}

/// Fulfils `EstuaryOracle` store jobs with their deals.
#[derive(Debug)]
pub struct StoreFulfiller {
    store: Store,
    tx: TxManager,
    oracle: Address,
    source: JobSource,
    /// The largest piece a bucket takes.
    largest: u64,
    /// The buckets' maximum age, seconds (checked against the contract's `jobTimeout`).
    max_age_secs: u64,
    every: Duration,
}

impl StoreFulfiller {
    /// Fulfils the store jobs of `oracle` (jobs of `source`) whose pieces are bucketed (at most
    /// `largest` padded bytes), sending with `tx`.
    pub fn new(
        store: Store,
        tx: TxManager,
        oracle: Address,
        source: JobSource,
        largest: u64,
        every: Duration,
    ) -> Self {
        Self { store, tx, oracle, source, largest, max_age_secs: 0, every }
    }

    /// Buckets close after `secs` at most: warned about if a consumer's timeout is not well
    /// above it.
    #[must_use]
    pub fn with_max_age(mut self, secs: u64) -> Self {
        self.max_age_secs = secs;
        self
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let contract = EstuaryOracle::new(self.oracle, self.tx.provider());
        if let Ok(timeout) = contract.jobTimeout().call().await
            && self.max_age_secs.saturating_mul(2) >= timeout
        {
            warn!(
                job_timeout = timeout,
                bucket_max_age = self.max_age_secs,
                "a store job's consumer may cancel it before its bucket is dealt: keep \
                 --bucket-max-age-secs well under the contract's jobTimeout"
            );
        }
        let mut refused: HashMap<String, Instant> = HashMap::new();
        loop {
            if let Err(e) = self.round(&mut refused).await {
                warn!(error = %e, "store-job round failed; retried");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    async fn round(&self, refused: &mut HashMap<String, Instant>) -> Result<(), StoreJobError> {
        refused.retain(|_, at| at.elapsed() < RETRY);
        for job in self.store.store_jobs_waiting(&self.source, BATCH).await? {
            let id = job.key.id.as_str().to_owned();
            if refused.contains_key(&id) {
                continue;
            }
            // One job's failure (a corrupt bucket, a read) holds back no other.
            if let Err(e) = self.job(&job, refused).await {
                warn!(job = %id, error = %e, "store job not handled; tried again later");
                refused.insert(id, Instant::now());
            }
        }
        Ok(())
    }

    async fn job(
        &self,
        job: &StoreJob,
        refused: &mut HashMap<String, Instant>,
    ) -> Result<(), StoreJobError> {
        let id = job.key.id.as_str().to_owned();
        let Some(job_id) = job.key.id.as_request() else { return Ok(()) };
        {
            if job.padded_size > self.largest {
                let why = format!(
                    "its piece ({} padded bytes) is larger than an aggregate takes ({}): store \
                     jobs are kept in aggregates, where each has an inclusion proof",
                    job.padded_size, self.largest
                );
                return self.fail(job, job_id, &why, refused).await;
            }
            let result = match self.result(job).await? {
                Ready::Wait => return Ok(()),
                Ready::Fail(why) => return self.fail(job, job_id, &why, refused).await,
                Ready::Result(result) => result,
            };
            let deals = result
                .deals
                .iter()
                .map(|d| format!("f0{}#{}", d.provider, d.dealId))
                .collect::<Vec<_>>()
                .join(", ");
            let oracle = EstuaryOracle::new(self.oracle, self.tx.provider());
            let call = oracle.fulfill(job_id, true, result.abi_encode().into());
            match self.tx.send(call, &[self.key(job_id)]).await {
                Ok(receipt) => {
                    let tx = format!("{:#x}", receipt.transaction_hash);
                    info!(job = %id, %deals, %tx, "store job fulfilled with its deals");
                    self.store
                        .store_result_sent(&job.key, true, &deals, Some(&tx), now_ms())
                        .await?;
                }
                Err(e) => self.refused(job, &e, refused).await?,
            }
        }
        Ok(())
    }

    /// The ledger key of job `id`'s result (not the pipeline reporter's `fulfill/…`: the two
    /// never adopt each other's transaction).
    fn key(&self, id: alloy::primitives::U256) -> String {
        format!("storeresult/{:#x}/{id}", self.oracle)
    }

    /// The job's result, if enough deals holding its piece are active; why it cannot have
    /// one, if it cannot.
    async fn result(&self, job: &StoreJob) -> Result<Ready, StoreJobError> {
        let Some(bucket) = self.store.bucket_of_piece(&job.piece_cid).await? else {
            // Not bucketed because its piece has an order of its own (another pin of the same
            // content, ordered alone or by a DataDAO): no inclusion proof will ever come.
            if !self.store.deals(Some(&job.piece_cid), 1, 0).await?.is_empty() {
                return Ok(Ready::Fail(
                    "its piece is in an order of its own, not in an aggregate: it has no \
                     inclusion proof"
                        .into(),
                ));
            }
            return Ok(Ready::Wait);
        };
        let (Some(aggregate), Some(deal_size)) = (&bucket.piece_cid, bucket.deal_size) else {
            return Ok(Ready::Wait);
        };
        let orders = self.store.deals(Some(aggregate), 10, 0).await?;
        if let Some(failed) = orders.iter().find(|o| o.order.state == OrderState::Failed) {
            let why = failed.order.error.as_deref().unwrap_or("failed");
            return Ok(Ready::Fail(format!("its aggregate's order failed: {why}")));
        }
        // One deal per provider, its latest counting one (a renewal beside an ending deal).
        let mut latest: HashMap<u64, (u64, u64)> = HashMap::new();
        for r in orders.iter().flat_map(|o| o.replicas.iter()).filter(|r| r.counts()) {
            let (Some(deal), end) = (r.deal_id, r.end_epoch.unwrap_or(0)) else { continue };
            if latest.get(&r.provider).is_none_or(|(_, e)| end > *e) {
                latest.insert(r.provider, (deal, end));
            }
        }
        let mut active: Vec<(u64, u64)> =
            latest.into_iter().map(|(provider, (deal, _))| (deal, provider)).collect();
        active.sort_unstable_by_key(|(_, p)| *p);
        active.truncate(usize::from(job.replicas));
        if active.len() < usize::from(job.replicas) {
            return Ok(Ready::Wait);
        }
        let pieces = self.store.bucket_pieces(bucket.id).await?;
        let Some(n) = pieces.iter().position(|p| p.piece_cid == job.piece_cid) else {
            return Ok(Ready::Wait);
        };
        // Hashing the aggregate's tree is CPU work: off the async workers.
        let (id, inside) = (bucket.id, pieces.clone());
        let agg = tokio::task::spawn_blocking(move || aggregate_of(id, &inside, deal_size))
            .await
            .map_err(|e| BucketError::Aggregate { id, reason: e.to_string() })??;
        let Some(proof) = agg.proof(n) else { return Ok(Ready::Wait) };
        let proof = PoDSI::InclusionProof {
            proofSubtree: proof_data(&proof.subtree),
            proofIndex: proof_data(&proof.index),
        };
        Ok(Ready::Result(EstuaryResults::StoreResult {
            commP: FixedBytes(agg.segments[n].commp),
            paddedSize: job.padded_size,
            deals: active
                .into_iter()
                .map(|(deal, provider)| EstuaryResults::StoredDeal {
                    dealId: deal,
                    provider,
                    proof: proof.clone(),
                })
                .collect(),
        }))
    }

    /// Fulfils the job with a failure saying `why`.
    async fn fail(
        &self,
        job: &StoreJob,
        job_id: alloy::primitives::U256,
        why: &str,
        refused: &mut HashMap<String, Instant>,
    ) -> Result<(), StoreJobError> {
        let oracle = EstuaryOracle::new(self.oracle, self.tx.provider());
        let call = oracle.fulfill(job_id, false, why.to_owned().abi_encode().into());
        match self.tx.send(call, &[self.key(job_id)]).await {
            Ok(receipt) => {
                let tx = format!("{:#x}", receipt.transaction_hash);
                warn!(job = %job.key.id.as_str(), reason = why, "store job failed");
                self.store.store_result_sent(&job.key, false, why, Some(&tx), now_ms()).await?;
            }
            Err(e) => self.refused(job, &e, refused).await?,
        }
        Ok(())
    }

    /// A fulfilment not sent: settled if the contract says the job is no longer open
    /// (cancelled by its consumer, fulfilled before a restart), else tried again later.
    async fn refused(
        &self,
        job: &StoreJob,
        e: &TxError,
        refused: &mut HashMap<String, Instant>,
    ) -> Result<(), StoreJobError> {
        let decoded = match e {
            TxError::WouldRevert { source } => {
                source.as_decoded_interface_error::<EstuaryOracleErrors>()
            }
            _ => None,
        };
        let id = job.key.id.as_str().to_owned();
        match &decoded {
            Some(EstuaryOracleErrors::EstuaryOracleAlreadyFulfilled(_)) => {
                // Answered before a restart (or cancelled by its consumer, which the watcher
                // reads): kept as it is, since a result with deals may have been delivered.
                let why = "answered on chain before (a restart)";
                warn!(job = %id, reason = why, "store job settled");
                self.store.store_result_sent(&job.key, true, why, None, now_ms()).await?;
            }
            Some(EstuaryOracleErrors::EstuaryOracleUnknownJob(_)) => {
                let why = "no such job on chain";
                warn!(job = %id, reason = why, "store job settled");
                self.store.store_result_sent(&job.key, false, why, None, now_ms()).await?;
            }
            _ => {
                let why = decoded.map_or_else(|| e.to_string(), |d| format!("{d:?}"));
                warn!(job = %id, error = %why, "store job not fulfilled; tried again later");
                refused.insert(id, Instant::now());
            }
        }
        Ok(())
    }
}

fn proof_data(proof: &MerkleProof) -> PoDSI::ProofData {
    PoDSI::ProofData {
        index: proof.index,
        path: proof.path.iter().map(|n| B256::from(*n)).collect(),
    }
}
