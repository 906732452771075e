//! The prober: now and then, each active replica is read back from its provider, and only
//! bytes that check count.
//!
//! ```text
//!   store: open orders' replicas (active, with a deal) ──► due (every ±25 %) ──► caps (per
//!   minute: in all, per provider) ──► probe:
//!     levels of the piece (kept; made once from the hot copy, checked against its commitment)
//!     ├─ GET {provider}/piece/{pieceCid}  Range: one node's span ──► hashed up to the node
//!     └─ a plain CAR's piece: GET {provider}/ipfs/{root}?format=raw ──► hashed to its CID
//!   ──► store::record_probe (block, latency, bytes, error) ──► lost after N failures in a row
//!   ──► the scheduler replaces a lost replica elsewhere; the score counts every probe
//! ```
//!
//! - **Where a provider serves**: `url=` in its `--provider` policy (the SP agent's HTTP
//!   address, or Boost's or Curio's HTTP retrieval endpoint: both serve `/piece/{cid}` and the
//!   trustless gateway). Providers without one are not probed.
//! - **A hostile provider** cannot make the oracle do unbounded work: each read is capped at
//!   the bytes asked for (plus one, to see an overlong answer), has a deadline, and follows no
//!   redirect. What it answers is checked, never trusted: a `200` with the wrong bytes fails.
//! - Probes of an aggregate or a split pin's part read its piece only (an SP lists the blocks
//!   of a CAR, not of an aggregate), so a plain CAR's probe reads both.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use alloy::providers::{DynProvider, Provider};
use estuary_piece::PieceCid;
use futures::StreamExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{
        now_ms,
        probe::{LevelsBuilder, PieceLevels, ProbeError, ProbeView, next_due},
    },
    store::{ProbeRecord, ProbeTarget, Store, StoreError},
};

/// Largest block a gateway probe reads (the largest block Bitswap carries).
const MAX_BLOCK: u64 = 2 << 20;
/// Probes made at once.
const AT_ONCE: usize = 8;
/// Most time to connect to a provider (within the read's deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the hot copy hashed at a time when a piece's levels are made.
const HASH_BATCH: usize = 8 << 20;

/// The prober's settings.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// Where each provider serves retrievals (`url=` of its policy).
    pub urls: HashMap<u64, String>,
    /// Each replica is probed about this often (±25 %).
    pub every: Duration,
    /// Probes in a row that must fail for a replica to be lost.
    pub lost_after: u32,
    /// Most probes a minute, in all.
    pub per_minute: u32,
    /// Most probes a minute of one provider.
    pub per_provider_per_minute: u32,
    /// Each read's deadline.
    pub timeout: Duration,
    /// Between rounds.
    pub tick: Duration,
}

