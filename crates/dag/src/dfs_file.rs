//! Reading a UnixFS file from its blocks as they arrive in depth-first order — the order of a
//! trustless gateway's CAR (`order=dfs`, `dups=n`) — so a download is verified and written out
//! as it streams, without holding the file.
//!
//! Each block must be the next one the DAG needs (its parent named it, in link order): a block
//! out of place, a node that is not a file, or a stream that ends early is an error. A block the
//! file references again later (identical chunks are sent once with `dups=n`) is replayed from a
//! cache of the most recent blocks, within a byte budget; a repetition farther back than the
//! budget holds fails with [`DfsFileError::TooMuchRepetition`]. Every replay counts as a link
//! visit against the walk's limits ([`Walker::revisit`]), so a file whose links repeat one
//! subtree level after level stops at the visit budget.

use std::collections::{HashMap, VecDeque};

use ::cid::Cid;

use crate::{
    block::{DAG_PB, IDENTITY, RAW},
    pb::PbNode,
    unixfs::{DataType, UnixFsData},
    walk::{WalkError, WalkLimits, Walker, inline},
};

/// Why the stream is not the file asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DfsFileError {
    /// A block arrived where another was needed.
    #[error("block {got} arrived where {expected} was needed")]
    Unexpected {
        /// What the DAG needs next.
        expected: Box<Cid>,
        /// What arrived.
        got: Box<Cid>,
    },
    /// A block arrived after the file was complete.
    #[error("block {0} arrived after the file was complete")]
    Extra(Box<Cid>),
    /// The DAG is not a file (a directory, a symlink, or another codec).
    #[error("{0} is not a UnixFS file")]
    NotAFile(Box<Cid>),
    /// A node does not decode.
    #[error("block {cid} is malformed: {reason}")]
    Malformed {
        /// The block.
        cid: Box<Cid>,
        /// Why.
        reason: String,
    },
    /// Repeated chunks need more memory than allowed.
    #[error("the file repeats more than {0} bytes of chunks")]
    TooMuchRepetition(usize),
    /// The stream ended before the file did.
    #[error("the stream ended with {0} blocks of the file missing")]
    Truncated(usize),
    /// The DAG breaks the walk's limits.
    #[error(transparent)]
    Walk(Box<WalkError>),
}

impl From<WalkError> for DfsFileError {
    fn from(e: WalkError) -> Self {
        Self::Walk(Box::new(e))
    }
}

/// Streams a UnixFS file out of its blocks in depth-first order.
#[derive(Debug)]
pub struct DfsFileReader {
    /// The order the blocks must arrive in, and the limits: the shared walker.
    walker: Walker,
    /// The blocks the file's bytes need next (repeated blocks included), last first.
    expected: Vec<Cid>,
    cache: HashMap<Cid, Vec<u8>>,
    order: VecDeque<Cid>,
    cache_bytes: usize,
    max_cache: usize,
    emitted: u64,
}

impl DfsFileReader {
    /// A reader for the file under `root`; repeated chunks may use up to `max_cache` bytes.
    pub fn new(root: Cid, max_cache: usize) -> Self {
        Self::with_limits(root, max_cache, WalkLimits::default())
    }

    /// [`new`](Self::new) within `limits`.
    pub fn with_limits(root: Cid, max_cache: usize, limits: WalkLimits) -> Self {
        Self {
            walker: Walker::new(root, limits),
            expected: vec![root],
            cache: HashMap::new(),
            order: VecDeque::new(),
            cache_bytes: 0,
            max_cache,
            emitted: 0,
        }
    }

    /// File bytes written so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Whether the whole file has been read.
    pub fn is_done(&self) -> bool {
        self.expected.is_empty()
    }

    /// Takes the next block (already verified against its CID), appending the file bytes it
    /// completes to `out`.
    pub fn push(&mut self, cid: &Cid, data: &[u8], out: &mut Vec<u8>) -> Result<(), DfsFileError> {
        self.drain(out)?;
        let Some(wanted) = self.walk_inline()? else {
            return Err(DfsFileError::Extra(Box::new(*cid)));
        };
        if wanted != *cid {
            return Err(DfsFileError::Unexpected {
                expected: Box::new(wanted),
                got: Box::new(*cid),
            });
        }
        self.walker.visit(data)?;
        match self.expected.pop() {
            Some(next) if next == *cid => {}
            // The bytes need a repeated block the stream sent earlier and the cache let go.
            Some(_) => return Err(DfsFileError::TooMuchRepetition(self.max_cache)),
            None => return Err(DfsFileError::Extra(Box::new(*cid))),
        }
        self.release(cid, data)?;
        self.process(cid, data, out)?;
        self.drain(out)
    }

