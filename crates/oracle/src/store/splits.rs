//! Pins larger than a deal: their CAR split into spans, each a piece of its own (`piece_splits`),
//! written by [`crate::deals::splits::Splitter`] in one transaction per pin.

use serde::Serialize;
use sqlx::{Row, any::AnyRow};

use super::{PieceToOrder, Store, StoreError, get_u64, int};

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
    /// Reported pieces larger than `deal_size` with no split yet (and no live order: one made
    /// before splitting stands), oldest first, up to `limit`: `(piece, car size)`.
    pub async fn pieces_to_split(
        &self,
        deal_size: u64,
        limit: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.piece_cid, MIN(j.car_size) AS car_size, MIN(j.seq) AS first
             FROM jobs j
             WHERE j.state = 'reported' AND j.piece_cid IS NOT NULL AND j.padded_size > $1
               AND NOT EXISTS (SELECT 1 FROM piece_splits s WHERE s.piece_cid = j.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM deal_orders o WHERE o.piece_cid = j.piece_cid
                                 AND o.state != 'failed')
             GROUP BY j.piece_cid ORDER BY first LIMIT $2",
        )
        .bind(int(deal_size)?)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("piece_cid")?, get_u64(r, "car_size")?))).collect()
    }

    /// Records `piece`'s split into `parts`, all or none; nothing if it has one. Returns
    /// whether it was recorded.
    pub async fn record_split(&self, piece: &str, parts: &[SplitPart]) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut recorded = false;
        for part in parts {
            let done = sqlx::query(
                "INSERT INTO piece_splits (piece_cid, seq, offset_bytes, length, part_cid,
                   padded_size) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(piece)
            .bind(int(part.seq)?)
            .bind(int(part.offset)?)
            .bind(int(part.length)?)
            .bind(part.piece_cid.as_str())
            .bind(int(part.padded_size)?)
            .execute(&mut *tx)
            .await?;
            recorded |= done.rows_affected() == 1;
        }
        if recorded {
            tx.commit().await?;
        } else {
            // Another process split it first: its rows stand.
            tx.rollback().await?;
        }
        Ok(recorded)
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

    /// Where part `part` (a v2 piece CID) is read from, if it is a split pin's part here.
    pub async fn part_source(&self, part: &str) -> Result<Option<PartSource>, StoreError> {
        let row = sqlx::query(
            "SELECT s.piece_cid, s.offset_bytes, s.length,
                    (SELECT MIN(j.car_size) FROM jobs j WHERE j.piece_cid = s.piece_cid) AS car_size
             FROM piece_splits s WHERE s.part_cid = $1 ORDER BY s.piece_cid, s.seq LIMIT 1",
        )
        .bind(part)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PartSource {
                parent: r.try_get("piece_cid")?,
                car_size: get_u64(&r, "car_size")?,
                offset: get_u64(&r, "offset_bytes")?,
                length: get_u64(&r, "length")?,
            })
        })
        .transpose()
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
                             AND j.state = 'reported')
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
