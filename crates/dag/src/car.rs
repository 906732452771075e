//! CAR (content-addressed archive) v1 writing and v1/v2 reading.
//!
//! Writing is a pair of pure functions ([`header_v1`], [`CarWriter::section`]) so a caller can
//! stream an archive as blocks are produced. The root CID is known only at the end of an import;
//! the CLI writes a header for a provisional root of the same length and patches it when the root
//! is known (the way `@ipld/car`'s `updateRootsInFile` does), which keeps every byte after the
//! header in place. A sink that cannot seek receives the archive in `dfs` order instead, from a
//! store that already holds the blocks.
//!
//! Reading is a push decoder ([`CarDecoder`]): bytes in, header and verified blocks out, with at
//! most one section buffered. Every block is checked against its CID; sizes are bounded by
//! [`CarLimits`].

use std::collections::HashSet;

use ::cid::Cid;
use sha2::{Digest, Sha256};

use crate::{
    block::{Block, IDENTITY, SHA2_256},
    varint,
};

/// Size bounds applied while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLimits {
    /// Largest header, in bytes.
    pub max_header: usize,
    /// Largest block, in bytes (the IPFS convention is 2 MiB).
    pub max_block: usize,
    /// Most roots in a header.
    pub max_roots: usize,
}

impl Default for CarLimits {
    fn default() -> Self {
        Self { max_header: 64 * 1024, max_block: 2 * 1024 * 1024, max_roots: 1024 }
    }
}

/// Why bytes are not an acceptable CAR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// A varint is malformed.
    #[error("malformed varint at byte {offset}: {source}")]
    Varint {
        /// Where.
        offset: u64,
        /// What.
        source: varint::VarintError,
    },
    /// The header is longer than allowed.
    #[error("CAR header of {len} bytes exceeds the limit of {max}")]
    HeaderTooLarge {
        /// Its length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The header is not the dag-cbor map the format defines.
    #[error("malformed CAR header: {0}")]
    BadHeader(String),
    /// A version other than 1 or 2.
    #[error("unsupported CAR version {0}")]
    UnsupportedVersion(u64),
    /// A section is larger than allowed.
    #[error("CAR section at byte {offset} of {len} bytes exceeds the block limit of {max}")]
    SectionTooLarge {
        /// Where.
        offset: u64,
        /// Its length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A section's CID is malformed.
    #[error("malformed CID in the section at byte {offset}: {reason}")]
    BadCid {
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
    /// A block's bytes do not hash to its CID.
    #[error("block {cid} does not match its hash")]
    HashMismatch {
        /// The CID claimed.
        cid: Cid,
    },
    /// A block is hashed with a function this reader cannot check.
    #[error("block {cid} uses multihash 0x{code:x}, which cannot be verified")]
    UnsupportedHash {
        /// The block.
        cid: Cid,
        /// The multihash code.
        code: u64,
    },
    /// The input ended inside the header or a section.
    #[error("CAR is truncated at byte {0}")]
    Truncated(u64),
    /// A CARv2 header is inconsistent.
    #[error("malformed CARv2 header: {0}")]
    BadV2Header(String),
}

/// A CAR header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarHeader {
    /// 1, or 2 when the payload came wrapped in CARv2.
    pub version: u64,
    /// The roots the archive names.
    pub roots: Vec<Cid>,
}

// ---------------------------------------------------------------------------------- writing

/// The encoded CARv1 header (length prefix included) naming `roots`.
pub fn header_v1(roots: &[Cid]) -> Vec<u8> {
    use crate::cbor::{major, write_cid, write_head, write_text};
    let mut cbor = vec![0xa2];
    write_text("roots", &mut cbor);
    write_head(major::ARRAY, roots.len() as u64, &mut cbor);
    for root in roots {
        write_cid(root, &mut cbor);
    }
    write_text("version", &mut cbor);
    cbor.push(0x01);
    let mut out = Vec::with_capacity(cbor.len() + 2);
    varint::encode(cbor.len() as u64, &mut out);
    out.extend_from_slice(&cbor);
    out
}

/// Appends one section (length, CID, bytes) for `block` to `out`.
pub fn encode_section(block: &Block, out: &mut Vec<u8>) {
    let cid = block.cid.to_bytes();
    varint::encode((cid.len() + block.data.len()) as u64, out);
    out.extend_from_slice(&cid);
    out.extend_from_slice(&block.data);
}

/// Writes each block once, in the order given.
#[derive(Debug, Default)]
pub struct CarWriter {
    seen: HashSet<Cid>,
    blocks: u64,
    bytes: u64,
}

impl CarWriter {
    /// A writer that has written nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `block`'s section to `out` unless the block was written already; returns whether
    /// it wrote.
    pub fn section(&mut self, block: &Block, out: &mut Vec<u8>) -> bool {
        if !self.seen.insert(block.cid) {
            return false;
        }
        let before = out.len();
        encode_section(block, out);
        self.blocks += 1;
        self.bytes += (out.len() - before) as u64;
        true
    }

    /// Distinct blocks written.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Section bytes written (the header not included).
    pub fn section_bytes(&self) -> u64 {
        self.bytes
    }
}

// ---------------------------------------------------------------------------------- CARv2

/// Bytes before a CARv2's payload: the pragma and the 40-byte header.
pub const V2_PREFIX_LEN: u64 = 51;
/// Multicodec code of the `MultihashIndexSorted` CARv2 index.
pub const MULTIHASH_INDEX_SORTED: u64 = 0x0401;

/// The fixed CARv2 header that follows the pragma (its 16 characteristics bytes are left zero
/// when written, as go-car writes them, and ignored when read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Header {
    /// Where the CARv1 payload starts, from the start of the file.
    pub data_offset: u64,
    /// The payload's length.
    pub data_size: u64,
    /// Where the index starts, or 0 for none.
    pub index_offset: u64,
}

