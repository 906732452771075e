//! `estuary add`: files and directories to a UnixFS DAG and, optionally, a CAR file.
//!
//! Reading is streamed (1 MiB at a time), so memory stays bounded by the engine's chunk buffer,
//! one set of links per tree level, and the set of CIDs already written (for de-duplication).
//!
//! CAR order:
//! - `produced` writes each block as it is made (children before parents, root last) after a
//!   header naming a provisional root of the same length, and patches the header at the end.
//! - `dfs` (root first, depth first, as `ipfs dag export`) spools the blocks to a temporary file
//!   next to the CAR with an in-memory index, then writes them in traversal order.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use estuary_dag::{
    Block, DirectoryBuilder, FileBuilder, ImportOptions, Imported, Profile,
    block::{DAG_PB, sha256_cid},
    car, walk,
};
use estuary_piece::{CommP, PieceCid, PieceInfo};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// CAR block order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CarOrder {
    /// As produced: children before parents, root last.
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

enum CarSink {
    None,
    /// `sections` counts section bytes written; `records` holds each block's section offset
    /// from the first section (for a CARv2 index).
    Produced {
        out: BufWriter<File>,
        provisional: Vec<u8>,
        sections: u64,
        records: Vec<(cid::Cid, u64)>,
    },
    Spool {
        out: BufWriter<File>,
        path: PathBuf,
        pos: u64,
        index: HashMap<cid::Cid, (u64, usize)>,
    },
}

/// Receives every block; counts distinct ones and writes them to the CAR.
struct Sink {
    seen: HashSet<cid::Cid>,
    blocks: u64,
    dag_bytes: u64,
    car: CarSink,
    error: Option<std::io::Error>,
    buf: Vec<u8>,
    /// The commitment of the CAR bytes written, as they are written (produced order).
    commp: CommP,
}

