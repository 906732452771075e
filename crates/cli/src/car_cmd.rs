//! `estuary car verify`, `estuary car ls` and `estuary cat`: reading CAR files.
//!
//! A CAR file is read once, front to back, through the verifying decoder; what is kept in memory
//! is an index (CID → offset and length), and blocks are read back from the file on demand.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use cid::Cid;
use estuary_dag::{
    car::{self, CarHeader, CarItem, CarLimits, CarReader},
    cid::codec_name,
    export, walk,
};
use serde::Serialize;

/// A CAR file with every block checked and indexed.
pub struct IndexedCar {
    file: File,
    /// The header.
    pub header: CarHeader,
    /// Blocks in file order: CID, data offset, data length.
    pub blocks: Vec<(Cid, u64, usize)>,
    /// Where each block's section starts in the file, in the same order.
    pub section_starts: Vec<u64>,
    index: HashMap<Cid, (u64, usize)>,
}

impl IndexedCar {
    /// Reads and verifies `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut reader =
            CarReader::new(std::io::BufReader::with_capacity(1 << 20, &file), CarLimits::default());
        let mut header = None;
        let mut blocks = Vec::new();
        let mut section_starts = Vec::new();
        // Each item is returned as soon as it is complete, so the offset before asking for the
        // next one is where that item starts.
        let mut start = reader.offset();
        while let Some(item) = reader.next() {
            match item.with_context(|| format!("reading {}", path.display()))? {
                CarItem::Header(h) => header = Some(h),
                CarItem::Block(b) => {
                    blocks.push((b.cid, reader.offset() - b.data.len() as u64, b.data.len()));
                    section_starts.push(start);
                }
            }
            start = reader.offset();
        }
        let header = header.context("the CAR has no header")?;
        let index = blocks.iter().map(|(c, o, l)| (*c, (*o, *l))).collect();
        Ok(Self { file, header, blocks, section_starts, index })
    }

    /// A block's bytes.
    pub fn get(&mut self, cid: &Cid) -> Result<Vec<u8>, estuary_dag::BlockError> {
        let (offset, len) = *self.index.get(cid).ok_or(estuary_dag::BlockError::Missing(*cid))?;
        let mut data = vec![0u8; len];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut data))
            .map_err(|e| estuary_dag::BlockError::Io { cid: *cid, source: Box::new(e) })?;
        Ok(data)
    }
}

impl estuary_dag::BlockSource for IndexedCar {
    type Bytes = Vec<u8>;

    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, estuary_dag::BlockError> {
        self.get(cid)
    }
}

/// What `car verify` reports.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// CAR version.
    pub version: u64,
    /// Roots named by the header.
    pub roots: Vec<String>,
    /// Blocks in the file (all verified against their CIDs).
    pub blocks: usize,
    /// Blocks that appear more than once.
    pub duplicates: usize,
    /// Whether every block reachable from the roots is present.
    pub complete: bool,
    /// Blocks reachable from the roots but absent (at most 10 listed).
    pub missing: Vec<String>,
    /// Records in the CARv2 index, each checked against the section it points at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_records: Option<usize>,
}

/// Checks a CARv2's index: every record must point at a section holding that multihash.
fn verify_v2_index(path: &Path, car: &IndexedCar) -> Result<Option<usize>> {
    let mut file = File::open(path)?;
    let mut prefix = [0u8; 51];
    file.read_exact(&mut prefix)?;
    let car::V2Header { data_offset, index_offset, .. } = car::V2Header::from_prefix(&prefix)?;
    if index_offset == 0 {
        return Ok(None);
    }
    let len = file.metadata()?.len();
    if index_offset > len || len - index_offset > 1 << 30 {
        bail!("{}: index offset {index_offset} is outside the file", path.display());
    }
    let mut index = Vec::new();
    file.seek(SeekFrom::Start(index_offset))?;
    file.read_to_end(&mut index)?;
    let records = car::parse_multihash_index_sorted(&index, car.blocks.len() * 2 + 16)?;
    let by_start: HashMap<u64, &Cid> =
        car.section_starts.iter().zip(&car.blocks).map(|(s, b)| (*s, &b.0)).collect();
    for r in &records {
        let found = by_start.get(&(data_offset + r.offset));
        if !found
            .is_some_and(|c| c.hash().code() == r.code && c.hash().digest() == r.digest.as_slice())
        {
            bail!(
                "{}: index record at payload offset {} does not match the section there",
                path.display(),
                r.offset
            );
        }
    }
    Ok(Some(records.len()))
}

