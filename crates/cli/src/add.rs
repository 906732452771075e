//! `estuary add`: files and directories to a UnixFS DAG and, optionally, a CAR file.
//!
//! The DAG, the CAR and its piece come out of one pass through `estuary_pack`, the pipeline the
//! browser node and the oracle's packer use too: the same CAR bytes, so the same piece CID.
//! Reading is streamed (1 MiB at a time); memory stays at the engine's chunk buffer, one set of
//! links per tree level, the set of CIDs already written, and the piece workers' batches. The
//! piece is hashed on every core beside the import (`ParallelCommP`).
//!
//! CAR order:
//! - `produced` (the default): Estuary's canonical order (`estuary_dag::order`), each block as
//!   it is made, after a header naming a provisional root of the same length that is patched at
//!   the end.
//! - `dfs` (root first, depth first, as `ipfs dag export`) spools the blocks to a temporary file
//!   next to the CAR with an in-memory index, then writes them in traversal order.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use estuary_dag::{
    Block, EntryKind, ImportOptions, Imported, Importer, Profile,
    block::{RAW, sha256_cid},
    import::ImportStats,
    source::{BlockError, from_fn},
    walk::{self, WalkLimits},
};
use estuary_pack::{CarImporter, CarStream, Finished};
use estuary_piece::{ParallelCommP, PieceCid, PieceInfo};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// CAR block order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CarOrder {
    /// Estuary's canonical order, as produced: each file's blocks children first, then the
    /// directories.
    Produced,
    /// Root first, depth first (as `ipfs dag export`).
    Dfs,
}

/// Options of `estuary add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// A file or a directory.
    pub path: PathBuf,
    /// Import profile: unixfs-v1-2025 (default), kubo-cidv1 or unixfs-v0-2015.
    #[arg(long, default_value = "unixfs-v1-2025")]
    pub profile: String,
    /// Bytes per leaf (overrides the profile).
    #[arg(long)]
    pub chunk_size: Option<usize>,
    /// Links per file node (overrides the profile).
    #[arg(long)]
    pub max_links: Option<usize>,
    /// Raw leaves (true) or dag-pb leaves (false) (overrides the profile).
    #[arg(long)]
    pub raw_leaves: Option<bool>,
    /// CID version of dag-pb nodes, 0 or 1 (overrides the profile).
    #[arg(long)]
    pub cid_version: Option<u8>,
    /// Wrap the input in a directory named after it.
    #[arg(long, short = 'w')]
    pub wrap: bool,
    /// Write the DAG to this CAR file.
    #[arg(long)]
    pub car: Option<PathBuf>,
    /// Block order in the CAR.
    #[arg(long, value_enum, default_value = "produced")]
    pub car_order: CarOrder,
    /// CAR version: 1, or 2 (CARv1 payload plus a MultihashIndexSorted index, as go-car writes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub car_version: u8,
    /// Print one JSON object instead of the root CID.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct AddSummary {
    /// Root CID.
    pub root: String,
    /// Distinct blocks.
    pub blocks: u64,
    /// Bytes of the distinct blocks.
    pub dag_bytes: u64,
    /// Size of the CAR written (with `--car`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub car_bytes: Option<u64>,
    /// Piece CID v2 of the CAR written (with `--car`), computed while it was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub piece_cid: Option<String>,
    /// Padded piece size of the CAR written (with `--car`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub piece_size: Option<u64>,
}

impl AddArgs {
    fn options(&self) -> Result<ImportOptions> {
        let mut opts = Profile::from_name(&self.profile)?.options();
        if let Some(v) = self.chunk_size {
            opts.chunk_size = v;
        }
        if let Some(v) = self.max_links {
            opts.max_links = v;
        }
        if let Some(v) = self.raw_leaves {
            opts.raw_leaves = v;
        }
        match self.cid_version {
            None => {}
            Some(0) => opts.cid_version = cid::Version::V0,
            Some(1) => opts.cid_version = cid::Version::V1,
            Some(v) => bail!("--cid-version must be 0 or 1, not {v}"),
        }
        opts.validate()?;
        Ok(opts)
    }
}

