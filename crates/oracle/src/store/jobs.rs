//! Jobs: claiming with a lease, transitions as compare-and-set, reading and listing.

use sqlx::{Row, any::AnyRow};

use super::{Store, StoreError, get_u64, int, opt_u64, state_list};
use crate::domain::{
    JobId, JobKey, JobSource, JobState, JobStatus,
    request::Job,
    state::{Change, ErrorChange, FailureCode, Outcome},
};

/// A job a worker holds: what its stages need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Its key.
    pub key: JobKey,
    /// The CID bytes requested.
    pub cid: Vec<u8>,
    /// Its status when claimed.
    pub status: JobStatus,
    /// Piece CID v2 once packed.
    pub piece_cid: Option<String>,
    /// Padded piece size once packed.
    pub padded_size: Option<u64>,
    /// The stored failure reason (what a failing job reports, off chain).
    pub error: Option<String>,
    /// The failure's code (what a failing job reports on chain).
    pub failure: Option<FailureCode>,
    /// Multiaddrs to fetch from before the configured gateways.
    pub origins: Vec<String>,
    /// The DAG's size as its requester stated it, if they did.
    pub size_hint: Option<u64>,
    /// An `EstuaryOracle` store job: its pin is not reported on its own (the job is fulfilled
    /// with deals, by `deals::store_jobs`).
    pub store: bool,
}

pub(crate) const JOB_COLUMNS: &str = "source, job_id, requester, cid_bytes, cid, block_number, \
    tx_hash, state, error, failure, attempts, dag_blocks, dag_bytes, piece_cid, padded_size, car_size, \
    report_tx, origins, seq";

pub(crate) fn key_of(row: &AnyRow) -> Result<JobKey, StoreError> {
    let source: String = row.try_get("source")?;
    let source: JobSource = source.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
    Ok(JobKey { source, id: JobId::stored(row.try_get("job_id")?) })
}

fn state_of(row: &AnyRow) -> Result<JobState, StoreError> {
    let state: String = row.try_get("state")?;
    JobState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))
}

fn origins_of(row: &AnyRow) -> Result<Vec<String>, StoreError> {
    match row.try_get::<Option<String>, _>("origins")? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|_| StoreError::Corrupt(format!("origins {text:?}"))),
    }
}

fn attempts_of(row: &AnyRow) -> Result<u32, StoreError> {
    u32::try_from(get_u64(row, "attempts")?).map_err(|_| StoreError::Corrupt("attempts".into()))
}

fn failure_of(row: &AnyRow) -> Result<Option<FailureCode>, StoreError> {
    let Some(name) = row.try_get::<Option<String>, _>("failure")? else { return Ok(None) };
    FailureCode::parse(&name)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown failure code {name:?}")))
}

pub(crate) fn row_to_job(row: &AnyRow) -> Result<Job, StoreError> {
    let key = key_of(row)?;
    let (chain_id, contract) = match &key.source {
        JobSource::Contract { chain, address } => (Some(*chain), Some(format!("{address:#x}"))),
        JobSource::PinningApi { .. } => (None, None),
    };
    let cid_bytes: Vec<u8> = row.try_get("cid_bytes")?;
    Ok(Job {
        key: key.to_string(),
        id: key.id.to_string(),
        chain_id,
        contract,
        requester: row.try_get("requester")?,
        cid: row.try_get("cid")?,
        cid_bytes: format!("0x{}", alloy::hex::encode(cid_bytes)),
        block: opt_u64(row, "block_number")?,
        tx_hash: row.try_get("tx_hash")?,
        status: state_of(row)?,
        error: row.try_get("error")?,
        failure: failure_of(row)?,
        attempts: attempts_of(row)?,
        dag_blocks: opt_u64(row, "dag_blocks")?,
        dag_bytes: opt_u64(row, "dag_bytes")?,
        piece_cid: row.try_get("piece_cid")?,
        padded_size: opt_u64(row, "padded_size")?,
        car_size: opt_u64(row, "car_size")?,
        report_tx: row.try_get("report_tx")?,
        origins: origins_of(row)?,
        job_key: Some(key),
    })
}

