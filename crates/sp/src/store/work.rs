//! Work taken: its state (through the machine only), the facts each step learned, retries.

use alloy::primitives::{Address, B256, U256};
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, get_u64, int, opt_u64, parsed};
use crate::domain::{
    Deal, Load, WorkKind, WorkState,
    work::{Input, Refused, apply},
};

/// Work to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWork {
    /// Slot or proposal.
    pub kind: WorkKind,
    /// The contract.
    pub contract: Address,
    /// The order id or proposal id (the lead's reference).
    pub reference: String,
    /// The piece, v1, as the deal names it.
    pub piece_cid: String,
    /// The deal's padded piece size.
    pub padded_size: u64,
    /// The CAR's size.
    pub car_size: u64,
    /// Where to download the CAR from, in order of preference.
    pub origins: Vec<String>,
    /// A proposal's id (slots learn theirs from the claim).
    pub proposal_id: Option<B256>,
    /// The deal's start and end epochs, when known now (proposals).
    pub start_epoch: Option<u64>,
    /// See `start_epoch`.
    pub end_epoch: Option<u64>,
    /// The provider collateral to offer (slots) or offered (proposals).
    pub collateral: U256,
}

/// A piece of work as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Work {
    /// Its id.
    pub id: i64,
    /// Slot or proposal.
    pub kind: WorkKind,
    /// The contract.
    pub contract: Address,
    /// Order id or proposal id.
    pub reference: String,
    /// Where it is.
    pub state: WorkState,
    /// The piece (v1).
    pub piece_cid: String,
    /// The deal's padded piece size.
    pub padded_size: u64,
    /// The CAR's size.
    pub car_size: u64,
    /// Download locations.
    pub origins: Vec<String>,
    /// Provider collateral (attoFIL, decimal).
    #[serde(serialize_with = "decimal")]
    pub collateral: U256,
    /// The deal offer's id.
    pub proposal_id: Option<B256>,
    /// Slot: the claim's deadline.
    pub deadline: Option<u64>,
    /// The deal's start epoch.
    pub start_epoch: Option<u64>,
    /// The deal's end epoch.
    pub end_epoch: Option<u64>,
    /// The market's deal ID.
    pub deal_id: Option<u64>,
    /// Whether it was handed over as a deal made without the market (no deal ID).
    pub direct: bool,
    /// The sector holding it.
    pub sector: Option<u64>,
    /// Slot: the bounty streams from this epoch.
    pub pay_start: Option<u64>,
    /// Bytes downloaded over the network for it.
    pub bytes_fetched: u64,
    /// Bounty collected so far (attoFIL, decimal).
    #[serde(serialize_with = "decimal")]
    pub collected: U256,
    /// Epoch of the last collection.
    pub last_collect: u64,
    /// Failed attempts at the current step.
    pub attempts: u32,
    /// Not before this (ms since the epoch).
    pub next_try_ms: u64,
    /// The last failure or the reason it ended.
    pub reason: Option<String>,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
}

fn decimal<S: serde::Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

impl Work {
    /// The order id of slot work.
    pub fn order(&self) -> Option<u64> {
        (self.kind == WorkKind::Slot).then(|| self.reference.parse().ok()).flatten()
    }

    /// The proposal id of proposal work.
    pub fn proposal(&self) -> Option<B256> {
        (self.kind == WorkKind::Proposal).then(|| self.reference.parse().ok()).flatten()
    }

    /// The deal it was handed over as, once published (or handed over as a direct deal).
    pub fn deal(&self) -> Option<Deal> {
        match (self.deal_id, self.direct) {
            (Some(id), _) => Some(Deal::Market(id)),
            (None, true) => Some(Deal::Direct),
            (None, false) => None,
        }
    }

    /// Its deal as listed: the market's deal ID, `direct`, or `-` (none yet).
    pub fn deal_text(&self) -> String {
        match self.deal() {
            Some(Deal::Market(id)) => id.to_string(),
            Some(Deal::Direct) => "direct".to_owned(),
            None => "-".to_owned(),
        }
    }

    /// A name for logs and ledger keys: `slot/<contract>/<order>#<id>`.
    pub fn key(&self) -> String {
        format!("{}/{:#x}/{}#{}", self.kind.as_str(), self.contract, self.reference, self.id)
    }
}

