//! Fetching a DAG, verified block by block.
//!
//! Sources, in order: the blockstore itself (a CAR uploaded to this oracle is already there),
//! then each trustless gateway (`GET /ipfs/{cid}?format=car&dag-scope=all`). Every block is
//! checked against its CID as it arrives (the CAR decoder does it), blocks over 2 MiB, DAGs over
//! the byte budget, slow drips (no byte for `no_progress`) and overall lateness (`time_budget`)
//! end the attempt with a typed reason; at the end a bounded walk from the root proves the DAG
//! is complete.

use std::{sync::Arc, time::Duration};

use cid::Cid;
use estuary_dag::{
    car::{CarDecoder, CarError, CarItem, CarLimits},
    walk::{WalkError, WalkLimits, dfs_limited, links},
};
use futures::{StreamExt, stream::FuturesUnordered};
use libp2p::{Multiaddr, PeerId};
use tokio::time::{Instant, timeout};

use crate::{
    blockstore::{Blockstore, BlockstoreError},
    p2p::P2p,
};

/// Blocks asked for at once from one Bitswap peer.
pub const BITSWAP_WINDOW: usize = 32;

/// Bounds on one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most bytes in the DAG (distinct blocks).
    pub max_dag_bytes: u64,
    /// Largest block.
    pub max_block: usize,
    /// Deepest level and most links per block.
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

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The requested bytes are not a CID.
    #[error("not a CID: {0}")]
    BadCid(String),
    /// No source has the DAG (each source's failure is listed).
    #[error("no source has the whole DAG: {0}")]
    Unavailable(String),
    /// A source sent a block that does not match its CID, or a malformed CAR.
    #[error("bad data from {source_url}: {error}")]
    BadData {
        /// The source.
        source_url: String,
        /// What was wrong.
        error: CarError,
    },
    /// A block of the DAG cannot be decoded (or uses a codec whose links cannot be followed).
    #[error("the DAG is malformed: {0}")]
    BadDag(String),
    /// The DAG breaks a limit (bytes, depth, links).
    #[error("the DAG exceeds a limit: {0}")]
    TooLarge(String),
    /// The time budget ran out.
    #[error("the fetch took longer than its budget of {0:?}")]
    OutOfTime(Duration),
    /// Storing blocks failed.
    #[error(transparent)]
    Store(#[from] BlockstoreError),
}

impl FetchError {
    /// Whether trying again later cannot help: the content itself is bad or too large.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::BadCid(_) | Self::BadData { .. } | Self::BadDag(_) | Self::TooLarge(_))
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

/// Fetches DAGs from trustless gateways into a blockstore.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    gateways: Vec<String>,
    limits: FetchLimits,
    p2p: Option<P2p>,
}

enum Attempt {
    /// The source sent what it had; a walk of the store tells whether the DAG is complete.
    Done,
    /// The DAG is complete: the attempt walked all of it (so no second walk is needed).
    Complete(FetchStats),
    Failed(String),
}

