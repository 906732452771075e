//! Reading UnixFS back: resolve a path inside a directory DAG and stream a file's bytes, or any
//! byte range of them, from a block source.
//!
//! Only the blocks that cover the requested range are fetched: each file node's `blocksizes`
//! say how many file bytes sit under each link, so subtrees outside the range are skipped.
//! Everything read is checked against its parent's claims (a raw leaf's length against its
//! block size, `blocksizes` against the number of links) and depth is bounded, so a hostile DAG
//! gets a typed error rather than a wrong answer or a stack overflow.
//!
//! The block source must return verified blocks (the CAR reader and the stores do).

use ::cid::Cid;

use crate::{
    block::{DAG_PB, RAW},
    pb::{PbError, PbNode},
    source::{BlockError, BlockSource},
    unixfs::{DataType, UnixFsData, UnixFsError},
};

/// Deepest file or path the reader follows.
pub const MAX_DEPTH: usize = 64;

/// Why bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The block source could not give a block the reader needs (missing, corrupt, or a fault).
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Reading needed more node visits than allowed (a DAG whose links repeat one subtree).
    #[error("reading the file needs more than {0} node visits")]
    TooManyVisits(u64),
    /// A dag-pb block does not decode.
    #[error("block {cid} is not valid dag-pb: {source}")]
    Pb {
        /// The block.
        cid: Cid,
        /// Why.
        source: PbError,
    },
    /// A dag-pb node's UnixFS metadata does not decode.
    #[error("block {cid} has invalid UnixFS metadata: {source}")]
    UnixFs {
        /// The block.
        cid: Cid,
        /// Why.
        source: UnixFsError,
    },
    /// The DAG contradicts itself (sizes, link counts) or is deeper than [`MAX_DEPTH`].
    #[error("block {cid} is inconsistent: {reason}")]
    Corrupt {
        /// The block.
        cid: Cid,
        /// What is wrong.
        reason: String,
    },
    /// A codec that is not UnixFS.
    #[error("block {cid} has codec 0x{codec:x}, not dag-pb or raw")]
    NotUnixFs {
        /// The block.
        cid: Cid,
        /// Its codec.
        codec: u64,
    },
    /// The path names something that is not a file.
    #[error("{0} is not a file")]
    NotAFile(Cid),
    /// A path component is looked up in something that is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(Cid),
    /// No entry of that name.
    #[error("no entry {name:?} in {dir}")]
    NoSuchEntry {
        /// The directory.
        dir: Cid,
        /// The name.
        name: String,
    },
    /// The range starts past the end of the file.
    #[error("range start {start} is past the end of the file ({size} bytes)")]
    RangeNotSatisfiable {
        /// Requested start.
        start: u64,
        /// File size.
        size: u64,
    },
}

/// A loaded block: a raw leaf keeps the source's bytes (no copy); dag-pb is decoded.
enum Node<B> {
    Raw(B),
    Pb(PbNode, UnixFsData),
}

fn load<S: BlockSource>(cid: &Cid, source: &mut S) -> Result<Node<S::Bytes>, ExportError> {
    let bytes = source.block(cid)?;
    match cid.codec() {
        RAW => Ok(Node::Raw(bytes)),
        DAG_PB => {
            let node = PbNode::decode(bytes.as_ref())
                .map_err(|source| ExportError::Pb { cid: *cid, source })?;
            let data = node.data.as_deref().ok_or_else(|| ExportError::Corrupt {
                cid: *cid,
                reason: "dag-pb node without UnixFS data".into(),
            })?;
            let meta = UnixFsData::decode(data, node.links.len())
                .map_err(|source| ExportError::UnixFs { cid: *cid, source })?;
            Ok(Node::Pb(node, meta))
        }
        codec => Err(ExportError::NotUnixFs { cid: *cid, codec }),
    }
}

/// Follows `path` (`a/b/c`, empty for the root itself) from `root` through directories.
pub fn resolve<S: BlockSource>(root: Cid, path: &str, mut source: S) -> Result<Cid, ExportError> {
    let mut current = root;
    for (depth, name) in path.split('/').filter(|p| !p.is_empty()).enumerate() {
        if depth >= MAX_DEPTH {
            return Err(ExportError::Corrupt { cid: current, reason: "path is too deep".into() });
        }
        let Node::Pb(node, meta) = load(&current, &mut source)? else {
            return Err(ExportError::NotADirectory(current));
        };
        current = match meta.kind {
            DataType::Directory => node
                .links
                .iter()
                .find(|l| l.name.as_deref() == Some(name))
                .map(|l| l.hash)
                .ok_or_else(|| ExportError::NoSuchEntry { dir: current, name: name.to_owned() })?,
            DataType::HamtShard => hamt_lookup(current, node, &meta, name, &mut source)?,
            _ => return Err(ExportError::NotADirectory(current)),
        };
    }
    Ok(current)
}

