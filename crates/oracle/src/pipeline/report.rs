//! Reporting outcomes on chain, exactly once per state.
//!
//! ```text
//!  worker ──► Reporter::report_pinned / report_failed (a job key, typed)
//!               │ route by the job's source: EstuaryPinning → reportPinned (batched),
//!               │                            EstuaryOracle  → fulfill
//!               ▼
//!            estuary_chain::TxManager::send (simulate, ledger, nonce, fees, bumps, confirmations)
//! ```
//!
//! Before sending, the manager simulates the call: a request the contract already has the
//! report for (`EstuaryPinningAlreadyReported`, `EstuaryOracleAlreadyFulfilled`) counts as
//! reported — this is what makes a report re-sent after a crash or a reorg harmless — and a
//! request closed on chain (`EstuaryPinningRequestClosed`: cancelled or failed) ends the job.
//! Pin reports to `EstuaryPinning` that finish within a short window of each other go out as
//! one `reportPinnedBatch`.

use std::{future::Future, sync::Arc, time::Duration};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::DynProvider,
    rpc::types::TransactionReceipt,
    sol_types::SolValue,
};
use estuary_chain::{TxError, TxManager};
use estuary_contracts::{
    oracle::EstuaryOracle::{self, EstuaryOracleErrors},
    pinning::EstuaryPinning::{self, EstuaryPinningErrors},
};
use tokio::sync::{OnceCell, mpsc, oneshot};

use crate::domain::{FailureCode, JobKey, JobSource};

/// The most bytes of a failure's detail sent on chain (`EstuaryPinning.MAX_DETAIL_LENGTH`; the
/// contract would cut a longer one there, after the operator paid for its calldata).
pub const MAX_DETAIL: usize = 64;

/// The most bytes of a failure's reason an `EstuaryOracle` job's `fulfill` carries to its
/// consumer.
pub const MAX_ORACLE_DETAIL: usize = 256;

/// `detail` cut to at most `max` bytes, on a character boundary.
pub fn short_detail(detail: &str, max: usize) -> &str {
    let mut end = detail.len().min(max);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail[..end]
}

/// What `EstuaryPinning` takes to name a request's CID: keccak256 of its binary form.
pub fn cid_hash(cid: &[u8]) -> B256 {
    alloy::primitives::keccak256(cid)
}

/// What reporting achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Sent and confirmed in transaction `tx`.
    Sent {
        /// Transaction hash.
        tx: B256,
    },
    /// The contract already had this report.
    AlreadyThere,
    /// The request is closed on chain (cancelled by its requester, or failed).
    Closed,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The transaction failed (see [`TxError`] for whether it may be on chain).
    #[error(transparent)]
    Tx(#[from] TxError),
    /// The job's source is not a contract this oracle reports to.
    #[error("no contract {0} to report to")]
    UnknownSource(JobSource),
    /// The job's id is not a request id.
    #[error("job {0} has no request id")]
    NotARequest(JobKey),
    /// The request on chain names another CID: the chain reorganized under this job, and the
    /// watcher has yet to catch up. Retried later; never sent.
    #[error("request {id} on chain names another CID (a reorg the watcher has yet to apply)")]
    OtherCid {
        /// The request.
        id: U256,
    },
    /// The batch this report went in failed as a whole.
    #[error("the report's batch failed: {0}")]
    Batch(#[source] Arc<TxError>),
    /// The batcher stopped (the oracle is shutting down).
    #[error("the report batcher stopped")]
    Stopped,
}

impl ReportError {
    /// Whether trying again later is safe and may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Tx(e) => e.is_retryable(),
            Self::Batch(e) => e.is_retryable(),
            Self::UnknownSource(_) | Self::NotARequest(_) => false,
            Self::OtherCid { .. } | Self::Stopped => true,
        }
    }

    /// Whether a report transaction may already be on chain.
    pub fn may_be_on_chain(&self) -> bool {
        match self {
            Self::Tx(e) => e.may_be_on_chain(),
            Self::Batch(e) => e.may_be_on_chain(),
            _ => false,
        }
    }
}

/// Sends reports to the chain.
pub trait Reporter: Send + Sync + 'static {
    /// Reports that job `key` is pinned: the CID it asked for, the piece `piece_cid` (binary
    /// v1) of `padded_size`.
    fn report_pinned(
        &self,
        key: &JobKey,
        cid: &[u8],
        piece_cid: Bytes,
        padded_size: u64,
    ) -> impl Future<Output = Result<Reported, ReportError>> + Send;

    /// Reports that job `key` (for the CID `cid`) cannot be pinned: a `code`, and a short
    /// `detail` (cut to [`MAX_DETAIL`] bytes for `EstuaryPinning`; the whole reason stays in
    /// the job).
    fn report_failed(
        &self,
        key: &JobKey,
        cid: &[u8],
        code: FailureCode,
        detail: &str,
    ) -> impl Future<Output = Result<Reported, ReportError>> + Send;
}