impl Sink {
    fn put(&mut self, block: &Block) {
        if self.error.is_some() || !self.seen.insert(block.cid) {
            return;
        }
        self.blocks += 1;
        self.dag_bytes += block.data.len() as u64;
        self.buf.clear();
        let result = match &mut self.car {
            CarSink::None => Ok(()),
            CarSink::Produced { out, sections, records, .. } => {
                car::encode_section(block, &mut self.buf);
                records.push((block.cid, *sections));
                *sections += self.buf.len() as u64;
                self.commp.update(&self.buf);
                out.write_all(&self.buf)
            }
            CarSink::Spool { out, pos, index, .. } => {
                index.insert(block.cid, (*pos, block.data.len()));
                *pos += block.data.len() as u64;
                out.write_all(&block.data)
            }
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
    }
}

/// Imports `args.path`; returns the summary (and writes the CAR).
pub fn run(args: &AddArgs) -> Result<AddSummary> {
    let opts = args.options()?;
    let meta = std::fs::metadata(&args.path)
        .with_context(|| format!("reading {}", args.path.display()))?;
    let entries = if meta.is_dir() { collect(&args.path)? } else { Vec::new() };
    let total: u64 = if meta.is_dir() { entries.iter().map(|e| e.size).sum() } else { meta.len() };
    let progress = progress_bar(total);

    let mut commp = CommP::new();
    let car = match &args.car {
        None => CarSink::None,
        Some(path) => match args.car_order {
            CarOrder::Produced => {
                // Predict the root's length: dag-pb in the profile's version, or a raw leaf.
                let provisional = car::header_v1(&[sha256_cid(opts.cid_version, DAG_PB, b"")]);
                let mut out = BufWriter::with_capacity(1 << 20, create(path)?);
                if args.car_version == 2 {
                    out.write_all(&[0u8; car::V2_PREFIX_LEN as usize])?;
                    commp.update(&[0u8; car::V2_PREFIX_LEN as usize]);
                }
                out.write_all(&provisional)?;
                commp.update(&provisional);
                CarSink::Produced { out, provisional, sections: 0, records: Vec::new() }
            }
            CarOrder::Dfs => {
                let spool = path.with_extension("car.spool");
                let out = BufWriter::with_capacity(1 << 20, create(&spool)?);
                CarSink::Spool { out, path: spool, pos: 0, index: HashMap::new() }
            }
        },
    };
    let mut sink = Sink {
        seen: HashSet::new(),
        blocks: 0,
        dag_bytes: 0,
        car,
        error: None,
        buf: Vec::new(),
        commp,
    };

    let name = args.path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let root = if meta.is_dir() {
        let mut dir = DirectoryBuilder::new(opts);
        for entry in &entries {
            match &entry.kind {
                EntryKind::Dir => dir.add_dir(&entry.rel)?,
                EntryKind::Symlink(target) => {
                    dir.add_symlink(&entry.rel, target, &mut |b| sink.put(&b))?;
                }
                EntryKind::File => {
                    let node = import_file(&entry.path, opts, &mut sink, &progress)?;
                    dir.add_file(&entry.rel, node)?;
                }
            }
        }
        let root = dir.finish(&mut |b| sink.put(&b))?;
        if args.wrap { wrap(opts, name.as_deref(), root, &mut sink)? } else { root }
    } else {
        let file = import_file(&args.path, opts, &mut sink, &progress)?;
        if args.wrap { wrap(opts, name.as_deref(), file, &mut sink)? } else { file }
    };
    progress.finish_and_clear();
    if let Some(e) = sink.error.take() {
        return Err(e).context("writing the CAR");
    }

    let written = match (std::mem::replace(&mut sink.car, CarSink::None), &args.car) {
        (CarSink::Produced { out, provisional, sections, records }, Some(path)) => {
            let v2 = (args.car_version == 2).then_some(V2 { sections, records });
            let commp = std::mem::take(&mut sink.commp);
            Some(finish_produced(out, &provisional, root.cid, path, v2, commp)?)
        }
        (CarSink::Spool { out, path: spool, index, .. }, Some(path)) => {
            Some(finish_dfs(out, &spool, &index, root.cid, path, args.car_version == 2)?)
        }
        _ => None,
    };
    Ok(AddSummary {
        piece_cid: written.as_ref().map(|w| PieceCid::v2(&w.piece).to_string()),
        piece_size: written.as_ref().map(|w| w.piece.padded_size),
        root: root.cid.to_string(),
        blocks: sink.blocks,
        dag_bytes: sink.dag_bytes,
        car_bytes: written.as_ref().map(|w| w.bytes),
    })
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

fn import_file(
    path: &Path,
    opts: ImportOptions,
    sink: &mut Sink,
    progress: &ProgressBar,
) -> Result<Imported> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut builder = FileBuilder::new(opts)?;
    builder
        .push_reader(progress.wrap_read(file), &mut |b| sink.put(&b))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(builder.finish(&mut |b| sink.put(&b)))
}

fn wrap(
    opts: ImportOptions,
    name: Option<&str>,
    node: Imported,
    sink: &mut Sink,
) -> Result<Imported> {
    let name = name.context("--wrap needs an input with a UTF-8 file name")?;
    let mut dir = DirectoryBuilder::new(opts);
    dir.add_file(name, node)?;
    Ok(dir.finish(&mut |b| sink.put(&b))?)
}

/// What a CARv2 needs at the end: the payload's section bytes and where each block's section is.
struct V2 {
    sections: u64,
    records: Vec<(cid::Cid, u64)>,
}

/// Appends the index after the payload and writes the CARv2 prefix at the start; returns both.
fn finish_v2(file: &mut File, header_len: u64, v2: &V2) -> Result<([u8; 51], Vec<u8>)> {
    let data_size = header_len + v2.sections;
    let records: Vec<_> = v2.records.iter().map(|(c, o)| (*c, header_len + o)).collect();
    let index = car::multihash_index_sorted(&records);
    file.seek(SeekFrom::Start(car::V2_PREFIX_LEN + data_size))?;
    file.write_all(&index)?;
    let prefix = car::v2_prefix(data_size, true);
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&prefix)?;
    Ok((prefix, index))
}

/// The CAR written and the piece it makes.
struct Written {
    bytes: u64,
    piece: PieceInfo,
}

