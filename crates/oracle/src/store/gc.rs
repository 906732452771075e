//! What garbage collection keeps in the database: who may write blocks while it runs (holds),
//! the collection's own lease, the totals of every run, and the live jobs it marks from.
//!
//! The lock is a reader–writer lock in the database, so it works across processes (an
//! `estuary oracle gc` beside a running oracle, several oracles on PostgreSQL): a writer that
//! must not overlap a collection — a fetch moving its staged blocks into the store, a backup
//! copying them — takes a *hold*; a collection starts only when no hold is live and, once
//! started, no hold is granted until it ends. Both are leases, so a crashed holder blocks
//! nothing for longer than its lease. Every statement that decides takes the `gc_state` row's
//! lock first (an `UPDATE` of it: SQLite's write lock, PostgreSQL's row lock), so deciding and
//! recording are one atomic step on both databases.

use sqlx::Row;

use super::{Store, StoreError, get_u64, int, jobs::key_of, opt_u64, state_list};
use crate::domain::{JobKey, JobState};

/// Totals of every collection so far, and the last one's times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcTotals {
    /// Collections finished.
    pub runs: u64,
    /// Blocks deleted.
    pub freed_blocks: u64,
    /// Their bytes.
    pub freed_bytes: u64,
    /// Packed CARs deleted.
    pub freed_cars: u64,
    /// Their bytes.
    pub freed_car_bytes: u64,
    /// When the last collection started (unix ms).
    pub last_started_ms: Option<u64>,
    /// When the last collection finished (unix ms).
    pub last_finished_ms: Option<u64>,
    /// Why the last collection failed, if it did.
    pub last_error: Option<String>,
    /// Whether a collection holds the lock now.
    pub running: bool,
}

/// What one collection freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freed {
    /// Blocks deleted.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Packed CARs deleted.
    pub cars: u64,
    /// Their bytes.
    pub car_bytes: u64,
}

/// A job the collection keeps the DAG (and packed CAR) of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveJob {
    /// Its key.
    pub key: JobKey,
    /// The CID bytes.
    pub cid: Vec<u8>,
    /// Its state.
    pub state: JobState,
    /// Its packed CAR's piece CID, once packed.
    pub piece_cid: Option<String>,
    /// Whether an order for its piece is being sent or open, or its piece is in a bucket whose
    /// aggregate has no order yet or an order being sent or open: storage providers download the CAR (or the aggregate
    /// assembled from it) from the oracle while the order lives, so it is kept whatever the
    /// retention says.
    pub dealing: bool,
    /// Its position (for paging).
    pub seq: u64,
}

/// The states whose DAG is kept: pinned, and on their way to it (queued, fetching — their
/// partial DAG is kept too, so a retry or a requeued damaged pin does not fetch it again).
/// Failed, failing, quarantined and cancelled jobs hold nothing.
pub const LIVE: [JobState; 5] =
    [JobState::Queued, JobState::Fetching, JobState::Pinned, JobState::Packed, JobState::Reported];

const LOCK: &str = "UPDATE gc_state SET id = id WHERE id = 1";

