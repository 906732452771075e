//! What lets a pin's blocks go once its piece is held by providers (migrations 0021 / pg 0019):
//! - `block_pieces`: one row per piece whose blocks' places are recorded, with how many once
//!   all are, and since when its pins' blocks are no longer kept here (`cold_ms`);
//! - `piece_blocks`: where each block lies in its piece's payload (its CAR); the gateway and
//!   Bitswap read a block from the piece's providers by it.
//!
//! A piece's CAR is fixed by its piece CID, so its places are written once: in batches, then
//! counted, and only a counted piece's blocks may go.

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

/// Rows written at a time by [`Store::add_piece_blocks`] (4 parameters each).
const BATCH: usize = 1000;

impl Store {
    /// Starts recording where `piece`'s blocks lie: its id for [`Self::add_piece_blocks`],
    /// what an unfinished attempt wrote forgotten; `None` if they are all recorded already.
    pub async fn start_piece_blocks(&self, piece: &str) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT id, blocks FROM block_pieces WHERE piece_cid = $1")
            .bind(piece)
            .fetch_optional(&mut *tx)
            .await?;
        let id = match row {
            Some(row) if get_u64(&row, "blocks")? > 0 => return Ok(None),
            Some(row) => {
                let id = get_u64(&row, "id")?;
                sqlx::query("DELETE FROM piece_blocks WHERE piece_id = $1")
                    .bind(int(id)?)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let row = sqlx::query(
                    "INSERT INTO block_pieces (piece_cid, blocks) VALUES ($1, 0) RETURNING id",
                )
                .bind(piece)
                .fetch_one(&mut *tx)
                .await?;
                get_u64(&row, "id")?
            }
        };
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Records where `blocks` (CID bytes, first byte of its data, its length) lie in the piece
    /// `id` ([`Self::start_piece_blocks`]).
    pub async fn add_piece_blocks(
        &self,
        id: u64,
        blocks: &[(Vec<u8>, u64, u64)],
    ) -> Result<(), StoreError> {
        for batch in blocks.chunks(BATCH) {
            let values: Vec<String> = (0..batch.len())
                .map(|i| format!("(${}, $1, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4))
                .collect();
            let sql = format!(
                "INSERT INTO piece_blocks (cid_bytes, piece_id, data_at, data_len) VALUES {}
                 ON CONFLICT (cid_bytes, piece_id) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(int(id)?);
            for (cid, at, len) in batch {
                query = query.bind(cid.clone()).bind(int(*at)?).bind(int(*len)?);
            }
            query.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Records that all `blocks` places of the piece `id` are written.
    pub async fn finish_piece_blocks(&self, id: u64, blocks: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE block_pieces SET blocks = $2 WHERE id = $1")
            .bind(int(id)?)
            .bind(int(blocks.max(1))?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether where all of `piece`'s blocks lie is recorded.
    pub async fn piece_blocks_kept(&self, piece: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 AS one FROM block_pieces WHERE piece_cid = $1 AND blocks > 0")
            .bind(piece)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Up to `limit` places of the block `cid` (its bytes) in pieces whose pins' blocks are no
    /// longer kept here, the most recently dropped first.
    pub async fn cold_block_places(
        &self,
        cid: &[u8],
        limit: u32,
    ) -> Result<Vec<BlockPlace>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.piece_cid, b.data_at, b.data_len FROM piece_blocks b
             JOIN block_pieces p ON p.id = b.piece_id
             WHERE b.cid_bytes = $1 AND p.cold_ms IS NOT NULL
             ORDER BY p.cold_ms DESC, p.piece_cid LIMIT $2",
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

    /// Records that the blocks of `pieces`' pins are no longer kept here (before they go);
    /// pieces whose places are not all recorded are left out.
    pub async fn mark_blocks_cold(&self, pieces: &[String], now_ms: u64) -> Result<(), StoreError> {
        for piece in pieces {
            sqlx::query(
                "UPDATE block_pieces SET cold_ms = $2
                 WHERE piece_cid = $1 AND blocks > 0 AND cold_ms IS NULL",
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
        sqlx::query("UPDATE block_pieces SET cold_ms = NULL WHERE piece_cid = $1")
            .bind(piece)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The origins (multiaddrs, as the requests named them) of `piece`'s live pins, each once,
    /// at most [`crate::domain::pinning::MAX_ORIGINS`]: where a restore fetches the pins' DAG
    /// from, with the configured gateways, when no provider gives the piece back.
    pub async fn piece_origins(&self, piece: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT origins FROM jobs WHERE piece_cid = $1 AND state IN {} AND origins IS NOT NULL
             ORDER BY seq",
            state_list(LIVE)
        ))
        .bind(piece)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<String> = Vec::new();
        for row in &rows {
            let text: String = row.try_get("origins")?;
            let origins: Vec<String> = serde_json::from_str(&text)
                .map_err(|_| StoreError::Corrupt(format!("origins {text:?}")))?;
            for origin in origins {
                if out.len() < crate::domain::pinning::MAX_ORIGINS && !out.contains(&origin) {
                    out.push(origin);
                }
            }
        }
        Ok(out)
    }

    /// The pieces whose pins' blocks are no longer kept here.
    pub async fn cold_block_pieces(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT piece_cid FROM block_pieces WHERE cold_ms IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("piece_cid")?)).collect()
    }

    /// Whether `piece`'s pins' blocks are no longer kept here.
    pub async fn blocks_cold(&self, piece: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM block_pieces WHERE piece_cid = $1 AND cold_ms IS NOT NULL",
        )
        .bind(piece)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Forgets the places (and the cold mark) of pieces no live pin has. Returns the rows
    /// deleted.
    pub async fn prune_cold(&self) -> Result<u64, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT id FROM block_pieces p WHERE NOT EXISTS (
               SELECT 1 FROM jobs j WHERE j.piece_cid = p.piece_cid AND j.state IN {})",
            state_list(LIVE)
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut deleted = 0;
        for row in &rows {
            let id = int(get_u64(row, "id")?)?;
            let mut tx = self.pool.begin().await?;
            for sql in [
                "DELETE FROM piece_blocks WHERE piece_id = $1",
                "DELETE FROM block_pieces WHERE id = $1",
            ] {
                deleted += sqlx::query(sql).bind(id).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }
}