/// Why a probe failed (the replica's failure), or could not be made (nobody's).
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    /// The provider did not answer as asked.
    #[error("{0}")]
    Provider(String),
    /// The oracle cannot check this piece (no levels, no hot copy): not the provider's fault.
    #[error("not checkable here: {0}")]
    Unchecked(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Probes the replicas of the oracle's orders at their providers.
#[derive(Debug)]
pub struct Prober {
    store: Store,
    chain: DynProvider,
    packed_dir: std::path::PathBuf,
    http: reqwest::Client,
    config: ProberConfig,
    /// Probes of the last minute: when, and whose.
    recent: VecDeque<(Instant, u64)>,
}

impl Prober {
    /// A prober reading the chain's head from `chain` and the hot copies in `packed_dir`.
    pub fn new(
        store: Store,
        chain: DynProvider,
        packed_dir: std::path::PathBuf,
        config: ProberConfig,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout.min(CONNECT_TIMEOUT))
            .timeout(config.timeout)
            .build()?;
        Ok(Self { store, chain, packed_dir, http, config, recent: VecDeque::new() })
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(providers = self.config.urls.len(), every = ?self.config.every, "probing replicas");
        loop {
            if let Err(e) = self.round().await {
                warn!(error = %e, "probe round failed; retried");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    /// One round: the replicas due, within the caps, probed one after the other.
    pub async fn round(&mut self) -> Result<(), String> {
        let head = self.chain.get_block_number().await.map_err(|e| e.to_string())?;
        let now = now_ms();
        let every = u64::try_from(self.config.every.as_millis()).unwrap_or(u64::MAX);
        let mut due: Vec<(u64, ProbeTarget)> = self
            .store
            .probe_targets()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|t| self.config.urls.contains_key(&t.provider))
            .filter(|t| !t.probe.is_some_and(|v| v.lost()))
            .map(|t| (t.probe.map_or(0, |v| next_due(v.last_probe, every, t.deal_id)), t))
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort_by_key(|(at, t)| (*at, t.deal_id));
        let mut chosen = Vec::new();
        for (_, target) in due {
            let minute_ago = Instant::now().checked_sub(Duration::from_secs(60));
            while self.recent.front().is_some_and(|(at, _)| minute_ago.is_some_and(|m| *at < m)) {
                self.recent.pop_front();
            }
            if self.recent.len() >= self.config.per_minute as usize {
                break;
            }
            let of_provider = self.recent.iter().filter(|(_, p)| *p == target.provider).count();
            if of_provider >= self.config.per_provider_per_minute as usize {
                continue;
            }
            self.recent.push_back((Instant::now(), target.provider));
            chosen.push(target);
        }
        // A few at once: a provider that answers slowly (or never, until the deadline) holds
        // one of them, not the whole round.
        let this = &*self;
        let outcomes: Vec<Result<(), StoreError>> = futures::stream::iter(chosen)
            .map(|target| async move { this.probe(&target, head).await })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        outcomes.into_iter().collect::<Result<(), _>>().map_err(|e| e.to_string())
    }

    /// Probes `target` and records the outcome (nothing if the oracle cannot check it).
    async fn probe(&self, target: &ProbeTarget, head: u64) -> Result<(), StoreError> {
        let Some(url) = self.config.urls.get(&target.provider) else { return Ok(()) };
        let url = url.trim_end_matches('/');
        let started = Instant::now();
        let (result, bytes) = self.read_back(url, target).await;
        let error = match result {
            Ok(()) => None,
            Err(ProbeFailure::Store(e)) => return Err(e),
            Err(ProbeFailure::Unchecked(why)) => {
                warn!(piece = %target.piece_cid, %why, "probe: the oracle cannot check this piece");
                return Ok(());
            }
            Err(ProbeFailure::Provider(why)) => Some(why),
        };
        let record = ProbeRecord {
            deal_id: target.deal_id,
            provider: target.provider,
            piece_cid: target.piece_cid.clone(),
            block: head,
            at_ms: now_ms(),
            ok: error.is_none(),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes,
            error: error.clone(),
        };
        let view: ProbeView = self.store.record_probe(&record, self.config.lost_after).await?;
        match &error {
            None => info!(provider = target.provider, deal = target.deal_id, bytes, "probe ok"),
            Some(why) => warn!(
                provider = target.provider,
                deal = target.deal_id,
                failures = view.failures_in_a_row,
                lost = view.lost(),
                %why,
                "probe failed"
            ),
        }
        Ok(())
    }

    /// Reads a span of the piece and, for a plain CAR, its root block; returns the bytes read.
    async fn read_back(&self, url: &str, t: &ProbeTarget) -> (Result<(), ProbeFailure>, u64) {
        let levels = match self.levels(t).await {
            Ok(levels) => levels,
            Err(e) => return (Err(e), 0),
        };
        let index = rand::rng().random_range(0..levels.nodes.len() as u64);
        let Ok((start, end)) = levels.span(index) else {
            return (Err(ProbeFailure::Unchecked("no span".into())), 0);
        };
        let range = format!("bytes={start}-{}", end.saturating_sub(1));
        let read = self
            .get(
                &format!("{url}/piece/{}", t.piece_cid),
                Some(&range),
                end - start,
                "application/octet-stream",
            )
            .await;
        let span = match read {
            Ok(bytes) => bytes,
            Err(why) => return (Err(ProbeFailure::Provider(format!("piece: {why}"))), 0),
        };
        let mut read_bytes = span.len() as u64;
        // Hashing up to 16 MiB: off the runtime's threads.
        let checked = tokio::task::spawn_blocking(move || levels.check(index, &span)).await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return (Err(ProbeFailure::Provider(format!("piece {range}: {e}"))), read_bytes);
            }
            Err(e) => return (Err(ProbeFailure::Unchecked(format!("hashing: {e}"))), read_bytes),
        }
        if t.plain_car {
            let Ok(cid) = t.payload_cid.parse::<cid::Cid>() else { return (Ok(()), read_bytes) };
            let block = self
                .get(
                    &format!("{url}/ipfs/{cid}?format=raw"),
                    None,
                    MAX_BLOCK,
                    "application/vnd.ipld.raw",
                )
                .await;
            match block {
                Ok(bytes) => {
                    read_bytes += bytes.len() as u64;
                    if let Err(e) = estuary_dag::car::verify(&cid, &bytes) {
                        let why = format!("block {cid}: {e}");
                        return (Err(ProbeFailure::Provider(why)), read_bytes);
                    }
                }
                Err(why) => {
                    return (Err(ProbeFailure::Provider(format!("block: {why}"))), read_bytes);
                }
            }
        }
        (Ok(()), read_bytes)
    }

    /// `GET url` with a deadline, at most `max` bytes of body (more is an error).
    async fn get(
        &self,
        url: &str,
        range: Option<&str>,
        max: u64,
        accept: &str,
    ) -> Result<Vec<u8>, String> {
        let mut request = self.http.get(url).header(reqwest::header::ACCEPT, accept);
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        let response = request.send().await.map_err(|e| format!("unreachable: {e}"))?;
        let status = response.status();
        let ok = if range.is_some() { status.as_u16() == 206 } else { status.is_success() };
        if !ok {
            return Err(format!("answered {status}"));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("cut off: {e}"))?;
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(format!("answered more than the {max} bytes asked for"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The piece's kept levels, made from the hot copy the first time.
    async fn levels(&self, t: &ProbeTarget) -> Result<PieceLevels, ProbeFailure> {
        if let Some(levels) = self.store.piece_levels(&t.piece_cid).await? {
            return Ok(levels);
        }
        let piece: PieceCid = t
            .piece_cid
            .parse()
            .map_err(|e| ProbeFailure::Unchecked(format!("not a piece CID: {e}")))?;
        let padded = piece
            .padded_size()
            .ok_or_else(|| ProbeFailure::Unchecked("a v1 piece CID has no size".into()))?;
        let Some((_, mut stream)) = crate::api::piece_bytes(&self.store, &self.packed_dir, &piece)
            .await
            .map_err(|e| ProbeFailure::Unchecked(format!("the hot copy: {e}")))?
        else {
            return Err(ProbeFailure::Unchecked("no hot copy and no levels kept".into()));
        };
        let unchecked = |e: ProbeError| ProbeFailure::Unchecked(e.to_string());
        let mut builder = LevelsBuilder::new(padded).map_err(unchecked)?;
        // Read in batches of 8 MiB, each hashed off the runtime's threads.
        let mut batch = Vec::with_capacity(HASH_BATCH);
        let mut done = false;
        while !done {
            match stream.next().await {
                Some(chunk) => {
                    let chunk =
                        chunk.map_err(|e| ProbeFailure::Unchecked(format!("the hot copy: {e}")))?;
                    batch.extend_from_slice(&chunk);
                }
                None => done = true,
            }
            if batch.len() >= HASH_BATCH || (done && !batch.is_empty()) {
                let bytes = std::mem::take(&mut batch);
                builder =
                    tokio::task::spawn_blocking(move || builder.update(&bytes).map(|()| builder))
                        .await
                        .map_err(|e| ProbeFailure::Unchecked(format!("hashing: {e}")))?
                        .map_err(unchecked)?;
            }
        }
        let commp = *piece.commp();
        let levels = tokio::task::spawn_blocking(move || builder.finish(&commp))
            .await
            .map_err(|e| ProbeFailure::Unchecked(format!("hashing: {e}")))?
            .map_err(unchecked)?;
        self.store.put_piece_levels(&t.piece_cid, &levels).await?;
        Ok(levels)
    }
}
