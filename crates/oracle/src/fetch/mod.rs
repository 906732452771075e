//! Fetching a DAG, verified block by block.
//!
//! ```text
//!  plan (pure): origins + configured gateways ──► [peer…, gateway…]
//!  run:  local blockstore complete? ──► each source in turn:
//!          peer:    estuary_p2p::DfsFetch (the walker's Bitswap driver, blocks held locally
//!                   not asked for) ──► blockstore
//!          gateway: GET /ipfs/{cid}?format=car ──► CarDecoder (each block against its CID)
//!                   ──► blockstore, then a walk of the store proves the DAG complete
//! ```
//!
//! Blocks over 2 MiB, DAGs over the byte budget, slow drips (no byte for `no_progress`) and
//! overall lateness (`time_budget`) end the attempt with a typed reason; every walk goes through
//! [`estuary_dag::walk::Walker`] and its limits. A storage failure is a fault
//! ([`FetchError::Store`]), never taken for a missing block.

use std::{sync::Arc, time::Duration};

use cid::Cid;
use estuary_dag::{
    BlockError,
    car::{CarDecoder, CarError, CarItem, CarLimits},
    walk::{self, WalkError, WalkLimits},
};
use libp2p::{Multiaddr, PeerId};
use tokio::time::{Instant, timeout};

use crate::{
    blockstore::{Blockstore, BlockstoreError, Source},
    domain::FailureCode,
    p2p::P2p,
};

pub mod plan;

pub use plan::gateway_of_multiaddr;

/// Blocks asked for at once from one Bitswap peer.
pub const BITSWAP_WINDOW: usize = 32;

/// Bounds on one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most bytes in the DAG (distinct blocks).
    pub max_dag_bytes: u64,
    /// Largest block.
    pub max_block: usize,
    /// Deepest level.
    pub max_depth: usize,
    /// Most links one block may have.
    pub max_links: usize,
    /// Whole-fetch time budget.
    pub time_budget: Duration,
    /// Longest wait for the next bytes from a source.
    pub no_progress: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_dag_bytes: 32 << 30,
            max_block: 2 << 20,
            max_depth: 4096,
            max_links: 1 << 16,
            time_budget: Duration::from_secs(3600),
            no_progress: Duration::from_secs(60),
        }
    }
}

impl FetchLimits {
    /// The walk's limits for these bounds.
    pub fn walk(&self) -> WalkLimits {
        WalkLimits {
            max_depth: self.max_depth,
            max_links: self.max_links,
            max_blocks: u64::MAX,
            max_bytes: self.max_dag_bytes,
            // Every link of a DAG within the byte budget, once per block: a generous bound that
            // still stops a DAG of links to one block.
            max_visits: (self.max_dag_bytes / 34).max(1 << 20),
        }
    }
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
}

impl std::fmt::Display for SourceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Gateway(url) => f.write_str(url),
            Self::Peer(peer) => write!(f, "bitswap from {peer}"),
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
        matches!(self, Self::Store(_))
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
            Self::Store(_) => FailureCode::Internal,
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
    client: reqwest::Client,
    gateways: Vec<String>,
    limits: FetchLimits,
    p2p: Option<P2p>,
}

/// How one source's attempt ended.
enum Attempt {
    /// The source sent what it had; a walk of the store tells whether the DAG is complete.
    Done,
    /// The DAG is complete: the attempt walked all of it.
    Complete(FetchStats),
    Failed(SourceFailure),
}

