//! Which blocks a trustless-gateway CAR holds: the IPIP-402 `dag-scope` and `entity-bytes`
//! selections, for a path inside a UnixFS DAG.
//!
//! A CAR for `/ipfs/{root}/{path}` starts with the blocks that prove the path (each directory
//! node, and each HAMT bucket on the way to the entry), then the terminal element's blocks:
//! - `block`: its block alone;
//! - `entity`: for a file, every block of the file — or, with `entity-bytes=from:to`, the blocks
//!   that cover that byte range, with the nodes above them; for a HAMT directory, its buckets
//!   (not the entries); for anything else, its block;
//! - `all`: everything under it, depth first.
//!
//! Blocks are emitted in that order, each once. Everything is read through `get`, which must
//! return verified blocks; the work is bounded by [`crate::export::MAX_DEPTH`] and the walk
//! limits.

use ::cid::Cid;

use crate::{
    block::{DAG_PB, RAW},
    export::{ExportError, file_size, read_file_within, resolve},
    pb::PbNode,
    source::{BlockError, BlockSource, from_fn},
    unixfs::{DataType, UnixFsData},
    walk::{CidSet, WalkError, WalkLimits, Walker, inline, links},
};

/// `dag-scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DagScope {
    /// The terminal block only.
    Block,
    /// The terminal entity (a whole file, a directory's own nodes).
    Entity,
    /// Everything reachable from the terminal element.
    #[default]
    All,
}

impl DagScope {
    /// Reads the parameter's value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "block" => Self::Block,
            "entity" => Self::Entity,
            "all" => Self::All,
            _ => return None,
        })
    }

    /// The parameter's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Entity => "entity",
            Self::All => "all",
        }
    }
}

/// `entity-bytes=from:to`: an inclusive byte range; negative numbers count from the end, `to` of
/// `*` (`None`) means the last byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityBytes {
    /// First byte.
    pub from: i64,
    /// Last byte, inclusive.
    pub to: Option<i64>,
}

impl std::str::FromStr for EntityBytes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("entity-bytes must be from:to (integers, to may be *), got {s:?}");
        let (from, to) = s.split_once(':').ok_or_else(bad)?;
        let from = from.parse::<i64>().map_err(|_| bad())?;
        let to = if to == "*" { None } else { Some(to.parse::<i64>().map_err(|_| bad())?) };
        if let Some(to) = to
            && from >= 0
            && to >= 0
            && to < from
        {
            return Err(format!("entity-bytes {s:?} ends before it starts"));
        }
        Ok(Self { from, to })
    }
}

impl EntityBytes {
    /// The half-open range `start..end` this selects in a file of `size` bytes (empty when it
    /// selects nothing).
    pub fn resolve(self, size: u64) -> (u64, u64) {
        let size_i = i64::try_from(size).unwrap_or(i64::MAX);
        let at = |v: i64| if v < 0 { size_i.saturating_add(v).max(0) } else { v.min(size_i) };
        let start = at(self.from);
        let last = match self.to {
            None => size_i - 1,
            Some(t) => at(t).min(size_i - 1),
        };
        if last < start { (0, 0) } else { (start as u64, (last + 1) as u64) }
    }
}

/// Why the blocks could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraversalError {
    /// The path or the file could not be read.
    #[error(transparent)]
    Export(Box<ExportError>),
    /// A walk failed (missing block, source fault, limit).
    #[error(transparent)]
    Walk(Box<WalkError>),
    /// The receiver asked to stop (the client went away).
    #[error("stopped by the receiver")]
    Stopped,
}

impl TraversalError {
    /// Whether the block source failed (as opposed to the DAG being incomplete or bad).
    pub fn is_fault(&self) -> bool {
        match self {
            Self::Export(e) => matches!(&**e, ExportError::Block(b) if b.is_fault()),
            Self::Walk(e) => e.is_fault(),
            Self::Stopped => false,
        }
    }
}

impl From<ExportError> for TraversalError {
    fn from(e: ExportError) -> Self {
        Self::Export(Box::new(e))
    }
}

impl From<WalkError> for TraversalError {
    fn from(e: WalkError) -> Self {
        Self::Walk(Box::new(e))
    }
}

