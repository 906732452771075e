//! The oracle's domain, pure: what a job is, the states it goes through and the one state
//! machine every change of state goes through. No I/O, no clock, no database: the store keeps
//! what this module decides, the workers and commands feed it inputs.
//!
//! ```text
//!   JobKey = JobSource (a contract on a chain | the pinning API, per account) + JobId
//!
//!   inputs ──► machine::apply(status, input, now, policy) ──► Change ──► store: compare-and-set
//!   (claim, stage outcomes, cancel, requeue, damage found, delete)
//! ```
//!
//! - [`job`]: sources, ids and keys, and how they are written down;
//! - [`state`]: job states and the machine;
//! - [`request`]: requests as read from the chain and jobs as shown to people;
//! - [`pinning`]: the IPFS Pinning Service API's objects, checked;
//! - [`upload`]: tus requests parsed and checked, and per-account quotas;
//! - [`auth`]: Sign-In with Ethereum and the signature tying an upload to a request;
//! - [`bucket`]: pins grouped into deal-sized FRC-0058 aggregates, and when buckets close;
//! - [`deal`]: orders for pieces, their pre-flight checks, and replicas folded from the storage
//!   contract's events;
//! - [`market`]: what the storage market says of a replica's deal, and what the keeper
//!   (reopen, collect) does about it;
//! - [`provider`]: what the oracle knows of each storage provider, and its score;
//! - [`placement`]: the providers the operator deals with, which of them get a piece's
//!   replicas (by policy and score), and a proposal's terms checked before it is sent.
//!
//! Tests: unit and property tests in each module (`outcomes_never_move_backwards`,
//! `random_command_sequences_follow_the_graph`).

pub mod auth;
pub mod bucket;
pub mod deal;
pub mod job;
pub mod market;
pub mod pinning;
pub mod placement;
pub mod probe;
pub mod provider;
pub mod request;
pub mod state;
pub mod upload;

pub use job::{JobId, JobKey, JobSource};
pub use state::{Change, FailureCode, Input, JobState, JobStatus, Outcome, Policy};

/// Now, in unix milliseconds (the store's time unit). The one clock the adapters read; the
/// domain takes time as an argument.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
