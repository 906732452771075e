//! A DAG fetched from one peer over Bitswap in depth-first order — the order of a trustless
//! gateway's CAR (`dag-scope=all`, `dups=n`) — with several blocks in flight, so a streaming
//! reader (a verified file download) can consume it block by block.

use std::collections::{HashMap, HashSet, VecDeque};

use cid::Cid;
use estuary_dag::{
    block::IDENTITY,
    walk::{WalkError, links},
};
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::PeerId;

use crate::{Bitswap, BitswapError};

/// Why a depth-first fetch stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DfsError {
    /// A block could not be had from the peer.
    #[error(transparent)]
    Bitswap(Box<BitswapError>),
    /// A block's links could not be read.
    #[error(transparent)]
    Links(Box<WalkError>),
    /// The DAG has more blocks than allowed.
    #[error("the DAG has more than {0} blocks")]
    TooManyBlocks(u64),
}

impl From<BitswapError> for DfsError {
    fn from(e: BitswapError) -> Self {
        Self::Bitswap(Box::new(e))
    }
}

impl From<WalkError> for DfsError {
    fn from(e: WalkError) -> Self {
        Self::Links(Box::new(e))
    }
}

/// One block asked for: its CID and the peer's answer.
type Asked = BoxFuture<'static, (Cid, Result<Vec<u8>, BitswapError>)>;

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
    max_blocks: u64,
    /// Blocks still to hand out, in the order known so far.
    order: VecDeque<Cid>,
    /// Blocks in `order`, or handed out already.
    seen: HashSet<Cid>,
    /// Blocks asked for and not yet handed out.
    asked: HashSet<Cid>,
    ready: HashMap<Cid, Vec<u8>>,
    in_flight: FuturesUnordered<Asked>,
    handed_out: u64,
    failed: bool,
}

impl std::fmt::Debug for DfsFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DfsFetch")
            .field("peer", &self.peer)
            .field("queued", &self.order.len())
            .field("in_flight", &self.in_flight.len())
            .field("handed_out", &self.handed_out)
            .finish_non_exhaustive()
    }
}

impl DfsFetch {
    /// A fetch of the DAG under `root` from `peer`, `window` blocks ahead (at least 1), failing
    /// past `max_blocks` distinct blocks.
    pub fn new(bitswap: Bitswap, peer: PeerId, root: Cid, window: usize, max_blocks: u64) -> Self {
        let mut fetch = Self {
            bitswap,
            peer,
            window: window.max(1),
            max_blocks,
            order: VecDeque::new(),
            seen: HashSet::new(),
            asked: HashSet::new(),
            ready: HashMap::new(),
            in_flight: FuturesUnordered::new(),
            handed_out: 0,
            failed: false,
        };
        if root.hash().code() != IDENTITY {
            fetch.seen.insert(root);
            fetch.order.push_back(root);
        }
        fetch
    }

    /// Blocks handed out so far.
    pub fn blocks(&self) -> u64 {
        self.handed_out
    }

    /// The next block in depth-first order, `None` once the DAG is complete. After an error the
    /// fetch is over: it returns `None`. Cancel-safe: a block that arrives while the caller has
    /// stopped waiting is kept for the next call.
    pub async fn next(&mut self) -> Option<Result<(Cid, Vec<u8>), DfsError>> {
        if self.failed {
            return None;
        }
        loop {
            let head = *self.order.front()?;
            if let Some(data) = self.ready.remove(&head) {
                self.order.pop_front();
                self.asked.remove(&head);
                return Some(self.hand_out(head, data));
            }
            self.ask_ahead();
            let Some((cid, reply)) = self.in_flight.next().await else {
                // Nothing in flight yet the head is not ready: cannot happen (the head is asked
                // for above); end rather than spin.
                self.failed = true;
                return None;
            };
            match reply {
                Ok(data) => {
                    self.ready.insert(cid, data);
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }

    /// Queues `cid`'s links right after it (their place in a depth-first walk) and hands it out.
    fn hand_out(&mut self, cid: Cid, data: Vec<u8>) -> Result<(Cid, Vec<u8>), DfsError> {
        let children = match links(&cid, &data) {
            Ok(children) => children,
            Err(e) => {
                self.failed = true;
                return Err(e.into());
            }
        };
        let mut first = Vec::with_capacity(children.len());
        let mut in_this_block = HashSet::with_capacity(children.len());
        for child in children {
            if child.hash().code() == IDENTITY || !in_this_block.insert(child) {
                continue;
            }
            if self.seen.insert(child) {
                first.push(child);
            } else if let Some(at) = self.order.iter().position(|c| *c == child) {
                // Queued further on, under a later sibling: its first place is here now.
                self.order.remove(at);
                first.push(child);
            }
        }
        if self.seen.len() as u64 > self.max_blocks {
            self.failed = true;
            return Err(DfsError::TooManyBlocks(self.max_blocks));
        }
        for child in first.into_iter().rev() {
            self.order.push_front(child);
        }
        self.handed_out += 1;
        Ok((cid, data))
    }

    /// Asks for the first `window` blocks still to come that are not asked for yet.
    fn ask_ahead(&mut self) {
        for cid in self.order.iter().take(self.window) {
            if self.asked.insert(*cid) {
                let bitswap = self.bitswap.clone();
                let (peer, cid) = (self.peer, *cid);
                self.in_flight.push(Box::pin(async move { (cid, bitswap.get(peer, cid).await) }));
            }
        }
    }
}
