//! Follows a contract's logs from confirmed blocks into a store, with nothing missed and nothing
//! taken twice — the one watcher the oracle (pin requests, jobs, deal events) and the SP agent
//! (open slots, contract-deal proposals) share.
//!
//! ```text
//!   endpoints (failover) ──► Watcher::step ──► planner: confirmed head, next range, ancestor
//!                              │  eth_getLogs [from, to], hash of `to` before and after
//!                              ▼
//!                          LogStore::ingest(logs, cursor)   one transaction: logs + cursor
//! ```
//!
//! One loop, one cursor per stream: read `[next, min(next + range - 1, confirmed)]` with one
//! `eth_getLogs`, then store its logs and the new cursor in one transaction. Because the cursor
//! moves only with the data, a restart re-reads at most the range that was in flight, and the
//! store ignores what it already has. Each step asks one endpoint everything it needs, so it
//! sees one consistent chain even when endpoints disagree; a step that fails or takes longer
//! than the RPC timeout moves to the next endpoint at once, and only a full round of failures
//! backs off; once caught up it returns to the first endpoint. A lagging endpoint is harmless:
//! the watcher never reads past the head the endpoint itself reports, checks that the endpoint
//! has the last block of the range after reading its logs, and an endpoint that does not know
//! the stored cursor's block is behind, not proof of a reorg. A reorg deeper than the
//! confirmations is undone from the store's checkpoints ([`crate::planner::AncestorSearch`]).

use std::{future::Future, sync::Arc, time::Duration};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256},
    providers::Provider,
    rpc::types::{Filter, Log},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::{ChainConfig, Finality},
    error::ChainError,
    planner::{self, Ancestor, AncestorSearch},
};

/// How far a stream has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Last block whose logs are all stored.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: B256,
}

/// Where a watcher stores what it reads. Every method is one transaction.
pub trait LogStore: Send + Sync + 'static {
    /// A storage failure (retried by the watcher).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Where `stream` has been read up to, if anywhere.
    fn cursor(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Option<Cursor>, Self::Error>> + Send;

    /// Stores what `logs` say (logs of confirmed blocks up to `cursor`, in chain order, none
    /// marked removed; possibly logs already stored) and moves `stream`'s cursor to `cursor`,
    /// keeping it as a checkpoint, atomically. Returns how many new records were stored.
    fn ingest(
        &self,
        stream: &str,
        logs: Vec<Log>,
        cursor: Cursor,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// `stream`'s checkpoints at or above block `from`: the cursors it moved to.
    fn checkpoints(
        &self,
        stream: &str,
        from: u64,
    ) -> impl Future<Output = Result<Vec<Cursor>, Self::Error>> + Send;

    /// Undoes a reorg: forgets what was stored from blocks above `above`, and moves the cursor
    /// back to `cursor` (`None`: to before the start), atomically. Returns how many records
    /// were forgotten.
    fn rewind(
        &self,
        stream: &str,
        above: u64,
        cursor: Option<Cursor>,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}

/// What to follow: a stream of logs of some contracts, with some topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    /// The stream's name in the store (its cursor's key).
    pub stream: String,
    /// The contracts whose logs to read.
    pub addresses: Vec<Address>,
    /// Event signatures (topic 0) to read; empty: every log of the contracts.
    pub topics: Vec<B256>,
    /// First block to read when the store has no cursor (the deployment block).
    pub start_block: u64,
}

/// What the watcher has done, for status pages and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WatchState {
    /// First block this process read (after its stored cursor).
    pub started_from: Option<u64>,
    /// Last block fully stored.
    pub cursor: Option<u64>,
    /// Latest head seen.
    pub head: Option<u64>,
    /// Records stored by this process.
    pub ingested: u64,
    /// Reorgs seen (rewinds of the cursor).
    pub reorgs: u64,
    /// Steps that failed on an endpoint and moved to the next.
    pub rpc_failovers: u64,
}

/// Why one step failed (all retried).
#[derive(Debug, thiserror::Error)]
enum StepError<E> {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the store failed: {0}")]
    Store(E),
}

/// How far back a reorg is looked for.
pub const MAX_REORG_DEPTH: u64 = 1024;

/// Reads one stream of logs into a [`LogStore`].
#[derive(Debug)]
pub struct Watcher<P, S> {
    providers: Vec<(String, P)>,
    current: std::sync::atomic::AtomicUsize,
    store: Arc<S>,
    spec: WatchSpec,
    config: ChainConfig,
    state: watch::Sender<WatchState>,
}