impl Store {
    /// Takes (or renews) the hold `holder` until `now_ms + lease_ms`, unless a collection runs:
    /// then returns false and the caller waits.
    pub async fn gc_hold(
        &self,
        holder: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let running: i64 = sqlx::query("SELECT running_until FROM gc_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("running_until")?;
        if running > int(now_ms)? {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO gc_holds (holder, until_ms) VALUES ($1, $2)
             ON CONFLICT (holder) DO UPDATE SET until_ms = excluded.until_ms",
        )
        .bind(holder)
        .bind(int(now_ms.saturating_add(lease_ms))?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives up the hold `holder`.
    pub async fn gc_release(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gc_holds WHERE holder = $1")
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts a collection as `holder`, leased until `now_ms + lease_ms`, unless another one
    /// runs (false). New holds are refused from now on; holds already granted may still be
    /// live: wait for [`gc_live_holds`](Self::gc_live_holds) to reach zero before sweeping.
    pub async fn gc_begin(
        &self,
        holder: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let row = sqlx::query("SELECT running_until, holder FROM gc_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let running: i64 = row.try_get("running_until")?;
        let current: Option<String> = row.try_get("holder")?;
        if running > int(now_ms)? && current.as_deref() != Some(holder) {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE gc_state SET running_until = $1, holder = $2, last_started_ms = $3 WHERE id = 1",
        )
        .bind(int(now_ms.saturating_add(lease_ms))?)
        .bind(holder)
        .bind(int(now_ms)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Extends the running collection's lease; false if `holder` no longer holds it.
    pub async fn gc_renew(
        &self,
        holder: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE gc_state SET running_until = $1 WHERE id = 1 AND holder = $2")
                .bind(int(now_ms.saturating_add(lease_ms))?)
                .bind(holder)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Holds that are live at `now_ms`.
    pub async fn gc_live_holds(&self, now_ms: u64) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM gc_holds WHERE until_ms > $1")
            .bind(int(now_ms)?)
            .fetch_one(&self.pool)
            .await?;
        get_u64(&row, "n")
    }

    /// Ends the collection `holder` runs, adding what it freed to the totals (and recording
    /// its error, if it failed).
    pub async fn gc_finish(
        &self,
        holder: &str,
        freed: Freed,
        error: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE gc_state SET running_until = 0, holder = NULL, runs = runs + 1,
               freed_blocks = freed_blocks + $1, freed_bytes = freed_bytes + $2,
               freed_cars = freed_cars + $3, freed_car_bytes = freed_car_bytes + $4,
               last_finished_ms = $5, last_error = $6
             WHERE id = 1 AND holder = $7",
        )
        .bind(int(freed.blocks)?)
        .bind(int(freed.bytes)?)
        .bind(int(freed.cars)?)
        .bind(int(freed.car_bytes)?)
        .bind(int(now_ms)?)
        .bind(error)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The totals of every collection so far.
    pub async fn gc_totals(&self, now_ms: u64) -> Result<GcTotals, StoreError> {
        let row = sqlx::query(
            "SELECT running_until, runs, freed_blocks, freed_bytes, freed_cars, freed_car_bytes,
                    last_started_ms, last_finished_ms, last_error
             FROM gc_state WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(GcTotals {
            runs: get_u64(&row, "runs")?,
            freed_blocks: get_u64(&row, "freed_blocks")?,
            freed_bytes: get_u64(&row, "freed_bytes")?,
            freed_cars: get_u64(&row, "freed_cars")?,
            freed_car_bytes: get_u64(&row, "freed_car_bytes")?,
            last_started_ms: opt_u64(&row, "last_started_ms")?,
            last_finished_ms: opt_u64(&row, "last_finished_ms")?,
            last_error: row.try_get("last_error")?,
            running: get_u64(&row, "running_until")? > now_ms,
        })
    }

    /// Each single-CAR piece of an open order (not an aggregate, a bucket's piece or a split
    /// pin's) with a live pin, and that pin's root: what the oracle packs again if its copy was
    /// dropped and its replicas no longer hold it (`deals::cold::ReadBacks`).
    pub async fn pinned_single_cars(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT o.piece_cid, j.cid_bytes FROM deal_orders o
             JOIN jobs j ON j.piece_cid = o.piece_cid
             WHERE o.state = '{open}' AND o.order_id IS NOT NULL AND j.state IN {live}
               AND NOT EXISTS (SELECT 1 FROM buckets b WHERE b.piece_cid = o.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM bucket_pieces p WHERE p.piece_cid = o.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM piece_splits s
                               WHERE s.piece_cid = o.piece_cid OR s.part_cid = o.piece_cid)
             ORDER BY o.piece_cid",
            open = crate::domain::deal::OrderState::Open.as_str(),
            live = state_list(LIVE),
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for r in &rows {
            let piece: String = r.try_get("piece_cid")?;
            // Pins of one piece share its root: the first is enough.
            if out.last().is_none_or(|(p, _)| *p != piece) {
                out.push((piece, r.try_get("cid_bytes")?));
            }
        }
        Ok(out)
    }

    /// Up to `limit` jobs in a [`LIVE`] state after position `after`, in order.
    pub async fn live_jobs(&self, after: u64, limit: u32) -> Result<Vec<LiveJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT source, job_id, cid_bytes, state, piece_cid, seq,
                    CAST(CASE WHEN EXISTS (SELECT 1 FROM deal_orders o
                                           WHERE o.piece_cid = jobs.piece_cid
                                             AND o.state IN ('{sending}', '{open}'))
                              OR EXISTS (SELECT 1 FROM bucket_pieces p
                                           JOIN buckets b ON b.id = p.bucket_id
                                           WHERE p.piece_cid = jobs.piece_cid
                                             AND (b.piece_cid IS NULL
                                               OR NOT EXISTS (SELECT 1 FROM deal_orders o
                                                 WHERE o.piece_cid = b.piece_cid)
                                               OR EXISTS (SELECT 1 FROM deal_orders o
                                                 WHERE o.piece_cid = b.piece_cid
                                                   AND o.state IN ('{sending}', '{open}'))))
                              OR EXISTS (SELECT 1 FROM piece_splits s
                                           WHERE s.piece_cid = jobs.piece_cid
                                             AND (NOT EXISTS (SELECT 1 FROM deal_orders o
                                                   WHERE o.piece_cid = s.part_cid)
                                               OR EXISTS (SELECT 1 FROM deal_orders o
                                                   WHERE o.piece_cid = s.part_cid
                                                     AND o.state IN ('{sending}', '{open}'))))
                         THEN 1 ELSE 0 END AS BIGINT) AS dealing
             FROM jobs WHERE state IN {live} AND seq > $1 ORDER BY seq LIMIT $2",
            live = state_list(LIVE),
            sending = crate::domain::deal::OrderState::Sending.as_str(),
            open = crate::domain::deal::OrderState::Open.as_str(),
        ))
        .bind(int(after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok(LiveJob {
                    key: key_of(row)?,
                    cid: row.try_get("cid_bytes")?,
                    state: JobState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))?,
                    piece_cid: row.try_get("piece_cid")?,
                    dealing: get_u64(row, "dealing")? == 1,
                    seq: get_u64(row, "seq")?,
                })
            })
            .collect()
    }
}
