//! The `estuary` command's library: the local development stack and the helpers its tests share.
//!
//! - [`devnet`]: find the Foundry tools, start anvil, deploy the contracts.
//! - [`dev`]: `estuary dev`, the whole stack (chain, contracts, oracle, dapp) as one process tree.

pub mod dev;
pub mod devnet;
