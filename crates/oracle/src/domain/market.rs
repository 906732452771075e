//! What the storage market says of a replica's deal, and what the keeper does about it. Pure:
//! the market is read by `deals::market` (through `DealStateView`, many deals per `eth_call`),
//! the keeper's transactions are sent by `deals::keeper`.
//!
//! ```text
//!   DealStateView.getDeals(ids) ──► MarketRead ──classify(expected piece, provider, last view)──► MarketView
//!
//!   per replica (folded from the contract's events) + its MarketView + the head:
//!     claimed | published, past its deadline             ──► reopen (the claim lapsed)
//!     active, its paid term over                          ──► reopen (the term is complete)
//!     active, the market says gone / never published      ──► reopen (the deal is gone)
//!     active, `collect_every` epochs since last paid      ──► collect (pays the SP what accrued)
//!
//!   per order of the operator's (its client):
//!     fewer slots than its target held by replicas not being renewed (ending within the
//!     window, not in its last quarter) ? target + 1 per renewed replica : target
//!       ≠ the target on chain ──► setReplicaTarget
//! ```
//!
//! Renewal of a perpetual replica: a slot's bounty is paid over its term, after which it is
//! reopened, and a new SP needs a claim window to seal a new deal. So that the order never lacks
//! a replica meanwhile, an active replica whose term ends within the renewal window counts as
//! missing: the keeper raises the order's target by one, another SP claims the extra slot and
//! seals its deal while the old one still runs, and as soon as it is claimed the keeper lowers
//! the target back, below the slots in use (`PerpetualStorage.setReplicaTarget` allows it and
//! then opens no slot), so that the ending slot, once reopened, does not open again. In the
//! window's last quarter the target is the order's own again, so that a raise nobody claimed is
//! withdrawn before anyone may reopen the ended slot. The contract keeps one slot per provider
//! an order (`AlreadyHolds`), so the renewal is at another provider; the old one may claim
//! again when a slot opens.
//!
//! Sources followed, per behaviour:
//! - the market's answers: builtin-actors v18 `actors/market/src/lib.rs`
//!   (`get_deal_activation`: exit 17 `USR_NOT_FOUND` for a deal never published, 32
//!   `EX_DEAL_EXPIRED` for one ended, terminated or timed out; `get_deal_sector`: 33
//!   `EX_DEAL_NOT_ACTIVATED` before activation), as `contracts/src/DealStateView.sol` maps them;
//! - when a slot may be reopened and what a reopening checks on chain:
//!   `contracts/src/PerpetualStorage.sol` (`reopen`, `observe`, `collect`).
//!
//! The contract checks every reopening itself (`PerpetualStorageSlotStillLive` otherwise): the
//! keeper only decides when asking is worth a transaction. A market read that failed is not a
//! [`MarketRead`] at all, and an exit code the view does not know is [`MarketState::Unknown`]:
//! neither is ever taken for a deal that is gone.

use serde::Serialize;

use super::deal::{Replica, ReplicaState};

/// The market's answer for one deal (`DealStateView.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketStatus {
    /// Published, not yet activated.
    Published,
    /// Activated and in the market's state.
    Active,
    /// Never published (17).
    NotFound,
    /// Gone from the market: ended, terminated or timed out (32).
    Gone,
    /// Another exit code.
    Unknown,
}

/// One deal as the market reported it, at `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketRead {
    /// The deal.
    pub deal_id: u64,
    /// What the market said.
    pub status: MarketStatus,
    /// The exit code that decided it (0, 33, 17, 32 or another).
    pub exit_code: i64,
    /// Published or active: the provider's actor id.
    pub provider: u64,
    /// Published or active: the deal's piece commitment.
    pub commp: [u8; 32],
    /// Published or active: the deal's padded piece size.
    pub padded_size: u64,
    /// Published or active: the deal's start epoch.
    pub start_epoch: i64,
    /// Published or active: the deal's end epoch (start + duration).
    pub end_epoch: i64,
    /// The epoch the answer holds at.
    pub epoch: u64,
}

