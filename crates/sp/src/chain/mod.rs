//! The chain edge of the agent: which events point at work ([`events`]), the watcher's store
//! for them ([`LeadLogs`], an [`estuary_chain::LogStore`]), and the contract reads and
//! transactions each step needs ([`contracts`]).
//!
//! Events are only pointers: an event about an order or a proposal marks it to be looked at
//! again, and what to do is decided from the contract's state read then. So an event seen twice,
//! out of order, or undone by a reorg costs one more look and nothing else.

pub mod contracts;
pub mod events;

use std::sync::Arc;

use alloy::{primitives::Address, rpc::types::Log};
use estuary_chain::{Cursor, LogStore};

pub use contracts::{ChainClient, ReadError};
pub use events::ContractKind;

use crate::store::{Store, StoreError};

/// The watcher's store for one contract: its logs become leads.
#[derive(Debug, Clone)]
pub struct LeadLogs {
    store: Store,
    kind: ContractKind,
    contract: Address,
    miner: u64,
}

impl LeadLogs {
    /// Leads from `contract` (of `kind`) for `miner`, kept in `store`.
    pub fn new(store: Store, kind: ContractKind, contract: Address, miner: u64) -> Arc<Self> {
        Arc::new(Self { store, kind, contract, miner })
    }
}

impl LogStore for LeadLogs {
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
        let leads = events::decode(self.kind, self.contract, self.miner, &logs);
        self.store.ingest_leads(stream, &leads, cursor, crate::domain::now_ms()).await
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
        self.store.rewind(stream, self.contract, above, cursor).await
    }
}