impl V2Header {
    /// Reads the 40 header bytes (all fields little-endian).
    pub fn parse(bytes: &[u8; 40]) -> Self {
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
        Self { data_offset: word(16), data_size: word(24), index_offset: word(32) }
    }

    /// Reads a file's first 51 bytes: the pragma and the header.
    pub fn from_prefix(prefix: &[u8; 51]) -> Result<Self, CarError> {
        if prefix[..11] != V2_PRAGMA {
            return Err(CarError::BadV2Header("not a CARv2 pragma".into()));
        }
        Ok(Self::parse(prefix[11..].try_into().unwrap_or(&[0; 40])))
    }

    /// The pragma and header, ready to be the first 51 bytes of a file.
    pub fn to_prefix(&self) -> [u8; 51] {
        let mut out = [0u8; 51];
        out[..11].copy_from_slice(&V2_PRAGMA);
        out[27..35].copy_from_slice(&self.data_offset.to_le_bytes());
        out[35..43].copy_from_slice(&self.data_size.to_le_bytes());
        out[43..51].copy_from_slice(&self.index_offset.to_le_bytes());
        out
    }
}

/// The CARv2 pragma and header for a payload of `data_size` bytes right after them, with the
/// index (if `has_index`) right after the payload.
pub fn v2_prefix(data_size: u64, has_index: bool) -> [u8; 51] {
    let index_offset = if has_index { V2_PREFIX_LEN + data_size } else { 0 };
    V2Header { data_offset: V2_PREFIX_LEN, data_size, index_offset }.to_prefix()
}

/// A `MultihashIndexSorted` index (with its codec prefix) of `(cid, offset)` records, where an
/// offset is that of the block's section from the start of the CARv1 payload. The bytes are
/// go-car's: hash codes ascending, then digest widths ascending, then records by digest.
pub fn multihash_index_sorted(records: &[(Cid, u64)]) -> Vec<u8> {
    use std::collections::BTreeMap;
    // hash code → digest length → (digest, offset)
    type Buckets<'a> = BTreeMap<u64, BTreeMap<usize, Vec<(&'a [u8], u64)>>>;
    let mut by_code: Buckets<'_> = BTreeMap::new();
    for (cid, offset) in records {
        let hash = cid.hash();
        let digest = hash.digest();
        by_code
            .entry(hash.code())
            .or_default()
            .entry(digest.len())
            .or_default()
            .push((digest, *offset));
    }
    let mut out = Vec::new();
    varint::encode(MULTIHASH_INDEX_SORTED, &mut out);
    out.extend_from_slice(&(by_code.len() as i32).to_le_bytes());
    for (code, widths) in by_code {
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(&(widths.len() as i32).to_le_bytes());
        for (digest_len, mut entries) in widths {
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let width = digest_len + 8;
            out.extend_from_slice(&(width as u32).to_le_bytes());
            out.extend_from_slice(&((width * entries.len()) as i64).to_le_bytes());
            for (digest, offset) in entries {
                out.extend_from_slice(digest);
                out.extend_from_slice(&offset.to_le_bytes());
            }
        }
    }
    out
}

