//! Follows `PinRequested` (and `PinCancelled`) logs from confirmed blocks into the store.
//!
//! One loop, one cursor: read `[next, min(next + range - 1, head - confirmations)]` with one
//! `eth_getLogs`, then store its requests and the new cursor in one transaction. Any RPC or
//! store error is logged and retried with capped exponential backoff; the loop ends only on
//! shutdown. Because the cursor only moves with the data, a restart re-reads at most the range
//! that was in flight, and the store ignores what it already has.
//!
//! Several RPC endpoints can be given. Each step asks one endpoint everything it needs (head,
//! logs, the last block's hash), so it sees one consistent chain even when the endpoints
//! disagree; a step that fails or takes longer than `rpc_timeout` moves to the next endpoint at
//! once, and only a full round of failures backs off; once caught up it returns to the first
//! endpoint, the preferred one. A lagging endpoint is harmless: the watcher
//! never reads past the head the endpoint itself reports, checks that the endpoint has the last
//! block of the range after reading its logs (a node without it may answer with no logs), and an
//! endpoint that does not know the stored cursor's block is behind, not proof of a reorg.

use std::{sync::Arc, time::Duration};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::U256,
    providers::Provider,
    rpc::types::{Filter, Log},
    sol_types::SolEvent,
};
use estuary_contracts::{
    PinRequested,
    oracle::EstuaryOracle::JobRequested,
    pinning::EstuaryPinning::{PinCancelled, PinRequestOptions},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    model::{Cursor, PinRequestEvent, Source},
    store::{RequestStore, StoreError},
};

/// Watcher settings.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// First block to read when the store has no cursor.
    pub start_block: u64,
    /// Blocks a log must be buried under before it is read.
    pub confirmations: u64,
    /// Read only up to the chain's own `safe` or `finalized` block (where the RPC has the tag),
    /// instead of counting confirmations.
    pub finality: Finality,
    /// Most blocks per `eth_getLogs`.
    pub max_block_range: u64,
    /// Pause between looks at the head when caught up.
    pub poll_interval: Duration,
    /// Longest one step may take on one endpoint before the next endpoint is tried.
    pub rpc_timeout: Duration,
}

/// Which blocks count as confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Finality {
    /// `head - confirmations`.
    #[default]
    Depth,
    /// The RPC's `safe` block.
    Safe,
    /// The RPC's `finalized` block.
    Finalized,
}

/// What the watcher has done, for `GET /status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WatchState {
    /// First block this process read (after its stored cursor).
    pub started_from: Option<u64>,
    /// Last block fully stored.
    pub cursor: Option<u64>,
    /// Latest head seen.
    pub head: Option<u64>,
    /// Requests stored by this process.
    pub ingested: u64,
    /// Reorgs seen (rewinds of the cursor).
    pub reorgs: u64,
    /// Steps that failed on an endpoint and moved to the next.
    pub rpc_failovers: u64,
}