/// The contracts this oracle reports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportTargets {
    /// The chain they are on.
    pub chain: u64,
    /// `EstuaryPinning`.
    pub pinning: Address,
    /// `EstuaryOracle`, if this oracle serves its jobs.
    pub oracle: Option<Address>,
}

/// Which contract a job reports to.
enum Target {
    Pinning(U256),
    Oracle(U256),
}

/// [`Reporter`] through the operator's [`TxManager`].
#[derive(Debug, Clone)]
pub struct ChainReporter {
    tx: TxManager,
    targets: ReportTargets,
    /// The queue of the pin-report batcher, started on first use.
    batcher: Arc<OnceCell<mpsc::Sender<PinItem>>>,
}

/// Most `EstuaryPinning` pin reports sent in one transaction.
pub const MAX_BATCH: usize = 64;
/// How long the first report of a batch waits for others to join it.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// A pin report waiting for its batch.
struct PinItem {
    id: U256,
    cid_hash: B256,
    piece_cid: Bytes,
    padded_size: u64,
    reply: oneshot::Sender<Result<Reported, ReportError>>,
}

/// What a refused simulation means for a report.
fn refusal(e: &TxError) -> Option<Reported> {
    let TxError::WouldRevert { source } = e else { return None };
    match source.as_decoded_interface_error::<EstuaryPinningErrors>() {
        Some(EstuaryPinningErrors::EstuaryPinningAlreadyReported(_)) => {
            return Some(Reported::AlreadyThere);
        }
        Some(EstuaryPinningErrors::EstuaryPinningRequestClosed(_)) => {
            return Some(Reported::Closed);
        }
        _ => {}
    }
    match source.as_decoded_interface_error::<EstuaryOracleErrors>() {
        Some(EstuaryOracleErrors::EstuaryOracleAlreadyFulfilled(_)) => Some(Reported::AlreadyThere),
        _ => None,
    }
}

/// The outcome of one sent report.
fn settled(result: Result<Box<TransactionReceipt>, TxError>) -> Result<Reported, ReportError> {
    match result {
        Ok(receipt) => Ok(Reported::Sent { tx: receipt.transaction_hash }),
        Err(e) => {
            if let TxError::WouldRevert { source } = &e
                && let Some(EstuaryPinningErrors::EstuaryPinningCidMismatch(m)) =
                    source.as_decoded_interface_error::<EstuaryPinningErrors>()
            {
                return Err(ReportError::OtherCid { id: m.requestId });
            }
            refusal(&e).ok_or(ReportError::Tx(e))
        }
    }
}

impl ChainReporter {
    /// A reporter sending through `tx` to `targets`.
    pub fn new(tx: TxManager, targets: ReportTargets) -> Self {
        Self { tx, targets, batcher: Arc::default() }
    }

    fn provider(&self) -> &DynProvider {
        self.tx.provider()
    }

    fn target(&self, key: &JobKey) -> Result<Target, ReportError> {
        let id = key.id.as_request().ok_or_else(|| ReportError::NotARequest(key.clone()))?;
        match key.source {
            JobSource::Contract { chain, address } if chain == self.targets.chain => {
                if address == self.targets.pinning {
                    return Ok(Target::Pinning(id));
                }
                if Some(address) == self.targets.oracle {
                    return Ok(Target::Oracle(id));
                }
                Err(ReportError::UnknownSource(key.source.clone()))
            }
            _ => Err(ReportError::UnknownSource(key.source.clone())),
        }
    }

    /// The ledger's name for the pinned report of request `id` of `EstuaryPinning`.
    fn pinned_key(&self, id: U256) -> String {
        format!("pinned/{:#x}/{id}", self.targets.pinning)
    }

    /// Queues a pin report for the batcher (started on first use) and waits for its outcome.
    async fn report_pinned_batched(
        &self,
        id: U256,
        cid_hash: B256,
        piece_cid: Bytes,
        padded_size: u64,
    ) -> Result<Reported, ReportError> {
        let queue = self
            .batcher
            .get_or_init(|| async {
                let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
                // The batcher's own reporter holds no queue: once every other handle is
                // dropped, the queue closes and the batcher ends.
                let mut worker = self.clone();
                worker.batcher = Arc::default();
                tokio::spawn(worker.run_batcher(rx));
                tx
            })
            .await;
        let (reply, outcome) = oneshot::channel();
        queue
            .send(PinItem { id, cid_hash, piece_cid, padded_size, reply })
            .await
            .map_err(|_| ReportError::Stopped)?;
        outcome.await.map_err(|_| ReportError::Stopped)?
    }