    /// Checks the file is complete.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), DfsFileError> {
        self.drain(out)?;
        self.walk_inline()?;
        if self.expected.is_empty() {
            Ok(())
        } else {
            Err(DfsFileError::Truncated(self.expected.len()))
        }
    }

    /// The next block the stream must carry: the walk's next, past identity blocks (which
    /// travel inside their CIDs).
    fn walk_inline(&mut self) -> Result<Option<Cid>, DfsFileError> {
        while let Some((cid, _)) = self.walker.peek()? {
            let Some(data) = inline(&cid) else { return Ok(Some(cid)) };
            self.walker.visit(data)?;
        }
        Ok(None)
    }

    /// Serves expectations that need no new block: inline (identity) blocks and cached ones.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), DfsFileError> {
        while let Some(top) = self.expected.last().copied() {
            let data = if top.hash().code() == IDENTITY {
                top.hash().digest().to_vec()
            } else if let Some(data) = self.cache.get(&top) {
                data.clone()
            } else {
                return Ok(());
            };
            self.expected.pop();
            // A replay reads a link again: it counts against the walk's visits, so a file whose
            // links all repeat one subtree costs what it reads, not what it dedups to.
            self.walker.revisit(1)?;
            self.release(&top, &data)?;
            self.process(&top, &data, out)?;
        }
        Ok(())
    }

    /// Remembers a block for a later repetition, dropping the oldest beyond the budget.
    fn release(&mut self, cid: &Cid, data: &[u8]) -> Result<(), DfsFileError> {
        if cid.hash().code() == IDENTITY || self.cache.contains_key(cid) {
            return Ok(());
        }
        if data.len() > self.max_cache {
            return Ok(());
        }
        self.cache.insert(*cid, data.to_vec());
        self.order.push_back(*cid);
        self.cache_bytes += data.len();
        while self.cache_bytes > self.max_cache {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(bytes) = self.cache.remove(&old) {
                self.cache_bytes -= bytes.len();
            }
        }
        Ok(())
    }

    fn process(&mut self, cid: &Cid, data: &[u8], out: &mut Vec<u8>) -> Result<(), DfsFileError> {
        let malformed = |reason: String| DfsFileError::Malformed { cid: Box::new(*cid), reason };
        match cid.codec() {
            RAW => {
                out.extend_from_slice(data);
                self.emitted += data.len() as u64;
                Ok(())
            }
            DAG_PB => {
                let node = PbNode::decode(data).map_err(|e| malformed(e.to_string()))?;
                let meta =
                    UnixFsData::decode(node.data.as_deref().unwrap_or_default(), node.links.len())
                        .map_err(|e| malformed(e.to_string()))?;
                if !matches!(meta.kind, DataType::File | DataType::Raw) {
                    return Err(DfsFileError::NotAFile(Box::new(*cid)));
                }
                if let Some(bytes) = &meta.data {
                    out.extend_from_slice(bytes);
                    self.emitted += bytes.len() as u64;
                }
                let queued = self.walker.limits().max_queued;
                if (self.expected.len() + node.links.len()) as u64 > queued {
                    return Err(WalkError::TooManyQueued(queued).into());
                }
                for link in node.links.iter().rev() {
                    self.expected.push(link.hash);
                }
                Ok(())
            }
            _ => Err(DfsFileError::NotAFile(Box::new(*cid))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::WalkLimits;
    use crate::{Profile, file::import_bytes, walk::dfs};

    fn stream(data: &[u8], chunk: usize) -> (Cid, Vec<(Cid, Vec<u8>)>) {
        let mut opts = Profile::KuboCidV1.options();
        opts.chunk_size = chunk;
        opts.max_links = 3;
        let (root, blocks) = import_bytes(data, opts).unwrap();
        let map: HashMap<Cid, Vec<u8>> = blocks.into_iter().map(|b| (b.cid, b.data)).collect();
        let mut order = Vec::new();
        dfs(root.cid, WalkLimits::default(), &map, |c, d| order.push((*c, d.to_vec()))).unwrap();
        (root.cid, order)
    }

    #[test]
    fn reads_a_file_back_from_dfs_order_even_with_repeated_chunks() {
        // Repeated chunks: the CAR carries each once; the reader replays them.
        let mut data = vec![7u8; 4000];
        data.extend((0..3000u32).map(|i| (i * 31 % 251) as u8));
        data.extend(vec![7u8; 4000]);
        let (root, order) = stream(&data, 500);
        let mut reader = DfsFileReader::new(root, 1 << 20);
        let mut out = Vec::new();
        for (cid, bytes) in &order {
            reader.push(cid, bytes, &mut out).unwrap();
        }
        reader.finish(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(reader.is_done());
    }

    #[test]
    fn refuses_blocks_out_of_place_extra_or_missing() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let (root, order) = stream(&data, 700);
        let mut out = Vec::new();
        let mut reader = DfsFileReader::new(root, 0);
        reader.push(&order[0].0, &order[0].1, &mut out).unwrap();
        let err = reader.push(&order[2].0, &order[2].1, &mut out).unwrap_err();
        assert!(matches!(err, DfsFileError::Unexpected { .. }));

        let mut reader = DfsFileReader::new(root, 0);
        for (cid, bytes) in &order[..order.len() - 1] {
            reader.push(cid, bytes, &mut out).unwrap();
        }
        assert!(matches!(reader.finish(&mut out), Err(DfsFileError::Truncated(1))));
        let last = order.last().unwrap();
        reader.push(&last.0, &last.1, &mut out).unwrap();
        assert!(matches!(reader.push(&last.0, &last.1, &mut out), Err(DfsFileError::Extra(_))));
    }

    proptest::proptest! {
        /// Any file, any chunking, read back from its depth-first blocks; arbitrary blocks
        /// never panic the reader.
        #[test]
        fn round_trips_and_never_panics(
            data in proptest::collection::vec(0u8..4, 0..6000),
            chunk in 16usize..700,
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let (root, order) = stream(&data, chunk);
            let mut reader = DfsFileReader::new(root, 1 << 20);
            let mut out = Vec::new();
            for (cid, bytes) in &order {
                reader.push(cid, bytes, &mut out).unwrap();
            }
            reader.finish(&mut out).unwrap();
            proptest::prop_assert_eq!(&out, &data);
            let mut reader = DfsFileReader::new(root, 1 << 20);
            let _ = reader.push(&root, &garbage, &mut out);
        }
    }
}