/// One record of a CARv2 index: a multihash (code and digest) and its section's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRecord {
    /// Multihash code.
    pub code: u64,
    /// Digest.
    pub digest: Vec<u8>,
    /// Offset of the section from the start of the CARv1 payload.
    pub offset: u64,
}

/// Reads a `MultihashIndexSorted` index (codec prefix included), refusing anything malformed
/// or larger than `max_records`.
pub fn parse_multihash_index_sorted(
    bytes: &[u8],
    max_records: usize,
) -> Result<Vec<IndexRecord>, CarError> {
    let bad = |what: &str| CarError::BadV2Header(format!("index: {what}"));
    let (codec, n) = varint::decode(bytes).map_err(|_| bad("malformed codec"))?;
    if codec != MULTIHASH_INDEX_SORTED {
        return Err(bad(&format!("unsupported index codec 0x{codec:x}")));
    }
    let mut rest = &bytes[n..];
    let mut take = |len: usize| -> Result<&[u8], CarError> {
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(len);
        rest = tail;
        Ok(head)
    };
    let int32 = |b: &[u8]| i32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
    let codes = int32(take(4)?);
    if codes < 0 {
        return Err(bad("negative count"));
    }
    let mut records = Vec::new();
    for _ in 0..codes {
        let code = u64::from_le_bytes(take(8)?.try_into().unwrap_or([0; 8]));
        let widths = int32(take(4)?);
        if widths < 0 {
            return Err(bad("negative count"));
        }
        for _ in 0..widths {
            let width = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4])) as usize;
            let len = i64::from_le_bytes(take(8)?.try_into().unwrap_or([0; 8]));
            if !(9..=8 + 64).contains(&width)
                || len < 0
                || !(len as u64).is_multiple_of(width as u64)
            {
                return Err(bad("bad bucket width or length"));
            }
            let count = len as u64 / width as u64;
            if records.len() as u64 + count > max_records as u64 {
                return Err(bad("more records than allowed"));
            }
            let data = take(len as usize)?;
            for entry in data.chunks_exact(width) {
                let (digest, offset) = entry.split_at(width - 8);
                records.push(IndexRecord {
                    code,
                    digest: digest.to_vec(),
                    offset: u64::from_le_bytes(offset.try_into().unwrap_or([0; 8])),
                });
            }
        }
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(records)
}

// ---------------------------------------------------------------------------------- reading

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarItem {
    /// The header, first.
    Header(CarHeader),
    /// A verified block.
    Block(Block),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    V2Header,
    /// Skip bytes up to the CARv1 payload of `data_size` bytes.
    V2Skip {
        skip: u64,
        data_size: u64,
    },
    /// The CARv1 payload's header.
    V2Payload {
        data_size: u64,
    },
    /// Read sections; `remaining` bounds a CARv2 payload.
    Sections {
        remaining: Option<u64>,
    },
    Done,
}

/// The CARv2 pragma: a CARv1-style header `{version: 2}`.
pub const V2_PRAGMA: [u8; 11] = [0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02];

/// Push decoder for CAR v1 and v2.
#[derive(Debug)]
pub struct CarDecoder {
    limits: CarLimits,
    buf: Vec<u8>,
    start: usize,
    /// Offset in the stream of `buf[start]`.
    offset: u64,
    stage: Stage,
}

impl CarDecoder {
    /// A decoder with `limits`.
    pub fn new(limits: CarLimits) -> Self {
        Self { limits, buf: Vec::new(), start: 0, offset: 0, stage: Stage::Header }
    }

