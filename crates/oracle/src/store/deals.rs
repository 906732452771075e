//! Deals: the orders the oracle makes for its pieces, and the storage contract's events about
//! them (the deal watcher's [`LogStore`], [`DealLogs`]).
//!
//! An order is recorded (`sending`) before its transaction is sent, and bound to the contract's
//! order id either from the transaction's receipt or, if the oracle stopped in between, from the
//! `OrderCreated` event the watcher reads: by its client (the operator) and its piece. Replica
//! states are never stored, only the events, and folded by [`crate::domain::deal::fold`].

use std::collections::HashMap;

use alloy::{primitives::Address, rpc::types::Log};
use estuary_chain::{Cursor, LogStore};
use serde::Serialize;
use sqlx::{Row, any::AnyRow};

use super::{
    Store, StoreError, get_u64, int, need, opt_u64,
    requests::{move_cursor, rewind_cursor},
};
use crate::domain::{
    deal::{
        Backend, DealLog, DealLogKind, OrderState, Replica, ReplicaState, SlotEvent, SlotEventKind,
        activated_by_market, fold,
    },
    market::{MarketState, MarketView, direct_term_view},
    probe::ProbeView,
    provider::{OrderHistory, ProbeInputs, ProviderStats, ScoreRules, stats as provider_stats},
};

/// A piece ready for an order: packed and reported, with no order at the contract yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceToOrder {
    /// v2 piece CID (text).
    pub piece_cid: String,
    /// The pin's root CID (text).
    pub payload_cid: String,
    /// Padded piece size.
    pub padded_size: u64,
    /// The CAR's size.
    pub car_size: u64,
}

/// A replica to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Its deal: the market deal's id, or a direct deal's key ([`Replica::probe_key`]).
    pub deal_id: u64,
    /// Its provider.
    pub provider: u64,
    /// The order's piece (v2).
    pub piece_cid: String,
    /// The order's payload root.
    pub payload_cid: String,
    /// Whether the piece is one CAR (not an aggregate or a split pin's part): its root block
    /// can be asked of the provider's gateway.
    pub plain_car: bool,
    /// Its probes so far.
    pub probe: Option<ProbeView>,
}

/// An order, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRecord {
    /// The backend that made it.
    pub backend: Backend,
    /// The contract it is at.
    pub contract: Address,
    /// v2 piece CID.
    pub piece_cid: String,
    /// The piece's v1 CID, as bytes (hex in JSON).
    #[serde(serialize_with = "hex_bytes")]
    pub piece_v1: Vec<u8>,
    /// The pin's root CID.
    pub payload_cid: String,
    /// Padded piece size.
    pub padded_size: u64,
    /// The CAR's size.
    pub car_size: u64,
    /// Replicas wanted.
    pub replicas_target: u16,
    /// Where it is.
    pub state: OrderState,
    /// The contract's order id, once known.
    pub order_id: Option<u64>,
    /// The transaction that created it, when this oracle saw its receipt.
    pub tx_hash: Option<String>,
    /// The last pre-flight refusal or failed send.
    pub error: Option<String>,
    /// What it was (or is about to be) sent with, in attoFIL (not shown: the budget's part).
    #[serde(skip)]
    pub funding: Option<u128>,
    /// The chain's head before it was first sent.
    pub sent_block: u64,
    /// When it was recorded (unix ms).
    pub created_ms: u64,
    /// When it last changed (unix ms).
    pub updated_ms: u64,
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("0x{}", alloy::hex::encode(bytes)))
}

/// An order with its replicas (folded from its events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderWithReplicas {
    /// The order.
    #[serde(flatten)]
    pub order: OrderRecord,
    /// Replicas that are active (count toward the target).
    pub replicas_active: usize,
    /// The replica target on chain: the order's (`replicas_target`), raised by one for each
    /// replica being renewed ahead of its term's end (the keeper's `setReplicaTarget`).
    pub replicas_on_chain: u16,
    /// Whether the order was cancelled on chain.
    pub cancelled: bool,
    /// Every provider's replica.
    pub replicas: Vec<Replica>,
}

fn address(text: &str) -> Result<Address, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("address {text:?}")))
}

fn order_from_row(row: &AnyRow) -> Result<OrderRecord, StoreError> {
    let backend: String = row.try_get("backend")?;
    let state: String = row.try_get("state")?;
    let contract: String = row.try_get("contract")?;
    let piece_v1: String = row.try_get("piece_v1")?;
    Ok(OrderRecord {
        backend: Backend::parse(&backend)
            .ok_or_else(|| StoreError::Corrupt(format!("backend {backend:?}")))?,
        contract: address(&contract)?,
        piece_cid: row.try_get("piece_cid")?,
        piece_v1: alloy::hex::decode(&piece_v1)
            .map_err(|_| StoreError::Corrupt(format!("piece_v1 {piece_v1:?}")))?,
        payload_cid: row.try_get("payload_cid")?,
        padded_size: get_u64(row, "padded_size")?,
        car_size: get_u64(row, "car_size")?,
        replicas_target: u16::try_from(get_u64(row, "replicas")?)
            .map_err(|_| StoreError::Corrupt("replicas".into()))?,
        state: OrderState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("order state {state:?}")))?,
        order_id: opt_u64(row, "order_id")?,
        tx_hash: row.try_get("tx_hash")?,
        error: row.try_get("error")?,
        funding: row
            .try_get::<Option<String>, _>("funding")?
            .map(|t| t.parse().map_err(|_| StoreError::Corrupt(format!("funding {t:?}"))))
            .transpose()?,
        sent_block: get_u64(row, "sent_block")?,
        created_ms: get_u64(row, "created_ms")?,
        updated_ms: get_u64(row, "updated_ms")?,
    })
}

