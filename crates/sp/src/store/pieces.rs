//! Verified pieces held, and where each block of their CARs is (the gateway's index).

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, get_u64, int};

/// A verified piece as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PieceRow {
    /// Its row id (0 before it is stored).
    pub id: i64,
    /// Its name: the v2 piece CID, or `<v1>-<padded size>` when v2 cannot name it.
    pub name: String,
    /// Its v1 piece CID (as deals name it).
    pub piece_v1: String,
    /// Its v2 piece CID, when there is one.
    pub piece_v2: Option<String>,
    /// The CAR's size.
    pub car_size: u64,
    /// The padded piece size.
    pub padded_size: u64,
    /// The CAR file.
    pub path: String,
    /// 0: not indexed yet; 1: blocks listed; 2: not a CAR that could be indexed.
    pub indexed: u8,
    /// Blocks listed.
    pub blocks: u64,
    /// The CAR's roots (JSON list of CIDs), once indexed.
    pub roots: Option<String>,
    /// Why it could not be indexed.
    pub index_error: Option<String>,
    /// When it was verified (ms since the epoch).
    pub verified_ms: u64,
}

/// Where a block's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLocation {
    /// The CAR file.
    pub path: String,
    /// Offset of the block's data in it.
    pub offset: u64,
    /// The data's length.
    pub len: u64,
}

fn piece(row: &sqlx::sqlite::SqliteRow) -> Result<PieceRow, StoreError> {
    Ok(PieceRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        piece_v1: row.try_get("piece_v1")?,
        piece_v2: row.try_get("piece_v2")?,
        car_size: get_u64(row, "car_size")?,
        padded_size: get_u64(row, "padded_size")?,
        path: row.try_get("path")?,
        indexed: u8::try_from(get_u64(row, "indexed")?).unwrap_or(u8::MAX),
        blocks: get_u64(row, "blocks")?,
        roots: row.try_get("roots")?,
        index_error: row.try_get("index_error")?,
        verified_ms: get_u64(row, "verified_ms")?,
    })
}

impl Store {
    /// Records a verified piece (kept if already recorded).
    pub async fn add_piece(&self, p: &PieceRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pieces (name, piece_v1, piece_v2, car_size, padded_size, path, verified_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&p.name)
        .bind(&p.piece_v1)
        .bind(&p.piece_v2)
        .bind(int(p.car_size)?)
        .bind(int(p.padded_size)?)
        .bind(&p.path)
        .bind(int(p.verified_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A piece by its name.
    pub async fn piece(&self, name: &str) -> Result<Option<PieceRow>, StoreError> {
        sqlx::query("SELECT * FROM pieces WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(piece)
            .transpose()
    }

    /// A piece by its v2 CID.
    pub async fn piece_v2(&self, v2: &str) -> Result<Option<PieceRow>, StoreError> {
        sqlx::query("SELECT * FROM pieces WHERE piece_v2 = $1")
            .bind(v2)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(piece)
            .transpose()
    }

    /// Pieces with a v1 CID (one per padded size, usually one), smallest first.
    pub async fn pieces_v1(&self, v1: &str) -> Result<Vec<PieceRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pieces WHERE piece_v1 = $1 ORDER BY padded_size")
            .bind(v1)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(piece).collect()
    }

    /// Every piece, newest first.
    pub async fn pieces(&self, limit: u32) -> Result<Vec<PieceRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pieces ORDER BY verified_ms DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(piece).collect()
    }

    /// How many pieces are held.
    pub async fn piece_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM pieces").fetch_one(&self.pool).await?;
        get_u64(&row, "n")
    }

    /// Pieces whose blocks are not listed yet.
    pub async fn unindexed_pieces(&self) -> Result<Vec<PieceRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pieces WHERE indexed = 0 ORDER BY verified_ms")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(piece).collect()
    }

    /// Lists some of piece `id`'s blocks: `(cid bytes, offset, len)` (a block already listed,
    /// in this piece or another, is kept where it is).
    pub async fn add_blocks(
        &self,
        id: i64,
        blocks: &[(Vec<u8>, u64, u64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (cid, offset, len) in blocks {
            sqlx::query(
                "INSERT INTO blocks (cid, piece_id, offset, len) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(cid.as_slice())
            .bind(id)
            .bind(int(*offset)?)
            .bind(int(*len)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks piece `id` indexed (`Ok(roots JSON)`) or not indexable (`Err(why)`), with its
    /// block count.
    pub async fn set_indexed(
        &self,
        id: i64,
        outcome: Result<String, String>,
        blocks: u64,
    ) -> Result<(), StoreError> {
        let (indexed, roots, error) = match outcome {
            Ok(roots) => (1, Some(roots), None),
            Err(why) => (2, None, Some(why)),
        };
        sqlx::query("UPDATE pieces SET indexed = $1, roots = $2, index_error = $3, blocks = $4 WHERE id = $5")
            .bind(indexed)
            .bind(roots)
            .bind(error)
            .bind(int(blocks)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Where block `cid` (binary) is, if a piece held here has it.
    pub async fn block(&self, cid: &[u8]) -> Result<Option<BlockLocation>, StoreError> {
        let row = sqlx::query(
            "SELECT p.path, b.offset, b.len FROM blocks b JOIN pieces p ON p.id = b.piece_id WHERE b.cid = $1",
        )
        .bind(cid)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(BlockLocation {
                path: r.try_get("path")?,
                offset: get_u64(&r, "offset")?,
                len: get_u64(&r, "len")?,
            })
        })
        .transpose()
    }
}
