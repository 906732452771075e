//! Reporting outcomes on chain, exactly once per state.
//!
//! [`Reporter`] is the port; [`ChainReporter`] sends `EstuaryPinning.reportPinned` from the
//! operator's key. Before sending it simulates the call: a request the contract already has the
//! report for (`EstuaryPinningAlreadyReported`) counts as reported — this is what makes a report
//! re-sent after a crash or a reorg harmless — and a request closed on chain
//! (`EstuaryPinningRequestClosed`: cancelled or failed) ends the job.
//!
//! Sending is a small transaction manager: nonces are assigned here, one at a time; fees come
//! from the node's EIP-1559 estimate; a transaction not mined within [`TxPolicy::bump_after`] is
//! replaced (same nonce) with fees raised by [`TxPolicy::bump_percent`], up to a cap; whichever
//! of the versions is mined counts; the receipt is read again once it is
//! `confirmations` deep, and a transaction a reorg dropped is waited for (and bumped) again.

use std::{future::Future, time::Duration};

use crate::store::TxLedger;
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolValue;
use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use estuary_contracts::{
    oracle::EstuaryOracle::{self, EstuaryOracleErrors},
    pinning::EstuaryPinning::{self, EstuaryPinningErrors},
};

/// What reporting achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Sent and mined in transaction `tx`.
    Sent {
        /// Transaction hash.
        tx: String,
    },
    /// The contract already had this report.
    AlreadyThere,
    /// The request is closed on chain (cancelled by its requester, or failed).
    Closed,
}

/// Why a report could not be made (all retryable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The chain refused or failed the call for another reason.
    #[error("reporting failed: {0}")]
    Chain(String),
}

/// Sends reports to the chain.
pub trait Reporter: Send + Sync + 'static {
    /// Reports that request `id` of `contract` (lower-case 0x) is pinned with piece `piece_cid`
    /// (binary v1) of `padded_size`.
    fn report_pinned(
        &self,
        contract: &str,
        id: U256,
        piece_cid: Bytes,
        padded_size: u64,
    ) -> impl Future<Output = Result<Reported, ReportError>> + Send;

    /// Reports that request `id` of `contract` cannot be pinned, and why.
    fn report_failed(
        &self,
        contract: &str,
        id: U256,
        reason: String,
    ) -> impl Future<Output = Result<Reported, ReportError>> + Send;
}

/// How report transactions are priced and replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPolicy {
    /// Replace a transaction not mined after this long.
    pub bump_after: Duration,
    /// Raise both fees by this much per replacement (nodes want at least 10).
    pub bump_percent: u64,
    /// Never offer more than this per gas (wei); `None`: no cap.
    pub max_fee_per_gas: Option<u128>,
    /// Give up (the job retries later, with a fresh nonce) after this long without a receipt.
    pub give_up_after: Duration,
}