pub(super) fn slot_event_from_row(row: &AnyRow) -> Result<Option<SlotEvent>, StoreError> {
    let kind: String = row.try_get("kind")?;
    let deal = || need(opt_u64(row, "deal_id")?, "deal_id");
    let kind = match kind.as_str() {
        "claimed" => SlotEventKind::Claimed { deadline: opt_u64(row, "deadline")? },
        "published" => SlotEventKind::Published { deal_id: deal()? },
        "activated" => SlotEventKind::Activated {
            // None: a deal made without the market.
            deal_id: opt_u64(row, "deal_id")?,
            start_epoch: get_u64(row, "start_epoch")?,
            end_epoch: get_u64(row, "end_epoch")?,
        },
        "reopened" => SlotEventKind::Reopened,
        "paid" => SlotEventKind::Paid { until: get_u64(row, "end_epoch")? },
        _ => return Ok(None),
    };
    Ok(Some(SlotEvent {
        provider: get_u64(row, "provider")?,
        block_number: get_u64(row, "block_number")?,
        kind,
    }))
}

/// A piece to order (or to bucket) from its row: `piece_cid`, `cid`, `padded_size`, `car_size`.
pub(super) fn piece_to_order(r: &AnyRow) -> Result<PieceToOrder, StoreError> {
    Ok(PieceToOrder {
        piece_cid: r.try_get("piece_cid")?,
        payload_cid: r.try_get("cid")?,
        padded_size: get_u64(r, "padded_size")?,
        car_size: get_u64(r, "car_size")?,
    })
}

fn lower(contract: Address) -> String {
    format!("{contract:#x}")
}

const ORDER_COLUMNS: &str = "backend, contract, piece_cid, piece_v1, payload_cid, padded_size, \
    car_size, replicas, state, order_id, tx_hash, error, funding, sent_block, created_ms, \
    updated_ms";

