//! Offers seen on chain, the watchers' cursors and checkpoints, and the evaluator's decisions.

use alloy::primitives::{Address, B256};
use estuary_chain::Cursor;
use serde::Serialize;
use sqlx::Row;

use super::{NewWork, Store, StoreError, get_u64, int, parsed};
use crate::domain::{Skip, WorkKind};

/// How many checkpoints a stream keeps: enough to find any reorg the watcher looks for.
const CHECKPOINT_SPAN: u64 = estuary_chain::watcher::MAX_REORG_DEPTH * 2;

/// What an event says about an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadEvent {
    /// Slot (an order) or proposal.
    pub kind: WorkKind,
    /// The contract.
    pub contract: Address,
    /// The order id (decimal) or proposal id (0x…).
    pub reference: String,
    /// The event's block.
    pub block: u64,
    /// A decision the event alone settles (a proposal naming another miner): stored as the
    /// lead's decision, with nothing to evaluate and nothing downloaded.
    pub settled: Option<Skip>,
}

/// An offer seen on chain, and the last decision about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lead {
    /// Slot or proposal.
    pub kind: WorkKind,
    /// The contract.
    pub contract: Address,
    /// The order id or proposal id.
    pub reference: String,
    /// First and last block it was mentioned in.
    pub first_block: u64,
    /// See `first_block`.
    pub last_block: u64,
    /// Bumped by every event: a decision taken on an older version is not final.
    pub version: u64,
    /// `taken`, `skipped`, or none yet.
    pub decision: Option<String>,
    /// The skip's code.
    pub reason_code: Option<String>,
    /// Why it was skipped (or what happened to it).
    pub reason: Option<String>,
    /// Last decision, ms since the epoch.
    pub updated_ms: u64,
}

impl Lead {
    /// The order id of a slot lead.
    pub fn order(&self) -> Option<u64> {
        (self.kind == WorkKind::Slot).then(|| self.reference.parse().ok()).flatten()
    }

    /// The proposal id of a proposal lead.
    pub fn proposal(&self) -> Option<B256> {
        (self.kind == WorkKind::Proposal).then(|| self.reference.parse().ok()).flatten()
    }
}

fn lead(row: &sqlx::sqlite::SqliteRow) -> Result<Lead, StoreError> {
    let kind: String = row.try_get("kind")?;
    let contract: String = row.try_get("contract")?;
    Ok(Lead {
        kind: WorkKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
        contract: parsed(&contract, "contract")?,
        reference: row.try_get("ref")?,
        first_block: get_u64(row, "first_block")?,
        last_block: get_u64(row, "last_block")?,
        version: get_u64(row, "version")?,
        decision: row.try_get("decision")?,
        reason_code: row.try_get("reason_code")?,
        reason: row.try_get("reason")?,
        updated_ms: get_u64(row, "updated_ms")?,
    })
}

fn cursor_of(row: &sqlx::sqlite::SqliteRow) -> Result<Cursor, StoreError> {
    let hash: String = row.try_get("block_hash")?;
    Ok(Cursor { block_number: get_u64(row, "block_number")?, block_hash: parsed(&hash, "hash")? })
}

/// The decision the evaluator came to.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Take it: this work starts.
    Take(NewWork),
    /// Skip it, for this reason.
    Skip(Skip),
    /// Nothing to decide now (work for it is live, or it is ours already); say why.
    Note(String),
}

impl Store {
    /// Where `stream` has been read up to.
    pub async fn cursor(&self, stream: &str) -> Result<Option<Cursor>, StoreError> {
        sqlx::query("SELECT block_number, block_hash FROM cursors WHERE stream = $1")
            .bind(stream)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(cursor_of)
            .transpose()
    }

