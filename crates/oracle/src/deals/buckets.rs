//! The bucketer: places each packed, reported piece in the open bucket and closes buckets
//! that are full or old enough into an FRC-0058 aggregate, which the maker then orders like
//! any piece (rules: [`crate::domain::bucket`]).
//!
//! ```text
//!   store: reported pieces in no bucket ──► place ──► add_to_bucket (compare-and-set on its end)
//!   open bucket full or due ──► its pieces ──► Aggregate::build(deal_size_for) ──► close_bucket
//!   (aggregate piece CID, deal size) ──► the maker's buckets_to_order
//! ```
//!
//! Every step is one write that either happens or not, so a crash anywhere leaves a bucket
//! open (closed again next round) or closed (ordered by the maker); a piece is never in two
//! buckets (`bucket_pieces` is keyed by piece).
//!
//! Pieces are placed under a hold against garbage collection ([`GcGate`]): a piece's CAR is
//! checked and the piece added to its bucket while no collection runs, so the next collection
//! reads it among the bucket roots ([`crate::gc::BucketPieces`]) and keeps its CAR. Without the
//! hold, a collection that read its roots just before the piece was added could delete the CAR
//! of a piece its aggregate is assembled from.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::Duration,
};

use estuary_piece::{
    PieceCid,
    aggregate::{Aggregate, unpadded},
    commp::PieceInfo,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{
        bucket::{BucketRules, CloseWhy, OpenBucket, Placement, deal_size_for, due, place},
        now_ms,
    },
    gc::GcGate,
    store::{BucketPiece, Store, StoreError},
};

/// The largest deal (64 GiB sectors).
const MAX_DEAL_SIZE: u64 = 64 << 30;

/// Pieces placed per round.
const BATCH: u64 = 256;

/// Why a round stopped (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored bucket cannot be aggregated (a corrupt row).
    #[error("bucket {id} cannot be aggregated: {reason}")]
    Aggregate {
        /// The bucket.
        id: u64,
        /// Why.
        reason: String,
    },
}

/// Groups pieces into buckets.
#[derive(Debug)]
pub struct Bucketer {
    store: Store,
    rules: BucketRules,
    packed_dir: PathBuf,
    gate: GcGate,
    /// Its name in the gate (one per process: oracles may share a database).
    holder: String,
    every: Duration,
}

