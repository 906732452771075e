//! Walking a DAG: the links of a block, and the one depth-first walker every traversal in
//! Estuary is driven by.
//!
//! ```text
//!            ┌──────────── Walker (sans-io: order, dedup, limits) ────────────┐
//!  root ───► │ peek() → next CID in pre-order    visit(bytes) → push its links │
//!            │ upcoming(n) → the next n CIDs, for drivers that fetch ahead     │
//!            └──────────────────────────────────────────────────────────────────┘
//!   drivers: dfs / post_order (a BlockSource: the blockstore, a map, a spooled CAR),
//!            estuary_p2p::DfsFetch (Bitswap, several blocks in flight: the oracle's fetch and
//!            the browser's download), the gateway's CAR selection (`traversal`), the packer's
//!            canonical order (`order`)
//! ```
//!
//! The walker follows dag-pb links, dag-cbor links (CIDs under tag 42, anywhere in the value),
//! and nothing out of raw blocks. Blocks named by an identity multihash carry their bytes in the
//! CID ([`inline`]) and are never fetched. It visits each block once, at its first place in a
//! depth-first pre-order (parents before children, children in link order — the order of
//! `ipfs dag export` and of a trustless gateway's CAR with `dups=n`); a link to a block already
//! visited, or repeated within one block, is dropped before it is queued. Every walk is bounded
//! by [`WalkLimits`], checked here and nowhere else: depth, links per block, distinct blocks,
//! bytes, link visits (every link read counts, so a DAG whose links all point at one block costs
//! what it is, not what it dedups to; a reader that replays a repeated subtree charges each
//! replay through [`Walker::revisit`]) and the queue's length. A hostile DAG costs at most what
//! the caller allows, in time and in memory: the queue holds at most `max_queued` CIDs, and the
//! set of visited blocks keeps 16 bytes per block (a keyed 128-bit hash of the CID), so a walk
//! within `max_blocks` and `max_queued` holds about `16 × max_blocks + 100 × max_queued` bytes.

use std::{
    collections::HashSet,
    hash::{BuildHasher, RandomState},
};

use ::cid::Cid;

use crate::{
    block::{DAG_CBOR, DAG_PB, IDENTITY, RAW},
    cbor::CborError,
    pb::{PbError, PbNode},
    source::{BlockError, BlockSource},
};

/// Why a walk stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// The block source could not give a block the walk needs (missing, corrupt, or a fault).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A dag-pb block does not decode.
    #[error("block {cid} is not valid dag-pb: {source}")]
    BadNode {
        /// The block.
        cid: Cid,
        /// Why.
        source: PbError,
    },
    /// A dag-cbor block does not decode.
    #[error("block {cid} is not valid dag-cbor: {source}")]
    BadCbor {
        /// The block.
        cid: Cid,
        /// Why.
        source: CborError,
    },
    /// A codec the walker cannot read links from.
    #[error("block {cid} has codec 0x{codec:x}, which this walker cannot follow")]
    UnsupportedCodec {
        /// The block.
        cid: Cid,
        /// Its codec.
        codec: u64,
    },
    /// The DAG is deeper than allowed.
    #[error("block {cid} is deeper than {max} levels")]
    TooDeep {
        /// The first block past the limit.
        cid: Cid,
        /// The limit.
        max: usize,
    },
    /// A block has more links than allowed.
    #[error("block {cid} has {count} links, more than {max}")]
    TooManyLinks {
        /// The block.
        cid: Cid,
        /// Its links.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// More blocks than allowed.
    #[error("the DAG has more than {0} blocks")]
    TooManyBlocks(u64),
    /// More bytes than allowed.
    #[error("the DAG holds more than {0} bytes")]
    TooManyBytes(u64),
    /// More link visits than allowed.
    #[error("the walk read more than {0} links")]
    TooManyVisits(u64),
    /// More blocks waiting to be visited at once than allowed (the walk's memory).
    #[error("the walk would queue more than {0} blocks at once")]
    TooManyQueued(u64),
}

impl WalkError {
    /// The block found missing, if that is why the walk stopped.
    pub fn missing(&self) -> Option<Cid> {
        match self {
            Self::Block(BlockError::Missing(cid)) => Some(*cid),
            _ => None,
        }
    }