/// A replica's deal as the oracle shows it, from the market's last answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketState {
    /// Published, not yet active.
    Published,
    /// Active, with more than the expiring window left.
    Active,
    /// Active, ending within the expiring window.
    Expiring,
    /// Gone after its end epoch: it ran its course.
    Expired,
    /// Gone before its end after it was seen active: terminated (its provider slashed).
    Slashed,
    /// Gone without having been seen active: it timed out before activation.
    Failed,
    /// The market never published it.
    NotFound,
    /// Published or active, but for another piece, size or provider than the order's slot:
    /// not counted.
    Mismatch,
    /// The market answered an exit code the view does not know: nothing is concluded.
    Unknown,
}

impl MarketState {
    /// Every state.
    pub const ALL: [Self; 9] = [
        Self::Published,
        Self::Active,
        Self::Expiring,
        Self::Expired,
        Self::Slashed,
        Self::Failed,
        Self::NotFound,
        Self::Mismatch,
        Self::Unknown,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Active => "active",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Slashed => "slashed",
            Self::Failed => "failed",
            Self::NotFound => "not_found",
            Self::Mismatch => "mismatch",
            Self::Unknown => "unknown",
        }
    }

    /// The state a stored name names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the deal is no longer in the market (the slot may be reopened).
    pub fn gone(self) -> bool {
        matches!(self, Self::Expired | Self::Slashed | Self::Failed | Self::NotFound)
    }
}

/// What the oracle keeps of a deal's last market read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarketView {
    /// The deal's state.
    pub state: MarketState,
    /// The epoch of the read.
    pub epoch: u64,
    /// The deal's start epoch, when the market has given it (kept after it is gone).
    pub start_epoch: Option<u64>,
    /// The deal's end epoch, when the market has given it (kept after it is gone).
    pub end_epoch: Option<u64>,
}

/// What a slot's deal must be to count: the order's piece at the slot's provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The slot's provider.
    pub provider: u64,
    /// The order's piece commitment.
    pub commp: [u8; 32],
    /// The order's padded size.
    pub padded_size: u64,
}

/// The view of `read`, for a slot that expects `expected`, after the `previous` view (which
/// keeps the deal's term once it is gone). `expiring` is the window, in epochs, before a
/// deal's end in which an active deal shows as expiring.
pub fn classify(
    read: &MarketRead,
    expected: &Expected,
    previous: Option<&MarketView>,
    expiring: u64,
) -> MarketView {
    let epoch = read.epoch;
    let term = |v: i64| u64::try_from(v).ok();
    let known = |state| MarketView {
        state,
        epoch,
        start_epoch: previous.and_then(|p| p.start_epoch),
        end_epoch: previous.and_then(|p| p.end_epoch),
    };
    match read.status {
        MarketStatus::Published | MarketStatus::Active => {
            let view = MarketView {
                state: MarketState::Published,
                epoch,
                start_epoch: term(read.start_epoch),
                end_epoch: term(read.end_epoch),
            };
            if read.provider != expected.provider
                || read.commp != expected.commp
                || read.padded_size != expected.padded_size
            {
                return MarketView { state: MarketState::Mismatch, ..view };
            }
            if read.status == MarketStatus::Published {
                return view;
            }
            let ending = view.end_epoch.is_some_and(|end| end.saturating_sub(epoch) <= expiring);
            let state = if ending { MarketState::Expiring } else { MarketState::Active };
            MarketView { state, ..view }
        }
        MarketStatus::Gone => {
            let view = known(MarketState::Failed);
            let was_active = previous.is_some_and(|p| {
                matches!(
                    p.state,
                    MarketState::Active
                        | MarketState::Expiring
                        | MarketState::Slashed
                        | MarketState::Expired
                )
            });
            let state = match view.end_epoch {
                Some(end) if epoch >= end => MarketState::Expired,
                _ if was_active => MarketState::Slashed,
                _ => MarketState::Failed,
            };
            MarketView { state, ..view }
        }
        MarketStatus::NotFound => known(MarketState::NotFound),
        MarketStatus::Unknown => known(MarketState::Unknown),
    }
}

/// Why the keeper reopens a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReopenWhy {
    /// Claimed (or published) and not proven by its deadline.
    ClaimLapsed,
    /// Active, and its paid term is over.
    TermComplete,
    /// Active by the contract, but the market says the deal is gone.
    DealGone,
}

impl ReopenWhy {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClaimLapsed => "claim_lapsed",
            Self::TermComplete => "term_complete",
            Self::DealGone => "deal_gone",
        }
    }
}

