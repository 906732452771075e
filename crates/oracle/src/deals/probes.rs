//! The prober: now and then, each active replica is read back from its provider, and only
//! bytes that check count.
//!
//! ```text
//!   each round:
//!   1. levels of up to 2 ordered pieces that have none (made from the hot copy while the order
//!      keeps it, checked against the commitment; a piece that cannot be made waits `every`)
//!   2. open orders' replicas (active, with a deal) ──► due (every ±25 %; a lost one 4× less
//!      often) ──► with levels ──► caps (per minute: in all, per provider) ──► 8 at once:
//!      ├─ GET {provider}/piece/{pieceCid}  Range: one node's span ──► hashed up to the node
//!      └─ a plain CAR's piece: GET {provider}/ipfs/{root}?format=raw ──► hashed to its CID
//!   3. none answered, some unreachable? ask up to 3 other providers: nobody answers either ──►
//!      the oracle's own network, presumably: not counted (for a day at most)
//!   4. store::record_probe, one after the other ──► lost after N span failures in a row, found
//!      again by a span that verifies ──► the scheduler replaces a lost replica elsewhere
//!   hourly: probes that weigh next to nothing, and levels of pieces no longer ordered, deleted
//! ```
//!
//! - **Where a provider serves**: `url=` in its `--provider` policy (the SP agent's HTTP
//!   address, or Boost's or Curio's HTTP retrieval endpoint: both serve `/piece/{cid}` and the
//!   trustless gateway). Providers without one are not probed.
//! - **A hostile provider** cannot make the oracle do unbounded work: each read is capped at
//!   the bytes asked for (plus one, to see an overlong answer), has a deadline, and follows no
//!   redirect. What it answers is checked, never trusted: a `200` with the wrong bytes fails.
//! - Probes of an aggregate or a split pin's part read its piece only (an SP lists the blocks
//!   of a CAR, not of an aggregate), so a plain CAR's probe reads both. Only the span decides
//!   whether a replica is served (a provider need not run the trustless gateway); a root block
//!   that does not check weighs in the provider's score.
//! - **Whose fault.** A provider that cannot be reached fails its probe, unless no probe of the
//!   round reached anyone and no other provider answers either: then the fault is presumed the
//!   oracle's own network, and nothing is counted — for [`OFFLINE_MAX`] at most, after which
//!   failures count again (every provider gone at once looks the same from here).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::providers::{DynProvider, Provider};
use estuary_piece::PieceCid;
use futures::StreamExt;
use rand::{Rng, seq::SliceRandom};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{
        now_ms,
        probe::{LevelsBuilder, PieceLevels, ProbeError, ProbeView, next_due},
        provider::ScoreRules,
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
/// Pieces whose levels are made in one round (each reads its whole hot copy).
const PREPARE_PER_ROUND: usize = 2;
/// A lost replica is probed this many times less often.
const LOST_SLOWER: u64 = 4;
/// Other providers asked, when no probe of a round reached anyone, whether anyone answers.
const CANARIES: usize = 3;
/// How long failures to reach anyone are presumed the oracle's own (then they count).
pub const OFFLINE_MAX: Duration = Duration::from_secs(86_400);
/// Between deletions of what probes no longer need.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

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

/// Why a read failed (the replica's failure), or could not be checked (nobody's).
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    /// The provider could not be reached (no answer at all: it, or the oracle's network).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The provider answered, not as asked.
    #[error("{0}")]
    Provider(String),
    /// The oracle cannot check this read: not the provider's fault.
    #[error("not checkable here: {0}")]
    Unchecked(String),
}

/// What one probe found, before it is recorded.
#[derive(Debug)]
struct Probed {
    /// The piece, for a probe that could not be checked (it waits).
    unchecked: Option<String>,
    /// The outcome, if checked.
    record: Option<ProbeRecord>,
    /// Whether the provider could not be reached at all.
    unreachable: bool,
}