fn work(row: &sqlx::sqlite::SqliteRow) -> Result<Work, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let contract: String = row.try_get("contract")?;
    let origins: String = row.try_get("origins")?;
    let collateral: Option<String> = row.try_get("collateral")?;
    let proposal: Option<String> = row.try_get("proposal_id")?;
    let collected: String = row.try_get("collected")?;
    Ok(Work {
        id: row.try_get("id")?,
        kind: WorkKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
        contract: parsed(&contract, "contract")?,
        reference: row.try_get("ref")?,
        state: WorkState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?,
        piece_cid: row.try_get("piece_cid")?,
        padded_size: get_u64(row, "padded_size")?,
        car_size: get_u64(row, "car_size")?,
        origins: serde_json::from_str(&origins)
            .map_err(|_| StoreError::Corrupt(format!("origins {origins:?}")))?,
        collateral: collateral.map_or(Ok(U256::ZERO), |c| parsed(&c, "collateral"))?,
        proposal_id: proposal.map(|p| parsed(&p, "proposal id")).transpose()?,
        deadline: opt_u64(row, "deadline")?,
        start_epoch: opt_u64(row, "start_epoch")?,
        end_epoch: opt_u64(row, "end_epoch")?,
        deal_id: opt_u64(row, "deal_id")?,
        direct: get_u64(row, "direct")? != 0,
        sector: opt_u64(row, "sector")?,
        pay_start: opt_u64(row, "pay_start")?,
        bytes_fetched: get_u64(row, "bytes_fetched")?,
        collected: parsed(&collected, "collected")?,
        last_collect: get_u64(row, "last_collect")?,
        attempts: u32::try_from(get_u64(row, "attempts")?).unwrap_or(u32::MAX),
        next_try_ms: get_u64(row, "next_try_ms")?,
        reason: row.try_get("reason")?,
        created_ms: get_u64(row, "created_ms")?,
        updated_ms: get_u64(row, "updated_ms")?,
    })
}

