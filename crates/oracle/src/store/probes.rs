//! Retrieval probes and what is kept for them (migrations 0018 / pg 0016):
//! - `piece_levels`: one level of each ordered piece's tree ([`PieceLevels`], at most 128 KiB
//!   a piece), made once from the hot copy and kept after it is dropped, deleted once no order
//!   of the piece may hold deals;
//! - `replica_probes`: one row per probed replica (its deal id): the last probe, failures in a
//!   row, totals, and when it was found lost;
//! - `probes`: each replica's last [`KEPT`] probes (block, result, latency, bytes, error), what
//!   a provider's score is computed from; older ones are deleted as new ones come, and all
//!   once they weigh next to nothing;
//! - `provider_overrides`: providers the operator suspended.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, get_u64, int, opt_u64};
use crate::domain::{
    deal::OrderState,
    probe::{PieceLevels, ProbeView, after},
    provider::{ProbeSample, ProbeTotals},
};

/// Probes kept per replica.
pub const KEPT: u64 = 32;

/// One probe, as the prober made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// The replica's deal: the market deal's id, or a direct deal's key
    /// ([`crate::domain::deal::Replica::probe_key`]).
    pub deal_id: u64,
    /// Its provider.
    pub provider: u64,
    /// The deal's piece (v2).
    pub piece_cid: String,
    /// The chain's head when it was made (what scores decay by).
    pub block: u64,
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// Whether the span read was the piece's (what the replica's view counts).
    pub ok: bool,
    /// Whether the root block read was its CID's, or none was read (a provider need not serve
    /// the gateway: a failed block read weighs in its score, not the replica's standing).
    pub block_ok: bool,
    /// From the request to the last byte checked.
    pub latency_ms: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A provider the operator set apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderOverride {
    /// The miner actor id.
    pub provider: u64,
    /// Not chosen for new deals (its deals are kept and probed).
    pub suspended: bool,
    /// The operator's note.
    pub note: Option<String>,
    /// When it was set (ms since the epoch).
    pub updated_ms: u64,
}

fn view_from_row(row: &sqlx::any::AnyRow) -> Result<ProbeView, StoreError> {
    Ok(ProbeView {
        last_probe: get_u64(row, "last_probe_ms")?,
        last_probe_ok: get_u64(row, "last_ok")? != 0,
        failures_in_a_row: u32::try_from(get_u64(row, "failures_in_a_row")?).unwrap_or(u32::MAX),
        oks_in_a_row: u32::try_from(get_u64(row, "oks_in_a_row")?).unwrap_or(u32::MAX),
        probes_ok: get_u64(row, "probes_ok")?,
        probes_failed: get_u64(row, "probes_failed")?,
        lost_at: opt_u64(row, "lost_at_ms")?,
    })
}

