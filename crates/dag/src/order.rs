//! The canonical block order of an Estuary CAR: one order, computed the same way by whoever
//! writes the CAR, so the piece CID a client computes is the piece CID the oracle reports.
//!
//! An importer writes blocks as it makes them, so that the DAG, the CAR and the piece come out
//! of one pass over the files in constant memory. The oracle, which receives only blocks (over
//! Bitswap, or from a gateway), rebuilds the same sequence from the DAG alone. The order is:
//!
//! 1. **When the root is a UnixFS directory** (plain or HAMT-sharded):
//!    1. *files*: the directory tree is read pre-order; in each directory, its entries that are
//!       not directories (files, symlinks, anything else) in byte order of their names, then its
//!       subdirectories in byte order of their names, recursively. Each entry's blocks come in
//!       post-order (a block after every block below it, links in order: the order in which a
//!       file is imported).
//!    2. *directories*: every directory node in post-order over the tree (a directory's
//!       subdirectories in name order before the directory itself); a sharded directory is its
//!       buckets in post-order (a sub-bucket before the bucket that links to it, in link order).
//! 2. **Otherwise** (a file, a raw block, dag-cbor, …): every block in post-order.
//!
//! Every block appears once, at its first place. This is the order `estuary add --car` and the
//! browser node have always written (files in [`import_order`], directory nodes at the end as
//! [`crate::DirectoryBuilder::finish`] writes them), and the order [`canonical`] reproduces.
//! The CAR's header names the root; a writer that streams starts with a header of the same
//! length and patches it at the end.

use std::collections::{BTreeMap, HashMap};

use ::cid::Cid;

use crate::{
    block::DAG_PB,
    dir::DirError,
    pb::PbNode,
    source::BlockSource,
    unixfs::{DataType, UnixFsData},
    walk::{CidSet, WalkError, WalkLimits, WalkStats, Walker, drive_post_order, inline},
};

/// The order in which an importer must take the files of a directory tree, given their paths
/// (`a/b.txt`; directories are implied by the paths): indices into `paths`. In each directory,
/// its files in byte order of their names, then its subdirectories in byte order, recursively.
pub fn import_order<S: AsRef<str>>(paths: &[S]) -> Result<Vec<usize>, DirError> {
    #[derive(Default)]
    struct Dir<'a> {
        files: BTreeMap<&'a str, usize>,
        dirs: BTreeMap<&'a str, Dir<'a>>,
    }
    let mut root = Dir::default();
    for (i, path) in paths.iter().enumerate() {
        let path = path.as_ref();
        let parts = crate::dir::components(path)?;
        let (name, parents) =
            parts.split_last().ok_or_else(|| DirError::InvalidName(path.to_owned()))?;
        let mut dir = &mut root;
        for part in parents {
            if dir.files.contains_key(part) {
                return Err(DirError::Conflict(path.to_owned()));
            }
            dir = dir.dirs.entry(part).or_default();
        }
        if dir.dirs.contains_key(name) || dir.files.insert(name, i).is_some() {
            return Err(DirError::Conflict(path.to_owned()));
        }
    }
    fn visit(dir: &Dir<'_>, out: &mut Vec<usize>) {
        out.extend(dir.files.values());
        for sub in dir.dirs.values() {
            visit(sub, out);
        }
    }
    let mut out = Vec::with_capacity(paths.len());
    visit(&root, &mut out);
    Ok(out)
}

/// A directory as the canonical order needs it.
#[derive(Debug, Default)]
struct DirSkeleton {
    /// Entries that are not directories, with their names.
    entities: Vec<(String, Cid)>,
    /// Subdirectories, with their names.
    subdirs: Vec<(String, Cid)>,
    /// The directory's own nodes in the order they are written (a plain directory: one).
    nodes: Vec<Cid>,
}

/// What a block says it is, for the canonical order.
fn directory_kind(cid: &Cid, data: &[u8]) -> Option<(PbNode, DataType)> {
    if cid.codec() != DAG_PB {
        return None;
    }
    let node = PbNode::decode(data).ok()?;
    let meta = UnixFsData::decode(node.data.as_deref()?, node.links.len()).ok()?;
    matches!(meta.kind, DataType::Directory | DataType::HamtShard).then_some((node, meta.kind))
}

