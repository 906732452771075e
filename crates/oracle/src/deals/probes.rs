//! The prober: now and then, each active replica is read back from its provider, and only
//! bytes that check count.
//!
//! ```text
//!   LevelsMaker (its own task): ordered pieces without levels ──► made from the hot copy
//!     (kept while the order may hold deals), checked against the commitment ──► piece_levels;
//!     one that cannot be made waits, doubling (piece_level_attempts)
//!   Prober, each step:
//!   1. probes that ended: some unreachable and nothing answered (no probe, not the chain's
//!      remote endpoint, none of 3 other providers)? the oracle's own network, presumably: not
//!      counted for a day at most (the replica waits `every`) ──► otherwise store::record_probe,
//!      one after the other ──► lost after N span failures in a row, found again after N
//!      verified ──► the scheduler replaces a lost replica elsewhere
//!   2. open orders' replicas (active, with a deal, with levels) ──► due (every ±25 %; a lost
//!      one 4× less often) ──► caps (per minute: in all, per provider) ──► slots (8 in all, 2
//!      per provider, across steps):
//!      ├─ GET {provider}/piece/{pieceCid}  Range: one node's span ──► hashed up to the node
//!      └─ a plain CAR's piece: GET {provider}/ipfs/{root}?format=raw ──► hashed to its CID
//!   hourly: probes that weigh next to nothing, and levels of pieces no longer ordered, deleted
//! ```
//!
//! - **Where a provider serves**: `url=` in its `--provider` policy (the SP agent's HTTP
//!   address, or Boost's or Curio's HTTP retrieval endpoint: both serve `/piece/{cid}` and the
//!   trustless gateway), else the URL its miner registered in the `ProviderRegistry`
//!   ([`crate::deals::registry`]: read under the fetch's network policy). Providers with
//!   neither are not probed.
//! - **A hostile provider** cannot make the oracle do unbounded work: each read is capped at
//!   the bytes asked for (plus one, to see an overlong answer), has a deadline, and follows no
//!   redirect. What it answers is checked, never trusted: a `200` with the wrong bytes fails.
//! - Probes of an aggregate or a split pin's part read its piece only (an SP lists the blocks
//!   of a CAR, not of an aggregate), so a plain CAR's probe reads both. Only the span decides
//!   whether a replica is served (a provider need not run the trustless gateway); a root block
//!   answered with the wrong bytes fails the sample the score reads, one not served is noted.
//! - **Whose fault.** A provider that gives no whole answer (no connection, a deadline, a body
//!   cut off) fails its probe only if something shows the oracle's network up: another probe
//!   answered, the chain's endpoint is off this host, or another provider answers when asked.
//!   Otherwise the fault is presumed the oracle's own and nothing is counted — for
//!   [`OFFLINE_MAX`] at most, after which failures count again (every provider gone at once
//!   looks the same from here).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::providers::{DynProvider, Provider};
use estuary_piece::PieceCid;
use futures::StreamExt;
use rand::{Rng, seq::SliceRandom};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    deals::registry::{ProviderClients, ProviderUrl, ProviderUrls},
    domain::{
        now_ms,
        probe::{LevelsBuilder, PieceLevels, ProbeError, ProbeView, next_due},
        provider::ScoreRules,
    },
    store::{ProbeRecord, ProbeTarget, Store, StoreError},
};

/// Largest block a gateway probe reads (the largest block Bitswap carries).
const MAX_BLOCK: u64 = 2 << 20;
/// Probes in flight at once, in all.
const AT_ONCE: usize = 8;
/// Probes in flight at once of one provider (a slow one holds no more of the slots).
const AT_ONCE_PER_PROVIDER: usize = 2;
/// Most time to connect to a provider (within the read's deadline).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the hot copy hashed at a time when a piece's levels are made.
const HASH_BATCH: usize = 8 << 20;
/// Pieces whose levels are made in one pass of the levels task.
const PREPARE_PER_PASS: u32 = 4;
/// A lost replica is probed this many times less often.
const LOST_SLOWER: u64 = 4;
/// Other providers asked, when no probe reached anyone, whether anyone answers.
const CANARIES: usize = 3;
/// How long failures to reach anyone are presumed the oracle's own (then they count).
pub const OFFLINE_MAX: Duration = Duration::from_secs(86_400);
/// Between deletions of what probes no longer need.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The prober's settings.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// Where each provider serves retrievals (`url=` of its policy, or registered).
    pub urls: Arc<ProviderUrls>,
    /// What registered URLs may reach (the fetch's `--allow-net`).
    pub net: Arc<crate::fetch::NetPolicy>,
    /// Each replica is probed about this often (±25 %).
    pub every: Duration,
    /// Probes in a row that must fail for a replica to be lost (and verify for it to be found
    /// again).
    pub lost_after: u32,
    /// Most probes a minute, in all.
    pub per_minute: u32,
    /// Most probes a minute of one provider.
    pub per_provider_per_minute: u32,
    /// Each read's deadline.
    pub timeout: Duration,
    /// Between steps.
    pub tick: Duration,
    /// Whether the chain's RPC endpoint is off this host: reaching it shows the oracle's
    /// network is up, whatever the providers do.
    pub rpc_remote: bool,
}

