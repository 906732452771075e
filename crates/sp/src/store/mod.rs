//! The agent's database: SQLite, one file, written before every effect.
//!
//! ```text
//!   watcher ──► leads (LogStore: offers seen, cursor, checkpoint: one transaction)
//!   evaluator ──► decide(lead, version): the decision, and new work, in one transaction
//!   workers ──► transition(work, from, input): domain::work::apply, then a compare-and-set on
//!               the state it was computed from (a stale writer changes nothing)
//!   fetch ──► pieces, blocks (the CAR's index for the gateway)
//!   TxManager ──► txs (TxLedger: every transaction recorded before it is sent)
//! ```
//!
//! The store decides nothing: every state it writes comes from [`crate::domain::work::apply`].
//! SQLite runs in WAL mode with `synchronous = FULL`, so a transaction that returned is on disk
//! even if the process is killed right after.

use std::{str::FromStr, time::Duration};

use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};

mod leads;
mod ledger;
mod pieces;
mod work;

pub use leads::{Decision, Lead, LeadEvent};
pub use pieces::{BlockLocation, PieceRow};
pub use work::{NewWork, TransitionError, Work};

/// A database failure. Retrying is safe: nothing is half-written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed the operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be read back (the file was edited or is corrupt).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// The agent's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens an existing database for the operator's commands: refuses a path
    /// that does not exist rather than creating an empty database there.
    pub async fn open_existing(path: &std::path::Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Corrupt(format!("no agent database at {}", path.display())));
        }
        Self::open(path).await
    }
}

/// An unsigned number as SQLite's 64-bit integer.
pub(crate) fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{v} does not fit in an INTEGER")))
}

/// An optional unsigned column.
pub(crate) fn opt_u64(row: &SqliteRow, column: &str) -> Result<Option<u64>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} = {v}"))))
        .transpose()
}

/// An unsigned column.
pub(crate) fn get_u64(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    opt_u64(row, column)?.ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
}

/// A value stored as text that must parse.
pub(crate) fn parsed<T: FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("{what} {text:?}")))
}
