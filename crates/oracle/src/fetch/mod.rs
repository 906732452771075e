//! Fetching a DAG, verified block by block, into a staging area of its own.
//!
//! ```text
//!  plan (pure): origins (checked: net) + configured gateways ──► [peer…, gateway…]
//!  run:  [hold off GC] local blockstore complete? ──► done
//!        each source in turn, into the job's staging area (blockstore::Staged):
//!          peer:    estuary_p2p::DfsFetch (the walker's Bitswap driver, blocks held locally
//!                   not asked for), at addresses the policy permits
//!          gateway: GET /ipfs/{cid}?format=car (no redirects; names resolved and checked)
//!                   ──► CarDecoder (each block against its CID)
//!        [hold off GC] a walk from the root through staging and store: the DAG is complete,
//!                   and each block it reaches is moved from staging into the store
//!        the staging area is removed: what the DAG does not reach never enters the store
//! ```
//!
//! A hostile origin that answers with valid blocks unrelated to the root fills only its own
//! staging area (within the byte budget) and leaves nothing behind; a failed fetch leaves
//! nothing either. Blocks over 2 MiB, DAGs over the byte or block budget, a source that sends
//! nothing for `no_progress`, a source slower than `min_throughput` once its `grace` is over (a
//! slow drip), and overall lateness (a time budget scaled to the request's size hint, capped at
//! `time_budget`) end the attempt with a typed reason; every walk goes through
//! [`estuary_dag::walk::Walker`] and its limits. A storage failure is a fault
//! ([`FetchError::Store`]), never taken for a missing block.
//!
//! The decision that a DAG is complete, and the move into the store, happen under a hold
//! against garbage collection ([`crate::gc::GcGate`]), so a collection never sweeps a block
//! between the walk that found it and the job becoming a pin. [`Fetcher::fetch_job_held`] hands
//! that hold over still held, for a caller that makes the blocks a pin's again afterwards (a
//! restore of a cold pin from the network, `deals::cold::ReadBacks`).

pub mod net;

use std::{sync::Arc, time::Duration};

use cid::Cid;
use estuary_dag::{
    BlockError,
    car::{CarDecoder, CarError, CarItem, CarLimits},
    walk::{self, WalkError, WalkLimits},
};
use libp2p::{Multiaddr, PeerId};
use tokio::time::{Instant, timeout, timeout_at};

use crate::{
    blockstore::{Blockstore, BlockstoreError, Staged},
    deals::cold::{ColdError, ColdReads},
    domain::FailureCode,
    gc::{GcGate, Hold},
    p2p::P2p,
    store::StoreError,
};

pub mod plan;

pub use net::NetPolicy;
pub use plan::gateway_of_multiaddr;

/// Blocks asked for at once from one Bitswap peer.
pub const BITSWAP_WINDOW: usize = 32;

/// Bounds on one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most bytes in the DAG (distinct blocks).
    pub max_dag_bytes: u64,
    /// Most distinct blocks in the DAG (what the walk remembers: 16 bytes each).
    pub max_dag_blocks: u64,
    /// Largest block.
    pub max_block: usize,
    /// Deepest level.
    pub max_depth: usize,
    /// Most links one block may have.
    pub max_links: usize,
    /// Most a fetch may take in all; a request that states its size gets less (see
    /// [`budget`](Self::budget)).
    pub time_budget: Duration,
    /// Longest wait for the next bytes from a source.
    pub no_progress: Duration,
    /// Bytes per second a source must average once its grace is over (0: no floor).
    pub min_throughput: u64,
    /// How long a source may take before the throughput floor applies (connecting, a slow
    /// start).
    pub grace: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_dag_bytes: 32 << 30,
            max_dag_blocks: 1 << 22,
            max_block: 2 << 20,
            max_depth: 4096,
            max_links: 1 << 16,
            time_budget: Duration::from_secs(3600),
            no_progress: Duration::from_secs(60),
            min_throughput: 8 << 10,
            grace: Duration::from_secs(30),
        }
    }
}

