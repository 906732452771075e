//! Integration tests of the `estuary` binary against a real anvil chain.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

/// Sends a contract call and waits for its receipt (test code: any failure panics).
macro_rules! mined {
    ($call:expr) => {
        $call.send().await.unwrap().get_receipt().await.unwrap()
    };
}

mod bench_oracle;
mod car_cli;
mod contracts_local;
mod interop_piece;
mod interop_unixfs;
mod oracle_pinning;
mod oracle_postgres;
mod oracle_reorg;
mod oracle_restart;
mod oracle_rpc_faults;
mod report_tx;
mod support;
