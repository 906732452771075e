//! Contract deals: the orders of the `DealClient` backend (one per piece, with an id the oracle
//! assigns), each proposal made for them, and the `DealClient`'s events about those proposals
//! (the proposal watcher's [`LogStore`], [`ProposalLogs`]).
//!
//! A proposal is recorded (`sending`, with its exact terms) before its transaction is sent, so
//! that after a restart the same terms are sent again (the contract answers a duplicate with the
//! live proposal's id) or the watcher binds the proposal from its `DealProposalOffered` event.
//! Its replica states are `deal_events` rows of the order, folded as `PerpetualStorage` slots are
//! ([`crate::domain::deal::ProposalLogKind::slot`]).

use std::collections::HashMap;

use alloy::{primitives::Address, rpc::types::Log};
use estuary_chain::{Cursor, LogStore};
use serde::Serialize;
use sqlx::{Row, any::AnyRow};

use super::{
    PieceToOrder, Store, StoreError,
    deals::{deal_ids, fold_contract, forget_events, slot_event_from_row},
    get_u64, int,
    requests::{move_cursor, rewind_cursor},
};
use crate::domain::deal::{Backend, OrderState, ProposalLog, ProposalLogKind, Replica, SlotEvent};

/// Where a proposal is, as the oracle keeps it (its replica's state is folded from events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    /// Recorded; its transaction is being sent (or waits for escrow).
    Sending,
    /// On chain, with its id.
    Offered,
    /// Not published by its start epoch: withdrawn (the provider failed it).
    Lapsed,
    /// Refused (by the contract, or too late to send); the error says why. Not the provider's
    /// failure.
    Failed,
}

impl ProposalState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Offered => "offered",
            Self::Lapsed => "lapsed",
            Self::Failed => "failed",
        }
    }

    /// The state a stored name names.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Sending, Self::Offered, Self::Lapsed, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One proposal, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProposalRecord {
    /// The `DealClient`.
    pub client: Address,
    /// The order (piece) it is for.
    pub order_id: u64,
    /// The provider named.
    pub provider: u64,
    /// 0, 1, … per provider and order.
    pub attempt: u64,
    /// The piece's v1 CID bytes, hex.
    #[serde(skip)]
    pub piece_v1: String,
    /// Where it is.
    pub state: ProposalState,
    /// The contract's id (0x hex), once known.
    pub proposal_id: Option<String>,
    /// The deal's first epoch.
    pub start_epoch: u64,
    /// Its last epoch.
    pub end_epoch: u64,
    /// attoFIL per epoch (decimal).
    pub price: String,
    /// The provider's collateral (decimal).
    pub collateral: String,
    /// The head before it was first sent.
    pub sent_block: u64,
    /// The transaction that made it, when this oracle saw its receipt.
    pub tx_hash: Option<String>,
    /// The last refusal or failed send.
    pub error: Option<String>,
}

const COLUMNS: &str = "client, order_id, provider, attempt, piece_v1, state, proposal_id, \
    start_epoch, end_epoch, price, collateral, sent_block, tx_hash, error";

fn lower(a: Address) -> String {
    format!("{a:#x}")
}

fn from_row(row: &AnyRow) -> Result<ProposalRecord, StoreError> {
    let client: String = row.try_get("client")?;
    let state: String = row.try_get("state")?;
    Ok(ProposalRecord {
        client: client.parse().map_err(|_| StoreError::Corrupt(format!("address {client:?}")))?,
        order_id: get_u64(row, "order_id")?,
        provider: get_u64(row, "provider")?,
        attempt: get_u64(row, "attempt")?,
        piece_v1: row.try_get("piece_v1")?,
        state: ProposalState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("proposal state {state:?}")))?,
        proposal_id: row.try_get("proposal_id")?,
        start_epoch: get_u64(row, "start_epoch")?,
        end_epoch: get_u64(row, "end_epoch")?,
        price: row.try_get("price")?,
        collateral: row.try_get("collateral")?,
        sent_block: get_u64(row, "sent_block")?,
        tx_hash: row.try_get("tx_hash")?,
        error: row.try_get("error")?,
    })
}

