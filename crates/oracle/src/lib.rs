//! Estuary's oracle service.
//!
//! ```text
//!   chain (JSON-RPC) ──► Watcher ──► RequestStore (SQLite) ◄── HTTP API (axum)
//!                        confirmed      one row per request       GET /requests/{id}
//!                        blocks only    + cursor, one txn         GET /status, /health
//! ```
//!
//! The [`watcher`] reads `PinRequested` logs from confirmed blocks in bounded ranges, starting
//! from a cursor kept in the store. Each batch of requests and the cursor that follows it are
//! written in one transaction, so a process killed at any point resumes exactly where it stopped,
//! and a request seen twice (a re-read range, a duplicate log) is stored once.
//!
//! Storage sits behind the [`store::RequestStore`] trait; [`store::SqliteStore`] is the embedded
//! default that needs no server.

pub mod api;
pub mod blockstore;
pub mod config;
pub mod fetch;
pub mod job;
pub mod model;
pub mod p2p;
pub mod pack;
pub mod pinning;
pub mod reconcile;
pub mod report;
pub mod service;
pub mod store;
pub mod watcher;
pub mod worker;

pub use config::OracleConfig;
pub use service::{Oracle, OracleError};