impl FetchLimits {
    /// The walk's limits for these bounds: the DAG's bytes and blocks, four link reads per
    /// block (a DAG whose links repeat one block pays for each), and a queue of at most 2^20
    /// CIDs — so a walk holds at most about 16 × `max_dag_blocks` + 100 MiB, whatever it is
    /// sent.
    pub fn walk(&self) -> WalkLimits {
        WalkLimits {
            max_depth: self.max_depth,
            max_links: self.max_links,
            max_blocks: self.max_dag_blocks,
            max_bytes: self.max_dag_bytes,
            max_visits: self.max_dag_blocks.saturating_mul(4).max(1 << 20),
            max_queued: 1 << 20,
        }
    }

    /// The time a fetch of a DAG of `size_hint` bytes may take: the grace, then twice the time
    /// the throughput floor needs for that many bytes — never more than
    /// [`time_budget`](Self::time_budget) (nor, without a hint, less).
    pub fn budget(&self, size_hint: Option<u64>) -> Duration {
        match (size_hint, self.min_throughput) {
            (Some(bytes), floor) if floor > 0 => {
                let secs = bytes.saturating_mul(2) / floor;
                self.time_budget.min(self.grace + Duration::from_secs(secs))
            }
            _ => self.time_budget,
        }
    }
}

/// What a fetch is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchJob<'a> {
    /// The root CID's bytes.
    pub cid: &'a [u8],
    /// Multiaddrs the request named (untrusted), tried before the configured gateways.
    pub origins: &'a [String],
    /// The DAG's size as the requester stated it.
    pub size_hint: Option<u64>,
    /// The staging area to fetch into (named after the job, so a retry finds what an earlier
    /// attempt of the same job left, and garbage collection knows whose it is).
    pub stage: String,
}

/// The staging area of a job: `job-` and 24 hex digits of the SHA-256 of its key.
pub fn stage_of(key: &crate::domain::JobKey) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.to_string().as_bytes());
    format!("job-{}", hex::encode(&digest[..12]))
}

/// A place a DAG was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceName {
    /// The oracle's own blockstore.
    Local,
    /// A trustless gateway.
    Gateway(String),
    /// A libp2p peer.
    Peer(PeerId),
    /// An origin that was not tried (as the request wrote it).
    Origin(String),
    /// The storage providers of the pieces holding the blocks of a pin whose blocks this
    /// oracle dropped (cold).
    Providers,
}

impl std::fmt::Display for SourceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Gateway(url) => f.write_str(url),
            Self::Peer(peer) => write!(f, "bitswap from {peer}"),
            Self::Origin(origin) => f.write_str(origin),
            Self::Providers => f.write_str("the storage providers (cold)"),
        }
    }
}

/// Why one source did not give the whole DAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceFailure {
    /// The gateway answered with another status.
    #[error("HTTP {0}")]
    Http(u16),
    /// The source could not be reached, or the connection failed.
    #[error("connection: {0}")]
    Connection(String),
    /// No bytes came for too long.
    #[error("no progress for {0:?}")]
    NoProgress(Duration),
    /// The source sent less than the throughput floor once its grace was over.
    #[error("too slow: {bytes} bytes in {secs} s, under the floor of {floor} bytes/s")]
    TooSlow {
        /// Bytes it sent.
        bytes: u64,
        /// Seconds it had.
        secs: u64,
        /// The floor.
        floor: u64,
    },
    /// The source sent what it had and a block was still missing.
    #[error("incomplete DAG: block {0} is missing")]
    Incomplete(Cid),
    /// The peer does not have a block, or the exchange failed.
    #[error("bitswap: {0}")]
    Bitswap(String),
    /// libp2p is off, so peers cannot be asked.
    #[error("libp2p is off")]
    P2pOff,
    /// The origin cannot be used.
    #[error("{0}")]
    Skipped(&'static str),
    /// Reading from the storage providers failed.
    #[error("reading from providers: {0}")]
    Providers(String),
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The requested bytes are not a CID.
    #[error("not a CID: {0}")]
    BadCid(#[from] cid::Error),
    /// No source has the whole DAG; each source's failure is listed.
    #[error("no source has the whole DAG: {}", list(.0))]
    Unavailable(Vec<(SourceName, SourceFailure)>),
    /// A source sent a block that does not match its CID, or a malformed CAR.
    #[error("bad data from {source_name}: {error}")]
    BadData {
        /// The source.
        source_name: SourceName,
        /// What was wrong.
        error: CarError,
    },
    /// A block of the DAG cannot be decoded (or uses a codec whose links cannot be followed).
    #[error("the DAG is malformed: {0}")]
    BadDag(Box<WalkError>),
    /// The DAG breaks a limit (bytes, depth, links, block size).
    #[error("the DAG exceeds a limit: {0}")]
    TooLarge(String),
    /// The time budget ran out.
    #[error("the fetch took longer than its budget of {0:?}")]
    OutOfTime(Duration),
    /// The blockstore failed: a fault of this oracle, not of the content.
    #[error(transparent)]
    Store(#[from] BlockstoreError),
    /// The database failed while the fetch waited to hold off garbage collection.
    #[error(transparent)]
    Database(#[from] StoreError),
}

/// An error and its causes on one line (reqwest's own message hides why it could not connect,
/// such as the resolver's refusal of an internal address).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn list(failures: &[(SourceName, SourceFailure)]) -> String {
    failures.iter().map(|(s, f)| format!("{s}: {f}")).collect::<Vec<_>>().join("; ")
}

impl FetchError {
    /// Whether trying again later cannot help: the content itself is bad or too large.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::BadCid(_) | Self::BadData { .. } | Self::BadDag(_) | Self::TooLarge(_))
    }

    /// Whether this oracle's own storage failed (the job is not to blame).
    pub fn is_fault(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Database(_))
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !self.is_permanent()
    }

    /// The code a failed request reports on chain.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::BadDag(e) if matches!(**e, WalkError::UnsupportedCodec { .. }) => {
                FailureCode::Unsupported
            }
            Self::BadCid(_) | Self::BadData { .. } | Self::BadDag(_) => FailureCode::InvalidContent,
            Self::TooLarge(_) => FailureCode::TooLarge,
            Self::OutOfTime(_) => FailureCode::Timeout,
            Self::Unavailable(_) => FailureCode::NotFound,
            Self::Store(_) | Self::Database(_) => FailureCode::Internal,
        }
    }
}