/// What the keeper does about a slot (or, for [`KeeperAction::SetTarget`], an order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeeperAction {
    /// `PerpetualStorage.reopen(order, provider)`.
    Reopen(ReopenWhy),
    /// `PerpetualStorage.markLost(order, provider)`: its retrieval probes found the replica
    /// lost (the order's client only): the slot reopens for another provider, and this one may
    /// not claim the order again.
    MarkLost,
    /// `PerpetualStorage.collect(order, provider)`: the bounty accrued since `from`.
    Collect {
        /// The epoch the replica was last paid up to (its start, if never): one collection
        /// per payment seen.
        from: u64,
    },
    /// `PerpetualStorage.setReplicaTarget(order, to)` (the order's client only): the target
    /// on chain (`from`) raised for replicas being renewed, or lowered back ([`retarget`]).
    SetTarget {
        /// The target on chain now.
        from: u16,
        /// The target asked for.
        to: u16,
    },
}

/// One thing to do, on one slot (or one order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeeperTask {
    /// The order.
    pub order_id: u64,
    /// The slot's provider (0 for an order's [`KeeperAction::SetTarget`]).
    pub provider: u64,
    /// What to do.
    pub action: KeeperAction,
    /// The ledger key: one transaction per key, ever (through restarts).
    pub key: String,
}

/// The keeper's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeeperRules {
    /// The contract's `claimWindow` (for claims stored without their deadline).
    pub claim_window: u64,
    /// Collect an active replica's accrued bounty every this many epochs of its term (`None`:
    /// the oracle leaves collecting to the SPs, whose agent collects on its own schedule).
    pub collect_every: Option<u64>,
    /// When a replica its probes found lost is marked lost on chain (`None`: never, as for an
    /// order whose client is not the operator).
    pub mark_lost: Option<MarkLostRules>,
    /// Now (ms since the epoch), against which the probes' times are read.
    pub now_ms: u64,
}

/// When a replica found lost by its probes is marked lost on chain (`markLost`: its provider is
/// excluded from the order for good, on the client's word alone): only if it has been lost a
/// while, its provider once served it, and its last probe is recent and failed (an old
/// `lost_at`, or one the provider has since recovered from, marks nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkLostRules {
    /// Lost for at least this long (ms).
    pub after_ms: u64,
    /// The last probe within this long (ms).
    pub recent_ms: u64,
}

impl MarkLostRules {
    /// Whether `r` is to be marked lost at `now_ms`.
    pub fn applies(&self, r: &Replica, now_ms: u64) -> bool {
        r.probe.is_some_and(|p| {
            p.lost_at.is_some_and(|at| now_ms.saturating_sub(at) >= self.after_ms)
                && p.probes_ok > 0
                && !p.last_probe_ok
                && now_ms.saturating_sub(p.last_probe) <= self.recent_ms
        })
    }
}

/// What to do about the replicas of order `order_id` at `contract` (the ledger keys' prefix),
/// at `head`.
pub fn keep(
    contract: &str,
    order_id: u64,
    replicas: &[Replica],
    head: u64,
    rules: &KeeperRules,
) -> Vec<KeeperTask> {
    let mut tasks = Vec::new();
    for r in replicas {
        let slot = format!("{contract}/{order_id}/{}/{}", r.provider, r.since_block);
        let task = |action: KeeperAction, key: String| KeeperTask {
            order_id,
            provider: r.provider,
            action,
            key,
        };
        match r.state {
            ReplicaState::Claimed | ReplicaState::Published => {
                let deadline =
                    r.deadline.unwrap_or_else(|| r.since_block.saturating_add(rules.claim_window));
                if head > deadline {
                    let why = ReopenWhy::ClaimLapsed;
                    tasks.push(task(KeeperAction::Reopen(why), format!("reopen/{slot}")));
                }
            }
            ReplicaState::Active => {
                let why = if r.end_epoch.is_some_and(|end| head >= end) {
                    Some(ReopenWhy::TermComplete)
                } else if r.market.is_some_and(|m| m.state.gone()) {
                    Some(ReopenWhy::DealGone)
                } else {
                    None
                };
                if let Some(why) = why {
                    tasks.push(task(KeeperAction::Reopen(why), format!("reopen/{slot}")));
                } else if rules.mark_lost.is_some_and(|m| m.applies(r, rules.now_ms)) {
                    tasks.push(task(KeeperAction::MarkLost, format!("lost/{slot}")));
                } else if let (Some(every), Some(start)) = (rules.collect_every, r.start_epoch) {
                    let from = r.paid_until.map_or(start, |paid| paid.max(start));
                    if every > 0 && head.saturating_sub(from) >= every {
                        let key = format!("collect/{slot}/{from}");
                        tasks.push(task(KeeperAction::Collect { from }, key));
                    }
                }
            }
            ReplicaState::Reopened => {}
        }
    }
    tasks
}

