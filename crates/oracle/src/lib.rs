//! Estuary's oracle: follows pin requests on chain (and pins made through the IPFS Pinning
//! Service API), fetches and verifies their DAGs, packs them into CARs and pieces, and reports
//! every outcome on chain.
//!
//! ```text
//!                 ┌──────────── domain (pure): jobs, states, the machine ───────────┐
//!                 │                                                                 │
//!   chain ──► estuary_chain::Watcher ──► store ◄── pipeline: claim ─► fetch ─► pack ─► report
//!   (confirmed logs, reorgs)     RequestLogs   │   (workers, leases)   │               │
//!                                              │                       ▼               ▼
//!   HTTP ──► api (axum) ───────────────────────┘                 blockstore     TxManager
//!            requests, gateway, /piece, uploads, pins            (fs | S3)      (estuary_chain)
//!   libp2p ──► p2p (Bitswap both ways) ─────────────────────────► blockstore
//! ```
//!
//! Roles, one module each — a newcomer finds any behaviour from the names:
//! - [`domain`]: what a job is and the one state machine every change of state goes through
//!   (pure: no I/O, no clock);
//! - [`store`]: the database (SQLite or PostgreSQL, one implementation), which only
//!   compares-and-sets the machine's changes;
//! - [`fetch`]: where to fetch a DAG from (a pure plan) and the code that runs it;
//! - [`blockstore`]: where blocks live (a directory, or S3), with faults kept apart from
//!   missing blocks;
//! - [`pipeline`]: the workers and their stages, packing, and reports on chain;
//! - [`deals`]: orders that keep reported pieces on Filecoin (the perpetual-storage backend) and
//!   the watcher's store of their events;
//! - [`commands`]: operators' and requesters' commands, through the machine;
//! - [`reconcile`]: the check that every pinned DAG is still whole;
//! - [`gc`]: garbage collection — only what a live pin needs is kept — and the gate that keeps
//!   it from overlapping the writers it must not;
//! - [`backup`]: consistent backups of a running oracle, and restores;
//! - [`p2p`]: the libp2p node;
//! - [`api`]: the HTTP API (status, requests, trustless gateway, uploads, pinning API);
//! - [`config`]: the settings, declared once per component;
//! - [`service`]: the wiring and an orderly shutdown.
//!
//! What the chain needs — the watcher around a pure planner, the transaction manager — is
//! [`estuary_chain`], shared with the SP agent; the DAG walks, the canonical CAR order and the
//! packer are `estuary_dag` and `estuary_pack`, shared with the CLI and the browser node.

pub mod api;
pub mod backup;
pub mod blockstore;
pub mod commands;
pub mod config;
pub mod deals;
pub mod domain;
pub mod fetch;
pub mod gc;
pub mod p2p;
pub mod pipeline;
pub mod reconcile;
pub mod service;
pub mod store;

pub use config::OracleConfig;
pub use service::{Oracle, OracleError};