    /// Whether the block source failed (nothing is known about the DAG), as opposed to the DAG
    /// being incomplete, malformed or over a limit.
    pub fn is_fault(&self) -> bool {
        matches!(self, Self::Block(e) if e.is_fault())
    }

    /// Whether a limit stopped the walk.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::TooDeep { .. }
                | Self::TooManyLinks { .. }
                | Self::TooManyBlocks(_)
                | Self::TooManyBytes(_)
                | Self::TooManyVisits(_)
                | Self::TooManyQueued(_)
        )
    }

    /// Whether the DAG itself is malformed (a block that does not decode, or an unknown codec).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::BadNode { .. } | Self::BadCbor { .. } | Self::UnsupportedCodec { .. })
    }
}

/// Bounds on a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkLimits {
    /// Deepest level followed (the root is level 0).
    pub max_depth: usize,
    /// Most links one block may have.
    pub max_links: usize,
    /// Most distinct blocks.
    pub max_blocks: u64,
    /// Most bytes, summed over distinct blocks.
    pub max_bytes: u64,
    /// Most links read, over every block (duplicates included).
    pub max_visits: u64,
    /// Most blocks waiting to be visited at once (each takes about 100 bytes).
    pub max_queued: u64,
}

impl Default for WalkLimits {
    /// Generous bounds for UnixFS: 4096 levels, 65,536 links per block, no block, byte, visit
    /// or queue limit. Callers serving strangers set their own.
    fn default() -> Self {
        Self {
            max_depth: 4096,
            max_links: 1 << 16,
            max_blocks: u64::MAX,
            max_bytes: u64::MAX,
            max_visits: u64::MAX,
            max_queued: u64::MAX,
        }
    }
}

/// What a walk saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Distinct blocks visited.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The deepest level reached.
    pub depth: usize,
    /// Links read.
    pub visits: u64,
}

/// The CIDs `data` (the block named `cid`) links to, in order.
pub fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, WalkError> {
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => Ok(PbNode::decode(data)
            .map_err(|source| WalkError::BadNode { cid: *cid, source })?
            .links
            .into_iter()
            .map(|l| l.hash)
            .collect()),
        DAG_CBOR => {
            crate::cbor::links(data).map_err(|source| WalkError::BadCbor { cid: *cid, source })
        }
        codec => Err(WalkError::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// The bytes an identity CID carries, or `None` for a CID that names a block stored elsewhere.
pub fn inline(cid: &Cid) -> Option<&[u8]> {
    (cid.hash().code() == IDENTITY).then(|| cid.hash().digest())
}

/// A set of CIDs that keeps 16 bytes per CID: a 128-bit hash of the CID's bytes under keys
/// drawn at random for each set, so no one can make two CIDs collide on purpose (by chance:
/// about 2^-128 per pair).
#[derive(Debug, Clone, Default)]
pub struct CidSet {
    keys: (RandomState, RandomState),
    set: HashSet<u128>,
}

impl CidSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&self, cid: &Cid) -> u128 {
        (u128::from(self.keys.0.hash_one(cid)) << 64) | u128::from(self.keys.1.hash_one(cid))
    }

    /// Adds `cid`; false if it was there.
    pub fn insert(&mut self, cid: &Cid) -> bool {
        let key = self.key(cid);
        self.set.insert(key)
    }

    /// Whether `cid` is there.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.set.contains(&self.key(cid))
    }

    /// How many CIDs are there.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// The depth-first walk, without I/O: which block comes next, and what its links add.
#[derive(Debug, Clone)]
pub struct Walker {
    limits: WalkLimits,
    /// Blocks still to visit; the top is next. A block may be queued twice when a later link
    /// to it turns out to come first: the stale entry is skipped when it surfaces.
    stack: Vec<(Cid, usize)>,
    visited: CidSet,
    stats: WalkStats,
}

impl Walker {
    /// A walk of the DAG under `root` within `limits`.
    pub fn new(root: Cid, limits: WalkLimits) -> Self {
        Self { limits, stack: vec![(root, 0)], visited: CidSet::new(), stats: WalkStats::default() }
    }

    /// A walker with nothing to walk yet: roots come with [`add_root`](Self::add_root).
    pub fn empty(limits: WalkLimits) -> Self {
        Self { limits, stack: Vec::new(), visited: CidSet::new(), stats: WalkStats::default() }
    }

    /// The limits this walk runs within.
    pub fn limits(&self) -> &WalkLimits {
        &self.limits
    }