impl Store {
    /// The kept levels of `piece`, if made.
    pub async fn piece_levels(&self, piece: &str) -> Result<Option<PieceLevels>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT level, payload_size, padded_size, nodes FROM piece_levels
             WHERE piece_cid = $1",
        )
        .bind(piece)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let nodes: Vec<u8> = row.try_get("nodes")?;
        let level = u32::try_from(get_u64(&row, "level")?).unwrap_or(u32::MAX);
        PieceLevels::from_parts(
            level,
            get_u64(&row, "payload_size")?,
            get_u64(&row, "padded_size")?,
            &nodes,
        )
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("piece_levels of {piece}: not whole nodes")))
    }

    /// Keeps `levels` of `piece` (the first made stands); failed attempts at it are forgotten.
    pub async fn put_piece_levels(
        &self,
        piece: &str,
        levels: &PieceLevels,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM piece_level_attempts WHERE piece_cid = $1")
            .bind(piece)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO piece_levels (piece_cid, level, payload_size, padded_size, nodes)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(piece)
        .bind(i64::from(levels.level))
        .bind(int(levels.payload_size)?)
        .bind(int(levels.padded_size)?)
        .bind(levels.nodes_bytes())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The probe views of `deal_ids` that were probed.
    pub async fn probe_views(
        &self,
        deal_ids: &[u64],
    ) -> Result<HashMap<u64, ProbeView>, StoreError> {
        let mut out = HashMap::new();
        for chunk in deal_ids.chunks(500) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT deal_id, last_probe_ms, last_ok, failures_in_a_row, oks_in_a_row,
                        probes_ok, probes_failed, lost_at_ms
                 FROM replica_probes WHERE deal_id IN ({})",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(int(*id)?);
            }
            for row in &query.fetch_all(&self.pool).await? {
                out.insert(get_u64(row, "deal_id")?, view_from_row(row)?);
            }
        }
        Ok(out)
    }

    /// Records `probe` and returns its replica's view after it (lost once `lost_after` probes
    /// in a row failed). Keeps the replica's last [`KEPT`] probes.
    pub async fn record_probe(
        &self,
        probe: &ProbeRecord,
        lost_after: u32,
    ) -> Result<ProbeView, StoreError> {
        // Written first, so that on SQLite the transaction holds the write lock before it
        // reads (a read first could not be upgraded if another writer came between).
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO probes (deal_id, at_ms, provider, block_number, ok, latency_ms, bytes,
               error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(int(probe.deal_id)?)
        .bind(int(probe.at_ms)?)
        .bind(int(probe.provider)?)
        .bind(int(probe.block)?)
        .bind(i64::from(probe.ok && probe.block_ok))
        .bind(int(probe.latency_ms)?)
        .bind(int(probe.bytes)?)
        .bind(probe.error.as_deref())
        .execute(&mut *tx)
        .await?;
        let prev = sqlx::query(
            "SELECT last_probe_ms, last_ok, failures_in_a_row, oks_in_a_row, probes_ok,
                    probes_failed, lost_at_ms
             FROM replica_probes WHERE deal_id = $1",
        )
        .bind(int(probe.deal_id)?)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| view_from_row(&row))
        .transpose()?;
        let view = after(prev.as_ref(), probe.ok, probe.at_ms, lost_after);
        let lost_at = view.lost_at.map(int).transpose()?;
        sqlx::query(
            "INSERT INTO replica_probes (deal_id, provider, piece_cid, last_probe_ms, last_ok,
               failures_in_a_row, probes_ok, probes_failed, lost_at_ms, last_error,
               oks_in_a_row)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (deal_id) DO UPDATE SET last_probe_ms = $4, last_ok = $5,
               failures_in_a_row = $6, probes_ok = $7, probes_failed = $8, lost_at_ms = $9,
               last_error = $10, oks_in_a_row = $11",
        )
        .bind(int(probe.deal_id)?)
        .bind(int(probe.provider)?)
        .bind(probe.piece_cid.as_str())
        .bind(int(view.last_probe)?)
        .bind(i64::from(view.last_probe_ok))
        .bind(i64::from(view.failures_in_a_row))
        .bind(int(view.probes_ok)?)
        .bind(int(view.probes_failed)?)
        .bind(lost_at)
        .bind(probe.error.as_deref())
        .bind(i64::from(view.oks_in_a_row))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM probes WHERE deal_id = $1 AND at_ms < (
               SELECT MIN(at_ms) FROM (SELECT at_ms FROM probes WHERE deal_id = $1
                                       ORDER BY at_ms DESC LIMIT $2) AS recent)",
        )
        .bind(int(probe.deal_id)?)
        .bind(int(KEPT)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(view)
    }

    /// The probes kept (each replica's last [`KEPT`]) made at or after block `since`, what
    /// scores are computed from.
    pub async fn probe_samples(&self, since: u64) -> Result<Vec<ProbeSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, block_number, ok, latency_ms FROM probes WHERE block_number >= $1",
        )
        .bind(int(since)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProbeSample {
                    provider: get_u64(r, "provider")?,
                    block: get_u64(r, "block_number")?,
                    ok: get_u64(r, "ok")? != 0,
                    latency_ms: get_u64(r, "latency_ms")?,
                })
            })
            .collect()
    }

    /// Up to `limit` pieces of orders that may still hold deals (sending or open) whose levels
    /// are not made yet and not waiting after a failed attempt at `now_ms`, the oldest order
    /// first.
    pub async fn pieces_without_levels(
        &self,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.piece_cid, MIN(o.created_ms) AS since FROM deal_orders o
             WHERE o.state IN ($1, $2)
               AND NOT EXISTS (SELECT 1 FROM piece_levels l WHERE l.piece_cid = o.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM piece_level_attempts a
                               WHERE a.piece_cid = o.piece_cid AND a.next_try_ms > $4)
             GROUP BY o.piece_cid ORDER BY since, o.piece_cid LIMIT $3",
        )
        .bind(OrderState::Sending.as_str())
        .bind(OrderState::Open.as_str())
        .bind(i64::from(limit))
        .bind(int(now_ms)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("piece_cid")?)).collect()
    }

    /// Records a failed attempt at `piece`'s levels at `now_ms`: it waits `backoff(attempts
    /// before)` ms. Returns the attempts so far.
    pub async fn level_attempt(
        &self,
        piece: &str,
        now_ms: u64,
        why: &str,
        backoff: impl Fn(u32) -> u64,
    ) -> Result<u32, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Written first (the write lock before the read, on SQLite).
        sqlx::query(
            "INSERT INTO piece_level_attempts (piece_cid, attempts, next_try_ms, error)
             VALUES ($1, 0, 0, $2) ON CONFLICT (piece_cid) DO UPDATE SET error = $2",
        )
        .bind(piece)
        .bind(why)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT attempts FROM piece_level_attempts WHERE piece_cid = $1")
            .bind(piece)
            .fetch_one(&mut *tx)
            .await?;
        let before = u32::try_from(get_u64(&row, "attempts")?).unwrap_or(u32::MAX);
        sqlx::query(
            "UPDATE piece_level_attempts SET attempts = $2, next_try_ms = $3 WHERE piece_cid = $1",
        )
        .bind(piece)
        .bind(i64::from(before.saturating_add(1)))
        .bind(int(now_ms.saturating_add(backoff(before)).min(i64::MAX as u64))?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(before.saturating_add(1))
    }

    /// Deletes what probes no longer need: probes made before block `before` (they weigh next
    /// to nothing in a score) and the levels (and attempts at them) of pieces no order may
    /// hold deals of. A replica's row (one a deal: its totals, and whether it was lost) is
    /// kept, like its deal's events. Returns the rows deleted.
    pub async fn prune_probes(&self, before: u64) -> Result<u64, StoreError> {
        let probes = sqlx::query("DELETE FROM probes WHERE block_number < $1")
            .bind(int(before)?)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let mut unordered = 0;
        for table in ["piece_levels", "piece_level_attempts", "cold_checks"] {
            // A piece whose blocks are gone keeps its levels: it is read from its providers.
            unordered += sqlx::query(&format!(
                "DELETE FROM {table} WHERE NOT EXISTS (
                   SELECT 1 FROM deal_orders o
                   WHERE o.piece_cid = {table}.piece_cid AND o.state IN ($1, $2))
                 AND NOT EXISTS (SELECT 1 FROM block_pieces c
                                 WHERE c.piece_cid = {table}.piece_cid AND c.cold_ms IS NOT NULL)"
            ))
            .bind(OrderState::Sending.as_str())
            .bind(OrderState::Open.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(probes + unordered + self.prune_cold().await?)
    }

    /// Records that `piece` was read back whole from its providers at `at_ms`.
    pub async fn record_cold_check(&self, piece: &str, at_ms: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cold_checks (piece_cid, checked_ms) VALUES ($1, $2)
             ON CONFLICT (piece_cid) DO UPDATE SET checked_ms = $2",
        )
        .bind(piece)
        .bind(int(at_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `piece` was read back whole at `since_ms` or later.
    pub async fn cold_checked_since(&self, piece: &str, since_ms: u64) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM cold_checks WHERE piece_cid = $1 AND checked_ms >= $2",
        )
        .bind(piece)
        .bind(int(since_ms)?)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Each probed provider's totals.
    pub async fn probe_totals(&self) -> Result<BTreeMap<u64, ProbeTotals>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, CAST(SUM(probes_ok) AS BIGINT) AS ok,
                    CAST(SUM(probes_failed) AS BIGINT) AS failed,
                    CAST(SUM(CASE WHEN lost_at_ms IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS lost
             FROM replica_probes GROUP BY provider",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    get_u64(r, "provider")?,
                    ProbeTotals {
                        ok: opt_u64(r, "ok")?.unwrap_or(0),
                        failed: opt_u64(r, "failed")?.unwrap_or(0),
                        lost: opt_u64(r, "lost")?.unwrap_or(0),
                    },
                ))
            })
            .collect()
    }

    /// Suspends `provider` (no new deals) or resumes it.
    pub async fn set_suspended(
        &self,
        provider: u64,
        suspended: bool,
        note: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO provider_overrides (provider, suspended, note, updated_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider) DO UPDATE SET suspended = $2, note = $3, updated_ms = $4",
        )
        .bind(int(provider)?)
        .bind(i64::from(suspended))
        .bind(note)
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every provider the operator set apart (suspended or resumed).
    pub async fn provider_overrides(&self) -> Result<Vec<ProviderOverride>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, suspended, note, updated_ms FROM provider_overrides
             ORDER BY provider",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderOverride {
                    provider: get_u64(r, "provider")?,
                    suspended: get_u64(r, "suspended")? != 0,
                    note: r.try_get("note")?,
                    updated_ms: get_u64(r, "updated_ms")?,
                })
            })
            .collect()
    }

    /// The providers suspended now.
    pub async fn suspended_providers(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .provider_overrides()
            .await?
            .into_iter()
            .filter(|o| o.suspended)
            .map(|o| o.provider)
            .collect())
    }
}