    /// Gathers pin reports into batches: the first report waits [`BATCH_WINDOW`] for others (up
    /// to [`MAX_BATCH`]); each batch is sent on its own task, so the next one gathers while the
    /// previous waits to be mined (the manager keeps nonces in order).
    async fn run_batcher(self, mut queue: mpsc::Receiver<PinItem>) {
        while let Some(first) = queue.recv().await {
            let mut items = vec![first];
            let window = tokio::time::sleep(BATCH_WINDOW);
            tokio::pin!(window);
            while items.len() < MAX_BATCH {
                tokio::select! {
                    item = queue.recv() => match item {
                        Some(item) => items.push(item),
                        None => break,
                    },
                    () = &mut window => break,
                }
            }
            tokio::spawn(self.clone().send_batch(items));
        }
    }

    /// Sends one batch and answers each of its reports.
    async fn send_batch(self, items: Vec<PinItem>) {
        if let [_] = items.as_slice() {
            let Some(item) = items.into_iter().next() else { return };
            let result = self.send_one(&item).await;
            let _ = item.reply.send(result);
            return;
        }
        let pinning = EstuaryPinning::new(self.targets.pinning, self.provider());
        let reports = items
            .iter()
            .map(|i| EstuaryPinning::PinnedReport {
                requestId: i.id,
                cidHash: i.cid_hash,
                pieceCid: i.piece_cid.clone(),
                paddedSize: i.padded_size,
            })
            .collect();
        let keys: Vec<String> = items.iter().map(|i| self.pinned_key(i.id)).collect();
        match self.tx.send(pinning.reportPinnedBatch(reports), &keys).await {
            Ok(receipt) => {
                let recorded = self.recorded_in(&receipt);
                for item in items {
                    let result = if recorded.contains(&item.id) {
                        Ok(Reported::Sent { tx: receipt.transaction_hash })
                    } else {
                        // Skipped by the batch (reported already, closed, another CID): on its
                        // own, the simulation says which, and nothing is sent unless it applies.
                        self.send_one(&item).await
                    };
                    let _ = item.reply.send(result);
                }
            }
            // A batch refused as a whole: each report retried on its own tells why.
            Err(e) => {
                let shared = Arc::new(e);
                for item in items {
                    let _ = item.reply.send(Err(ReportError::Batch(Arc::clone(&shared))));
                }
            }
        }
    }

    /// Sends one pin report on its own.
    async fn send_one(&self, item: &PinItem) -> Result<Reported, ReportError> {
        let pinning = EstuaryPinning::new(self.targets.pinning, self.provider());
        let keys = [self.pinned_key(item.id)];
        let call =
            pinning.reportPinned(item.id, item.cid_hash, item.piece_cid.clone(), item.padded_size);
        settled(self.tx.send(call, &keys).await)
    }

    /// The requests a mined batch recorded: the `Pinned` events of its receipt.
    fn recorded_in(&self, receipt: &TransactionReceipt) -> Vec<U256> {
        receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == self.targets.pinning)
            .filter_map(|log| log.log_decode::<EstuaryPinning::Pinned>().ok())
            .map(|pinned| pinned.inner.data.requestId)
            .collect()
    }
}

impl Reporter for ChainReporter {
    async fn report_pinned(
        &self,
        key: &JobKey,
        cid: &[u8],
        piece_cid: Bytes,
        padded_size: u64,
    ) -> Result<Reported, ReportError> {
        match self.target(key)? {
            Target::Oracle(id) => {
                let oracle =
                    EstuaryOracle::new(self.targets.oracle.expect("routed to it"), self.provider());
                let result = (piece_cid, padded_size).abi_encode_params();
                let keys = [format!("fulfill/{:#x}/{id}", oracle.address())];
                settled(self.tx.send(oracle.fulfill(id, true, result.into()), &keys).await)
            }
            Target::Pinning(id) => {
                self.report_pinned_batched(id, cid_hash(cid), piece_cid, padded_size).await
            }
        }
    }

    async fn report_failed(
        &self,
        key: &JobKey,
        cid: &[u8],
        code: FailureCode,
        detail: &str,
    ) -> Result<Reported, ReportError> {
        match self.target(key)? {
            Target::Oracle(id) => {
                let oracle =
                    EstuaryOracle::new(self.targets.oracle.expect("routed to it"), self.provider());
                let keys = [format!("fulfill/{:#x}/{id}", oracle.address())];
                settled(
                    self.tx
                        .send(
                            oracle.fulfill(
                                id,
                                false,
                                short_detail(detail, MAX_ORACLE_DETAIL).abi_encode().into(),
                            ),
                            &keys,
                        )
                        .await,
                )
            }
            Target::Pinning(id) => {
                let pinning = EstuaryPinning::new(self.targets.pinning, self.provider());
                let keys = [format!("failed/{:#x}/{id}", self.targets.pinning)];
                let detail = short_detail(detail, MAX_DETAIL).to_owned();
                let call = pinning.reportFailed(id, cid_hash(cid), code as u8, detail);
                settled(self.tx.send(call, &keys).await)
            }
        }
    }
}
