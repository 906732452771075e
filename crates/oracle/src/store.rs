//! Durable storage of requests and cursors.
//!
//! [`RequestStore`], [`JobStore`] and [`PinStore`] are the ports; [`SqliteStore`] is the embedded
//! adapter (the default: no server) and [`PgStore`] the shared one (several oracle processes, one
//! queue). Both run the same SQL. A store's one promise is that [`RequestStore::ingest`] is
//! atomic: the requests of a block range and the cursor that moves past them are kept together
//! or not at all.

use std::{future::Future, path::Path, str::FromStr};

use alloy::primitives::{B256, U256};
use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

mod ledger;
mod pins;
pub use ledger::TxLedger;
pub use pins::{PinStore, TokenInfo};

use crate::{
    job::{Outcome, Transition},
    model::{Cursor, PinRequest, PinRequestEvent, RequestStatus, Source},
};

/// A storage failure. Retrying is safe: nothing is half-written.
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

/// Durable requests and cursors.
pub trait RequestStore: Send + Sync + 'static {
    /// Where `source` has been read up to, if anywhere.
    fn cursor(
        &self,
        source: Source,
    ) -> impl Future<Output = Result<Option<Cursor>, StoreError>> + Send;

    /// Stores the requests `events` make (ignoring any already stored) and moves `source`'s
    /// cursor to `cursor`, atomically. Returns how many requests were new.
    fn ingest(
        &self,
        source: Source,
        events: &[PinRequestEvent],
        cursor: Cursor,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.ingest_with_cancels(source, events, &[], cursor)
    }

    /// [`ingest`](Self::ingest), also marking the requests `cancelled` (by their requesters, on
    /// chain) as cancelled — whatever their state, so workers stop and nothing more is reported.
    fn ingest_with_cancels(
        &self,
        source: Source,
        events: &[PinRequestEvent],
        cancelled: &[U256],
        cursor: Cursor,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// One request by id.
    fn request(
        &self,
        source: Source,
        id: U256,
    ) -> impl Future<Output = Result<Option<PinRequest>, StoreError>> + Send;

    /// Requests in the order they were stored, after position `after` (0 for the start).
    /// Returns each with its position.
    fn list(
        &self,
        source: Source,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(u64, PinRequest)>, StoreError>> + Send;

    /// How many requests are stored for `source`.
    fn count(&self, source: Source) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The distinct blocks (number, hash) of stored requests at or above `from_block`, highest
    /// first: what a reorg check compares with the canonical chain.
    fn request_blocks(
        &self,
        source: Source,
        from_block: u64,
    ) -> impl Future<Output = Result<Vec<(u64, B256)>, StoreError>> + Send;

    /// Undoes a reorg: deletes the requests above the common ancestor and moves the cursor back
    /// to it (`None`: to before the start block), atomically. Returns how many were deleted.
    fn rewind(
        &self,
        source: Source,
        above: u64,
        cursor: Option<Cursor>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// [`RequestStore`] on an SQLite file: embedded, no server.
///
/// Runs in WAL mode with `synchronous = FULL`, so a transaction that returned is on disk even if
/// the process is killed right after.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

/// [`RequestStore`], [`JobStore`] and [`PinStore`] on PostgreSQL, for several oracle processes
/// sharing one queue: a job is claimed with `FOR UPDATE SKIP LOCKED`, held by a lease its worker
/// renews ([`JobStore::heartbeat`]), and taken by another process once the lease runs out (its
/// worker died).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: sqlx::PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(url).await?;
        sqlx::migrate!("./migrations_pg").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }
}

fn u64_to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("{v} does not fit in a 64-bit INTEGER")))
}

/// Reading columns the same way from both backends' rows.
trait Columns {
    fn int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn blob(&self, column: &str) -> Result<Vec<u8>, StoreError>;
}