/// Whether every one of `urls` is off this host and its network (neither loopback, private,
/// link-local nor unspecified): what answering through them shows of the oracle's network.
pub fn all_remote(urls: &[String]) -> bool {
    let remote = |url: &String| {
        let Ok(url) = reqwest::Url::parse(url) else { return false };
        let Some(host) = url.host_str() else { return false };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            return !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified());
        }
        if let Ok(ip) = host.parse::<std::net::Ipv6Addr>() {
            let first = ip.segments()[0];
            return !(ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80);
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        name != "localhost" && !name.ends_with(".localhost") && name.contains('.')
    };
    !urls.is_empty() && urls.iter().all(remote)
}

/// `now + d`, or far ahead if that overflows.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).or_else(|| now.checked_add(Duration::from_secs(1 << 40))).unwrap_or(now)
}

/// Why a read failed (the provider's failure, or no answer at all), or could not be checked
/// (nobody's).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeFailure {
    /// No whole answer came: the provider, or the oracle's own network (a connection that
    /// failed, a deadline, a body cut off).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The provider answered, not as asked (a status, a length, the wrong bytes).
    #[error("{0}")]
    Provider(String),
    /// The oracle cannot check this read: not the provider's fault.
    #[error("not checkable here: {0}")]
    Unchecked(String),
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

/// `GET url` (with `range`, which must then be answered `206`), at most `max` bytes of body
/// (more is the provider's failure); the body, and how long it took to come.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &str,
    range: Option<&str>,
    max: u64,
    accept: &str,
) -> Result<(Vec<u8>, Duration), ProbeFailure> {
    let started = Instant::now();
    let mut request = http.get(url).header(reqwest::header::ACCEPT, accept);
    if let Some(range) = range {
        request = request.header(reqwest::header::RANGE, range);
    }
    let response = request.send().await.map_err(|e| ProbeFailure::Unreachable(e.to_string()))?;
    let status = response.status();
    let ok = if range.is_some() { status.as_u16() == 206 } else { status.is_success() };
    if !ok {
        return Err(ProbeFailure::Provider(format!("answered {status}")));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ProbeFailure::Unreachable(format!("cut off: {e}")))?;
        if body.len() as u64 + chunk.len() as u64 > max {
            let why = format!("answered more than the {max} bytes asked for");
            return Err(ProbeFailure::Provider(why));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, started.elapsed()))
}

/// Span `index` of `piece` (its levels `levels`) read from the provider at `url` and checked
/// (hashed up to its node, off the runtime's threads); the bytes, and how long they took to
/// come.
pub(crate) async fn read_span(
    http: &reqwest::Client,
    url: &str,
    piece: &str,
    levels: &Arc<PieceLevels>,
    index: u64,
) -> Result<(Vec<u8>, Duration), ProbeFailure> {
    let (start, end) = levels.span(index).map_err(|e| ProbeFailure::Unchecked(e.to_string()))?;
    let range = format!("bytes={start}-{}", end.saturating_sub(1));
    let url = format!("{}/piece/{piece}", url.trim_end_matches('/'));
    let (span, took) = fetch(http, &url, Some(&range), end - start, "application/octet-stream")
        .await
        .map_err(|e| e.context("piece"))?;
    let of = Arc::clone(levels);
    match tokio::task::spawn_blocking(move || of.check(index, &span).map(|()| span)).await {
        Ok(Ok(span)) => Ok((span, took)),
        Ok(Err(e)) => Err(ProbeFailure::Provider(format!("piece {range}: {e}"))),
        Err(e) => Err(ProbeFailure::Unchecked(format!("hashing: {e}"))),
    }
}

