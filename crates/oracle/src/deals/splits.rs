//! Pins larger than a deal, split: each reported piece whose padded size passes the deal size
//! (`--bucket-size`) is split into consecutive spans of its packed CAR
//! ([`crate::domain::bucket::split_spans`]: at most `deal × 127/128` bytes each), each span's
//! commP computed as one pass over the file reads it, and the parts recorded together
//! (`piece_splits`). Each part is then ordered like any piece, and served at `/piece/{part}`
//! from the one packed CAR (no copy); `/requests/{id}` lists the parts, and reading the parts
//! back in order gives the CAR byte for byte.
//!
//! ```text
//!   store: reported pieces > deal size, not split ──► read packed/{piece}.car once
//!        ──► CommP per span (blocking thread) ──► store: the parts, all or none
//! ```
//!
//! A CAR not on disk, or not at its recorded size, is left for the next round (with a warning);
//! nothing is recorded for it.

use std::{
    collections::HashMap,
    io::Read,
    path::PathBuf,
    time::{Duration, Instant},
};

use estuary_piece::{CommP, PieceCid};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::bucket::split_spans,
    gc::GcGate,
    store::{SplitPart, Store, StoreError, ToSplit},
};

/// Pieces split per round.
const BATCH: u64 = 4;
/// A piece whose CAR could not be read is tried again after this long.
const MISSING_RETRY: Duration = Duration::from_secs(600);

/// Why a piece was not split (tried again next round).
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The packed CAR could not be read whole.
    #[error("reading {path}: {reason}")]
    Read {
        /// The CAR.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Splits the pieces too large for a deal.
#[derive(Debug)]
pub struct Splitter {
    store: Store,
    packed: PathBuf,
    deal_size: u64,
    gate: GcGate,
    holder: String,
    every: Duration,
}

/// The parts of the CAR at `path` (of `car_size` bytes) for deals of `deal_size`, read once.
pub fn split_file(
    path: &std::path::Path,
    car_size: u64,
    deal_size: u64,
) -> Result<Vec<SplitPart>, SplitError> {
    let read = |reason: String| SplitError::Read { path: path.to_owned(), reason };
    let mut file = std::fs::File::open(path).map_err(|e| read(e.to_string()))?;
    let size = file.metadata().map_err(|e| read(e.to_string()))?.len();
    if size != car_size {
        return Err(read(format!("{size} bytes, not the {car_size} recorded")));
    }
    let mut parts = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for (seq, (offset, length)) in split_spans(car_size, deal_size).into_iter().enumerate() {
        let mut commp = CommP::new();
        let mut left = length;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            file.read_exact(&mut buf[..n]).map_err(|e| read(e.to_string()))?;
            commp.update(&buf[..n]);
            left -= n as u64;
        }
        let info = commp.finish().map_err(|e| read(e.to_string()))?;
        parts.push(SplitPart {
            seq: seq as u64,
            offset,
            length,
            piece_cid: PieceCid::v2(&info).to_string(),
            padded_size: info.padded_size,
        });
    }
    Ok(parts)
}

impl Splitter {
    /// Splits the pieces larger than `deal_size` whose CARs are in `packed`, every `every`,
    /// holding collections off through `gate` while it reads.
    pub fn new(
        store: Store,
        packed: PathBuf,
        deal_size: u64,
        gate: GcGate,
        every: Duration,
    ) -> Self {
        let holder = format!("splitter-{}", std::process::id());
        Self { store, packed, deal_size, gate, holder, every }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut missing = HashMap::new();
        loop {
            if let Err(e) = self.round(&mut missing).await {
                warn!(error = %e, "splitter round failed; retried");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// One round: up to [`BATCH`] pieces split, each read under a hold against garbage
    /// collection (so its CAR is not deleted while it is read; recorded, the split keeps it).
    /// A piece whose CAR cannot be read is left alone for [`MISSING_RETRY`], so that it holds
    /// back no other.
    async fn round(&self, missing: &mut HashMap<String, Instant>) -> Result<(), SplitError> {
        missing.retain(|_, at| at.elapsed() < MISSING_RETRY);
        let limit = BATCH.saturating_add(missing.len() as u64);
        let pieces: Vec<ToSplit> = self
            .store
            .pieces_to_split(self.deal_size, limit)
            .await?
            .into_iter()
            .filter(|p| !missing.contains_key(&p.piece_cid))
            .take(usize::try_from(BATCH).unwrap_or(usize::MAX))
            .collect();
        for piece in pieces {
            let Some(hold) = self.gate.try_hold(&self.holder).await? else {
                // A collection runs: next round.
                return Ok(());
            };
            let path = self.packed.join(format!("{}.car", piece.piece_cid));
            let (car_size, deal_size) = (piece.car_size, self.deal_size);
            let parts =
                tokio::task::spawn_blocking(move || split_file(&path, car_size, deal_size)).await;
            let recorded = match parts {
                Ok(Ok(parts)) => self.store.record_split(&piece, &parts).await.map(|done| {
                    if done {
                        info!(piece = %piece.piece_cid, parts = parts.len(), "pin split across pieces");
                    }
                }),
                Ok(Err(e)) => {
                    warn!(piece = %piece.piece_cid, error = %e, "not split; tried again later");
                    missing.insert(piece.piece_cid.clone(), Instant::now());
                    Ok(())
                }
                Err(e) => {
                    warn!(piece = %piece.piece_cid, error = %e, "the split's thread failed");
                    missing.insert(piece.piece_cid.clone(), Instant::now());
                    Ok(())
                }
            };
            hold.release().await?;
            recorded?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_splits_into_parts_whose_commps_are_their_spans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.car");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let parts = split_file(&path, 10_000, 4096).unwrap();
        assert_eq!(parts.len(), 3);
        for p in &parts {
            let span = &data[p.offset as usize..(p.offset + p.length) as usize];
            let info = estuary_piece::commp::commp(span).unwrap();
            assert_eq!(p.piece_cid, PieceCid::v2(&info).to_string());
            assert!(p.padded_size <= 4096);
        }
        assert!(split_file(&path, 9_999, 4096).is_err(), "not at its recorded size");
        assert!(split_file(&dir.path().join("none"), 10, 4096).is_err());
    }
}
