//! Packing: a pinned DAG becomes a CAR file and its piece, computed in the same pass.

use std::{
    fs,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use cid::Cid;
use estuary_dag::{
    car::{CarWriter, header_v1},
    walk::{WalkError, WalkLimits, dfs_limited},
};
use estuary_piece::{CommP, PieceCid, PieceError};

use crate::blockstore::Blockstore;

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
    /// The DAG is not complete in the blockstore (a block was lost since it was pinned).
    #[error("the DAG is not complete: {0}")]
    Walk(#[from] Box<WalkError>),
    /// The CAR could not be written.
    #[error("writing the CAR: {0}")]
    Io(#[from] io::Error),
    /// The piece could not be computed (over 64 GiB).
    #[error(transparent)]
    Piece(#[from] PieceError),
    /// The root is not a CID.
    #[error("not a CID: {0}")]
    BadCid(String),
}

/// Writes the CAR (v1, depth-first, the root as its only root) of the DAG under `root` into
/// `dir` and computes its piece in the same pass. The file appears under its final name only
/// when complete.
pub fn pack<S: Blockstore>(store: &Arc<S>, root: &[u8], dir: &Path) -> Result<Packed, PackError> {
    let root = Cid::try_from(root).map_err(|e| PackError::BadCid(e.to_string()))?;
    fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
    let mut commp = CommP::new();
    let header = header_v1(&[root]);
    out.write_all(&header)?;
    commp.update(&header);
    let mut car_size = header.len() as u64;
    let mut writer = CarWriter::new();
    let mut section = Vec::new();
    let mut io_error: Option<io::Error> = None;
    dfs_limited(
        root,
        WalkLimits::default(),
        |cid| store.get(cid).ok().flatten(),
        |cid, data| {
            section.clear();
            let block = estuary_dag::Block { cid: *cid, data: data.to_vec() };
            if writer.section(&block, &mut section) && io_error.is_none() {
                if let Err(e) = out.write_all(&section) {
                    io_error = Some(e);
                }
                commp.update(&section);
                car_size += section.len() as u64;
            }
        },
    )
    .map_err(Box::new)?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    out.flush()?;
    drop(out);
    tmp.as_file().sync_all()?;
    let info = commp.finish()?;
    let piece_cid = PieceCid::v2(&info).to_string();
    let path = dir.join(format!("{piece_cid}.car"));
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(Packed { piece_cid, padded_size: info.padded_size, car_size, path })
}