/// One entry of a directory being added.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    rel: String,
    kind: Kind,
    size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink(String),
}

/// The import, declared: the importer and where each entry's bytes are.
struct Plan {
    /// The order the entries go in (indices into `entries`).
    order: Vec<usize>,
    importer: Importer,
    /// Files and symlinks, as declared to the importer (its order indexes them).
    entries: Vec<Entry>,
    total: u64,
    /// The root will be a raw leaf (one chunk under raw leaves, not wrapped).
    raw_root: bool,
}

fn plan(args: &AddArgs, opts: ImportOptions) -> Result<Plan> {
    let meta = std::fs::metadata(&args.path)
        .with_context(|| format!("reading {}", args.path.display()))?;
    if !meta.is_dir() {
        let raw_root = !args.wrap && opts.raw_leaves && meta.len() <= opts.chunk_size as u64;
        let entry = Entry {
            path: args.path.clone(),
            rel: String::new(),
            kind: Kind::File,
            size: meta.len(),
        };
        return Ok(Plan {
            order: vec![0],
            importer: Importer::file(opts)?,
            entries: vec![entry],
            total: meta.len(),
            raw_root,
        });
    }
    let (entries, dirs): (Vec<Entry>, Vec<Entry>) =
        collect(&args.path)?.into_iter().partition(|e| e.kind != Kind::Dir);
    let declared = entries
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                Kind::Symlink(target) => EntryKind::Symlink(target.clone()),
                _ => EntryKind::File,
            };
            (e.rel.clone(), kind)
        })
        .collect();
    let mut importer = Importer::folder(opts, declared)?;
    for dir in &dirs {
        importer.add_dir(&dir.rel)?;
    }
    let total = entries.iter().map(|e| e.size).sum();
    Ok(Plan { order: importer.order().to_vec(), importer, entries, total, raw_root: false })
}

/// What a pass over the entries does with each.
trait Steps {
    fn begin_file(&mut self) -> Result<()>;
    fn push(&mut self, bytes: &[u8]) -> Result<()>;
    fn end_file(&mut self) -> Result<()>;
    fn symlink(&mut self) -> Result<()>;
}

/// Feeds every entry through `steps`, in the importer's order.
fn feed(
    order: &[usize],
    entries: &[Entry],
    progress: &ProgressBar,
    steps: &mut impl Steps,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for &i in order {
        let entry = &entries[i];
        match entry.kind {
            Kind::File => {
                let file = File::open(&entry.path)
                    .with_context(|| format!("opening {}", entry.path.display()))?;
                let mut reader = progress.wrap_read(file);
                steps.begin_file()?;
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("reading {}", entry.path.display()));
                        }
                    };
                    steps.push(&buf[..n])?;
                }
                steps.end_file()?;
            }
            Kind::Symlink(_) => steps.symlink()?,
            Kind::Dir => unreachable!("directories are declared, not fed"),
        }
    }
    Ok(())
}

/// Imports `args.path`; returns the summary (and writes the CAR).
pub fn run(args: &AddArgs) -> Result<AddSummary> {
    let opts = args.options()?;
    let plan = plan(args, opts)?;
    let progress = progress_bar(plan.total);
    let name = args.path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let wrap = match args.wrap {
        true => Some(name.as_deref().context("--wrap needs an input with a UTF-8 file name")?),
        false => None,
    };
    let v2 = args.car_version == 2;
    let summary = match (&args.car, args.car_order) {
        (None, _) => import_only(plan, wrap, &progress),
        (Some(path), CarOrder::Produced) => import_car(plan, wrap, path, v2, &progress),
        (Some(path), CarOrder::Dfs) => import_dfs(plan, wrap, path, v2, &progress),
    };
    progress.finish_and_clear();
    summary
}

fn summary(root: &Imported, stats: ImportStats, car: Option<(u64, PieceInfo)>) -> AddSummary {
    AddSummary {
        root: root.cid.to_string(),
        blocks: stats.blocks,
        dag_bytes: stats.dag_bytes,
        car_bytes: car.map(|(bytes, _)| bytes),
        piece_cid: car.map(|(_, piece)| PieceCid::v2(&piece).to_string()),
        piece_size: car.map(|(_, piece)| piece.padded_size),
    }
}