macro_rules! columns {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn blob(&self, column: &str) -> Result<Vec<u8>, StoreError> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
columns!(sqlx::sqlite::SqliteRow);
columns!(sqlx::postgres::PgRow);

fn need<T>(v: Option<T>, column: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
}

fn row_to_request(row: &impl Columns) -> Result<PinRequest, StoreError> {
    let status = need(row.text("status")?, "status")?;
    let block = need(row.int("block_number")?, "block_number")?;
    let chain_id = need(row.int("chain_id")?, "chain_id")?;
    Ok(PinRequest {
        id: need(row.text("request_id")?, "request_id")?,
        chain_id: u64::try_from(chain_id).map_err(|_| StoreError::Corrupt("chain_id".into()))?,
        contract: need(row.text("contract")?, "contract")?,
        requester: need(row.text("requester")?, "requester")?,
        cid: row.text("cid")?,
        cid_bytes: format!("0x{}", alloy::hex::encode(row.blob("cid_bytes")?)),
        block: u64::try_from(block).map_err(|_| StoreError::Corrupt("block_number".into()))?,
        tx_hash: need(row.text("tx_hash")?, "tx_hash")?,
        status: RequestStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        error: row.text("error")?,
        attempts: u32::try_from(need(row.int("attempts")?, "attempts")?).unwrap_or(u32::MAX),
        dag_blocks: opt_u64(row, "dag_blocks")?,
        dag_bytes: opt_u64(row, "dag_bytes")?,
        piece_cid: row.text("piece_cid")?,
        padded_size: opt_u64(row, "padded_size")?,
        car_size: opt_u64(row, "car_size")?,
        report_tx: row.text("report_tx")?,
    })
}

fn opt_u64(row: &impl Columns, column: &str) -> Result<Option<u64>, StoreError> {
    row.int(column)?
        .map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(column.into())))
        .transpose()
}

/// A job a worker holds: one request and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Chain id of the request.
    pub chain_id: u64,
    /// Contract, lower-case 0x.
    pub contract: String,
    /// Request id, decimal.
    pub request_id: String,
    /// The CID bytes requested.
    pub cid: Vec<u8>,
    /// Status when claimed.
    pub status: RequestStatus,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Piece CID v2 once packed.
    pub piece_cid: Option<String>,
    /// Padded piece size once packed.
    pub padded_size: Option<u64>,
    /// The stored failure reason (what a failing job reports).
    pub error: Option<String>,
    /// Multiaddrs to fetch from before the configured gateways.
    pub origins: Vec<String>,
}

impl Job {
    /// Whether the job is a pin made through the Pinning Service API (not a request on chain).
    pub fn is_api_pin(&self) -> bool {
        self.chain_id == crate::pinning::API_CHAIN_ID
            && self.contract == crate::pinning::API_CONTRACT
    }
}

