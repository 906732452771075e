//! What can go wrong at the chain edge, said so that a caller can act on it: whether retrying is
//! safe ([`ChainError::is_retryable`]) and, for transactions, whether one may already be on
//! chain ([`TxError::may_be_on_chain`]).

use std::time::Duration;

use alloy::{primitives::B256, transports::TransportError};

/// A read from the chain failed. Every variant is retryable: nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The endpoint failed or refused the call.
    #[error("{method} on {endpoint}: {source}")]
    Rpc {
        /// The endpoint.
        endpoint: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// What failed.
        #[source]
        source: TransportError,
    },
    /// The endpoint did not answer in time.
    #[error("{endpoint} did not answer within {after:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// How long it was given.
        after: Duration,
    },
    /// The endpoint is behind: it does not know a block the watcher already stored.
    #[error("{endpoint} does not have block {block} yet (lagging)")]
    Lagging {
        /// The endpoint.
        endpoint: String,
        /// The block it lacks.
        block: u64,
    },
    /// The endpoint answered something no correct node sends (a mined log without its
    /// position, a block missing below the head).
    #[error("{endpoint} answered nonsense: {what}")]
    BadAnswer {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        what: String,
    },
    /// The endpoint serves another chain.
    #[error("{endpoint} serves chain {actual}, not {expected}")]
    WrongChain {
        /// The endpoint.
        endpoint: String,
        /// The chain configured.
        expected: u64,
        /// The chain it serves.
        actual: u64,
    },
}

impl ChainError {
    /// Whether the same call may succeed later (on this endpoint or another).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::WrongChain { .. })
    }
}

/// A transaction could not be brought to its confirmations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The call was simulated (gas estimation) and refused: nothing was sent. `revert` holds
    /// the revert data for the caller to decode.
    #[error("the call would revert: {source}")]
    WouldRevert {
        /// The simulation's error.
        #[source]
        source: alloy::contract::Error,
    },
    /// Sending failed. The node may or may not have taken the transaction.
    #[error("sending the transaction with nonce {nonce}: {source}")]
    Send {
        /// The nonce it used.
        nonce: u64,
        /// What failed.
        #[source]
        source: TransportError,
    },
    /// Sent, and not mined within the time allowed. It may still be mined: the ledger keeps it,
    /// and the next attempt waits for it instead of sending another.
    #[error("transaction with nonce {nonce} not mined after {after:?} ({} versions sent)", hashes.len())]
    NotMined {
        /// Its nonce.
        nonce: u64,
        /// Every version sent.
        hashes: Vec<B256>,
        /// How long it was waited for.
        after: Duration,
    },
    /// Mined, and reverted.
    #[error("transaction {tx} reverted")]
    Reverted {
        /// The transaction.
        tx: B256,
    },
    /// Reading the chain while waiting failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The ledger of sent transactions failed.
    #[error("the transaction ledger failed: {0}")]
    Ledger(Box<dyn std::error::Error + Send + Sync>),
}

impl TxError {
    /// Whether trying again later is safe and may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::WouldRevert { .. })
    }

    /// Whether a transaction may already be in a mempool or on chain.
    pub fn may_be_on_chain(&self) -> bool {
        matches!(self, Self::Send { .. } | Self::NotMined { .. } | Self::Reverted { .. })
            || matches!(self, Self::Chain(_))
    }
}
