//! Files and folders to blocks in the canonical order: the one importer `estuary add`, the
//! browser node and every other writer of Estuary CARs drive.
//!
//! ```text
//!  entries (paths) ──► import_order ──► begin_file / push / end_file (each file in turn)
//!                                        │ FileBuilder: leaves, then parents
//!                                        ▼
//!                             blocks, each once, in crate::order's canonical order ──► out
//!  finish ──► DirectoryBuilder: the directory nodes, post-order ──► out
//! ```
//!
//! A folder's entries are declared up front, so the importer knows the order in which they
//! must come ([`Importer::order`]) and refuses any other: a CAR written from its output has the
//! order the oracle rebuilds from the blocks alone ([`crate::order::canonical`]), and hence the
//! same piece. Memory is one chunk, one set of links per tree level, the directory tree's
//! entries, and the set of CIDs already handed out.

use std::collections::HashSet;

use ::cid::Cid;

use crate::{
    Block, DirectoryBuilder, FileBuilder, Imported,
    dir::{DirError, symlink},
    file::HashedLeafError,
    order::import_order,
    profile::{ImportOptions, OptionsError},
};

/// Why an import step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The options are inconsistent.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// A path is invalid or conflicts with another.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// A pre-hashed leaf was refused.
    #[error(transparent)]
    HashedLeaf(#[from] HashedLeafError),
    /// A step out of sequence: a file begun while another is open, bytes with no file, more
    /// entries than declared, finishing with a file open or entries left.
    #[error("{0}")]
    Sequence(&'static str),
}

/// What one entry of a folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A file: its bytes are pushed between [`Importer::begin_file`] and
    /// [`Importer::end_file`].
    File,
    /// A symbolic link to this target.
    Symlink(String),
}

/// Running counts of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Distinct blocks handed out.
    pub blocks: u64,
    /// Their bytes.
    pub dag_bytes: u64,
    /// File bytes taken in.
    pub file_bytes: u64,
}

#[derive(Debug)]
enum Shape {
    /// One file; its root is the DAG's root.
    Single(Option<Imported>),
    /// A folder of declared entries, taken in `order`.
    Folder {
        dir: DirectoryBuilder,
        entries: Vec<(String, EntryKind)>,
        order: Vec<usize>,
        next: usize,
    },
}

/// The importer.
#[derive(Debug)]
pub struct Importer {
    opts: ImportOptions,
    shape: Shape,
    file: Option<(Option<String>, FileBuilder)>,
    seen: HashSet<Cid>,
    stats: ImportStats,
    finished: bool,
}

impl Importer {
    /// An import of one file.
    pub fn file(opts: ImportOptions) -> Result<Self, ImportError> {
        opts.validate()?;
        Ok(Self::with(opts, Shape::Single(None)))
    }

    /// An import of a folder whose entries (files and symlinks; directories are implied by
    /// paths, and empty ones added with [`add_dir`](Self::add_dir)) are `entries`. They must
    /// then come in [`order`](Self::order).
    pub fn folder(
        opts: ImportOptions,
        entries: Vec<(String, EntryKind)>,
    ) -> Result<Self, ImportError> {
        opts.validate()?;
        let order = import_order(&entries.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())?;
        let dir = DirectoryBuilder::new(opts);
        Ok(Self::with(opts, Shape::Folder { dir, entries, order, next: 0 }))
    }

    fn with(opts: ImportOptions, shape: Shape) -> Self {
        Self {
            opts,
            shape,
            file: None,
            seen: HashSet::new(),
            stats: ImportStats::default(),
            finished: false,
        }
    }

    /// The options in use.
    pub fn options(&self) -> ImportOptions {
        self.opts
    }

