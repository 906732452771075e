//! The perpetual-storage backend: one `PerpetualStorage` order per piece the oracle packed and
//! reported (with buckets: per closed bucket's aggregate, and per piece too large for a
//! bucket), funded by the operator, downloadable from the oracle's `/piece/{pieceCid}`. An
//! aggregate's deal label (`payloadCid`) is its first pin's root: an SP that indexes FRC-0058
//! aggregates (as Boost does) serves every pin in it by CID.
//!
//! ```text
//!   store: pieces of reported pins with no order ──► record `sending` (head noted)
//!   ──► pre-flight (sizes, term, replicas, funding, balance: refused here costs no gas)
//!   ──► TxManager::send(createOrder, key `order/<contract>/<piece>`) ──► receipt: `open`, id
//!                                           └─ refused by the contract: `failed`, with why
//! ```
//!
//! Exactly once, through restarts: a transaction still pending for the order's key is adopted,
//! not sent again (the ledger); one that was mined before the oracle stopped is found by the
//! deal watcher (`OrderCreated` by the operator, for the piece, from the noted head on), and an
//! order left `sending` by an earlier process is only sent again once the watcher has read past
//! the head seen at start and found nothing.

use std::{collections::HashMap, time::Duration};

use alloy::{
    primitives::{Address, Bytes, U256, aliases::U96},
    providers::Provider,
};
use estuary_chain::{TxError, TxManager, WatchState};
use estuary_contracts::{PerpetualStorage, perpetual::PerpetualStorage::PerpetualStorageErrors};
use estuary_piece::PieceCid;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{
        deal::{Backend, ContractLimits, OrderPiece, OrderState, OrderTerms, preflight},
        now_ms,
    },
    store::{OrderRecord, PieceToOrder, Store, StoreError},
};

/// Gas set aside per order in the balance check (createOrder with its origins costs less).
const GAS_PER_ORDER: u128 = 2_000_000;
/// Pieces taken into orders per round.
const BATCH: u64 = 16;

/// Why a round stopped (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum MakerError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read from the chain failed.
    #[error("reading {what} from the chain: {reason}")]
    Read {
        /// What was read.
        what: &'static str,
        /// The endpoint's error.
        reason: String,
    },
}

/// Makes and sends the orders.
#[derive(Debug)]
pub struct PerpetualMaker {
    store: Store,
    tx: TxManager,
    contract: Address,
    terms: OrderTerms,
    budget: Option<u128>,
    bucketed: Option<u64>,
    public_url: String,
    watcher: watch::Receiver<WatchState>,
    every: Duration,
}

impl PerpetualMaker {
    /// Orders at `contract` on `terms`, sent with `tx`, downloadable under `public_url`; the
    /// deal watcher of `contract` reports on `watcher`.
    pub fn new(
        store: Store,
        tx: TxManager,
        contract: Address,
        terms: OrderTerms,
        public_url: &str,
        watcher: watch::Receiver<WatchState>,
    ) -> Self {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let every = Duration::from_secs(1);
        Self {
            store,
            tx,
            contract,
            terms,
            budget: None,
            bucketed: None,
            public_url,
            watcher,
            every,
        }
    }

    /// Pins are bucketed, and a bucket takes pieces up to `largest` padded bytes: order only
    /// larger pieces, and the closed buckets' aggregates.
    #[must_use]
    pub fn with_buckets(mut self, largest: Option<u64>) -> Self {
        self.bucketed = largest;
        self
    }

    /// At most `budget` attoFIL committed to orders in all (`None`: no limit).
    #[must_use]
    pub fn with_budget(mut self, budget: Option<u128>) -> Self {
        self.budget = budget;
        self
    }

    fn read(what: &'static str) -> impl FnOnce(alloy::contract::Error) -> MakerError {
        move |e| MakerError::Read { what, reason: e.to_string() }
    }

    async fn limits(&self) -> Result<ContractLimits, MakerError> {
        let ps = PerpetualStorage::new(self.contract, self.tx.provider());
        Ok(ContractLimits {
            min_term: ps.minTerm().call().await.map_err(Self::read("minTerm"))?,
            max_term: ps.maxTerm().call().await.map_err(Self::read("maxTerm"))?,
            max_replicas: ps.MAX_REPLICAS().call().await.map_err(Self::read("MAX_REPLICAS"))?,
            max_rise_bps: ps
                .MAX_RISE_BPS()
                .call()
                .await
                .map_err(Self::read("MAX_RISE_BPS"))?
                .try_into()
                .unwrap_or(u64::MAX),
        })
    }