impl From<BlockError> for TraversalError {
    fn from(e: BlockError) -> Self {
        Self::Export(Box::new(ExportError::Block(e)))
    }
}

/// The path resolved: the terminal element and the blocks that prove the way to it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPath {
    /// The element the path names.
    pub terminal: Cid,
    /// Directory nodes and HAMT buckets read on the way, root first.
    pub path_blocks: Vec<Cid>,
}

/// Follows `path` from `root`, remembering the blocks it reads.
pub fn resolve_path<S: BlockSource>(
    root: Cid,
    path: &str,
    mut source: S,
) -> Result<ResolvedPath, ExportError> {
    let mut path_blocks = Vec::new();
    let terminal = resolve(
        root,
        path,
        from_fn(|cid: &Cid| {
            if !path_blocks.contains(cid) {
                path_blocks.push(*cid);
            }
            source.block(cid)
        }),
    )?;
    Ok(ResolvedPath { terminal, path_blocks })
}

/// The UnixFS kind of a dag-pb block, if it is one.
fn unixfs_kind(data: &[u8]) -> Option<(PbNode, DataType)> {
    let node = PbNode::decode(data).ok()?;
    let meta = UnixFsData::decode(node.data.as_deref()?, node.links.len()).ok()?;
    Some((node, meta.kind))
}

/// Hands blocks to the receiver once each, and remembers whether it wants more.
struct Sender<E> {
    seen: CidSet,
    emit: E,
}

impl<E: FnMut(&Cid, &[u8]) -> bool> Sender<E> {
    fn send(&mut self, cid: &Cid, data: &[u8]) -> Result<(), TraversalError> {
        if self.seen.insert(cid) && !(self.emit)(cid, data) {
            return Err(TraversalError::Stopped);
        }
        Ok(())
    }

    fn send_from<S: BlockSource>(
        &mut self,
        cid: &Cid,
        source: &mut S,
    ) -> Result<(), TraversalError> {
        if self.seen.contains(cid) {
            return Ok(());
        }
        let block = source.block(cid)?;
        self.send(cid, block.as_ref())
    }
}

/// Walks `walker` to its end in pre-order, sending every block it visits; `children` picks the
/// links to follow (all of them, or a HAMT's buckets).
fn walk_and_send<S: BlockSource, E: FnMut(&Cid, &[u8]) -> bool>(
    mut walker: Walker,
    source: &mut S,
    sender: &mut Sender<E>,
    children: impl Fn(&Cid, &[u8]) -> Result<Vec<Cid>, TraversalError>,
) -> Result<(), TraversalError> {
    while let Some((cid, _)) = walker.peek()? {
        let block;
        let data = match inline(&cid) {
            Some(data) => data,
            None => {
                block = source.block(&cid)?;
                block.as_ref()
            }
        };
        let links = children(&cid, data)?;
        walker.visit_links(data.len(), links)?;
        sender.send(&cid, data)?;
    }
    Ok(())
}

