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
