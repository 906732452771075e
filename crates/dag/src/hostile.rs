//! DAGs built to make a careless reader do unbounded work — the attacks the walker's limits
//! answer — shared by the tests of every driver (this crate's walks, the Bitswap fetch, the
//! oracle's fetch, gateway and packer). Each is small to send and huge to walk naively.
//!
//! - [`hamt_bomb`]: a sharded directory whose buckets each link 256 times to the next bucket:
//!   nine nodes of ~11 KB, 256⁸ paths;
//! - [`entity_bytes_bomb`]: a UnixFS file whose links all name one child, level after level: a
//!   handful of blocks, a file of `width^levels` leaves, every one of which a byte-range reader
//!   loads;
//! - [`IdentityLinks`]: a chain of nodes each carrying tens of thousands of distinct identity
//!   CIDs (bytes inside the link, nothing to fetch), generated as it is read, so a test can offer
//!   gigabytes of links without holding them.

use ::cid::Cid;
use multihash::Multihash;

use crate::{
    block::{Block, DAG_PB, IDENTITY, RAW, sha256_cid},
    hamt::{FANOUT, MURMUR3_X64_64},
    pb::{PbLink, PbNode},
    source::{BlockError, BlockSource},
    unixfs::{DataType, UnixFsData},
};

/// A HAMT-sharded directory of `levels` buckets, each linking all 256 of its slots to the next
/// bucket (the last holds one file entry). Returns the root and the blocks.
pub fn hamt_bomb(levels: usize) -> (Cid, Vec<Block>) {
    let leaf = Block::new(::cid::Version::V1, RAW, b"the only file".to_vec());
    let mut blocks = vec![leaf.clone()];
    let bitmap = vec![0xffu8; FANOUT / 8];
    let meta = || UnixFsData {
        data: Some(bitmap.clone()),
        hash_type: Some(MURMUR3_X64_64),
        fanout: Some(FANOUT as u64),
        ..UnixFsData::new(DataType::HamtShard)
    };
    let last = PbNode {
        links: vec![PbLink { hash: leaf.cid, name: Some("00file".into()), tsize: Some(13) }],
        data: Some(meta().encode()),
    };
    let mut below = Block::new(::cid::Version::V1, DAG_PB, last.encode());
    blocks.push(below.clone());
    for _ in 1..levels {
        let node = PbNode {
            links: (0..FANOUT)
                .map(|slot| PbLink {
                    hash: below.cid,
                    name: Some(format!("{slot:02X}")),
                    tsize: None,
                })
                .collect(),
            data: Some(meta().encode()),
        };
        below = Block::new(::cid::Version::V1, DAG_PB, node.encode());
        blocks.push(below.clone());
    }
    (below.cid, blocks)
}

/// A UnixFS file of `levels` levels above a 1 KiB raw leaf, each node linking `width` times to
/// the node below (its `blocksizes` say so, so the file is well formed): `levels + 1` blocks, a
/// file of `width^levels` KiB. Returns the root and the blocks.
pub fn entity_bytes_bomb(levels: u32, width: usize) -> (Cid, Vec<Block>) {
    let leaf = Block::new(::cid::Version::V1, RAW, vec![7u8; 1024]);
    let mut size = 1024u64;
    let mut below = leaf.clone();
    let mut blocks = vec![leaf];
    for _ in 0..levels {
        let meta = UnixFsData {
            filesize: Some(size * width as u64),
            blocksizes: vec![size; width],
            ..UnixFsData::new(DataType::File)
        };
        let node = PbNode {
            links: (0..width)
                .map(|_| PbLink { hash: below.cid, name: Some(String::new()), tsize: Some(size) })
                .collect(),
            data: Some(meta.encode()),
        };
        size *= width as u64;
        below = Block::new(::cid::Version::V1, DAG_PB, node.encode());
        blocks.push(below.clone());
    }
    (below.cid, blocks)
}

/// A chain of `nodes` dag-pb nodes, each with `links` distinct identity CIDs (raw, four bytes
/// each) and one link to the next node — first when `chain_first`, last otherwise — generated as
/// they are read. 3,300 nodes of 65,535 links are 2 GiB of links.
///
/// The chain's CIDs are labels (the sha2-256 of the node's number), not hashes of the bytes
/// served: a test source that stands for a peer or a store that verified what it holds, so that
/// gigabytes need not be built (every driver takes its source's blocks as verified).
#[derive(Debug, Clone)]
pub struct IdentityLinks {
    /// Nodes in the chain.
    pub nodes: u32,
    /// Identity links per node.
    pub links: u32,
    /// Whether the link to the next node comes before the identity links.
    pub chain_first: bool,
    /// Bytes served so far.
    pub served: u64,
}

impl IdentityLinks {
    /// The chain's first node.
    pub fn root(&self) -> Cid {
        Self::node(0)
    }

    fn node(i: u32) -> Cid {
        sha256_cid(::cid::Version::V1, DAG_PB, format!("identity-links node {i}").as_bytes())
    }

    fn bytes(&self, i: u32) -> Vec<u8> {
        let mut links: Vec<PbLink> = (0..self.links)
            .map(|j| {
                let digest = (u64::from(i) << 32 | u64::from(j)).to_be_bytes();
                let hash = Multihash::<64>::wrap(IDENTITY, &digest).unwrap_or_default();
                PbLink { hash: Cid::new_v1(RAW, hash), name: None, tsize: None }
            })
            .collect();
        if i + 1 < self.nodes {
            let next = PbLink { hash: Self::node(i + 1), name: None, tsize: None };
            if self.chain_first {
                links.insert(0, next);
            } else {
                links.push(next);
            }
        }
        PbNode { links, data: None }.encode()
    }
}

impl BlockSource for IdentityLinks {
    type Bytes = Vec<u8>;

    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, BlockError> {
        // The chain is found by label; anything else is not held.
        let i =
            (0..self.nodes).find(|i| Self::node(*i) == *cid).ok_or(BlockError::Missing(*cid))?;
        let bytes = self.bytes(i);
        self.served += bytes.len() as u64;
        Ok(bytes)
    }
}