/// What one probe found, before it is recorded.
#[derive(Debug)]
struct Probed {
    /// The replica's deal.
    deal_id: u64,
    /// Its provider.
    provider: u64,
    /// The outcome, if checked.
    record: Option<ProbeRecord>,
    /// Whether no whole answer came from the provider.
    unreachable: bool,
}

/// Whether unreachable providers failed their probes: `answered`, whether anything showed the
/// oracle's network up (a probe answered, or the chain's remote endpoint did); `others`,
/// whether another provider answered when asked (`None`: nobody else to ask);
/// `offline_since`, since when nothing has. Returns whether they count, and the new
/// `offline_since`. Nothing shows the network up: presumed the oracle's own fault, for
/// [`OFFLINE_MAX`] at most.
pub fn unreachable_counts(
    answered: bool,
    others: Option<bool>,
    offline_since: Option<Instant>,
    now: Instant,
) -> (bool, Option<Instant>) {
    if answered || others == Some(true) {
        return (true, None);
    }
    let since = offline_since.unwrap_or(now);
    (now.saturating_duration_since(since) >= OFFLINE_MAX, Some(since))
}

/// Probes the replicas of the oracle's orders at their providers.
#[derive(Debug)]
pub struct Prober {
    store: Store,
    chain: DynProvider,
    http: ProviderClients,
    config: ProberConfig,
    /// Probes started in the last minute: when, and whose.
    recent: VecDeque<(Instant, u64)>,
    /// Pieces whose kept levels are unreadable, and until when they wait.
    unchecked: HashMap<String, Instant>,
    /// Replicas whose last probe was not counted (the oracle presumed offline), and until
    /// when they wait.
    deferred: HashMap<u64, Instant>,
    /// Since when nothing has shown the oracle's network up.
    offline_since: Option<Instant>,
    /// When probes were last pruned.
    pruned: Option<Instant>,
    /// Probes under way.
    in_flight: JoinSet<Probed>,
    /// Their deals and providers.
    flying: HashMap<u64, u64>,
}