/// Durable jobs: claiming with a lease, and transitions stored before their effects.
pub trait JobStore: Send + Sync + 'static {
    /// Takes the oldest unfinished job no worker holds (its lease expired), leasing it until
    /// `now_ms + lease_ms`.
    fn claim(
        &self,
        now_ms: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;

    /// Stores `status` for `job` (the state before a stage's effect) and renews the lease until
    /// `now_ms + lease_ms`; false if the job moved on meanwhile.
    fn begin(
        &self,
        job: &Job,
        status: RequestStatus,
        now_ms: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a stage's result; false if the job moved on meanwhile. The worker keeps its lease
    /// while it goes on with the next stage; a failed or finished job is released.
    fn finish(
        &self,
        job: &Job,
        from: RequestStatus,
        transition: &Transition,
        outcome: &Outcome,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Renews the lease on `job` (in `status`) until `now_ms + lease_ms` while its worker is busy
    /// with a long stage; false if the job moved on or was taken.
    fn heartbeat(
        &self,
        job: &Job,
        status: RequestStatus,
        now_ms: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Voids every lease when the one process that uses an embedded store starts, since whatever
    /// held a lease before is dead (a shared store leaves them to expire).
    fn release_leases(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Puts a failed or quarantined request back in the queue with no attempts; false if it is
    /// neither.
    fn requeue(
        &self,
        source: Source,
        id: U256,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The request whose packed CAR has piece CID `piece_cid` (v2 text).
    fn by_piece(
        &self,
        piece_cid: &str,
    ) -> impl Future<Output = Result<Option<PinRequest>, StoreError>> + Send;

    /// How many requests are in each status.
    fn status_counts(&self) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;

    /// Requests in any of `statuses`, in the order stored (at most `limit`).
    fn in_status(
        &self,
        statuses: &[RequestStatus],
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PinRequest>, StoreError>> + Send;

    /// Puts request `id` (of whichever source holds it) back in the queue — from failed or
    /// quarantined by an operator, or from pinned/packed/reported when the reconciler found its
    /// DAG damaged. Returns how many rows moved.
    fn requeue_id(
        &self,
        id: &str,
        from: &[RequestStatus],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

fn status_list(statuses: &[RequestStatus]) -> String {
    statuses.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
}

const ACTIVE: &str = "('queued', 'fetching', 'pinned', 'packed', 'failing')";

/// What differs between the SQL of the two backends.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    /// One process owns the database: leases found at start are dead.
    embedded: bool,
    /// Columns naming one row, for `UPDATE … WHERE key = (SELECT columns …)`.
    row_key: &'static str,
    /// The same columns as a select list.
    row_columns: &'static str,
    /// Appended to that `SELECT`: skip rows another transaction is claiming.
    skip_locked: &'static str,
    /// The next insertion position.
    next_seq: &'static str,
    /// `max(a, b)` of two values.
    greatest: &'static str,
    /// Position of a substring (1-based, 0 when absent).
    instr: &'static str,
    /// A set-returning expression of `(key, value)` text pairs of a JSON object column.
    json_pairs: &'static str,
    /// Taken first in a transaction that creates pins (keeps `created_ms` unique).
    pin_lock: Option<&'static str>,
}

const SQLITE: Dialect = Dialect {
    embedded: true,
    row_key: "rowid",
    row_columns: "rowid",
    skip_locked: "",
    next_seq: "(SELECT COALESCE(MAX(seq), 0) + 1 FROM pin_requests)",
    greatest: "MAX",
    instr: "instr",
    json_pairs: "json_each(p.meta)",
    pin_lock: None,
};

const POSTGRES: Dialect = Dialect {
    embedded: false,
    row_key: "(chain_id, contract, request_id)",
    row_columns: "chain_id, contract, request_id",
    skip_locked: "FOR UPDATE SKIP LOCKED",
    next_seq: "nextval('pin_requests_seq')",
    greatest: "GREATEST",
    instr: "strpos",
    json_pairs: "jsonb_each_text(p.meta::jsonb)",
    pin_lock: Some("LOCK TABLE api_pins IN SHARE ROW EXCLUSIVE MODE"),
};

/// The [`JobStore`] and [`RequestStore`] implementations, written once in SQL both backends
/// accept (numbered `$n` parameters) and compiled for each.
macro_rules! sql_store {
    ($store:ident, $d:expr) => {
impl JobStore for $store {
    async fn claim(&self, now_ms: u64, lease_ms: u64) -> Result<Option<Job>, StoreError> {
        // One statement, so SQLite takes the write lock up front (and waits for it) instead of
        // upgrading a read transaction, which fails at once under contention.
        let row = sqlx::query(&format!(
            "UPDATE pin_requests SET lease_until = $1
             WHERE {target} = (SELECT {columns} FROM pin_requests
                            WHERE status IN {ACTIVE} AND lease_until < $2 ORDER BY seq LIMIT 1 {lock})
             RETURNING chain_id, contract, request_id, cid_bytes, status, attempts, piece_cid,
                       padded_size, error, origins",
            target = $d.row_key,
            columns = $d.row_columns,
            lock = $d.skip_locked
        ))
        .bind(u64_to_i64(now_ms.saturating_add(lease_ms))?)
        .bind(u64_to_i64(now_ms)?)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get("status")?;
        Ok(Some(Job {
            chain_id: u64::try_from(row.try_get::<i64, _>("chain_id")?)
                .map_err(|_| StoreError::Corrupt("chain_id".into()))?,
            contract: row.try_get("contract")?,
            request_id: row.try_get("request_id")?,
            cid: row.try_get("cid_bytes")?,
            status: RequestStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            piece_cid: row.try_get("piece_cid")?,
            padded_size: opt_u64(&row, "padded_size")?,
            error: row.try_get("error")?,
            origins: row
                .try_get::<Option<String>, _>("origins")?
                .and_then(|o| serde_json::from_str(&o).ok())
                .unwrap_or_default(),
        }))
    }

    async fn begin(
        &self,
        job: &Job,
        status: RequestStatus,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pin_requests SET status = $1, updated_at = $2, lease_until = $3
             WHERE chain_id = $4 AND contract = $5 AND request_id = $6 AND status = $7",
        )
        .bind(status.as_str())
        .bind(u64_to_i64(now_ms)?)
        .bind(u64_to_i64(now_ms.saturating_add(lease_ms))?)
        .bind(u64_to_i64(job.chain_id)?)
        .bind(&job.contract)
        .bind(&job.request_id)
        .bind(job.status.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(
        &self,
        job: &Job,
        from: RequestStatus,
        transition: &Transition,
        outcome: &Outcome,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let (mut blocks, mut bytes, mut piece, mut padded, mut car, mut tx_hash) =
            (None, None, None, None, None, None);
        match outcome {
            Outcome::Fetched { blocks: b, bytes: n } => {
                blocks = Some(u64_to_i64(*b)?);
                bytes = Some(u64_to_i64(*n)?);
            }
            Outcome::Packed { piece_cid, padded_size, car_size } => {
                piece = Some(piece_cid.clone());
                padded = Some(u64_to_i64(*padded_size)?);
                car = Some(u64_to_i64(*car_size)?);
            }
            Outcome::Reported { tx } => tx_hash = tx.clone(),
            Outcome::Closed | Outcome::Failed { .. } => {}
        }
        let done = sqlx::query(
            "UPDATE pin_requests SET status = $1, attempts = $2,
               error = CASE WHEN $3 THEN error ELSE $4 END,
               lease_until = CASE WHEN $5 THEN $6 ELSE lease_until END,
               updated_at = $7,
               dag_blocks = COALESCE($8, dag_blocks), dag_bytes = COALESCE($9, dag_bytes),
               piece_cid = COALESCE($10, piece_cid), padded_size = COALESCE($11, padded_size),
               car_size = COALESCE($12, car_size), report_tx = COALESCE($13, report_tx)
             WHERE chain_id = $14 AND contract = $15 AND request_id = $16 AND status = $17",
        )
        .bind(transition.status.as_str())
        .bind(i64::from(transition.attempts))
        // A reported failure keeps its reason.
        .bind(transition.status == RequestStatus::Failed && transition.error.is_none())
        .bind(&transition.error)
        .bind(
            matches!(outcome, Outcome::Failed { .. })
                || crate::job::stage(transition.status).is_none(),
        )
        .bind(u64_to_i64(match outcome {
            // A retryable failure waits before the next attempt: 0.5 s, doubling, at most 10 min.
            Outcome::Failed { .. } if crate::job::stage(transition.status).is_some() => {
                let backoff = 500u64 << transition.attempts.saturating_sub(1).min(10);
                now_ms.saturating_add(backoff.min(600_000))
            }
            _ => 0,
        })?)
        .bind(u64_to_i64(now_ms)?)
        .bind(blocks)
        .bind(bytes)
        .bind(piece)
        .bind(padded)
        .bind(car)
        .bind(tx_hash)
        .bind(u64_to_i64(job.chain_id)?)
        .bind(&job.contract)
        .bind(&job.request_id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn heartbeat(
        &self,
        job: &Job,
        status: RequestStatus,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pin_requests SET lease_until = $1
             WHERE chain_id = $2 AND contract = $3 AND request_id = $4 AND status = $5",
        )
        .bind(u64_to_i64(now_ms.saturating_add(lease_ms))?)
        .bind(u64_to_i64(job.chain_id)?)
        .bind(&job.contract)
        .bind(&job.request_id)
        .bind(status.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        if !$d.embedded {
            // Other processes may hold leases: only expiry frees them.
            return Ok(0);
        }
        let done = sqlx::query("UPDATE pin_requests SET lease_until = 0 WHERE lease_until != 0")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn requeue(&self, source: Source, id: U256) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pin_requests SET status = 'queued', attempts = 0, error = NULL, lease_until = 0
             WHERE chain_id = $1 AND contract = $2 AND request_id = $3
               AND status IN ('failed', 'quarantined') AND cid IS NOT NULL",
        )
        .bind(u64_to_i64(source.chain_id)?)
        .bind(format!("{:#x}", source.contract))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn by_piece(&self, piece_cid: &str) -> Result<Option<PinRequest>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM pin_requests WHERE piece_cid = $1 AND status IN ('packed', 'reported')
             ORDER BY seq LIMIT 1",
        )
        .bind(piece_cid)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| row_to_request(r)).transpose()
    }

    async fn in_status(
        &self,
        statuses: &[RequestStatus],
        limit: u32,
    ) -> Result<Vec<PinRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM pin_requests WHERE status IN ({}) ORDER BY seq LIMIT $1",
            status_list(statuses)
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| row_to_request(r)).collect()
    }

    async fn requeue_id(&self, id: &str, from: &[RequestStatus]) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE pin_requests SET status = 'queued', attempts = 0, error = NULL, lease_until = 0
             WHERE request_id = $1 AND cid IS NOT NULL AND status IN ({})",
            status_list(from)
        ))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn status_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM pin_requests GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("n")?;
                Ok((r.try_get("status")?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}

impl RequestStore for $store {
    async fn cursor(&self, source: Source) -> Result<Option<Cursor>, StoreError> {
        let row = sqlx::query("SELECT block_number, block_hash FROM cursors WHERE source = $1")
            .bind(source.key())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let number: i64 = row.try_get("block_number")?;
        let hash: String = row.try_get("block_hash")?;
        Ok(Some(Cursor {
            block_number: u64::try_from(number)
                .map_err(|_| StoreError::Corrupt("cursor block".into()))?,
            block_hash: B256::from_str(&hash)
                .map_err(|_| StoreError::Corrupt(format!("cursor hash {hash:?}")))?,
        }))
    }

    async fn ingest_with_cancels(
        &self,
        source: Source,
        events: &[PinRequestEvent],
        cancelled: &[U256],
        cursor: Cursor,
    ) -> Result<u64, StoreError> {
        // Every statement here writes, so the transaction holds SQLite's write lock from its first
        // statement on (a read first would have to upgrade, which fails under contention).
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for ev in events {
            let req = PinRequest::from_event(source, ev);
            let done = sqlx::query(&format!(
                "INSERT INTO pin_requests (chain_id, contract, request_id, requester, cid_bytes, cid,
                   block_number, block_hash, tx_hash, log_index, status, error, origins, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                         {next_seq})
                 ON CONFLICT DO NOTHING",
                next_seq = $d.next_seq
            ))
            .bind(u64_to_i64(source.chain_id)?)
            .bind(&req.contract)
            .bind(&req.id)
            .bind(&req.requester)
            .bind(ev.cid.as_ref())
            .bind(&req.cid)
            .bind(u64_to_i64(ev.block_number)?)
            .bind(format!("{:#x}", ev.block_hash))
            .bind(&req.tx_hash)
            .bind(u64_to_i64(ev.log_index)?)
            .bind(req.status.as_str())
            .bind(&req.error)
            .bind((!ev.origins.is_empty()).then(|| serde_json::json!(ev.origins).to_string()))
            .execute(&mut *tx)
            .await?;
            inserted += i64::try_from(done.rows_affected()).unwrap_or(0);
        }
        for id in cancelled {
            sqlx::query(
                "UPDATE pin_requests SET status = 'cancelled', lease_until = 0
                 WHERE chain_id = $1 AND contract = $2 AND request_id = $3 AND status != 'cancelled'",
            )
            .bind(u64_to_i64(source.chain_id)?)
            .bind(format!("{:#x}", source.contract))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO cursors (source, block_number, block_hash) VALUES ($1, $2, $3)
             ON CONFLICT (source) DO UPDATE SET block_number = excluded.block_number,
                                                block_hash = excluded.block_hash",
        )
        .bind(source.key())
        .bind(u64_to_i64(cursor.block_number)?)
        .bind(format!("{:#x}", cursor.block_hash))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u64::try_from(inserted).unwrap_or(0))
    }

    async fn request(&self, source: Source, id: U256) -> Result<Option<PinRequest>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM pin_requests WHERE chain_id = $1 AND contract = $2 AND request_id = $3",
        )
        .bind(u64_to_i64(source.chain_id)?)
        .bind(format!("{:#x}", source.contract))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| row_to_request(r)).transpose()
    }

    async fn list(
        &self,
        source: Source,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, PinRequest)>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM pin_requests WHERE chain_id = $1 AND contract = $2 AND seq > $3
             ORDER BY seq LIMIT $4",
        )
        .bind(u64_to_i64(source.chain_id)?)
        .bind(format!("{:#x}", source.contract))
        .bind(u64_to_i64(after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq")?;
                Ok((u64::try_from(seq).unwrap_or(0), row_to_request(row)?))
            })
            .collect()
    }

    async fn count(&self, source: Source) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pin_requests WHERE chain_id = $1 AND contract = $2",
        )
        .bind(u64_to_i64(source.chain_id)?)
        .bind(format!("{:#x}", source.contract))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn request_blocks(
        &self,
        source: Source,
        from_block: u64,
    ) -> Result<Vec<(u64, B256)>, StoreError> {
        self.request_blocks_impl(source, from_block).await
    }

    async fn rewind(
        &self,
        source: Source,
        above: u64,
        cursor: Option<Cursor>,
    ) -> Result<u64, StoreError> {
        self.rewind_impl(source, above, cursor).await
    }
}