/// Finds `name` in the HAMT-sharded directory whose root bucket is `node`.
fn hamt_lookup<S: BlockSource>(
    dir: Cid,
    mut node: PbNode,
    meta: &UnixFsData,
    name: &str,
    source: &mut S,
) -> Result<Cid, ExportError> {
    let mut bucket = dir;
    let mut meta = meta.clone();
    for depth in 0..8 {
        if meta.kind != DataType::HamtShard
            || meta.fanout != Some(crate::hamt::FANOUT as u64)
            || meta.hash_type != Some(crate::hamt::MURMUR3_X64_64)
        {
            return Err(ExportError::Corrupt {
                cid: bucket,
                reason: format!(
                    "HAMT bucket with fanout {:?} and hash {:?}; only 256 and murmur3-x64-64 are read",
                    meta.fanout, meta.hash_type
                ),
            });
        }
        let labels = node.links.iter().map(|l| l.name.as_deref().unwrap_or_default());
        let Some((index, is_bucket)) = crate::hamt::lookup(labels, name, depth) else {
            return Err(ExportError::NoSuchEntry { dir, name: name.to_owned() });
        };
        let target = node.links[index].hash;
        if !is_bucket {
            return Ok(target);
        }
        let Node::Pb(next, next_meta) = load(&target, source)? else {
            return Err(ExportError::Corrupt {
                cid: target,
                reason: "HAMT bucket is not dag-pb".into(),
            });
        };
        (bucket, node, meta) = (target, next, next_meta);
    }
    Err(ExportError::Corrupt { cid: dir, reason: "HAMT deeper than its 64-bit hash".into() })
}

/// The size in bytes of the file at `cid`.
pub fn file_size<S: BlockSource>(cid: Cid, mut source: S) -> Result<u64, ExportError> {
    match load(&cid, &mut source)? {
        Node::Raw(data) => Ok(data.as_ref().len() as u64),
        Node::Pb(_, meta) if matches!(meta.kind, DataType::File | DataType::Raw) => {
            Ok(meta.filesize.unwrap_or_else(|| {
                meta.blocksizes.iter().sum::<u64>()
                    + meta.data.as_ref().map_or(0, |d| d.len() as u64)
            }))
        }
        Node::Pb(..) => Err(ExportError::NotAFile(cid)),
    }
}

/// Streams bytes `start..end` of the file at `cid` to `out` (`end` of `None`: to the end of the
/// file). Returns the file's size. Unbounded in visits: a reader of untrusted DAGs uses
/// [`read_file_within`].
pub fn read_file<S: BlockSource>(
    cid: Cid,
    start: u64,
    end: Option<u64>,
    source: S,
    out: impl FnMut(&[u8]),
) -> Result<u64, ExportError> {
    read_file_within(cid, start, end, u64::MAX, source, out)
}

/// [`read_file`], loading at most `max_visits` nodes (every load counts, a subtree linked twice
/// twice: what the range really costs, however few distinct blocks it has).
pub fn read_file_within<S: BlockSource>(
    cid: Cid,
    start: u64,
    end: Option<u64>,
    max_visits: u64,
    mut source: S,
    mut out: impl FnMut(&[u8]),
) -> Result<u64, ExportError> {
    let size = file_size(cid, &mut source)?;
    if start > size || (start == size && size > 0) {
        return Err(ExportError::RangeNotSatisfiable { start, size });
    }
    let end = end.map_or(size, |e| e.min(size));
    if end > start {
        let mut budget = Budget { left: max_visits, max: max_visits };
        copy(&cid, 0, None, (start, end), 0, &mut budget, &mut source, &mut out)?;
    }
    Ok(size)
}

/// Node loads left to a read.
struct Budget {
    left: u64,
    max: u64,
}

impl Budget {
    fn take(&mut self) -> Result<(), ExportError> {
        self.left = self.left.checked_sub(1).ok_or(ExportError::TooManyVisits(self.max))?;
        Ok(())
    }
}

