//! Handing a verified piece to sealing, through one trait.
//!
//! ```text
//!  agent: sealing ── Sealer::hand_over(job) ──► deal ID (the deal is published)
//!         activating ── Sealer::poll(job, deal) ──► Sealing | Active { sector } | Gone
//!         active ── Sealer::poll (now and then) ──► Gone: the deal left the market
//! ```
//!
//! - [`SimulatedSealer`] (local stack, tests): publishes the deal through the simulated
//!   market's real path (`publishStorageDeals` from the miner's controlling address, the client
//!   contract authenticating and being notified), proves the sector a configurable number of
//!   blocks later, and can be told to fail, let a deal expire unproven, or terminate it.
//! - [`CommandSealer`] (a real SP stack): runs a command with the piece file and the deal's
//!   terms; the command hands them to Boost or Curio and prints the deal ID once published
//!   (or `direct` for a deal made without the market, Curio's DDO path). Activation is then
//!   read from the chain.
//!
//! Before `hand_over`, the agent asks the chain whether this miner's deal for the work is
//! already published, so a restart never hands the same piece over twice once it is on chain;
//! a command sealer's command must itself be safe to run again for the same proposal (Boost's
//! and Curio's imports are keyed by the proposal).

mod command;
pub mod curio;
mod sim;

use std::{future::Future, path::PathBuf};

use alloy::primitives::{Address, B256, Bytes};

pub use command::{CommandSealer, deal_of};
pub use sim::{Fault, SimulatedSealer};

pub use crate::domain::Deal;
use crate::domain::WorkKind;

/// A verified piece and the deal to make for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealJob {
    /// The work's name (ledger keys, logs).
    pub work: String,
    /// Slot or proposal.
    pub kind: WorkKind,
    /// The client contract (`PerpetualStorage` or `DealClient`).
    pub contract: Address,
    /// The miner.
    pub miner: u64,
    /// The piece CID v1 (as the deal names it) and v2.
    pub piece_v1: String,
    /// See `piece_v1`.
    pub piece_v2: String,
    /// The piece's padded size.
    pub padded_size: u64,
    /// The CAR's size.
    pub car_size: u64,
    /// The CAR file.
    pub piece_path: PathBuf,
    /// The deal proposal (CBOR `DealProposal`, this miner as provider) to publish (empty when
    /// polling: a slot's offer can be read only until its deal is published).
    pub proposal: Bytes,
    /// The offer's id (the slot's claim offer, or the `DealClient` proposal).
    pub proposal_id: B256,
    /// The deal's start epoch (it must be active by then).
    pub start_epoch: u64,
    /// The deal's end epoch.
    pub end_epoch: u64,
    /// The order of a slot.
    pub order: Option<u64>,
}

/// Where sealing is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealProgress {
    /// Not proven yet.
    Sealing,
    /// The sector is proven: the deal is active.
    Active {
        /// The sector, when known.
        sector: Option<u64>,
    },
    /// The deal is gone (terminated, timed out, removed).
    Gone(String),
}

/// Why sealing could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Worth trying again later (a node or chain hiccup, a command that failed).
    #[error("{0} (will retry)")]
    Retry(String),
    /// The deal cannot be made (the market refused it, the sealer gave up).
    #[error("{0}")]
    Fail(String),
}

/// What seals pieces.
pub trait Sealer: Send + Sync + 'static {
    /// A short name (`simulated`, `command`).
    fn name(&self) -> &'static str;

    /// Hands the piece over; returns the published deal (a market deal's ID), or
    /// [`Deal::Direct`] for a deal the provider makes without the market.
    fn hand_over(&self, job: &SealJob) -> impl Future<Output = Result<Deal, SealError>> + Send;

    /// Where the deal's sealing is; `active` when the agent already counts it active (a
    /// sealer may report it gone).
    fn poll(
        &self,
        job: &SealJob,
        deal: Deal,
        active: bool,
    ) -> impl Future<Output = Result<SealProgress, SealError>> + Send;
}