impl Fetcher {
    /// A fetcher using `gateways` (base URLs such as `http://127.0.0.1:8080`).
    pub fn new(gateways: Vec<String>, limits: FetchLimits) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("a client with only a connect timeout builds");
        Self { client, gateways, limits, p2p: None }
    }

    /// Fetches from the peers named by `/p2p/` origins over Bitswap, through `p2p`.
    #[must_use]
    pub fn with_p2p(mut self, p2p: P2p) -> Self {
        self.p2p = Some(p2p);
        self
    }

    /// Fetches the DAG under `cid` (binary) into `store` and proves it complete, trying the
    /// request's own `origins` (multiaddrs) before the configured gateways.
    pub async fn fetch<S: Blockstore>(
        &self,
        cid: &[u8],
        origins: &[String],
        store: &Arc<S>,
    ) -> Result<FetchStats, FetchError> {
        let root = Cid::try_from(cid)?;
        let deadline = Instant::now() + self.limits.time_budget;
        let mut failures = Vec::new();
        // Already here (uploaded, or pinned before)?
        match self.complete(root, store).await? {
            Ok(stats) => return Ok(stats),
            Err(missing) => failures.push((SourceName::Local, SourceFailure::Incomplete(missing))),
        }
        let plan = plan::plan(origins, &self.gateways);
        for (origin, why) in plan.skipped {
            tracing::debug!(%origin, why, "origin skipped");
        }
        for source in plan.sources {
            let (name, attempt) = match source {
                plan::Origin::Peer { peer, addrs } => {
                    let attempt = match &self.p2p {
                        Some(p2p) => {
                            self.try_bitswap(p2p, peer, addrs, root, store, deadline).await?
                        }
                        None => Attempt::Failed(SourceFailure::P2pOff),
                    };
                    (SourceName::Peer(peer), attempt)
                }
                plan::Origin::Gateway(url) => {
                    let attempt = self.try_gateway(&url, root, store, deadline).await?;
                    (SourceName::Gateway(url), attempt)
                }
            };
            match attempt {
                Attempt::Complete(stats) => return Ok(stats),
                Attempt::Done => match self.complete(root, store).await? {
                    Ok(stats) => return Ok(stats),
                    Err(missing) => failures.push((name, SourceFailure::Incomplete(missing))),
                },
                Attempt::Failed(why) => failures.push((name, why)),
            }
        }
        Err(FetchError::Unavailable(failures))
    }

    /// Walks the DAG from the store within the limits: its size if complete, or the first
    /// block missing.
    async fn complete<S: Blockstore>(
        &self,
        root: Cid,
        store: &Arc<S>,
    ) -> Result<Result<FetchStats, Cid>, FetchError> {
        let store = Arc::clone(store);
        let limits = self.limits.walk();
        let walked = tokio::task::spawn_blocking(move || {
            walk::dfs(root, limits, Source(&*store), |_, _| {})
        })
        .await
        .expect("a walk over the blockstore does not panic");
        match walked {
            Ok(stats) => Ok(Ok(FetchStats { blocks: stats.blocks, bytes: stats.bytes })),
            Err(e) => match e {
                WalkError::Block(BlockError::Missing(cid) | BlockError::Corrupt(cid)) => {
                    Ok(Err(cid))
                }
                WalkError::Block(BlockError::Io { source, .. }) => {
                    Err(FetchError::Store(BlockstoreError::Io(std::io::Error::other(source))))
                }
                e if e.is_malformed() => Err(FetchError::BadDag(Box::new(e))),
                e => Err(FetchError::TooLarge(e.to_string())),
            },
        }
    }

    async fn try_gateway<S: Blockstore>(
        &self,
        gateway: &str,
        root: Cid,
        store: &Arc<S>,
        deadline: Instant,
    ) -> Result<Attempt, FetchError> {
        let url = format!("{}/ipfs/{root}?format=car&dag-scope=all", gateway.trim_end_matches('/'));
        let request = self.client.get(&url).header("accept", "application/vnd.ipld.car");
        let mut response = match self.wait(request.send(), deadline).await? {
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
            let chunk = match self.wait(response.chunk(), deadline).await? {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(why) => return Ok(Attempt::Failed(why)),
            };
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
    async fn try_bitswap<S: Blockstore>(
        &self,
        p2p: &P2p,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        root: Cid,
        store: &Arc<S>,
        deadline: Instant,
    ) -> Result<Attempt, FetchError> {
        if let Err(why) = self.wait(p2p.connect(peer, addrs), deadline).await? {
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
            let item = match self.wait(next, deadline).await? {
                Ok(Some(item)) => item,
                Ok(None) => {
                    let stats = fetch.stats();
                    return Ok(Attempt::Complete(FetchStats {
                        blocks: stats.blocks,
                        bytes: stats.bytes,
                    }));
                }
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
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.put_verified(&cid, &data))
                    .await
                    .expect("a block write does not panic")?;
            }
        }
    }

    /// Awaits `fut` within the no-progress timeout and the overall deadline: its value, or why
    /// the source failed; past the deadline, the whole fetch fails.
    async fn wait<T, E: std::fmt::Display>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
        deadline: Instant,
    ) -> Result<Result<T, SourceFailure>, FetchError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(FetchError::OutOfTime(self.limits.time_budget));
        }
        let limit = self.limits.no_progress.min(deadline - now);
        match timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(e)) => Ok(Err(SourceFailure::Connection(e.to_string()))),
            Err(_) if Instant::now() >= deadline => {
                Err(FetchError::OutOfTime(self.limits.time_budget))
            }
            Err(_) => Ok(Err(SourceFailure::NoProgress(self.limits.no_progress))),
        }
    }
}