/// An order's replica targets: its own (`base`, what the oracle asked for) and the one on
/// chain now (raised by the keeper for renewals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    /// The order's own target.
    pub base: u16,
    /// The target on chain.
    pub on_chain: u16,
    /// Most replicas an order may ask for (`MAX_REPLICAS`).
    pub max: u16,
}

/// The view of a direct deal (a `DealClient` proposal activated without the market, `NO_DEAL`:
/// no market deal to read) at `head`: its term as the contract recorded it, active until its
/// end epoch and expired from then on (`DealClient` took the activation only from a sector
/// committed to at least that epoch). Builtin-actors tells no client contract of a sector
/// terminated early (a miner notifies the market alone of terminations), so nothing on chain
/// shows a direct deal lost before its end. `None` for a replica that is not an active direct
/// deal.
pub fn direct_term_view(r: &Replica, head: u64) -> Option<MarketView> {
    if !r.is_direct() {
        return None;
    }
    let end = r.end_epoch?;
    Some(MarketView {
        state: if head >= end { MarketState::Expired } else { MarketState::Active },
        epoch: head,
        start_epoch: r.start_epoch,
        end_epoch: Some(end),
    })
}

/// Whether `r` is being renewed at `head`: active by the contract and not refuted by the
/// market (whatever its probes say: a lost replica still holds its slot), with its paid term
/// ending within `renew_epochs` (at most half of its own term), and not in the last quarter of
/// that window: from then on the order's target is its own again, so that when the slot is
/// reopened at its end (anyone may reopen it, from its end on) one slot opens, not two.
pub fn renewing(r: &Replica, head: u64, renew_epochs: u64) -> bool {
    let Some(end) = r.end_epoch else { return false };
    let term = r.start_epoch.map_or(u64::MAX, |start| end.saturating_sub(start));
    let window = renew_epochs.min(term / 2);
    let margin = window / 4;
    r.state == ReplicaState::Active
        && !r.gone()
        && head.saturating_add(margin) < end
        && end <= head.saturating_add(window)
}

/// The target an order should have on chain at `head`, its slots held by `replicas` but those
/// of the providers in `vacating` (reopened or marked lost this round). While fewer slots than
/// its own target are held by replicas not being renewed ([`renewing`]; a claim or a published
/// deal counts), one more for each replica being renewed, so that other providers can claim
/// them while the ending ones still run; otherwise its own, even below the slots in use (the
/// contract then opens none, so an ending slot, once reopened, does not open again). At most
/// `max`.
pub fn renewal_target(
    targets: Targets,
    replicas: &[Replica],
    vacating: &[u64],
    head: u64,
    renew_epochs: u64,
) -> u16 {
    let held = |r: &&Replica| r.state != ReplicaState::Reopened && !vacating.contains(&r.provider);
    let renewing = replicas.iter().filter(held).filter(|r| renewing(r, head, renew_epochs)).count();
    let others = replicas.iter().filter(held).count() - renewing;
    let want = if others < usize::from(targets.base) {
        targets.base.saturating_add(u16::try_from(renewing).unwrap_or(u16::MAX))
    } else {
        targets.base
    };
    want.min(targets.max.max(targets.base))
}

/// The `setReplicaTarget` the keeper sends for order `order_id` at `head` ([`renewal_target`]),
/// or none when the target on chain is already that.
pub fn retarget(
    contract: &str,
    order_id: u64,
    targets: Targets,
    replicas: &[Replica],
    vacating: &[u64],
    head: u64,
    renew_epochs: u64,
) -> Option<KeeperTask> {
    let want = renewal_target(targets, replicas, vacating, head, renew_epochs);
    if want == targets.on_chain {
        return None;
    }
    Some(KeeperTask {
        order_id,
        provider: 0,
        action: KeeperAction::SetTarget { from: targets.on_chain, to: want },
        key: format!("target/{contract}/{order_id}/{}/{want}", targets.on_chain),
    })
}