impl Bucketer {
    /// Buckets on `rules` the pieces whose CARs are in `packed_dir`, holding collection off
    /// through `gate` while it places them.
    pub fn new(store: Store, rules: BucketRules, packed_dir: PathBuf, gate: GcGate) -> Self {
        let holder = format!("bucketer-{}", hex::encode(rand::random::<[u8; 8]>()));
        Self { store, rules, packed_dir, gate, holder, every: Duration::from_secs(1) }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut missing = HashSet::new();
        loop {
            if let Err(e) = self.round(now_ms(), &mut missing).await {
                warn!(error = %e, "bucketer round failed; retried");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// Closes the open buckets that are due, and places new pieces, each in its group's bucket
    /// (the shared one, or a dedicated one).
    /// `missing`: pieces whose CAR is not here (garbage-collected after their retention before
    /// bucketing was turned on), skipped and remembered so that they never hold the others back.
    pub async fn round(&self, now: u64, missing: &mut HashSet<String>) -> Result<(), BucketError> {
        let mut open: HashMap<Option<String>, OpenBucket> = HashMap::new();
        for (group, bucket) in self.store.open_buckets().await? {
            match due(&bucket, group.as_deref(), now, &self.rules) {
                Some(why) => self.close(&bucket, why, now).await?,
                None => {
                    open.insert(group, bucket);
                }
            }
        }
        let limit = BATCH.saturating_add(missing.len() as u64);
        let pieces = self.store.pieces_to_bucket(self.rules.largest_piece(), limit).await?;
        if pieces.iter().all(|(p, _)| missing.contains(&p.piece_cid)) {
            return Ok(());
        }
        // A collection running: the pieces wait for the next round (closing due buckets does
        // not wait for the collection).
        let Some(hold) = self.gate.try_hold(&self.holder).await? else {
            return Ok(());
        };
        let placed = self.place(pieces, open, now, missing).await;
        hold.release().await?;
        placed
    }

    /// Places `pieces` (read before the hold; their CARs checked under it) in their groups'
    /// `open` buckets and the buckets after them.
    async fn place(
        &self,
        pieces: Vec<(crate::store::PieceToOrder, Option<String>)>,
        mut open: HashMap<Option<String>, OpenBucket>,
        now: u64,
        missing: &mut HashSet<String>,
    ) -> Result<(), BucketError> {
        for (piece, group) in pieces {
            if missing.contains(&piece.piece_cid) {
                continue;
            }
            let car = self.packed_dir.join(format!("{}.car", piece.piece_cid));
            if !tokio::fs::metadata(&car).await.is_ok_and(|m| m.len() == piece.car_size) {
                warn!(piece = %piece.piece_cid, "its CAR is not here at its size: not bucketed");
                missing.insert(piece.piece_cid);
                continue;
            }
            let mut current = open.remove(&group);
            let mut placement = place(current.as_ref(), piece.padded_size, &self.rules);
            if placement == Placement::Full
                && let Some(bucket) = current.take()
            {
                self.close(&bucket, CloseWhy::Full, now).await?;
                placement = place(None, piece.padded_size, &self.rules);
            }
            let Placement::Into { offset, end } = placement else {
                // Only pieces a bucket can take are read; a new bucket takes any of them.
                warn!(piece = %piece.piece_cid, size = piece.padded_size, "no bucket takes it");
                continue;
            };
            let Some(id) = self
                .store
                .add_to_bucket(current.as_ref(), group.as_deref(), &piece, offset, end, now)
                .await?
            else {
                // Another writer moved the bucket: read it again next round.
                return Ok(());
            };
            let bucket = match current {
                Some(b) => OpenBucket { end, pieces: b.pieces + 1, ..b },
                None => OpenBucket { id, end, pieces: 1, created_ms: now },
            };
            if let Some(why) = due(&bucket, group.as_deref(), now, &self.rules) {
                // A pin's own bucket closes with its pin.
                self.close(&bucket, why, now).await?;
            } else {
                open.insert(group, bucket);
            }
        }
        Ok(())
    }

    /// Aggregates bucket `bucket`'s pieces into the smallest deal that holds them and closes it.
    async fn close(&self, bucket: &OpenBucket, why: CloseWhy, now: u64) -> Result<(), BucketError> {
        let id = bucket.id;
        let corrupt = |reason: String| BucketError::Aggregate { id, reason };
        let pieces = self.store.bucket_pieces(id).await?;
        if pieces.len() as u64 != bucket.pieces {
            // Another writer added a piece since the bucket was read: read it again next round.
            return Ok(());
        }
        // Up to the largest deal there is, not `--bucket-size`: a bucket placed under a larger
        // size before a restart still closes.
        let deal_size = deal_size_for(bucket.end, bucket.pieces, MAX_DEAL_SIZE)
            .ok_or_else(|| corrupt(format!("its pieces end at {}", bucket.end)))?;
        let aggregate = aggregate_of(id, &pieces, deal_size)?;
        if let Some((p, s)) =
            pieces.iter().zip(&aggregate.segments).find(|(p, s)| p.offset != s.offset)
        {
            return Err(corrupt(format!(
                "{} placed at {}, not {}",
                p.piece_cid, p.offset, s.offset
            )));
        }
        let info = PieceInfo {
            commp: aggregate.root,
            padded_size: deal_size,
            payload_size: unpadded(deal_size),
        };
        let piece_cid = PieceCid::v2(&info).to_string();
        if self.store.close_bucket(bucket, why.as_str(), deal_size, &piece_cid, now).await? {
            info!(bucket = id, pieces = pieces.len(), deal_size, why = why.as_str(), aggregate = %piece_cid, "bucket closed");
        }
        Ok(())
    }
}

/// The FRC-0058 aggregate of bucket `id`'s `pieces` in a deal of `deal_size` (what closing it
/// built, and what its pins' inclusion proofs come from).
pub(crate) fn aggregate_of(
    id: u64,
    pieces: &[BucketPiece],
    deal_size: u64,
) -> Result<Aggregate, BucketError> {
    let corrupt = |reason: String| BucketError::Aggregate { id, reason };
    let mut nodes = Vec::with_capacity(pieces.len());
    for p in pieces {
        let cid: PieceCid = p.piece_cid.parse().map_err(|e| corrupt(format!("{e}")))?;
        let height = u8::try_from((p.padded_size / 32).trailing_zeros()).unwrap_or(u8::MAX);
        nodes.push((*cid.commp(), height));
    }
    Aggregate::build(&nodes, deal_size).map_err(|e| corrupt(format!("{e}")))
}