impl Store {
    /// Pieces of reported pins with no order at `contract` yet, and none live at another (a
    /// backend switched keeps the orders made), oldest pin first, up to `limit` (one row per
    /// piece, whichever pins share it).
    ///
    /// With buckets (`bucketed`: the largest piece a bucket takes, half a deal), only the pieces
    /// larger than that and no larger than a deal, then the closed buckets' aggregates, then
    /// the parts of pins split because they were larger than a deal; a piece in a bucket, or
    /// split, never gets its own order.
    pub async fn pieces_to_order(
        &self,
        contract: Address,
        limit: u64,
        bucketed: Option<u64>,
    ) -> Result<Vec<PieceToOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.piece_cid, MIN(j.cid) AS cid, MIN(j.padded_size) AS padded_size,
                    MIN(j.car_size) AS car_size, MIN(j.seq) AS first
             FROM jobs j
             WHERE j.state = 'reported' AND j.piece_cid IS NOT NULL AND j.cid IS NOT NULL
               AND j.padded_size > $3 AND ($4 < 0 OR j.padded_size <= $4)
               AND NOT EXISTS (SELECT 1 FROM piece_splits s WHERE s.piece_cid = j.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM deal_orders o
                               WHERE o.piece_cid = j.piece_cid
                                 AND (o.contract = $1 OR o.state != 'failed'))
               AND NOT EXISTS (SELECT 1 FROM bucket_pieces p WHERE p.piece_cid = j.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM dao_requesters d WHERE d.requester = j.requester)
               AND j.store_replicas IS NULL
             GROUP BY j.piece_cid ORDER BY first LIMIT $2",
        )
        .bind(lower(contract))
        .bind(int(limit)?)
        .bind(bucketed.map_or(Ok(-1), int)?)
        // With buckets, a piece larger than a deal is split first (its parts are ordered).
        .bind(bucketed.map_or(Ok(-1), |largest| int(largest.saturating_mul(2)))?)
        .fetch_all(&self.pool)
        .await?;
        let mut pieces = rows.iter().map(piece_to_order).collect::<Result<Vec<_>, _>>()?;
        // Closed buckets are ordered even once bucketing is turned off: their pieces have no
        // orders of their own.
        let room = limit.saturating_sub(pieces.len() as u64);
        pieces.extend(self.buckets_to_order(&lower(contract), room).await?);
        let room = limit.saturating_sub(pieces.len() as u64);
        pieces.extend(self.parts_to_order(&lower(contract), room).await?);
        Ok(pieces)
    }

    /// Records an order about to be sent (`sending`); nothing if the piece has one at that
    /// contract already. Returns whether it is new.
    pub async fn record_order(&self, order: &OrderRecord, now_ms: u64) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO deal_orders ({ORDER_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, NULL, NULL, $10, $11, $11)
             ON CONFLICT DO NOTHING"
        ))
        .bind(order.backend.as_str())
        .bind(lower(order.contract))
        .bind(order.piece_cid.as_str())
        .bind(alloy::hex::encode(&order.piece_v1))
        .bind(order.payload_cid.as_str())
        .bind(int(order.padded_size)?)
        .bind(int(order.car_size)?)
        .bind(i64::from(order.replicas_target))
        .bind(OrderState::Sending.as_str())
        .bind(int(order.sent_block)?)
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The operator's own orders (`perpetual`: not a DataDAO's) at `contract` in `state`, oldest
    /// first.
    pub async fn orders_in(
        &self,
        contract: Address,
        state: OrderState,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders WHERE contract = $1 AND state = $2
               AND backend = $3
             ORDER BY created_ms, piece_cid"
        ))
        .bind(lower(contract))
        .bind(state.as_str())
        .bind(Backend::Perpetual.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// The order's transaction was mined and created order `order_id`: it is `open`. An order
    /// already bound (by the watcher) keeps its id.
    pub async fn order_created(
        &self,
        contract: Address,
        piece_cid: &str,
        order_id: u64,
        tx_hash: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deal_orders SET state = $1, order_id = COALESCE(order_id, $2),
                    tx_hash = COALESCE($3, tx_hash), error = NULL, updated_ms = $4
             WHERE contract = $5 AND piece_cid = $6",
        )
        .bind(OrderState::Open.as_str())
        .bind(int(order_id)?)
        .bind(tx_hash)
        .bind(int(now_ms)?)
        .bind(lower(contract))
        .bind(piece_cid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes why the order is not sent yet (`failed`: never by itself; otherwise still
    /// `sending`).
    pub async fn order_refused(
        &self,
        contract: Address,
        piece_cid: &str,
        error: &str,
        failed: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let state = if failed { OrderState::Failed } else { OrderState::Sending };
        sqlx::query(
            "UPDATE deal_orders SET state = $1, error = $2, updated_ms = $3
             WHERE contract = $4 AND piece_cid = $5 AND order_id IS NULL",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(int(now_ms)?)
        .bind(lower(contract))
        .bind(piece_cid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes the value `funding` (attoFIL) an order is about to be sent with; it counts toward
    /// the deal budget from now on, unless the order fails.
    pub async fn order_funding(
        &self,
        contract: Address,
        piece_cid: &str,
        funding: u128,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deal_orders SET funding = $1 WHERE contract = $2 AND piece_cid = $3")
            .bind(funding.to_string())
            .bind(lower(contract))
            .bind(piece_cid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What the orders at `contract` that are sending or open were (or are about to be) funded
    /// with, in attoFIL: what the deal budget has committed.
    pub async fn committed_funding(&self, contract: Address) -> Result<u128, StoreError> {
        let rows = sqlx::query(
            "SELECT funding FROM deal_orders
             WHERE contract = $1 AND state != $2 AND funding IS NOT NULL",
        )
        .bind(lower(contract))
        .bind(OrderState::Failed.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut total: u128 = 0;
        for row in &rows {
            let text: String = row.try_get("funding")?;
            let v: u128 =
                text.parse().map_err(|_| StoreError::Corrupt(format!("funding {text:?}")))?;
            total = total.saturating_add(v);
        }
        Ok(total)
    }

    /// The id of an order `operator` created at `contract` for `piece_v1` from block `from` on,
    /// as the watcher read it (the first, if several).
    pub async fn created_order(
        &self,
        contract: Address,
        operator: Address,
        piece_v1: &[u8],
        from: u64,
    ) -> Result<Option<u64>, StoreError> {
        // Events stored before clients were recorded are all the operator's.
        let row = sqlx::query(
            "SELECT MIN(order_id) AS order_id FROM deal_events
             WHERE contract = $1 AND kind = 'created' AND piece_v1 = $2 AND block_number >= $3
               AND (client IS NULL OR client = $4)",
        )
        .bind(lower(contract))
        .bind(alloy::hex::encode(piece_v1))
        .bind(int(from)?)
        .bind(lower(operator))
        .fetch_one(&self.pool)
        .await?;
        opt_u64(&row, "order_id")
    }

    /// Stores `logs` of `contract` (decoded, in chain order) that are about the orders one of
    /// `clients` created — the operator first, then the DataDAOs it funds orders for — binds
    /// the operator's orders waiting for their id, and moves `stream`'s cursor — atomically.
    /// Returns how many events were new.
    pub async fn ingest_deal_events(
        &self,
        stream: &str,
        contract: Address,
        clients: &[Address],
        logs: &[DealLog],
        cursor: Cursor,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write first: the transaction takes SQLite's write lock at once (see requests).
        move_cursor(&mut tx, stream, cursor).await?;
        let mut inserted = 0;
        for log in logs {
            let ours = match &log.kind {
                DealLogKind::Created { client, .. } => clients.contains(client),
                _ => sqlx::query(
                    "SELECT 1 AS one FROM deal_events
                     WHERE contract = $1 AND order_id = $2 AND kind = 'created' LIMIT 1",
                )
                .bind(lower(contract))
                .bind(int(log.order_id)?)
                .fetch_optional(&mut *tx)
                .await?
                .is_some(),
            };
            if !ours {
                continue;
            }
            let (provider, deal_id, start, end, deadline) = match &log.kind {
                DealLogKind::Slot { provider, kind } => match *kind {
                    SlotEventKind::Published { deal_id } => {
                        (Some(*provider), Some(deal_id), None, None, None)
                    }
                    SlotEventKind::Activated { deal_id, start_epoch, end_epoch } => {
                        (Some(*provider), deal_id, Some(start_epoch), Some(end_epoch), None)
                    }
                    SlotEventKind::Claimed { deadline } => {
                        (Some(*provider), None, None, None, deadline)
                    }
                    SlotEventKind::Reopened => (Some(*provider), None, None, None, None),
                    SlotEventKind::Paid { until } => {
                        (Some(*provider), None, None, Some(until), None)
                    }
                },
                DealLogKind::Created { .. }
                | DealLogKind::Cancelled
                | DealLogKind::Target { .. } => (None, None, None, None, None),
            };
            let piece = match &log.kind {
                DealLogKind::Created { piece_v1, .. } => Some(alloy::hex::encode(piece_v1)),
                _ => None,
            };
            let done = sqlx::query(
                "INSERT INTO deal_events (stream, block_number, log_index, contract, order_id, kind,
                   provider, deal_id, start_epoch, end_epoch, piece_v1, deadline, client, replicas)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT DO NOTHING",
            )
            .bind(stream)
            .bind(int(log.block_number)?)
            .bind(int(log.log_index)?)
            .bind(lower(contract))
            .bind(int(log.order_id)?)
            .bind(log.kind.as_str())
            .bind(provider.map(int).transpose()?)
            .bind(deal_id.map(int).transpose()?)
            .bind(start.map(int).transpose()?)
            .bind(end.map(int).transpose()?)
            .bind(piece.as_deref())
            .bind(deadline.map(int).transpose()?)
            .bind(match &log.kind {
                DealLogKind::Created { client, .. } => Some(lower(*client)),
                _ => None,
            })
            .bind(match log.kind {
                DealLogKind::Target { replicas } => Some(i64::from(replicas)),
                _ => None,
            })
            .execute(&mut *tx)
            .await?;
            inserted += done.rows_affected();
            if let (DealLogKind::Created { client, .. }, Some(piece)) = (&log.kind, &piece)
                && clients.first() == Some(client)
            {
                // An order the oracle sent but did not see the receipt of (it stopped): bound here.
                sqlx::query(
                    "UPDATE deal_orders SET order_id = $1, state = $2, error = NULL, updated_ms = $3
                     WHERE contract = $4 AND piece_v1 = $5 AND order_id IS NULL
                       AND sent_block <= $6",
                )
                .bind(int(log.order_id)?)
                .bind(OrderState::Open.as_str())
                .bind(int(now_ms)?)
                .bind(lower(contract))
                .bind(piece.as_str())
                .bind(int(log.block_number)?)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Undoes a reorg for the deal stream: forgets its events from blocks above `above` (an
    /// order bound by a forgotten event waits for its id again) and moves the cursor back.
    pub async fn rewind_deal_events(
        &self,
        stream: &str,
        contract: Address,
        above: u64,
        cursor: Option<Cursor>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let forgotten = forget_events(&mut tx, stream, above).await?;
        sqlx::query(
            "UPDATE deal_orders SET order_id = NULL, state = $1
             WHERE contract = $2 AND order_id IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM deal_events e WHERE e.contract = deal_orders.contract
                 AND e.order_id = deal_orders.order_id AND e.kind = 'created')
               AND tx_hash IS NULL AND backend = $3",
        )
        .bind(OrderState::Sending.as_str())
        .bind(lower(contract))
        // A DataDAO's order is bound from the DAO's own record (`orderOf`), not from events.
        .bind(Backend::Perpetual.as_str())
        .execute(&mut *tx)
        .await?;
        rewind_cursor(&mut tx, stream, above, cursor).await?;
        tx.commit().await?;
        Ok(forgotten)
    }

    /// Orders with their replicas, newest first (`piece`: only the orders of that piece).
    pub async fn deals(
        &self,
        piece: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<OrderWithReplicas>, StoreError> {
        let filter = if piece.is_some() { "piece_cid = $3" } else { "$3 = ''" };
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders WHERE {filter}
             ORDER BY created_ms DESC, piece_cid LIMIT $1 OFFSET $2"
        ))
        .bind(int(limit)?)
        .bind(int(offset)?)
        .bind(piece.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        self.with_replicas(orders).await
    }

    /// The orders of a split pin's parts (`piece` the whole CAR's), oldest first, at most
    /// `limit`, with their replicas: one query, however many parts.
    pub async fn split_deals(
        &self,
        piece: &str,
        limit: u64,
    ) -> Result<Vec<OrderWithReplicas>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders
             WHERE piece_cid IN (SELECT part_cid FROM piece_splits WHERE piece_cid = $1)
             ORDER BY created_ms, piece_cid LIMIT $2"
        ))
        .bind(piece)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        let orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        self.with_replicas(orders).await
    }

    /// Every open order at `contract` with its replicas (the keeper's round).
    pub async fn open_orders(
        &self,
        contract: Address,
    ) -> Result<Vec<OrderWithReplicas>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders WHERE contract = $1 AND state = $2
               AND order_id IS NOT NULL ORDER BY order_id"
        ))
        .bind(lower(contract))
        .bind(OrderState::Open.as_str())
        .fetch_all(&self.pool)
        .await?;
        let orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        self.with_replicas(orders).await
    }

    /// Every open order, at any contract, with fewer active replicas than it asks for (a lost,
    /// ended or ending replica no longer counts), with its replicas: what a repair is for.
    pub async fn orders_short(&self) -> Result<Vec<OrderWithReplicas>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders WHERE state = $1 AND order_id IS NOT NULL
             ORDER BY created_ms, piece_cid"
        ))
        .bind(OrderState::Open.as_str())
        .fetch_all(&self.pool)
        .await?;
        let orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        let all = self.with_replicas(orders).await?;
        Ok(all
            .into_iter()
            .filter(|o| !o.cancelled && o.replicas_active < usize::from(o.order.replicas_target))
            .collect())
    }

    /// Every order with an id, with its slot events and replicas: what the providers' stats
    /// are computed from.
    pub async fn order_histories(&self) -> Result<Vec<OrderHistory>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders WHERE order_id IS NOT NULL"
        ))
        .fetch_all(&self.pool)
        .await?;
        let orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .folded(orders)
            .await?
            .into_iter()
            .flat_map(|f| {
                let padded_size = f.order.padded_size;
                f.histories.into_iter().map(move |(events, replicas)| OrderHistory {
                    events,
                    replicas,
                    padded_size,
                })
            })
            .collect())
    }

    /// The last block any event of the oracle's orders or market read is from (what
    /// `providers` takes for now when no head is given).
    pub async fn latest_deal_block(&self) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(n) AS n FROM (
               SELECT MAX(block_number) AS n FROM deal_events
               UNION ALL SELECT MAX(epoch) AS n FROM deal_market) AS latest",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(opt_u64(&row, "n")?.unwrap_or(0))
    }

    /// Every provider the oracle's orders have seen or probed, scored at `head` (default: the
    /// latest block the store knows of), with the operator's suspensions.
    pub async fn providers(
        &self,
        head: Option<u64>,
        rules: &ScoreRules,
    ) -> Result<Vec<ProviderStats>, StoreError> {
        let histories = self.order_histories().await?;
        let head = match head {
            Some(head) => head,
            None => self.latest_deal_block().await?,
        };
        // Older probes weigh under 2^-10 of a new one: not read.
        let samples = self.probe_samples(head.saturating_sub(rules.horizon())).await?;
        let totals = self.probe_totals().await?;
        let suspended = self.suspended_providers().await?;
        let probes = ProbeInputs { samples: &samples, totals: &totals, suspended: &suspended };
        Ok(provider_stats(&histories, &probes, head, rules))
    }

    async fn with_replicas(
        &self,
        orders: Vec<OrderRecord>,
    ) -> Result<Vec<OrderWithReplicas>, StoreError> {
        Ok(self
            .folded(orders)
            .await?
            .into_iter()
            .map(|f| {
                // Providers holding it: a renewal beside its ending deal is one provider.
                let mut holders: Vec<u64> =
                    f.replicas.iter().filter(|r| r.counts()).map(|r| r.provider).collect();
                holders.sort_unstable();
                holders.dedup();
                let replicas_active = holders.len();
                OrderWithReplicas {
                    replicas_on_chain: f.target.unwrap_or(f.order.replicas_target),
                    order: f.order,
                    replicas_active,
                    cancelled: f.cancelled,
                    replicas: f.replicas,
                }
            })
            .collect())
    }

    /// Each order with its slot events and the replicas folded from them, market views and
    /// probe views attached.
    async fn folded(&self, orders: Vec<OrderRecord>) -> Result<Vec<Folded>, StoreError> {
        let mut events = self.slot_events(&orders).await?;
        let markets = self.market_views_of(&events).await?;
        let mut folded: Vec<Folded> = orders
            .into_iter()
            .map(|order| {
                let key = order.order_id.map(|id| (lower(order.contract), id));
                let OrderEvents { tagged, cancelled, target } =
                    key.and_then(|k| events.remove(&k)).unwrap_or_default();
                if order.backend != Backend::Contract {
                    let events: Vec<SlotEvent> = tagged.into_iter().map(|(_, e)| e).collect();
                    let (mut replicas, _) = fold(&events);
                    attach(&mut replicas, &markets);
                    let histories = vec![(events, replicas.clone())];
                    return Folded { order, histories, cancelled, target, replicas };
                }
                // A contract order: each proposal is its own replica (a renewal at the same
                // provider is a second one), and the market's word stands for the activation
                // no client is told of.
                let mut groups: Vec<(Option<String>, Vec<SlotEvent>)> = Vec::new();
                for (proposal, event) in tagged {
                    match groups.iter_mut().find(|(p, _)| *p == proposal) {
                        Some((_, events)) => events.push(event),
                        None => groups.push((proposal, vec![event])),
                    }
                }
                let mut histories = Vec::with_capacity(groups.len());
                let mut replicas = Vec::new();
                for (proposal, mut events) in groups {
                    let folded = fold_contract(&mut events, &markets, proposal.as_deref());
                    replicas.extend(folded.iter().copied());
                    histories.push((events, folded));
                }
                replicas.sort_by_key(|r| (r.provider, r.since_block));
                Folded { order, histories, cancelled, target, replicas }
            })
            .collect();
        let all = folded.iter_mut().flat_map(|f| {
            let Folded { replicas, histories, .. } = f;
            replicas.iter_mut().chain(histories.iter_mut().flat_map(|(_, r)| r.iter_mut()))
        });
        self.probes_and_terms(all.collect()).await?;
        Ok(folded)
    }

    /// Puts on `replicas` what the store knows beside their events: their probes (kept by
    /// [`Replica::probe_key`]: a market deal's id or a direct deal's key) and, for direct
    /// deals (no market deal to read), their term's view at the latest block the store knows
    /// ([`direct_term_view`]).
    pub(super) async fn probes_and_terms(
        &self,
        mut replicas: Vec<&mut Replica>,
    ) -> Result<(), StoreError> {
        let mut keys: Vec<u64> = replicas.iter().filter_map(|r| r.probe_key()).collect();
        keys.sort_unstable();
        keys.dedup();
        let probes = self.probe_views(&keys).await?;
        let head = match replicas.iter().any(|r| r.is_direct()) {
            true => Some(self.latest_known_block().await?),
            false => None,
        };
        for r in &mut replicas {
            r.probe = r.probe_key().and_then(|key| probes.get(&key).copied());
            if let Some(view) = head.and_then(|head| direct_term_view(r, head)) {
                r.market = Some(view);
            }
        }
        Ok(())
    }

    /// The latest block this store knows of: deal events, market reads, and the watchers'
    /// cursors (which move on blocks without events too). Each maximum is read from an index
    /// (migration `0023_latest_block`).
    async fn latest_known_block(&self) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(n) AS n FROM (
               SELECT MAX(block_number) AS n FROM cursors
               UNION ALL SELECT MAX(block_number) AS n FROM deal_events
               UNION ALL SELECT MAX(epoch) AS n FROM deal_market) AS latest",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(opt_u64(&row, "n")?.unwrap_or(0))
    }

    /// The replicas to probe: active with a deal (a market deal, or a direct deal under its
    /// [`Replica::probe_key`]), not refuted by the market or past a direct deal's term, of
    /// every open order (lost ones too: the prober probes them less often).
    pub async fn probe_targets(&self) -> Result<Vec<ProbeTarget>, StoreError> {
        self.probe_targets_of(None).await
    }

    /// [`Self::probe_targets`], of the orders of `piece` only if given.
    pub async fn probe_targets_of(
        &self,
        piece: Option<&str>,
    ) -> Result<Vec<ProbeTarget>, StoreError> {
        let of_piece = if piece.is_some() { " AND piece_cid = $2" } else { "" };
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders WHERE state = $1 AND order_id IS NOT NULL{of_piece}"
        );
        let mut query = sqlx::query(&sql).bind(OrderState::Open.as_str());
        if let Some(piece) = piece {
            query = query.bind(piece);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        // Aggregates and split pins' parts: their payload is no CAR an SP lists blocks of.
        let of_piece = if piece.is_some() { " AND o.piece_cid = $2" } else { "" };
        let sql = format!(
            "SELECT o.piece_cid FROM deal_orders o WHERE o.state = $1{of_piece} AND (
               EXISTS (SELECT 1 FROM buckets b WHERE b.piece_cid = o.piece_cid)
               OR EXISTS (SELECT 1 FROM piece_splits s WHERE s.part_cid = o.piece_cid))"
        );
        let mut query = sqlx::query(&sql).bind(OrderState::Open.as_str());
        if let Some(piece) = piece {
            query = query.bind(piece);
        }
        let not_cars: std::collections::HashSet<String> = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("piece_cid"))
            .collect::<Result<_, _>>()?;
        let mut targets = Vec::new();
        for f in self.folded(orders).await? {
            let plain_car = !not_cars.contains(&f.order.piece_cid);
            for r in &f.replicas {
                let Some(deal_id) = r.probe_key() else { continue };
                if r.state != ReplicaState::Active || r.gone() {
                    continue;
                }
                targets.push(ProbeTarget {
                    deal_id,
                    provider: r.provider,
                    piece_cid: f.order.piece_cid.clone(),
                    payload_cid: f.order.payload_cid.clone(),
                    plain_car,
                    probe: r.probe,
                });
            }
        }
        Ok(targets)
    }

    /// The pieces whose copy here may go under `rules` at `now_ms`: single CARs (not an
    /// aggregate, a bucket's piece or a split pin's) of open orders made `after_ms` ago or
    /// more, of `min_size` bytes or more, whose levels are kept (so reads from providers can
    /// be checked), with every replica the order asks for active and `min_verified` of them
    /// verified by a probe within `verified_within_ms` (lost ones count for neither; direct
    /// deals, whose early end nothing on chain shows, count as active but not as verified).
    pub async fn cold_pieces(
        &self,
        now_ms: u64,
        rules: &crate::domain::probe::ColdRules,
        read_back: bool,
    ) -> Result<Vec<String>, StoreError> {
        // Read back whole within the window too (`cold_checks`), and, if its pins' blocks go
        // too, their places all recorded (`block_pieces`), if asked.
        let checked = match (read_back, rules.drop_blocks) {
            (true, false) => {
                " AND EXISTS (SELECT 1 FROM cold_checks c
                              WHERE c.piece_cid = o.piece_cid AND c.checked_ms >= $4)"
            }
            (true, true) => {
                " AND EXISTS (SELECT 1 FROM cold_checks c
                              WHERE c.piece_cid = o.piece_cid AND c.checked_ms >= $4)
                  AND EXISTS (SELECT 1 FROM block_pieces bp
                              WHERE bp.piece_cid = o.piece_cid AND bp.blocks > 0)"
            }
            (false, _) => " AND $4 >= 0",
        };
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM deal_orders o
             WHERE o.state = $1 AND o.order_id IS NOT NULL AND o.car_size >= $2
               AND o.created_ms <= $3
               AND EXISTS (SELECT 1 FROM piece_levels l WHERE l.piece_cid = o.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM buckets b WHERE b.piece_cid = o.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM bucket_pieces p WHERE p.piece_cid = o.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM piece_splits s
                               WHERE s.piece_cid = o.piece_cid OR s.part_cid = o.piece_cid)
               {checked}"
        ))
        .bind(OrderState::Open.as_str())
        .bind(int(rules.min_size)?)
        .bind(int(now_ms.saturating_sub(rules.after_ms))?)
        .bind(int(now_ms.saturating_sub(rules.verified_within_ms))?)
        .fetch_all(&self.pool)
        .await?;
        let orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        let mut cold = Vec::new();
        for f in self.folded(orders).await? {
            let mut active: Vec<u64> = Vec::new();
            let mut verified: Vec<u64> = Vec::new();
            for r in f.replicas.iter().filter(|r| r.counts()) {
                active.push(r.provider);
                // A direct deal never stands for the copy: nothing on chain would say its
                // sector ended (probes alone would).
                if r.deal_id.is_some()
                    && r.probe.is_some_and(|p| {
                        p.last_probe_ok
                            && p.oks_in_a_row >= rules.min_oks.max(1)
                            && now_ms.saturating_sub(p.last_probe) <= rules.verified_within_ms
                    })
                {
                    verified.push(r.provider);
                }
            }
            for list in [&mut active, &mut verified] {
                list.sort_unstable();
                list.dedup();
            }
            if active.len() >= usize::from(f.order.replicas_target)
                && verified.len() >= rules.min_verified as usize
            {
                cold.push(f.order.piece_cid.clone());
            }
        }
        Ok(cold)
    }

    /// The market views of the deals named in `events`.
    async fn market_views_of(
        &self,
        events: &HashMap<(String, u64), OrderEvents>,
    ) -> Result<HashMap<u64, MarketView>, StoreError> {
        let ids = deal_ids(events.values().flat_map(|o| o.tagged.iter().map(|(_, e)| e)));
        self.market_views(&ids).await
    }

    /// The last market view of each of `deal_ids` that has one.
    pub async fn market_views(
        &self,
        deal_ids: &[u64],
    ) -> Result<HashMap<u64, MarketView>, StoreError> {
        let mut out = HashMap::new();
        for chunk in deal_ids.chunks(500) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT deal_id, state, epoch, start_epoch, end_epoch FROM deal_market
                 WHERE deal_id IN ({})",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(int(*id)?);
            }
            for row in &query.fetch_all(&self.pool).await? {
                let state: String = row.try_get("state")?;
                let view = MarketView {
                    state: MarketState::parse(&state)
                        .ok_or_else(|| StoreError::Corrupt(format!("market state {state:?}")))?,
                    epoch: get_u64(row, "epoch")?,
                    start_epoch: opt_u64(row, "start_epoch")?,
                    end_epoch: opt_u64(row, "end_epoch")?,
                };
                out.insert(get_u64(row, "deal_id")?, view);
            }
        }
        Ok(out)
    }

    /// Keeps the market's latest answers (by deal id), in one transaction.
    pub async fn record_market(
        &self,
        views: &[(u64, MarketView)],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (deal_id, view) in views {
            sqlx::query(
                "INSERT INTO deal_market (deal_id, state, epoch, start_epoch, end_epoch, checked_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (deal_id) DO UPDATE SET state = $2, epoch = $3, start_epoch = $4,
                   end_epoch = $5, checked_ms = $6",
            )
            .bind(int(*deal_id)?)
            .bind(view.state.as_str())
            .bind(int(view.epoch)?)
            .bind(view.start_epoch.map(int).transpose()?)
            .bind(view.end_epoch.map(int).transpose()?)
            .bind(int(now_ms)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many orders are in each state (every state, zeros included).
    pub async fn order_counts(&self) -> Result<Vec<(OrderState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM deal_orders GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut counts: Vec<(OrderState, u64)> = OrderState::ALL.iter().map(|s| (*s, 0)).collect();
        for row in &rows {
            let state: String = row.try_get("state")?;
            let state = OrderState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("order state {state:?}")))?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = get_u64(row, "n")?;
            }
        }
        Ok(counts)
    }

    /// The slot events of `orders` in chain order, and whether each was cancelled, by
    /// (contract, order id): one query for the page.
    async fn slot_events(
        &self,
        orders: &[OrderRecord],
    ) -> Result<HashMap<(String, u64), OrderEvents>, StoreError> {
        let mut ids: Vec<u64> = orders.iter().filter_map(|o| o.order_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out: HashMap<(String, u64), OrderEvents> = HashMap::new();
        // In chunks: a statement takes at most 32,766 (SQLite) or 65,535 (PostgreSQL) values.
        // Each order's events are all in its chunk, so their order holds.
        for chunk in ids.chunks(500) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT contract, order_id, kind, provider, deal_id, start_epoch, end_epoch,
                        block_number, deadline, proposal, replicas
                 FROM deal_events WHERE order_id IN ({})
                 ORDER BY block_number, log_index",
                list.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(int(*id)?);
            }
            for row in &query.fetch_all(&self.pool).await? {
                let contract: String = row.try_get("contract")?;
                let entry = out.entry((contract, get_u64(row, "order_id")?)).or_default();
                let kind: String = row.try_get("kind")?;
                entry.cancelled |= kind == "cancelled";
                if kind == "target" {
                    let replicas = need(opt_u64(row, "replicas")?, "replicas")?;
                    let replicas = u16::try_from(replicas)
                        .map_err(|_| StoreError::Corrupt(format!("replica target {replicas}")))?;
                    entry.target = Some(replicas);
                }
                let proposal: Option<String> = row.try_get("proposal")?;
                entry.tagged.extend(slot_event_from_row(row)?.map(|e| (proposal, e)));
            }
        }
        Ok(out)
    }
}