impl Default for TxPolicy {
    fn default() -> Self {
        Self {
            bump_after: Duration::from_secs(30),
            bump_percent: 15,
            max_fee_per_gas: None,
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// `fee` raised by `percent`, rounded up, at least by one wei.
fn bumped(fee: u128, percent: u64) -> u128 {
    let raised = fee.saturating_mul(100 + u128::from(percent)).div_ceil(100);
    raised.max(fee.saturating_add(1))
}

/// [`Reporter`] for `EstuaryPinning` through an RPC endpoint with the operator's key.
///
/// Nonces are assigned here, one at a time: workers send reports concurrently from one account,
/// and asking the node for the next nonce per transaction would hand two of them the same one.
/// The next nonce is read from the chain (pending) at first use and after any failed send, so
/// a restart or a dropped transaction never leaves a gap.
#[derive(Debug, Clone)]
pub struct ChainReporter {
    contract: EstuaryPinning::EstuaryPinningInstance<DynProvider>,
    oracle: Option<EstuaryOracle::EstuaryOracleInstance<DynProvider>>,
    operator: Address,
    next_nonce: std::sync::Arc<tokio::sync::Mutex<Option<u64>>>,
    confirmations: u64,
    policy: TxPolicy,
    fees: FeeCache,
    /// The queue of the pin-report batcher, started on first use.
    batcher: std::sync::Arc<tokio::sync::OnceCell<tokio::sync::mpsc::Sender<PinItem>>>,
    /// Where sent transactions are kept (nonces, hashes, what they report), if anywhere.
    ledger: Option<Ledger>,
}

type StoreFuture<'a, T> = futures_util::future::BoxFuture<'a, Result<T, crate::store::StoreError>>;

/// [`TxLedger`] with boxed futures, so the reporter can hold either store.
trait DynLedger: Send + Sync {
    fn last_unsettled<'a>(&'a self, operator: &'a str) -> StoreFuture<'a, Option<(u64, B256)>>;
    fn record_sent<'a>(
        &'a self,
        operator: &'a str,
        nonce: u64,
        tx: B256,
        keys: &'a [String],
    ) -> StoreFuture<'a, ()>;
    fn sent_for<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<(u64, B256)>>;
    fn settle<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, ()>;
}

impl<T: TxLedger> DynLedger for T {
    fn last_unsettled<'a>(&'a self, operator: &'a str) -> StoreFuture<'a, Option<(u64, B256)>> {
        Box::pin(TxLedger::last_unsettled(self, operator))
    }
    fn record_sent<'a>(
        &'a self,
        operator: &'a str,
        nonce: u64,
        tx: B256,
        keys: &'a [String],
    ) -> StoreFuture<'a, ()> {
        Box::pin(TxLedger::record_sent(self, operator, nonce, tx, keys, crate::model::now_ms()))
    }
    fn sent_for<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<(u64, B256)>> {
        Box::pin(TxLedger::sent_for(self, key))
    }
    fn settle<'a>(&'a self, keys: &'a [String]) -> StoreFuture<'a, ()> {
        Box::pin(TxLedger::settle(self, keys))
    }
}

#[derive(Clone)]
struct Ledger(std::sync::Arc<dyn DynLedger>);

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

fn stored(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chain(format!("the transaction ledger failed: {e}"))
}

type FeeCache = std::sync::Arc<
    tokio::sync::Mutex<Option<(tokio::time::Instant, alloy::eips::eip1559::Eip1559Estimation)>>,
>;

impl ChainReporter {
    /// A reporter for `pinning` (and the jobs of `oracle`) at `rpc_url`, signing with `key`.
    pub fn new(
        rpc_url: &str,
        pinning: Address,
        oracle: Option<Address>,
        key: PrivateKeySigner,
        confirmations: u64,
    ) -> Result<Self, ReportError> {
        let url =
            rpc_url.parse().map_err(|_| ReportError::Chain(format!("bad RPC URL {rpc_url}")))?;
        let operator = key.address();
        let provider =
            ProviderBuilder::new().wallet(EthereumWallet::from(key)).connect_http(url).erased();
        // Receipts are polled for; alloy's default for a local endpoint (250 ms) caps a worker
        // at four reports a second. A tenth of a second costs a local node nothing.
        provider.client().set_poll_interval(Duration::from_millis(100));
        Ok(Self {
            contract: EstuaryPinning::new(pinning, provider.clone()),
            oracle: oracle.map(|address| EstuaryOracle::new(address, provider)),
            operator,
            next_nonce: std::sync::Arc::default(),
            confirmations,
            policy: TxPolicy::default(),
            fees: FeeCache::default(),
            batcher: std::sync::Arc::default(),
            ledger: None,
        })
    }

    /// Keeps every report transaction in `ledger` until its report is settled: after a restart
    /// the nonces continue past those still in the mempool, and a report already sent is waited
    /// for instead of being sent again.
    #[must_use]
    pub fn with_ledger<L: TxLedger>(mut self, ledger: std::sync::Arc<L>) -> Self {
        self.ledger = Some(Ledger(ledger));
        self
    }

