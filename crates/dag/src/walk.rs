//! Walking a DAG: the links of a block, and a bounded depth-first traversal from a root.
//!
//! The walker follows dag-pb links, dag-cbor links (CIDs under tag 42, anywhere in the value),
//! and nothing out of raw blocks. Blocks named by an identity multihash carry their bytes in
//! the CID and are never fetched. Every walk is bounded ([`WalkLimits`]): depth, links per
//! block, total blocks and total bytes, so a hostile DAG costs at most what the caller allows.

use std::collections::HashSet;

use ::cid::Cid;

use crate::{
    block::{DAG_CBOR, DAG_PB, IDENTITY, RAW},
    pb::{PbError, PbNode},
};

/// Why a walk stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// A block the walk needs is not available.
    #[error("block {0} is missing")]
    Missing(Cid),
    /// A dag-pb block does not decode.
    #[error("block {cid} is not valid dag-pb: {source}")]
    BadNode {
        /// The block.
        cid: Cid,
        /// Why.
        source: PbError,
    },
    /// A dag-cbor block does not decode.
    #[error("block {cid} is not valid dag-cbor: {reason}")]
    BadCbor {
        /// The block.
        cid: Cid,
        /// Why.
        reason: String,
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
}

impl Default for WalkLimits {
    /// Generous bounds for UnixFS: 4096 levels, 65,536 links per block, no block or byte limit.
    fn default() -> Self {
        Self { max_depth: 4096, max_links: 1 << 16, max_blocks: u64::MAX, max_bytes: u64::MAX }
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
            let mut out = Vec::new();
            let rest = cbor_links(data, 0, &mut out)
                .map_err(|reason| WalkError::BadCbor { cid: *cid, reason })?;
            if !rest.is_empty() {
                return Err(WalkError::BadCbor { cid: *cid, reason: "trailing bytes".into() });
            }
            Ok(out)
        }
        codec => Err(WalkError::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// Reads one CBOR item from `data`, collecting tag-42 CIDs; returns the bytes after it.
fn cbor_links<'a>(data: &'a [u8], nesting: usize, out: &mut Vec<Cid>) -> Result<&'a [u8], String> {
    if nesting > 256 {
        return Err("nested deeper than 256".into());
    }
    let (&first, mut rest) = data.split_first().ok_or("truncated")?;
    let (major, info) = (first >> 5, first & 0x1f);
    let arg = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            if rest.len() < n {
                return Err("truncated".into());
            }
            let (v, tail) = rest.split_at(n);
            rest = tail;
            v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }
        _ => return Err("indefinite lengths and reserved values are not dag-cbor".into()),
    };
    let take = |rest: &'a [u8], n: u64| -> Result<(&'a [u8], &'a [u8]), String> {
        let n = usize::try_from(n).map_err(|_| "length overflows")?;
        if rest.len() < n { Err("truncated".into()) } else { Ok(rest.split_at(n)) }
    };
    match major {
        0 | 1 | 7 => Ok(rest),
        2 | 3 => Ok(take(rest, arg)?.1),
        4 | 5 => {
            let items =
                if major == 5 { arg.checked_mul(2).ok_or("length overflows")? } else { arg };
            // Every item takes at least one byte: a count beyond the input is a lie.
            if items > rest.len() as u64 {
                return Err("more items than bytes".into());
            }
            for _ in 0..items {
                rest = cbor_links(rest, nesting + 1, out)?;
            }
            Ok(rest)
        }
        6 if arg == 42 => {
            let (&head, tail) = rest.split_first().ok_or("truncated")?;
            let len = match head {
                0x40..=0x57 => u64::from(head - 0x40),
                0x58 => u64::from(*tail.first().ok_or("truncated")?),
                _ => return Err("tag 42 must hold a short byte string".into()),
            };
            let tail = if head == 0x58 { &tail[1..] } else { tail };
            let (bytes, after) = take(tail, len)?;
            let Some((0, raw)) = bytes.split_first() else {
                return Err("tag 42 bytes must start with 0x00".into());
            };
            let mut reader = raw;
            let cid =
                Cid::read_bytes(&mut reader).map_err(|e| format!("bad CID in tag 42: {e}"))?;
            if !reader.is_empty() || cid.to_bytes() != raw {
                return Err("CID in tag 42 is not canonically encoded".into());
            }
            out.push(cid);
            Ok(after)
        }
        6 => cbor_links(rest, nesting + 1, out),
        _ => Err("unknown major type".into()),
    }
}

