//! Integration tests of the `estuary` binary: its commands on files and CARs, against the
//! reference implementations, the operator's commands on an oracle's database, and the
//! contracts on a real anvil chain.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

/// Sends a contract call and waits for its receipt (test code: any failure panics).
macro_rules! mined {
    ($call:expr) => {
        $call.send().await.unwrap().get_receipt().await.unwrap()
    };
}

mod car_cli;
mod cli_oracle;
mod cli_sp;
mod contracts_local;
mod dev_deals;
mod interop_piece;
mod interop_unixfs;
mod support;
