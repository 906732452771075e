//! What a downloaded piece must be: the CAR's exact size, and a commitment that, padded with
//! zero subtrees up to the deal's piece size, is the one the deal names.
//!
//! A deal's piece may be larger than the CAR's own piece: the client rounds it up (Boost's
//! `commp.PadCommP`, go-commp-utils `zerocomm`). The commitment of a piece padded with zeros is
//! the root of the CAR's tree combined, level by level, with the roots of all-zero subtrees —
//! no zero byte needs hashing.

use estuary_piece::{
    PieceCid, PieceInfo,
    commp::{Node, node, zero_roots},
};
use serde::Serialize;

/// The piece a deal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedPiece {
    /// The commitment (the v1 piece CID's digest).
    pub commp: Node,
    /// The deal's padded piece size.
    pub padded_size: u64,
    /// The CAR's size in bytes.
    pub car_size: u64,
}

/// Why downloaded bytes are not the deal's piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PieceMismatch {
    /// More or fewer bytes than the CAR's size.
    #[error("received {received} bytes; the CAR has {expected}")]
    WrongSize {
        /// Bytes received.
        received: u64,
        /// The CAR's size.
        expected: u64,
    },
    /// The bytes make a piece larger than the deal's.
    #[error("the bytes make a piece of {actual} bytes; the deal's is {expected}")]
    TooLarge {
        /// The bytes' padded piece size.
        actual: u64,
        /// The deal's.
        expected: u64,
    },
    /// The commitment differs: wrong bytes.
    #[error("piece commitment {actual} differs from the deal's {expected}")]
    WrongCommP {
        /// The v1 piece CID of the bytes (padded to the deal's size).
        actual: String,
        /// The deal's.
        expected: String,
    },
}

/// The commitment of `commp` (a piece of `size` padded bytes) padded with zeros to `to`.
/// `None` if `to` is smaller than `size` or either is not a power of two of at least 128.
pub fn pad_commp(commp: Node, size: u64, to: u64) -> Option<Node> {
    let valid = |s: u64| s >= 128 && s.is_power_of_two();
    if !valid(size) || !valid(to) || to < size {
        return None;
    }
    let zeros = zero_roots();
    let mut root = commp;
    let mut level = (size / 32).trailing_zeros() as usize;
    let top = (to / 32).trailing_zeros() as usize;
    while level < top {
        root = node(&root, zeros.get(level)?);
        level += 1;
    }
    Some(root)
}

impl ExpectedPiece {
    /// The piece named by a binary v1 piece CID, with its sizes. `None` if the bytes are not a
    /// v1 piece CID or the sizes cannot be right (the padded size a power of two of at least
    /// 128 bytes, a CAR that is not empty and fits it once Fr32-padded).
    pub fn from_v1_bytes(cid: &[u8], padded_size: u64, car_size: u64) -> Option<Self> {
        let cid = cid::Cid::try_from(cid).ok()?;
        let piece = PieceCid::from_cid(&cid).ok()?;
        if !matches!(piece, PieceCid::V1 { .. })
            || padded_size < 128
            || !padded_size.is_power_of_two()
            || car_size == 0
            || u128::from(car_size) * 128 > u128::from(padded_size) * 127
        {
            return None;
        }
        Some(Self { commp: *piece.commp(), padded_size, car_size })
    }

    /// The v2 piece CID (FRC-0069), which names the sizes too. `None` when the deal's piece is
    /// larger than the CAR's own (the CAR then fills less than half of it, which v2 cannot say).
    pub fn cid_v2(&self) -> Option<PieceCid> {
        PieceCid::from_v1_with_sizes(self.commp, self.padded_size, self.car_size).ok()
    }

    /// The CID an HTTP server's `/piece/{cid}` is asked for: v2 when there is one, else v1.
    pub fn url_cid(&self) -> String {
        self.cid_v2().unwrap_or_else(|| self.cid_v1()).to_string()
    }

