//! The oracle's database: one implementation over sqlx's `Any` driver, for SQLite (embedded,
//! the default: no server) and PostgreSQL (several oracle processes sharing one queue).
//!
//! ```text
//!   domain::state::apply ──► Change ──► Store::transition (compare-and-set on the status the
//!                                       change was computed from: a stale writer changes nothing)
//!   watcher ──► Store::ingest_requests (new jobs, cancellations through the machine, cursor,
//!               checkpoint: one transaction)
//! ```
//!
//! The SQL is written once; what differs between the two databases — locking a row for a
//! claim, the next insertion position, a few function names — is the `Dialect`, in one place
//! below, and the schema is in `migrations/` (SQLite) and `migrations_pg/` (PostgreSQL). The
//! store decides nothing: every state it writes comes from the machine, and its SQL lists of
//! states come from [`JobState`].
//!
//! - `jobs`: claiming with leases, transitions, listing;
//! - `requests`: requests from the chain (the watcher's [`estuary_chain::LogStore`] for them);
//! - `pins`: the Pinning Service API's pins and tokens;
//! - `buckets`: which pieces are grouped into which aggregate;
//! - `deals`: orders for pieces and the storage contract's events about them (the deal
//!   watcher's [`estuary_chain::LogStore`]);
//! - `ledger`: report transactions ([`estuary_chain::TxLedger`]);
//! - `gc`: garbage collection's lock (holds and a lease, across processes), its totals, and
//!   the live jobs it marks from.
//! - `uploads`: uploads and their owners, pre-signed upload URLs, sign-in nonces and
//!   sessions, per-account quotas.
//!
//! Tests: `tests/it/stores.rs` runs one suite against both databases.

use std::{str::FromStr, time::Duration};

use sqlx::{
    AnyPool, Executor, Row,
    any::{AnyConnectOptions, AnyPoolOptions, AnyRow},
};

use crate::domain::JobState;

mod buckets;
mod cold;
mod datadao;
mod deals;
mod gc;
mod jobs;
mod ledger;
mod pins;
mod probes;
mod proposals;
mod requests;
mod results;
mod snapshot;
mod splits;
mod uploads;

pub use buckets::{BucketPiece, BucketRecord, BucketRequest};
pub use cold::BlockPlace;
pub use datadao::{DaoFunding, DealEngineCounts, FundingState};
pub use deals::{DealLogs, OrderRecord, OrderWithReplicas, PieceToOrder, ProbeTarget};
pub use gc::{Freed, GcTotals, LIVE, LiveJob};
pub use jobs::Claimed;
pub use pins::TokenInfo;
pub use probes::{KEPT as PROBES_KEPT, ProbeRecord, ProviderOverride};
pub use proposals::{ProposalLogs, ProposalRecord, ProposalState};
pub use requests::RequestLogs;
pub use results::StoreJob;
pub use snapshot::{Summary, summarize_sqlite};
pub use splits::{PartSource, SplitPart, ToSplit};
pub use uploads::{
    GrantRecord, NewUpload, RequestForUpload, UploadRecord, UploadRefused, UploadState,
};

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

/// Where the database is. `Debug` and `Display` never show a PostgreSQL URL's password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file (created if missing).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL server (`postgres://…`).
    Postgres(String),
}

impl FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Self::Postgres(s.to_owned())
        } else {
            Self::Sqlite(s.strip_prefix("sqlite://").unwrap_or(s).into())
        })
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            // The URL may carry a password: show the server only.
            Self::Postgres(url) => {
                let host = url.rsplit('@').next().unwrap_or(url);
                write!(f, "postgres://…@{}", host.trim_start_matches("postgres://"))
            }
        }
    }
}

/// What differs between the SQL of the two databases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// One process owns the database: leases found at start are dead.
    pub embedded: bool,
    /// Appended to a claim's `SELECT`: skip rows another transaction is claiming.
    pub skip_locked: &'static str,
    /// The next insertion position.
    pub next_seq: &'static str,
    /// `max(a, b)` of two values.
    pub greatest: &'static str,
    /// Position of a substring (1-based, 0 when absent).
    pub instr: &'static str,
    /// A set-returning expression of `(key, value)` text pairs of a JSON object column.
    pub json_pairs: &'static str,
    /// Taken first in a transaction that creates pins (keeps `created_ms` unique).
    pub pin_lock: Option<&'static str>,
}

const SQLITE: Dialect = Dialect {
    embedded: true,
    skip_locked: "",
    next_seq: "(SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs)",
    greatest: "MAX",
    instr: "instr",
    json_pairs: "json_each(p.meta)",
    pin_lock: None,
};

const POSTGRES: Dialect = Dialect {
    embedded: false,
    skip_locked: "FOR UPDATE SKIP LOCKED",
    next_seq: "nextval('jobs_seq')",
    greatest: "GREATEST",
    instr: "strpos",
    json_pairs: "jsonb_each_text(p.meta::jsonb)",
    pin_lock: Some("LOCK TABLE api_pins IN SHARE ROW EXCLUSIVE MODE"),
};

/// The oracle's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Opens (creating an SQLite file if needed) the database at `url` and brings its schema up
    /// to date. SQLite runs in WAL mode with `synchronous = FULL`, so a transaction that
    /// returned is on disk even if the process is killed right after.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        match url {
            DatabaseUrl::Sqlite(path) => {
                let text = format!("sqlite://{}?mode=rwc", path.display());
                let options = AnyConnectOptions::from_str(&text)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("./migrations").run(&pool).await?;
                Ok(Self { pool, dialect: SQLITE })
            }
            DatabaseUrl::Postgres(text) => {
                let options = AnyConnectOptions::from_str(text)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("./migrations_pg").run(&pool).await?;
                Ok(Self { pool, dialect: POSTGRES })
            }
        }
    }

    /// Whether one process owns the database (SQLite).
    pub fn is_embedded(&self) -> bool {
        self.dialect.embedded
    }
}

/// An unsigned count or time as the database's 64-bit integer.
pub(crate) fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("{v} does not fit in a 64-bit INTEGER")))
}

/// A column that must be there.
pub(crate) fn need<T>(v: Option<T>, column: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
}

/// An optional unsigned column.
pub(crate) fn opt_u64(row: &AnyRow, column: &str) -> Result<Option<u64>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(column.into())))
        .transpose()
}

/// An unsigned column.
pub(crate) fn get_u64(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    need(opt_u64(row, column)?, column)
}

/// `(…)`: a SQL list of states, from the enum.
pub(crate) fn state_list(states: impl IntoIterator<Item = JobState>) -> String {
    let names: Vec<String> = states.into_iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("({})", names.join(", "))
}
