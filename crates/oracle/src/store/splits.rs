//! Pins larger than a deal: their CAR split into spans, each a piece of its own (`piece_splits`),
//! written by [`crate::deals::splits::Splitter`] in one transaction per pin.

use serde::Serialize;
use sqlx::{Row, any::AnyRow};

use super::{PieceToOrder, Store, StoreError, get_u64, int, opt_u64};

/// One span of a split pin's CAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitPart {
    /// Its place, from 0, in CAR order.
    pub seq: u64,
    /// Where it starts in the CAR.
    pub offset: u64,
    /// Its bytes.
    pub length: u64,
    /// Its piece (v2).
    pub piece_cid: String,
    /// Its padded size.
    pub padded_size: u64,
}

/// A piece to split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToSplit {
    /// The whole CAR's piece.
    pub piece_cid: String,
    /// The CAR's size.
    pub car_size: u64,
    /// The pin's root.
    pub payload_cid: String,
}

/// Where a part's bytes are: the whole CAR's piece, the offset and the length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSource {
    /// The whole CAR's piece (its packed file's name).
    pub parent: String,
    /// The whole CAR's size.
    pub car_size: u64,
    /// Where the part starts.
    pub offset: u64,
    /// Its bytes.
    pub length: u64,
}

fn part_from_row(row: &AnyRow) -> Result<SplitPart, StoreError> {
    Ok(SplitPart {
        seq: get_u64(row, "seq")?,
        offset: get_u64(row, "offset_bytes")?,
        length: get_u64(row, "length")?,
        piece_cid: row.try_get("part_cid")?,
        padded_size: get_u64(row, "padded_size")?,
    })
}

