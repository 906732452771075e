//! `estuary piece FILE`: the file's piece commitment and both forms of its piece CID.

use std::{fs::File, io::Read, path::Path};

use anyhow::{Context, Result};
use estuary_piece::{CommP, PieceCid, PieceInfo};
use serde::Serialize;

/// What `estuary piece --json` prints.
#[derive(Debug, Serialize)]
pub struct PieceReport {
    /// Piece CID v1 (`baga…`); its size travels separately.
    pub piece_cid_v1: String,
    /// Piece CID v2 (FRC-0069, `bafkzcib…`), which carries the sizes.
    pub piece_cid_v2: String,
    /// Padded piece size (a power of two).
    pub padded_size: u64,
    /// Bytes of payload.
    pub payload_size: u64,
}

/// Streams `path` through commP, 16 MiB at a time (large reads let commP hash whole subtrees
/// on every core).
pub fn piece_of_file(path: &Path) -> Result<PieceInfo> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut commp = CommP::new();
    let mut buf = vec![0u8; 16 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        commp.update(&buf[..n]);
    }
    commp.finish().with_context(|| path.display().to_string())
}

/// `estuary piece FILE`.
pub fn piece(path: &Path) -> Result<PieceReport> {
    let info = piece_of_file(path)?;
    Ok(PieceReport {
        piece_cid_v1: PieceCid::v1(&info).to_string(),
        piece_cid_v2: PieceCid::v2(&info).to_string(),
        padded_size: info.padded_size,
        payload_size: info.payload_size,
    })
}