fn row_to_claimed(row: &AnyRow) -> Result<Claimed, StoreError> {
    Ok(Claimed {
        key: key_of(row)?,
        cid: row.try_get("cid_bytes")?,
        status: JobStatus { state: state_of(row)?, attempts: attempts_of(row)? },
        piece_cid: row.try_get("piece_cid")?,
        padded_size: opt_u64(row, "padded_size")?,
        error: row.try_get("error")?,
        failure: failure_of(row)?,
        origins: origins_of(row)?,
        size_hint: opt_u64(row, "size_hint")?,
        store: opt_u64(row, "store_replicas")?.is_some(),
    })
}

impl Store {
    /// Takes the oldest job with something to do that no worker holds (its lease expired) and
    /// whose backoff is over, leasing it until `now_ms + lease_ms`. See
    /// [`claim_within`](Self::claim_within), here with no cap per requester.
    pub async fn claim(&self, now_ms: u64, lease_ms: u64) -> Result<Option<Claimed>, StoreError> {
        self.claim_within(now_ms, lease_ms, u32::MAX).await
    }

    /// Takes a job for a worker, fairly: never one of a requester that already holds
    /// `per_requester` jobs (so one requester cannot take every worker, whatever it queued),
    /// first attempts before retries (a retry, once its backoff is over, still waits behind
    /// every requester's fresh work), and in each of those the oldest first. The job is leased
    /// until `now_ms + lease_ms`.
    pub async fn claim_within(
        &self,
        now_ms: u64,
        lease_ms: u64,
        per_requester: u32,
    ) -> Result<Option<Claimed>, StoreError> {
        for attempts in ["attempts = 0", "attempts > 0"] {
            // One statement, so SQLite takes the write lock up front (and waits for it) instead
            // of upgrading a read transaction, which fails at once under contention.
            let row = sqlx::query(&format!(
                "UPDATE jobs SET lease_until = $1
                 WHERE (source, job_id) = (SELECT source, job_id FROM jobs
                     WHERE state IN {active} AND lease_until < $2 AND retry_at <= $2 AND {attempts}
                       AND requester NOT IN (SELECT requester FROM jobs WHERE lease_until >= $2
                                             GROUP BY requester HAVING COUNT(*) >= $3)
                     ORDER BY seq LIMIT 1 {lock})
                 RETURNING source, job_id, cid_bytes, state, attempts, piece_cid, padded_size,
                           error, failure, origins, size_hint, store_replicas",
                active = state_list(JobState::active()),
                lock = self.dialect.skip_locked,
            ))
            .bind(int(now_ms.saturating_add(lease_ms))?)
            .bind(int(now_ms)?)
            .bind(i64::from(per_requester))
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                return row_to_claimed(&row).map(Some);
            }
        }
        Ok(None)
    }

    /// Stores `change`, computed by the state machine from `from`: only if the job is still in
    /// `from` (compare-and-set). With the change's `release`, the worker's lease ends; without,
    /// it is renewed until `now_ms + lease_ms`. Returns false if the job moved on meanwhile.
    pub async fn transition(
        &self,
        key: &JobKey,
        from: &JobStatus,
        change: &Change,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let (mut blocks, mut bytes, mut piece, mut padded, mut car, mut tx, mut failure) =
            (None, None, None, None, None, None, None);
        match &change.record {
            Some(Outcome::Fetched { blocks: b, bytes: n }) => {
                blocks = Some(int(*b)?);
                bytes = Some(int(*n)?);
            }
            Some(Outcome::Packed { piece_cid, padded_size, car_size }) => {
                piece = Some(piece_cid.clone());
                padded = Some(int(*padded_size)?);
                car = Some(int(*car_size)?);
            }
            Some(Outcome::Reported { tx: hash }) => tx = hash.clone(),
            Some(Outcome::Failed { code, .. }) => failure = Some(code.as_str()),
            Some(Outcome::Closed | Outcome::Interrupted { .. }) | None => {}
        }
        let (keep_error, error) = match &change.error {
            ErrorChange::Keep => (true, None),
            ErrorChange::Clear => (false, None),
            ErrorChange::Set(reason) => (false, Some(reason.clone())),
        };
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, attempts = $2,
               error = CASE WHEN $3 THEN error ELSE $4 END,
               retry_at = $5,
               lease_until = CASE WHEN $6 THEN 0 ELSE $7 END,
               updated_at = $8,
               dag_blocks = COALESCE($9, dag_blocks), dag_bytes = COALESCE($10, dag_bytes),
               piece_cid = COALESCE($11, piece_cid), padded_size = COALESCE($12, padded_size),
               car_size = COALESCE($13, car_size), report_tx = COALESCE($14, report_tx),
               failure = CASE WHEN $1 = 'queued' THEN NULL ELSE COALESCE($15, failure) END
             WHERE source = $16 AND job_id = $17 AND state = $18 AND attempts = $19",
        )
        .bind(change.state.as_str())
        .bind(i64::from(change.attempts))
        .bind(keep_error)
        .bind(error)
        .bind(int(change.retry_at)?)
        .bind(change.release)
        .bind(int(now_ms.saturating_add(lease_ms))?)
        .bind(int(now_ms)?)
        .bind(blocks)
        .bind(bytes)
        .bind(piece)
        .bind(padded)
        .bind(car)
        .bind(tx)
        .bind(failure)
        .bind(key.source.to_string())
        .bind(key.id.as_str())
        .bind(from.state.as_str())
        .bind(i64::from(from.attempts))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Renews the lease on job `key` (in `state`) until `now_ms + lease_ms` while its worker is
    /// busy with a long stage; false if the job moved on or was taken.
    pub async fn heartbeat(
        &self,
        key: &JobKey,
        state: JobState,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE source = $2 AND job_id = $3 AND state = $4",
        )
        .bind(int(now_ms.saturating_add(lease_ms))?)
        .bind(key.source.to_string())
        .bind(key.id.as_str())
        .bind(state.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Voids every lease when the one process that uses an embedded store starts, since
    /// whatever held a lease before is dead (a shared store leaves them to expire).
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        if !self.dialect.embedded {
            return Ok(0);
        }
        let done = sqlx::query("UPDATE jobs SET lease_until = 0 WHERE lease_until != 0")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// One job.
    pub async fn job(&self, key: &JobKey) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE source = $1 AND job_id = $2"
        ))
        .bind(key.source.to_string())
        .bind(key.id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_job).transpose()
    }

    /// Every job with this id, whatever its source (to say which keys a bare id could mean).
    pub async fn jobs_with_id(&self, id: &str) -> Result<Vec<Job>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1 ORDER BY seq"))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(row_to_job).collect()
    }

    /// `source`'s jobs in the order stored, after position `after` (0 for the start), with their
    /// positions.
    pub async fn list(
        &self,
        source: &JobSource,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Job)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE source = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(source.to_string())
        .bind(int(after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((get_u64(row, "seq")?, row_to_job(row)?))).collect()
    }

    /// How many jobs `source` has.
    pub async fn count(&self, source: &JobSource) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE source = $1")
            .bind(source.to_string())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt("count".into()))
    }

    /// How many jobs are in each state.
    pub async fn state_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        Ok(self.state_totals().await?.into_iter().map(|(s, n, _)| (s, n)).collect())
    }

    /// Jobs by state, with the DAG bytes of those fetched.
    pub async fn state_totals(&self) -> Result<Vec<(JobState, u64, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n, CAST(COALESCE(SUM(dag_bytes), 0) AS BIGINT) AS bytes
             FROM jobs GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((state_of(r)?, get_u64(r, "n")?, get_u64(r, "bytes")?))).collect()
    }

    /// Jobs in any of `states`, in the order stored (at most `limit`).
    pub async fn in_states(&self, states: &[JobState], limit: u32) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {} ORDER BY seq LIMIT $1",
            state_list(states.iter().copied())
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_job).collect()
    }

    /// The job whose packed CAR has piece CID `piece_cid` (v2 text).
    pub async fn by_piece(&self, piece_cid: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE piece_cid = $1 AND state IN {} ORDER BY seq LIMIT 1",
            state_list([JobState::Packed, JobState::Reported])
        ))
        .bind(piece_cid)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_job).transpose()
    }

    /// The status the machine needs for `key`.
    pub async fn status(&self, key: &JobKey) -> Result<Option<JobStatus>, StoreError> {
        let row = sqlx::query("SELECT state, attempts FROM jobs WHERE source = $1 AND job_id = $2")
            .bind(key.source.to_string())
            .bind(key.id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(JobStatus { state: state_of(&r)?, attempts: attempts_of(&r)? })).transpose()
    }
}