/// What a successful fetch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchStats {
    /// Distinct blocks in the DAG.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Fetches DAGs into a blockstore.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// For origins: names resolved and checked against the policy, no redirects.
    origin_client: reqwest::Client,
    /// For the configured gateways: no redirects.
    gateway_client: reqwest::Client,
    gateways: Vec<String>,
    limits: FetchLimits,
    policy: Arc<NetPolicy>,
    p2p: Option<P2p>,
    gate: Option<GcGate>,
    cold: Option<Arc<ColdReads>>,
}

/// How one source's attempt ended.
enum Attempt {
    /// The source sent what it had; a walk tells whether the DAG is complete.
    Done,
    Failed(SourceFailure),
}

/// Why a walk reading from providers stopped at a block.
#[derive(Debug, thiserror::Error)]
enum ColdWalk {
    /// Its share of the fetch's budget ran out.
    #[error("out of its share of the fetch's time")]
    OutOfTime,
    /// A block read made no progress for the fetch's `no_progress`.
    #[error("no progress")]
    NoProgress,
    /// The fetch was dropped (its job cancelled or moved on).
    #[error("the fetch was dropped")]
    Dropped,
    /// A block over the fetch's limit.
    #[error("a block of {len} bytes, more than {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// This oracle's blockstore failed.
    #[error(transparent)]
    Store(BlockstoreError),
    /// The read from providers failed.
    #[error(transparent)]
    Cold(ColdError),
}

/// A source's pace: its bytes since it started, against the throughput floor.
struct Pace {
    started: Instant,
    bytes: u64,
}

impl Pace {
    fn new() -> Self {
        Self { started: Instant::now(), bytes: 0 }
    }

    /// When the source falls under the floor if nothing more arrives.
    fn due(&self, limits: &FetchLimits) -> Option<Instant> {
        (limits.min_throughput > 0).then(|| {
            let earned = Duration::from_secs(self.bytes / limits.min_throughput);
            self.started + limits.grace.max(earned)
        })
    }

    fn too_slow(&self, limits: &FetchLimits) -> SourceFailure {
        SourceFailure::TooSlow {
            bytes: self.bytes,
            secs: self.started.elapsed().as_secs(),
            floor: limits.min_throughput,
        }
    }
}

/// Removes a staging area: [`remove`](Self::remove) when the fetch ends, or on drop when it was
/// stopped (its task aborted).
struct StageGuard<S: Blockstore> {
    store: Arc<S>,
    stage: String,
}

