//! The SP agent's tests, one binary: downloads against real HTTP origins (resuming, refusing
//! bad ones), the retrieval server's limits, and whole agents as processes against anvil with
//! the deployed contracts and the simulated market — three agents serving one perpetual order
//! and a proposal naming one of them, a late agent finding past events, bad origins and policy
//! skips, a crash test, and the command sealer running a script (and the Curio example against a
//! stand-in for Curio's `mk20` API). Agent processes are this test
//! binary run again ([`child`]), so the tests need no other binary.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

/// Sends a contract call and waits for its receipt (test code: any failure panics).
macro_rules! mined {
    ($call:expr) => {
        $call.send().await.unwrap().get_receipt().await.unwrap()
    };
}

mod agents;
mod bad_origins;
mod bench_fetch;
mod child;
mod command_sealer;
mod crash;
mod curio;
mod faults;
mod fetch;
mod reorg;
mod retrieval;
mod support;
