//! The walker's limits, tested once for every driver: each traversal this crate offers — the
//! depth-first and post-order walks, the canonical CAR order, the gateway's selections (all,
//! entity, HAMT buckets, byte ranges), the streaming file reader and the range reader — walks
//! each hostile DAG of [`estuary_dag::hostile`] and must end (done, or stopped by a limit) after
//! work bounded by the limits, never by the DAG's naive size.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;

use cid::Cid;
use estuary_dag::{
    Block, BlockError, BlockSource,
    dfs_file::{DfsFileError, DfsFileReader},
    export::{self, ExportError},
    hostile::{IdentityLinks, entity_bytes_bomb, hamt_bomb},
    order,
    traversal::{DagScope, EntityBytes, ResolvedPath, TraversalError, select_blocks},
    walk::{self, WalkError, WalkLimits},
};

const LIMITS: WalkLimits = WalkLimits {
    max_depth: 64,
    max_links: 1 << 16,
    max_blocks: 1 << 16,
    max_bytes: 1 << 28,
    max_visits: 1 << 18,
    max_queued: 1 << 17,
};

/// Block reads (and bytes) a driver may make within [`LIMITS`]: each distinct block at most
/// twice (post-order reads a parent twice), each visit once.
const MAX_READS: u64 = 2 * LIMITS.max_blocks + LIMITS.max_visits;

/// A store of blocks that counts what it serves.
struct Counting {
    inner: HashMap<Cid, Vec<u8>>,
    reads: u64,
    bytes: u64,
}

impl BlockSource for Counting {
    type Bytes = Vec<u8>;

    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, BlockError> {
        let block = self.inner.get(cid).cloned().ok_or(BlockError::Missing(*cid))?;
        self.reads += 1;
        self.bytes += block.len() as u64;
        Ok(block)
    }
}

fn map(blocks: &[Block]) -> HashMap<Cid, Vec<u8>> {
    blocks.iter().map(|b| (b.cid, b.data.clone())).collect()
}

/// How a driver ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Done,
    Limit,
    Other(String),
}

fn walk_end(r: Result<impl Sized, WalkError>) -> End {
    match r {
        Ok(_) => End::Done,
        Err(e) if e.is_limit() => End::Limit,
        Err(e) => End::Other(e.to_string()),
    }
}

fn traversal_end(r: Result<(), TraversalError>) -> End {
    match r {
        Ok(()) => End::Done,
        Err(TraversalError::Walk(e)) if e.is_limit() => End::Limit,
        Err(TraversalError::Export(e)) if matches!(*e, ExportError::TooManyVisits(_)) => End::Limit,
        Err(e) => End::Other(e.to_string()),
    }
}

type Driver = fn(Cid, &mut Counting) -> End;

fn drivers() -> Vec<(&'static str, Driver)> {
    fn select(root: Cid, scope: DagScope, range: Option<&str>, s: &mut Counting) -> End {
        let resolved = ResolvedPath { terminal: root, path_blocks: vec![] };
        let range = range.map(|r| r.parse::<EntityBytes>().unwrap());
        traversal_end(select_blocks(&resolved, scope, range, LIMITS, s, |_, _| true))
    }
    vec![
        ("dfs", |root, s| walk_end(walk::dfs(root, LIMITS, s, |_, _| {}))),
        ("post_order", |root, s| walk_end(walk::post_order(root, LIMITS, s, |_, _| {}))),
        ("canonical CAR order", |root, s| walk_end(order::canonical(root, LIMITS, s, |_, _| {}))),
        ("gateway dag-scope=all", |root, s| select(root, DagScope::All, None, s)),
        ("gateway dag-scope=entity", |root, s| select(root, DagScope::Entity, None, s)),
        ("gateway entity-bytes=0:*", |root, s| select(root, DagScope::Entity, Some("0:*"), s)),
        ("range reader", |root, s| {
            match export::read_file_within(root, 0, None, LIMITS.max_visits, s, |_| {}) {
                Ok(_) => End::Done,
                Err(ExportError::TooManyVisits(_)) => End::Limit,
                Err(e) => End::Other(e.to_string()),
            }
        }),
        ("streaming file reader", |root, s| {
            // Blocks arrive in the gateway's order, each once (`dups=n`); the reader replays
            // the repeated ones from its cache.
            let mut order = Vec::new();
            if let Err(e) = walk::dfs(root, LIMITS, &mut *s, |c, d| order.push((*c, d.to_vec()))) {
                return walk_end(Err::<(), _>(e));
            }
            let mut reader = DfsFileReader::with_limits(root, 1 << 20, LIMITS);
            let mut out = Vec::new();
            let mut emitted = 0u64;
            for (cid, data) in &order {
                let pushed = reader.push(cid, data, &mut out);
                emitted += out.len() as u64;
                out.clear();
                match pushed {
                    Ok(()) => {}
                    Err(DfsFileError::Walk(e)) if e.is_limit() => return End::Limit,
                    Err(e) => return End::Other(e.to_string()),
                }
            }
            assert!(emitted <= 1 << 30, "the reader wrote {emitted} bytes");
            match reader.finish(&mut out) {
                Ok(()) => End::Done,
                Err(DfsFileError::Walk(e)) if e.is_limit() => End::Limit,
                Err(e) => End::Other(e.to_string()),
            }
        }),
    ]
}