/// Writes the part of node `cid` (covering file bytes `offset..`) that falls in `start..end`.
/// `expected` is the size the parent claims for this node.
#[allow(clippy::too_many_arguments)]
fn copy<S: BlockSource>(
    cid: &Cid,
    offset: u64,
    expected: Option<u64>,
    (start, end): (u64, u64),
    depth: usize,
    budget: &mut Budget,
    source: &mut S,
    out: &mut impl FnMut(&[u8]),
) -> Result<(), ExportError> {
    budget.take()?;
    if depth > MAX_DEPTH {
        return Err(ExportError::Corrupt { cid: *cid, reason: "file DAG is too deep".into() });
    }
    let corrupt = |reason: String| ExportError::Corrupt { cid: *cid, reason };
    let emit = |data: &[u8], at: u64, out: &mut dyn FnMut(&[u8])| {
        let lo = start.max(at);
        let hi = end.min(at + data.len() as u64);
        if lo < hi {
            out(&data[(lo - at) as usize..(hi - at) as usize]);
        }
    };
    match load(cid, source)? {
        Node::Raw(data) => {
            let data = data.as_ref();
            if let Some(e) = expected
                && e != data.len() as u64
            {
                return Err(corrupt(format!(
                    "raw leaf has {} bytes, its parent says {e}",
                    data.len()
                )));
            }
            emit(data, offset, out);
        }
        Node::Pb(node, meta) => {
            if !matches!(meta.kind, DataType::File | DataType::Raw) {
                return Err(ExportError::NotAFile(*cid));
            }
            if meta.blocksizes.len() != node.links.len() {
                return Err(corrupt(format!(
                    "{} links but {} blocksizes",
                    node.links.len(),
                    meta.blocksizes.len()
                )));
            }
            let inline = meta.data.as_deref().unwrap_or_default();
            let total = inline.len() as u64 + meta.blocksizes.iter().sum::<u64>();
            if let Some(e) = expected
                && e != total
            {
                return Err(corrupt(format!("node covers {total} bytes, its parent says {e}")));
            }
            emit(inline, offset, out);
            let mut at = offset + inline.len() as u64;
            for (link, &size) in node.links.iter().zip(&meta.blocksizes) {
                if at >= end {
                    break;
                }
                if at + size > start {
                    copy(&link.hash, at, Some(size), (start, end), depth + 1, budget, source, out)?;
                }
                at += size;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Block, DirectoryBuilder, ImportOptions, file::import_bytes, profile::Profile};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn store(blocks: &[Block]) -> HashMap<Cid, Vec<u8>> {
        blocks.iter().map(|b| (b.cid, b.data.clone())).collect()
    }

    fn read(
        cid: Cid,
        s: &HashMap<Cid, Vec<u8>>,
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<u8>, ExportError> {
        let mut out = Vec::new();
        read_file(cid, start, end, s, |b| out.extend_from_slice(b))?;
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trip_and_ranges() {
        let opts =
            ImportOptions { chunk_size: 10, max_links: 3, ..Profile::UnixfsV0_2015.options() };
        let bytes = data(1000);
        let (root, blocks) = import_bytes(&bytes, opts).unwrap();
        let s = store(&blocks);
        assert_eq!(read(root.cid, &s, 0, None).unwrap(), bytes);
        assert_eq!(read(root.cid, &s, 95, Some(517)).unwrap(), &bytes[95..517]);
        assert_eq!(read(root.cid, &s, 999, None).unwrap(), &bytes[999..]);
        assert_eq!(read(root.cid, &s, 5, Some(5)).unwrap(), b"");
        assert_eq!(
            read(root.cid, &s, 1000, None),
            Err(ExportError::RangeNotSatisfiable { start: 1000, size: 1000 })
        );
    }

    #[test]
    fn ranges_fetch_only_what_they_need() {
        let opts = ImportOptions { chunk_size: 10, max_links: 4, ..Profile::KuboCidV1.options() };
        let (root, blocks) = import_bytes(&data(1000), opts).unwrap();
        let s = store(&blocks);
        let mut fetched = 0;
        let mut out = Vec::new();
        read_file(
            root.cid,
            500,
            Some(510),
            crate::source::infallible(|c| {
                fetched += 1;
                s.get(c)
            }),
            |b| out.extend_from_slice(b),
        )
        .unwrap();
        assert_eq!(out.len(), 10);
        // file_size reads the root once; then one node per level down to one leaf.
        assert!(fetched <= 2 + 5, "fetched {fetched} blocks");
    }

    #[test]
    fn paths_in_directories() {
        let opts = Profile::UnixfsV1_2025.options();
        let mut blocks = Vec::new();
        let (file, fb) = import_bytes(b"deep file", opts).unwrap();
        blocks.extend(fb);
        let mut dir = DirectoryBuilder::new(opts);
        dir.add_file("a/b/c.txt", file).unwrap();
        let root = dir.finish(&mut |b| blocks.push(b)).unwrap();
        let s = store(&blocks);
        let found = resolve(root.cid, "/a/b/c.txt", &s).unwrap();
        assert_eq!(read(found, &s, 0, None).unwrap(), b"deep file");
        assert!(matches!(resolve(root.cid, "a/x", &s), Err(ExportError::NoSuchEntry { .. })));
        assert!(matches!(resolve(root.cid, "a/b/c.txt/d", &s), Err(ExportError::NotADirectory(_))));
        let a = resolve(root.cid, "a", &s).unwrap();
        assert_eq!(read(a, &s, 0, None), Err(ExportError::NotAFile(a)));
    }

    #[test]
    fn detects_lying_dags() {
        let opts = ImportOptions { chunk_size: 4, max_links: 2, ..Profile::KuboCidV1.options() };
        let (root, blocks) = import_bytes(b"0123456789", opts).unwrap();
        let mut s = store(&blocks);
        // Replace one leaf with a shorter block under the same CID key.
        let leaf = blocks[0].cid;
        s.insert(leaf, b"012".to_vec());
        assert!(matches!(read(root.cid, &s, 0, None), Err(ExportError::Corrupt { .. })));
        s.remove(&leaf);
        assert_eq!(read(root.cid, &s, 0, None), Err(ExportError::Block(BlockError::Missing(leaf))));
    }

    #[test]
    fn a_lying_block_source_cannot_loop_or_recurse_forever() {
        // A "cycle": the source answers a file node that links to its own CID. Honest hashing
        // makes this impossible, so only a broken or hostile source produces it; the depth
        // bound ends the read with an error.
        let leaf = crate::block::sha256_cid(cid::Version::V1, RAW, b"x");
        let me = crate::block::sha256_cid(cid::Version::V1, DAG_PB, b"me");
        let meta = UnixFsData {
            filesize: Some(1),
            blocksizes: vec![1],
            ..UnixFsData::new(DataType::File)
        };
        let looping = PbNode {
            links: vec![crate::pb::PbLink { hash: me, name: Some(String::new()), tsize: Some(1) }],
            data: Some(meta.encode()),
        }
        .encode();
        let s: HashMap<Cid, Vec<u8>> = [(me, looping), (leaf, b"x".to_vec())].into();
        assert!(matches!(read(me, &s, 0, None), Err(ExportError::Corrupt { .. })));
        let walked = crate::walk::dfs(me, crate::walk::WalkLimits::default(), &s, |_, _| {});
        assert!(walked.is_ok(), "the walker visits each CID once and stops");
    }

    #[test]
    fn hamt_with_an_unsupported_fanout_is_refused() {
        let (file, blocks) = import_bytes(b"x", Profile::KuboCidV1.options()).unwrap();
        let meta = UnixFsData {
            data: Some(vec![0x01]),
            hash_type: Some(crate::hamt::MURMUR3_X64_64),
            fanout: Some(16),
            ..UnixFsData::new(DataType::HamtShard)
        };
        let node = PbNode {
            links: vec![crate::pb::PbLink {
                hash: file.cid,
                name: Some("00x".into()),
                tsize: Some(1),
            }],
            data: Some(meta.encode()),
        };
        let bucket = Block::new(cid::Version::V1, DAG_PB, node.encode());
        let mut s = store(&blocks);
        s.insert(bucket.cid, bucket.data.clone());
        assert!(matches!(resolve(bucket.cid, "x", &s), Err(ExportError::Corrupt { .. })));
    }

    proptest! {
        /// import → export is the identity, for any data, chunking and width, and any range.
        #[test]
        fn import_export_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..3000),
                                    chunk in 1usize..64, width in 2usize..6, raw: bool, a: u16, b: u16) {
            let opts = ImportOptions { chunk_size: chunk, max_links: width, raw_leaves: raw,
                                       ..Profile::UnixfsV1_2025.options() };
            let (root, blocks) = import_bytes(&bytes, opts).unwrap();
            let s = store(&blocks);
            prop_assert_eq!(&read(root.cid, &s, 0, None).unwrap(), &bytes);
            let (lo, hi) = (u64::from(a.min(b)) % (bytes.len() as u64 + 1), u64::from(a.max(b)));
            if lo < bytes.len() as u64 {
                let hi_c = hi.min(bytes.len() as u64);
                prop_assert_eq!(read(root.cid, &s, lo, Some(hi)).unwrap(), &bytes[lo as usize..hi_c.max(lo) as usize]);
            }
        }
    }
}
