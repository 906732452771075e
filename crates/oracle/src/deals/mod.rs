//! Deals: keeping what the oracle pinned on Filecoin.
//!
//! ```text
//!   store (pieces reported) ──► buckets::Bucketer (with --bucket-size: aggregates of many pins)
//!                  │                    │ closed buckets' aggregates
//!                  ├────────────────────┼──► contract::Scheduler ──► DealClient.makeDealProposal
//!                  │                    │      (with --deal-client-address; per replica, to a
//!                  │                    │       provider chosen by policy and score)
//!                  └────────────────────┴──► perpetual::PerpetualMaker ──► PerpetualStorage.createOrder
//!                                       ▲                              │ SPs claim, publish,
//!                                       │ order ids, replica states    │ activate (SP agents)
//!   estuary_chain::Watcher ──► store::DealLogs ◄── events::decode ◄────┘
//! ```
//!
//! - [`buckets`]: packed pins placed in buckets, closed by size or age into FRC-0058
//!   aggregates (served at `/piece/{aggregate}` from the pins' CARs, without a copy);
//! - [`contract`]: contract deals at providers the oracle chooses — a scheduler over a
//!   [`contract::DealBackend`] (the first: `DealClient` proposals naming each replica's
//!   provider, picked by policy and score in [`crate::domain::placement`]);
//! - [`perpetual`]: the perpetual-storage backend — one order per aggregate (or per piece when
//!   pins are not bucketed, or too large for a bucket), pre-flight checked, sent exactly once
//!   through restarts;
//! - [`events`]: the storage contract's events about orders, decoded;
//! - [`market`]: what the storage market says of many deals, through `DealStateView`;
//! - [`proofs`]: each deal holding a bucket's aggregate reported to `EstuaryPinning`
//!   (`reportDeal`) with every pin's FRC-0058 inclusion proof, checked on chain by `PoDSI`;
//! - [`datadao`]: a DataDAO's accepted CIDs funded as its own orders (`fundOrder`), or expired
//!   on chain when their window closed;
//! - [`store_jobs`]: `EstuaryOracle` store jobs fulfilled with their deals and proofs;
//! - [`keeper`]: each round, the market read for the orders' deals, and the lapsed claims and
//!   ended replicas reopened (and bounties collected, if asked).
//!
//! What each replica's state is comes from [`crate::domain::deal`] (a pure fold of the events);
//! `GET /deals` and `/requests/{id}` show it; `GET /providers` scores each SP from the same
//! events ([`crate::domain::provider`]); `GET /buckets` lists the buckets and `GET /datadao` the
//! DAO's fundings. [`splits`]: a pin larger than a deal is split into parts, each a piece
//! ordered on its own.

pub mod buckets;
pub mod cold;
pub mod contract;
pub mod datadao;
pub mod events;
pub mod keeper;
pub mod market;
pub mod perpetual;
pub mod probes;
pub mod proofs;
pub mod splits;
pub mod store_jobs;