/// An importer whose blocks go to a closure.
struct Blocks<F> {
    importer: Importer,
    sink: F,
}

impl<F: FnMut(Block) -> Result<()>> Blocks<F> {
    fn call(
        &mut self,
        step: impl FnOnce(&mut Importer, &mut dyn FnMut(Block)) -> Result<(), estuary_dag::ImportError>,
    ) -> Result<()> {
        let mut failed = None;
        let sink = &mut self.sink;
        step(&mut self.importer, &mut |b| {
            if failed.is_none()
                && let Err(e) = sink(b)
            {
                failed = Some(e);
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}

impl<F: FnMut(Block) -> Result<()>> Steps for Blocks<F> {
    fn begin_file(&mut self) -> Result<()> {
        self.importer.begin_file()?;
        Ok(())
    }
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.call(|imp, out| imp.push(bytes, &mut |b| out(b)))
    }
    fn end_file(&mut self) -> Result<()> {
        self.call(|imp, out| imp.end_file(&mut |b| out(b)).map(|_| ()))
    }
    fn symlink(&mut self) -> Result<()> {
        self.call(|imp, out| imp.add_symlink(&mut |b| out(b)).map(|_| ()))
    }
}

/// The DAG alone: blocks counted and dropped.
fn import_only(plan: Plan, wrap: Option<&str>, progress: &ProgressBar) -> Result<AddSummary> {
    let order = plan.order.clone();
    let mut steps = Blocks { importer: plan.importer, sink: |_: Block| Ok(()) };
    feed(&order, &plan.entries, progress, &mut steps)?;
    let root = steps.importer.finish_wrapped(wrap, &mut |_| {})?;
    Ok(summary(&root, steps.importer.stats(), None))
}

/// A CAR in the canonical order, written as produced.
struct CarFile {
    imp: CarImporter<ParallelCommP>,
    out: BufWriter<File>,
}

impl CarFile {
    fn flush(&mut self) -> Result<()> {
        self.out.write_all(&self.imp.take_output()).context("writing the CAR")
    }
}

impl Steps for CarFile {
    fn begin_file(&mut self) -> Result<()> {
        self.imp.begin_file()?;
        Ok(())
    }
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.imp.push(bytes)?;
        self.flush()
    }
    fn end_file(&mut self) -> Result<()> {
        self.imp.end_file()?;
        self.flush()
    }
    fn symlink(&mut self) -> Result<()> {
        self.imp.add_symlink()?;
        self.flush()
    }
}

fn import_car(
    plan: Plan,
    wrap: Option<&str>,
    path: &Path,
    v2: bool,
    progress: &ProgressBar,
) -> Result<AddSummary> {
    let order = plan.order.clone();
    let hasher = ParallelCommP::new();
    let imp = if plan.raw_root {
        // The root will be the one raw leaf: a CIDv1 whatever the profile's version.
        let like = sha256_cid(cid::Version::V1, RAW, b"");
        CarImporter::with_provisional_root(plan.importer, &like, v2, hasher)
    } else {
        CarImporter::new(plan.importer, v2, hasher)
    };
    let mut car = CarFile { imp, out: BufWriter::with_capacity(1 << 20, create(path)?) };
    car.flush()?;
    feed(&order, &plan.entries, progress, &mut car)?;
    let CarFile { imp, mut out } = car;
    let (root, finished, last, stats) = imp.finish_with_stats(wrap)?;
    out.write_all(&last)?;
    out.write_all(&finished.tail)?;
    out.flush()?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    patch(&mut file, &finished)?;
    let piece = finished.piece.context("the CAR's piece")?;
    Ok(summary(&root, stats, Some((finished.car_bytes, piece))))
}

/// Writes a finished CAR's first bytes (the real header) over the provisional ones, and syncs a
/// regular file (a device such as `/dev/null`, used to measure the import alone, cannot be synced:
/// `fsync` gives `EINVAL`).
fn patch(file: &mut File, finished: &Finished) -> Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&finished.head)?;
    if file.metadata()?.file_type().is_file() {
        file.sync_all().context("syncing the CAR")?;
    }
    Ok(())
}