    /// The name the piece is stored and listed under: its v2 CID, or `<v1>-<padded size>`.
    pub fn name(&self) -> String {
        match self.cid_v2() {
            Some(v2) => v2.to_string(),
            None => format!("{}-{}", self.cid_v1(), self.padded_size),
        }
    }

    /// The v1 piece CID.
    pub fn cid_v1(&self) -> PieceCid {
        PieceCid::V1 { commp: self.commp }
    }

    /// Checks a streamed commitment of `received` bytes against the deal's piece.
    pub fn check(&self, info: &PieceInfo, received: u64) -> Result<(), PieceMismatch> {
        if received != self.car_size || info.payload_size != received {
            return Err(PieceMismatch::WrongSize { received, expected: self.car_size });
        }
        if info.padded_size > self.padded_size {
            return Err(PieceMismatch::TooLarge {
                actual: info.padded_size,
                expected: self.padded_size,
            });
        }
        let padded = pad_commp(info.commp, info.padded_size, self.padded_size)
            .expect("both sizes are powers of two and the deal's is the larger");
        if padded != self.commp {
            return Err(PieceMismatch::WrongCommP {
                actual: PieceCid::V1 { commp: padded }.to_string(),
                expected: self.cid_v1().to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use estuary_piece::commp::commp;

    use super::*;

    #[test]
    fn a_padded_commitment_is_the_commitment_of_the_zero_padded_bytes() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let own = commp(&data).unwrap();
        assert_eq!(own.padded_size, 4096);
        // The same bytes followed by zeros up to 4x the piece: the tree of a 16 KiB piece.
        let mut zeros = data;
        zeros.resize(16384 / 128 * 127, 0);
        let big = commp(&zeros).unwrap();
        assert_eq!(big.padded_size, 16384);
        assert_eq!(pad_commp(own.commp, 4096, 16384), Some(big.commp));
        assert_eq!(pad_commp(own.commp, 4096, 4096), Some(own.commp));
        assert_eq!(pad_commp(own.commp, 4096, 2048), None);
        assert_eq!(pad_commp(own.commp, 4096, 5000), None);
    }

    #[test]
    fn checks_say_what_is_wrong() {
        let data = vec![5u8; 1000];
        let info = commp(&data).unwrap();
        let expected = ExpectedPiece {
            commp: pad_commp(info.commp, info.padded_size, 4096).unwrap(),
            padded_size: 4096,
            car_size: 1000,
        };
        assert_eq!(expected.check(&info, 1000), Ok(()));
        assert!(matches!(expected.check(&info, 999), Err(PieceMismatch::WrongSize { .. })));
        let other = commp(&[6u8; 1000]).unwrap();
        assert!(matches!(expected.check(&other, 1000), Err(PieceMismatch::WrongCommP { .. })));
        let small = ExpectedPiece { padded_size: 512, ..expected };
        let info_big = commp(&[5u8; 1000]).unwrap();
        assert!(matches!(small.check(&info_big, 1000), Err(PieceMismatch::TooLarge { .. })));
        let v1 = expected.cid_v1().to_cid().to_bytes();
        assert_eq!(ExpectedPiece::from_v1_bytes(&v1, 4096, 1000), Some(expected));
        assert_eq!(
            ExpectedPiece::from_v1_bytes(&v1, 4096, 5000),
            None,
            "CAR larger than the piece"
        );
        assert_eq!(ExpectedPiece::from_v1_bytes(&v1, 4000, 1000), None);
        assert_eq!(ExpectedPiece::from_v1_bytes(&[1, 2, 3], 4096, 1000), None);
        assert_eq!(expected.cid_v2(), None, "a quarter-full piece has no v2 CID");
        assert!(expected.name().ends_with("-4096"));
        let own = ExpectedPiece { commp: info.commp, padded_size: 1024, car_size: 1000 };
        assert_eq!(own.cid_v2().unwrap().payload_size(), Some(1000));
        assert_eq!(own.name(), own.cid_v2().unwrap().to_string());
    }
}