    /// Adds input. Call [`next_item`](Self::next_item) until it returns `Ok(None)` before pushing more, so
    /// at most one section is held.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// The next header or block, `Ok(None)` if more input is needed (or the archive ended).
    pub fn next_item(&mut self) -> Result<Option<CarItem>, CarError> {
        loop {
            match self.stage {
                Stage::Done => return Ok(None),
                Stage::Header => {
                    let Some((n, total)) = self.header_frame()? else { return Ok(None) };
                    if self.pending()[..total] == V2_PRAGMA {
                        self.consume(total);
                        self.stage = Stage::V2Header;
                        continue;
                    }
                    let header = decode_header(&self.pending()[n..total], &self.limits)?;
                    self.consume(total);
                    self.stage = Stage::Sections { remaining: None };
                    return Ok(Some(CarItem::Header(CarHeader {
                        version: 1,
                        roots: header.roots,
                    })));
                }
                Stage::V2Header => {
                    let Some(bytes) = self.pending().get(..40) else { return Ok(None) };
                    let header = V2Header::parse(bytes.try_into().unwrap_or(&[0; 40]));
                    let here = self.offset + 40;
                    let skip = header.data_offset.checked_sub(here).ok_or_else(|| {
                        CarError::BadV2Header(format!(
                            "data offset {} points into the header",
                            header.data_offset
                        ))
                    })?;
                    self.consume(40);
                    self.stage = Stage::V2Skip { skip, data_size: header.data_size };
                }
                Stage::V2Skip { skip, data_size } => {
                    let n = skip.min(self.pending().len() as u64);
                    self.consume(n as usize);
                    if n < skip {
                        self.stage = Stage::V2Skip { skip: skip - n, data_size };
                        return Ok(None);
                    }
                    self.stage = Stage::V2Payload { data_size };
                }
                Stage::V2Payload { data_size } => {
                    // The payload is a complete CARv1, header first.
                    let Some((n, total)) = self.header_frame()? else { return Ok(None) };
                    let header = decode_header(&self.pending()[n..total], &self.limits).map_err(
                        |e| match e {
                            CarError::UnsupportedVersion(v) => {
                                CarError::BadV2Header(format!("inner header has version {v}"))
                            }
                            e => e,
                        },
                    )?;
                    if total as u64 > data_size {
                        return Err(CarError::BadV2Header(
                            "inner header is larger than the data size".into(),
                        ));
                    }
                    self.consume(total);
                    self.stage = Stage::Sections { remaining: Some(data_size - total as u64) };
                    return Ok(Some(CarItem::Header(CarHeader {
                        version: 2,
                        roots: header.roots,
                    })));
                }
                Stage::Sections { remaining } => {
                    if remaining == Some(0) {
                        self.stage = Stage::Done;
                        return Ok(None);
                    }
                    let section_offset = self.offset;
                    let Some((len, n)) = self.varint()? else {
                        return Ok(None);
                    };
                    let max = self.limits.max_block + 128;
                    if len > max as u64 {
                        return Err(CarError::SectionTooLarge {
                            offset: section_offset,
                            len,
                            max: self.limits.max_block,
                        });
                    }
                    let total = n + len as usize;
                    if let Some(r) = remaining
                        && total as u64 > r
                    {
                        return Err(CarError::BadV2Header(format!(
                            "section at byte {section_offset} runs past the data size"
                        )));
                    }
                    if self.pending().len() < total {
                        return Ok(None);
                    }
                    let block =
                        parse_section(&self.pending()[n..total], section_offset, &self.limits)?;
                    self.consume(total);
                    self.stage = Stage::Sections { remaining: remaining.map(|r| r - total as u64) };
                    return Ok(Some(CarItem::Block(block)));
                }
            }
        }
    }

    /// Bytes of input consumed so far: after a block is returned, its data ends here.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Checks that the input ended at a section boundary.
    pub fn finish(&self) -> Result<(), CarError> {
        match self.stage {
            Stage::Done => Ok(()),
            Stage::Sections { remaining: None } if self.pending().is_empty() => Ok(()),
            _ => Err(CarError::Truncated(self.offset + self.pending().len() as u64)),
        }
    }