impl Fetcher {
    /// A fetcher using `gateways` (base URLs such as `http://127.0.0.1:8080`).
    pub fn new(gateways: Vec<String>, limits: FetchLimits) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self { client, gateways, limits, p2p: None }
    }

    /// Fetches from the peers named by `/p2p/` origins over Bitswap, through `p2p`.
    #[must_use]
    pub fn with_p2p(mut self, p2p: P2p) -> Self {
        self.p2p = Some(p2p);
        self
    }

    /// Fetches the DAG under `cid` (binary) into `store` and proves it complete, trying the
    /// request's own `origins` (multiaddrs; those of HTTP gateways are used) before the
    /// configured gateways.
    pub async fn fetch<S: Blockstore>(
        &self,
        cid: &[u8],
        origins: &[String],
        store: &Arc<S>,
    ) -> Result<FetchStats, FetchError> {
        let root = Cid::try_from(cid).map_err(|e| FetchError::BadCid(e.to_string()))?;
        let deadline = Instant::now() + self.limits.time_budget;
        // Already here (uploaded, or pinned before)?
        let mut failures = Vec::new();
        match self.complete(root, store).await {
            Ok(stats) => return Ok(stats),
            Err(FetchError::Unavailable(missing)) => failures.push(format!("local: {missing}")),
            Err(e) => return Err(e),
        }
        let mut sources = Vec::new();
        let mut peers: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for origin in origins {
            if let Some(url) = gateway_of_multiaddr(origin) {
                if !sources.contains(&url) {
                    sources.push(url);
                }
                continue;
            }
            let Ok(mut addr) = origin.parse::<Multiaddr>() else {
                failures.push(format!("{origin}: not a multiaddr (skipped)"));
                continue;
            };
            let Some(peer) = estuary_p2p::peer_of(&addr) else {
                failures.push(format!("{origin}: names no peer (/p2p/…) (skipped)"));
                continue;
            };
            addr.pop();
            let i = match peers.iter().position(|(p, _)| *p == peer) {
                Some(i) => i,
                None => {
                    peers.push((peer, Vec::new()));
                    peers.len() - 1
                }
            };
            if !addr.is_empty() {
                peers[i].1.push(addr);
            }
        }
        for (peer, addrs) in peers {
            let attempt = match &self.p2p {
                Some(p2p) => self.try_bitswap(p2p, peer, addrs, root, store, deadline).await?,
                None => Attempt::Failed("libp2p is off".into()),
            };
            let name = format!("bitswap from {peer}");
            if let Some(stats) = self.settle(attempt, &name, root, store, &mut failures).await? {
                return Ok(stats);
            }
        }
        for gateway in &self.gateways {
            if !sources.contains(gateway) {
                sources.push(gateway.clone());
            }
        }
        for gateway in &sources {
            let attempt = self.try_gateway(gateway, root, store, deadline).await?;
            if let Some(stats) = self.settle(attempt, gateway, root, store, &mut failures).await? {
                return Ok(stats);
            }
        }
        Err(FetchError::Unavailable(failures.join("; ")))
    }

    /// After one source's attempt: the DAG if it is now complete, or its failure noted.
    async fn settle<S: Blockstore>(
        &self,
        attempt: Attempt,
        source: &str,
        root: Cid,
        store: &Arc<S>,
        failures: &mut Vec<String>,
    ) -> Result<Option<FetchStats>, FetchError> {
        match attempt {
            Attempt::Complete(stats) => Ok(Some(stats)),
            Attempt::Done => match self.complete(root, store).await {
                Ok(stats) => Ok(Some(stats)),
                Err(FetchError::Unavailable(missing)) => {
                    failures.push(format!("{source}: incomplete DAG, {missing}"));
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            Attempt::Failed(why) => {
                failures.push(format!("{source}: {why}"));
                Ok(None)
            }
        }
    }

    /// Walks the DAG from the store, within the limits.
    async fn complete<S: Blockstore>(
        &self,
        root: Cid,
        store: &Arc<S>,
    ) -> Result<FetchStats, FetchError> {
        let store = Arc::clone(store);
        let limits = WalkLimits {
            max_depth: self.limits.max_depth,
            max_links: self.limits.max_links,
            max_blocks: u64::MAX,
            max_bytes: self.limits.max_dag_bytes,
        };
        let walked = tokio::task::spawn_blocking(move || {
            let mut io_error = None;
            let result = dfs_limited(
                root,
                limits,
                |cid| match store.get(cid) {
                    Ok(block) => block,
                    Err(e) => {
                        io_error = Some(e);
                        None
                    }
                },
                |_, _| {},
            );
            (result, io_error)
        })
        .await
        .map_err(|e| FetchError::Unavailable(format!("walk task failed: {e}")))?;
        match walked {
            (_, Some(io)) => Err(io.into()),
            (Ok(stats), None) => Ok(FetchStats { blocks: stats.blocks, bytes: stats.bytes }),
            (Err(WalkError::Missing(cid)), None) => {
                Err(FetchError::Unavailable(format!("block {cid} is missing")))
            }
            (Err(e @ (WalkError::BadNode { .. } | WalkError::UnsupportedCodec { .. })), None) => {
                Err(FetchError::BadDag(e.to_string()))
            }
            (Err(e), None) => Err(FetchError::TooLarge(e.to_string())),
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
            Err(e) => return Ok(Attempt::Failed(e)),
        };
        if !response.status().is_success() {
            return Ok(Attempt::Failed(format!("HTTP {}", response.status())));
        }
        let mut decoder =
            CarDecoder::new(CarLimits { max_block: self.limits.max_block, ..CarLimits::default() });
        let mut bytes = 0u64;
        loop {
            let chunk = match self.wait(response.chunk(), deadline).await? {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => return Ok(Attempt::Failed(format!("connection: {e}"))),
            };
            decoder.push(&chunk);
            while let Some(item) = decoder
                .next_item()
                .map_err(|error| FetchError::BadData { source_url: url.clone(), error })?
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
                    .map_err(|e| BlockstoreError::Io(std::io::Error::other(e)))??;
                }
            }
        }
        decoder.finish().map_err(|error| FetchError::BadData { source_url: url, error })?;
        Ok(Attempt::Done)
    }

    /// Fetches the DAG under `root` from `peer` over Bitswap: breadth first, up to
    /// [`BITSWAP_WINDOW`] blocks asked for at once, each block verified (by the Bitswap layer:
    /// it is accepted only under the CID its bytes hash to) and stored before its links are
    /// followed, within the same limits as a gateway fetch. The walk reaches every block, so a
    /// finished attempt is a complete DAG, counted as [`Fetcher::complete`] counts it.
    async fn try_bitswap<S: Blockstore>(
        &self,
        p2p: &P2p,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        root: Cid,
        store: &Arc<S>,
        deadline: Instant,
    ) -> Result<Attempt, FetchError> {
        if let Err(e) = self.wait(p2p.connect(peer, addrs), deadline).await? {
            return Ok(Attempt::Failed(format!("cannot connect: {e}")));
        }
        let mut queue = std::collections::VecDeque::from([(root, 0usize)]);
        let mut seen = std::collections::HashSet::from([root]);
        let mut in_flight = FuturesUnordered::new();
        let (mut blocks, mut bytes) = (0u64, 0u64);
        loop {
            while in_flight.len() < BITSWAP_WINDOW
                && let Some((cid, depth)) = queue.pop_front()
            {
                let store = Arc::clone(store);
                let bitswap = p2p.bitswap().clone();
                in_flight.push(async move {
                    // An identity CID carries its bytes inline, as the walk reads them.
                    if cid.hash().code() == estuary_dag::block::IDENTITY {
                        return (cid, depth, Ok((cid.hash().digest().to_vec(), true)));
                    }
                    let held = tokio::task::spawn_blocking(move || store.get(&cid))
                        .await
                        .map_err(|e| BlockstoreError::Io(std::io::Error::other(e)));
                    let got = match held {
                        Ok(Ok(Some(data))) => Ok((data, true)),
                        Ok(Ok(None)) => bitswap.get(peer, cid).await.map(|d| (d, false)),
                        Ok(Err(e)) | Err(e) => return (cid, depth, Err(Err(e))),
                    };
                    (cid, depth, got.map_err(Ok))
                });
            }
            if in_flight.is_empty() {
                return Ok(Attempt::Complete(FetchStats { blocks, bytes }));
            }
            let next = async { Ok::<_, std::convert::Infallible>(in_flight.next().await) };
            let (cid, depth, got) = match self.wait(next, deadline).await? {
                Ok(Some(item)) => item,
                Ok(None) => return Ok(Attempt::Complete(FetchStats { blocks, bytes })),
                Err(e) => return Ok(Attempt::Failed(e)),
            };
            let (data, held) = match got {
                Ok(found) => found,
                Err(Ok(e)) => return Ok(Attempt::Failed(e.to_string())),
                Err(Err(e)) => return Err(e.into()),
            };
            if data.len() > self.limits.max_block {
                return Err(FetchError::TooLarge(format!(
                    "block {cid} has {} bytes, more than {}",
                    data.len(),
                    self.limits.max_block
                )));
            }
            blocks += 1;
            bytes += data.len() as u64;
            if bytes > self.limits.max_dag_bytes {
                return Err(FetchError::TooLarge(format!(
                    "more than {} bytes",
                    self.limits.max_dag_bytes
                )));
            }
            let links = links(&cid, &data).map_err(|e| FetchError::BadDag(e.to_string()))?;
            if links.len() > self.limits.max_links {
                return Err(FetchError::TooLarge(format!(
                    "block {cid} has {} links, more than {}",
                    links.len(),
                    self.limits.max_links
                )));
            }
            if !links.is_empty() && depth + 1 > self.limits.max_depth {
                return Err(FetchError::TooLarge(format!(
                    "deeper than {} levels",
                    self.limits.max_depth
                )));
            }
            if !held {
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.put_verified(&cid, &data))
                    .await
                    .map_err(|e| BlockstoreError::Io(std::io::Error::other(e)))??;
            }
            for link in links {
                if seen.insert(link) {
                    queue.push_back((link, depth + 1));
                }
            }
        }
    }

    /// Awaits `fut` within the no-progress timeout and the overall deadline.
    async fn wait<T, E: std::fmt::Display>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
        deadline: Instant,
    ) -> Result<Result<T, String>, FetchError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(FetchError::OutOfTime(self.limits.time_budget));
        }
        let limit = self.limits.no_progress.min(deadline - now);
        match timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(e)) => Ok(Err(e.to_string())),
            Err(_) if Instant::now() >= deadline => {
                Err(FetchError::OutOfTime(self.limits.time_budget))
            }
            Err(_) => Ok(Err(format!("no progress for {:?}", self.limits.no_progress))),
        }
    }
}