/// `estuary car verify FILE`.
pub fn verify(path: &Path) -> Result<VerifyReport> {
    let mut car = IndexedCar::open(path)?;
    let distinct: HashSet<Cid> = car.blocks.iter().map(|b| b.0).collect();
    let mut missing = Vec::new();
    for root in car.header.roots.clone() {
        // The shared walker, going on past a missing block (as a block without links) so that
        // every missing block is found.
        let mut walker = walk::Walker::new(root, walk::WalkLimits::default());
        while let Some((cid, _)) = walker.peek()? {
            let data = match walk::inline(&cid) {
                Some(inline) => inline.to_vec(),
                None => match car.get(&cid) {
                    Ok(data) => data,
                    Err(estuary_dag::BlockError::Missing(_)) => {
                        missing.push(cid.to_string());
                        walker.visit_links(0, Vec::new())?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            match walk::links(&cid, &data) {
                Ok(links) => walker.visit_links(data.len(), links)?,
                // A codec the walker cannot follow: its block is verified, its links unknown.
                Err(walk::WalkError::UnsupportedCodec { .. }) => {
                    walker.visit_links(data.len(), Vec::new())?
                }
                Err(e) => bail!("{}: {e}", path.display()),
            };
        }
    }
    let complete = missing.is_empty();
    missing.truncate(10);
    let index_records = if car.header.version == 2 { verify_v2_index(path, &car)? } else { None };
    Ok(VerifyReport {
        version: car.header.version,
        roots: car.header.roots.iter().map(ToString::to_string).collect(),
        blocks: car.blocks.len(),
        duplicates: car.blocks.len() - distinct.len(),
        complete,
        missing,
        index_records,
    })
}

/// One line of `car ls`.
#[derive(Debug, Serialize)]
pub struct BlockEntry {
    /// The CID.
    pub cid: String,
    /// The codec's name (or its code in hex).
    pub codec: String,
    /// Bytes of data.
    pub size: usize,
}

/// `estuary car ls FILE`.
pub fn ls(path: &Path) -> Result<Vec<BlockEntry>> {
    let car = IndexedCar::open(path)?;
    Ok(car
        .blocks
        .iter()
        .map(|(cid, _, len)| BlockEntry {
            cid: cid.to_string(),
            codec: codec_name(cid.codec())
                .map_or_else(|| format!("0x{:x}", cid.codec()), str::to_owned),
            size: *len,
        })
        .collect())
}

/// A byte range `A-B` (inclusive, as HTTP ranges) or `A-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive.
    pub last: Option<u64>,
}

impl std::str::FromStr for ByteRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('-').ok_or_else(|| format!("range {s:?} is not A-B or A-"))?;
        let start = a.parse().map_err(|_| format!("range start {a:?} is not a number"))?;
        let last = if b.is_empty() {
            None
        } else {
            Some(b.parse().map_err(|_| format!("range end {b:?} is not a number"))?)
        };
        if let Some(last) = last
            && last < start
        {
            return Err(format!("range {s:?} ends before it starts"));
        }
        Ok(Self { start, last })
    }
}

/// Options of `estuary cat`.
#[derive(Debug, clap::Args)]
pub struct CatArgs {
    /// The CAR file.
    pub car: PathBuf,
    /// A path inside the CAR's first root (empty: the root itself).
    #[arg(default_value = "")]
    pub path: String,
    /// Only bytes A through B (inclusive), or from A to the end with `A-`.
    #[arg(long)]
    pub range: Option<ByteRange>,
}

/// `estuary cat FILE.car [PATH] [--range A-B]`: writes the bytes to `out`.
pub fn cat(args: &CatArgs, out: &mut impl Write) -> Result<()> {
    let mut car = IndexedCar::open(&args.car)?;
    let root = *car.header.roots.first().context("the CAR names no root")?;
    let target = export::resolve(root, &args.path, &mut car)?;
    let (start, end) = match args.range {
        None => (0, None),
        Some(r) => (r.start, r.last.map(|l| l + 1)),
    };
    let mut io_error = None;
    export::read_file(target, start, end, &mut car, |bytes| {
        if io_error.is_none()
            && let Err(e) = out.write_all(bytes)
        {
            io_error = Some(e);
        }
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    out.flush()?;
    Ok(())
}
