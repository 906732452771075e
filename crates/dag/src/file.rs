//! Streaming import of one file into a balanced UnixFS DAG.
//!
//! ```text
//!  bytes ──► chunker (one chunk buffer) ──► leaf ──► level 0: up to max_links links
//!                                                      │ full: one parent node
//!                                                      ▼
//!                                                    level 1 ... ──► root at finish
//! ```
//!
//! Memory is one chunk plus at most `max_links` links per level of the tree, whatever the file
//! size. The shape is the "balanced" layout of kubo and ipfs-unixfs-importer: leaves are grouped
//! `max_links` at a time, those parents again, until one node is left; a file of one chunk is
//! that chunk's leaf itself.

use ::cid::Cid;
use multihash::Multihash;

use crate::{
    block::{Block, DAG_PB, RAW},
    pb::{PbLink, PbNode},
    profile::{ImportOptions, OptionsError},
    unixfs::{DataType, UnixFsData},
};

/// A node of an imported DAG, as its parent links to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The node's CID.
    pub cid: Cid,
    /// Cumulative size: the node's block plus every block below it (a link's `Tsize`).
    pub dag_size: u64,
    /// File bytes under the node (0 for directories).
    pub file_size: u64,
}

/// Builds one file's DAG from pushed bytes.
#[derive(Debug)]
pub struct FileBuilder {
    opts: ImportOptions,
    chunk: Vec<u8>,
    levels: Vec<Vec<Imported>>,
    leaves: u64,
    /// A hashed leaf shorter than the leaf size was pushed: it must have been the last.
    short_leaf: bool,
}

/// Why [`FileBuilder::push_hashed_leaf`] refused a leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashedLeafError {
    /// The options make dag-pb leaves, whose CID is not the digest of the bytes.
    #[error("pre-hashed leaves need raw leaves")]
    NotRawLeaves,
    /// Bytes pushed before, or a short leaf that was not the last, break the leaf boundaries.
    #[error("a pre-hashed leaf must start on a leaf boundary (after whole leaves only)")]
    NotAligned,
    /// The leaf is empty or longer than the leaf size.
    #[error("a leaf of {len} bytes (leaves are at most {size})")]
    Size {
        /// Its length.
        len: usize,
        /// The leaf size.
        size: usize,
    },
}

impl FileBuilder {
    /// A builder with checked options.
    pub fn new(opts: ImportOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(Self {
            chunk: Vec::with_capacity(opts.chunk_size),
            opts,
            levels: vec![Vec::new()],
            leaves: 0,
            short_leaf: false,
        })
    }

