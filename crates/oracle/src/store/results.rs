//! `EstuaryOracle` store jobs waiting for their deals, and the results sent for them
//! (`deals::store_jobs`).

use sqlx::Row;

use super::{Store, StoreError, get_u64, int, jobs::key_of};
use crate::domain::{JobKey, JobSource, JobState};

/// A store job pinned and packed (its pin reported: its piece may be bucketed), with no result
/// sent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreJob {
    /// Its key.
    pub key: JobKey,
    /// Its piece (v2).
    pub piece_cid: String,
    /// The piece's padded size.
    pub padded_size: u64,
    /// Active deals it asks for.
    pub replicas: u16,
}

impl Store {
    /// Up to `limit` store jobs of `source` that are pinned and have no result sent, oldest
    /// first.
    pub async fn store_jobs_waiting(
        &self,
        source: &JobSource,
        limit: u64,
    ) -> Result<Vec<StoreJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.source, j.job_id, j.piece_cid, j.padded_size, j.store_replicas FROM jobs j
             WHERE j.source = $1 AND j.state = $2 AND j.store_replicas IS NOT NULL
               AND j.piece_cid IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM store_results r
                               WHERE r.source = j.source AND r.job_id = j.job_id)
             ORDER BY j.seq LIMIT $3",
        )
        .bind(source.to_string())
        .bind(JobState::Reported.as_str())
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoreJob {
                    key: key_of(r)?,
                    piece_cid: r.try_get("piece_cid")?,
                    padded_size: get_u64(r, "padded_size")?,
                    replicas: u16::try_from(get_u64(r, "store_replicas")?)
                        .map_err(|_| StoreError::Corrupt("store_replicas".into()))?,
                })
            })
            .collect()
    }

    /// Records the result sent for store job `key` (`deals`: the deals, or the failure's
    /// reason); once. A job answered with a failure is not kept: it is cancelled (its content
    /// unpinned unless another pin holds it), since its consumer was told it is not stored.
    pub async fn store_result_sent(
        &self,
        key: &JobKey,
        ok: bool,
        deals: &str,
        tx_hash: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO store_results (source, job_id, ok, deals, tx_hash, sent_ms)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(key.source.to_string())
        .bind(key.id.as_str())
        .bind(i64::from(ok))
        .bind(deals)
        .bind(tx_hash)
        .bind(int(now_ms)?)
        .execute(&mut *tx)
        .await?;
        if !ok {
            super::requests::cancel_in(&mut tx, key, now_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
