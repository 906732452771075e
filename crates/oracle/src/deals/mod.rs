//! Deals: keeping what the oracle pinned on Filecoin.
//!
//! ```text
//!   store (pieces reported) ──► perpetual::PerpetualMaker ──► PerpetualStorage.createOrder
//!                                       ▲                              │ SPs claim, publish,
//!                                       │ order ids, replica states    │ activate (SP agents)
//!   estuary_chain::Watcher ──► store::DealLogs ◄── events::decode ◄────┘
//! ```
//!
//! - [`perpetual`]: the perpetual-storage backend — one order per piece, pre-flight checked,
//!   sent exactly once through restarts;
//! - [`events`]: the storage contract's events about orders, decoded;
//! - [`market`]: what the storage market says of many deals, through `DealStateView`;
//! - [`keeper`]: each round, the market read for the orders' deals, and the lapsed claims and
//!   ended replicas reopened (and bounties collected, if asked).
//!
//! What each replica's state is comes from [`crate::domain::deal`] (a pure fold of the events);
//! `GET /deals` and `/requests/{id}` show it; `GET /providers` scores each SP from the same
//! events ([`crate::domain::provider`]). Buckets (aggregates of many pins), the contract-deal
//! backend through `DealClient`, SP choice by score, and proofs of inclusion reported on chain are
//! the deal-engine issue's next parts and are not here yet.

pub mod events;
pub mod keeper;
pub mod market;
pub mod perpetual;
