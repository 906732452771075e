//! The pin pipeline: workers that claim jobs and run their stages — fetch, pack, report —
//! each stage's outcome stored through the state machine.
//!
//! ```text
//!   Store::claim ──► worker ──► fetch (crate::fetch) ──► pack ──► report ──► Store::transition
//!                     │ lease + heartbeats                         │ Reporter (TxManager)
//! ```
//!
//! - [`worker`]: the claim loop, leases, stages, and the supervisor;
//! - [`pack`]: a pinned DAG to a CAR and its piece (`estuary_pack`, the canonical order);
//! - [`report`]: reports on chain through the operator's transaction manager, batched;
//! - [`faults`]: the pause of every worker while the blockstore fails, and its probe.
//!
//! Tests: `tests/it/pipeline.rs` (fetch and pack), `tests/it/oracle_*.rs` (the whole oracle
//! against anvil).

pub mod faults;
pub mod pack;
pub mod report;
pub mod worker;

pub use faults::Faults;
pub use worker::{Pipeline, WorkerConfig};