/// Hands every block under `root` to `emit` once, in the canonical order (see the module
/// docs), reading them from `source` within `limits`.
pub fn canonical<S: BlockSource>(
    root: Cid,
    limits: WalkLimits,
    mut source: S,
    mut emit: impl FnMut(&Cid, &[u8]),
) -> Result<WalkStats, WalkError> {
    let mut walker = Walker::empty(limits);
    let is_dir = match inline(&root) {
        Some(data) => directory_kind(&root, data).is_some(),
        None => directory_kind(&root, source.block(&root)?.as_ref()).is_some(),
    };
    if !is_dir {
        walker.add_root(root);
        drive_post_order(&mut walker, &mut source, &mut emit)?;
        return Ok(walker.stats());
    }
    // The skeleton: every directory, read once (an identical subdirectory twice is one entry).
    let mut dirs: HashMap<Cid, DirSkeleton> = HashMap::new();
    let mut kinds: HashMap<Cid, bool> = HashMap::new();
    read_dir(root, 0, &mut walker, &mut source, &mut dirs, &mut kinds)?;
    // 1. Files, directory by directory.
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let skeleton = &dirs[&dir];
        for (_, entity) in &skeleton.entities {
            walker.add_root(*entity);
            drive_post_order(&mut walker, &mut source, &mut emit)?;
        }
        stack.extend(skeleton.subdirs.iter().rev().map(|(_, cid)| *cid));
    }
    // 2. Directory nodes, post-order over the tree.
    let mut emitted_dirs = std::collections::HashSet::new();
    emit_dirs(root, &dirs, &mut emitted_dirs, &mut walker, &mut source, &mut emit)?;
    Ok(walker.stats())
}

fn emit_dirs<S: BlockSource>(
    dir: Cid,
    dirs: &HashMap<Cid, DirSkeleton>,
    done: &mut std::collections::HashSet<Cid>,
    walker: &mut Walker,
    source: &mut S,
    emit: &mut impl FnMut(&Cid, &[u8]),
) -> Result<(), WalkError> {
    if !done.insert(dir) {
        return Ok(());
    }
    let skeleton = &dirs[&dir];
    for (_, sub) in &skeleton.subdirs {
        emit_dirs(*sub, dirs, done, walker, source, emit)?;
    }
    for node in &skeleton.nodes {
        if walker.mark_visited(*node) {
            match inline(node) {
                Some(data) => emit(node, data),
                None => emit(node, source.block(node)?.as_ref()),
            }
        }
    }
    Ok(())
}

/// Reads directory `cid` (and the directories below it) into `dirs`; `kinds` remembers which
/// entries are directories, so an entry named many times is read once.
fn read_dir<S: BlockSource>(
    cid: Cid,
    depth: usize,
    walker: &mut Walker,
    source: &mut S,
    dirs: &mut HashMap<Cid, DirSkeleton>,
    kinds: &mut HashMap<Cid, bool>,
) -> Result<(), WalkError> {
    if dirs.contains_key(&cid) {
        return Ok(());
    }
    let mut skeleton = DirSkeleton::default();
    let mut entries: Vec<(String, Cid)> = Vec::new();
    let mut buckets = CidSet::new();
    read_bucket(cid, depth, walker, source, &mut buckets, &mut skeleton.nodes, &mut entries)?;
    // Byte order of the names; a stable sort keeps a hostile directory's repeated names in
    // link order.
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, child) in entries {
        let is_dir = match (kinds.get(&child), inline(&child)) {
            (Some(known), _) => *known,
            (None, Some(data)) => directory_kind(&child, data).is_some(),
            (None, None) if child.codec() == DAG_PB => {
                let is_dir = directory_kind(&child, source.block(&child)?.as_ref()).is_some();
                kinds.insert(child, is_dir);
                is_dir
            }
            (None, None) => false,
        };
        if is_dir {
            skeleton.subdirs.push((name, child));
        } else {
            skeleton.entities.push((name, child));
        }
    }
    // A placeholder first, so a cycle (only a lying source can make one) ends at the depth
    // limit rather than looping.
    let subdirs: Vec<Cid> = skeleton.subdirs.iter().map(|(_, c)| *c).collect();
    dirs.insert(cid, skeleton);
    for sub in subdirs {
        read_dir(sub, depth + 1, walker, source, dirs, kinds)?;
    }
    Ok(())
}

