//! What lets a pin's blocks go once its piece is held by providers (migrations 0021 / pg 0019):
//! - `piece_blocks`: where each block of a piece lies in its payload (its CAR), recorded when
//!   the piece is read back before its copy goes; the gateway and Bitswap read a block from
//!   the piece's providers by it;
//! - `cold_blocks`: the pieces whose pins' blocks garbage collection no longer keeps here.

use std::collections::HashSet;

use sqlx::Row;

use super::{LIVE, Store, StoreError, get_u64, int, state_list};

/// Where a block lies in a piece's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPlace {
    /// The piece (v2 CID text).
    pub piece: String,
    /// The first byte of the block's data in the piece's payload.
    pub at: u64,
    /// The block's length.
    pub len: u64,
}

/// Rows written at a time by [`Store::put_piece_blocks`].
const BATCH: usize = 500;

impl Store {
    /// Records where each of `blocks` (CID bytes, first byte of its data, its length) lies in
    /// `piece`'s payload, in place of what was recorded for it before.
    pub async fn put_piece_blocks(
        &self,
        piece: &str,
        blocks: &[(Vec<u8>, u64, u64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM piece_blocks WHERE piece_cid = $1")
            .bind(piece)
            .execute(&mut *tx)
            .await?;
        for batch in blocks.chunks(BATCH) {
            let values: Vec<String> = (0..batch.len())
                .map(|i| format!("(${}, $1, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4))
                .collect();
            let sql = format!(
                "INSERT INTO piece_blocks (cid_bytes, piece_cid, data_at, data_len) VALUES {}
                 ON CONFLICT (cid_bytes, piece_cid) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(piece);
            for (cid, at, len) in batch {
                query = query.bind(cid.clone()).bind(int(*at)?).bind(int(*len)?);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether where `piece`'s blocks lie is recorded.
    pub async fn piece_blocks_kept(&self, piece: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 AS one FROM piece_blocks WHERE piece_cid = $1 LIMIT 1")
            .bind(piece)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Up to `limit` places of the block `cid` (its bytes) in pieces whose blocks are no
    /// longer kept here.
    pub async fn cold_block_places(
        &self,
        cid: &[u8],
        limit: u32,
    ) -> Result<Vec<BlockPlace>, StoreError> {
        let rows = sqlx::query(
            "SELECT b.piece_cid, b.data_at, b.data_len FROM piece_blocks b
             JOIN cold_blocks c ON c.piece_cid = b.piece_cid
             WHERE b.cid_bytes = $1 ORDER BY c.dropped_ms DESC, b.piece_cid LIMIT $2",
        )
        .bind(cid.to_vec())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BlockPlace {
                    piece: r.try_get("piece_cid")?,
                    at: get_u64(r, "data_at")?,
                    len: get_u64(r, "data_len")?,
                })
            })
            .collect()
    }

    /// Records that the blocks of `pieces`' pins are no longer kept here (before they go).
    pub async fn mark_blocks_cold(&self, pieces: &[String], now_ms: u64) -> Result<(), StoreError> {
        for piece in pieces {
            sqlx::query(
                "INSERT INTO cold_blocks (piece_cid, dropped_ms) VALUES ($1, $2)
                 ON CONFLICT (piece_cid) DO NOTHING",
            )
            .bind(piece)
            .bind(int(now_ms)?)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Records that the blocks of `piece`'s pins are kept here again.
    pub async fn mark_blocks_hot(&self, piece: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cold_blocks WHERE piece_cid = $1")
            .bind(piece)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The pieces whose pins' blocks are no longer kept here.
    pub async fn cold_block_pieces(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT piece_cid FROM cold_blocks").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get("piece_cid")?)).collect()
    }

    /// Deletes the block places of pieces no order may hold deals of and whose blocks are kept,
    /// and the cold marks of pieces no live pin has. Returns the rows deleted.
    pub async fn prune_cold(&self) -> Result<u64, StoreError> {
        let places = sqlx::query(
            "DELETE FROM piece_blocks WHERE NOT EXISTS (
               SELECT 1 FROM deal_orders o
               WHERE o.piece_cid = piece_blocks.piece_cid AND o.state IN ($1, $2))
             AND NOT EXISTS (SELECT 1 FROM cold_blocks c WHERE c.piece_cid = piece_blocks.piece_cid)",
        )
        .bind(crate::domain::deal::OrderState::Sending.as_str())
        .bind(crate::domain::deal::OrderState::Open.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        let marks = sqlx::query(&format!(
            "DELETE FROM cold_blocks WHERE NOT EXISTS (
               SELECT 1 FROM jobs j WHERE j.piece_cid = cold_blocks.piece_cid AND j.state IN {})",
            state_list(LIVE)
        ))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(places + marks)
    }
}
