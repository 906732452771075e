//! Piece CIDs.
//!
//! - **v1**: CIDv1, codec `fil-commitment-unsealed` (0xf101), multihash
//!   `sha2-256-trunc254-padded` (0x1012) over the 32-byte commP. The padded size travels
//!   separately (deal proposals carry it).
//! - **v2** (FRC-0069): CIDv1, codec `raw` (0x55), multihash `fr32-sha256-trunc254-padbintree`
//!   (0x1011) whose digest is `uvarint(padding) ‖ height ‖ commP`: the piece describes its own
//!   size (padded = 32 · 2^height) and its payload (the unpadded size less `padding`).
//!
//! v2 → v1 drops the sizes; v1 → v2 needs them back.

use std::{fmt, str::FromStr};

use cid::Cid;
use multihash::Multihash;

use crate::commp::{Node, PieceInfo};

/// Codec of piece CID v1.
pub const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
/// Multihash of piece CID v1.
pub const SHA2_256_TRUNC254_PADDED: u64 = 0x1012;
/// Multihash of piece CID v2.
pub const FR32_SHA256_TRUNC254_PADBINTREE: u64 = 0x1011;
/// Codec of piece CID v2.
pub const RAW: u64 = 0x55;

/// Why a CID is not a piece CID, or sizes do not describe a piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PieceCidError {
    /// Not a CID at all.
    #[error("not a CID: {0}")]
    Malformed(String),
    /// A CID, but not a piece CID (wrong codec or multihash).
    #[error("CID with codec 0x{codec:x} and multihash 0x{hash:x} is not a piece CID")]
    NotPieceCid {
        /// Its codec.
        codec: u64,
        /// Its multihash code.
        hash: u64,
    },
    /// The digest has the wrong length or a malformed padding varint.
    #[error("piece CID digest is malformed: {0}")]
    BadDigest(&'static str),
    /// A height outside 2..=58 (128 bytes to 2^63 bytes padded).
    #[error("piece height {0} is outside 2..=58")]
    BadHeight(u8),
    /// More padding than FRC-0069 allows: the payload must fill more than half of its piece
    /// (else the piece would be smaller), except in the smallest piece, which holds 0 to 127
    /// bytes.
    #[error(
        "padding {padding} is too much for the {unpadded} unpadded bytes of a height-{height} piece"
    )]
    BadPadding {
        /// The padding.
        padding: u64,
        /// The piece's unpadded capacity.
        unpadded: u64,
        /// Its height.
        height: u8,
    },
    /// A padded size that is not a power of two of at least 128 bytes.
    #[error("padded size {0} is not a power of two of at least 128")]
    BadPaddedSize(u64),
}

/// A parsed piece CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PieceCid {
    /// v1: the commitment only.
    V1 {
        /// commP.
        commp: Node,
    },
    /// v2: the commitment, the tree height and the payload padding.
    V2 {
        /// commP.
        commp: Node,
        /// log2(padded size / 32).
        height: u8,
        /// Zero bytes added to the payload before Fr32.
        padding: u64,
    },
}

fn check(height: u8, padding: u64) -> Result<(), PieceCidError> {
    if !(2..=58).contains(&height) {
        return Err(PieceCidError::BadHeight(height));
    }
    let unpadded = (32u64 << height) / 128 * 127;
    let too_much = if height == 2 { padding > unpadded } else { padding >= unpadded / 2 };
    if too_much {
        return Err(PieceCidError::BadPadding { padding, unpadded, height });
    }
    Ok(())
}

impl PieceCid {
    /// The v2 CID of a computed piece.
    pub fn v2(info: &PieceInfo) -> Self {
        Self::V2 { commp: info.commp, height: info.height(), padding: info.padding() }
    }

    /// The v1 CID of a computed piece.
    pub fn v1(info: &PieceInfo) -> Self {
        Self::V1 { commp: info.commp }
    }

    /// A v2 CID from a v1 commitment and the sizes v1 leaves out.
    pub fn from_v1_with_sizes(
        commp: Node,
        padded_size: u64,
        payload_size: u64,
    ) -> Result<Self, PieceCidError> {
        if padded_size < 128 || !padded_size.is_power_of_two() {
            return Err(PieceCidError::BadPaddedSize(padded_size));
        }
        let height = (padded_size / 32).trailing_zeros() as u8;
        let unpadded = padded_size / 128 * 127;
        let padding = unpadded.checked_sub(payload_size).ok_or(PieceCidError::BadPadding {
            padding: 0,
            unpadded,
            height,
        })?;
        check(height, padding)?;
        Ok(Self::V2 { commp, height, padding })
    }

    /// The commitment.
    pub fn commp(&self) -> &Node {
        match self {
            Self::V1 { commp } | Self::V2 { commp, .. } => commp,
        }
    }

    /// The same piece as v1.
    pub fn to_v1(&self) -> Self {
        Self::V1 { commp: *self.commp() }
    }

    /// The padded size, which only v2 carries.
    pub fn padded_size(&self) -> Option<u64> {
        match self {
            Self::V1 { .. } => None,
            Self::V2 { height, .. } => Some(32u64 << height),
        }
    }

    /// The payload size, which only v2 carries.
    pub fn payload_size(&self) -> Option<u64> {
        match self {
            Self::V1 { .. } => None,
            Self::V2 { height, padding, .. } => Some((32u64 << height) / 128 * 127 - padding),
        }
    }