    /// Adds file bytes; every block completed is handed to `out` (children before parents).
    pub fn push(&mut self, mut data: &[u8], out: &mut impl FnMut(Block)) {
        let size = self.opts.chunk_size;
        while !data.is_empty() {
            if self.chunk.is_empty() && data.len() >= size {
                let (whole, rest) = data.split_at(size);
                self.leaf(whole, out);
                data = rest;
                continue;
            }
            let take = (size - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == size {
                let chunk = std::mem::take(&mut self.chunk);
                self.leaf(&chunk, out);
                self.chunk = chunk;
                self.chunk.clear();
            }
        }
    }

    /// The leaf size for [`push_hashed_leaf`](Self::push_hashed_leaf), when the options allow
    /// it ([`ImportOptions::hashed_leaf_size`]).
    pub fn hashed_leaf_size(&self) -> Option<usize> {
        self.opts.hashed_leaf_size()
    }

    /// Adds one whole leaf that the caller hashed and stores itself: only its length and
    /// sha2-256 digest come in (in a browser the digest comes from WebCrypto, which uses the
    /// CPU's SHA instructions that WebAssembly lacks, and the bytes never need to enter wasm).
    /// Returns the leaf's CID; the leaf block is *not* handed to `out` (the caller writes it),
    /// the parents it completes are. The caller vouches for `sha256`. Every leaf but the file's
    /// last must be exactly [`hashed_leaf_size`](Self::hashed_leaf_size) bytes, and the builder
    /// must hold no bytes from [`push`](Self::push); the DAG is then the one `push` builds.
    pub fn push_hashed_leaf(
        &mut self,
        len: usize,
        sha256: [u8; 32],
        out: &mut impl FnMut(Block),
    ) -> Result<Cid, HashedLeafError> {
        let size = self.hashed_leaf_size().ok_or(HashedLeafError::NotRawLeaves)?;
        if !self.chunk.is_empty() || self.short_leaf {
            return Err(HashedLeafError::NotAligned);
        }
        if len == 0 || len > size {
            return Err(HashedLeafError::Size { len, size });
        }
        self.short_leaf = len < size;
        let hash = Multihash::wrap(crate::block::SHA2_256, &sha256).unwrap_or_default();
        let cid = Cid::new_v1(RAW, hash);
        let leaf = Imported { cid, dag_size: len as u64, file_size: len as u64 };
        self.add_leaf(leaf, out);
        Ok(cid)
    }

    /// Pushes everything `reader` yields, 1 MiB at a time; returns the bytes read.
    #[cfg(feature = "io")]
    pub fn push_reader(
        &mut self,
        mut reader: impl std::io::Read,
        out: &mut impl FnMut(Block),
    ) -> std::io::Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.push(&buf[..n], out);
            total += n as u64;
        }
    }

    /// Ends the file: emits the last leaf and the parents above it, and returns the root.
    pub fn finish(mut self, out: &mut impl FnMut(Block)) -> Imported {
        if !self.chunk.is_empty() || self.leaves == 0 {
            let chunk = std::mem::take(&mut self.chunk);
            self.leaf(&chunk, out);
        }
        let mut level = 0;
        loop {
            let higher = self.levels[level + 1..].iter().any(|l| !l.is_empty());
            if !higher && self.levels[level].len() == 1 {
                return self.levels[level].remove(0);
            }
            if !self.levels[level].is_empty() {
                let children = std::mem::take(&mut self.levels[level]);
                let parent = self.parent(&children, out);
                self.push_at(level + 1, parent);
            }
            level += 1;
        }
    }

    fn leaf(&mut self, chunk: &[u8], out: &mut impl FnMut(Block)) {
        let block = if self.opts.raw_leaves {
            Block::new(::cid::Version::V1, RAW, chunk.to_vec())
        } else {
            let node =
                PbNode { links: Vec::new(), data: Some(UnixFsData::file_leaf(chunk).encode()) };
            Block::new(self.opts.cid_version, DAG_PB, node.encode())
        };
        let leaf = Imported {
            cid: block.cid,
            dag_size: block.data.len() as u64,
            file_size: chunk.len() as u64,
        };
        out(block);
        self.add_leaf(leaf, out);
    }

    fn add_leaf(&mut self, leaf: Imported, out: &mut impl FnMut(Block)) {
        self.leaves += 1;
        self.push_at(0, leaf);
        // Reduce full levels now, so memory stays bounded.
        let mut level = 0;
        while self.levels[level].len() == self.opts.max_links {
            let children = std::mem::take(&mut self.levels[level]);
            let parent = self.parent(&children, out);
            self.push_at(level + 1, parent);
            level += 1;
        }
    }

    fn push_at(&mut self, level: usize, node: Imported) {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(node);
    }

    fn parent(&self, children: &[Imported], out: &mut impl FnMut(Block)) -> Imported {
        // Empty children carry no bytes; the reference importers leave them out.
        let included: Vec<&Imported> = children.iter().filter(|c| c.file_size > 0).collect();
        let meta = UnixFsData {
            filesize: Some(included.iter().map(|c| c.file_size).sum()),
            blocksizes: included.iter().map(|c| c.file_size).collect(),
            ..UnixFsData::new(DataType::File)
        };
        let node = PbNode {
            links: included
                .iter()
                .map(|c| PbLink { hash: c.cid, name: Some(String::new()), tsize: Some(c.dag_size) })
                .collect(),
            data: Some(meta.encode()),
        };
        let block = Block::new(self.opts.cid_version, DAG_PB, node.encode());
        let imported = Imported {
            cid: block.cid,
            dag_size: block.data.len() as u64 + included.iter().map(|c| c.dag_size).sum::<u64>(),
            file_size: meta.filesize.unwrap_or(0),
        };
        out(block);
        imported
    }
}