/// Visits every block reachable from `root` once, depth first, parents before children and
/// children in link order (the order of `ipfs dag export`), within `limits`. `get` returns a
/// block's (verified) bytes; `visit` receives each block.
pub fn dfs_limited<B: AsRef<[u8]>>(
    root: Cid,
    limits: WalkLimits,
    mut get: impl FnMut(&Cid) -> Option<B>,
    mut visit: impl FnMut(&Cid, &[u8]),
) -> Result<WalkStats, WalkError> {
    let mut seen = HashSet::new();
    let mut stats = WalkStats::default();
    let mut stack = vec![(root, 0usize)];
    while let Some((cid, depth)) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        if depth > limits.max_depth {
            return Err(WalkError::TooDeep { cid, max: limits.max_depth });
        }
        stats.blocks += 1;
        if stats.blocks > limits.max_blocks {
            return Err(WalkError::TooManyBlocks(limits.max_blocks));
        }
        stats.depth = stats.depth.max(depth);
        let inline;
        let fetched;
        let data: &[u8] = if cid.hash().code() == IDENTITY {
            inline = cid.hash().digest().to_vec();
            &inline
        } else {
            fetched = get(&cid).ok_or(WalkError::Missing(cid))?;
            fetched.as_ref()
        };
        stats.bytes += data.len() as u64;
        if stats.bytes > limits.max_bytes {
            return Err(WalkError::TooManyBytes(limits.max_bytes));
        }
        let children = links(&cid, data)?;
        if children.len() > limits.max_links {
            return Err(WalkError::TooManyLinks {
                cid,
                count: children.len(),
                max: limits.max_links,
            });
        }
        visit(&cid, data);
        stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
    }
    Ok(stats)
}

/// [`dfs_limited`] with [`WalkLimits::default`].
pub fn dfs<B: AsRef<[u8]>>(
    root: Cid,
    get: impl FnMut(&Cid) -> Option<B>,
    visit: impl FnMut(&Cid, &[u8]),
) -> Result<(), WalkError> {
    dfs_limited(root, WalkLimits::default(), get, visit).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Block, ImportOptions, block::sha256_cid, file::import_bytes, profile::Profile};
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
        dfs(root.cid, |c| s.get(c), |c, _| order.push(*c)).unwrap();
        // root, left parent (a, b); the right parent is the same node as the left: visited once.
        let (a, b, left) = (blocks[0].cid, blocks[1].cid, blocks[2].cid);
        assert_eq!(order, [root.cid, left, a, b]);
        let missing = dfs(root.cid, |_| None::<Vec<u8>>, |_, _| {});
        assert_eq!(missing, Err(WalkError::Missing(root.cid)));
    }

    #[test]
    fn limits_stop_the_walk() {
        let opts = ImportOptions { chunk_size: 1, max_links: 2, ..Profile::KuboCidV1.options() };
        let data: Vec<u8> = (0..64u8).collect();
        let (root, blocks) = import_bytes(&data, opts).unwrap();
        let s = store(&blocks);
        let walk = |limits| dfs_limited(root.cid, limits, |c| s.get(c), |_, _| {});
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
    }

    #[test]
    fn dag_cbor_links_and_identity_blocks() {
        let leaf = sha256_cid(cid::Version::V1, RAW, b"leaf");
        let inline = Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(IDENTITY, b"tiny").unwrap());
        // {"a": [tag42(leaf), 1, "x"], "b": {"c": tag42(inline)}}
        let mut cbor = vec![0xa2, 0x61, b'a', 0x83];
        let bytes = leaf.to_bytes();
        cbor.extend([0xd8, 0x2a, 0x58, bytes.len() as u8 + 1, 0x00]);
        cbor.extend(bytes);
        cbor.extend([0x01, 0x61, b'x', 0x61, b'b', 0xa1, 0x61, b'c']);
        let bytes = inline.to_bytes();
        cbor.extend([0xd8, 0x2a, 0x40 + bytes.len() as u8 + 1, 0x00]);
        cbor.extend(bytes);
        let root = sha256_cid(cid::Version::V1, DAG_CBOR, &cbor);
        assert_eq!(links(&root, &cbor).unwrap(), [leaf, inline]);

        let s: HashMap<Cid, Vec<u8>> = [(root, cbor.clone()), (leaf, b"leaf".to_vec())].into();
        let mut seen = Vec::new();
        let stats = dfs_limited(
            root,
            WalkLimits::default(),
            |c| s.get(c),
            |c, d| seen.push((*c, d.to_vec())),
        )
        .unwrap();
        assert_eq!(stats.blocks, 3);
        assert_eq!(seen[2], (inline, b"tiny".to_vec()));

        for bad in [
            &[0x9f][..],
            &[0x83, 0x01],
            &[0xd8, 0x2a, 0x41, 0x01],
            &[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(matches!(links(&root, bad), Err(WalkError::BadCbor { .. })), "{bad:?}");
        }
        assert!(matches!(links(&root, &[0x01, 0x02]), Err(WalkError::BadCbor { .. })));
        let deep = [vec![0x81; 1000], vec![0x01]].concat();
        assert!(matches!(links(&root, &deep), Err(WalkError::BadCbor { .. })));
    }
}
