//! The one dag-cbor reader (and the few writers) Estuary needs: block links for the walker, and
//! CAR headers.
//!
//! Strict where dag-cbor is strict: definite lengths only, CIDs only as tag 42 over a byte
//! string that starts with `0x00` and holds exactly one canonically encoded CID. Every count is
//! checked against the bytes left before anything is allocated, and nesting is bounded, so a
//! hostile block costs at most its own length.

use ::cid::Cid;

/// Deepest nesting of arrays, maps and tags read.
pub const MAX_NESTING: usize = 256;

/// Why bytes are not the dag-cbor expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ends inside an item.
    #[error("truncated")]
    Truncated,
    /// Indefinite lengths, reserved additional information, or major type 7 with a length.
    #[error("indefinite lengths and reserved values are not dag-cbor")]
    NotDagCbor,
    /// Arrays, maps and tags nested deeper than [`MAX_NESTING`].
    #[error("nested deeper than {MAX_NESTING}")]
    TooDeep,
    /// A length does not fit in memory, or an item count exceeds the bytes left.
    #[error("a length or count exceeds the input")]
    Overlong,
    /// Tag 42 does not hold a byte string starting with 0x00 and one canonical CID.
    #[error("bad CID in tag 42: {0}")]
    BadCid(&'static str),
    /// Bytes after the one top-level item.
    #[error("trailing bytes")]
    Trailing,
    /// An item of another type than expected at this place.
    #[error("expected {expected}")]
    Unexpected {
        /// What the reader needed.
        expected: &'static str,
    },
}

/// Major types.
pub mod major {
    /// Unsigned integer.
    pub const UINT: u8 = 0;
    /// Negative integer.
    pub const NINT: u8 = 1;
    /// Byte string.
    pub const BYTES: u8 = 2;
    /// Text string.
    pub const TEXT: u8 = 3;
    /// Array.
    pub const ARRAY: u8 = 4;
    /// Map.
    pub const MAP: u8 = 5;
    /// Tag.
    pub const TAG: u8 = 6;
    /// Simple values and floats.
    pub const SIMPLE: u8 = 7;
}

/// The tag of an IPLD link.
pub const CID_TAG: u64 = 42;

/// A pull reader over one buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Fails unless everything has been read.
    pub fn end(&self) -> Result<(), CborError> {
        if self.bytes.is_empty() { Ok(()) } else { Err(CborError::Trailing) }
    }

    /// The next item's head: its major type and argument (a value, a length or a count).
    pub fn head(&mut self) -> Result<(u8, u64), CborError> {
        let (&first, rest) = self.bytes.split_first().ok_or(CborError::Truncated)?;
        self.bytes = rest;
        let (major, info) = (first >> 5, first & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let v = self.take_len(1usize << (info - 24))?;
                v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            _ => return Err(CborError::NotDagCbor),
        };
        Ok((major, arg))
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let n = usize::try_from(n).map_err(|_| CborError::Overlong)?;
        self.take_len(n)
    }

    fn take_len(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        if self.bytes.len() < n {
            return Err(CborError::Truncated);
        }
        let (v, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(v)
    }

    /// A text string.
    pub fn text(&mut self) -> Result<&'a [u8], CborError> {
        match self.head()? {
            (major::TEXT, len) => self.take(len),
            _ => Err(CborError::Unexpected { expected: "a text string" }),
        }
    }

    /// An unsigned integer.
    pub fn uint(&mut self) -> Result<u64, CborError> {
        match self.head()? {
            (major::UINT, v) => Ok(v),
            _ => Err(CborError::Unexpected { expected: "an unsigned integer" }),
        }
    }

    /// The CID of a link, after its tag (42) has been read.
    pub fn cid_after_tag(&mut self) -> Result<Cid, CborError> {
        let (major, len) = self.head()?;
        if major != major::BYTES {
            return Err(CborError::BadCid("tag 42 must hold a byte string"));
        }
        let bytes = self.take(len)?;
        let Some((0, raw)) = bytes.split_first() else {
            return Err(CborError::BadCid("the bytes must start with 0x00"));
        };
        let mut reader = raw;
        let cid = Cid::read_bytes(&mut reader).map_err(|_| CborError::BadCid("not a CID"))?;
        if !reader.is_empty() || cid.to_bytes() != raw {
            return Err(CborError::BadCid("not one canonically encoded CID"));
        }
        Ok(cid)
    }

    /// A link: tag 42 and its CID.
    pub fn cid(&mut self) -> Result<Cid, CborError> {
        match self.head()? {
            (major::TAG, CID_TAG) => self.cid_after_tag(),
            _ => Err(CborError::Unexpected { expected: "a CID (tag 42)" }),
        }
    }

    /// Skips one whole item, handing every link inside it to `link`.
    pub fn skip(&mut self, link: &mut impl FnMut(Cid)) -> Result<(), CborError> {
        self.skip_at(0, link)
    }

    fn skip_at(&mut self, nesting: usize, link: &mut impl FnMut(Cid)) -> Result<(), CborError> {
        if nesting > MAX_NESTING {
            return Err(CborError::TooDeep);
        }
        let (major, arg) = self.head()?;
        match major {
            major::UINT | major::NINT | major::SIMPLE => Ok(()),
            major::BYTES | major::TEXT => self.take(arg).map(|_| ()),
            major::ARRAY | major::MAP => {
                let items = if major == major::MAP {
                    arg.checked_mul(2).ok_or(CborError::Overlong)?
                } else {
                    arg
                };
                // Every item takes at least one byte: a count beyond the input is a lie.
                if items > self.bytes.len() as u64 {
                    return Err(CborError::Overlong);
                }
                for _ in 0..items {
                    self.skip_at(nesting + 1, link)?;
                }
                Ok(())
            }
            major::TAG if arg == CID_TAG => {
                link(self.cid_after_tag()?);
                Ok(())
            }
            major::TAG => self.skip_at(nesting + 1, link),
            _ => unreachable!("a major type has three bits"),
        }
    }
}