impl Store {
    /// Records the contract order of `piece` at `client` (open at once: its id is assigned
    /// here, one past the client's highest); nothing if the piece has one there. Returns
    /// whether it is new.
    pub async fn record_contract_order(
        &self,
        client: Address,
        piece: &PieceToOrder,
        piece_v1: &[u8],
        replicas: u16,
        head: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO deal_orders (backend, contract, piece_cid, piece_v1, payload_cid,
               padded_size, car_size, replicas, state, order_id, sent_block, created_ms, updated_ms)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE(MAX(order_id), 0) + 1, $10, $11, $11
             FROM deal_orders WHERE contract = $2
             ON CONFLICT DO NOTHING",
        )
        .bind(Backend::Contract.as_str())
        .bind(lower(client))
        .bind(piece.piece_cid.as_str())
        .bind(alloy::hex::encode(piece_v1))
        .bind(piece.payload_cid.as_str())
        .bind(int(piece.padded_size)?)
        .bind(int(piece.car_size)?)
        .bind(i64::from(replicas))
        .bind(OrderState::Open.as_str())
        .bind(int(head)?)
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes on a contract order why it is short of replicas (`None`: nothing is wrong now);
    /// `failed`: it needs the operator (a setting the contract refuses), and no more proposals
    /// are made for it.
    pub async fn contract_order_note(
        &self,
        client: Address,
        order_id: u64,
        error: Option<&str>,
        failed: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let state = if failed { OrderState::Failed } else { OrderState::Open };
        sqlx::query(
            "UPDATE deal_orders SET state = $1, error = $2, updated_ms = $3
             WHERE contract = $4 AND order_id = $5 AND backend = $6
               AND (state != $1 OR COALESCE(error, '') != COALESCE($2, ''))",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(int(now_ms)?)
        .bind(lower(client))
        .bind(int(order_id)?)
        .bind(Backend::Contract.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every proposal made at `client`, by order and provider, oldest attempt first.
    pub async fn proposals(&self, client: Address) -> Result<Vec<ProposalRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deal_proposals WHERE client = $1
             ORDER BY order_id, provider, attempt"
        ))
        .bind(lower(client))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The proposals of one order (what `/deals` shows with a contract order).
    pub async fn proposals_of(
        &self,
        client: Address,
        order_id: u64,
    ) -> Result<Vec<ProposalRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deal_proposals WHERE client = $1 AND order_id = $2
             ORDER BY provider, attempt"
        ))
        .bind(lower(client))
        .bind(int(order_id)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Records a proposal about to be sent (`sending`). Returns whether it is new.
    pub async fn record_proposal(
        &self,
        p: &ProposalRecord,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO deal_proposals (client, order_id, provider, attempt, piece_v1, state,
               start_epoch, end_epoch, price, collateral, sent_block, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             ON CONFLICT DO NOTHING",
        )
        .bind(lower(p.client))
        .bind(int(p.order_id)?)
        .bind(int(p.provider)?)
        .bind(int(p.attempt)?)
        .bind(p.piece_v1.as_str())
        .bind(ProposalState::Sending.as_str())
        .bind(int(p.start_epoch)?)
        .bind(int(p.end_epoch)?)
        .bind(p.price.as_str())
        .bind(p.collateral.as_str())
        .bind(int(p.sent_block)?)
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The proposal is on chain as `id` (from its receipt or the contract's duplicate answer).
    /// One bound already (by the watcher) keeps its id.
    pub async fn proposal_offered(
        &self,
        p: &ProposalRecord,
        id: &str,
        tx_hash: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deal_proposals SET state = $1, proposal_id = COALESCE(proposal_id, $2),
               tx_hash = COALESCE($3, tx_hash), error = NULL, updated_ms = $4
             WHERE client = $5 AND order_id = $6 AND provider = $7 AND attempt = $8
               AND state = $9",
        )
        .bind(ProposalState::Offered.as_str())
        .bind(id)
        .bind(tx_hash)
        .bind(int(now_ms)?)
        .bind(lower(p.client))
        .bind(int(p.order_id)?)
        .bind(int(p.provider)?)
        .bind(int(p.attempt)?)
        .bind(ProposalState::Sending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves the proposal to `state` with `error` (a refusal, a failed send, a lapse).
    pub async fn proposal_moved(
        &self,
        p: &ProposalRecord,
        state: ProposalState,
        error: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deal_proposals SET state = $1, error = $2, updated_ms = $3
             WHERE client = $4 AND order_id = $5 AND provider = $6 AND attempt = $7",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(int(now_ms)?)
        .bind(lower(p.client))
        .bind(int(p.order_id)?)
        .bind(int(p.provider)?)
        .bind(int(p.attempt)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores the `DealClient`'s events about the oracle's proposals and moves the cursor, in one
    /// transaction. An offer not yet bound is bound here by its piece, provider and start (the
    /// oracle stopped before its receipt). Events about other proposals are left out.
    pub async fn ingest_proposal_events(
        &self,
        stream: &str,
        client: Address,
        logs: &[ProposalLog],
        cursor: Cursor,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        move_cursor(&mut tx, stream, cursor).await?;
        let mut inserted = 0;
        for log in logs {
            let id = format!("0x{}", alloy::hex::encode(log.id));
            if let ProposalLogKind::Offered { provider, piece_v1, start_epoch } = &log.kind {
                sqlx::query(
                    "UPDATE deal_proposals SET proposal_id = $1, state = $2, error = NULL,
                       updated_ms = $3
                     WHERE client = $4 AND piece_v1 = $5 AND provider = $6 AND start_epoch = $7
                       AND proposal_id IS NULL AND state IN ($8, $10) AND sent_block <= $9",
                )
                .bind(id.as_str())
                .bind(ProposalState::Offered.as_str())
                .bind(int(now_ms)?)
                .bind(lower(client))
                .bind(alloy::hex::encode(piece_v1))
                .bind(int(*provider)?)
                .bind(int(*start_epoch)?)
                .bind(ProposalState::Sending.as_str())
                .bind(int(log.block_number)?)
                // A send given up as too late may have been mined after all.
                .bind(ProposalState::Failed.as_str())
                .execute(&mut *tx)
                .await?;
            }
            let Some(row) = sqlx::query(
                "SELECT order_id, provider, start_epoch, end_epoch FROM deal_proposals
                 WHERE client = $1 AND proposal_id = $2",
            )
            .bind(lower(client))
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            else {
                continue;
            };
            let (order_id, provider) = (get_u64(&row, "order_id")?, get_u64(&row, "provider")?);
            // A deal by another provider than the one named is not this replica's (the
            // contract takes only the named one; events are not trusted to agree).
            if log.kind.provider().is_some_and(|p| p != provider) {
                continue;
            }
            // A withdrawal once the deal is made changes nothing (anyone may withdraw past the
            // start; no deal can follow, and the one made stands).
            let published = matches!(log.kind, ProposalLogKind::Cancelled)
                && sqlx::query(
                    "SELECT 1 AS one FROM deal_events WHERE contract = $1 AND proposal = $2
                       AND kind IN ('published', 'activated') LIMIT 1",
                )
                .bind(lower(client))
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            let (start, end) = (get_u64(&row, "start_epoch")?, get_u64(&row, "end_epoch")?);
            let Some(kind) = log.kind.slot(start, end, published) else { continue };
            let (deal_id, start_epoch, end_epoch, deadline) = match kind {
                crate::domain::deal::SlotEventKind::Claimed { deadline } => {
                    (None, None, None, deadline)
                }
                crate::domain::deal::SlotEventKind::Published { deal_id } => {
                    (Some(deal_id), None, None, None)
                }
                crate::domain::deal::SlotEventKind::Activated {
                    deal_id,
                    start_epoch,
                    end_epoch,
                } => (deal_id, Some(start_epoch), Some(end_epoch), None),
                _ => (None, None, None, None),
            };
            if matches!(log.kind, ProposalLogKind::Cancelled) && !published {
                // Withdrawn by whoever (the oracle, or anyone once its start has passed).
                sqlx::query(
                    "UPDATE deal_proposals SET state = $1, updated_ms = $2
                     WHERE client = $3 AND proposal_id = $4 AND state = $5",
                )
                .bind(ProposalState::Lapsed.as_str())
                .bind(int(now_ms)?)
                .bind(lower(client))
                .bind(id.as_str())
                .bind(ProposalState::Offered.as_str())
                .execute(&mut *tx)
                .await?;
            }
            let done = sqlx::query(
                "INSERT INTO deal_events (stream, block_number, log_index, contract, order_id, kind,
                   provider, deal_id, start_epoch, end_epoch, deadline, proposal)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT DO NOTHING",
            )
            .bind(stream)
            .bind(int(log.block_number)?)
            .bind(int(log.log_index)?)
            .bind(lower(client))
            .bind(int(order_id)?)
            .bind(kind.as_str())
            .bind(int(provider)?)
            .bind(deal_id.map(int).transpose()?)
            .bind(start_epoch.map(int).transpose()?)
            .bind(end_epoch.map(int).transpose()?)
            .bind(deadline.map(int).transpose()?)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            inserted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Undoes a reorg for the proposal stream: forgets its events from blocks above `above` (a
    /// proposal bound only by a forgotten offer waits for its id again) and moves the cursor
    /// back.
    pub async fn rewind_proposal_events(
        &self,
        stream: &str,
        client: Address,
        above: u64,
        cursor: Option<Cursor>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let forgotten = forget_events(&mut tx, stream, above).await?;
        sqlx::query(
            "UPDATE deal_proposals SET proposal_id = NULL, state = $1
             WHERE client = $2 AND state = $3 AND tx_hash IS NULL AND NOT EXISTS (
               SELECT 1 FROM deal_events e WHERE e.contract = deal_proposals.client
                 AND e.proposal = deal_proposals.proposal_id AND e.kind = 'claimed')",
        )
        .bind(ProposalState::Sending.as_str())
        .bind(lower(client))
        .bind(ProposalState::Offered.as_str())
        .execute(&mut *tx)
        .await?;
        // A withdrawal the reorg undid: offered again (the scheduler withdraws it again if it
        // is still past its start unpublished).
        sqlx::query(
            "UPDATE deal_proposals SET state = $1
             WHERE client = $2 AND state = $3 AND proposal_id IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM deal_events e WHERE e.contract = deal_proposals.client
                 AND e.proposal = deal_proposals.proposal_id AND e.kind = 'reopened')",
        )
        .bind(ProposalState::Offered.as_str())
        .bind(lower(client))
        .bind(ProposalState::Lapsed.as_str())
        .execute(&mut *tx)
        .await?;
        rewind_cursor(&mut tx, stream, above, cursor).await?;
        tx.commit().await?;
        Ok(forgotten)
    }

    /// Each proposal's own replica at `client` (its events folded alone, with the market's last
    /// word on its deal), by proposal id: attempts at one provider are never mixed.
    pub async fn proposal_replicas(
        &self,
        client: Address,
    ) -> Result<HashMap<String, Replica>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.proposal, e.kind, e.provider, e.deal_id, e.start_epoch, e.end_epoch,
                    e.block_number, e.deadline
             FROM deal_events e JOIN deal_proposals p
               ON p.client = e.contract AND p.proposal_id = e.proposal
             WHERE e.contract = $1 AND p.state IN ($2, $3)
             ORDER BY e.block_number, e.log_index",
        )
        .bind(lower(client))
        .bind(ProposalState::Offered.as_str())
        .bind(ProposalState::Lapsed.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut events: HashMap<String, Vec<SlotEvent>> = HashMap::new();
        for row in &rows {
            if let Some(event) = slot_event_from_row(row)? {
                events.entry(row.try_get("proposal")?).or_default().push(event);
            }
        }
        let ids = deal_ids(events.values().flatten());
        let markets = self.market_views(&ids).await?;
        let mut replicas: HashMap<String, Replica> = events
            .into_iter()
            .filter_map(|(id, mut events)| {
                let replica = fold_contract(&mut events, &markets, Some(&id)).into_iter().next()?;
                Some((id, replica))
            })
            .collect();
        self.probes_and_terms(replicas.values_mut().collect()).await?;
        Ok(replicas)
    }
}

/// The proposal watcher's store for one `DealClient`: its events about the oracle's proposals.
#[derive(Debug, Clone)]
pub struct ProposalLogs {
    store: Store,
    client: Address,
}

impl ProposalLogs {
    /// Events of `client`'s proposals made by this oracle, kept in `store`.
    pub fn new(store: Store, client: Address) -> Self {
        Self { store, client }
    }
}

impl LogStore for ProposalLogs {
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
        let decoded = crate::deals::events::decode_proposals(self.client, &logs);
        self.store
            .ingest_proposal_events(stream, self.client, &decoded, cursor, crate::domain::now_ms())
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
        self.store.rewind_proposal_events(stream, self.client, above, cursor).await
    }
}