    /// The next length-prefixed header at the front of the pending input, within the header
    /// limit: (length of the prefix, length of prefix and header), or `None` if incomplete.
    fn header_frame(&self) -> Result<Option<(usize, usize)>, CarError> {
        let Some((len, n)) = self.varint()? else { return Ok(None) };
        if len > self.limits.max_header as u64 {
            return Err(CarError::HeaderTooLarge { len, max: self.limits.max_header });
        }
        let total = n + len as usize;
        Ok((self.pending().len() >= total).then_some((n, total)))
    }

    /// A varint at the front of the pending input, or `None` if it may be incomplete.
    fn varint(&self) -> Result<Option<(u64, usize)>, CarError> {
        match varint::decode(self.pending()) {
            Ok(v) => Ok(Some(v)),
            Err(varint::VarintError::Truncated) => Ok(None),
            Err(source) => Err(CarError::Varint { offset: self.offset, source }),
        }
    }
}

/// Why a CAR could not be read from a `Read`er.
#[cfg(feature = "io")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The reader failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The bytes are not an acceptable CAR.
    #[error(transparent)]
    Car(#[from] CarError),
}

/// Iterates the header and verified blocks of a CAR read from `reader`, 64 KiB at a time.
#[cfg(feature = "io")]
pub struct CarReader<R> {
    reader: R,
    decoder: CarDecoder,
    buf: Vec<u8>,
    done: bool,
}

#[cfg(feature = "io")]
impl<R: std::io::Read> CarReader<R> {
    /// A reader applying `limits`.
    pub fn new(reader: R, limits: CarLimits) -> Self {
        Self { reader, decoder: CarDecoder::new(limits), buf: vec![0; 64 * 1024], done: false }
    }

    /// Bytes consumed so far (see [`CarDecoder::offset`]).
    pub fn offset(&self) -> u64 {
        self.decoder.offset()
    }
}

#[cfg(feature = "io")]
impl<R: std::io::Read> Iterator for CarReader<R> {
    type Item = Result<CarItem, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.decoder.next_item() {
                Ok(Some(item)) => return Some(Ok(item)),
                Ok(None) if self.done => return None,
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    if let Err(e) = self.decoder.finish() {
                        return Some(Err(e.into()));
                    }
                }
                Ok(n) => self.decoder.push(&self.buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}

/// Reads a whole CAR held in memory.
pub fn read_car(bytes: &[u8], limits: CarLimits) -> Result<(CarHeader, Vec<Block>), CarError> {
    let mut decoder = CarDecoder::new(limits);
    decoder.push(bytes);
    let mut header = None;
    let mut blocks = Vec::new();
    while let Some(item) = decoder.next_item()? {
        match item {
            CarItem::Header(h) => header = Some(h),
            CarItem::Block(b) => blocks.push(b),
        }
    }
    decoder.finish()?;
    let header = header.ok_or(CarError::Truncated(0))?;
    Ok((header, blocks))
}

fn parse_section(section: &[u8], offset: u64, limits: &CarLimits) -> Result<Block, CarError> {
    let mut reader = section;
    let cid = Cid::read_bytes(&mut reader)
        .map_err(|e| CarError::BadCid { offset, reason: e.to_string() })?;
    if reader.len() > limits.max_block {
        return Err(CarError::SectionTooLarge {
            offset,
            len: reader.len() as u64,
            max: limits.max_block,
        });
    }
    verify(&cid, reader)?;
    Ok(Block { cid, data: reader.to_vec() })
}

/// Checks that `data` hashes to `cid`'s multihash.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), CarError> {
    let hash = cid.hash();
    let ok = match hash.code() {
        SHA2_256 => hash.digest() == Sha256::digest(data).as_slice(),
        IDENTITY => hash.digest() == data,
        code => return Err(CarError::UnsupportedHash { cid: *cid, code }),
    };
    if ok { Ok(()) } else { Err(CarError::HashMismatch { cid: *cid }) }
}