    /// The next block to visit and its depth, `None` when the walk is complete. It stays the
    /// next until [`visit`](Self::visit)ed.
    pub fn peek(&mut self) -> Result<Option<(Cid, usize)>, WalkError> {
        while let Some(&(cid, depth)) = self.stack.last() {
            if self.visited.contains(&cid) {
                self.stack.pop();
                continue;
            }
            if depth > self.limits.max_depth {
                return Err(WalkError::TooDeep { cid, max: self.limits.max_depth });
            }
            return Ok(Some((cid, depth)));
        }
        Ok(None)
    }

    /// Visits the block [`peek`](Self::peek) named, given its (verified) bytes: reads its links
    /// and queues those not visited yet. Returns how many were queued.
    pub fn visit(&mut self, data: &[u8]) -> Result<usize, WalkError> {
        let Some((cid, _)) = self.peek()? else { return Ok(0) };
        let children = links(&cid, data)?;
        self.visit_links(data.len(), children)
    }

    /// [`visit`](Self::visit) for a caller that picked the links to follow itself (a HAMT
    /// bucket walk follows buckets only): `len` is the block's size.
    pub fn visit_links(
        &mut self,
        len: usize,
        children: impl IntoIterator<Item = Cid, IntoIter: ExactSizeIterator + DoubleEndedIterator>,
    ) -> Result<usize, WalkError> {
        let Some((cid, depth)) = self.peek()? else { return Ok(0) };
        let children = children.into_iter();
        self.account(cid, depth, len, children.len())?;
        self.stack.pop();
        self.visited.insert(&cid);
        // Each child once, at its first place, and none already visited: a block whose links
        // all name one block queues one entry, not one per link.
        let mut fresh: Vec<Cid> = Vec::new();
        let mut here = CidSet::new();
        for child in children {
            if !self.visited.contains(&child) && here.insert(&child) {
                fresh.push(child);
            }
        }
        if (self.stack.len() + fresh.len()) as u64 > self.limits.max_queued {
            return Err(WalkError::TooManyQueued(self.limits.max_queued));
        }
        let queued = fresh.len();
        self.stack.extend(fresh.into_iter().rev().map(|child| (child, depth + 1)));
        Ok(queued)
    }

    /// Leaves the block [`peek`](Self::peek) named out of the walk without visiting it (the
    /// caller does not have it): it is not counted, and a later link to it queues it again.
    pub fn skip(&mut self) -> Result<(), WalkError> {
        if self.peek()?.is_some() {
            self.stack.pop();
        }
        Ok(())
    }

    /// Charges `links` link reads that revisit blocks already visited (a reader replaying a
    /// repeated subtree from its cache) against the visit limit.
    pub fn revisit(&mut self, links: u64) -> Result<(), WalkError> {
        self.stats.visits = self.stats.visits.saturating_add(links);
        if self.stats.visits > self.limits.max_visits {
            return Err(WalkError::TooManyVisits(self.limits.max_visits));
        }
        Ok(())
    }

    /// Counts a block of `len` bytes with `links` links, at `depth`, against the limits: every
    /// visit does, and so does a block a traversal reads outside the walk (a directory listed
    /// before its files are walked).
    pub fn account(
        &mut self,
        cid: Cid,
        depth: usize,
        len: usize,
        links: usize,
    ) -> Result<(), WalkError> {
        let limits = &self.limits;
        if depth > limits.max_depth {
            return Err(WalkError::TooDeep { cid, max: limits.max_depth });
        }
        if links > limits.max_links {
            return Err(WalkError::TooManyLinks { cid, count: links, max: limits.max_links });
        }
        self.stats.blocks += 1;
        if self.stats.blocks > limits.max_blocks {
            return Err(WalkError::TooManyBlocks(limits.max_blocks));
        }
        self.stats.bytes += len as u64;
        if self.stats.bytes > limits.max_bytes {
            return Err(WalkError::TooManyBytes(limits.max_bytes));
        }
        self.stats.visits += links as u64;
        if self.stats.visits > limits.max_visits {
            return Err(WalkError::TooManyVisits(limits.max_visits));
        }
        self.stats.depth = self.stats.depth.max(depth);
        Ok(())
    }

    /// Walks another root after the current walk is complete, with everything visited so far
    /// still visited (a traversal made of several walks that share their blocks).
    pub fn add_root(&mut self, root: Cid) {
        if !self.visited.contains(&root) {
            self.stack.push((root, 0));
        }
    }