impl Prober {
    /// A prober reading the chain's head from `chain`.
    pub fn new(
        store: Store,
        chain: DynProvider,
        config: ProberConfig,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            store,
            chain,
            http: ProviderClients::new(config.timeout, Arc::clone(&config.net))?,
            config,
            recent: VecDeque::new(),
            unchecked: HashMap::new(),
            deferred: HashMap::new(),
            offline_since: None,
            pruned: None,
            in_flight: JoinSet::new(),
            flying: HashMap::new(),
        })
    }

    /// Runs until `shutdown` (probes under way are dropped: each is recorded on its own).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (configured, registered) = self.config.urls.counts();
        info!(configured, registered, every = ?self.config.every, "probing replicas");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.step() => if let Err(e) = result {
                    warn!(error = %e, "probe step failed; retried");
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    /// One step: the probes that ended recorded, then the replicas due started, within the
    /// caps and the slots. Probes run across steps: a slow provider holds its own slots only.
    pub async fn step(&mut self) -> Result<(), String> {
        let head = self.chain.get_block_number().await.map_err(|e| e.to_string())?;
        let mut ended = Vec::new();
        while let Some(done) = self.in_flight.try_join_next() {
            match done {
                Ok(probed) => {
                    self.flying.remove(&probed.deal_id);
                    ended.push(probed);
                }
                Err(e) => warn!(error = %e, "a probe task failed"),
            }
        }
        if self.in_flight.is_empty() {
            self.flying.clear();
        }
        self.settle(ended).await.map_err(|e| e.to_string())?;
        self.prune(head).await.map_err(|e| e.to_string())?;
        let wake = Instant::now();
        self.unchecked.retain(|_, until| *until > wake);
        self.deferred.retain(|_, until| *until > wake);
        for (target, levels) in self.choose().await.map_err(|e| e.to_string())? {
            let Some(url) = self.config.urls.get(target.provider) else { continue };
            self.flying.insert(target.deal_id, target.provider);
            let http = self.http.of(&url).clone();
            self.in_flight.spawn(probe(http, url.url, target, levels, head));
        }
        Ok(())
    }

    /// Every probe under way ends and is recorded (for tests and shutdown).
    pub async fn drain(&mut self) -> Result<(), String> {
        let mut ended = Vec::new();
        while let Some(done) = self.in_flight.join_next().await {
            if let Ok(probed) = done {
                ended.push(probed);
            }
        }
        self.flying.clear();
        self.settle(ended).await.map_err(|e| e.to_string())
    }

    /// Records what ended: unreachable providers only if something showed the oracle's
    /// network up; otherwise their replicas wait `every` unrecorded.
    async fn settle(&mut self, ended: Vec<Probed>) -> Result<(), StoreError> {
        if ended.is_empty() {
            return Ok(());
        }
        let unreachable: HashSet<u64> =
            ended.iter().filter(|o| o.unreachable).map(|o| o.provider).collect();
        let answered =
            self.config.rpc_remote || ended.iter().any(|o| o.record.is_some() && !o.unreachable);
        let mut count = true;
        if !unreachable.is_empty() {
            let others = if answered { None } else { self.anyone_answers(&unreachable).await };
            let (counts, since) =
                unreachable_counts(answered, others, self.offline_since, Instant::now());
            if !counts || since.is_some() {
                warn!(
                    providers = ?unreachable,
                    offline_secs = since.map_or(0, |s| s.elapsed().as_secs()),
                    counted = counts,
                    "probe: nothing answered, nor did other providers: the oracle's own network?"
                );
            }
            (count, self.offline_since) = (counts, since);
        } else if answered {
            self.offline_since = None;
        }
        let until = later(self.config.every);
        for o in ended {
            let Some(record) = o.record else { continue };
            if o.unreachable && !count {
                self.deferred.insert(o.deal_id, until);
                continue;
            }
            let view: ProbeView = self.store.record_probe(&record, self.config.lost_after).await?;
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

    /// Deletes, at most hourly, probes that weigh next to nothing, and the levels (and
    /// attempts at them) of pieces no longer ordered.
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

    /// The replicas due and not under way, with their pieces' levels, within the caps and the
    /// free slots.
    async fn choose(&mut self) -> Result<Vec<(ProbeTarget, Arc<PieceLevels>)>, StoreError> {
        let free = AT_ONCE.saturating_sub(self.in_flight.len());
        if free == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let every = u64::try_from(self.config.every.as_millis()).unwrap_or(u64::MAX);
        let mut due: Vec<(u64, ProbeTarget)> = self
            .store
            .probe_targets()
            .await?
            .into_iter()
            .filter(|t| self.config.urls.contains(t.provider))
            .filter(|t| !self.flying.contains_key(&t.deal_id))
            .filter(|t| !self.deferred.contains_key(&t.deal_id))
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
        let mut chosen: Vec<(ProbeTarget, Arc<PieceLevels>)> = Vec::new();
        for (_, target) in due {
            if chosen.len() >= free {
                break;
            }
            let minute_ago = Instant::now().checked_sub(Duration::from_secs(60));
            while self.recent.front().is_some_and(|(at, _)| minute_ago.is_some_and(|m| *at < m)) {
                self.recent.pop_front();
            }
            if self.recent.len() >= self.config.per_minute as usize {
                break;
            }
            let of_provider = self.recent.iter().filter(|(_, p)| *p == target.provider).count();
            let flying = self.flying.values().filter(|p| **p == target.provider).count()
                + chosen.iter().filter(|(t, _)| t.provider == target.provider).count();
            if of_provider >= self.config.per_provider_per_minute as usize
                || flying >= AT_ONCE_PER_PROVIDER
            {
                continue;
            }
            if !levels.contains_key(&target.piece_cid) {
                let kept = match self.store.piece_levels(&target.piece_cid).await {
                    Ok(kept) => kept.map(Arc::new),
                    Err(StoreError::Corrupt(why)) => {
                        warn!(piece = %target.piece_cid, %why, "probe levels unreadable; waiting");
                        self.unchecked.insert(target.piece_cid.clone(), later(self.config.every));
                        None
                    }
                    Err(e) => return Err(e),
                };
                levels.insert(target.piece_cid.clone(), kept);
            }
            // None yet: made by the levels task, not counted against the caps.
            let Some(Some(of_piece)) = levels.get(&target.piece_cid) else { continue };
            self.recent.push_back((Instant::now(), target.provider));
            let of_piece = Arc::clone(of_piece);
            chosen.push((target, of_piece));
        }
        Ok(chosen)
    }

    /// Whether any of up to [`CANARIES`] providers other than `failed` answers at all (`None`:
    /// there is no other).
    async fn anyone_answers(&self, failed: &HashSet<u64>) -> Option<bool> {
        let mut others: Vec<ProviderUrl> = self
            .config
            .urls
            .all()
            .into_iter()
            .filter(|(p, _)| !failed.contains(p))
            .map(|(_, url)| url)
            .collect();
        if others.is_empty() {
            return None;
        }
        others.shuffle(&mut rand::rng());
        let asks = others.into_iter().take(CANARIES).map(|url| {
            // Any answer, whatever its status, shows the oracle reaches the network.
            let http = self.http.of(&url).clone();
            let url = format!("{}/", url.url.trim_end_matches('/'));
            async move { http.head(url).send().await.is_ok() }
        });
        Some(futures::future::join_all(asks).await.into_iter().any(|answered| answered))
    }
}

/// Probes `target` at `url` against its piece's `levels`: a random span, and a plain CAR's
/// root block once the span checked. Only the span decides the replica's standing; a block
/// answered with the wrong bytes fails the sample the score reads; a block not served (the
/// gateway is optional) is only noted.
async fn probe(
    http: reqwest::Client,
    url: String,
    target: ProbeTarget,
    levels: Arc<PieceLevels>,
    head: u64,
) -> Probed {
    let index = rand::rng().random_range(0..levels.nodes.len().max(1) as u64);
    let span = read_span(&http, &url, &target.piece_cid, &levels, index).await;
    let (ok, unreachable, mut error, mut bytes, took) = match span {
        Ok((span, took)) => (true, false, None, span.len() as u64, took),
        Err(ProbeFailure::Unchecked(why)) => {
            warn!(piece = %target.piece_cid, %why, "probe: the oracle cannot check this read");
            return Probed {
                deal_id: target.deal_id,
                provider: target.provider,
                record: None,
                unreachable: false,
            };
        }
        Err(e @ ProbeFailure::Unreachable(_)) => {
            (false, true, Some(e.to_string()), 0, Duration::ZERO)
        }
        Err(e @ ProbeFailure::Provider(_)) => {
            (false, false, Some(e.to_string()), 0, Duration::ZERO)
        }
    };
    let mut block_ok = true;
    if ok
        && target.plain_car
        && let Ok(cid) = target.payload_cid.parse::<cid::Cid>()
    {
        let at = format!("{}/ipfs/{cid}?format=raw", url.trim_end_matches('/'));
        match fetch(&http, &at, None, MAX_BLOCK, "application/vnd.ipld.raw").await {
            Ok((block, _)) => {
                bytes += block.len() as u64;
                if let Err(e) = estuary_dag::car::verify(&cid, &block) {
                    block_ok = false;
                    error = Some(format!("block {cid}: {e}"));
                }
            }
            Err(e) => error = Some(format!("block (noted only): {}", e.context("block"))),
        }
    }
    let record = ProbeRecord {
        deal_id: target.deal_id,
        provider: target.provider,
        piece_cid: target.piece_cid,
        block: head,
        at_ms: now_ms(),
        ok,
        block_ok,
        // From the request to the span's last byte: neither the hashing nor the block.
        latency_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        bytes,
        error,
    };
    Probed { deal_id: record.deal_id, provider: record.provider, record: Some(record), unreachable }
}

/// Makes the levels of ordered pieces that have none, from their hot copies (kept while their
/// order may hold deals), apart from the probes: hashing a 32 GiB piece holds no probe up.
#[derive(Debug)]
pub struct LevelsMaker {
    store: Store,
    packed_dir: std::path::PathBuf,
    /// A piece that could not be made waits this long, doubling with each attempt (a day at
    /// most).
    retry: Duration,
    tick: Duration,
}

impl LevelsMaker {
    /// Makes levels from the hot copies in `packed_dir`, every `tick`.
    pub fn new(
        store: Store,
        packed_dir: std::path::PathBuf,
        retry: Duration,
        tick: Duration,
    ) -> Self {
        Self { store, packed_dir, retry, tick }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.pass() => match result {
                    Ok(0) => {}
                    Ok(made) => info!(made, "probe levels made"),
                    Err(e) => warn!(error = %e, "probe levels: a pass failed; retried"),
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.tick) => {}
            }
        }
    }

    /// One pass: up to four pieces due; returns how many were made.
    pub async fn pass(&self) -> Result<u32, StoreError> {
        let mut made = 0;
        for piece in self.store.pieces_without_levels(now_ms(), PREPARE_PER_PASS).await? {
            match self.make(&piece).await {
                Ok(levels) => {
                    self.store.put_piece_levels(&piece, &levels).await?;
                    made += 1;
                }
                Err(why) => {
                    let attempts = self.store.level_attempt(&piece, now_ms(), &why, |n| {
                        let ms = u64::try_from(self.retry.as_millis()).unwrap_or(u64::MAX);
                        ms.saturating_mul(1 << n.min(20)).min(86_400_000)
                    });
                    let attempts = attempts.await?;
                    warn!(%piece, %why, attempts, "probe levels: not made; tried again later");
                }
            }
        }
        Ok(made)
    }

    /// A piece's levels from its hot copy, checked against its commitment.
    async fn make(&self, piece_cid: &str) -> Result<PieceLevels, String> {
        let piece: PieceCid = piece_cid.parse().map_err(|e| format!("not a piece CID: {e}"))?;
        let padded = piece.padded_size().ok_or("a v1 piece CID has no size")?;
        let Some((_, mut stream)) = crate::api::piece_bytes(&self.store, &self.packed_dir, &piece)
            .await
            .map_err(|e| format!("the hot copy: {e}"))?
        else {
            return Err("no hot copy".into());
        };
        let unchecked = |e: ProbeError| e.to_string();
        let hashing = |e: tokio::task::JoinError| format!("hashing: {e}");
        let mut builder = LevelsBuilder::new(padded).map_err(unchecked)?;
        // Read in batches of 8 MiB, each hashed off the runtime's threads.
        let mut batch = Vec::with_capacity(HASH_BATCH);
        let mut done = false;
        while !done {
            match stream.next().await {
                Some(chunk) => {
                    batch.extend_from_slice(&chunk.map_err(|e| format!("the hot copy: {e}"))?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_providers_count_unless_nothing_answers_for_less_than_a_day() {
        let t0 = Instant::now();
        // Something answered (a probe, the chain's remote endpoint, another provider):
        // counted, and online.
        assert_eq!(unreachable_counts(true, None, Some(t0), t0), (true, None));
        assert_eq!(unreachable_counts(false, Some(true), Some(t0), t0), (true, None));
        // Nothing answers, or nobody else to ask: presumed offline, not counted, for a day.
        assert_eq!(unreachable_counts(false, None, None, t0), (false, Some(t0)));
        assert_eq!(unreachable_counts(false, Some(false), None, t0), (false, Some(t0)));
        let later = t0 + OFFLINE_MAX - Duration::from_secs(1);
        assert_eq!(unreachable_counts(false, Some(false), Some(t0), later), (false, Some(t0)));
        let day = t0 + OFFLINE_MAX;
        assert_eq!(unreachable_counts(false, None, Some(t0), day), (true, Some(t0)));
    }

    #[test]
    fn only_endpoints_off_this_host_and_network_show_it_up() {
        let all =
            |urls: &[&str]| all_remote(&urls.iter().map(|u| (*u).to_owned()).collect::<Vec<_>>());
        assert!(all(&["https://api.node.glif.io/rpc/v1"]));
        assert!(all(&["https://api.node.glif.io/rpc/v1", "http://8.8.8.8:1234"]));
        for local in [
            "http://127.0.0.1:8545",
            "http://localhost:1234/rpc/v1",
            "http://lotus:1234",
            "http://10.0.0.5:1234",
            "http://192.168.1.2:1234",
            "http://[::1]:1234",
            "http://[fd00::1]:1234",
            "not a url",
        ] {
            assert!(!all(&["https://api.node.glif.io/rpc/v1", local]), "{local}");
        }
        assert!(!all(&[]));
    }

    #[test]
    fn deadlines_far_ahead_do_not_overflow() {
        assert!(later(Duration::MAX) > Instant::now());
        assert!(later(Duration::from_secs(u64::MAX / 2)) > Instant::now());
    }
}