/// Why a transition was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The machine refuses it (a bug, or work another step already moved).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The work is no longer in the state the change was computed from.
    #[error("work {id} is no longer {from:?}")]
    Stale {
        /// The work.
        id: i64,
        /// The state assumed.
        from: WorkState,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for TransitionError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl Store {
    pub(super) async fn insert_work(
        tx: &mut sqlx::SqliteConnection,
        w: &NewWork,
        now_ms: u64,
    ) -> Result<Option<i64>, StoreError> {
        let done = sqlx::query(
            "INSERT INTO work (kind, contract, ref, state, piece_cid, padded_size, car_size, origins,
                               collateral, proposal_id, start_epoch, end_epoch, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
             ON CONFLICT DO NOTHING",
        )
        .bind(w.kind.as_str())
        .bind(format!("{:#x}", w.contract))
        .bind(&w.reference)
        .bind(w.kind.first_state().as_str())
        .bind(&w.piece_cid)
        .bind(int(w.padded_size)?)
        .bind(int(w.car_size)?)
        .bind(serde_json::json!(w.origins).to_string())
        .bind(w.collateral.to_string())
        .bind(w.proposal_id.map(|p| format!("{p:#x}")))
        .bind(w.start_epoch.map(int).transpose()?)
        .bind(w.end_epoch.map(int).transpose()?)
        .bind(int(now_ms)?)
        .execute(&mut *tx)
        .await?;
        Ok((done.rows_affected() == 1).then(|| done.last_insert_rowid()))
    }

    /// One piece of work.
    pub async fn work(&self, id: i64) -> Result<Option<Work>, StoreError> {
        sqlx::query("SELECT * FROM work WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(work)
            .transpose()
    }

    /// Work in any of `states` (every state if empty), newest first.
    pub async fn works(&self, states: &[WorkState], limit: u32) -> Result<Vec<Work>, StoreError> {
        let all: Vec<WorkState> =
            if states.is_empty() { WorkState::ALL.to_vec() } else { states.to_vec() };
        let list: Vec<String> = all.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let rows = sqlx::query(&format!(
            "SELECT * FROM work WHERE state IN ({}) ORDER BY id DESC LIMIT $1",
            list.join(", ")
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(work).collect()
    }

    /// Work that is not over, oldest first.
    pub async fn live_works(&self) -> Result<Vec<Work>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM work WHERE state NOT IN ('ended', 'failed') ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(work).collect()
    }

    /// The live work for a lead, if any.
    pub async fn live_work_for(
        &self,
        kind: WorkKind,
        contract: Address,
        reference: &str,
    ) -> Result<Option<Work>, StoreError> {
        sqlx::query(
            "SELECT * FROM work WHERE kind = $1 AND contract = $2 AND ref = $3
                                AND state NOT IN ('ended', 'failed')",
        )
        .bind(kind.as_str())
        .bind(format!("{contract:#x}"))
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(work)
        .transpose()
    }

    /// How many of a slot lead's latest pieces of work, in a row, were refused claims (work
    /// that failed without ever being claimed: no deadline). Only slots are claimed.
    pub async fn refusals_in_a_row(
        &self,
        contract: Address,
        reference: &str,
    ) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM work
             WHERE kind = 'slot' AND contract = $1 AND ref = $2
               AND state = 'failed' AND deadline IS NULL
               AND id > COALESCE((SELECT MAX(id) FROM work
                                  WHERE kind = 'slot' AND contract = $1 AND ref = $2
                                    AND (state <> 'failed' OR deadline IS NOT NULL)), 0)",
        )
        .bind(format!("{contract:#x}"))
        .bind(reference)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(get_u64(&row, "n")?).unwrap_or(u32::MAX))
    }

    /// The most recent failed work for a lead (to avoid taking the same bad offer again).
    pub async fn last_failure_for(
        &self,
        kind: WorkKind,
        contract: Address,
        reference: &str,
    ) -> Result<Option<Work>, StoreError> {
        sqlx::query(
            "SELECT * FROM work WHERE kind = $1 AND contract = $2 AND ref = $3 AND state = 'failed'
             ORDER BY id DESC LIMIT 1",
        )
        .bind(kind.as_str())
        .bind(format!("{contract:#x}"))
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(work)
        .transpose()
    }

    /// Applies `input` to work `id` assumed to be `from` (through the machine), storing the
    /// facts it carries; a compare-and-set on `from`. Attempts reset with every change.
    pub async fn transition(
        &self,
        id: i64,
        kind: WorkKind,
        from: WorkState,
        input: &Input,
        now_ms: u64,
    ) -> Result<WorkState, TransitionError> {
        let to = apply(kind, from, input)?;
        let (deadline, proposal, deal, sector, pay_start) = match input {
            Input::Claimed { deadline, proposal_id } => {
                (Some(*deadline), Some(format!("{proposal_id:#x}")), None, None, None)
            }
            Input::Published { deal } => (None, None, Some(*deal), None, None),
            Input::Activated { sector } => (None, None, None, *sector, None),
            Input::Proven { start } => (None, None, None, None, Some(*start)),
            _ => (None, None, None, None, None),
        };
        let done = sqlx::query(
            "UPDATE work SET state = $1, attempts = 0, next_try_ms = 0, updated_ms = $2,
                    reason = COALESCE($3, reason),
                    deadline = COALESCE($4, deadline), start_epoch = COALESCE($4, start_epoch),
                    proposal_id = COALESCE($5, proposal_id), deal_id = COALESCE($6, deal_id),
                    sector = COALESCE($7, sector), pay_start = COALESCE($8, pay_start),
                    direct = MAX(direct, $11)
             WHERE id = $9 AND state = $10",
        )
        .bind(to.as_str())
        .bind(int(now_ms)?)
        .bind(input.reason())
        .bind(deadline.map(int).transpose()?)
        .bind(proposal)
        .bind(deal.and_then(Deal::market_id).map(int).transpose()?)
        .bind(sector.map(int).transpose()?)
        .bind(pay_start.map(int).transpose()?)
        .bind(id)
        .bind(from.as_str())
        .bind(i64::from(deal == Some(Deal::Direct)))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(TransitionError::Stale { id, from });
        }
        Ok(to)
    }

    /// Records a failed attempt at work `id`'s current step: its reason, and not before
    /// `next_try_ms`. Returns the attempts so far.
    pub async fn record_attempt(
        &self,
        id: i64,
        reason: &str,
        next_try_ms: u64,
        now_ms: u64,
    ) -> Result<u32, StoreError> {
        let row = sqlx::query(
            "UPDATE work SET attempts = attempts + 1, reason = $1, next_try_ms = $2, updated_ms = $3
             WHERE id = $4 RETURNING attempts",
        )
        .bind(reason)
        .bind(int(next_try_ms)?)
        .bind(int(now_ms)?)
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(get_u64(&row, "attempts")?).unwrap_or(u32::MAX))
    }

    /// Puts work off until `next_try_ms` without counting a failure (waiting for a block).
    pub async fn defer(&self, id: i64, next_try_ms: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE work SET next_try_ms = $1 WHERE id = $2")
            .bind(int(next_try_ms)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds `bytes` downloaded for work `id`.
    pub async fn add_fetched(&self, id: i64, bytes: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE work SET bytes_fetched = bytes_fetched + $1 WHERE id = $2")
            .bind(int(bytes)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a collection: `amount` more paid, at `epoch`.
    pub async fn add_collected(&self, id: i64, amount: U256, epoch: u64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT collected FROM work WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let before: String = row.try_get("collected")?;
        let total = parsed::<U256>(&before, "collected")?.saturating_add(amount);
        sqlx::query("UPDATE work SET collected = $1, last_collect = $2 WHERE id = $3")
            .bind(total.to_string())
            .bind(int(epoch)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What is on the provider's hands: padded bytes of work not yet active, and CAR bytes
    /// still to download for it.
    pub async fn load(&self) -> Result<Load, StoreError> {
        let rows = sqlx::query(
            "SELECT state, padded_size, car_size, bytes_fetched FROM work
             WHERE state IN ('claiming', 'fetching', 'sealing', 'activating', 'proving')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut load = Load::default();
        for r in &rows {
            load.in_flight_bytes = load.in_flight_bytes.saturating_add(get_u64(r, "padded_size")?);
            let state: String = r.try_get("state")?;
            if state == "claiming" || state == "fetching" {
                let left = get_u64(r, "car_size")?.saturating_sub(get_u64(r, "bytes_fetched")?);
                load.bytes_to_fetch = load.bytes_to_fetch.saturating_add(left);
            }
        }
        Ok(load)
    }

    /// Work by kind and state, for status and metrics.
    pub async fn work_counts(&self) -> Result<Vec<(WorkKind, WorkState, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, state, COUNT(*) AS n FROM work GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                let state: String = r.try_get("state")?;
                Ok((
                    WorkKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
                    WorkState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?,
                    get_u64(r, "n")?,
                ))
            })
            .collect()
    }

    /// Totals for metrics: bytes downloaded and bounty collected over all work.
    pub async fn totals(&self) -> Result<(u64, U256), StoreError> {
        let rows =
            sqlx::query("SELECT bytes_fetched, collected FROM work").fetch_all(&self.pool).await?;
        let mut bytes = 0u64;
        let mut collected = U256::ZERO;
        for r in &rows {
            bytes = bytes.saturating_add(get_u64(r, "bytes_fetched")?);
            let c: String = r.try_get("collected")?;
            collected = collected.saturating_add(parsed(&c, "collected")?);
        }
        Ok((bytes, collected))
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256, U256};
    use estuary_chain::Cursor;

    use super::*;
    use crate::store::{Decision, LeadEvent};

    /// Refused claims in a row are counted; a claim that went through starts the count again.
    #[tokio::test]
    async fn refusals_in_a_row_count_refused_claims_since_the_last_claim() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sp.sqlite")).await.unwrap();
        let contract = Address::repeat_byte(1);
        let mut block = 0;
        let mut take = async |store: &Store| {
            block += 1;
            let event = LeadEvent {
                kind: WorkKind::Slot,
                contract,
                reference: "7".into(),
                block,
                settled: None,
            };
            let at = Cursor { block_number: block, block_hash: B256::repeat_byte(block as u8) };
            store.ingest_leads("slots", &[event], at, block).await.unwrap();
            let lead = store.pending_leads(u64::MAX >> 1, 10).await.unwrap().remove(0);
            let work = NewWork {
                kind: WorkKind::Slot,
                contract,
                reference: "7".into(),
                piece_cid: "baga6ea4seaq".into(),
                padded_size: 2048,
                car_size: 2000,
                origins: Vec::new(),
                proposal_id: None,
                start_epoch: None,
                end_epoch: None,
                collateral: U256::ZERO,
            };
            store.decide(&lead, &Decision::Take(work), None, block).await.unwrap().unwrap()
        };
        let count = async |store: &Store| store.refusals_in_a_row(contract, "7").await.unwrap();
        let refused = Input::ClaimRefused { reason: "NotController".into() };
        assert_eq!(count(&store).await, 0);
        for n in 1..=2 {
            let id = take(&store).await;
            store.transition(id, WorkKind::Slot, WorkState::Claiming, &refused, 1).await.unwrap();
            assert_eq!(count(&store).await, n);
        }
        // A claim that went through, then given up: the refusals before it no longer count.
        let id = take(&store).await;
        let claimed = Input::Claimed { deadline: 100, proposal_id: B256::repeat_byte(3) };
        store.transition(id, WorkKind::Slot, WorkState::Claiming, &claimed, 2).await.unwrap();
        let abandon = Input::Abandon { reason: "bad origin".into() };
        store.transition(id, WorkKind::Slot, WorkState::Fetching, &abandon, 3).await.unwrap();
        store
            .transition(id, WorkKind::Slot, WorkState::Releasing, &Input::Released, 4)
            .await
            .unwrap();
        assert_eq!(count(&store).await, 0);
        let id = take(&store).await;
        store.transition(id, WorkKind::Slot, WorkState::Claiming, &refused, 5).await.unwrap();
        assert_eq!(count(&store).await, 1);
        assert_eq!(count_other(&store).await, 0);

        async fn count_other(store: &Store) -> u32 {
            store.refusals_in_a_row(Address::repeat_byte(2), "7").await.unwrap()
        }
    }
}
