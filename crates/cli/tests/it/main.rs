//! Integration tests of the `estuary` binary against a real anvil chain.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod bench_oracle;
mod car_cli;
mod contracts_local;
mod interop_piece;
mod interop_unixfs;
mod oracle_pinning;
mod oracle_reorg;
mod oracle_restart;
mod support;
