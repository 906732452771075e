//! Packing: a pinned DAG becomes a CAR file and its piece, computed in the same pass, through
//! the one pipeline every Estuary CAR is written with (`estuary_pack`): blocks in the canonical
//! order, so the piece is the one the client computed for the same DAG.

use std::{
    fs,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use cid::Cid;
use estuary_dag::walk::{WalkError, WalkLimits};
use estuary_pack::{PackDagError, pack_dag};
use estuary_piece::{CommP, PieceCid, PieceError};

use crate::blockstore::{Blockstore, Source, sync_dir};

/// A packed DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Piece CID v2 (carries the sizes).
    pub piece_cid: String,
    /// Padded piece size.
    pub padded_size: u64,
    /// CAR bytes.
    pub car_size: u64,
    /// Where the CAR is: `<dir>/<piece_cid>.car`.
    pub path: PathBuf,
}

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The DAG could not be walked: a block lost since it was pinned, or the store failing.
    #[error("the DAG could not be read: {0}")]
    Walk(#[from] Box<WalkError>),
    /// The CAR could not be written.
    #[error("writing the CAR: {0}")]
    Io(#[from] io::Error),
    /// The piece could not be computed (over 64 GiB).
    #[error(transparent)]
    Piece(#[from] PieceError),
    /// The root is not a CID.
    #[error("not a CID: {0}")]
    BadCid(#[from] cid::Error),
}

impl PackError {
    /// Whether the blockstore or the disk failed (a fault of this oracle, not of the job).
    pub fn is_fault(&self) -> bool {
        match self {
            Self::Walk(e) => e.is_fault(),
            Self::Io(_) => true,
            _ => false,
        }
    }
}

/// Writes the CAR (v1, the root as its only root, blocks in the canonical order) of the DAG
/// under `root` into `dir` and computes its piece in the same pass. The file appears under its
/// final name only when complete and synced. With the walk's default limits (a DAG of the
/// operator's own); see [`pack_within`].
pub fn pack<S: Blockstore>(store: &S, root: &[u8], dir: &Path) -> Result<Packed, PackError> {
    pack_within(store, root, dir, WalkLimits::default())
}

/// [`pack`] within `limits` (the fetch's: a pinned DAG was fetched within them, and its
/// canonical order is read within them too).
pub fn pack_within<S: Blockstore>(
    store: &S,
    root: &[u8],
    dir: &Path,
    limits: WalkLimits,
) -> Result<Packed, PackError> {
    let root = Cid::try_from(root)?;
    fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
    let packed = pack_dag(root, limits, Source(store), CommP::new(), |bytes| out.write_all(bytes))
        .map_err(|e| match e {
            PackDagError::Walk(w) => PackError::Walk(Box::new(w)),
            PackDagError::Piece(p) => PackError::Piece(p),
            PackDagError::Write(io) => PackError::Io(io),
            other => PackError::Io(io::Error::other(other.to_string())),
        })?;
    out.flush()?;
    drop(out);
    tmp.as_file().sync_all()?;
    let piece_cid = PieceCid::v2(&packed.piece).to_string();
    let path = dir.join(format!("{piece_cid}.car"));
    tmp.persist(&path).map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(Packed {
        piece_cid,
        padded_size: packed.piece.padded_size,
        car_size: packed.car_bytes,
        path,
    })
}