fn run(name: &str, root: Cid, blocks: &[Block], expect: impl Fn(&str) -> Option<End>) {
    for (driver, f) in drivers() {
        let mut source = Counting { inner: map(blocks), reads: 0, bytes: 0 };
        let end = f(root, &mut source);
        assert!(source.reads <= MAX_READS, "{driver} on {name}: {} block reads", source.reads);
        if let Some(expected) = expect(driver) {
            assert_eq!(end, expected, "{driver} on {name}");
        } else {
            assert!(matches!(end, End::Done | End::Limit | End::Other(_)), "{driver} on {name}");
        }
    }
}

/// Nine ~11 KB buckets of 256 links each to the next: 256⁸ paths, ten blocks. A walker that
/// deduplicates before it queues reads each bucket once.
#[test]
fn a_hamt_bomb_is_ten_blocks_to_every_driver() {
    let (root, blocks) = hamt_bomb(9);
    assert_eq!(blocks.len(), 10);
    assert!(blocks.iter().all(|b| b.data.len() < 12_000));
    run("the HAMT bomb", root, &blocks, |driver| match driver {
        // Not a file: the readers refuse it; everything else walks ten blocks.
        "range reader" | "streaming file reader" => None,
        _ => Some(End::Done),
    });
    let mut counting = Counting { inner: map(&blocks), reads: 0, bytes: 0 };
    let stats = walk::dfs(root, LIMITS, &mut counting, |_, _| {}).unwrap();
    assert_eq!((stats.blocks, stats.visits, counting.reads), (10, 8 * 256 + 1, 10));
}

/// Eight levels of 64 links each to the one node below: nine blocks, a file of 64⁸ KiB. The
/// walks see nine blocks; whatever reads the file's bytes pays for every repeated subtree and
/// stops at the visit budget.
#[test]
fn an_entity_bytes_bomb_stops_every_reader_at_its_visit_budget() {
    let (root, blocks) = entity_bytes_bomb(8, 64);
    assert_eq!(blocks.len(), 9);
    run("the entity-bytes bomb", root, &blocks, |driver| {
        Some(match driver {
            "gateway entity-bytes=0:*" | "range reader" | "streaming file reader" => End::Limit,
            _ => End::Done,
        })
    });
}

/// 2 GiB of identity links (3,300 nodes of 65,535): each link is a block that needs no fetch,
/// so only the block and queue limits stop the walk — after a few nodes, whichever way the
/// chain is linked, never after reading the two gigabytes.
#[test]
fn two_gibibytes_of_identity_links_stop_at_the_block_and_queue_limits() {
    for chain_first in [false, true] {
        let mut source = IdentityLinks { nodes: 3300, links: 65_535, chain_first, served: 0 };
        let root = source.root();
        let err = walk::dfs(root, LIMITS, &mut source, |_, _| {}).unwrap_err();
        let expected = if chain_first {
            WalkError::TooManyQueued(LIMITS.max_queued)
        } else {
            WalkError::TooManyBlocks(LIMITS.max_blocks)
        };
        assert_eq!(err, expected);
        assert!(source.served < 8 << 20, "{} bytes read", source.served);
        let mut source = IdentityLinks { nodes: 3300, links: 65_535, chain_first, served: 0 };
        let err = order::canonical(root, LIMITS, &mut source, |_, _| {}).unwrap_err();
        assert!(err.is_limit(), "{err}");
        assert!(source.served < 8 << 20, "{} bytes read", source.served);
    }
}
