//! The `estuary` command's library: the local development stack and the helpers its tests share.
//!
//! - [`add`]: `estuary add`, files and directories to UnixFS and CAR.
//! - [`aggregate_cmd`]: `estuary aggregate`, FRC-0058 deals with inclusion proofs.
//! - [`car_cmd`]: `estuary car verify | ls` and `estuary cat`, reading CAR files.
//! - [`config_file`]: `estuary oracle run --config FILE`, settings from TOML.
//! - [`piece_cmd`]: `estuary piece`, a file's piece commitment.
//! - [`sp_cmd`]: `estuary sp run | status | work | claims | deals`, the SP agent.
//! - [`devnet`]: find the Foundry tools, start anvil, deploy the contracts (`estuary_chain`'s).
//! - [`dev`]: `estuary dev`, the whole stack (chain, contracts, oracle, dapp) as one process tree.

pub mod add;
pub mod aggregate_cmd;
pub mod car_cmd;
pub mod config_file;
pub mod dev;
pub use estuary_chain::devnet;
pub mod piece_cmd;
pub mod sp_cmd;