    /// The same reporter with another transaction policy.
    #[must_use]
    pub fn with_policy(mut self, policy: TxPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl ChainReporter {
    /// Simulates `call`, then sends it with the next nonce and waits for its receipt. `keys`
    /// name the request states it reports (kept in the ledger with the transaction; a report
    /// already sent for a lone key and still pending is waited for instead).
    async fn send<C: alloy::sol_types::SolCall + Send + Sync + Unpin>(
        &self,
        call: alloy::contract::CallBuilder<&DynProvider, std::marker::PhantomData<C>>,
        keys: &[String],
    ) -> Result<Reported, ReportError> {
        self.send_mined(call, keys).await.map(|(reported, _)| reported)
    }

    /// [`send`](Self::send), with the receipt of the transaction when one was mined.
    async fn send_mined<C: alloy::sol_types::SolCall + Send + Sync + Unpin>(
        &self,
        call: alloy::contract::CallBuilder<&DynProvider, std::marker::PhantomData<C>>,
        keys: &[String],
    ) -> Result<(Reported, Option<TransactionReceipt>), ReportError> {
        let result = self.send_inner(call, keys).await;
        if let (Some(ledger), Ok(_)) = (&self.ledger, &result) {
            ledger.0.settle(keys).await.map_err(stored)?;
        }
        result
    }

    /// A transaction sent for `keys` (one key: batches are not adopted) before this process
    /// started, still in the node's pool or mined: its nonce and every version's hash.
    async fn adopt(&self, keys: &[String]) -> Result<Option<(u64, Vec<B256>)>, ReportError> {
        let (Some(ledger), [key]) = (&self.ledger, keys) else { return Ok(None) };
        let sent = ledger.0.sent_for(key).await.map_err(stored)?;
        let Some(&(nonce, _)) = sent.last() else { return Ok(None) };
        let hashes: Vec<B256> = sent.iter().filter(|(n, _)| *n == nonce).map(|(_, h)| *h).collect();
        let provider = self.contract.provider();
        for hash in &hashes {
            let known = provider
                .get_transaction_by_hash(*hash)
                .await
                .map_err(|e| ReportError::Chain(e.to_string()))?;
            if known.is_some() {
                tracing::info!(%key, nonce, "a report sent before is still pending or mined; waiting for it");
                return Ok(Some((nonce, hashes)));
            }
        }
        // Dropped from the pool: forget it; a new transaction is made.
        ledger.0.settle(keys).await.map_err(stored)?;
        Ok(None)
    }

    /// The first nonce to use: the node's pending count, or past the newest transaction of ours
    /// the ledger holds if the node knows it (an endpoint that lost our pending transactions
    /// must not make us reuse their nonces; one that never saw them must not leave a gap).
    async fn first_nonce(&self, provider: &DynProvider) -> Result<u64, ReportError> {
        let chain = provider
            .get_transaction_count(self.operator)
            .pending()
            .await
            .map_err(|e| ReportError::Chain(e.to_string()))?;
        let Some(ledger) = &self.ledger else { return Ok(chain) };
        let operator = format!("{:#x}", self.operator);
        let Some((nonce, hash)) = ledger.0.last_unsettled(&operator).await.map_err(stored)? else {
            return Ok(chain);
        };
        if nonce >= chain
            && provider
                .get_transaction_by_hash(hash)
                .await
                .map_err(|e| ReportError::Chain(e.to_string()))?
                .is_some()
        {
            return Ok(nonce + 1);
        }
        Ok(chain)
    }

    /// Records a sent version of the transaction with `nonce`.
    async fn record(&self, nonce: u64, tx: B256, keys: &[String]) -> Result<(), ReportError> {
        let Some(ledger) = &self.ledger else { return Ok(()) };
        let operator = format!("{:#x}", self.operator);
        ledger.0.record_sent(&operator, nonce, tx, keys).await.map_err(stored)
    }

    async fn send_inner<C: alloy::sol_types::SolCall + Send + Sync + Unpin>(
        &self,
        call: alloy::contract::CallBuilder<&DynProvider, std::marker::PhantomData<C>>,
        keys: &[String],
    ) -> Result<(Reported, Option<TransactionReceipt>), ReportError> {
        // Estimating the gas runs the call: a report the contract refuses (already there, request
        // closed) shows here, before anything is sent. The one gas limit serves every version of
        // the transaction: estimating a replacement would run it on top of the pending original,
        // which the contract refuses as a repeat.
        let gas = match call.estimate_gas().await {
            Ok(gas) => gas,
            Err(e) => {
                return match e.as_decoded_interface_error::<EstuaryPinningErrors>() {
                    Some(EstuaryPinningErrors::EstuaryPinningAlreadyReported(_)) => {
                        Ok((Reported::AlreadyThere, None))
                    }
                    Some(EstuaryPinningErrors::EstuaryPinningRequestClosed(_)) => {
                        Ok((Reported::Closed, None))
                    }
                    _ => match e.as_decoded_interface_error::<EstuaryOracleErrors>() {
                        Some(EstuaryOracleErrors::EstuaryOracleAlreadyFulfilled(_)) => {
                            Ok((Reported::AlreadyThere, None))
                        }
                        _ => Err(ReportError::Chain(e.to_string())),
                    },
                };
            }
        };
        let provider = self.contract.provider();
        let fees = self.fees(provider).await?;
        let cap = self.policy.max_fee_per_gas.unwrap_or(u128::MAX);
        let (mut max_fee, mut tip) =
            (fees.max_fee_per_gas.min(cap), fees.max_priority_fee_per_gas.min(cap));
        let call = call.gas(gas.saturating_add(gas / 5));
        // Every version of the report: the same call, nonce and gas, with its own fees.
        let send_version = async |nonce: u64, max_fee: u128, tip: u128| {
            let version =
                call.clone().nonce(nonce).max_fee_per_gas(max_fee).max_priority_fee_per_gas(tip);
            version.send().await
        };
        let (nonce, mut hashes) = match self.adopt(keys).await? {
            Some(adopted) => adopted,
            None => {
                let mut next = self.next_nonce.lock().await;
                let nonce = match *next {
                    Some(n) => n,
                    None => self.first_nonce(provider).await?,
                };
                match send_version(nonce, max_fee, tip).await {
                    Ok(pending) => {
                        *next = Some(nonce + 1);
                        let hash = *pending.tx_hash();
                        self.record(nonce, hash, keys).await?;
                        (nonce, vec![hash])
                    }
                    Err(e) => {
                        *next = None;
                        return Err(ReportError::Chain(e.to_string()));
                    }
                }
            }
        };
        let started = tokio::time::Instant::now();
        loop {
            // Mined already (before a watcher could see it)?
            for hash in &hashes {
                let receipt = provider
                    .get_transaction_receipt(*hash)
                    .await
                    .map_err(|e| ReportError::Chain(e.to_string()))?;
                if let Some(receipt) = receipt
                    && let Some(confirmed) = self.confirmed(provider, *hash, receipt).await?
                {
                    return confirmed.map(sent);
                }
            }
            let left = self.policy.give_up_after.saturating_sub(started.elapsed());
            if left.is_zero() {
                // The nonce may still be used by a late transaction: ask the chain next time.
                *self.next_nonce.lock().await = None;
                return Err(ReportError::Chain(format!(
                    "report with nonce {nonce} not mined after {:?}",
                    self.policy.give_up_after
                )));
            }
            // Wait for any version to be mined, until it is time to bump. The provider's block
            // watcher serves every pending report at once (no polling per transaction).
            let wait = self.policy.bump_after.min(left);
            let watchers = hashes.iter().map(|hash| {
                Box::pin(
                    alloy::providers::PendingTransactionBuilder::new(
                        provider.root().clone(),
                        *hash,
                    )
                    .with_timeout(Some(wait))
                    .get_receipt(),
                )
            });
            if let Ok((receipt, _)) = futures_util::future::select_ok(watchers).await {
                let hash = receipt.transaction_hash;
                if let Some(confirmed) = self.confirmed(provider, hash, receipt).await? {
                    return confirmed.map(sent);
                }
                continue;
            }
            if max_fee < cap {
                max_fee = bumped(max_fee, self.policy.bump_percent).min(cap);
                tip = bumped(tip, self.policy.bump_percent).min(max_fee);
                match send_version(nonce, max_fee, tip).await {
                    Ok(pending) => {
                        tracing::info!(nonce, max_fee, tip, tx = %pending.tx_hash(), "report not mined yet; replaced with higher fees");
                        self.record(nonce, *pending.tx_hash(), keys).await?;
                        hashes.push(*pending.tx_hash());
                    }
                    // Often "nonce too low": an earlier version was just mined; the receipts
                    // tell on the next round.
                    Err(e) => tracing::debug!(nonce, error = %e, "replacement not accepted"),
                }
            }
        }
    }

    /// The node's fee estimate, asked at most once a second for all workers.
    async fn fees(
        &self,
        provider: &DynProvider,
    ) -> Result<alloy::eips::eip1559::Eip1559Estimation, ReportError> {
        let mut cached = self.fees.lock().await;
        if let Some((at, fees)) = *cached
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(fees);
        }
        let fees = provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| ReportError::Chain(e.to_string()))?;
        *cached = Some((tokio::time::Instant::now(), fees));
        Ok(fees)
    }