fn finish_produced(
    mut out: BufWriter<File>,
    provisional: &[u8],
    root: cid::Cid,
    path: &Path,
    v2: Option<V2>,
    mut commp: CommP,
) -> Result<Written> {
    out.flush()?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    let header = car::header_v1(&[root]);
    let prefix = if v2.is_some() { car::V2_PREFIX_LEN } else { 0 };
    let moved = header.len() != provisional.len();
    if moved {
        // The root's length was not the one predicted (a raw-leaf root under CIDv0): move the
        // sections to make room for the real header.
        let tmp = path.with_extension("car.tmp");
        let mut fresh = BufWriter::new(create(&tmp)?);
        fresh.write_all(&vec![0u8; prefix as usize])?;
        fresh.write_all(&header)?;
        // `file` was created write-only: read the sections back through a new handle.
        let mut old = File::open(path)?;
        old.seek(SeekFrom::Start(prefix + provisional.len() as u64))?;
        std::io::copy(&mut old, &mut fresh)?;
        fresh.flush()?;
        drop(fresh);
        std::fs::rename(&tmp, path)?;
        file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    }
    file.seek(SeekFrom::Start(prefix))?;
    file.write_all(&header)?;
    let mut first = Vec::with_capacity(prefix as usize + header.len());
    if let Some(v2) = v2 {
        // The payload ends where the sections end; anything after it is rewritten.
        file.set_len(prefix + header.len() as u64 + v2.sections)?;
        let (v2_prefix, index) = finish_v2(&mut file, header.len() as u64, &v2)?;
        commp.update(&index);
        first.extend_from_slice(&v2_prefix);
    }
    first.extend_from_slice(&header);
    let bytes = file.metadata()?.len();
    drop(file);
    // The bytes that changed after they went through commP all sit in the first quad.
    let piece = if moved {
        crate::piece_cmd::piece_of_file(path)?
    } else {
        commp.finish_with_prefix(&first)?
    };
    Ok(Written { bytes, piece })
}

fn finish_dfs(
    out: BufWriter<File>,
    spool: &Path,
    index: &HashMap<cid::Cid, (u64, usize)>,
    root: cid::Cid,
    path: &Path,
    v2: bool,
) -> Result<Written> {
    drop(out.into_inner().map_err(|e| e.into_error())?);
    let mut spooled = File::open(spool)?;
    let mut car_out = BufWriter::with_capacity(1 << 20, create(path)?);
    let mut commp = CommP::new();
    if v2 {
        car_out.write_all(&[0u8; car::V2_PREFIX_LEN as usize])?;
        commp.update(&[0u8; car::V2_PREFIX_LEN as usize]);
    }
    let header = car::header_v1(&[root]);
    car_out.write_all(&header)?;
    commp.update(&header);
    let mut sections = 0u64;
    let mut records = Vec::new();
    let mut io_error = None;
    let mut section = Vec::new();
    walk::dfs(
        root,
        |cid| {
            let (offset, len) = *index.get(cid)?;
            let mut data = vec![0u8; len];
            spooled
                .seek(SeekFrom::Start(offset))
                .and_then(|_| spooled.read_exact(&mut data))
                .ok()?;
            Some(data)
        },
        |cid, data| {
            section.clear();
            car::encode_section(&Block { cid: *cid, data: data.to_vec() }, &mut section);
            records.push((*cid, sections));
            sections += section.len() as u64;
            commp.update(&section);
            if let Err(e) = car_out.write_all(&section) {
                io_error.get_or_insert(e);
            }
        },
    )?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    car_out.flush()?;
    let mut file = car_out.into_inner().map_err(|e| e.into_error())?;
    let mut first = Vec::new();
    if v2 {
        let (v2_prefix, index) =
            finish_v2(&mut file, header.len() as u64, &V2 { sections, records })?;
        commp.update(&index);
        first.extend_from_slice(&v2_prefix);
    }
    drop(file);
    std::fs::remove_file(spool)?;
    let piece = commp.finish_with_prefix(&first)?;
    Ok(Written { bytes: std::fs::metadata(path)?.len(), piece })
}

#[derive(Debug)]
enum EntryKind {
    File,
    Dir,
    Symlink(String),
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    rel: String,
    kind: EntryKind,
    size: u64,
}

/// Every entry below `root`, parents before children, siblings in byte order of their names.
fn collect(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        children.sort_by_key(|c| c.file_name());
        let mut subdirs = Vec::new();
        for child in children {
            let name = child.file_name();
            let name =
                name.to_str().with_context(|| format!("{:?} is not a UTF-8 name", child.path()))?;
            let rel_path = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
            let file_type = child.file_type()?;
            if file_type.is_symlink() {
                let target = std::fs::read_link(child.path())?;
                let target = target
                    .to_str()
                    .with_context(|| format!("symlink {rel_path} has a non-UTF-8 target"))?;
                out.push(Entry {
                    path: child.path(),
                    rel: rel_path,
                    kind: EntryKind::Symlink(target.to_owned()),
                    size: 0,
                });
            } else if file_type.is_dir() {
                out.push(Entry {
                    path: child.path(),
                    rel: rel_path.clone(),
                    kind: EntryKind::Dir,
                    size: 0,
                });
                subdirs.push((child.path(), rel_path));
            } else {
                let size = child.metadata()?.len();
                out.push(Entry { path: child.path(), rel: rel_path, kind: EntryKind::File, size });
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}