impl $store {
    async fn request_blocks_impl(
        &self,
        source: Source,
        from_block: u64,
    ) -> Result<Vec<(u64, B256)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT block_number, block_hash FROM pin_requests
             WHERE chain_id = $1 AND contract = $2 AND block_number >= $3
             ORDER BY block_number DESC",
        )
        .bind(u64_to_i64(source.chain_id)?)
        .bind(format!("{:#x}", source.contract))
        .bind(u64_to_i64(from_block)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("block_number")?;
                let h: String = r.try_get("block_hash")?;
                Ok((
                    u64::try_from(n).map_err(|_| StoreError::Corrupt("block_number".into()))?,
                    B256::from_str(&h).map_err(|_| StoreError::Corrupt(format!("hash {h:?}")))?,
                ))
            })
            .collect()
    }

    async fn rewind_impl(
        &self,
        source: Source,
        above: u64,
        cursor: Option<Cursor>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM pin_requests WHERE chain_id = $1 AND contract = $2 AND block_number > $3",
        )
        .bind(u64_to_i64(source.chain_id)?)
        .bind(format!("{:#x}", source.contract))
        .bind(u64_to_i64(above)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        match cursor {
            Some(c) => {
                sqlx::query("UPDATE cursors SET block_number = $1, block_hash = $2 WHERE source = $3")
                    .bind(u64_to_i64(c.block_number)?)
                    .bind(format!("{:#x}", c.block_hash))
                    .bind(source.key())
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM cursors WHERE source = $1")
                    .bind(source.key())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

    };
}

sql_store!(SqliteStore, SQLITE);
sql_store!(PgStore, POSTGRES);