    async fn head(&self) -> Result<u64, MakerError> {
        self.tx
            .provider()
            .get_block_number()
            .await
            .map_err(|e| MakerError::Read { what: "the head", reason: e.to_string() })
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut limits = None;
        // Orders an earlier process left `sending`: held until the watcher has read past the
        // head seen now (their transaction may be on chain).
        let mut held: Option<HashMap<String, u64>> = None;
        loop {
            if held.is_none() {
                held = match (
                    self.head().await,
                    self.store.orders_in(self.contract, OrderState::Sending).await,
                ) {
                    (Ok(head), Ok(orders)) => {
                        Some(orders.into_iter().map(|o| (o.piece_cid, head)).collect())
                    }
                    (Err(e), _) => {
                        warn!(error = %e, "deal maker: waiting for the chain");
                        None
                    }
                    (_, Err(e)) => {
                        warn!(error = %e, "deal maker: waiting for the database");
                        None
                    }
                };
            }
            if limits.is_none() {
                limits = self
                    .limits()
                    .await
                    .inspect_err(|e| warn!(error = %e, "deal maker: the contract's limits"))
                    .ok();
            }
            if let (Some(limits), Some(held)) = (&limits, held.as_mut())
                && let Err(e) = self.round(limits, held).await
            {
                warn!(error = %e, "deal maker round failed; retried");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// Records orders for new pieces and sends those waiting.
    async fn round(
        &self,
        limits: &ContractLimits,
        held: &mut HashMap<String, u64>,
    ) -> Result<(), MakerError> {
        let pieces = self.store.pieces_to_order(self.contract, BATCH, self.bucketed).await?;
        if !pieces.is_empty() {
            let head = self.head().await?;
            for piece in pieces {
                let Some(order) = self.order_for(&piece, head) else {
                    warn!(piece = %piece.piece_cid, "deal maker: not a piece CID; no order");
                    continue;
                };
                self.store.record_order(&order, now_ms()).await?;
            }
        }
        // What the budget has committed, read once a round and kept up to date as orders go.
        let mut committed = match self.budget {
            Some(_) => Some(self.store.committed_funding(self.contract).await?),
            None => None,
        };
        for order in self.store.orders_in(self.contract, OrderState::Sending).await? {
            if let Some(&until) = held.get(&order.piece_cid) {
                let read = self.watcher.borrow().cursor.unwrap_or(0);
                if read < until {
                    continue;
                }
                held.remove(&order.piece_cid);
                if let Some(id) = self
                    .store
                    .created_order(
                        self.contract,
                        self.tx.sender(),
                        &order.piece_v1,
                        order.sent_block,
                    )
                    .await?
                {
                    self.store
                        .order_created(self.contract, &order.piece_cid, id, None, now_ms())
                        .await?;
                    continue;
                }
            }
            self.send(&order, limits, held, committed.as_mut()).await?;
        }
        Ok(())
    }

    fn order_for(&self, piece: &PieceToOrder, head: u64) -> Option<OrderRecord> {
        let cid: PieceCid = piece.piece_cid.parse().ok()?;
        Some(OrderRecord {
            backend: Backend::Perpetual,
            contract: self.contract,
            piece_cid: piece.piece_cid.clone(),
            piece_v1: cid.to_v1().to_cid().to_bytes(),
            payload_cid: piece.payload_cid.clone(),
            padded_size: piece.padded_size,
            car_size: piece.car_size,
            replicas_target: self.terms.replicas,
            state: OrderState::Sending,
            order_id: None,
            tx_hash: None,
            error: None,
            funding: None,
            sent_block: head,
            created_ms: 0,
            updated_ms: 0,
        })
    }

    async fn send(
        &self,
        order: &OrderRecord,
        limits: &ContractLimits,
        held: &mut HashMap<String, u64>,
        committed: Option<&mut u128>,
    ) -> Result<(), MakerError> {
        let provider = self.tx.provider();
        let balance = provider.get_balance(self.tx.sender()).await.map_err(|e| {
            MakerError::Read { what: "the operator's balance", reason: e.to_string() }
        })?;
        let gas_price = provider
            .get_gas_price()
            .await
            .map_err(|e| MakerError::Read { what: "the gas price", reason: e.to_string() })?;
        let piece = OrderPiece { padded_size: order.padded_size, car_size: order.car_size };
        let balance = u128::try_from(balance).unwrap_or(u128::MAX);
        let value = match preflight(
            &piece,
            &self.terms,
            limits,
            balance,
            gas_price.saturating_mul(GAS_PER_ORDER),
        ) {
            Ok(value) => value,
            Err(refused) => {
                warn!(piece = %order.piece_cid, reason = %refused, "order not sent (pre-flight)");
                let failed = !refused.may_pass_later();
                let error = format!("pre-flight: {refused}");
                self.store
                    .order_refused(self.contract, &order.piece_cid, &error, failed, now_ms())
                    .await?;
                return Ok(());
            }
        };
        if let (Some(budget), Some(committed)) = (self.budget, committed) {
            // An order sent before (and sent again now) is counted already.
            let others = committed.saturating_sub(order.funding.unwrap_or(0));
            if others.saturating_add(value) > budget {
                let error = format!(
                    "deal budget: {others} of {budget} attoFIL committed; this order needs {value}"
                );
                warn!(piece = %order.piece_cid, reason = %error, "order not sent");
                self.store
                    .order_refused(self.contract, &order.piece_cid, &error, false, now_ms())
                    .await?;
                return Ok(());
            }
            *committed = others.saturating_add(value);
        }
        let payload = match order.payload_cid.parse::<cid::Cid>() {
            Ok(cid) => cid.to_bytes(),
            Err(e) => {
                let error = format!("the pin's root is not a CID: {e}");
                self.store
                    .order_refused(self.contract, &order.piece_cid, &error, true, now_ms())
                    .await?;
                return Ok(());
            }
        };
        let params = PerpetualStorage::OrderParams {
            pieceCid: Bytes::from(order.piece_v1.clone()),
            payloadCid: Bytes::from(payload),
            paddedSize: order.padded_size,
            carSize: order.car_size,
            replicas: order.replicas_target,
            bounty: U96::from(self.terms.bounty),
            term: self.terms.term,
            verified: self.terms.verified,
            origins: vec![format!("{}/piece/{}", self.public_url, order.piece_cid)],
        };
        let ps = PerpetualStorage::new(self.contract, provider);
        let call = ps.createOrder(params).value(U256::from(value));
        let key = format!("order/{:#x}/{}", self.contract, order.piece_cid);
        let head = self.head().await?;
        self.store.order_funding(self.contract, &order.piece_cid, value).await?;
        match self.tx.send(call, &[key]).await {
            Ok(receipt) => {
                let created = receipt
                    .decoded_log::<PerpetualStorage::OrderCreated>()
                    .filter(|l| l.address == self.contract)
                    .and_then(|l| u64::try_from(l.data.orderId).ok());
                let tx = format!("{:#x}", receipt.transaction_hash);
                match created {
                    Some(id) => {
                        info!(piece = %order.piece_cid, order = id, %tx, "order created");
                        self.store
                            .order_created(self.contract, &order.piece_cid, id, Some(&tx), now_ms())
                            .await?;
                    }
                    None => {
                        let error = format!("transaction {tx} created no order");
                        self.store
                            .order_refused(self.contract, &order.piece_cid, &error, true, now_ms())
                            .await?;
                    }
                }
            }
            Err(TxError::WouldRevert { source }) => {
                let why = source
                    .as_decoded_interface_error::<PerpetualStorageErrors>()
                    .map_or_else(|| source.to_string(), |e| format!("{e:?}"));
                warn!(piece = %order.piece_cid, reason = %why, "the contract refuses the order");
                let error = format!("refused by the contract: {why}");
                self.store
                    .order_refused(self.contract, &order.piece_cid, &error, true, now_ms())
                    .await?;
            }
            Err(e) => {
                warn!(piece = %order.piece_cid, error = %e, "order not sent; retried");
                if e.may_be_on_chain() {
                    // Mined by now (at or below the head read now, which the watcher must pass
                    // first), or still pending (then the ledger adopts it at the next send).
                    let now = self.head().await.unwrap_or(head.saturating_add(1));
                    held.insert(order.piece_cid.clone(), now);
                }
                let error = format!("sending: {e}");
                self.store
                    .order_refused(self.contract, &order.piece_cid, &error, false, now_ms())
                    .await?;
            }
        }
        Ok(())
    }
}