    /// Records `cid` as visited by other means; false if it was visited already.
    pub fn mark_visited(&mut self, cid: Cid) -> bool {
        self.visited.insert(&cid)
    }

    /// Up to `n` distinct blocks the walk will visit next, the next one first, as far as it
    /// knows them now: what a driver may fetch ahead. Identity blocks are left out (nothing to
    /// fetch).
    pub fn upcoming(&self, n: usize) -> Vec<Cid> {
        let mut out: Vec<Cid> = Vec::with_capacity(n);
        // Stale entries are skipped; the scan is bounded so a crowded stack costs little.
        for (cid, _) in self.stack.iter().rev().take(n.saturating_mul(4).max(16)) {
            if out.len() == n {
                break;
            }
            if self.visited.contains(cid) || inline(cid).is_some() || out.contains(cid) {
                continue;
            }
            out.push(*cid);
        }
        out
    }

    /// Whether `cid` has been visited.
    pub fn is_visited(&self, cid: &Cid) -> bool {
        self.visited.contains(cid)
    }

    /// What the walk has seen so far.
    pub fn stats(&self) -> WalkStats {
        self.stats
    }
}

/// Visits every block reachable from `root` once, in pre-order (see [`Walker`]), reading blocks
/// from `source`; `visit` receives each block.
pub fn dfs<S: BlockSource>(
    root: Cid,
    limits: WalkLimits,
    mut source: S,
    mut visit: impl FnMut(&Cid, &[u8]),
) -> Result<WalkStats, WalkError> {
    let mut walker = Walker::new(root, limits);
    while let Some((cid, _)) = walker.peek()? {
        match inline(&cid) {
            Some(data) => {
                walker.visit(data)?;
                visit(&cid, data);
            }
            None => {
                let block = source.block(&cid)?;
                walker.visit(block.as_ref())?;
                visit(&cid, block.as_ref());
            }
        }
    }
    Ok(walker.stats())
}

/// Visits every block reachable from `root` once, in post-order: a block after every block
/// below it, children in link order, each block at its first completion. This is the order in
/// which an importer produces a file's blocks. A block with links is read from `source` twice
/// (when its links are read, and when it is handed out), so memory stays at one block whatever
/// the depth.
pub fn post_order<S: BlockSource>(
    root: Cid,
    limits: WalkLimits,
    mut source: S,
    mut emit: impl FnMut(&Cid, &[u8]),
) -> Result<WalkStats, WalkError> {
    let mut walker = Walker::new(root, limits);
    drive_post_order(&mut walker, &mut source, &mut emit)?;
    Ok(walker.stats())
}

/// Runs `walker` to its end in post-order (see [`post_order`]).
pub fn drive_post_order<S: BlockSource>(
    walker: &mut Walker,
    source: &mut S,
    emit: &mut impl FnMut(&Cid, &[u8]),
) -> Result<(), WalkError> {
    // Blocks whose links are being walked, deepest last; each is handed out (read again) once
    // the walk comes back up past it.
    let mut open: Vec<(Cid, usize)> = Vec::new();
    while let Some((cid, depth)) = walker.peek()? {
        close(&mut open, depth, source, emit)?;
        let queued = match inline(&cid) {
            Some(data) => {
                let queued = walker.visit(data)?;
                if queued == 0 {
                    emit(&cid, data);
                }
                queued
            }
            None => {
                let block = source.block(&cid)?;
                let queued = walker.visit(block.as_ref())?;
                if queued == 0 {
                    // A leaf is handed out with the bytes in hand.
                    emit(&cid, block.as_ref());
                }
                queued
            }
        };
        if queued > 0 {
            open.push((cid, depth));
        }
    }
    close(&mut open, 0, source, emit)
}