impl<S: Blockstore> StageGuard<S> {
    async fn remove(mut self) -> Result<(), FetchError> {
        let (store, stage) = (Arc::clone(&self.store), std::mem::take(&mut self.stage));
        tokio::task::spawn_blocking(move || store.remove_stage(&stage))
            .await
            .expect("removing a staging area does not panic")?;
        Ok(())
    }
}

impl<S: Blockstore> Drop for StageGuard<S> {
    fn drop(&mut self) {
        if self.stage.is_empty() {
            return;
        }
        let (store, stage) = (Arc::clone(&self.store), std::mem::take(&mut self.stage));
        let remove = move || {
            if let Err(e) = store.remove_stage(&stage) {
                tracing::warn!(%stage, error = %e, "cannot remove a staging area; GC will");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

impl Fetcher {
    /// A fetcher using `gateways` (base URLs such as `http://127.0.0.1:8080`), with origins
    /// under the strict [`NetPolicy`].
    pub fn new(gateways: Vec<String>, limits: FetchLimits) -> Self {
        Self::with_policy(gateways, limits, NetPolicy::strict())
    }

    /// A fetcher whose origins may reach what `policy` permits.
    pub fn with_policy(gateways: Vec<String>, limits: FetchLimits, policy: NetPolicy) -> Self {
        let policy = Arc::new(policy);
        let origin_client = net::checked_client(Arc::clone(&policy))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("a client with a resolver and no redirects builds");
        let gateway_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with no redirects builds");
        Self {
            origin_client,
            gateway_client,
            gateways,
            limits,
            policy,
            p2p: None,
            gate: None,
            cold: None,
        }
    }

    /// Reads a DAG whose blocks this oracle dropped (a cold pin pinned again) from the
    /// storage providers of the pieces holding them, through `cold`, before any other source.
    #[must_use]
    pub fn with_cold(mut self, cold: Option<Arc<ColdReads>>) -> Self {
        self.cold = cold;
        self
    }

    /// Fetches from the peers named by `/p2p/` origins over Bitswap, through `p2p`.
    #[must_use]
    pub fn with_p2p(mut self, p2p: P2p) -> Self {
        self.p2p = Some(p2p);
        self
    }

    /// Decides completeness and moves blocks into the store only while holding off garbage
    /// collection through `gate` (without one, nothing else collects the store).
    #[must_use]
    pub fn with_gc_gate(mut self, gate: GcGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The same fetcher with no configured gateways: a job's own origins only.
    #[must_use]
    pub fn without_gateways(mut self) -> Self {
        self.gateways.clear();
        self
    }

    /// The bounds this fetcher works within.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// The gate against garbage collection, if the fetcher has one.
    pub fn gate(&self) -> Option<&GcGate> {
        self.gate.as_ref()
    }

    /// Fetches the DAG under `cid` (binary) into `store` and proves it complete, trying
    /// `origins` (multiaddrs) before the configured gateways, through a staging area of its own.
    pub async fn fetch<S: Blockstore>(
        &self,
        cid: &[u8],
        origins: &[String],
        store: &Arc<S>,
    ) -> Result<FetchStats, FetchError> {
        let stage = format!("fetch-{}", hex::encode(rand::random::<[u8; 12]>()));
        self.fetch_job(&FetchJob { cid, origins, size_hint: None, stage }, store).await
    }

    /// Fetches `job`'s DAG into `store`: into its staging area first, then — once a walk from
    /// the root finds it complete — the blocks the DAG reaches are moved into the store. The
    /// staging area is removed however the fetch ends.
    pub async fn fetch_job<S: Blockstore>(
        &self,
        job: &FetchJob<'_>,
        store: &Arc<S>,
    ) -> Result<FetchStats, FetchError> {
        let (stats, hold) = self.fetch_inner(job, store, false).await?;
        // Still held only when the DAG was here already (nothing was staged).
        if let Some(hold) = hold {
            hold.release().await?;
        }
        Ok(stats)
    }

    /// [`Self::fetch_job`], returning still held the hold against garbage collection under
    /// which the DAG was found complete and moved into the store (`None` without a gate): the
    /// caller makes the blocks part of what collection keeps before it releases it (a restore
    /// marks a cold pin's blocks hot).
    pub async fn fetch_job_held<S: Blockstore>(
        &self,
        job: &FetchJob<'_>,
        store: &Arc<S>,
    ) -> Result<(FetchStats, Option<Hold>), FetchError> {
        self.fetch_inner(job, store, true).await
    }

    /// The fetch; with `keep`, the hold comes back still held, else it is released before the
    /// staging area is removed (so a collection waits for the DAG's move only, not the
    /// removal of what a source staged beside it).
    async fn fetch_inner<S: Blockstore>(
        &self,
        job: &FetchJob<'_>,
        store: &Arc<S>,
        keep: bool,
    ) -> Result<(FetchStats, Option<Hold>), FetchError> {
        let root = Cid::try_from(job.cid)?;
        let budget = self.limits.budget(job.size_hint);
        let deadline = Instant::now() + budget;
        let mut failures = Vec::new();
        // Already here (uploaded, or pinned before)?
        match self.settle(root, store, None, &job.stage).await? {
            Ok(stats) => return Ok(stats),
            Err(missing) => failures.push((SourceName::Local, SourceFailure::Incomplete(missing))),
        }
        let cleanup = StageGuard { store: Arc::clone(store), stage: job.stage.clone() };
        let mut fetched = self.fetch_sources(job, root, store, deadline, budget, failures).await;
        if !keep
            && let Ok((_, hold)) = &mut fetched
            && let Some(hold) = hold.take()
        {
            hold.release().await?;
        }
        cleanup.remove().await?;
        fetched
    }

    /// Tries each source in turn into `job`'s staging area, until one gives the whole DAG.
    async fn fetch_sources<S: Blockstore>(
        &self,
        job: &FetchJob<'_>,
        root: Cid,
        store: &Arc<S>,
        deadline: Instant,
        budget: Duration,
        mut failures: Vec<(SourceName, SourceFailure)>,
    ) -> Result<(FetchStats, Option<Hold>), FetchError> {
        let staged = Arc::new(Staged::new(Arc::clone(store), job.stage.clone()));
        // A pin whose blocks went cold: read back from the providers, each span checked against
        // its piece and each block against its CID, before the network is asked.
        if let Some(cold) = &self.cold
            && cold.holds(&root).await?
        {
            match self.try_cold(cold, root, &staged, deadline).await? {
                Attempt::Done => match self.settle(root, store, Some(&staged), &job.stage).await? {
                    Ok(stats) => return Ok(stats),
                    Err(missing) => {
                        failures.push((SourceName::Providers, SourceFailure::Incomplete(missing)));
                    }
                },
                Attempt::Failed(why) => failures.push((SourceName::Providers, why)),
            }
        }
        let plan = plan::plan(job.origins, &self.gateways, &self.policy);
        for (origin, why) in &plan.skipped {
            tracing::debug!(%origin, why, "origin skipped");
            failures.push((SourceName::Origin(origin.clone()), SourceFailure::Skipped(why)));
        }
        for source in plan.sources {
            let (name, attempt) = match source {
                plan::Origin::Peer { peer, addrs } => {
                    let attempt = match &self.p2p {
                        Some(p2p) => {
                            self.try_bitswap(p2p, peer, addrs, root, &staged, deadline, budget)
                                .await?
                        }
                        None => Attempt::Failed(SourceFailure::P2pOff),
                    };
                    (SourceName::Peer(peer), attempt)
                }
                plan::Origin::Gateway { url, trusted } => {
                    let attempt =
                        self.try_gateway(&url, trusted, root, &staged, deadline, budget).await?;
                    (SourceName::Gateway(url), attempt)
                }
            };
            match attempt {
                Attempt::Done => match self.settle(root, store, Some(&staged), &job.stage).await? {
                    Ok(stats) => return Ok(stats),
                    Err(missing) => failures.push((name, SourceFailure::Incomplete(missing))),
                },
                Attempt::Failed(why) => failures.push((name, why)),
            }
        }
        Err(FetchError::Unavailable(failures))
    }

    /// Under a hold against garbage collection: walks the DAG from the root, through the
    /// staging area if there is one, within the limits, moving every staged block it reaches
    /// into the store. The DAG's size and the hold, still held, if it is complete (the caller
    /// releases it); or the first block missing, the hold released.
    async fn settle<S: Blockstore>(
        &self,
        root: Cid,
        store: &Arc<S>,
        staged: Option<&Arc<Staged<S>>>,
        holder: &str,
    ) -> Result<Result<(FetchStats, Option<Hold>), Cid>, FetchError> {
        let hold = match &self.gate {
            Some(gate) => Some(gate.hold(holder).await?),
            None => None,
        };
        let store = Arc::clone(store);
        let stage = staged.map(|s| s.stage.clone());
        let limits = self.limits.walk();
        let walked = tokio::task::spawn_blocking(move || {
            let source = estuary_dag::source::from_fn(|cid: &Cid| {
                let found = match &stage {
                    Some(stage) => match store.get_staged(stage, cid) {
                        Ok(Some(data)) => match store.promote(stage, cid) {
                            Ok(()) => Ok(Some(data)),
                            Err(e) => Err(e),
                        },
                        Ok(None) => store.get(cid),
                        Err(e) => Err(e),
                    },
                    None => store.get(cid),
                };
                match found {
                    Ok(Some(data)) => Ok(data),
                    Ok(None) => Err(BlockError::Missing(*cid)),
                    Err(e) => Err(BlockError::Io { cid: *cid, source: Box::new(e) }),
                }
            });
            walk::dfs(root, limits, source, |_, _| {})
        })
        .await
        .expect("a walk over the blockstore does not panic");
        let e = match walked {
            Ok(stats) => {
                return Ok(Ok((FetchStats { blocks: stats.blocks, bytes: stats.bytes }, hold)));
            }
            Err(e) => e,
        };
        if let Some(hold) = hold {
            hold.release().await?;
        }
        match e {
            WalkError::Block(BlockError::Missing(cid) | BlockError::Corrupt(cid)) => Ok(Err(cid)),
            WalkError::Block(BlockError::Io { source, .. }) => {
                Err(FetchError::Store(BlockstoreError::Io(std::io::Error::other(source))))
            }
            e if e.is_malformed() => Err(FetchError::BadDag(Box::new(e))),
            e => Err(FetchError::TooLarge(e.to_string())),
        }
    }

    /// Walks the DAG under `root` depth first, reading each block not already here from the
    /// storage providers of a piece holding it ([`ColdReads::block_to_keep`]: its spans checked
    /// against the piece, the block against its CID) into the staging area.
    /// - It reads with the slot read-backs and restores share, waited for: never one of the
    ///   reads the gateway's and Bitswap's clients are served with.
    /// - It has half of what is left of the fetch's budget, so the network can still be asked,
    ///   and each block read `no_progress`; running out of either is a failed attempt.
    /// - It stops at the next block once the fetch is dropped (the walk runs on the blocking
    ///   pool, which cannot be aborted): a cancelled job leaves no read behind.
    async fn try_cold<S: Blockstore>(
        &self,
        cold: &Arc<ColdReads>,
        root: Cid,
        staged: &Arc<Staged<S>>,
        deadline: Instant,
    ) -> Result<Attempt, FetchError> {
        let now = Instant::now();
        let until = now + deadline.saturating_duration_since(now) / 2;
        let (cold, staged) = (Arc::clone(cold), Arc::clone(staged));
        let (limits, max_block) = (self.limits.walk(), self.limits.max_block);
        let no_progress = self.limits.no_progress;
        let handle = tokio::runtime::Handle::current();
        let dropped = tokio_util::sync::CancellationToken::new();
        let _stop_when_dropped = dropped.clone().drop_guard();
        let walked = tokio::task::spawn_blocking(move || {
            let source = estuary_dag::source::from_fn(|cid: &Cid| {
                let io = |e: ColdWalk| BlockError::Io { cid: *cid, source: Box::new(e) };
                match staged.get(cid) {
                    Ok(Some(data)) => return Ok(data),
                    Ok(None) => {}
                    Err(e) => return Err(io(ColdWalk::Store(e))),
                }
                let read = handle.block_on(async {
                    let by = until.min(Instant::now() + no_progress);
                    tokio::select! {
                        () = dropped.cancelled() => Err(ColdWalk::Dropped),
                        read = timeout_at(by, cold.block_to_keep(cid)) => match read {
                            Err(_) if by == until => Err(ColdWalk::OutOfTime),
                            Err(_) => Err(ColdWalk::NoProgress),
                            Ok(read) => read.map_err(ColdWalk::Cold),
                        },
                    }
                });
                match read {
                    Ok(Some(data)) if data.len() > max_block => {
                        Err(io(ColdWalk::TooLarge { len: data.len(), max: max_block }))
                    }
                    Ok(Some(data)) => {
                        staged.put_verified(cid, &data).map_err(|e| io(ColdWalk::Store(e)))?;
                        Ok(data)
                    }
                    Ok(None) => Err(BlockError::Missing(*cid)),
                    Err(e) => Err(io(e)),
                }
            });
            walk::dfs(root, limits, source, |_, _| {})
        })
        .await
        .expect("a walk reading from providers does not panic");
        let e = match walked {
            Ok(_) => return Ok(Attempt::Done),
            Err(e) => e,
        };
        let failed = |why: String| Ok(Attempt::Failed(SourceFailure::Providers(why)));
        match e {
            WalkError::Block(BlockError::Missing(cid) | BlockError::Corrupt(cid)) => {
                Ok(Attempt::Failed(SourceFailure::Incomplete(cid)))
            }
            WalkError::Block(BlockError::Io { cid, source }) => {
                match source.downcast::<ColdWalk>().map(|e| *e) {
                    Ok(ColdWalk::Store(e)) => Err(FetchError::Store(e)),
                    Ok(ColdWalk::Cold(ColdError::Store(e))) => Err(FetchError::Database(e)),
                    Ok(ColdWalk::TooLarge { len, max }) => Err(FetchError::TooLarge(format!(
                        "block {cid} has {len} bytes, more than {max}"
                    ))),
                    Ok(ColdWalk::NoProgress) => {
                        Ok(Attempt::Failed(SourceFailure::NoProgress(no_progress)))
                    }
                    Ok(e) => failed(e.to_string()),
                    Err(other) => failed(other.to_string()),
                }
            }
            e if e.is_malformed() => Err(FetchError::BadDag(Box::new(e))),
            e => Err(FetchError::TooLarge(e.to_string())),
        }
    }

    async fn try_gateway<S: Blockstore>(
        &self,
        gateway: &str,
        trusted: bool,
        root: Cid,
        store: &Arc<S>,
        deadline: Instant,
        budget: Duration,
    ) -> Result<Attempt, FetchError> {
        let url = format!("{}/ipfs/{root}?format=car&dag-scope=all", gateway.trim_end_matches('/'));
        let client = if trusted { &self.gateway_client } else { &self.origin_client };
        let request = client.get(&url).header("accept", "application/vnd.ipld.car");
        let mut pace = Pace::new();
        let send = async { request.send().await.map_err(|e| chain(&e)) };
        let mut response = match self.wait(send, deadline, budget, &pace).await? {
            Ok(r) => r,
            Err(why) => return Ok(Attempt::Failed(why)),
        };
        if !response.status().is_success() {
            return Ok(Attempt::Failed(SourceFailure::Http(response.status().as_u16())));
        }
        let mut decoder =
            CarDecoder::new(CarLimits { max_block: self.limits.max_block, ..CarLimits::default() });
        let source_name = || SourceName::Gateway(gateway.to_owned());
        let mut bytes = 0u64;
        loop {
            let next = async { response.chunk().await.map_err(|e| chain(&e)) };
            let chunk = match self.wait(next, deadline, budget, &pace).await? {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(why) => return Ok(Attempt::Failed(why)),
            };
            pace.bytes += chunk.len() as u64;
            decoder.push(&chunk);
            while let Some(item) = decoder
                .next_item()
                .map_err(|error| FetchError::BadData { source_name: source_name(), error })?
            {
                if let CarItem::Block(block) = item {
                    bytes += block.data.len() as u64;
                    if bytes > self.limits.max_dag_bytes {
                        return Err(FetchError::TooLarge(format!(
                            "more than {} bytes",
                            self.limits.max_dag_bytes
                        )));
                    }
                    let store = Arc::clone(store);
                    tokio::task::spawn_blocking(move || {
                        store.put_verified(&block.cid, &block.data)
                    })
                    .await
                    .expect("a block write does not panic")?;
                }
            }
        }
        decoder
            .finish()
            .map_err(|error| FetchError::BadData { source_name: source_name(), error })?;
        Ok(Attempt::Done)
    }

    /// Fetches the DAG under `root` from `peer` over Bitswap, depth first, up to
    /// [`BITSWAP_WINDOW`] blocks asked for at once and blocks held locally not asked for; each
    /// block is verified by the Bitswap layer (accepted only under the CID its bytes hash to)
    /// and stored as it comes. The walk reaches every block, so a finished attempt is a
    /// complete DAG.
    #[allow(clippy::too_many_arguments)]
    async fn try_bitswap<S: Blockstore>(
        &self,
        p2p: &P2p,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        root: Cid,
        store: &Arc<S>,
        deadline: Instant,
        budget: Duration,
    ) -> Result<Attempt, FetchError> {
        let had = addrs.len();
        let (addrs, refused) = net::dialable(addrs, &self.policy).await;
        for (addr, why) in &refused {
            tracing::debug!(%peer, %addr, why, "peer address refused");
        }
        if had > 0 && addrs.is_empty() {
            return Ok(Attempt::Failed(SourceFailure::Skipped(
                "every address of the peer was refused (internal, or unresolvable)",
            )));
        }
        let mut pace = Pace::new();
        if let Err(why) = self.wait(p2p.connect(peer, addrs), deadline, budget, &pace).await? {
            return Ok(Attempt::Failed(why));
        }
        let local = Arc::clone(store);
        let lookup: estuary_p2p::LocalLookup = Box::new(move |cid| {
            let store = Arc::clone(&local);
            Box::pin(async move {
                tokio::task::spawn_blocking(move || store.get(&cid))
                    .await
                    .expect("a block read does not panic")
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
        });
        let mut fetch = estuary_p2p::DfsFetch::new(
            p2p.bitswap().clone(),
            peer,
            root,
            BITSWAP_WINDOW,
            self.limits.walk(),
        )
        .with_local(lookup);
        loop {
            let next = async { Ok::<_, std::convert::Infallible>(fetch.next().await) };
            let item = match self.wait(next, deadline, budget, &pace).await? {
                Ok(Some(item)) => item,
                // The walk reached every block: the settling walk finds the DAG complete.
                Ok(None) => return Ok(Attempt::Done),
                Err(why) => return Ok(Attempt::Failed(why)),
            };
            let (cid, data, from_peer) = match item {
                Ok(block) => block,
                Err(estuary_p2p::DfsError::Bitswap(e)) => {
                    return Ok(Attempt::Failed(SourceFailure::Bitswap(e.to_string())));
                }
                Err(estuary_p2p::DfsError::Walk(e)) if e.is_malformed() => {
                    return Err(FetchError::BadDag(e));
                }
                Err(estuary_p2p::DfsError::Walk(e)) => {
                    return Err(FetchError::TooLarge(e.to_string()));
                }
                Err(estuary_p2p::DfsError::Local(e)) => {
                    return Err(FetchError::Store(BlockstoreError::Io(std::io::Error::other(e))));
                }
                Err(e) => return Ok(Attempt::Failed(SourceFailure::Bitswap(e.to_string()))),
            };
            if data.len() > self.limits.max_block {
                return Err(FetchError::TooLarge(format!(
                    "block {cid} has {} bytes, more than {}",
                    data.len(),
                    self.limits.max_block
                )));
            }
            if from_peer {
                pace.bytes += data.len() as u64;
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.put_verified(&cid, &data))
                    .await
                    .expect("a block write does not panic")?;
            }
        }
    }

    /// Awaits `fut` within the no-progress timeout, the source's throughput floor and the
    /// fetch's deadline: its value, or why the source failed; past the deadline, the whole
    /// fetch fails.
    async fn wait<T, E: std::fmt::Display>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
        deadline: Instant,
        budget: Duration,
        pace: &Pace,
    ) -> Result<Result<T, SourceFailure>, FetchError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(FetchError::OutOfTime(budget));
        }
        let due = pace.due(&self.limits);
        if due.is_some_and(|due| now >= due) {
            return Ok(Err(pace.too_slow(&self.limits)));
        }
        let mut limit = self.limits.no_progress.min(deadline - now);
        if let Some(due) = due {
            limit = limit.min(due - now);
        }
        match timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(e)) => Ok(Err(SourceFailure::Connection(e.to_string()))),
            Err(_) if Instant::now() >= deadline => Err(FetchError::OutOfTime(budget)),
            Err(_) if due.is_some_and(|due| Instant::now() >= due) => {
                Ok(Err(pace.too_slow(&self.limits)))
            }
            Err(_) => Ok(Err(SourceFailure::NoProgress(self.limits.no_progress))),
        }
    }
}