    /// Reads a piece CID (either version) from a CID.
    pub fn from_cid(cid: &Cid) -> Result<Self, PieceCidError> {
        let hash = cid.hash();
        let (codec, code, digest) = (cid.codec(), hash.code(), hash.digest());
        match (cid.version(), codec, code) {
            (cid::Version::V1, FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED) => {
                let commp = digest
                    .try_into()
                    .map_err(|_| PieceCidError::BadDigest("v1 digest must be 32 bytes"))?;
                Ok(Self::V1 { commp })
            }
            (cid::Version::V1, RAW, FR32_SHA256_TRUNC254_PADBINTREE) => {
                let (padding, n) =
                    read_uvarint(digest).ok_or(PieceCidError::BadDigest("bad padding varint"))?;
                let rest = &digest[n..];
                if rest.len() != 33 {
                    return Err(PieceCidError::BadDigest(
                        "v2 digest must end in a height byte and 32 bytes",
                    ));
                }
                let height = rest[0];
                check(height, padding)?;
                let commp = rest[1..]
                    .try_into()
                    .map_err(|_| PieceCidError::BadDigest("commP must be 32 bytes"))?;
                Ok(Self::V2 { commp, height, padding })
            }
            _ => Err(PieceCidError::NotPieceCid { codec, hash: code }),
        }
    }

    /// The CID.
    pub fn to_cid(&self) -> Cid {
        match self {
            Self::V1 { commp } => Cid::new_v1(
                FIL_COMMITMENT_UNSEALED,
                Multihash::wrap(SHA2_256_TRUNC254_PADDED, commp).unwrap_or_default(),
            ),
            Self::V2 { commp, height, padding } => {
                let mut digest = Vec::with_capacity(43);
                let mut v = *padding;
                while v >= 0x80 {
                    digest.push((v as u8) | 0x80);
                    v >>= 7;
                }
                digest.push(v as u8);
                digest.push(*height);
                digest.extend_from_slice(commp);
                Cid::new_v1(
                    RAW,
                    Multihash::wrap(FR32_SHA256_TRUNC254_PADBINTREE, &digest).unwrap_or_default(),
                )
            }
        }
    }
}

/// A minimal unsigned varint (at most 9 bytes, as multiformats require).
fn read_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return None;
            }
            return Some((value, i + 1));
        }
    }
    None
}

impl fmt::Display for PieceCid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_cid().fmt(f)
    }
}

impl FromStr for PieceCid {
    type Err = PieceCidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let cid = Cid::from_str(s.trim()).map_err(|e| PieceCidError::Malformed(e.to_string()))?;
        let piece = Self::from_cid(&cid)?;
        if piece.to_cid() != cid {
            return Err(PieceCidError::BadDigest("not canonically encoded"));
        }
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commp::commp;

    #[test]
    fn known_vectors_for_127_bytes_of_0xcc() {
        // go-fil-commp-hashhash testdata/0xCC.txt (v1) and @web3-storage/data-segment (v2).
        let info = commp(&[0xcc; 127]).unwrap();
        assert_eq!(
            PieceCid::v1(&info).to_string(),
            "baga6ea4seaqmfldjtozgne6adk7eve2vdxte7vzlivae7nzsbrawobo546zkijq"
        );
        assert_eq!(
            PieceCid::v2(&info).to_string(),
            "bafkzcibcaabmfldjtozgne6adk7eve2vdxte7vzlivae7nzsbrawobo546zkijq"
        );
    }

    #[test]
    fn round_trips_and_conversions() {
        let info = commp(&[7u8; 1000]).unwrap();
        let v2 = PieceCid::v2(&info);
        let parsed: PieceCid = v2.to_string().parse().unwrap();
        assert_eq!(parsed, v2);
        assert_eq!(parsed.padded_size(), Some(1024));
        assert_eq!(parsed.payload_size(), Some(1000));
        let v1 = v2.to_v1();
        assert_eq!(v1.to_string().parse::<PieceCid>().unwrap(), v1);
        assert_eq!(PieceCid::from_v1_with_sizes(*v1.commp(), 1024, 1000).unwrap(), v2);
    }

    #[test]
    fn refuses_what_is_not_a_piece() {
        assert!(matches!(
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse::<PieceCid>(),
            Err(PieceCidError::NotPieceCid { .. })
        ));
        assert!(matches!("nonsense".parse::<PieceCid>(), Err(PieceCidError::Malformed(_))));
        assert!(matches!(
            PieceCid::from_v1_with_sizes([0; 32], 1000, 10),
            Err(PieceCidError::BadPaddedSize(1000))
        ));
        assert!(matches!(
            PieceCid::from_v1_with_sizes([0; 32], 128, 200),
            Err(PieceCidError::BadPadding { .. })
        ));
        let bad_height = PieceCid::V2 { commp: [0; 32], height: 1, padding: 0 }.to_cid();
        assert_eq!(PieceCid::from_cid(&bad_height), Err(PieceCidError::BadHeight(1)));
        let empty = PieceCid::V2 { commp: [0; 32], height: 2, padding: 127 }.to_cid();
        assert!(PieceCid::from_cid(&empty).is_ok());
        let bad_padding = PieceCid::V2 { commp: [0; 32], height: 2, padding: 128 }.to_cid();
        assert!(matches!(PieceCid::from_cid(&bad_padding), Err(PieceCidError::BadPadding { .. })));
        let half_empty = PieceCid::V2 { commp: [0; 32], height: 4, padding: 254 }.to_cid();
        assert!(matches!(PieceCid::from_cid(&half_empty), Err(PieceCidError::BadPadding { .. })));
    }
}