/// Whether a round's unreachable providers failed their probes: `answered`, whether any probe
/// of the round got an answer; `others`, whether another provider answered when asked (`None`:
/// nobody else to ask); `offline_since`, since when nobody has answered. Returns whether they
/// count, and the new `offline_since`.
pub fn unreachable_counts(
    answered: bool,
    others: Option<bool>,
    offline_since: Option<Instant>,
    now: Instant,
) -> (bool, Option<Instant>) {
    match (answered, others) {
        // Someone answered: the oracle is online, and whoever did not answer failed.
        (true, _) | (false, Some(true)) => (true, None),
        // Nobody else to ask: the provider's failure, for all the oracle can tell.
        (false, None) => (true, offline_since),
        (false, Some(false)) => {
            let since = offline_since.unwrap_or(now);
            (now.saturating_duration_since(since) >= OFFLINE_MAX, Some(since))
        }
    }
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
    /// Pieces whose levels could not be made or read, and until when they wait.
    unchecked: HashMap<String, Instant>,
    /// Since when no probe and no other provider has answered (the oracle offline?).
    offline_since: Option<Instant>,
    /// When probes were last pruned.
    pruned: Option<Instant>,
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
        Ok(Self {
            store,
            chain,
            packed_dir,
            http,
            config,
            recent: VecDeque::new(),
            unchecked: HashMap::new(),
            offline_since: None,
            pruned: None,
        })
    }

    /// Runs until `shutdown` (a round under way is dropped: each probe is recorded on its own).
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(providers = self.config.urls.len(), every = ?self.config.every, "probing replicas");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.round() => if let Err(e) = result {
                    warn!(error = %e, "probe round failed; retried");
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    /// One round: levels made for new pieces, then the replicas due, within the caps, probed a
    /// few at once, and their outcomes recorded.
    pub async fn round(&mut self) -> Result<(), String> {
        let head = self.chain.get_block_number().await.map_err(|e| e.to_string())?;
        self.prune(head).await.map_err(|e| e.to_string())?;
        let wake = Instant::now();
        self.unchecked.retain(|_, until| *until > wake);
        self.prepare().await.map_err(|e| e.to_string())?;
        let chosen = self.choose().await.map_err(|e| e.to_string())?;
        // A few at once: a provider that answers slowly (or never, until the deadline) holds
        // one of them, not the whole round.
        let this = &*self;
        let outcomes: Vec<Probed> = futures::stream::iter(chosen)
            .map(|(target, levels)| async move { this.probe(target, levels, head).await })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        let unreachable: HashSet<u64> = outcomes
            .iter()
            .filter(|o| o.unreachable)
            .filter_map(|o| o.record.as_ref().map(|r| r.provider))
            .collect();
        let mut count = true;
        if !unreachable.is_empty() {
            let answered = outcomes.iter().any(|o| o.record.is_some() && !o.unreachable);
            let others =
                if answered { Some(true) } else { self.anyone_answers(&unreachable).await };
            let (counts, since) =
                unreachable_counts(answered, others, self.offline_since, Instant::now());
            if since.is_some() {
                warn!(
                    providers = ?unreachable,
                    offline_secs = since.map_or(0, |s| s.elapsed().as_secs()),
                    counted = counts,
                    "probe: nobody answered, nor did other providers: the oracle's own network?"
                );
            }
            (count, self.offline_since) = (counts, since);
        } else if outcomes.iter().any(|o| o.record.is_some()) {
            self.offline_since = None;
        }
        let until = Instant::now() + self.config.every;
        for o in outcomes {
            if let Some(piece) = o.unchecked {
                self.unchecked.insert(piece, until);
            }
            let Some(record) = o.record else { continue };
            if o.unreachable && !count {
                continue;
            }
            let view: ProbeView = self
                .store
                .record_probe(&record, self.config.lost_after)
                .await
                .map_err(|e| e.to_string())?;
            match &record.error {
                None => info!(
                    provider = record.provider,
                    deal = record.deal_id,
                    bytes = record.bytes,
                    "probe ok"
                ),
                Some(why) => warn!(
                    provider = record.provider,
                    deal = record.deal_id,
                    span_ok = record.ok,
                    failures = view.failures_in_a_row,
                    lost = view.lost(),
                    %why,
                    "probe failed"
                ),
            }
        }
        Ok(())
    }

    /// Deletes, at most hourly, probes that weigh next to nothing and levels of pieces no
    /// longer ordered.
    async fn prune(&mut self, head: u64) -> Result<(), StoreError> {
        if self.pruned.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return Ok(());
        }
        let before = head.saturating_sub(ScoreRules::default().horizon());
        let deleted = self.store.prune_probes(before).await?;
        if deleted > 0 {
            info!(deleted, before, "probes: old probes and unordered pieces' levels deleted");
        }
        self.pruned = Some(Instant::now());
        Ok(())
    }

    /// Makes the levels of up to [`PREPARE_PER_ROUND`] ordered pieces that have none, while
    /// their hot copy is kept for their order; one that cannot be made waits `every`.
    async fn prepare(&mut self) -> Result<(), StoreError> {
        let waiting = u32::try_from(self.unchecked.len()).unwrap_or(u32::MAX);
        let limit = waiting.saturating_add(PREPARE_PER_ROUND as u32).min(10_000);
        let pieces: Vec<String> = self
            .store
            .pieces_without_levels(limit)
            .await?
            .into_iter()
            .filter(|p| !self.unchecked.contains_key(p))
            .take(PREPARE_PER_ROUND)
            .collect();
        for piece in pieces {
            match self.make_levels(&piece).await {
                Ok(levels) => {
                    self.store.put_piece_levels(&piece, &levels).await?;
                    info!(%piece, level = levels.level, nodes = levels.nodes.len(), "probe levels made");
                }
                Err(MakeError::Store(e)) => return Err(e),
                Err(MakeError::Unchecked(why)) => {
                    warn!(%piece, %why, "probe levels: not made now; tried again later");
                    self.unchecked.insert(piece, Instant::now() + self.config.every);
                }
            }
        }
        Ok(())
    }

    /// The replicas due, with their pieces' levels, within the caps.
    async fn choose(&mut self) -> Result<Vec<(ProbeTarget, Arc<PieceLevels>)>, StoreError> {
        let now = now_ms();
        let every = u64::try_from(self.config.every.as_millis()).unwrap_or(u64::MAX);
        let mut due: Vec<(u64, ProbeTarget)> = self
            .store
            .probe_targets()
            .await?
            .into_iter()
            .filter(|t| self.config.urls.contains_key(&t.provider))
            .filter(|t| !self.unchecked.contains_key(&t.piece_cid))
            .map(|t| {
                // A lost replica is still asked for, less often: it may be found again.
                let every = if t.probe.is_some_and(|v| v.lost()) {
                    every.saturating_mul(LOST_SLOWER)
                } else {
                    every
                };
                (t.probe.map_or(0, |v| next_due(v.last_probe, every, t.deal_id)), t)
            })
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort_by_key(|(at, t)| (*at, t.deal_id));
        let mut levels: HashMap<String, Option<Arc<PieceLevels>>> = HashMap::new();
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
            if !levels.contains_key(&target.piece_cid) {
                let kept = match self.store.piece_levels(&target.piece_cid).await {
                    Ok(kept) => kept.map(Arc::new),
                    Err(StoreError::Corrupt(why)) => {
                        warn!(piece = %target.piece_cid, %why, "probe levels unreadable; waiting");
                        let until = Instant::now() + self.config.every;
                        self.unchecked.insert(target.piece_cid.clone(), until);
                        None
                    }
                    Err(e) => return Err(e),
                };
                levels.insert(target.piece_cid.clone(), kept);
            }
            // None yet: made by a later round's preparation, not counted against the caps.
            let Some(Some(of_piece)) = levels.get(&target.piece_cid) else { continue };
            self.recent.push_back((Instant::now(), target.provider));
            chosen.push((target, Arc::clone(of_piece)));
        }
        Ok(chosen)
    }

    /// Whether any of up to [`CANARIES`] providers other than `failed` answers at all (`None`:
    /// there is no other).
    async fn anyone_answers(&self, failed: &HashSet<u64>) -> Option<bool> {
        let mut others: Vec<&String> = self
            .config
            .urls
            .iter()
            .filter(|(p, _)| !failed.contains(p))
            .map(|(_, url)| url)
            .collect();
        if others.is_empty() {
            return None;
        }
        others.shuffle(&mut rand::rng());
        let asks = others.into_iter().take(CANARIES).map(|url| {
            // Any answer, whatever its status, shows the oracle reaches the network.
            let url = format!("{}/", url.trim_end_matches('/'));
            async move { self.http.head(url).send().await.is_ok() }
        });
        Some(futures::future::join_all(asks).await.into_iter().any(|answered| answered))
    }

    /// Probes `target` against its piece's `levels`.
    async fn probe(&self, target: ProbeTarget, levels: Arc<PieceLevels>, head: u64) -> Probed {
        let Some(url) = self.config.urls.get(&target.provider) else {
            return Probed { unchecked: None, record: None, unreachable: false };
        };
        let url = url.trim_end_matches('/');
        // From the request on: the levels are made and read before.
        let started = Instant::now();
        let (span, block, bytes) = self.read_back(url, &target, &levels).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (ok, unreachable, mut error) = match span {
            Ok(()) => (true, false, None),
            Err(ProbeFailure::Unchecked(why)) => {
                warn!(piece = %target.piece_cid, %why, "probe: the oracle cannot check this read");
                return Probed {
                    unchecked: Some(target.piece_cid),
                    record: None,
                    unreachable: false,
                };
            }
            Err(e @ ProbeFailure::Unreachable(_)) => (false, true, Some(e.to_string())),
            Err(e @ ProbeFailure::Provider(_)) => (false, false, Some(e.to_string())),
        };
        if let Some(why) = &block {
            error = Some(error.map_or_else(|| why.clone(), |e| format!("{e}; {why}")));
        }
        let record = ProbeRecord {
            deal_id: target.deal_id,
            provider: target.provider,
            piece_cid: target.piece_cid,
            block: head,
            at_ms: now_ms(),
            ok,
            block_ok: block.is_none(),
            latency_ms,
            bytes,
            error,
        };
        Probed { unchecked: None, record: Some(record), unreachable }
    }

    /// Reads a span of the piece and, for a plain CAR whose span checked, its root block;
    /// returns the span's outcome, the block's failure if it failed, and the bytes read.
    async fn read_back(
        &self,
        url: &str,
        t: &ProbeTarget,
        levels: &Arc<PieceLevels>,
    ) -> (Result<(), ProbeFailure>, Option<String>, u64) {
        let index = rand::rng().random_range(0..levels.nodes.len().max(1) as u64);
        let Ok((start, end)) = levels.span(index) else {
            return (Err(ProbeFailure::Unchecked("no span".into())), None, 0);
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
            Err(e) => return (Err(e.context("piece")), None, 0),
        };
        let mut read_bytes = span.len() as u64;
        // Hashing up to 16 MiB: off the runtime's threads.
        let of = Arc::clone(levels);
        let checked = tokio::task::spawn_blocking(move || of.check(index, &span)).await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let why = format!("piece {range}: {e}");
                return (Err(ProbeFailure::Provider(why)), None, read_bytes);
            }
            Err(e) => {
                let why = format!("hashing: {e}");
                return (Err(ProbeFailure::Unchecked(why)), None, read_bytes);
            }
        }
        if !t.plain_car {
            return (Ok(()), None, read_bytes);
        }
        let Ok(cid) = t.payload_cid.parse::<cid::Cid>() else {
            return (Ok(()), None, read_bytes);
        };
        let block = self
            .get(
                &format!("{url}/ipfs/{cid}?format=raw"),
                None,
                MAX_BLOCK,
                "application/vnd.ipld.raw",
            )
            .await;
        let failed = match block {
            Ok(bytes) => {
                read_bytes += bytes.len() as u64;
                estuary_dag::car::verify(&cid, &bytes).err().map(|e| format!("block {cid}: {e}"))
            }
            Err(e) => Some(e.context("block").to_string()),
        };
        (Ok(()), failed, read_bytes)
    }

    /// `GET url` with a deadline, at most `max` bytes of body (more is an error).
    async fn get(
        &self,
        url: &str,
        range: Option<&str>,
        max: u64,
        accept: &str,
    ) -> Result<Vec<u8>, ProbeFailure> {
        let mut request = self.http.get(url).header(reqwest::header::ACCEPT, accept);
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        let response =
            request.send().await.map_err(|e| ProbeFailure::Unreachable(e.to_string()))?;
        let status = response.status();
        let ok = if range.is_some() { status.as_u16() == 206 } else { status.is_success() };
        if !ok {
            return Err(ProbeFailure::Provider(format!("answered {status}")));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ProbeFailure::Provider(format!("cut off: {e}")))?;
            if body.len() as u64 + chunk.len() as u64 > max {
                let why = format!("answered more than the {max} bytes asked for");
                return Err(ProbeFailure::Provider(why));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Makes a piece's levels from its hot copy, checked against its commitment.
    async fn make_levels(&self, piece_cid: &str) -> Result<PieceLevels, MakeError> {
        let piece: PieceCid =
            piece_cid.parse().map_err(|e| MakeError::Unchecked(format!("not a piece CID: {e}")))?;
        let padded = piece
            .padded_size()
            .ok_or_else(|| MakeError::Unchecked("a v1 piece CID has no size".into()))?;
        let Some((_, mut stream)) = crate::api::piece_bytes(&self.store, &self.packed_dir, &piece)
            .await
            .map_err(|e| MakeError::Unchecked(format!("the hot copy: {e}")))?
        else {
            return Err(MakeError::Unchecked("no hot copy".into()));
        };
        let unchecked = |e: ProbeError| MakeError::Unchecked(e.to_string());
        let hashing = |e: tokio::task::JoinError| MakeError::Unchecked(format!("hashing: {e}"));
        let mut builder = LevelsBuilder::new(padded).map_err(unchecked)?;
        // Read in batches of 8 MiB, each hashed off the runtime's threads.
        let mut batch = Vec::with_capacity(HASH_BATCH);
        let mut done = false;
        while !done {
            match stream.next().await {
                Some(chunk) => {
                    let chunk =
                        chunk.map_err(|e| MakeError::Unchecked(format!("the hot copy: {e}")))?;
                    batch.extend_from_slice(&chunk);
                }
                None => done = true,
            }
            if batch.len() >= HASH_BATCH || (done && !batch.is_empty()) {
                let bytes = std::mem::take(&mut batch);
                builder =
                    tokio::task::spawn_blocking(move || builder.update(&bytes).map(|()| builder))
                        .await
                        .map_err(hashing)?
                        .map_err(unchecked)?;
            }
        }
        let commp = *piece.commp();
        tokio::task::spawn_blocking(move || builder.finish(&commp))
            .await
            .map_err(hashing)?
            .map_err(unchecked)
    }
}

/// Why a piece's levels were not made.
#[derive(Debug, thiserror::Error)]
enum MakeError {
    /// Not from here, now (no hot copy, or it is not the piece): tried again later.
    #[error("{0}")]
    Unchecked(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProbeFailure {
    /// The same failure, saying what was read.
    fn context(self, what: &str) -> Self {
        match self {
            Self::Unreachable(why) => Self::Unreachable(format!("{what}: {why}")),
            Self::Provider(why) => Self::Provider(format!("{what}: {why}")),
            Self::Unchecked(why) => Self::Unchecked(format!("{what}: {why}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_providers_count_unless_nobody_answers_for_less_than_a_day() {
        let t0 = Instant::now();
        // Someone answered in the round, or when asked: counted, and online.
        assert_eq!(unreachable_counts(true, None, Some(t0), t0), (true, None));
        assert_eq!(unreachable_counts(false, Some(true), Some(t0), t0), (true, None));
        // Nobody else to ask: counted (the oracle cannot tell).
        assert_eq!(unreachable_counts(false, None, None, t0), (true, None));
        // Nobody answers: presumed offline, not counted, until a day has passed.
        assert_eq!(unreachable_counts(false, Some(false), None, t0), (false, Some(t0)));
        let later = t0 + OFFLINE_MAX - Duration::from_secs(1);
        assert_eq!(unreachable_counts(false, Some(false), Some(t0), later), (false, Some(t0)));
        let day = t0 + OFFLINE_MAX;
        assert_eq!(unreachable_counts(false, Some(false), Some(t0), day), (true, Some(t0)));
    }
}