/// Whether an order whose balance is `balance` can pay for the claims a raise of its target
/// from `from` to `to` opens, each locking up to `bounty` (the contract's `currentBounty`; it
/// refuses a claim the balance does not cover, `PerpetualStorageUnderfunded`). A lowering
/// needs nothing.
pub fn raise_funded(from: u16, to: u16, bounty: u128, balance: u128) -> bool {
    let claims = u128::from(to.saturating_sub(from));
    bounty.checked_mul(claims).is_some_and(|needed| needed <= balance)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(status: MarketStatus, epoch: u64) -> MarketRead {
        MarketRead {
            deal_id: 7,
            status,
            exit_code: 0,
            provider: 1000,
            commp: [1; 32],
            padded_size: 1024,
            start_epoch: 100,
            end_epoch: 1000,
            epoch,
        }
    }

    const EXPECTED: Expected = Expected { provider: 1000, commp: [1; 32], padded_size: 1024 };

    #[test]
    fn the_market_answer_becomes_a_state_with_its_history() {
        let published = classify(&read(MarketStatus::Published, 50), &EXPECTED, None, 100);
        assert_eq!(published.state, MarketState::Published);
        let active = classify(&read(MarketStatus::Active, 200), &EXPECTED, Some(&published), 100);
        assert_eq!((active.state, active.end_epoch), (MarketState::Active, Some(1000)));
        let expiring = classify(&read(MarketStatus::Active, 900), &EXPECTED, Some(&active), 100);
        assert_eq!(expiring.state, MarketState::Expiring);
        // Gone: before its end after being active is a termination; after its end, expiry;
        // never active, a time-out. The term is kept from the last answer that had it.
        let gone = read(MarketStatus::Gone, 500);
        let slashed = classify(&gone, &EXPECTED, Some(&active), 100);
        assert_eq!((slashed.state, slashed.end_epoch), (MarketState::Slashed, Some(1000)));
        let late = read(MarketStatus::Gone, 1000);
        assert_eq!(classify(&late, &EXPECTED, Some(&expiring), 100).state, MarketState::Expired);
        assert_eq!(classify(&gone, &EXPECTED, Some(&published), 100).state, MarketState::Failed);
        assert_eq!(classify(&gone, &EXPECTED, None, 100).state, MarketState::Failed);
        // An unknown code concludes nothing; a slot's deal for another piece, size or provider
        // is a mismatch.
        let unknown = classify(&read(MarketStatus::Unknown, 500), &EXPECTED, Some(&active), 100);
        assert_eq!((unknown.state, unknown.end_epoch), (MarketState::Unknown, Some(1000)));
        for wrong in [
            Expected { provider: 1001, ..EXPECTED },
            Expected { commp: [2; 32], ..EXPECTED },
            Expected { padded_size: 2048, ..EXPECTED },
        ] {
            let view = classify(&read(MarketStatus::Active, 200), &wrong, None, 100);
            assert_eq!(view.state, MarketState::Mismatch);
        }
    }

    fn replica(state: ReplicaState) -> Replica {
        Replica {
            provider: 1000,
            state,
            deal_id: Some(7),
            start_epoch: Some(100),
            end_epoch: Some(1000),
            since_block: 40,
            deadline: Some(160),
            paid_until: None,
            market: None,
            probe: None,
            direct: None,
        }
    }

    const RULES: KeeperRules =
        KeeperRules { claim_window: 120, collect_every: None, mark_lost: None, now_ms: 10_000 };

    #[test]
    fn lapsed_claims_finished_terms_and_gone_deals_are_reopened_once_each() {
        let claimed = replica(ReplicaState::Claimed);
        assert!(keep("0xc", 1, &[claimed], 160, &RULES).is_empty(), "at its deadline still live");
        let tasks = keep("0xc", 1, &[claimed], 161, &RULES);
        assert_eq!(tasks[0].action, KeeperAction::Reopen(ReopenWhy::ClaimLapsed));
        assert_eq!(tasks[0].key, "reopen/0xc/1/1000/40");
        // A claim stored without its deadline: its block plus the claim window.
        let old = Replica { deadline: None, ..claimed };
        assert!(keep("0xc", 1, &[old], 160, &RULES).is_empty());
        assert_eq!(keep("0xc", 1, &[old], 161, &RULES).len(), 1);

        let active = replica(ReplicaState::Active);
        assert!(keep("0xc", 1, &[active], 999, &RULES).is_empty());
        let done = keep("0xc", 1, &[active], 1000, &RULES);
        assert_eq!(done[0].action, KeeperAction::Reopen(ReopenWhy::TermComplete));
        let view = |state| MarketView { state, epoch: 500, start_epoch: None, end_epoch: None };
        for state in MarketState::ALL {
            let r = Replica { market: Some(view(state)), ..active };
            let tasks = keep("0xc", 1, &[r], 500, &RULES);
            assert_eq!(tasks.len(), usize::from(state.gone()), "{state:?}");
            assert_eq!(r.counts(), !state.gone() && state != MarketState::Mismatch);
        }
        assert!(keep("0xc", 1, &[replica(ReplicaState::Reopened)], 5000, &RULES).is_empty());
    }

    #[test]
    fn a_replica_its_probes_found_lost_is_marked_lost_once_unless_it_is_over() {
        let probe = |lost: bool| crate::domain::probe::ProbeView {
            last_probe: 9_000,
            last_probe_ok: !lost,
            failures_in_a_row: if lost { 3 } else { 0 },
            oks_in_a_row: u32::from(!lost),
            probes_ok: 1,
            probes_failed: 3,
            lost_at: lost.then_some(4_000),
        };
        let active = replica(ReplicaState::Active);
        let lost = Replica { probe: Some(probe(true)), ..active };
        assert!(keep("0xc", 1, &[lost], 500, &RULES).is_empty(), "not asked to: never");
        let m = MarkLostRules { after_ms: 6_000, recent_ms: 2_000 };
        let rules = KeeperRules { mark_lost: Some(m), ..RULES };
        // Lost long enough, its last probe recent and failed, and it once served.
        let tasks = keep("0xc", 1, &[lost], 500, &rules);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].action, KeeperAction::MarkLost);
        assert_eq!(tasks[0].key, "lost/0xc/1/1000/40");
        let found = Replica { probe: Some(probe(false)), ..active };
        assert!(keep("0xc", 1, &[found], 500, &rules).is_empty(), "verified: kept");
        let with = |f: &dyn Fn(&mut crate::domain::probe::ProbeView)| {
            let mut p = probe(true);
            f(&mut p);
            Replica { probe: Some(p), ..active }
        };
        for (r, why) in [
            (with(&|p| p.lost_at = Some(4_001)), "lost for less than after_ms"),
            (with(&|p| p.last_probe = 7_999), "its last probe too old (a stale lost_at)"),
            (with(&|p| p.probes_ok = 0), "never served: a wrong url= rather than a lost copy"),
            (with(&|p| p.last_probe_ok = true), "its last probe verified"),
        ] {
            assert!(keep("0xc", 1, &[r], 500, &rules).is_empty(), "{why}");
        }
        // Not yet markable: still collected when due.
        let collecting = KeeperRules { collect_every: Some(300), ..rules };
        let waiting = with(&|p| p.lost_at = Some(4_001));
        let tasks = keep("0xc", 1, &[waiting], 400, &collecting);
        assert_eq!(tasks[0].action, KeeperAction::Collect { from: 100 });
        // Over anyway: reopened (by anyone, for a tip), not marked lost.
        let done = keep("0xc", 1, &[lost], 1000, &rules);
        assert_eq!(done[0].action, KeeperAction::Reopen(ReopenWhy::TermComplete));
        // A claim is not a replica yet: its probes mean nothing.
        let claimed = Replica { probe: Some(probe(true)), ..replica(ReplicaState::Claimed) };
        assert!(keep("0xc", 1, &[claimed], 150, &rules).is_empty());
    }

    #[test]
    fn a_collection_is_due_every_so_many_epochs_since_the_last_payment() {
        let rules = KeeperRules { collect_every: Some(300), ..RULES };
        let active = replica(ReplicaState::Active);
        assert!(keep("0xc", 1, &[active], 399, &RULES).is_empty(), "off by default");
        assert!(keep("0xc", 1, &[active], 399, &rules).is_empty());
        let first = keep("0xc", 1, &[active], 400, &rules);
        assert_eq!(first[0].action, KeeperAction::Collect { from: 100 });
        assert_eq!(first[0].key, "collect/0xc/1/1000/40/100");
        // The provider collected itself at 450: the next is due 300 epochs after.
        let paid = Replica { paid_until: Some(450), ..active };
        assert!(keep("0xc", 1, &[paid], 749, &rules).is_empty());
        let second = keep("0xc", 1, &[paid], 750, &rules);
        assert_eq!(second[0].action, KeeperAction::Collect { from: 450 });
    }

    #[test]
    fn a_replica_ending_within_the_window_raises_the_target_until_another_claims() {
        let targets = Targets { base: 1, on_chain: 1, max: 32 };
        // Its term runs from 100 to 1000; the renewal window is 100 epochs.
        let old = replica(ReplicaState::Active);
        assert_eq!(retarget("0xc", 9, targets, &[old], &[], 899, 100), None, "not yet");
        let raise = retarget("0xc", 9, targets, &[old], &[], 900, 100).expect("renewed");
        assert_eq!((raise.action, raise.provider), (KeeperAction::SetTarget { from: 1, to: 2 }, 0));
        assert_eq!(raise.key, "target/0xc/9/1/2");
        // Another provider claims the extra slot: the target goes back down at once, below the
        // two slots in use, so that the old one, once reopened, does not open again.
        let raised = Targets { on_chain: 2, ..targets };
        let new = Replica {
            provider: 1001,
            start_epoch: None,
            end_epoch: None,
            since_block: 905,
            deadline: Some(1025),
            ..replica(ReplicaState::Claimed)
        };
        let lower = retarget("0xc", 9, raised, &[old, new], &[], 905, 100).expect("lowered");
        assert_eq!(lower.action, KeeperAction::SetTarget { from: 2, to: 1 });
        assert_eq!(lower.key, "target/0xc/9/2/1");
        assert_eq!(retarget("0xc", 9, targets, &[old, new], &[], 950, 100), None);
        assert_eq!(retarget("0xc", 9, targets, &[old, new], &[], 1000, 100), None, "its term over");
        // The claim lapses and is reopened: raised again, for the next provider.
        let lapsed = Replica { state: ReplicaState::Reopened, ..new };
        let again = retarget("0xc", 9, targets, &[old, lapsed], &[], 960, 100).expect("again");
        assert_eq!(again.action, KeeperAction::SetTarget { from: 1, to: 2 });
        // Probes that found it lost do not stop its renewal (it still holds its slot); a deal
        // the market says is gone does (its slot is reopened and taken again as any other).
        let probe = crate::domain::probe::ProbeView {
            last_probe: 9_000,
            last_probe_ok: false,
            failures_in_a_row: 3,
            oks_in_a_row: 0,
            probes_ok: 0,
            probes_failed: 3,
            lost_at: Some(4_000),
        };
        let lost = Replica { probe: Some(probe), ..old };
        assert!(retarget("0xc", 9, targets, &[lost], &[], 950, 100).is_some());
        let view = MarketView {
            state: MarketState::Slashed,
            epoch: 950,
            start_epoch: None,
            end_epoch: None,
        };
        let slashed = Replica { market: Some(view), ..old };
        assert_eq!(retarget("0xc", 9, targets, &[slashed], &[], 950, 100), None);
        // Renewal turned off: a raised target is lowered all the same.
        assert_eq!(
            retarget("0xc", 9, raised, &[old], &[], 950, 0).map(|t| t.action),
            Some(KeeperAction::SetTarget { from: 2, to: 1 })
        );
        // The window is at most half the replica's own term (900 epochs here).
        assert_eq!(retarget("0xc", 9, targets, &[old], &[], 549, 10_000), None);
        assert!(retarget("0xc", 9, targets, &[old], &[], 550, 10_000).is_some());
        // In the last quarter of the window no longer renewing: a raise nobody claimed is
        // lowered before the slot can be reopened at its end (so one slot opens, not two).
        assert_eq!(retarget("0xc", 9, targets, &[old], &[], 975, 100), None);
        let late = retarget("0xc", 9, raised, &[old], &[], 975, 100).map(|t| t.action);
        assert_eq!(late, Some(KeeperAction::SetTarget { from: 2, to: 1 }));
        // A slot vacated this round (reopened, marked lost) holds nothing: not renewed.
        let vacated = retarget("0xc", 9, raised, &[old], &[1000], 950, 100).map(|t| t.action);
        assert_eq!(vacated, Some(KeeperAction::SetTarget { from: 2, to: 1 }));
        // Never above the contract's limit.
        let full = Targets { base: 32, on_chain: 32, max: 32 };
        assert_eq!(retarget("0xc", 9, full, &[old], &[], 950, 100), None);
    }

    #[test]
    fn a_raise_is_sent_only_when_the_order_can_pay_for_its_claims() {
        assert!(raise_funded(1, 2, 100, 100));
        assert!(!raise_funded(1, 2, 100, 99));
        assert!(!raise_funded(1, 3, 100, 199), "two claims");
        assert!(raise_funded(2, 1, 100, 0), "a lowering costs nothing");
        assert!(!raise_funded(0, u16::MAX, u128::MAX, u128::MAX), "no overflow");
    }

    fn status() -> impl Strategy<Value = MarketStatus> {
        prop_oneof![
            Just(MarketStatus::Published),
            Just(MarketStatus::Active),
            Just(MarketStatus::NotFound),
            Just(MarketStatus::Gone),
            Just(MarketStatus::Unknown),
        ]
    }

    fn replica_state() -> impl Strategy<Value = ReplicaState> {
        prop_oneof![
            Just(ReplicaState::Claimed),
            Just(ReplicaState::Published),
            Just(ReplicaState::Active),
            Just(ReplicaState::Reopened),
        ]
    }

    proptest! {
        /// Whatever the replicas and the head: the target asked for is never below the order's
        /// own nor above the contract's limit (unless the order's own is), never below the
        /// slots that stay in use, and asked for only when it differs from the one on chain.
        #[test]
        fn a_new_target_is_raised_only_for_renewals_the_order_lacks(
            slots in proptest::collection::vec((replica_state(), 0u64..2000), 0..8),
            base in 1u16..6,
            on_chain in 1u16..12,
            head in 0u64..2500,
            renew in 0u64..500,
        ) {
            let replicas: Vec<Replica> = slots
                .iter()
                .enumerate()
                .map(|(k, &(state, end))| Replica {
                    provider: 1000 + k as u64,
                    start_epoch: Some(0),
                    end_epoch: Some(end),
                    ..replica(state)
                })
                .collect();
            let targets = Targets { base, on_chain, max: 8 };
            if let Some(t) = retarget("0xc", 1, targets, &replicas, &[], head, renew) {
                let KeeperAction::SetTarget { from, to } = t.action else { panic!("{t:?}") };
                prop_assert_eq!(from, on_chain);
                prop_assert!(to >= base && to <= 8 && to != on_chain);
                let held = replicas.iter().filter(|r| r.state != ReplicaState::Reopened);
                let ending = held.clone().filter(|r| renewing(r, head, renew)).count();
                if to > base {
                    // Raised only while the order lacks replicas that are not ending, and by
                    // no more than the ending ones.
                    prop_assert!(held.count() - ending < usize::from(base));
                    prop_assert!(usize::from(to - base) <= ending);
                }
            }
        }

        /// Whatever the market answers, in whatever order: an unknown answer never makes a
        /// replica gone, and only a read of the slot's own piece and provider is active.
        #[test]
        fn no_answer_sequence_takes_an_unknown_for_gone(
            answers in proptest::collection::vec((status(), 0u64..2000, any::<bool>()), 1..20)
        ) {
            let mut view: Option<MarketView> = None;
            for (status, epoch, ours) in answers {
                let mut r = read(status, epoch);
                if !ours {
                    r.provider = 1001;
                }
                let next = classify(&r, &EXPECTED, view.as_ref(), 100);
                if status == MarketStatus::Unknown {
                    prop_assert!(!next.state.gone());
                }
                if matches!(next.state, MarketState::Active | MarketState::Expiring) {
                    prop_assert!(ours);
                }
                view = Some(next);
            }
        }
    }
}