impl Store {
    /// Reported pieces larger than `deal_size` with no split yet, oldest first, up to `limit`:
    /// the operator's to deal (a DataDAO's pins are the DAO's to fund, a store job's are
    /// answered, never dealt apart), and with no live order (one made before splitting stands).
    pub async fn pieces_to_split(
        &self,
        deal_size: u64,
        limit: u64,
    ) -> Result<Vec<ToSplit>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.piece_cid, MIN(j.car_size) AS car_size, MIN(j.cid) AS cid,
                    MIN(j.seq) AS first
             FROM jobs j
             WHERE j.state = 'reported' AND j.piece_cid IS NOT NULL AND j.cid IS NOT NULL
               AND j.padded_size > $1
               AND NOT EXISTS (SELECT 1 FROM piece_splits s WHERE s.piece_cid = j.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM deal_orders o WHERE o.piece_cid = j.piece_cid
                                 AND o.state != 'failed')
               AND NOT EXISTS (SELECT 1 FROM dao_requesters d WHERE d.requester = j.requester)
               AND j.store_replicas IS NULL
             GROUP BY j.piece_cid ORDER BY first LIMIT $2",
        )
        .bind(int(deal_size)?)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ToSplit {
                    piece_cid: r.try_get("piece_cid")?,
                    car_size: get_u64(r, "car_size")?,
                    payload_cid: r.try_get("cid")?,
                })
            })
            .collect()
    }

    /// Records `piece`'s split into `parts`, all or none; nothing if it has one. Returns
    /// whether it was recorded.
    pub async fn record_split(
        &self,
        piece: &ToSplit,
        parts: &[SplitPart],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for part in parts {
            let done = sqlx::query(
                "INSERT INTO piece_splits (piece_cid, seq, offset_bytes, length, part_cid,
                   padded_size, payload_cid) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT DO NOTHING",
            )
            .bind(piece.piece_cid.as_str())
            .bind(int(part.seq)?)
            .bind(int(part.offset)?)
            .bind(int(part.length)?)
            .bind(part.piece_cid.as_str())
            .bind(int(part.padded_size)?)
            .bind(piece.payload_cid.as_str())
            .execute(&mut *tx)
            .await?;
            inserted += done.rows_affected();
        }
        if inserted == parts.len() as u64 && inserted > 0 {
            tx.commit().await?;
            Ok(true)
        } else {
            // Another process split it first (perhaps with another deal size): its rows
            // stand, and none of these mix with them.
            tx.rollback().await?;
            Ok(false)
        }
    }

    /// The parts `piece` was split into, in CAR order (empty: not split).
    pub async fn split_of(&self, piece: &str) -> Result<Vec<SplitPart>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, offset_bytes, length, part_cid, padded_size FROM piece_splits
             WHERE piece_cid = $1 ORDER BY seq",
        )
        .bind(piece)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(part_from_row).collect()
    }

    /// Where part `part` (a v2 piece CID) may be read from: each split pin's CAR holding it
    /// (at most 8; the same part in two pins' CARs is the same bytes, its CID says so), those
    /// whose CAR size is known. The caller serves the first CAR on disk at its size.
    pub async fn part_sources(&self, part: &str) -> Result<Vec<PartSource>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.piece_cid, s.offset_bytes, s.length,
                    (SELECT MIN(j.car_size) FROM jobs j WHERE j.piece_cid = s.piece_cid) AS car_size
             FROM piece_splits s WHERE s.part_cid = $1 ORDER BY s.piece_cid, s.seq LIMIT 8",
        )
        .bind(part)
        .fetch_all(&self.pool)
        .await?;
        let mut sources = Vec::new();
        for r in &rows {
            let Some(car_size) = opt_u64(r, "car_size")? else { continue };
            sources.push(PartSource {
                parent: r.try_get("piece_cid")?,
                car_size,
                offset: get_u64(r, "offset_bytes")?,
                length: get_u64(r, "length")?,
            });
        }
        Ok(sources)
    }

    /// The split pins whose parts SPs may still download (a part not yet ordered, or ordered
    /// and the order sending or open), in piece order after `cursor` (a piece CID; empty:
    /// from the start), a page of `limit`: `(piece, payload)` each, and the cursor of the next
    /// page. Garbage collection keeps their CARs and DAGs whatever happened to the pins, as
    /// for buckets.
    pub async fn split_roots(
        &self,
        cursor: &str,
        limit: u64,
    ) -> Result<(Vec<(String, String)>, Option<String>), StoreError> {
        let rows = sqlx::query(
            "SELECT s.piece_cid, MIN(s.payload_cid) AS payload_cid FROM piece_splits s
             WHERE s.piece_cid > $1
               AND (NOT EXISTS (SELECT 1 FROM deal_orders o WHERE o.piece_cid = s.part_cid)
                    OR EXISTS (SELECT 1 FROM deal_orders o WHERE o.piece_cid = s.part_cid
                                 AND o.state IN ('sending', 'open')))
             GROUP BY s.piece_cid ORDER BY s.piece_cid LIMIT $2",
        )
        .bind(cursor)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        let roots: Vec<(String, String)> = rows
            .iter()
            .map(|r| Ok((r.try_get("piece_cid")?, r.try_get("payload_cid")?)))
            .collect::<Result<_, StoreError>>()?;
        let next =
            (roots.len() as u64 == limit).then(|| roots.last().map(|r| r.0.clone())).flatten();
        Ok((roots, next))
    }

    /// Split pins' parts with no order at `contract` yet (and none live at another), up to
    /// `limit`, as pieces to order: each labelled with its pin's root, its bytes what an SP
    /// downloads.
    pub(super) async fn parts_to_order(
        &self,
        contract: &str,
        limit: u64,
    ) -> Result<Vec<PieceToOrder>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT s.part_cid, s.padded_size, s.length,
                    (SELECT MIN(j.cid) FROM jobs j WHERE j.piece_cid = s.piece_cid) AS cid
             FROM piece_splits s
             WHERE NOT EXISTS (SELECT 1 FROM deal_orders o
                               WHERE o.piece_cid = s.part_cid
                                 AND (o.contract = $1 OR o.state != 'failed'))
               AND EXISTS (SELECT 1 FROM jobs j WHERE j.piece_cid = s.piece_cid
                             AND j.state = 'reported' AND j.store_replicas IS NULL
                             AND NOT EXISTS (SELECT 1 FROM dao_requesters d
                                             WHERE d.requester = j.requester))
             ORDER BY s.piece_cid, s.seq LIMIT $2",
        )
        .bind(contract)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PieceToOrder {
                    piece_cid: r.try_get("part_cid")?,
                    payload_cid: r.try_get("cid")?,
                    padded_size: get_u64(r, "padded_size")?,
                    car_size: get_u64(r, "length")?,
                })
            })
            .collect()
    }
}