/// Imports `data` in one call; returns the root and the blocks in the order produced.
pub fn import_bytes(
    data: &[u8],
    opts: ImportOptions,
) -> Result<(Imported, Vec<Block>), OptionsError> {
    let mut blocks = Vec::new();
    let mut builder = FileBuilder::new(opts)?;
    let mut sink = |b| blocks.push(b);
    builder.push(data, &mut sink);
    let root = builder.finish(&mut sink);
    Ok((root, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_hashed_leaves_build_the_same_dag() {
        use sha2::Digest;
        let opts =
            ImportOptions { chunk_size: 1000, max_links: 3, ..crate::Profile::default().options() };
        for len in [1usize, 999, 1000, 1001, 5500, 12_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (root, blocks) = import_bytes(&data, opts).unwrap();
            let mut builder = FileBuilder::new(opts).unwrap();
            assert_eq!(builder.hashed_leaf_size(), Some(1000));
            let mut got = Vec::new();
            for leaf in data.chunks(1000) {
                let digest: [u8; 32] = sha2::Sha256::digest(leaf).into();
                // The caller writes the leaf block itself, before the parents it completes.
                let mut parents = Vec::new();
                let cid =
                    builder.push_hashed_leaf(leaf.len(), digest, &mut |b| parents.push(b)).unwrap();
                got.push(Block { cid, data: leaf.to_vec() });
                got.extend(parents);
            }
            let top = builder.finish(&mut |b| got.push(b));
            assert_eq!(top, root, "{len} bytes");
            assert!(got == blocks, "{len} bytes: the blocks differ");
        }
    }

    #[test]
    fn pre_hashed_leaves_refuse_misuse() {
        let opts = ImportOptions { chunk_size: 1000, ..crate::Profile::default().options() };
        let mut b = FileBuilder::new(opts).unwrap();
        let mut sink = |_: Block| {};
        assert_eq!(
            b.push_hashed_leaf(1001, [0; 32], &mut sink),
            Err(HashedLeafError::Size { len: 1001, size: 1000 })
        );
        assert!(b.push_hashed_leaf(0, [0; 32], &mut sink).is_err());
        b.push_hashed_leaf(10, [0; 32], &mut sink).unwrap();
        assert_eq!(b.push_hashed_leaf(10, [0; 32], &mut sink), Err(HashedLeafError::NotAligned));
        let mut b = FileBuilder::new(opts).unwrap();
        b.push(&[1; 10], &mut sink);
        assert_eq!(b.push_hashed_leaf(1000, [0; 32], &mut sink), Err(HashedLeafError::NotAligned));
        let v0 = FileBuilder::new(crate::Profile::UnixfsV0_2015.options()).unwrap();
        assert_eq!(v0.hashed_leaf_size(), None);
    }
    use crate::profile::Profile;

    #[test]
    fn empty_files_match_kubo() {
        let (v0, blocks) = import_bytes(b"", Profile::UnixfsV0_2015.options()).unwrap();
        assert_eq!(v0.cid.to_string(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        assert_eq!(blocks.len(), 1);
        let (v1, _) = import_bytes(b"", Profile::UnixfsV1_2025.options()).unwrap();
        assert_eq!(
            v1.cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn small_file_is_its_leaf() {
        let (root, blocks) = import_bytes(b"hello world\n", Profile::KuboCidV1.options()).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(root.cid, blocks[0].cid);
        assert_eq!(root.cid.codec(), RAW);
        let (v0, _) = import_bytes(b"hello world\n", Profile::UnixfsV0_2015.options()).unwrap();
        assert_eq!(v0.cid.to_string(), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
    }

    #[test]
    fn split_pushes_match_one_push() {
        let opts = ImportOptions { chunk_size: 7, max_links: 3, ..Profile::KuboCidV1.options() };
        let data: Vec<u8> = (0..200u8).collect();
        let (whole, whole_blocks) = import_bytes(&data, opts).unwrap();
        for step in [1, 2, 5, 7, 13, 64] {
            let mut blocks = Vec::new();
            let mut sink = |b| blocks.push(b);
            let mut b = FileBuilder::new(opts).unwrap();
            for piece in data.chunks(step) {
                b.push(piece, &mut sink);
            }
            assert_eq!(b.finish(&mut sink), whole, "step {step}");
            assert_eq!(blocks, whole_blocks);
        }
        assert_eq!(whole.file_size, 200);
    }

    #[test]
    fn balanced_shape() {
        // 10 chunks of 1 byte, 3 links per node: 10 → 4 → 2 → 1.
        let opts = ImportOptions { chunk_size: 1, max_links: 3, ..Profile::KuboCidV1.options() };
        let (root, blocks) = import_bytes(&[1u8; 10], opts).unwrap();
        // Equal leaves share a CID but are each produced.
        assert_eq!(blocks.len(), 10 + 4 + 2 + 1);
        let root_node = PbNode::decode(&blocks.last().unwrap().data).unwrap();
        assert_eq!(root_node.links.len(), 2);
        let meta = UnixFsData::decode(root_node.data.as_deref().unwrap(), 16).unwrap();
        assert_eq!(meta.blocksizes, [9, 1]);
        assert_eq!(root.file_size, 10);
        let total: u64 = blocks.iter().map(|b| b.data.len() as u64).sum();
        assert_eq!(root.dag_size, total);
    }
}