/// The market deal ids `events` name (published or activated), sorted, once each.
pub(super) fn deal_ids<'a>(events: impl Iterator<Item = &'a SlotEvent>) -> Vec<u64> {
    let mut ids: Vec<u64> = events
        .filter_map(|e| match e.kind {
            SlotEventKind::Published { deal_id } => Some(deal_id),
            SlotEventKind::Activated { deal_id, .. } => deal_id,
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A contract deal's events (one proposal's, or one order's) folded with the market's views,
/// the market's word standing for the activation no client is told of (appended to `events`,
/// so that the scores count it); a direct deal among them keyed for its probes by `proposal`
/// ([`Replica::key_direct`]).
pub(super) fn fold_contract(
    events: &mut Vec<SlotEvent>,
    markets: &HashMap<u64, MarketView>,
    proposal: Option<&str>,
) -> Vec<Replica> {
    let (mut replicas, _) = fold(events);
    attach(&mut replicas, markets);
    let seen: Vec<SlotEvent> = replicas.iter().filter_map(activated_by_market).collect();
    if !seen.is_empty() {
        events.extend(seen);
        events.sort_by_key(|e| e.block_number);
        replicas = fold(events).0;
        attach(&mut replicas, markets);
    }
    if let Some(proposal) = proposal {
        replicas.iter_mut().for_each(|r| r.key_direct(proposal));
    }
    replicas
}

/// Forgets a watcher stream's events from blocks above `above` (a reorg); how many.
pub(super) async fn forget_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    stream: &str,
    above: u64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM deal_events WHERE stream = $1 AND block_number > $2")
        .bind(stream)
        .bind(int(above)?)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Puts each replica's market view (of its current deal) on it.
fn attach(replicas: &mut [Replica], markets: &HashMap<u64, MarketView>) {
    for r in replicas {
        r.market = r.deal_id.and_then(|id| markets.get(&id).copied());
    }
}

/// The deal watcher's store for one `PerpetualStorage` contract: its events about the orders
/// `operator` created.
#[derive(Debug, Clone)]
pub struct DealLogs {
    store: Store,
    contract: Address,
    /// The operator, then the DataDAOs whose orders it funds.
    clients: Vec<Address>,
}

impl DealLogs {
    /// Events of `contract` about `operator`'s orders, kept in `store`.
    pub fn new(store: Store, contract: Address, operator: Address) -> Self {
        Self { store, contract, clients: vec![operator] }
    }

    /// Also the orders `dao` is the client of (those its `fundOrder` made).
    #[must_use]
    pub fn with_dao(mut self, dao: Address) -> Self {
        self.clients.push(dao);
        self
    }
}

impl LogStore for DealLogs {
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
        let decoded = crate::deals::events::decode(self.contract, &logs);
        self.store
            .ingest_deal_events(
                stream,
                self.contract,
                &self.clients,
                &decoded,
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
        self.store.rewind_deal_events(stream, self.contract, above, cursor).await
    }
}

/// An order, its histories (its slot events with the replicas they fold to: one for a
/// perpetual order, one per proposal for a contract order), whether it was cancelled, and its
/// replicas.
struct Folded {
    order: OrderRecord,
    histories: Vec<(Vec<SlotEvent>, Vec<Replica>)>,
    cancelled: bool,
    target: Option<u16>,
    replicas: Vec<Replica>,
}

/// An order's stored events: its slots' (tagged with their proposal), whether it was cancelled,
/// and the replica target its client last set, if it changed it.
#[derive(Debug, Default)]
struct OrderEvents {
    tagged: Vec<Tagged>,
    cancelled: bool,
    target: Option<u16>,
}

/// A slot event with the contract-deal proposal it is about (none for a perpetual slot's).
type Tagged = (Option<String>, SlotEvent);