impl<P: Provider, S: LogStore> Watcher<P, S> {
    /// A watcher over one or more endpoints of the same chain, named by their URLs (the first
    /// is preferred), that reports its progress on `state`.
    ///
    /// # Panics
    /// If `providers` is empty.
    pub fn new(
        providers: Vec<(String, P)>,
        store: Arc<S>,
        spec: WatchSpec,
        config: ChainConfig,
        state: watch::Sender<WatchState>,
    ) -> Self {
        assert!(!providers.is_empty(), "a watcher needs an RPC endpoint");
        Self {
            providers,
            current: std::sync::atomic::AtomicUsize::new(0),
            store,
            spec,
            config,
            state,
        }
    }

    /// The endpoint this step uses.
    fn endpoint(&self) -> &(String, P) {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.providers[i % self.providers.len()]
    }

    fn rpc(
        &self,
        method: &'static str,
    ) -> impl Fn(alloy::transports::TransportError) -> ChainError + '_ {
        move |source| ChainError::Rpc { endpoint: self.endpoint().0.clone(), method, source }
    }

    /// Moves to the next endpoint after a failed step.
    fn fail_over(&self) {
        if self.providers.len() > 1 {
            self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.state.send_modify(|s| s.rpc_failovers += 1);
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        const MIN_BACKOFF: Duration = Duration::from_millis(200);
        const MAX_BACKOFF: Duration = Duration::from_secs(30);

        let mut next = None;
        let mut backoff = MIN_BACKOFF;
        let mut failures = 0usize;
        loop {
            let step = async {
                let from = match next {
                    Some(n) => n,
                    None => self.resume_point().await?,
                };
                next = Some(from);
                let timeout = self.config.rpc_timeout();
                match tokio::time::timeout(timeout, self.step(from)).await {
                    Ok(result) => result,
                    Err(_) => Err(StepError::Chain(ChainError::Timeout {
                        endpoint: self.endpoint().0.clone(),
                        after: timeout,
                    })),
                }
            };
            let pause = tokio::select! {
                () = shutdown.cancelled() => return,
                result = step => match result {
                    Ok(Some(new_next)) => {
                        next = Some(new_next);
                        backoff = MIN_BACKOFF;
                        failures = 0;
                        continue;
                    }
                    Ok(None) => {
                        backoff = MIN_BACKOFF;
                        failures = 0;
                        // Caught up: back to the preferred (first) endpoint, which a fallback may
                        // lag behind.
                        self.current.store(0, std::sync::atomic::Ordering::Relaxed);
                        self.config.poll_interval()
                    }
                    Err(StepError::Chain(e)) if failures + 1 < self.providers.len() => {
                        // Another endpoint may be fine: try it at once.
                        failures += 1;
                        warn!(stream = %self.spec.stream, error = %e, "watcher step failed; trying the next RPC endpoint");
                        self.fail_over();
                        continue;
                    }
                    Err(e) => {
                        warn!(stream = %self.spec.stream, error = %e, retry_in = ?backoff, "watcher step failed");
                        failures = 0;
                        if matches!(e, StepError::Chain(_)) {
                            self.fail_over();
                        }
                        let pause = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        pause
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn resume_point(&self) -> Result<u64, StepError<S::Error>> {
        let from = match self.store.cursor(&self.spec.stream).await.map_err(StepError::Store)? {
            Some(cursor) => cursor.block_number + 1,
            None => self.spec.start_block,
        };
        info!(stream = %self.spec.stream, from, "watcher resuming");
        self.state.send_modify(|s| {
            s.started_from = Some(from);
            s.cursor = from.checked_sub(1);
        });
        Ok(from)
    }

    /// Reads and stores one range starting at `from`. Returns the next block to read, or `None`
    /// when there is no confirmed block to read yet.
    async fn step(&self, from: u64) -> Result<Option<u64>, StepError<S::Error>> {
        if let Some(resume) = self.check_reorg().await? {
            return Ok(Some(resume));
        }
        let provider = &self.endpoint().1;
        let head = provider.get_block_number().await.map_err(self.rpc("eth_blockNumber"))?;
        self.state.send_modify(|s| s.head = Some(head));
        let tagged = match self.config.finality {
            Finality::Depth => None,
            tag => {
                let tag = if tag == Finality::Safe {
                    BlockNumberOrTag::Safe
                } else {
                    BlockNumberOrTag::Finalized
                };
                provider
                    .get_block_by_number(tag)
                    .await
                    .map_err(self.rpc("eth_getBlockByNumber"))?
                    .map(|b| b.header.number)
            }
        };
        let confirmed =
            planner::confirmed(self.config.finality, self.config.confirmations, head, tagged);
        let Some((from, to)) = planner::next_range(from, confirmed, self.config.max_block_range)
        else {
            return Ok(None);
        };
        // The hash of `to` before and after reading the logs: if it changed, a reorg happened
        // in between and the logs may mix two chains, so the range is read again.
        let before = self.canonical_hash(to).await?;
        let mut filter =
            Filter::new().address(self.spec.addresses.clone()).from_block(from).to_block(to);
        if !self.spec.topics.is_empty() {
            filter = filter.event_signature(self.spec.topics.clone());
        }
        let logs = provider.get_logs(&filter).await.map_err(self.rpc("eth_getLogs"))?;
        let logs = self.checked(logs, from, to)?;
        let block_hash = self.canonical_hash(to).await?.ok_or_else(|| ChainError::BadAnswer {
            endpoint: self.endpoint().0.clone(),
            what: format!("block {to} not found below the head"),
        })?;
        if before != Some(block_hash) {
            warn!(block = to, "the chain changed while its logs were read; reading them again");
            return Ok(Some(from));
        }
        let count = logs.len();
        let cursor = Cursor { block_number: to, block_hash };
        let inserted =
            self.store.ingest(&self.spec.stream, logs, cursor).await.map_err(StepError::Store)?;
        debug!(stream = %self.spec.stream, from, to, logs = count, inserted, "range stored");
        if inserted > 0 {
            info!(stream = %self.spec.stream, from, to, inserted, "records stored");
        }
        self.state.send_modify(|s| {
            s.cursor = Some(to);
            s.ingested += inserted;
        });
        Ok(Some(to + 1))
    }

    /// Drops logs marked removed and refuses logs no mined block can carry (no position, or
    /// outside the range asked for): the endpoint is broken, and the step is retried.
    fn checked(&self, logs: Vec<Log>, from: u64, to: u64) -> Result<Vec<Log>, ChainError> {
        let bad =
            |what: String| ChainError::BadAnswer { endpoint: self.endpoint().0.clone(), what };
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            if log.removed {
                continue;
            }
            let (Some(block), Some(_), Some(_), Some(_)) =
                (log.block_number, log.block_hash, log.transaction_hash, log.log_index)
            else {
                return Err(bad("a log without its block, transaction or index".into()));
            };
            if !(from..=to).contains(&block) {
                return Err(bad(format!("a log of block {block} for range {from}..={to}")));
            }
            out.push(log);
        }
        Ok(out)
    }

    async fn canonical_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        Ok(self
            .endpoint()
            .1
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(self.rpc("eth_getBlockByNumber"))?
            .map(|b| b.header.hash))
    }

    /// Compares the stored cursor with the canonical chain. On a mismatch (a reorg deeper than
    /// the confirmations), finds the highest checkpoint still canonical, rewinds the store to it
    /// (forgetting what was stored from the orphaned blocks, and with it any work not yet done
    /// for them) and returns the block to read from again.
    async fn check_reorg(&self) -> Result<Option<u64>, StepError<S::Error>> {
        let stream = &self.spec.stream;
        let Some(cursor) = self.store.cursor(stream).await.map_err(StepError::Store)? else {
            return Ok(None);
        };
        match self.canonical_hash(cursor.block_number).await? {
            Some(hash) if hash == cursor.block_hash => return Ok(None),
            Some(_) => {}
            // An endpoint behind the cursor does not know its block yet; that is no reorg.
            None => {
                return Err(ChainError::Lagging {
                    endpoint: self.endpoint().0.clone(),
                    block: cursor.block_number,
                }
                .into());
            }
        }
        let floor = cursor.block_number.saturating_sub(MAX_REORG_DEPTH).max(self.spec.start_block);
        let checkpoints = self.store.checkpoints(stream, floor).await.map_err(StepError::Store)?;
        let mut search = AncestorSearch::new(checkpoints, cursor.block_number, floor);
        let ancestor = loop {
            let canonical = match search.probe() {
                Some(block) => self.canonical_hash(block).await?,
                None => None,
            };
            match search.answer(canonical) {
                Ancestor::Continue => {}
                Ancestor::Found(c) => break Some(c),
                // Without a surviving checkpoint, go back to the floor: re-reading is harmless.
                Ancestor::Exhausted(Some(block)) if block >= self.spec.start_block => {
                    let hash =
                        self.canonical_hash(block).await?.ok_or_else(|| ChainError::BadAnswer {
                            endpoint: self.endpoint().0.clone(),
                            what: format!("block {block} vanished during a reorg"),
                        })?;
                    break Some(Cursor { block_number: block, block_hash: hash });
                }
                Ancestor::Exhausted(_) => break None,
            }
        };
        let above = ancestor.map_or(self.spec.start_block.saturating_sub(1), |c| c.block_number);
        let deleted = self.store.rewind(stream, above, ancestor).await.map_err(StepError::Store)?;
        warn!(%stream, orphaned_cursor = cursor.block_number, ancestor = above, deleted, "reorg: rewound to the common ancestor");
        self.state.send_modify(|s| {
            s.cursor = Some(above);
            s.reorgs += 1;
        });
        Ok(Some(above + 1))
    }
}