/// The links of a dag-cbor block, in order: every tag-42 CID anywhere in its one item.
pub fn links(data: &[u8]) -> Result<Vec<Cid>, CborError> {
    let mut out = Vec::new();
    let mut reader = Reader::new(data);
    reader.skip(&mut |cid| out.push(cid))?;
    reader.end()?;
    Ok(out)
}

/// Appends an item head.
pub fn write_head(major: u8, value: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match value {
        0..=23 => out.push(m | value as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, value as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Appends a text string.
pub fn write_text(s: &str, out: &mut Vec<u8>) {
    write_head(major::TEXT, s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a link (tag 42 over `0x00` and the CID's bytes).
pub fn write_cid(cid: &Cid, out: &mut Vec<u8>) {
    let bytes = cid.to_bytes();
    write_head(major::TAG, CID_TAG, out);
    write_head(major::BYTES, bytes.len() as u64 + 1, out);
    out.push(0x00);
    out.extend_from_slice(&bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{IDENTITY, RAW, sha256_cid};

    #[test]
    fn links_anywhere_in_the_value() {
        let leaf = sha256_cid(cid::Version::V1, RAW, b"leaf");
        let inline = Cid::new_v1(RAW, multihash::Multihash::<64>::wrap(IDENTITY, b"tiny").unwrap());
        // {"a": [tag42(leaf), 1, "x"], "b": {"c": tag42(inline)}}
        let mut cbor = vec![0xa2];
        write_text("a", &mut cbor);
        cbor.push(0x83);
        write_cid(&leaf, &mut cbor);
        cbor.push(0x01);
        write_text("x", &mut cbor);
        write_text("b", &mut cbor);
        cbor.push(0xa1);
        write_text("c", &mut cbor);
        write_cid(&inline, &mut cbor);
        assert_eq!(links(&cbor).unwrap(), [leaf, inline]);
    }

    #[test]
    fn malformed_input_is_refused() {
        for (bad, why) in [
            (&[0x9f][..], CborError::NotDagCbor),
            (&[0x83, 0x01], CborError::Overlong),
            (&[0xd8, 0x2a, 0x41, 0x01], CborError::BadCid("the bytes must start with 0x00")),
            (&[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], CborError::Overlong),
            (&[0x01, 0x02], CborError::Trailing),
            (&[0x18], CborError::Truncated),
        ] {
            assert_eq!(links(bad), Err(why), "{bad:?}");
        }
        let deep = [vec![0x81; 1000], vec![0x01]].concat();
        assert_eq!(links(&deep), Err(CborError::TooDeep));
    }

    #[test]
    fn heads_round_trip() {
        for v in [0, 23, 24, 255, 256, 65_535, 65_536, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            write_head(major::UINT, v, &mut out);
            let mut r = Reader::new(&out);
            assert_eq!(r.uint(), Ok(v));
            assert!(r.is_empty());
        }
    }
}