/// The base URL of a trustless gateway named by a multiaddr: `/ip4|ip6|dns|dns4|dns6/<host>/tcp/
/// <port>/http` (or `/https`, or `/tls/http`), optionally followed by `/p2p/<peer>`. Other
/// multiaddrs (libp2p transports) give `None`.
pub fn gateway_of_multiaddr(addr: &str) -> Option<String> {
    let parts: Vec<&str> = addr.strip_prefix('/')?.split('/').collect();
    let (host, rest) = match parts.as_slice() {
        ["ip4", ip, rest @ ..] => (ip.parse::<std::net::Ipv4Addr>().ok()?.to_string(), rest),
        ["ip6", ip, rest @ ..] => (format!("[{}]", ip.parse::<std::net::Ipv6Addr>().ok()?), rest),
        ["dns" | "dns4" | "dns6", name, rest @ ..]
            if !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            ((*name).to_owned(), rest)
        }
        _ => return None,
    };
    let (port, rest) = match rest {
        ["tcp", port, rest @ ..] => (port.parse::<u16>().ok()?, rest),
        _ => return None,
    };
    let (scheme, rest) = match rest {
        ["http", rest @ ..] => ("http", rest),
        ["https", rest @ ..] | ["tls", "http", rest @ ..] => ("https", rest),
        _ => return None,
    };
    match rest {
        [] | ["p2p", _] => Some(format!("{scheme}://{host}:{port}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::gateway_of_multiaddr as g;

    #[test]
    fn http_multiaddrs_name_gateways() {
        assert_eq!(g("/ip4/127.0.0.1/tcp/8080/http").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(g("/ip6/::1/tcp/80/http").as_deref(), Some("http://[::1]:80"));
        assert_eq!(
            g("/dns4/example.org/tcp/443/https").as_deref(),
            Some("https://example.org:443")
        );
        assert_eq!(
            g("/dns/example.org/tcp/443/tls/http/p2p/Qm").as_deref(),
            Some("https://example.org:443")
        );
        for bad in [
            "",
            "/",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001/p2p/QmX",
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip4/999.0.0.1/tcp/80/http",
            "/ip4/127.0.0.1/tcp/99999/http",
            "/dns/a@b/tcp/80/http",
            "/dns//tcp/80/http",
            "/ip4/127.0.0.1/tcp/80/http/extra",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(g(bad), None, "{bad}");
        }
    }
}