    /// The receipt of a mined report once `confirmations` deep (an error if it reverted), or
    /// `None` if a reorg took the transaction out of the chain meanwhile (it is waited for
    /// again).
    async fn confirmed(
        &self,
        provider: &DynProvider,
        hash: alloy::primitives::B256,
        receipt: TransactionReceipt,
    ) -> Result<Option<Result<TransactionReceipt, ReportError>>, ReportError> {
        let chain = |e: alloy::transports::TransportError| ReportError::Chain(e.to_string());
        let Some(mined_in) = receipt.block_number else { return Ok(None) };
        if self.confirmations <= 1 {
            // Mined is all that was asked.
            return Ok(Some(if receipt.status() {
                Ok(receipt)
            } else {
                Err(ReportError::Chain(format!("report transaction {hash} reverted")))
            }));
        }
        let needed = mined_in + self.confirmations.max(1) - 1;
        let deadline = tokio::time::Instant::now() + self.policy.give_up_after;
        while provider.get_block_number().await.map_err(chain)? < needed {
            if tokio::time::Instant::now() > deadline {
                return Err(ReportError::Chain(format!("{hash} never got its confirmations")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Read again: a reorg may have taken it out (or put it in another block).
        let Some(receipt) = provider.get_transaction_receipt(hash).await.map_err(chain)? else {
            tracing::warn!(%hash, "report transaction dropped by a reorg; waiting for it again");
            return Ok(None);
        };
        if !receipt.status() {
            // Mined but reverted: most likely another report got in first; the next attempt's
            // simulation tells.
            return Ok(Some(Err(ReportError::Chain(format!(
                "report transaction {hash} reverted"
            )))));
        }
        Ok(Some(Ok(receipt)))
    }
}

/// A mined report: sent, with its receipt.
fn sent(receipt: TransactionReceipt) -> (Reported, Option<TransactionReceipt>) {
    (Reported::Sent { tx: format!("{:#x}", receipt.transaction_hash) }, Some(receipt))
}

impl ChainReporter {
    /// The `EstuaryOracle` a request belongs to, `None` for `EstuaryPinning`.
    fn job_contract(
        &self,
        contract: &str,
    ) -> Result<Option<&EstuaryOracle::EstuaryOracleInstance<DynProvider>>, ReportError> {
        if contract.eq_ignore_ascii_case(&format!("{:#x}", self.contract.address())) {
            return Ok(None);
        }
        match &self.oracle {
            Some(o) if contract.eq_ignore_ascii_case(&format!("{:#x}", o.address())) => Ok(Some(o)),
            _ => Err(ReportError::Chain(format!("no contract {contract} to report to"))),
        }
    }
}

impl Reporter for ChainReporter {
    async fn report_pinned(
        &self,
        contract: &str,
        id: U256,
        piece_cid: Bytes,
        padded_size: u64,
    ) -> Result<Reported, ReportError> {
        match self.job_contract(contract)? {
            Some(oracle) => {
                let result = (piece_cid, padded_size).abi_encode_params();
                let keys = [format!("fulfill/{contract}/{id}")];
                self.send(oracle.fulfill(id, true, result.into()), &keys).await
            }
            None => self.report_pinned_batched(id, piece_cid, padded_size).await,
        }
    }

    async fn report_failed(
        &self,
        contract: &str,
        id: U256,
        reason: String,
    ) -> Result<Reported, ReportError> {
        match self.job_contract(contract)? {
            Some(oracle) => {
                let keys = [format!("fulfill/{contract}/{id}")];
                self.send(oracle.fulfill(id, false, reason.abi_encode().into()), &keys).await
            }
            None => {
                let keys = [format!("failed/{contract}/{id}")];
                self.send(self.contract.reportFailed(id, reason), &keys).await
            }
        }
    }
}

/// Most `EstuaryPinning` pin reports sent in one transaction.
pub const MAX_BATCH: usize = 64;
/// How long the first report of a batch waits for others to join it.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// A pin report waiting for its batch.
struct PinItem {
    id: U256,
    piece_cid: Bytes,
    padded_size: u64,
    reply: tokio::sync::oneshot::Sender<Result<Reported, ReportError>>,
}

impl ChainReporter {
    /// Queues a pin report for the batcher (started on first use) and waits for its outcome.
    async fn report_pinned_batched(
        &self,
        id: U256,
        piece_cid: Bytes,
        padded_size: u64,
    ) -> Result<Reported, ReportError> {
        let queue = self
            .batcher
            .get_or_init(|| async {
                let (tx, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
                // The batcher's own reporter holds no queue: once every other handle is
                // dropped, the queue closes and the batcher ends.
                let mut worker = self.clone();
                worker.batcher = std::sync::Arc::default();
                tokio::spawn(worker.run_batcher(rx));
                tx
            })
            .await;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        queue
            .send(PinItem { id, piece_cid, padded_size, reply })
            .await
            .map_err(|_| ReportError::Chain("the report batcher stopped".into()))?;
        outcome.await.map_err(|_| ReportError::Chain("the report batcher stopped".into()))?
    }

    /// Gathers pin reports into batches: the first report waits [`BATCH_WINDOW`] for others (up
    /// to [`MAX_BATCH`]); each batch is sent on its own task, so the next one gathers while the
    /// previous waits to be mined (the nonce lock keeps them in order).
    async fn run_batcher(self, mut queue: tokio::sync::mpsc::Receiver<PinItem>) {
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
            let keys = [self.pinned_key(item.id)];
            let call = self.contract.reportPinned(item.id, item.piece_cid, item.padded_size);
            let _ = item.reply.send(self.send(call, &keys).await);
            return;
        }
        let reports = items
            .iter()
            .map(|i| EstuaryPinning::PinnedReport {
                requestId: i.id,
                pieceCid: i.piece_cid.clone(),
                paddedSize: i.padded_size,
            })
            .collect();
        let keys: Vec<String> = items.iter().map(|i| self.pinned_key(i.id)).collect();
        let outcome = match self.send_mined(self.contract.reportPinnedBatch(reports), &keys).await {
            Ok((Reported::Sent { tx }, Some(receipt))) => Ok((tx, self.recorded_in(&receipt))),
            Ok((other, _)) => {
                Err(ReportError::Chain(format!("unexpected batch outcome {other:?}")))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok((tx, recorded)) => {
                for item in items {
                    let result = if recorded.contains(&item.id) {
                        Ok(Reported::Sent { tx: tx.clone() })
                    } else {
                        self.skipped(item.id).await
                    };
                    let _ = item.reply.send(result);
                }
            }
            Err(e) => {
                for item in items {
                    let _ = item.reply.send(Err(ReportError::Chain(e.to_string())));
                }
            }
        }
    }

    /// The ledger's name for the pinned report of request `id` of `EstuaryPinning`.
    fn pinned_key(&self, id: U256) -> String {
        format!("pinned/{:#x}/{id}", self.contract.address())
    }

    /// The requests a mined batch recorded: the `Pinned` events of its receipt.
    fn recorded_in(&self, receipt: &TransactionReceipt) -> Vec<U256> {
        receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == *self.contract.address())
            .filter_map(|log| log.log_decode::<EstuaryPinning::Pinned>().ok())
            .map(|pinned| pinned.inner.data.requestId)
            .collect()
    }

    /// Why a batch skipped a report: the request was reported pinned already, or is closed.
    async fn skipped(&self, id: U256) -> Result<Reported, ReportError> {
        let status = self
            .contract
            .getRequest(id)
            .call()
            .await
            .map_err(|e| ReportError::Chain(e.to_string()))?;
        Ok(if status.pinned {
            Reported::AlreadyThere
        } else if status.cancelled || status.failed {
            Reported::Closed
        } else {
            return Err(ReportError::Chain(format!("the batch skipped request {id}")));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::bumped;

    #[test]
    fn bumps_round_up_and_always_raise() {
        assert_eq!(bumped(100, 15), 115);
        assert_eq!(bumped(101, 15), 117);
        assert_eq!(bumped(1, 15), 2);
        assert_eq!(bumped(0, 15), 1);
        assert_eq!(bumped(u128::MAX, 15), u128::MAX);
    }
}
