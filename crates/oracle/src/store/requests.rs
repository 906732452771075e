//! Requests from the chain: new jobs, cancellations, the watcher's cursor and checkpoints.

use alloy::{primitives::B256, rpc::types::Log};
use estuary_chain::{Cursor, LogStore};
use sqlx::Row;

use super::{Store, StoreError, get_u64, int};
use crate::domain::{
    JobKey, JobSource, JobStatus,
    request::{ContractKind, RequestEvent, StoreOffer, decode_logs, first_state},
    state::{Input, Policy, apply},
};

/// How many checkpoints a stream keeps: enough to find any reorg the watcher looks for.
const CHECKPOINT_SPAN: u64 = estuary_chain::watcher::MAX_REORG_DEPTH * 2;

impl Store {
    /// Where `stream` has been read up to, if anywhere.
    pub async fn cursor(&self, stream: &str) -> Result<Option<Cursor>, StoreError> {
        let row = sqlx::query("SELECT block_number, block_hash FROM cursors WHERE source = $1")
            .bind(stream)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = row.try_get("block_hash")?;
        Ok(Some(Cursor {
            block_number: get_u64(&row, "block_number")?,
            block_hash: hash
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("cursor hash {hash:?}")))?,
        }))
    }

    /// Stores the jobs `events` make in `source` (ignoring any already stored), cancels the
    /// requests `cancelled` (through the state machine: whatever their state but cancelled),
    /// and moves `stream`'s cursor to `cursor`, keeping it as a checkpoint — atomically.
    /// Returns how many jobs were new.
    pub async fn ingest_requests(
        &self,
        stream: &str,
        source: &JobSource,
        events: &[RequestEvent],
        cancelled: &[alloy::primitives::U256],
        cursor: Cursor,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        // Every statement here writes, so the transaction holds SQLite's write lock from its first
        // statement on (a read first would have to upgrade, which fails under contention).
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for ev in events {
            let (cid, state, error) = first_state(&ev.cid, ev.refused.as_deref());
            let done = sqlx::query(&format!(
                "INSERT INTO jobs (source, job_id, requester, cid_bytes, cid, block_number,
                   block_hash, tx_hash, log_index, state, error, origins, seq, updated_at,
                   size_hint, store_replicas, store_verified)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, {next_seq}, $13, $14,
                   $15, $16)
                 ON CONFLICT DO NOTHING",
                next_seq = self.dialect.next_seq
            ))
            .bind(source.to_string())
            .bind(ev.request_id.to_string())
            .bind(ev.requester.to_checksum(None))
            .bind(ev.cid.to_vec())
            .bind(cid)
            .bind(int(ev.block_number)?)
            .bind(format!("{:#x}", ev.block_hash))
            .bind(format!("{:#x}", ev.tx_hash))
            .bind(int(ev.log_index)?)
            .bind(state.as_str())
            .bind(error)
            .bind((!ev.origins.is_empty()).then(|| serde_json::json!(ev.origins).to_string()))
            .bind(int(now_ms)?)
            .bind(ev.size_hint.map(int).transpose()?)
            .bind(ev.store.map(|a| i64::from(a.replicas)))
            .bind(ev.store.map(|a| i64::from(a.verified)))
            .execute(&mut *tx)
            .await?;
            inserted += done.rows_affected();
        }
        for id in cancelled {
            let key = JobKey { source: source.clone(), id: crate::domain::JobId::request(*id) };
            cancel_in(&mut tx, &key, now_ms).await?;
        }
        move_cursor(&mut tx, stream, cursor).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// `stream`'s checkpoints at or above block `from`.
    pub async fn checkpoints(&self, stream: &str, from: u64) -> Result<Vec<Cursor>, StoreError> {
        let rows = sqlx::query(
            "SELECT block_number, block_hash FROM checkpoints WHERE stream = $1 AND block_number >= $2
             ORDER BY block_number DESC",
        )
        .bind(stream)
        .bind(int(from)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let hash: String = r.try_get("block_hash")?;
                Ok(Cursor {
                    block_number: get_u64(r, "block_number")?,
                    block_hash: hash
                        .parse::<B256>()
                        .map_err(|_| StoreError::Corrupt(format!("hash {hash:?}")))?,
                })
            })
            .collect()
    }

    /// Undoes a reorg: deletes `source`'s jobs from blocks above `above` (and with them any
    /// work not yet done for them) and `stream`'s checkpoints there, and moves the cursor back
    /// to `cursor` (`None`: to before the start), atomically. Returns how many jobs went.
    pub async fn rewind(
        &self,
        stream: &str,
        source: &JobSource,
        above: u64,
        cursor: Option<Cursor>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM jobs WHERE source = $1 AND block_number > $2")
            .bind(source.to_string())
            .bind(int(above)?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        rewind_cursor(&mut tx, stream, above, cursor).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Moves `stream`'s cursor to `cursor` and keeps it as a checkpoint (forgetting checkpoints
/// too old for any reorg the watcher looks for), in the caller's transaction.
pub(crate) async fn move_cursor(
    db: &mut sqlx::AnyConnection,
    stream: &str,
    cursor: Cursor,
) -> Result<(), StoreError> {
    upsert_cursor(db, stream, cursor).await?;
    sqlx::query(
        "INSERT INTO checkpoints (stream, block_number, block_hash) VALUES ($1, $2, $3)
         ON CONFLICT (stream, block_number) DO UPDATE SET block_hash = excluded.block_hash",
    )
    .bind(stream)
    .bind(int(cursor.block_number)?)
    .bind(format!("{:#x}", cursor.block_hash))
    .execute(&mut *db)
    .await?;
    sqlx::query("DELETE FROM checkpoints WHERE stream = $1 AND block_number < $2")
        .bind(stream)
        .bind(int(cursor.block_number.saturating_sub(CHECKPOINT_SPAN))?)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// Forgets `stream`'s checkpoints above block `above` and moves its cursor back to `cursor`
/// (`None`: to before the start), in the caller's transaction.
pub(crate) async fn rewind_cursor(
    db: &mut sqlx::AnyConnection,
    stream: &str,
    above: u64,
    cursor: Option<Cursor>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM checkpoints WHERE stream = $1 AND block_number > $2")
        .bind(stream)
        .bind(int(above)?)
        .execute(&mut *db)
        .await?;
    match cursor {
        Some(c) => upsert_cursor(db, stream, c).await?,
        None => {
            sqlx::query("DELETE FROM cursors WHERE source = $1")
                .bind(stream)
                .execute(&mut *db)
                .await?;
        }
    }
    Ok(())
}

/// Sets `stream`'s cursor to `cursor`.
async fn upsert_cursor(
    db: &mut sqlx::AnyConnection,
    stream: &str,
    cursor: Cursor,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cursors (source, block_number, block_hash) VALUES ($1, $2, $3)
         ON CONFLICT (source) DO UPDATE SET block_number = excluded.block_number,
                                            block_hash = excluded.block_hash",
    )
    .bind(stream)
    .bind(int(cursor.block_number)?)
    .bind(format!("{:#x}", cursor.block_hash))
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// The watcher's store for one contract's requests: logs decoded into jobs of `source`.
#[derive(Debug, Clone)]
pub struct RequestLogs {
    store: Store,
    source: JobSource,
    kind: ContractKind,
    offer: Option<StoreOffer>,
}

impl RequestLogs {
    /// Requests of `kind` made to the contract `source` names, kept in `store`; store jobs
    /// refused.
    pub fn new(store: Store, source: JobSource, kind: ContractKind) -> Self {
        Self { store, source, kind, offer: None }
    }

    /// Store jobs served on `offer`'s terms (those asking more are refused at once).
    #[must_use]
    pub fn with_store_offer(mut self, offer: Option<StoreOffer>) -> Self {
        self.offer = offer;
        self
    }
}

impl LogStore for RequestLogs {
    type Error = StoreError;

    async fn cursor(&self, stream: &str) -> Result<Option<Cursor>, StoreError> {
        self.store.cursor(stream).await
    }

    async fn ingest(
        &self,
        stream: &str,
        logs: Vec<Log>,
        cursor: Cursor,
    ) -> Result<u64, StoreError> {
        let (mut events, cancelled) = decode_logs(self.kind, &logs);
        for event in &mut events {
            if let (Some(ask), None) = (event.store, &event.refused) {
                event.refused = StoreOffer::refusal(self.offer, ask);
            }
        }
        self.store
            .ingest_requests(
                stream,
                &self.source,
                &events,
                &cancelled,
                cursor,
                crate::domain::now_ms(),
            )
            .await
    }

    async fn checkpoints(&self, stream: &str, from: u64) -> Result<Vec<Cursor>, StoreError> {
        self.store.checkpoints(stream, from).await
    }

    async fn rewind(
        &self,
        stream: &str,
        above: u64,
        cursor: Option<Cursor>,
    ) -> Result<u64, StoreError> {
        self.store.rewind(stream, &self.source, above, cursor).await
    }
}

/// Cancels job `key` through the state machine, in `tx` (nothing if there is no such job or it
/// is cancelled already).
pub(super) async fn cancel_in(
    tx: &mut sqlx::AnyConnection,
    key: &JobKey,
    now_ms: u64,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT state, attempts FROM jobs WHERE source = $1 AND job_id = $2")
        .bind(key.source.to_string())
        .bind(key.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(()) };
    let state: String = row.try_get("state")?;
    let status = JobStatus {
        state: crate::domain::JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state:?}")))?,
        attempts: u32::try_from(get_u64(&row, "attempts")?).unwrap_or(u32::MAX),
    };
    // Already cancelled: nothing to do.
    let Ok(change) = apply(&status, &Input::Cancel, now_ms, &Policy::default()) else {
        return Ok(());
    };
    sqlx::query(
        "UPDATE jobs SET state = $1, lease_until = 0, updated_at = $2
         WHERE source = $3 AND job_id = $4 AND state = $5",
    )
    .bind(change.state.as_str())
    .bind(int(now_ms)?)
    .bind(key.source.to_string())
    .bind(key.id.as_str())
    .bind(status.state.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