/// Emits the blocks of `path` and of its terminal element under `scope` (and `range`, for a
/// file under [`DagScope::Entity`]), each once, in CAR order, within `limits` (a range is read
/// in at most `limits.max_visits` node loads). `emit` returns whether to go on: `false` (the
/// client went away) ends the walk with [`TraversalError::Stopped`].
pub fn select_blocks<S: BlockSource>(
    resolved: &ResolvedPath,
    scope: DagScope,
    range: Option<EntityBytes>,
    limits: WalkLimits,
    mut source: S,
    emit: impl FnMut(&Cid, &[u8]) -> bool,
) -> Result<(), TraversalError> {
    let mut sender = Sender { seen: CidSet::new(), emit };
    for cid in &resolved.path_blocks {
        sender.send_from(cid, &mut source)?;
    }
    let terminal = resolved.terminal;
    let everything = |cid: &Cid, data: &[u8]| links(cid, data).map_err(TraversalError::from);
    match scope {
        DagScope::Block => sender.send_from(&terminal, &mut source),
        DagScope::All => {
            walk_and_send(Walker::new(terminal, limits), &mut source, &mut sender, everything)
        }
        DagScope::Entity => {
            if terminal.codec() != DAG_PB {
                // A raw leaf is a whole file in one block; other codecs are their block.
                return sender.send_from(&terminal, &mut source);
            }
            let root = source.block(&terminal)?;
            let kind = unixfs_kind(root.as_ref()).map(|(_, kind)| kind);
            drop(root);
            match (kind, range) {
                (Some(DataType::File | DataType::Raw), None) => walk_and_send(
                    Walker::new(terminal, limits),
                    &mut source,
                    &mut sender,
                    everything,
                ),
                (Some(DataType::File | DataType::Raw), Some(range)) => {
                    let size = file_size(terminal, &mut source)?;
                    let (start, end) = range.resolve(size);
                    sender.send_from(&terminal, &mut source)?;
                    if start < end {
                        // The reader loads exactly the nodes covering the range, depth first;
                        // each load counts against the visits, a repeated subtree every time.
                        let mut stopped = false;
                        let read = read_file_within(
                            terminal,
                            start,
                            Some(end),
                            limits.max_visits,
                            from_fn(|cid: &Cid| {
                                let block = source.block(cid)?;
                                if sender.send(cid, block.as_ref()).is_err() {
                                    // Ends the read at once; reported as `Stopped` below.
                                    stopped = true;
                                    return Err(BlockError::Io {
                                        cid: *cid,
                                        source: "stopped".into(),
                                    });
                                }
                                Ok(block)
                            }),
                            |_| {},
                        );
                        if stopped {
                            return Err(TraversalError::Stopped);
                        }
                        read?;
                    }
                    Ok(())
                }
                (Some(DataType::HamtShard), _) => {
                    // The buckets: links named by their two-hex-digit index alone.
                    let buckets = |cid: &Cid, data: &[u8]| {
                        let Some((node, DataType::HamtShard)) = unixfs_kind(data) else {
                            return Err(ExportError::Corrupt {
                                cid: *cid,
                                reason: "HAMT bucket is not a HAMT node".into(),
                            }
                            .into());
                        };
                        Ok(node
                            .links
                            .into_iter()
                            .filter(|l| {
                                l.name.as_deref().is_some_and(|n| n.len() == 2)
                                    && l.hash.codec() == DAG_PB
                            })
                            .map(|l| l.hash)
                            .collect())
                    };
                    // A 64-bit hash has eight levels of 256-way buckets.
                    let hamt = WalkLimits { max_depth: limits.max_depth.min(8), ..limits };
                    walk_and_send(Walker::new(terminal, hamt), &mut source, &mut sender, buckets)
                }
                _ => sender.send_from(&terminal, &mut source),
            }
        }
    }
}

