//! Consistent copies of the database while the oracle runs, for `estuary oracle backup`.
//!
//! SQLite: `VACUUM INTO` writes a transactionally consistent copy while others keep writing.
//! PostgreSQL: a repeatable-read transaction exports its snapshot and `pg_dump --snapshot` dumps
//! exactly what that transaction sees, so the cursors read in it are the dump's.

use std::{future::Future, path::Path, str::FromStr};

use sqlx::{
    Row,
    any::{AnyConnectOptions, AnyPoolOptions},
};

use super::{Store, StoreError, get_u64};

/// What a copy of the database holds, in brief.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Each stream's cursor: (stream, block number, block hash).
    pub cursors: Vec<(String, u64, String)>,
    /// Jobs.
    pub jobs: u64,
}

async fn summary(conn: &mut sqlx::AnyConnection) -> Result<Summary, StoreError> {
    let rows = sqlx::query("SELECT source, block_number, block_hash FROM cursors ORDER BY source")
        .fetch_all(&mut *conn)
        .await?;
    let cursors = rows
        .iter()
        .map(|r| Ok((r.try_get("source")?, get_u64(r, "block_number")?, r.try_get("block_hash")?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let jobs =
        get_u64(&sqlx::query("SELECT COUNT(*) AS n FROM jobs").fetch_one(&mut *conn).await?, "n")?;
    Ok(Summary { cursors, jobs })
}

impl Store {
    /// SQLite only: writes a consistent copy of the database to `dest` (which must not exist).
    pub async fn vacuum_into(&self, dest: &Path) -> Result<(), StoreError> {
        sqlx::query("VACUUM INTO $1").bind(dest.display().to_string()).execute(&self.pool).await?;
        Ok(())
    }

    /// PostgreSQL only: opens a repeatable-read transaction, exports its snapshot, reads the
    /// summary it sees and runs `dump` with the snapshot's id (for `pg_dump --snapshot`) while
    /// the transaction stays open.
    pub async fn with_snapshot<T, F, Fut>(&self, dump: F) -> Result<(Summary, T), StoreError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let id: String = sqlx::query("SELECT pg_export_snapshot() AS id")
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        let seen = summary(&mut tx).await?;
        let dumped = dump(id).await;
        tx.commit().await?;
        Ok((seen, dumped))
    }

    /// The cursors and jobs of this database.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let mut conn = self.pool.acquire().await?;
        summary(&mut conn).await
    }
}

/// The summary of the SQLite file at `path`, opened read-only (nothing is written to it).
pub async fn summarize_sqlite(path: &Path) -> Result<Summary, StoreError> {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(&format!("sqlite://{}?mode=ro", path.display()))?;
    let pool = AnyPoolOptions::new().max_connections(1).connect_with(options).await?;
    let mut conn = pool.acquire().await?;
    let out = summary(&mut conn).await;
    drop(conn);
    pool.close().await;
    out
}
