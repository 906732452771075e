//! Directory trees: entries added by path, assembled bottom-up into UnixFS directories.
//!
//! Sans-io: the caller imports each file (with [`crate::file::FileBuilder`]) and adds the result
//! here under its path; empty directories are added by path too. [`DirectoryBuilder::finish`]
//! writes every directory node, children before parents, links sorted by the bytes of their
//! names as dag-pb requires.

use std::collections::BTreeMap;

use crate::{
    block::{Block, DAG_PB},
    file::Imported,
    pb::{PbLink, PbNode},
    profile::{ImportOptions, ShardStrategy},
    unixfs::{DataType, UnixFsData},
};

/// Why an entry cannot be added, or the tree not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirError {
    /// A path component is empty, `.`, `..`, or contains `/` or NUL.
    #[error("invalid name {0:?} in a path")]
    InvalidName(String),
    /// Two entries have the same path, or a file is where a directory is needed.
    #[error("{0:?} is added twice, or is both a file and a directory")]
    Conflict(String),
    /// The directory could not be sharded.
    #[error("directory {path:?}: {source}")]
    Hamt {
        /// The directory.
        path: String,
        /// Why.
        source: crate::hamt::HamtError,
    },
}

#[derive(Debug)]
enum Node {
    File(Imported),
    Dir(BTreeMap<String, Node>),
}

/// Collects a directory tree's entries, then writes its directory nodes.
#[derive(Debug)]
pub struct DirectoryBuilder {
    opts: ImportOptions,
    root: BTreeMap<String, Node>,
}

fn check_name(name: &str) -> Result<(), DirError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(DirError::InvalidName(name.to_owned()));
    }
    Ok(())
}

pub(crate) fn components(path: &str) -> Result<Vec<&str>, DirError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(DirError::InvalidName(path.to_owned()));
    }
    for p in &parts {
        check_name(p)?;
    }
    Ok(parts)
}

impl DirectoryBuilder {
    /// An empty tree.
    pub fn new(opts: ImportOptions) -> Self {
        Self { opts, root: BTreeMap::new() }
    }

    fn dir_at(
        &mut self,
        parts: &[&str],
        path: &str,
    ) -> Result<&mut BTreeMap<String, Node>, DirError> {
        let mut dir = &mut self.root;
        for part in parts {
            let entry = dir.entry((*part).to_owned()).or_insert_with(|| Node::Dir(BTreeMap::new()));
            dir = match entry {
                Node::Dir(d) => d,
                Node::File(_) => return Err(DirError::Conflict(path.to_owned())),
            };
        }
        Ok(dir)
    }

    /// Adds an imported file (or any imported node) at `path` (`a/b/c.txt`).
    pub fn add_file(&mut self, path: &str, node: Imported) -> Result<(), DirError> {
        let parts = components(path)?;
        let (name, parents) =
            parts.split_last().ok_or_else(|| DirError::InvalidName(path.to_owned()))?;
        let dir = self.dir_at(parents, path)?;
        if dir.contains_key(*name) {
            return Err(DirError::Conflict(path.to_owned()));
        }
        dir.insert((*name).to_owned(), Node::File(node));
        Ok(())
    }

    /// Adds a directory at `path`, empty unless entries are added below it.
    pub fn add_dir(&mut self, path: &str) -> Result<(), DirError> {
        let parts = components(path)?;
        self.dir_at(&parts, path).map(|_| ())
    }

    /// Adds a symbolic link at `path` pointing at `target`; its block is handed to `out`.
    pub fn add_symlink(
        &mut self,
        path: &str,
        target: &str,
        out: &mut impl FnMut(Block),
    ) -> Result<(), DirError> {
        let node = symlink(&self.opts, target, out);
        self.add_file(path, node)
    }

    /// Writes every directory node (children first) and returns the root directory.
    pub fn finish(self, out: &mut impl FnMut(Block)) -> Result<Imported, DirError> {
        let opts = self.opts;
        write_dir(&opts, "", self.root, out)
    }
}

/// Writes a UnixFS symlink node whose target is `target`.
pub fn symlink(opts: &ImportOptions, target: &str, out: &mut impl FnMut(Block)) -> Imported {
    let meta =
        UnixFsData { data: Some(target.as_bytes().to_vec()), ..UnixFsData::new(DataType::Symlink) };
    let node = PbNode { links: Vec::new(), data: Some(meta.encode()) };
    let block = Block::new(opts.cid_version, DAG_PB, node.encode());
    let imported = Imported { cid: block.cid, dag_size: block.data.len() as u64, file_size: 0 };
    out(block);
    imported
}