/// Reads the one CBOR shape a CAR header has: `{"roots": [tag42(bytes)], "version": uint}`,
/// keys in either order, nothing else.
fn decode_header(bytes: &[u8], limits: &CarLimits) -> Result<CarHeader, CarError> {
    use crate::cbor::{Reader, major};
    let bad = |e: crate::cbor::CborError| CarError::BadHeader(e.to_string());
    let err = |what: &str| Err(CarError::BadHeader(what.to_owned()));
    let mut c = Reader::new(bytes);
    let (kind, entries) = c.head().map_err(bad)?;
    if kind != major::MAP || entries > 2 {
        return err("expected a map of roots and version");
    }
    let (mut roots, mut version) = (None, None);
    for _ in 0..entries {
        match c.text().map_err(bad)? {
            b"version" => {
                let v = c.uint().map_err(bad)?;
                if version.replace(v).is_some() {
                    return err("version must be given once");
                }
            }
            b"roots" => {
                let (kind, n) = c.head().map_err(bad)?;
                if kind != major::ARRAY || roots.is_some() {
                    return err("roots must be one array");
                }
                if n > limits.max_roots as u64 {
                    return err("too many roots");
                }
                let mut list = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    list.push(c.cid().map_err(bad)?);
                }
                roots = Some(list);
            }
            _ => return err("unknown key"),
        }
    }
    c.end().map_err(|_| CarError::BadHeader("trailing bytes after the header map".into()))?;
    let version = version.ok_or_else(|| CarError::BadHeader("no version".into()))?;
    if version != 1 {
        return Err(CarError::UnsupportedVersion(version));
    }
    let roots = roots.ok_or_else(|| CarError::BadHeader("no roots".into()))?;
    Ok(CarHeader { version, roots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{file::import_bytes, profile::Profile};

    fn sample() -> (Cid, Vec<Block>) {
        let opts = crate::ImportOptions { chunk_size: 100, ..Profile::KuboCidV1.options() };
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let (root, blocks) = import_bytes(&data, opts).unwrap();
        (root.cid, blocks)
    }

    fn archive(root: Cid, blocks: &[Block]) -> Vec<u8> {
        let mut out = header_v1(&[root]);
        let mut w = CarWriter::new();
        for b in blocks {
            w.section(b, &mut out);
        }
        out
    }

    #[test]
    fn header_bytes_match_ipld_car() {
        // @ipld/car's header for bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy.
        let cid: Cid =
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse().unwrap();
        let h = header_v1(&[cid]);
        assert_eq!(
            &h[..12],
            &[0x3a, 0xa2, 0x65, b'r', b'o', b'o', b't', b's', 0x81, 0xd8, 0x2a, 0x58]
        );
        assert_eq!(h[12], 37);
        assert_eq!(h.len(), 1 + 0x3a);
    }

    #[test]
    fn write_then_read_in_pieces() {
        let (root, blocks) = sample();
        let bytes = archive(root, &blocks);
        for step in [1, 3, 64, 1 << 20] {
            let mut d = CarDecoder::new(CarLimits::default());
            let mut got = Vec::new();
            for piece in bytes.chunks(step) {
                d.push(piece);
                while let Some(item) = d.next_item().unwrap() {
                    got.push(item);
                }
            }
            d.finish().unwrap();
            assert_eq!(got[0], CarItem::Header(CarHeader { version: 1, roots: vec![root] }));
            let mut unique = blocks.clone();
            unique.dedup_by(|a, b| a.cid == b.cid);
            assert_eq!(got.len(), 1 + blocks.iter().map(|b| b.cid).collect::<HashSet<_>>().len());
        }
    }

    #[test]
    fn rejects_tampering_and_limits() {
        let (root, blocks) = sample();
        let bytes = archive(root, &blocks);
        // Flip a byte in the last block's data.
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(read_car(&bad, CarLimits::default()), Err(CarError::HashMismatch { .. })));
        // Truncated.
        assert!(matches!(
            read_car(&bytes[..bytes.len() - 3], CarLimits::default()),
            Err(CarError::Truncated(_))
        ));
        // Block limit.
        let tight = CarLimits { max_block: 50, ..CarLimits::default() };
        assert!(matches!(read_car(&bytes, tight), Err(CarError::SectionTooLarge { .. })));
        // A huge section length is refused before any allocation.
        let mut huge = header_v1(&[root]);
        huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            read_car(&huge, CarLimits::default()),
            Err(CarError::SectionTooLarge { .. })
        ));
        // Header limit and garbage header.
        assert!(matches!(
            read_car(&[0xff, 0xff, 0x7f], CarLimits::default()),
            Err(CarError::HeaderTooLarge { .. })
        ));
        assert!(matches!(
            read_car(&[0x02, 0xa0, 0x00], CarLimits::default()),
            Err(CarError::BadHeader(_))
        ));
        // Version 3.
        assert!(matches!(
            read_car(
                &[0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x03],
                CarLimits::default()
            ),
            Err(CarError::UnsupportedVersion(3))
        ));
        // Empty input.
        assert!(read_car(&[], CarLimits::default()).is_err());
    }

    proptest::proptest! {
        /// Any blocks written as a CAR read back the same, whatever the pushes' sizes.
        #[test]
        fn write_read_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..300), 1..20),
                                 step in 1usize..500) {
            let blocks: Vec<Block> = payloads
                .into_iter()
                .map(|d| Block::new(cid::Version::V1, crate::block::RAW, d))
                .collect();
            let bytes = archive(blocks[0].cid, &blocks);
            let mut d = CarDecoder::new(CarLimits::default());
            let mut got = Vec::new();
            for piece in bytes.chunks(step) {
                d.push(piece);
                while let Some(item) = d.next_item().unwrap() {
                    if let CarItem::Block(b) = item {
                        got.push(b);
                    }
                }
            }
            d.finish().unwrap();
            let mut unique = Vec::new();
            let mut seen = HashSet::new();
            for b in blocks {
                if seen.insert(b.cid) {
                    unique.push(b);
                }
            }
            proptest::prop_assert_eq!(got, unique);
        }
    }

    #[cfg(feature = "io")]
    #[test]
    fn reader_over_io() {
        let (root, blocks) = sample();
        let bytes = archive(root, &blocks);
        let items: Vec<_> =
            CarReader::new(&bytes[..], CarLimits::default()).collect::<Result<_, _>>().unwrap();
        assert_eq!(items[0], CarItem::Header(CarHeader { version: 1, roots: vec![root] }));
        let cut = CarReader::new(&bytes[..bytes.len() - 1], CarLimits::default())
            .collect::<Result<Vec<_>, _>>();
        assert!(matches!(cut, Err(ReadError::Car(CarError::Truncated(_)))));
    }

    #[test]
    fn index_round_trip_and_bytes() {
        let (_, blocks) = sample();
        let records: Vec<(Cid, u64)> =
            blocks.iter().enumerate().map(|(i, b)| (b.cid, 100 * i as u64)).collect();
        let index = multihash_index_sorted(&records);
        assert_eq!(&index[..2], &[0x81, 0x08]); // varint 0x0401
        assert_eq!(&index[2..6], &1i32.to_le_bytes()); // one hash code
        assert_eq!(&index[6..14], &0x12u64.to_le_bytes()); // sha2-256
        assert_eq!(&index[18..22], &40u32.to_le_bytes()); // 32-byte digests + 8-byte offsets
        let parsed = parse_multihash_index_sorted(&index, 1000).unwrap();
        assert_eq!(parsed.len(), records.len());
        assert!(parsed.windows(2).all(|w| w[0].digest <= w[1].digest));
        for r in &records {
            assert!(parsed.iter().any(|p| p.digest == r.0.hash().digest() && p.offset == r.1));
        }
        assert!(parse_multihash_index_sorted(&index[..index.len() - 1], 1000).is_err());
        assert!(parse_multihash_index_sorted(&index, 2).is_err());
        assert!(parse_multihash_index_sorted(&[0x80, 0x08, 0, 0, 0, 0], 10).is_err());
    }

    #[test]
    fn reads_car_v2() {
        let (root, blocks) = sample();
        let v1 = archive(root, &blocks);
        let mut v2 = V2_PRAGMA.to_vec();
        let mut header = [0u8; 40];
        header[16..24].copy_from_slice(&(51u64 + 5).to_le_bytes()); // 5 bytes of padding
        header[24..32].copy_from_slice(&(v1.len() as u64).to_le_bytes());
        v2.extend(header);
        v2.extend([0u8; 5]);
        v2.extend(&v1);
        v2.extend([0xAB; 17]); // an index we ignore
        let (h, got) = read_car(&v2, CarLimits::default()).unwrap();
        assert_eq!(h, CarHeader { version: 2, roots: vec![root] });
        assert_eq!(got.len(), read_car(&v1, CarLimits::default()).unwrap().1.len());
    }
}
