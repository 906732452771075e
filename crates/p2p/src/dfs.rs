//! A DAG fetched from one peer over Bitswap in depth-first order — the order of a trustless
//! gateway's CAR (`dag-scope=all`, `dups=n`) — with several blocks in flight, so a streaming
//! reader (a verified file download, the oracle's fetch into its blockstore) can consume it
//! block by block.
//!
//! The order, the deduplication and the limits are [`estuary_dag::walk::Walker`]'s, the walker
//! every traversal in Estuary uses; this is its Bitswap driver.

use std::collections::{HashMap, HashSet};

use cid::Cid;
use estuary_dag::walk::{WalkError, WalkLimits, Walker, inline};
use futures::{StreamExt, stream::FuturesUnordered};
use libp2p::PeerId;

use crate::{Bitswap, BitswapError};

/// Why a depth-first fetch stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DfsError {
    /// A block could not be had from the peer.
    #[error(transparent)]
    Bitswap(Box<BitswapError>),
    /// The DAG breaks the walk: a block that does not decode, or a limit.
    #[error(transparent)]
    Walk(Box<WalkError>),
    /// The local store failed while looking for a block (nothing is known about the block).
    #[error("the local store failed: {0}")]
    Local(Box<dyn std::error::Error + Send + Sync>),
}

impl From<BitswapError> for DfsError {
    fn from(e: BitswapError) -> Self {
        Self::Bitswap(Box::new(e))
    }
}

impl From<WalkError> for DfsError {
    fn from(e: WalkError) -> Self {
        Self::Walk(Box::new(e))
    }
}

/// A lookup in a local store: `Ok(None)` when the block is not held.
#[cfg(not(target_arch = "wasm32"))]
pub type LocalLookup = Box<
    dyn Fn(
            Cid,
        ) -> futures::future::BoxFuture<
            'static,
            Result<Option<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>>,
        > + Send
        + Sync,
>;

#[cfg(not(target_arch = "wasm32"))]
type Asked = futures::future::BoxFuture<'static, (Cid, Result<Fetched, DfsError>)>;
#[cfg(target_arch = "wasm32")]
type Asked = futures::future::LocalBoxFuture<'static, (Cid, Result<Fetched, DfsError>)>;

/// A block's bytes, and whether they came from the peer (not from the local store or the CID).
type Fetched = (Vec<u8>, bool);

/// The blocks under a root, fetched from one peer, handed out in depth-first order.
///
/// Each block comes once, at its first place in the walk (later links to it are the reader's to
/// remember, as with a gateway's `dups=n` CAR); identity CIDs carry their bytes and are never
/// fetched. At most `window` blocks are asked for ahead of the one handed out next, so the
/// memory held is at most `window` blocks. Every block hashes to its CID (Bitswap checks it).
pub struct DfsFetch {
    bitswap: Bitswap,
    peer: PeerId,
    window: usize,
    walker: Walker,
    /// Blocks asked for and not yet handed out.
    asked: HashSet<Cid>,
    ready: HashMap<Cid, Fetched>,
    in_flight: FuturesUnordered<Asked>,
    #[cfg(not(target_arch = "wasm32"))]
    local: Option<std::sync::Arc<LocalLookup>>,
    handed_out: u64,
    failed: bool,
}

impl std::fmt::Debug for DfsFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DfsFetch")
            .field("peer", &self.peer)
            .field("in_flight", &self.in_flight.len())
            .field("handed_out", &self.handed_out)
            .finish_non_exhaustive()
    }
}

impl DfsFetch {
    /// A fetch of the DAG under `root` from `peer`, `window` blocks ahead (at least 1), within
    /// `limits`.
    pub fn new(
        bitswap: Bitswap,
        peer: PeerId,
        root: Cid,
        window: usize,
        limits: WalkLimits,
    ) -> Self {
        Self {
            bitswap,
            peer,
            window: window.max(1),
            walker: Walker::new(root, limits),
            asked: HashSet::new(),
            ready: HashMap::new(),
            in_flight: FuturesUnordered::new(),
            #[cfg(not(target_arch = "wasm32"))]
            local: None,
            handed_out: 0,
            failed: false,
        }
    }

    /// Looks in a local store first: blocks held there are not asked for.
    #[cfg(not(target_arch = "wasm32"))]
    #[must_use]
    pub fn with_local(mut self, lookup: LocalLookup) -> Self {
        self.local = Some(std::sync::Arc::new(lookup));
        self
    }

    /// Blocks handed out so far.
    pub fn blocks(&self) -> u64 {
        self.handed_out
    }

    /// What the walk has seen (blocks, bytes, depth, links).
    pub fn stats(&self) -> estuary_dag::walk::WalkStats {
        self.walker.stats()
    }

    /// The next block in depth-first order and whether it came from the peer; `None` once the
    /// DAG is complete. After an error the fetch is over: it returns `None`. Cancel-safe: a
    /// block that arrives while the caller has stopped waiting is kept for the next call.
    pub async fn next(&mut self) -> Option<Result<(Cid, Vec<u8>, bool), DfsError>> {
        if self.failed {
            return None;
        }
        let result = self.step().await;
        if matches!(result, Some(Err(_))) {
            self.failed = true;
        }
        result
    }

    async fn step(&mut self) -> Option<Result<(Cid, Vec<u8>, bool), DfsError>> {
        loop {
            let (cid, _) = match self.walker.peek() {
                Ok(Some(next)) => next,
                Ok(None) => return None,
                Err(e) => return Some(Err(e.into())),
            };
            let fetched = match inline(&cid) {
                Some(data) => Some((data.to_vec(), false)),
                None => self.ready.remove(&cid),
            };
            if let Some((data, from_peer)) = fetched {
                self.asked.remove(&cid);
                if let Err(e) = self.walker.visit(&data) {
                    return Some(Err(e.into()));
                }
                self.handed_out += 1;
                return Some(Ok((cid, data, from_peer)));
            }
            self.ask_ahead();
            match self.in_flight.next().await {
                Some((cid, Ok(block))) => {
                    self.ready.insert(cid, block);
                }
                Some((_, Err(e))) => return Some(Err(e)),
                // The head is always asked for above: nothing in flight cannot happen.
                None => unreachable!("the next block is in flight"),
            }
        }
    }

    /// Asks for the next `window` blocks of the walk that are not asked for yet.
    fn ask_ahead(&mut self) {
        for cid in self.walker.upcoming(self.window) {
            if self.ready.contains_key(&cid) || !self.asked.insert(cid) {
                continue;
            }
            let bitswap = self.bitswap.clone();
            let peer = self.peer;
            #[cfg(not(target_arch = "wasm32"))]
            let local = self.local.clone();
            self.in_flight.push(Box::pin(async move {
                #[cfg(not(target_arch = "wasm32"))]
                if let Some(local) = local {
                    match local(cid).await {
                        Ok(Some(data)) => return (cid, Ok((data, false))),
                        Ok(None) => {}
                        Err(e) => return (cid, Err(DfsError::Local(e))),
                    }
                }
                (cid, bitswap.get(peer, cid).await.map(|d| (d, true)).map_err(DfsError::from))
            }));
        }
    }
}