/// A directory's size as the sharding decision estimates it.
///
/// Like ipfs-unixfs-importer, which decides while entries are still being added, only entries
/// that are not directories count: a subdirectory has no CID yet at that point and adds nothing.
fn estimate(opts: &ImportOptions, entries: &[(String, Imported, bool)]) -> usize {
    entries
        .iter()
        .filter(|(_, _, is_dir)| !is_dir)
        .map(|(name, child, _)| {
            let cid_len = child.cid.encoded_len();
            match opts.shard_strategy {
                ShardStrategy::LinksBytes => name.len() + cid_len,
                ShardStrategy::BlockBytes => {
                    let link = PbLink {
                        hash: child.cid,
                        name: Some(name.clone()),
                        tsize: Some(child.dag_size),
                    };
                    let mut buf = Vec::new();
                    PbNode { links: vec![link], data: None }.encode_into(&mut buf);
                    buf.len()
                }
            }
        })
        .sum::<usize>()
        + match opts.shard_strategy {
            ShardStrategy::LinksBytes => 0,
            // The node's Data field: the directory's UnixFS metadata, length-prefixed.
            ShardStrategy::BlockBytes => {
                let data = UnixFsData::new(DataType::Directory).encode().len();
                1 + crate::varint::encoded_len(data as u64) + data
            }
        }
}

fn write_dir(
    opts: &ImportOptions,
    path: &str,
    entries: BTreeMap<String, Node>,
    out: &mut impl FnMut(Block),
) -> Result<Imported, DirError> {
    let mut children = Vec::with_capacity(entries.len());
    for (name, node) in entries {
        let (child, is_dir) = match node {
            Node::File(imported) => (imported, false),
            Node::Dir(sub) => (write_dir(opts, &format!("{path}/{name}"), sub, out)?, true),
        };
        children.push((name, child, is_dir));
    }
    // The threshold is the largest size kept flat (IPIP-499: shard only when it is exceeded).
    if estimate(opts, &children) > opts.shard_threshold {
        let entries = children.into_iter().map(|(name, child, _)| (name, child)).collect();
        let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
        return crate::hamt::write(opts, entries, out)
            .map_err(|source| DirError::Hamt { path, source });
    }
    let children: Vec<(String, Imported)> = children.into_iter().map(|(n, c, _)| (n, c)).collect();
    // BTreeMap<String> iterates in byte order of the UTF-8 names: dag-pb's link order.
    let node = PbNode {
        links: children
            .iter()
            .map(|(name, c)| PbLink {
                hash: c.cid,
                name: Some(name.clone()),
                tsize: Some(c.dag_size),
            })
            .collect(),
        data: Some(UnixFsData::new(DataType::Directory).encode()),
    };
    let block = Block::new(opts.cid_version, DAG_PB, node.encode());
    let imported = Imported {
        cid: block.cid,
        dag_size: block.data.len() as u64 + children.iter().map(|(_, c)| c.dag_size).sum::<u64>(),
        file_size: 0,
    };
    out(block);
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{file::import_bytes, profile::Profile};

    #[test]
    fn empty_directory_matches_kubo() {
        let mut blocks = Vec::new();
        let root = DirectoryBuilder::new(Profile::UnixfsV0_2015.options())
            .finish(&mut |b| blocks.push(b))
            .unwrap();
        assert_eq!(root.cid.to_string(), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
        assert_eq!(blocks.len(), 1);
    }

    #[test]
    fn links_sorted_by_name_bytes() {
        let opts = Profile::KuboCidV1.options();
        let (file, _) = import_bytes(b"x", opts).unwrap();
        let mut dir = DirectoryBuilder::new(opts);
        for name in ["b", "a", "B", "é", "aa", "a b"] {
            dir.add_file(name, file.clone()).unwrap();
        }
        dir.add_dir("z/empty").unwrap();
        let mut blocks = Vec::new();
        let root = dir.finish(&mut |b| blocks.push(b)).unwrap();
        let node = PbNode::decode(&blocks.last().unwrap().data).unwrap();
        let names: Vec<_> = node.links.iter().map(|l| l.name.clone().unwrap()).collect();
        assert_eq!(names, ["B", "a", "a b", "aa", "b", "z", "é"]);
        assert_eq!(blocks.len(), 3); // z/empty, z, root
        assert_eq!(root.cid, blocks[2].cid);
    }

    #[test]
    fn rejects_bad_paths() {
        let opts = Profile::KuboCidV1.options();
        let (file, _) = import_bytes(b"x", opts).unwrap();
        let mut dir = DirectoryBuilder::new(opts);
        assert!(matches!(dir.add_file("a/../b", file.clone()), Err(DirError::InvalidName(_))));
        assert!(matches!(dir.add_file("", file.clone()), Err(DirError::InvalidName(_))));
        dir.add_file("a/b", file.clone()).unwrap();
        assert!(matches!(dir.add_file("a/b", file.clone()), Err(DirError::Conflict(_))));
        assert!(matches!(dir.add_file("a/b/c", file.clone()), Err(DirError::Conflict(_))));
        assert!(matches!(dir.add_file("a", file), Err(DirError::Conflict(_))));
    }
}