    /// The order in which a folder's entries must come: indices into the declared entries
    /// (empty for a single file).
    pub fn order(&self) -> &[usize] {
        match &self.shape {
            Shape::Single(_) => &[],
            Shape::Folder { order, .. } => order,
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> ImportStats {
        self.stats
    }

    /// Hands `block` to `out` unless it was handed out already.
    fn emit(
        seen: &mut HashSet<Cid>,
        stats: &mut ImportStats,
        block: Block,
        out: &mut impl FnMut(Block),
    ) {
        if seen.insert(block.cid) {
            stats.blocks += 1;
            stats.dag_bytes += block.data.len() as u64;
            out(block);
        }
    }

    /// The next declared entry, which must be of `kind`'s sort; returns its index and path.
    fn next_entry(
        &mut self,
        file: bool,
    ) -> Result<Option<(usize, String, EntryKind)>, ImportError> {
        match &mut self.shape {
            Shape::Single(Some(_)) => Err(ImportError::Sequence("this import takes one file")),
            Shape::Single(None) if file => Ok(None),
            Shape::Single(None) => {
                Err(ImportError::Sequence("a single-file import has no symlinks"))
            }
            Shape::Folder { entries, order, next, .. } => {
                let &index = order
                    .get(*next)
                    .ok_or(ImportError::Sequence("every declared entry was imported already"))?;
                let (path, kind) = &entries[index];
                if (*kind == EntryKind::File) != file {
                    return Err(ImportError::Sequence("the next entry is of another kind"));
                }
                *next += 1;
                Ok(Some((index, path.clone(), kind.clone())))
            }
        }
    }

    /// Starts the next file; returns its index among the declared entries (0 for a single file).
    pub fn begin_file(&mut self) -> Result<usize, ImportError> {
        if self.finished {
            return Err(ImportError::Sequence("the import has finished"));
        }
        if self.file.is_some() {
            return Err(ImportError::Sequence("end the current file first"));
        }
        let entry = self.next_entry(true)?;
        let builder = FileBuilder::new(self.opts)?;
        let index = entry.as_ref().map_or(0, |(i, ..)| *i);
        self.file = Some((entry.map(|(_, path, _)| path), builder));
        Ok(index)
    }

    /// Adds bytes of the current file; the blocks they complete go to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut impl FnMut(Block)) -> Result<(), ImportError> {
        let (_, builder) = self.file.as_mut().ok_or(ImportError::Sequence("no file begun"))?;
        let (seen, stats) = (&mut self.seen, &mut self.stats);
        builder.push(bytes, &mut |b| Self::emit(seen, stats, b, out));
        stats.file_bytes += bytes.len() as u64;
        Ok(())
    }

    /// The leaf size [`push_hashed_leaf`](Self::push_hashed_leaf) takes, when the options'
    /// leaves are raw.
    pub fn hashed_leaf_size(&self) -> Option<usize> {
        self.opts.hashed_leaf_size()
    }

    /// Adds one whole leaf of the current file by its length and SHA-256 (see
    /// [`FileBuilder::push_hashed_leaf`]). Returns the leaf's CID when it is new — the caller then
    /// writes the leaf's bytes right away, before anything else goes to `out` — and `None` when
    /// the same leaf was handed out before. The parents it completes go to `out`.
    pub fn push_hashed_leaf(
        &mut self,
        len: usize,
        sha256: [u8; 32],
        out: &mut impl FnMut(Block),
    ) -> Result<Option<Cid>, ImportError> {
        let (_, builder) = self.file.as_mut().ok_or(ImportError::Sequence("no file begun"))?;
        let mut parents = Vec::new();
        let cid = builder.push_hashed_leaf(len, sha256, &mut |b| parents.push(b))?;
        let new = self.seen.insert(cid);
        if new {
            self.stats.blocks += 1;
            self.stats.dag_bytes += len as u64;
        }
        self.stats.file_bytes += len as u64;
        // The parents follow the leaf: the caller writes the leaf first (when new), then these.
        let (seen, stats) = (&mut self.seen, &mut self.stats);
        parents.into_iter().for_each(|b| Self::emit(seen, stats, b, out));
        Ok(new.then_some(cid))
    }

    /// Ends the current file; returns its root.
    pub fn end_file(&mut self, out: &mut impl FnMut(Block)) -> Result<Imported, ImportError> {
        let (path, builder) = self.file.take().ok_or(ImportError::Sequence("no file begun"))?;
        let (seen, stats) = (&mut self.seen, &mut self.stats);
        let node = builder.finish(&mut |b| Self::emit(seen, stats, b, out));
        match (&mut self.shape, path) {
            (Shape::Folder { dir, .. }, Some(path)) => dir.add_file(&path, node.clone())?,
            (Shape::Single(root), None) => *root = Some(node.clone()),
            _ => unreachable!("begin_file pairs a path with a folder and none with a file"),
        }
        Ok(node)
    }

    /// Adds the next entry, a symbolic link (its one block goes to `out`).
    pub fn add_symlink(&mut self, out: &mut impl FnMut(Block)) -> Result<usize, ImportError> {
        if self.file.is_some() {
            return Err(ImportError::Sequence("end the current file first"));
        }
        let (index, path, kind) =
            self.next_entry(false)?.ok_or(ImportError::Sequence("no symlink declared"))?;
        let EntryKind::Symlink(target) = kind else {
            unreachable!("next_entry checked the kind");
        };
        let (seen, stats) = (&mut self.seen, &mut self.stats);
        let node = symlink(&self.opts, &target, &mut |b| Self::emit(seen, stats, b, out));
        if let Shape::Folder { dir, .. } = &mut self.shape {
            dir.add_file(&path, node)?;
        }
        Ok(index)
    }

    /// Adds an empty directory at `path` (its node is written at the end, with the others).
    pub fn add_dir(&mut self, path: &str) -> Result<(), ImportError> {
        match &mut self.shape {
            Shape::Folder { dir, .. } => Ok(dir.add_dir(path)?),
            Shape::Single(_) => {
                Err(ImportError::Sequence("a single-file import has no directories"))
            }
        }
    }

    /// Ends the import: writes the directory nodes to `out` and returns the root. The counts
    /// ([`stats`](Self::stats)) stay readable; nothing more can be added.
    pub fn finish(&mut self, out: &mut impl FnMut(Block)) -> Result<Imported, ImportError> {
        self.finish_wrapped(None, out)
    }

    /// [`finish`](Self::finish), wrapping the result in a directory holding it as `name` (as
    /// `ipfs add -w`).
    pub fn finish_wrapped(
        &mut self,
        name: Option<&str>,
        out: &mut impl FnMut(Block),
    ) -> Result<Imported, ImportError> {
        if self.file.is_some() {
            return Err(ImportError::Sequence("end the current file first"));
        }
        if std::mem::replace(&mut self.finished, true) {
            return Err(ImportError::Sequence("the import has finished"));
        }
        let (seen, stats) = (&mut self.seen, &mut self.stats);
        let mut sink = |b| Self::emit(seen, stats, b, out);
        let shape = std::mem::replace(&mut self.shape, Shape::Single(None));
        let root = match shape {
            Shape::Single(root) => root.ok_or(ImportError::Sequence("no file was added"))?,
            Shape::Folder { dir, order, next, .. } => {
                if next < order.len() {
                    return Err(ImportError::Sequence("declared entries were not imported"));
                }
                dir.finish(&mut sink)?
            }
        };
        match name {
            None => Ok(root),
            Some(name) => {
                let mut wrapper = DirectoryBuilder::new(self.opts);
                wrapper.add_file(name, root)?;
                Ok(wrapper.finish(&mut sink)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Profile, order::canonical, walk::WalkLimits};
    use std::collections::HashMap;

    #[test]
    fn a_folder_comes_out_in_canonical_order() {
        let opts =
            ImportOptions { chunk_size: 4, max_links: 2, ..Profile::UnixfsV1_2025.options() };
        let entries = vec![
            ("b/x".to_owned(), EntryKind::File),
            ("a".to_owned(), EntryKind::Symlink("b/x".into())),
            ("c".to_owned(), EntryKind::File),
        ];
        let contents: HashMap<usize, &[u8]> = [(0, &b"0123456789"[..]), (2, &b"abc"[..])].into();
        let mut imp = Importer::folder(opts, entries).unwrap();
        assert_eq!(imp.order(), [1, 2, 0]);
        let mut blocks = Vec::new();
        let mut out = |b: Block| blocks.push(b);
        assert_eq!(
            imp.begin_file(),
            Err(ImportError::Sequence("the next entry is of another kind"))
        );
        imp.add_symlink(&mut out).unwrap();
        for _ in 0..2 {
            let i = imp.begin_file().unwrap();
            imp.push(contents[&i], &mut out).unwrap();
            imp.end_file(&mut out).unwrap();
        }
        imp.add_dir("empty").unwrap();
        let root = imp.finish(&mut out).unwrap();
        assert!(imp.begin_file().is_err(), "nothing after the end");
        let map: HashMap<Cid, Vec<u8>> = blocks.iter().map(|b| (b.cid, b.data.clone())).collect();
        let mut order = Vec::new();
        canonical(root.cid, WalkLimits::default(), &map, |c, _| order.push(*c)).unwrap();
        assert_eq!(order, blocks.iter().map(|b| b.cid).collect::<Vec<_>>());
    }

    #[test]
    fn steps_out_of_sequence_are_refused() {
        let opts = Profile::UnixfsV1_2025.options();
        let mut imp = Importer::file(opts).unwrap();
        let mut out = |_: Block| {};
        assert!(imp.push(b"x", &mut out).is_err());
        imp.begin_file().unwrap();
        assert!(imp.begin_file().is_err());
        imp.end_file(&mut out).unwrap();
        assert!(imp.begin_file().is_err());
        let mut imp = Importer::folder(opts, vec![("a".into(), EntryKind::File)]).unwrap();
        assert!(imp.finish(&mut out).is_err(), "a declared entry is missing");
    }
}