/// Why one step of the watcher failed. All of these are retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The RPC endpoint failed or answered nonsense.
    #[error("RPC error: {0}")]
    Rpc(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads requests from one source into a store.
#[derive(Debug)]
pub struct Watcher<P, S> {
    providers: Vec<P>,
    current: std::sync::atomic::AtomicUsize,
    store: Arc<S>,
    source: Source,
    config: WatcherConfig,
    state: watch::Sender<WatchState>,
    jobs: bool,
}

impl<P: Provider, S: RequestStore> Watcher<P, S> {
    /// A watcher over one or more endpoints of the same chain (the first is preferred), that
    /// reports its progress on `state`.
    ///
    /// # Panics
    /// If `providers` is empty.
    pub fn new(
        providers: Vec<P>,
        store: Arc<S>,
        source: Source,
        config: WatcherConfig,
        state: watch::Sender<WatchState>,
    ) -> Self {
        assert!(!providers.is_empty(), "a watcher needs an RPC endpoint");
        Self {
            providers,
            current: std::sync::atomic::AtomicUsize::new(0),
            store,
            source,
            config,
            state,
            jobs: false,
        }
    }

    /// The endpoint this step uses.
    fn provider(&self) -> &P {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.providers[i % self.providers.len()]
    }

    /// Moves to the next endpoint after a failed step.
    fn fail_over(&self) {
        if self.providers.len() > 1 {
            self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.state.send_modify(|s| s.rpc_failovers += 1);
        }
    }

    /// Follows an `EstuaryOracle`'s pin jobs (`JobRequested` of kind `Pin`) instead of
    /// `EstuaryPinning` requests: other contracts' requests, pinned the same way and answered
    /// with `fulfill`.
    pub fn for_oracle_jobs(mut self) -> Self {
        self.jobs = true;
        self
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
                match tokio::time::timeout(self.config.rpc_timeout, self.step(from)).await {
                    Ok(result) => result,
                    Err(_) => Err(WatchError::Rpc(format!(
                        "no answer within {:?}",
                        self.config.rpc_timeout
                    ))),
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
                        // Caught up: go back to the preferred (first) endpoint, which a fallback
                        // may lag behind.
                        self.current.store(0, std::sync::atomic::Ordering::Relaxed);
                        self.config.poll_interval
                    }
                    Err(e @ WatchError::Rpc(_)) if failures + 1 < self.providers.len() => {
                        // Another endpoint may be fine: try it at once.
                        failures += 1;
                        warn!(error = %e, "watcher step failed; trying the next RPC endpoint");
                        self.fail_over();
                        continue;
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in = ?backoff, "watcher step failed");
                        failures = 0;
                        if matches!(e, WatchError::Rpc(_)) {
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

    async fn resume_point(&self) -> Result<u64, WatchError> {
        let from = match self.store.cursor(self.source).await? {
            Some(cursor) => cursor.block_number + 1,
            None => self.config.start_block,
        };
        info!(source = %self.source.key(), from, "watcher resuming");
        self.state.send_modify(|s| {
            s.started_from = Some(from);
            s.cursor = from.checked_sub(1);
        });
        Ok(from)
    }

    /// Reads and stores one range starting at `from`. Returns the next block to read, or `None`
    /// when there is no confirmed block to read yet.
    async fn step(&self, from: u64) -> Result<Option<u64>, WatchError> {
        if let Some(resume) = self.check_reorg().await? {
            return Ok(Some(resume));
        }
        let head = self.provider().get_block_number().await.map_err(rpc)?;
        self.state.send_modify(|s| s.head = Some(head));
        let tag = match self.config.finality {
            Finality::Depth => None,
            Finality::Safe => Some(BlockNumberOrTag::Safe),
            Finality::Finalized => Some(BlockNumberOrTag::Finalized),
        };
        let safe = match tag {
            None => head.checked_sub(self.config.confirmations),
            Some(tag) => self
                .provider()
                .get_block_by_number(tag)
                .await
                .map_err(rpc)?
                .map(|b| b.header.number.min(head)),
        };
        let Some(safe) = safe else {
            return Ok(None);
        };
        if from > safe {
            return Ok(None);
        }
        let to = safe.min(from.saturating_add(self.config.max_block_range.max(1) - 1));

        let topics = if self.jobs {
            vec![JobRequested::SIGNATURE_HASH]
        } else {
            vec![
                PinRequested::SIGNATURE_HASH,
                PinCancelled::SIGNATURE_HASH,
                PinRequestOptions::SIGNATURE_HASH,
            ]
        };
        // The hash of `to` before and after reading the logs: if it changed, a reorg happened
        // in between and the logs may mix two chains, so the range is read again.
        let before = self.canonical_hash(to).await?;
        let filter = Filter::new()
            .address(self.source.contract)
            .event_signature(topics)
            .from_block(from)
            .to_block(to);
        let logs = self.provider().get_logs(&filter).await.map_err(rpc)?;
        let (options, logs): (Vec<&Log>, Vec<&Log>) =
            logs.iter().partition(|log| log.topic0() == Some(&PinRequestOptions::SIGNATURE_HASH));
        let (requests, cancels): (Vec<&Log>, Vec<&Log>) =
            logs.into_iter().partition(|log| log.topic0() != Some(&PinCancelled::SIGNATURE_HASH));
        let mut events = requests
            .into_iter()
            .filter_map(|log| if self.jobs { decode_job(log) } else { decode(log) }.transpose())
            .collect::<Result<Vec<_>, _>>()?;
        attach_origins(&mut events, &options);
        let cancelled: Vec<U256> = cancels
            .into_iter()
            .filter(|log| !log.removed)
            .filter_map(|log| log.log_decode::<PinCancelled>().ok())
            .map(|decoded| decoded.inner.data.requestId)
            .collect();

        let block_hash = self
            .canonical_hash(to)
            .await?
            .ok_or_else(|| WatchError::Rpc(format!("block {to} not found below the head")))?;
        if before != Some(block_hash) {
            warn!(block = to, "the chain changed while its logs were read; reading them again");
            return Ok(Some(from));
        }
        let cursor = Cursor { block_number: to, block_hash };

        let inserted =
            self.store.ingest_with_cancels(self.source, &events, &cancelled, cursor).await?;
        if !cancelled.is_empty() {
            info!(count = cancelled.len(), "requests cancelled on chain");
        }
        debug!(from, to, logs = events.len(), inserted, "range stored");
        if inserted > 0 {
            info!(from, to, inserted, "pin requests stored");
        }
        self.state.send_modify(|s| {
            s.cursor = Some(to);
            s.ingested += inserted;
        });
        Ok(Some(to + 1))
    }
}

impl<P: Provider, S: RequestStore> Watcher<P, S> {
    async fn canonical_hash(
        &self,
        number: u64,
    ) -> Result<Option<alloy::primitives::B256>, WatchError> {
        Ok(self
            .provider()
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(rpc)?
            .map(|b| b.header.hash))
    }

    /// Compares the stored cursor with the canonical chain. On a mismatch (a reorg deeper than
    /// the confirmations), finds the highest block with stored requests that is still
    /// canonical, deletes what was stored above it — the orphaned requests, and with them any
    /// work not yet done for them — and returns the block to read from again.
    async fn check_reorg(&self) -> Result<Option<u64>, WatchError> {
        /// How far back a reorg is looked for.
        const MAX_DEPTH: u64 = 1024;
        let Some(cursor) = self.store.cursor(self.source).await? else { return Ok(None) };
        match self.canonical_hash(cursor.block_number).await? {
            Some(hash) if hash == cursor.block_hash => return Ok(None),
            Some(_) => {}
            // An endpoint behind the cursor does not know its block yet; that is no reorg.
            None => {
                return Err(WatchError::Rpc(format!(
                    "the endpoint does not have block {} yet (lagging)",
                    cursor.block_number
                )));
            }
        }
        let floor = cursor.block_number.saturating_sub(MAX_DEPTH).max(self.config.start_block);
        let mut ancestor = None;
        for (number, hash) in self.store.request_blocks(self.source, floor).await? {
            if number < cursor.block_number && self.canonical_hash(number).await? == Some(hash) {
                ancestor = Some(number);
                break;
            }
        }
        // Without a surviving request block, go back to the floor: re-reading is harmless.
        let ancestor =
            ancestor.or_else(|| floor.checked_sub(1)).filter(|a| *a >= self.config.start_block);
        let new_cursor = match ancestor {
            Some(number) => {
                let hash = self.canonical_hash(number).await?.ok_or_else(|| {
                    WatchError::Rpc(format!("block {number} vanished during a reorg"))
                })?;
                Some(Cursor { block_number: number, block_hash: hash })
            }
            None => None,
        };
        let above = ancestor.unwrap_or(self.config.start_block.saturating_sub(1));
        let deleted = self.store.rewind(self.source, above, new_cursor).await?;
        warn!(
            orphaned_cursor = cursor.block_number,
            ancestor = above,
            deleted,
            "reorg: rewound to the common ancestor"
        );
        self.state.send_modify(|s| {
            s.cursor = Some(above);
            s.reorgs += 1;
        });
        Ok(Some(above + 1))
    }
}

fn rpc(e: impl std::fmt::Display) -> WatchError {
    WatchError::Rpc(e.to_string())
}

/// Turns one log into an event. `Ok(None)` for a log the chain has marked removed; an error for
/// a log without the position fields every mined log has (the endpoint is broken: retry).
/// Where a mined log sits: block number and hash, transaction hash, log index. An error for a
/// log without them (the endpoint is broken: retry).
fn position(
    log: &Log,
) -> Result<(u64, alloy::primitives::B256, alloy::primitives::B256, u64), WatchError> {
    let missing = |what| WatchError::Rpc(format!("log without {what}"));
    Ok((
        log.block_number.ok_or_else(|| missing("block number"))?,
        log.block_hash.ok_or_else(|| missing("block hash"))?,
        log.transaction_hash.ok_or_else(|| missing("transaction hash"))?,
        log.log_index.ok_or_else(|| missing("log index"))?,
    ))
}

/// The failure a store job gets: deals are not made by this oracle yet.
pub const STORE_JOBS_REFUSED: &str =
    "store jobs (Filecoin deals) are not served by this oracle yet; request a pin job";

/// A `JobRequested` log as a request (the job id is its id, the consumer its requester); a job
/// of another kind than `Pin` is refused (see [`STORE_JOBS_REFUSED`]).
fn decode_job(log: &Log) -> Result<Option<PinRequestEvent>, WatchError> {
    if log.removed {
        return Ok(None);
    }
    let (block_number, block_hash, tx_hash, log_index) = position(log)?;
    let Ok(decoded) = log.log_decode::<JobRequested>() else {
        warn!(%tx_hash, log_index, "undecodable JobRequested log skipped");
        return Ok(None);
    };
    let job = decoded.inner.data;
    // Store jobs (pin and keep in Filecoin deals) are answered at once, with a failed
    // fulfilment saying why, so the consumer is not left waiting for a callback.
    let refused = (job.kind != 0).then(|| STORE_JOBS_REFUSED.to_owned());
    Ok(Some(PinRequestEvent {
        request_id: job.jobId,
        requester: job.consumer,
        cid: job.cid,
        block_number,
        block_hash,
        tx_hash,
        log_index,
        origins: Vec::new(),
        refused,
    }))
}

/// Most origins kept per request, and longest origin: the same bounds as the pinning API's.
const MAX_ORIGINS: usize = 20;
const MAX_ORIGIN_LEN: usize = 1024;

/// Gives each request the origins its `PinRequestOptions` log names (emitted by the same
/// transaction, right after the request, so always in the same range). Chain data is untrusted:
/// origins past the bounds are dropped, and the fetcher checks each one again.
fn attach_origins(events: &mut [PinRequestEvent], options: &[&Log]) {
    for log in options {
        if log.removed {
            continue;
        }
        let Ok(decoded) = log.log_decode::<PinRequestOptions>() else {
            warn!(tx = ?log.transaction_hash, "undecodable PinRequestOptions log skipped");
            continue;
        };
        let data = decoded.inner.data;
        let Some(event) = events
            .iter_mut()
            .find(|e| e.request_id == data.requestId && Some(e.tx_hash) == log.transaction_hash)
        else {
            continue;
        };
        event.origins = data
            .origins
            .into_iter()
            .filter(|o| !o.is_empty() && o.len() <= MAX_ORIGIN_LEN)
            .take(MAX_ORIGINS)
            .collect();
    }
}

fn decode(log: &Log) -> Result<Option<PinRequestEvent>, WatchError> {
    if log.removed {
        return Ok(None);
    }
    let (block_number, block_hash, tx_hash, log_index) = position(log)?;
    let decoded = match log.log_decode::<PinRequested>() {
        Ok(decoded) => decoded,
        Err(e) => {
            // Our contract cannot emit this; skip it rather than stop the whole source.
            warn!(%tx_hash, log_index, error = %e, "undecodable PinRequested log skipped");
            return Ok(None);
        }
    };
    let PinRequested { requestId, requester, cid } = decoded.inner.data;
    Ok(Some(PinRequestEvent {
        request_id: U256::from(requestId),
        requester,
        cid,
        block_number,
        block_hash,
        tx_hash,
        log_index,
        origins: Vec::new(),
        refused: None,
    }))
}