    /// Every stream's cursor.
    pub async fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows =
            sqlx::query("SELECT stream, block_number, block_hash FROM cursors ORDER BY stream")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("stream")?, cursor_of(r)?.block_number))).collect()
    }

    /// `stream`'s checkpoints at or above `from`.
    pub async fn checkpoints(&self, stream: &str, from: u64) -> Result<Vec<Cursor>, StoreError> {
        let rows = sqlx::query(
            "SELECT block_number, block_hash FROM checkpoints WHERE stream = $1 AND block_number >= $2
             ORDER BY block_number DESC",
        )
        .bind(stream)
        .bind(int(from)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cursor_of).collect()
    }

    /// Stores what `events` say (each lead marked to evaluate, unless the event settles it) and
    /// moves `stream`'s cursor, keeping it as a checkpoint: one transaction. Returns how many
    /// leads were new.
    pub async fn ingest_leads(
        &self,
        stream: &str,
        events: &[LeadEvent],
        cursor: Cursor,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut new = 0;
        for ev in events {
            let (pending, decision, code, reason) = match &ev.settled {
                Some(skip) => (0, Some("skipped"), Some(skip.code()), Some(skip.to_string())),
                None => (1, None, None, None),
            };
            let done = sqlx::query(
                "INSERT INTO leads (kind, contract, ref, first_block, last_block, pending, decision,
                                    reason_code, reason, updated_ms)
                 VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (kind, contract, ref) DO NOTHING",
            )
            .bind(ev.kind.as_str())
            .bind(format!("{:#x}", ev.contract))
            .bind(&ev.reference)
            .bind(int(ev.block)?)
            .bind(pending)
            .bind(decision)
            .bind(code)
            .bind(reason)
            .bind(int(now_ms)?)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                new += 1;
            } else if ev.settled.is_none() {
                // Something changed about it: look again (an event already stored, re-read after
                // a restart, only costs a look).
                sqlx::query(
                    "UPDATE leads SET pending = 1, retry_ms = 0, version = version + 1,
                            last_block = MAX(last_block, $4)
                     WHERE kind = $1 AND contract = $2 AND ref = $3",
                )
                .bind(ev.kind.as_str())
                .bind(format!("{:#x}", ev.contract))
                .bind(&ev.reference)
                .bind(int(ev.block)?)
                .execute(&mut *tx)
                .await?;
            }
        }
        let hash = format!("{:#x}", cursor.block_hash);
        sqlx::query(
            "INSERT INTO cursors (stream, block_number, block_hash) VALUES ($1, $2, $3)
             ON CONFLICT (stream) DO UPDATE SET block_number = excluded.block_number,
                                                block_hash = excluded.block_hash",
        )
        .bind(stream)
        .bind(int(cursor.block_number)?)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO checkpoints (stream, block_number, block_hash) VALUES ($1, $2, $3)
             ON CONFLICT (stream, block_number) DO UPDATE SET block_hash = excluded.block_hash",
        )
        .bind(stream)
        .bind(int(cursor.block_number)?)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM checkpoints WHERE stream = $1 AND block_number < $2")
            .bind(stream)
            .bind(int(cursor.block_number.saturating_sub(CHECKPOINT_SPAN))?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Undoes a reorg for `stream` (the logs of `contract`): leads mentioned above `above` are
    /// looked at again (the chain is the truth; an order that vanished is skipped as unknown),
    /// checkpoints above it go, and the cursor moves back to `cursor`. Returns how many leads
    /// are to be looked at again.
    pub async fn rewind(
        &self,
        stream: &str,
        contract: Address,
        above: u64,
        cursor: Option<Cursor>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let touched = sqlx::query(
            "UPDATE leads SET pending = 1, retry_ms = 0, version = version + 1
             WHERE contract = $1 AND last_block > $2",
        )
        .bind(format!("{contract:#x}"))
        .bind(int(above)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM checkpoints WHERE stream = $1 AND block_number > $2")
            .bind(stream)
            .bind(int(above)?)
            .execute(&mut *tx)
            .await?;
        match cursor {
            Some(c) => {
                sqlx::query(
                    "INSERT INTO cursors (stream, block_number, block_hash) VALUES ($1, $2, $3)
                     ON CONFLICT (stream) DO UPDATE SET block_number = excluded.block_number,
                                                        block_hash = excluded.block_hash",
                )
                .bind(stream)
                .bind(int(c.block_number)?)
                .bind(format!("{:#x}", c.block_hash))
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM cursors WHERE stream = $1")
                    .bind(stream)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(touched)
    }

    /// Leads to evaluate now, oldest first.
    pub async fn pending_leads(&self, now_ms: u64, limit: u32) -> Result<Vec<Lead>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM leads WHERE pending = 1 AND retry_ms <= $1
             ORDER BY first_block, kind, ref LIMIT $2",
        )
        .bind(int(now_ms)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lead).collect()
    }

    /// Records the decision about `lead` as it was at `lead.version`, and creates the work it
    /// takes: one transaction. If an event came in since (`version` moved on), the lead stays
    /// pending and is looked at again. `retry_ms`: when to look again though nothing changed
    /// (a busy provider). Returns the new work's id, if any was created.
    pub async fn decide(
        &self,
        lead: &Lead,
        decision: &Decision,
        retry_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (name, code, reason) = match decision {
            Decision::Take(_) => ("taken", None, None),
            Decision::Skip(skip) => ("skipped", Some(skip.code()), Some(skip.to_string())),
            Decision::Note(note) => ("taken", None, Some(note.clone())),
        };
        let pending = i64::from(retry_ms.is_some());
        let updated = sqlx::query(
            "UPDATE leads SET pending = $1, retry_ms = $2, decision = $3, reason_code = $4,
                    reason = $5, updated_ms = $6
             WHERE kind = $7 AND contract = $8 AND ref = $9 AND version = $10",
        )
        .bind(pending)
        .bind(int(retry_ms.unwrap_or(0))?)
        .bind(name)
        .bind(code)
        .bind(reason)
        .bind(int(now_ms)?)
        .bind(lead.kind.as_str())
        .bind(format!("{:#x}", lead.contract))
        .bind(&lead.reference)
        .bind(int(lead.version)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut id = None;
        if let Decision::Take(work) = decision {
            id = Self::insert_work(&mut tx, work, now_ms).await?;
        }
        if updated == 0 {
            // A newer event: whatever was decided stands if it created work (the next look
            // sees the live work), and the lead stays pending.
            sqlx::query(
                "UPDATE leads SET pending = 1 WHERE kind = $1 AND contract = $2 AND ref = $3",
            )
            .bind(lead.kind.as_str())
            .bind(format!("{:#x}", lead.contract))
            .bind(&lead.reference)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Marks a lead to be looked at again (its work ended, say), not before `not_before_ms`.
    pub async fn touch_lead(
        &self,
        kind: WorkKind,
        contract: Address,
        reference: &str,
        not_before_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE leads SET pending = 1, retry_ms = $4, version = version + 1
             WHERE kind = $1 AND contract = $2 AND ref = $3",
        )
        .bind(kind.as_str())
        .bind(format!("{contract:#x}"))
        .bind(reference)
        .bind(int(not_before_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Leads by decision: `skipped` ones with their reasons, newest first.
    pub async fn leads(&self, decision: Option<&str>, limit: u32) -> Result<Vec<Lead>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM leads WHERE ($1 IS NULL OR decision = $1)
             ORDER BY updated_ms DESC, last_block DESC LIMIT $2",
        )
        .bind(decision)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lead).collect()
    }

    /// How many leads were skipped, by reason code.
    pub async fn skip_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT reason_code, COUNT(*) AS n FROM leads WHERE decision = 'skipped'
             GROUP BY reason_code ORDER BY reason_code",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<Option<String>, _>("reason_code")?.unwrap_or_default(),
                    get_u64(r, "n")?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(block: u64) -> Cursor {
        Cursor { block_number: block, block_hash: B256::repeat_byte(block as u8) }
    }

    fn event(contract: Address, reference: &str, block: u64) -> LeadEvent {
        LeadEvent {
            kind: WorkKind::Slot,
            contract,
            reference: reference.to_owned(),
            block,
            settled: None,
        }
    }

    /// A reorg (as the shared watcher reports it through `chain::LeadLogs`): the leads the
    /// dropped blocks mentioned are looked at again, the others and another contract's are not,
    /// the cursor moves back and the dropped checkpoints go; with no block to go back to, the
    /// stream starts again from its start.
    #[tokio::test]
    async fn a_reorg_sends_the_leads_of_dropped_blocks_back_to_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("sp.sqlite")).await.unwrap();
        let (ours, other) = (Address::repeat_byte(1), Address::repeat_byte(2));
        store.ingest_leads("slots", &[event(ours, "1", 10)], at(10), 1).await.unwrap();
        store.ingest_leads("slots", &[event(ours, "3", 15)], at(15), 1).await.unwrap();
        store
            .ingest_leads("slots", &[event(ours, "2", 20), event(ours, "1", 12)], at(20), 2)
            .await
            .unwrap();
        store.ingest_leads("other", &[event(other, "9", 20)], at(20), 3).await.unwrap();
        for lead in store.pending_leads(10, 10).await.unwrap() {
            store.decide(&lead, &Decision::Note("seen".into()), None, 4).await.unwrap();
        }
        assert!(store.pending_leads(10, 10).await.unwrap().is_empty());
        let version = |leads: &[Lead], r: &str| {
            leads.iter().find(|l| l.reference == r).map(|l| (l.version, l.last_block))
        };
        let before = store.leads(None, 100).await.unwrap();

        // Blocks above 15 are gone: order 2 (block 20) is looked at again; order 1 (last seen
        // at 12), order 3 (at 15, the fork's own block) and the other contract's order 9 are not.
        assert_eq!(store.rewind("slots", ours, 15, Some(at(15))).await.unwrap(), 1);
        let pending = store.pending_leads(10, 10).await.unwrap();
        assert_eq!(pending.iter().map(|l| l.reference.as_str()).collect::<Vec<_>>(), ["2"]);
        let after = store.leads(None, 100).await.unwrap();
        assert_eq!(version(&after, "1"), version(&before, "1"));
        assert_eq!(version(&after, "3"), version(&before, "3"));
        assert_eq!(version(&after, "9"), version(&before, "9"));
        assert_eq!(version(&after, "2").unwrap().0, version(&before, "2").unwrap().0 + 1);
        assert_eq!(store.cursor("slots").await.unwrap(), Some(at(15)));
        assert_eq!(store.cursor("other").await.unwrap(), Some(at(20)));
        let kept = store.checkpoints("slots", 0).await.unwrap();
        assert_eq!(kept, vec![at(15), at(10)], "checkpoints above the fork go, its own stays");
        // A decision taken on the version before the rewind is not final.
        let stale = before.iter().find(|l| l.reference == "2").unwrap();
        store.decide(stale, &Decision::Note("late".into()), None, 5).await.unwrap();
        assert_eq!(store.pending_leads(10, 10).await.unwrap().len(), 1);

        // Nothing to go back to: the cursor goes, and the stream is read again from its start.
        assert_eq!(store.rewind("slots", ours, 0, None).await.unwrap(), 3);
        assert_eq!(store.cursor("slots").await.unwrap(), None);
        assert!(store.checkpoints("slots", 0).await.unwrap().is_empty());
    }
}
