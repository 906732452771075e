//! The oracle's tests, one binary: its stores against SQLite and PostgreSQL, fetching and
//! packing against real HTTP servers, its blockstores (the filesystem and an S3 server), and
//! the whole oracle as a process against anvil — pinning, reorgs, restarts, RPC faults, a
//! queue shared through PostgreSQL, report transactions and a crash test. Oracle processes are
//! this test binary run again ([`child`]), so the tests need no other binary.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

/// Sends a contract call and waits for its receipt (test code: any failure panics).
macro_rules! mined {
    ($call:expr) => {
        $call.send().await.unwrap().get_receipt().await.unwrap()
    };
}

mod api_fuzz;
mod bench_aggregate;
mod bench_cold;
mod bench_oracle;
mod blockstores;
mod child;
mod cold_fetch;
mod contract_deals;
mod data_path;
mod hardening_api;
mod oracle_backup;
mod oracle_deals;
mod oracle_pinning;
mod oracle_postgres;
mod oracle_reorg;
mod oracle_restart;
mod oracle_rpc_faults;
mod pipeline;
mod postgres;
mod probes;
mod report_tx;
mod stores;
mod support;
