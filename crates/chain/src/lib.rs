//! Estuary's chain edge: what the oracle and the SP agent both need to read a chain safely and
//! write to it once.
//!
//! ```text
//!   ChainConfig (flags, env, file) ──► endpoints, finality, confirmations
//!
//!   planner (pure) ◄── watcher ──► LogStore (the caller's database: logs + cursor, one txn)
//!                       │ eth_getLogs over confirmed ranges, failover, reorg rewinds
//!
//!   TxManager ──► one alloy provider: FallbackLayer over every endpoint, nonce filler
//!                 (LedgerNonces), wallet; fees capped, replacements, confirmations; TxLedger
//!                 keeps every version sent, so a restart adopts instead of resending
//! ```
//!
//! - [`config`]: [`ChainConfig`], declared once for every command that reads a chain;
//! - [`planner`]: which blocks are confirmed, which range comes next, where a reorg started;
//! - [`watcher`]: the loop around it, generic over a [`watcher::LogStore`];
//! - [`tx`]: the transaction manager and its [`tx::TxLedger`] port;
//! - [`error`]: typed errors that say whether a retry is safe and whether a transaction may be
//!   on chain already;
//! - `devnet` (feature): anvil and Estuary's contracts on this machine, for the dev stack and
//!   tests.
//!
//! Tests: the planner's here (unit); the watcher and the manager against anvil in the oracle's
//! and the SP agent's integration tests.

pub mod config;
#[cfg(feature = "devnet")]
pub mod devnet;
pub mod error;
pub mod planner;
pub mod tx;
pub mod watcher;

pub use config::{ChainConfig, Finality};
pub use error::{ChainError, TxError};
pub use tx::{TxLedger, TxManager, TxPolicy};
pub use watcher::{Cursor, LogStore, WatchSpec, WatchState, Watcher};
