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
//! - [`registry`]: where providers serve retrievals — the operator's `url=`, or the URL a
//!   provider registered in a `ProviderRegistry` (`--provider-registry-address`), read under the
//!   fetch's network policy;
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
pub mod registry;
pub mod splits;
pub mod store_jobs;

/// Wakes the deal rounds (the contract deal scheduler, the perpetual keeper) before their next
/// tick: `estuary oracle repair --now`, through `POST /deals/repair`. Each round that runs
/// listens; a wake while it works is seen when it next waits.
#[derive(Debug, Clone)]
pub struct Wake(std::sync::Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Wake {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl Wake {
    /// Wakes every round listening; how many there are.
    pub fn wake(&self) -> usize {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
        self.0.receiver_count()
    }

    /// What a round waits on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Waits `every`, or until `wake` (if any) is woken; `false` once `shutdown`.
pub(crate) async fn tick(
    every: std::time::Duration,
    wake: &mut Option<tokio::sync::watch::Receiver<u64>>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    let woken = async {
        if let Some(rx) = wake
            && rx.changed().await.is_ok()
        {
            return;
        }
        // No waker (or it is gone): only the tick.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(every) => true,
        () = woken => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::{Wake, tick};

    #[tokio::test]
    async fn a_round_waits_its_tick_unless_woken_and_a_wake_while_it_works_is_kept() {
        let (wake, shutdown) = (Wake::default(), CancellationToken::new());
        assert_eq!(wake.wake(), 0, "nobody listens yet");
        let mut rx = Some(wake.subscribe());
        let hour = Duration::from_secs(3600);
        // Woken while working (not waiting): the next wait returns at once.
        assert_eq!(wake.wake(), 1);
        let woke = tokio::time::timeout(Duration::from_secs(5), tick(hour, &mut rx, &shutdown));
        assert_eq!(woke.await, Ok(true));
        // Not woken: it waits.
        let waits = tokio::time::timeout(Duration::from_millis(50), tick(hour, &mut rx, &shutdown));
        assert!(waits.await.is_err());
        // Without a waker, the tick alone.
        let mut none = None;
        assert!(tick(Duration::from_millis(1), &mut none, &shutdown).await);
        shutdown.cancel();
        assert!(!tick(hour, &mut rx, &shutdown).await, "shut down");
    }
}