/// Lists one directory node (a plain directory, or a HAMT bucket and its sub-buckets): its
/// entries into `entries`, and its nodes in writing order into `nodes`. A bucket linked twice
/// (only a hostile shard does that) is read once, at its first place: `seen` holds the
/// directory's buckets read so far.
fn read_bucket<S: BlockSource>(
    cid: Cid,
    depth: usize,
    walker: &mut Walker,
    source: &mut S,
    seen: &mut CidSet,
    nodes: &mut Vec<Cid>,
    entries: &mut Vec<(String, Cid)>,
) -> Result<(), WalkError> {
    if !seen.insert(&cid) {
        return Ok(());
    }
    let block = match inline(&cid) {
        Some(data) => data.to_vec(),
        None => source.block(&cid)?.as_ref().to_vec(),
    };
    let Some((node, kind)) = directory_kind(&cid, &block) else {
        // A HAMT link that leads to something else: keep it as an entry under its label.
        entries.push((String::new(), cid));
        return Ok(());
    };
    walker.account(cid, depth, block.len(), node.links.len())?;
    for link in node.links {
        let name = link.name.unwrap_or_default();
        match kind {
            DataType::HamtShard if name.len() == 2 => {
                read_bucket(link.hash, depth + 1, walker, source, seen, nodes, entries)?;
            }
            DataType::HamtShard => {
                let entry = name.get(2..).unwrap_or_default().to_owned();
                entries.push((entry, link.hash));
            }
            _ => entries.push((name, link.hash)),
        }
    }
    nodes.push(cid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Block, DirectoryBuilder, FileBuilder, ImportOptions, Profile, file::import_bytes,
        source::infallible,
    };
    use std::collections::HashSet;

    /// Imports `files` (path, bytes) as `estuary add` does: in [`import_order`], every block
    /// written as produced, each once. Returns the root and the blocks in that order.
    fn produce(
        files: &[(&str, Vec<u8>)],
        empty_dirs: &[&str],
        opts: ImportOptions,
    ) -> (Cid, Vec<Block>) {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut sink = |b: Block| {
            if seen.insert(b.cid) {
                out.push(b);
            }
        };
        let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        let mut dir = DirectoryBuilder::new(opts);
        for i in import_order(&paths).unwrap() {
            let mut file = FileBuilder::new(opts).unwrap();
            file.push(&files[i].1, &mut sink);
            let node = file.finish(&mut sink);
            dir.add_file(files[i].0, node).unwrap();
        }
        for d in empty_dirs {
            dir.add_dir(d).unwrap();
        }
        let root = dir.finish(&mut sink).unwrap();
        (root.cid, out)
    }

    fn reproduce(root: Cid, blocks: &[Block]) -> Vec<Cid> {
        let map: HashMap<Cid, Vec<u8>> = blocks.iter().map(|b| (b.cid, b.data.clone())).collect();
        let mut order = Vec::new();
        canonical(root, WalkLimits::default(), &map, |c, _| order.push(*c)).unwrap();
        order
    }

    fn small() -> ImportOptions {
        ImportOptions { chunk_size: 8, max_links: 3, ..Profile::UnixfsV1_2025.options() }
    }

    #[test]
    fn the_oracle_reproduces_the_importers_order() {
        let bytes = |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let files = vec![
            ("z.txt", bytes(100, 3)),
            ("a/b/c.bin", bytes(70, 5)),
            ("a/b.txt", bytes(9, 7)),
            ("a/b/d", bytes(70, 5)), // same bytes as c.bin: its blocks come once
            ("a.txt", bytes(0, 1)),
            ("m/n/o/p", bytes(33, 11)),
            ("é", bytes(20, 13)),
            ("B", bytes(20, 13)),
        ];
        let (root, blocks) = produce(&files, &["empty", "m/also-empty"], small());
        let produced: Vec<Cid> = blocks.iter().map(|b| b.cid).collect();
        assert_eq!(reproduce(root, &blocks), produced);
    }

    #[test]
    fn a_sharded_directory_keeps_its_order() {
        let mut opts = small();
        opts.shard_threshold = 200;
        let files: Vec<(String, Vec<u8>)> =
            (0..300).map(|i| (format!("dir/f{i:03}"), vec![i as u8; 10 + i % 13])).collect();
        let files: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
        let (root, blocks) = produce(&files, &["dir/sub"], opts);
        let produced: Vec<Cid> = blocks.iter().map(|b| b.cid).collect();
        let order = reproduce(root, &blocks);
        assert_eq!(order, produced);
        // It really is sharded.
        let map: HashMap<Cid, Vec<u8>> = blocks.iter().map(|b| (b.cid, b.data.clone())).collect();
        let dir = crate::export::resolve(root, "dir", &map).unwrap();
        assert!(directory_kind(&dir, &map[&dir]).is_some_and(|(_, k)| k == DataType::HamtShard));
    }

    #[test]
    fn a_file_or_a_raw_block_is_post_order() {
        let (root, blocks) = import_bytes(&[1u8; 100], small()).unwrap();
        let mut seen = HashSet::new();
        let produced: Vec<Cid> = blocks.iter().map(|b| b.cid).filter(|c| seen.insert(*c)).collect();
        assert_eq!(reproduce(root.cid, &blocks), produced);
    }

    #[test]
    fn import_order_refuses_conflicts() {
        assert_eq!(import_order(&["b", "a/c", "a/b", "0"]).unwrap(), [3, 0, 2, 1]);
        assert!(import_order(&["a", "a/b"]).is_err());
        assert!(import_order(&["a/b", "a"]).is_err());
        assert!(import_order(&["a", "a"]).is_err());
        assert!(import_order(&["a/../b"]).is_err());
    }

    #[test]
    fn missing_blocks_and_faults_stay_apart() {
        let files = vec![("a", vec![1u8; 50])];
        let (root, blocks) = produce(&files, &[], small());
        let first = blocks[0].cid;
        let map: HashMap<Cid, Vec<u8>> =
            blocks.iter().filter(|b| b.cid != first).map(|b| (b.cid, b.data.clone())).collect();
        let err = canonical(root, WalkLimits::default(), &map, |_, _| {}).unwrap_err();
        assert_eq!(err.missing(), Some(first));
        let err = canonical(
            root,
            WalkLimits::default(),
            infallible(|_: &Cid| None::<Vec<u8>>),
            |_, _| {},
        )
        .unwrap_err();
        assert_eq!(err.missing(), Some(root));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::{Block, DirectoryBuilder, FileBuilder, ImportOptions, Profile};
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn the_order_is_canonical_impl(
        tree: Vec<(Vec<u8>, Vec<u8>)>,
        chunk: usize,
        width: usize,
        threshold: usize,
    ) -> Result<(), TestCaseError> {
        let opts = ImportOptions {
            chunk_size: chunk,
            max_links: width,
            shard_threshold: threshold,
            ..Profile::UnixfsV1_2025.options()
        };
        // Paths from the generated name parts: "x/y/z" with names from a small alphabet.
        let mut paths: Vec<String> = Vec::new();
        let mut contents = Vec::new();
        for (parts, data) in tree {
            let path: Vec<String> =
                parts.iter().map(|p| format!("{}", (b'a' + p % 5) as char)).collect();
            let path = format!("{}{}", path.join("/"), if path.is_empty() { "f" } else { "" });
            paths.push(path);
            contents.push(data);
        }
        let Ok(order) = import_order(&paths) else { return Ok(()) };
        let mut seen = HashSet::new();
        let mut produced = Vec::new();
        let mut blocks = HashMap::new();
        let mut sink = |b: Block| {
            if seen.insert(b.cid) {
                produced.push(b.cid);
                blocks.insert(b.cid, b.data);
            }
        };
        let mut dir = DirectoryBuilder::new(opts);
        for i in order {
            let mut file = FileBuilder::new(opts).expect("valid options");
            file.push(&contents[i], &mut sink);
            let node = file.finish(&mut sink);
            dir.add_file(&paths[i], node).expect("paths checked by import_order");
        }
        let Ok(root) = dir.finish(&mut sink) else { return Ok(()) };
        let mut order = Vec::new();
        canonical(root.cid, WalkLimits::default(), &blocks, |c, _| order.push(*c))
            .expect("every block is there");
        prop_assert_eq!(order, produced);
        Ok(())
    }

    proptest! {
        /// Any tree, any chunking and shard threshold: the order rebuilt from the blocks is the
        /// order the importer wrote.
        #[test]
        fn the_order_is_canonical_proptest(
            tree in proptest::collection::vec(
                (proptest::collection::vec(0u8..5, 0..4), proptest::collection::vec(0u8..3, 0..40)),
                1..25,
            ),
            chunk in 4usize..16,
            width in 2usize..4,
            threshold in 20usize..400,
        ) {
            the_order_is_canonical_impl(tree, chunk, width, threshold)?;
        }
    }
}