/// A CAR in `ipfs dag export` order: blocks spooled to a side file, then written root first.
fn import_dfs(
    plan: Plan,
    wrap: Option<&str>,
    path: &Path,
    v2: bool,
    progress: &ProgressBar,
) -> Result<AddSummary> {
    let order = plan.order.clone();
    // Beside the CAR, or in the temporary directory when the CAR goes to a device (`/dev/null`).
    let spool_path = match std::fs::metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            std::env::temp_dir().join(format!("estuary-{}.car.spool", std::process::id()))
        }
        _ => path.with_extension("car.spool"),
    };
    let mut spool = BufWriter::with_capacity(1 << 20, create(&spool_path)?);
    let mut index: HashMap<cid::Cid, (u64, usize)> = HashMap::new();
    let mut pos = 0u64;
    let root;
    let stats;
    {
        let mut steps = Blocks {
            importer: plan.importer,
            sink: |b: Block| {
                index.insert(b.cid, (pos, b.data.len()));
                pos += b.data.len() as u64;
                spool.write_all(&b.data).context("writing the spool")
            },
        };
        feed(&order, &plan.entries, progress, &mut steps)?;
        let mut blocks = Vec::new();
        root = steps.importer.finish_wrapped(wrap, &mut |b| blocks.push(b))?;
        for b in blocks {
            (steps.sink)(b)?;
        }
        stats = steps.importer.stats();
    }
    spool.flush()?;
    drop(spool);
    let mut spooled = File::open(&spool_path)?;
    let mut out = BufWriter::with_capacity(1 << 20, create(path)?);
    let mut buf = Vec::new();
    let mut car = CarStream::new(&root.cid, false, v2, ParallelCommP::new(), &mut buf);
    let source = from_fn(|cid: &cid::Cid| {
        let (offset, len) = *index.get(cid).ok_or(BlockError::Missing(*cid))?;
        let mut data = vec![0u8; len];
        spooled
            .seek(SeekFrom::Start(offset))
            .and_then(|_| spooled.read_exact(&mut data))
            .map_err(|e| BlockError::Io { cid: *cid, source: Box::new(e) })?;
        Ok(data)
    });
    let mut io_error = None;
    walk::dfs(root.cid, WalkLimits::default(), source, |cid, data| {
        car.block(cid, data, &mut buf);
        if buf.len() >= 1 << 20 {
            if let Err(e) = out.write_all(&buf) {
                io_error.get_or_insert(e);
            }
            buf.clear();
        }
    })?;
    if let Some(e) = io_error {
        return Err(e).context("writing the CAR");
    }
    out.write_all(&buf)?;
    let finished = car.finish(&root.cid)?;
    out.write_all(&finished.tail)?;
    out.flush()?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    patch(&mut file, &finished)?;
    std::fs::remove_file(&spool_path)?;
    let piece = finished.piece.context("the CAR's piece")?;
    Ok(summary(&root, stats, Some((finished.car_bytes, piece))))
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() || total < 64 << 20 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Every entry below `root` with its path relative to it (the importer orders them).
fn collect(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for child in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let child = child?;
            let name = child.file_name();
            let name =
                name.to_str().with_context(|| format!("{:?} is not a UTF-8 name", child.path()))?;
            let rel_path = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
            let file_type = child.file_type()?;
            let (kind, size) = if file_type.is_symlink() {
                let target = std::fs::read_link(child.path())?;
                let target = target
                    .to_str()
                    .with_context(|| format!("symlink {rel_path} has a non-UTF-8 target"))?;
                (Kind::Symlink(target.to_owned()), 0)
            } else if file_type.is_dir() {
                stack.push((child.path(), rel_path.clone()));
                (Kind::Dir, 0)
            } else {
                (Kind::File, child.metadata()?.len())
            };
            out.push(Entry { path: child.path(), rel: rel_path, kind, size });
        }
    }
    Ok(out)
}