/// Whether a CID names a block the gateway can treat as UnixFS (dag-pb or raw).
pub fn is_unixfs(cid: &Cid) -> bool {
    matches!(cid.codec(), DAG_PB | RAW)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{
        Block, ImportOptions, dir::DirectoryBuilder, file::import_bytes, profile::Profile,
    };

    fn opts() -> ImportOptions {
        let mut o = Profile::UnixfsV1_2025.options();
        o.chunk_size = 1024;
        o.max_links = 4;
        o
    }

    struct Dag {
        blocks: HashMap<Cid, Vec<u8>>,
        root: Cid,
        file: Cid,
        bytes: Vec<u8>,
    }

    fn dag() -> Dag {
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut blocks = HashMap::new();
        let (file, file_blocks) = import_bytes(&bytes, opts()).unwrap();
        let (hello, hello_blocks) = import_bytes(b"hi", opts()).unwrap();
        let mut put = |b: Block| {
            blocks.insert(b.cid, b.data);
        };
        file_blocks.into_iter().chain(hello_blocks).for_each(&mut put);
        let mut dir = DirectoryBuilder::new(opts());
        dir.add_file("sub/data.bin", file.clone()).unwrap();
        dir.add_file("hello.txt", hello).unwrap();
        let root = dir.finish(&mut put).unwrap();
        Dag { blocks, root: root.cid, file: file.cid, bytes }
    }

    fn select(d: &Dag, path: &str, scope: DagScope, range: Option<&str>) -> Vec<Cid> {
        let resolved = resolve_path(d.root, path, &d.blocks).unwrap();
        let mut out = Vec::new();
        select_blocks(
            &resolved,
            scope,
            range.map(|r| r.parse().unwrap()),
            WalkLimits::default(),
            &d.blocks,
            |c, _| {
                out.push(*c);
                true
            },
        )
        .unwrap();
        out
    }

    /// The bytes `range` selects, read back from only the selected blocks.
    fn read_from(d: &Dag, cids: &[Cid], start: u64, end: u64) -> Vec<u8> {
        let only: HashMap<Cid, Vec<u8>> = cids.iter().map(|c| (*c, d.blocks[c].clone())).collect();
        let mut out = Vec::new();
        crate::export::read_file(d.file, start, Some(end), &only, |b| out.extend_from_slice(b))
            .unwrap();
        out
    }

    #[test]
    fn scopes_select_the_path_then_the_terminal() {
        let d = dag();
        let all = select(&d, "", DagScope::All, None);
        assert_eq!(all.len(), d.blocks.len());
        assert_eq!(all[0], d.root);
        let block = select(&d, "sub/data.bin", DagScope::Block, None);
        assert_eq!(block.len(), 3, "root, sub, the file's root");
        assert_eq!((block[0], block[2]), (d.root, d.file));
        let entity = select(&d, "sub/data.bin", DagScope::Entity, None);
        let file_blocks = entity.len() - 2;
        assert!(file_blocks > 20, "every block of the file: {file_blocks}");
        assert_eq!(read_from(&d, &entity, 0, 20_000), d.bytes);
        let dir = select(&d, "sub", DagScope::Entity, None);
        assert_eq!(dir.len(), 2, "a directory entity is its own node");
    }

    #[test]
    fn entity_bytes_select_only_the_blocks_of_the_range() {
        let d = dag();
        let whole = select(&d, "sub/data.bin", DagScope::Entity, None).len();
        for (range, start, end) in [
            ("0:0", 0, 1),
            ("5000:6999", 5000, 7000),
            ("-100:*", 19_900, 20_000),
            ("19999:*", 19_999, 20_000),
            ("0:-1", 0, 20_000),
            ("100:99999", 100, 20_000),
        ] {
            let some = select(&d, "sub/data.bin", DagScope::Entity, Some(range));
            assert!(some.len() <= whole, "{range}");
            assert_eq!(
                read_from(&d, &some, start, end),
                d.bytes[start as usize..end as usize],
                "{range}"
            );
        }
        let small = select(&d, "sub/data.bin", DagScope::Entity, Some("0:10"));
        assert!(small.len() < whole / 2, "a small range needs few blocks: {}", small.len());
        // A range past the end selects the file's root only.
        assert_eq!(select(&d, "sub/data.bin", DagScope::Entity, Some("30000:*")).len(), 3);
    }

    #[test]
    fn bad_ranges_and_paths_are_errors() {
        for bad in ["", "1", "a:b", "5:1", "1:2:3", ":5", "1:"] {
            assert!(bad.parse::<EntityBytes>().is_err(), "{bad}");
        }
        let d = dag();
        assert!(matches!(
            resolve_path(d.root, "nope", &d.blocks),
            Err(ExportError::NoSuchEntry { .. })
        ));
        assert!(matches!(
            resolve_path(d.root, "hello.txt/x", &d.blocks),
            Err(ExportError::NotADirectory(_))
        ));
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        let r = |s: &str, size| s.parse::<EntityBytes>().unwrap().resolve(size);
        assert_eq!(r("0:*", 10), (0, 10));
        assert_eq!(r("-3:*", 10), (7, 10));
        assert_eq!(r("-30:*", 10), (0, 10));
        assert_eq!(r("2:-2", 10), (2, 9));
        assert_eq!(r("20:*", 10), (0, 0));
        assert_eq!(r("0:*", 0), (0, 0));
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::EntityBytes;

    proptest! {
        /// Any text parses or is refused, never panics; any parsed range selects bytes inside
        /// the file.
        #[test]
        fn ranges_stay_inside_the_file(text in ".{0,24}", from in any::<i64>(), to in proptest::option::of(any::<i64>()), size in 0u64..1 << 40) {
            let _ = text.parse::<EntityBytes>();
            let (start, end) = EntityBytes { from, to }.resolve(size);
            prop_assert!(start <= end && end <= size);
        }
    }
}