/// Hands out the open blocks at `down_to` or deeper.
fn close<S: BlockSource>(
    open: &mut Vec<(Cid, usize)>,
    down_to: usize,
    source: &mut S,
    emit: &mut impl FnMut(&Cid, &[u8]),
) -> Result<(), WalkError> {
    while let Some(&(cid, depth)) = open.last() {
        if depth < down_to {
            break;
        }
        open.pop();
        match inline(&cid) {
            Some(data) => emit(&cid, data),
            None => emit(&cid, source.block(&cid)?.as_ref()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Block, ImportOptions,
        block::sha256_cid,
        file::import_bytes,
        profile::Profile,
        source::{BlockError, infallible},
    };
    use std::collections::HashMap;

    fn store(blocks: &[Block]) -> HashMap<Cid, Vec<u8>> {
        blocks.iter().map(|b| (b.cid, b.data.clone())).collect()
    }

    #[test]
    fn dfs_is_preorder_and_each_block_once() {
        let opts = ImportOptions { chunk_size: 1, max_links: 2, ..Profile::KuboCidV1.options() };
        let (root, blocks) = import_bytes(b"abab", opts).unwrap();
        let s = store(&blocks);
        let mut order = Vec::new();
        dfs(root.cid, WalkLimits::default(), &s, |c, _| order.push(*c)).unwrap();
        // root, left parent (a, b); the right parent is the same node as the left: visited once.
        let (a, b, left) = (blocks[0].cid, blocks[1].cid, blocks[2].cid);
        assert_eq!(order, [root.cid, left, a, b]);
        let empty: HashMap<Cid, Vec<u8>> = HashMap::new();
        let missing = dfs(root.cid, WalkLimits::default(), &empty, |_, _| {});
        assert_eq!(missing, Err(WalkError::Block(BlockError::Missing(root.cid))));
        assert_eq!(missing.unwrap_err().missing(), Some(root.cid));
    }

    #[test]
    fn post_order_is_the_order_an_importer_produces() {
        for (len, chunk, width) in [(0, 4, 2), (1, 4, 2), (100, 4, 2), (1000, 7, 3), (5000, 10, 4)]
        {
            let data: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let opts = ImportOptions {
                chunk_size: chunk,
                max_links: width,
                ..Profile::KuboCidV1.options()
            };
            let (root, produced) = import_bytes(&data, opts).unwrap();
            let mut seen = HashSet::new();
            let produced: Vec<Cid> =
                produced.iter().map(|b| b.cid).filter(|c| seen.insert(*c)).collect();
            let s = store(&crate::file::import_bytes(&data, opts).unwrap().1);
            let mut order = Vec::new();
            post_order(root.cid, WalkLimits::default(), &s, |c, _| order.push(*c)).unwrap();
            assert_eq!(order, produced, "{len} bytes, chunks of {chunk}, {width} links");
        }
    }

    #[test]
    fn limits_stop_the_walk() {
        let opts = ImportOptions { chunk_size: 1, max_links: 2, ..Profile::KuboCidV1.options() };
        let data: Vec<u8> = (0..64u8).collect();
        let (root, blocks) = import_bytes(&data, opts).unwrap();
        let s = store(&blocks);
        let walk = |limits| dfs(root.cid, limits, &s, |_, _| {});
        let all = walk(WalkLimits::default()).unwrap();
        assert_eq!((all.blocks, all.depth), (blocks.len() as u64, 6));
        assert!(matches!(
            walk(WalkLimits { max_depth: 5, ..Default::default() }),
            Err(WalkError::TooDeep { .. })
        ));
        assert!(matches!(
            walk(WalkLimits { max_links: 1, ..Default::default() }),
            Err(WalkError::TooManyLinks { .. })
        ));
        assert_eq!(
            walk(WalkLimits { max_blocks: 10, ..Default::default() }),
            Err(WalkError::TooManyBlocks(10))
        );
        assert_eq!(
            walk(WalkLimits { max_bytes: 100, ..Default::default() }),
            Err(WalkError::TooManyBytes(100))
        );
        assert_eq!(
            walk(WalkLimits { max_visits: 20, ..Default::default() }),
            Err(WalkError::TooManyVisits(20))
        );
        assert_eq!(
            walk(WalkLimits { max_queued: 2, ..Default::default() }),
            Err(WalkError::TooManyQueued(2))
        );
        let mut walker = Walker::new(root.cid, WalkLimits { max_visits: 3, ..Default::default() });
        walker.revisit(3).unwrap();
        assert_eq!(walker.revisit(1), Err(WalkError::TooManyVisits(3)), "replays count too");
    }

    #[test]
    fn duplicate_links_are_dropped_before_they_are_queued() {
        // One node with 60,000 links to the same leaf: the stack never holds more than a few.
        let leaf = Block::new(cid::Version::V1, RAW, b"x".to_vec());
        let node = PbNode {
            links: (0..60_000)
                .map(|_| crate::pb::PbLink { hash: leaf.cid, name: None, tsize: None })
                .collect(),
            data: None,
        };
        let root = Block::new(cid::Version::V1, DAG_PB, node.encode());
        let s = store(&[leaf.clone(), root.clone()]);
        let mut walker = Walker::new(root.cid, WalkLimits::default());
        walker.peek().unwrap();
        assert_eq!(walker.visit(&root.data).unwrap(), 1, "one entry for 60,000 links");
        walker.peek().unwrap();
        walker.visit(&leaf.data).unwrap();
        assert_eq!(walker.peek().unwrap(), None);
        assert_eq!(walker.stats().visits, 60_000, "every link read is counted");
        // And a visit budget counts every one of them.
        let capped =
            dfs(root.cid, WalkLimits { max_visits: 1000, ..Default::default() }, &s, |_, _| {});
        assert_eq!(capped, Err(WalkError::TooManyVisits(1000)));
    }

    #[test]
    fn a_later_link_that_comes_first_moves_up() {
        // root → [a, b]; a → [c]; b → [c]. Pre-order: root, a, c, b. Upcoming knows b after c.
        let c = Block::new(cid::Version::V1, RAW, b"c".to_vec());
        let pb = |links: &[Cid]| {
            let node = PbNode {
                links: links
                    .iter()
                    .map(|h| crate::pb::PbLink { hash: *h, name: None, tsize: None })
                    .collect(),
                data: Some(vec![]),
            };
            Block::new(cid::Version::V1, DAG_PB, node.encode())
        };
        let a = pb(&[c.cid]);
        let b = pb(&[c.cid, a.cid]);
        let root = pb(&[b.cid, a.cid]);
        let s = store(&[a.clone(), b.clone(), c.clone(), root.clone()]);
        let mut order = Vec::new();
        dfs(root.cid, WalkLimits::default(), &s, |cid, _| order.push(*cid)).unwrap();
        assert_eq!(order, [root.cid, b.cid, c.cid, a.cid]);
        let mut walker = Walker::new(root.cid, WalkLimits::default());
        walker.peek().unwrap();
        walker.visit(&root.data).unwrap();
        assert_eq!(walker.upcoming(5), [b.cid, a.cid], "b is next; a after it");
    }

    #[test]
    fn dag_cbor_links_and_identity_blocks() {
        let leaf = sha256_cid(cid::Version::V1, RAW, b"leaf");
        let inline_cid =
            Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(IDENTITY, b"tiny").unwrap());
        let mut cbor = vec![0x82];
        crate::cbor::write_cid(&leaf, &mut cbor);
        crate::cbor::write_cid(&inline_cid, &mut cbor);
        let root = sha256_cid(cid::Version::V1, DAG_CBOR, &cbor);
        assert_eq!(links(&root, &cbor).unwrap(), [leaf, inline_cid]);
        let s: HashMap<Cid, Vec<u8>> = [(root, cbor.clone()), (leaf, b"leaf".to_vec())].into();
        let mut seen = Vec::new();
        let stats =
            dfs(root, WalkLimits::default(), &s, |c, d| seen.push((*c, d.to_vec()))).unwrap();
        assert_eq!(stats.blocks, 3);
        assert_eq!(seen[2], (inline_cid, b"tiny".to_vec()));
        assert!(matches!(links(&root, &[0x9f]), Err(WalkError::BadCbor { .. })));
    }

    #[test]
    fn a_source_fault_is_not_a_missing_block() {
        let (root, blocks) = import_bytes(b"hello", Profile::KuboCidV1.options()).unwrap();
        let _ = blocks;
        let failing = |cid: &Cid| -> Result<Vec<u8>, BlockError> {
            Err(BlockError::Io { cid: *cid, source: "disk on fire".into() })
        };
        let err = dfs(root.cid, WalkLimits::default(), crate::source::from_fn(failing), |_, _| {})
            .unwrap_err();
        assert!(err.is_fault());
        assert_eq!(err.missing(), None);
        let none = infallible(|_: &Cid| None::<Vec<u8>>);
        let err = dfs(root.cid, WalkLimits::default(), none, |_, _| {}).unwrap_err();
        assert!(!err.is_fault());
        assert_eq!(err.missing(), Some(root.cid));
    }
}
