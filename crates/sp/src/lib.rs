//! Estuary's SP agent: what a storage provider runs beside Boost, Curio or lotus-miner to find
//! Estuary's deals on chain, take the ones that fit its policy, fetch and verify their data,
//! hand it to sealing, prove the deals to the contracts, collect the bounties, and serve
//! retrievals of what it holds.
//!
//! ```text
//!   chain ──► estuary_chain::Watcher (one per contract; durable cursor, backfill, reorgs)
//!               │ PerpetualStorage: orders, reopened slots · DealClient: proposals
//!               ▼
//!             leads ──► evaluator ──► domain::policy::evaluate ──► skipped (with the reason)
//!                                            │ taken
//!                                            ▼
//!             work ──► worker: one step per state, through domain::work::apply
//!               claiming ─► fetching ─► sealing ─► activating ─► proving ─► active ─► ended
//!                  │claim      │HTTP, ranges │Sealer      │Sealer       │publish   │collect,
//!                  │(bond)     │commP stream │hand_over   │poll         │          │reopen
//!                  ▼           ▼             ▼            ▼             ▼          ▼
//!             TxManager (the miner's controlling key; ledger in SQLite: never sent twice)
//!
//!   HTTP: /health /metrics /status /work /claims /deals · /piece/{cid} · /ipfs/{cid}
//! ```
//!
//! Roles, one module each:
//! - [`domain`]: what the agent decides, pure: the policy, the work's state machine, what a
//!   piece must be, where a CAR can be downloaded from;
//! - [`store`]: SQLite — leads, work (compare-and-set through the machine), pieces and their
//!   blocks, the watchers' cursors and the transaction ledger;
//! - [`chain`]: which events point at work, and the contract reads and transactions;
//! - [`fetch`]: the download, resumable, guarded against origins that lie or drip, checked as
//!   it streams;
//! - [`sealer`]: the [`sealer::Sealer`] trait and its two implementations (simulated, command);
//! - [`index`]: the blocks of a verified CAR, for the gateway;
//! - [`agent`]: the loops (evaluator, worker, housekeeping) and each state's step;
//! - [`api`]: the HTTP server;
//! - [`config`]: the settings, declared once per component;
//! - [`service`]: the wiring and an orderly shutdown.
//!
//! Crash safety: every step is stored before its effect, and every effect is looked for on
//! chain before it is sent (a claim, a published deal, an active slot), with transactions
//! recorded in the ledger before they are sent; a download resumes from its partial file. So a
//! `SIGKILL` at any point resumes without a second claim, deal or publish.

pub mod agent;
pub mod api;
pub mod chain;
pub mod config;
pub mod domain;
pub mod fetch;
pub mod index;
pub mod sealer;
pub mod service;
pub mod store;

pub use config::SpConfig;
pub use service::{Agent, AgentError};
