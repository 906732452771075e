//! Storage providers as the oracle knows them: what each did with the slots of the oracle's
//! orders (from the storage contract's events, in chain order) and what the market says of
//! their deals, and one score from it. Pure: the store hands in the events.
//!
//! ```text
//!   per order: slot events ──► per provider: claims, publications, activations,
//!                                lapsed claims, replicas ended early, times (in epochs)
//!   + market views (slashed deals) + head ──► score = success (decayed) × speed
//! ```
//!
//! - **Success** is `(S + 1) / (S + F + 2)`: `S` the activations and `F` the failures (a claim
//!   that lapsed, a replica whose deal ended before its term, a deal the market says was
//!   slashed), each weighed `2^(−age / half_life)` so that recent failures count most and old
//!   ones fade. A provider never seen scores ½.
//! - **Speed** is `1 − ¼ · min(1, mean epochs from claim to activation / claim window)`: an SP
//!   that proves its deals at once keeps its success rate; one that needs the whole window
//!   loses a quarter.
//!
//! - **Probes** ([`crate::domain::probe`], each replica's last ones kept): a verified read
//!   adds ¼ of a success, a failed one a whole failure, decayed like the rest, so that an SP
//!   that stops serving sinks within a few probes while one that serves is not lifted above
//!   what its deals show; and the mean latency of the verified reads takes up to a fifth off
//!   (`1 − ⅕ · min(1, latency / 10 s)`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    deal::{Replica, ReplicaState, SlotEvent, SlotEventKind, step},
    market::MarketState,
};

/// What the score is computed with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRules {
    /// Epochs after which an event weighs half.
    pub half_life: u64,
    /// The contract's claim window, in epochs (what "slow" is measured against).
    pub claim_window: u64,
}

impl Default for ScoreRules {
    /// A week's half-life (20,160 epochs of 30 s) and the production claim window of two days
    /// (5,760 epochs, `contracts/script/Deploy.s.sol`).
    fn default() -> Self {
        Self { half_life: 20_160, claim_window: 5_760 }
    }
}

impl ScoreRules {
    /// Epochs past which an event weighs under 2^-10 of a new one (ten half-lives): what a
    /// score may leave unread.
    pub fn horizon(&self) -> u64 {
        self.half_life.max(1).saturating_mul(10)
    }
}

/// A probe, as a score reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSample {
    /// Whose replica was read.
    pub provider: u64,
    /// The chain's head at the probe.
    pub block: u64,
    /// Whether the read verified.
    pub ok: bool,
    /// How long it took.
    pub latency_ms: u64,
}

/// A provider's probes, summed over its replicas (kept for good, unlike the samples).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProbeTotals {
    /// Probes that read verified bytes.
    pub ok: u64,
    /// Probes that did not.
    pub failed: u64,
    /// Replicas found lost.
    pub lost: u64,
}

/// What the probes add to the providers' stats.
#[derive(Debug, Clone, Copy)]
pub struct ProbeInputs<'a> {
    /// The probes kept.
    pub samples: &'a [ProbeSample],
    /// Each provider's totals.
    pub totals: &'a BTreeMap<u64, ProbeTotals>,
    /// The providers the operator suspended.
    pub suspended: &'a [u64],
}

impl ProbeInputs<'static> {
    /// No probes, nobody suspended.
    pub fn none() -> Self {
        static NO_TOTALS: BTreeMap<u64, ProbeTotals> = BTreeMap::new();
        Self { samples: &[], totals: &NO_TOTALS, suspended: &[] }
    }
}

/// A verified probe weighs this much of a deal's success.
const PROBE_OK_WEIGHT: f64 = 0.25;
/// Latency at which a provider loses the most a slow reader loses.
const SLOW_PROBE_MS: f64 = 10_000.0;

/// One provider, as the oracle's orders saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderStats {
    /// The miner actor id.
    pub provider: u64,
    /// Slots claimed.
    pub claims: u64,
    /// Deals published.
    pub published: u64,
    /// Replicas activated.
    pub activated: u64,
    /// Claims reopened before their deal was proven.
    pub lapsed: u64,
    /// Replicas reopened before the end of their term (their deal gone).
    pub ended_early: u64,
    /// Replicas whose term completed.
    pub completed: u64,
    /// Deals the market says were slashed (terminated before their end).
    pub slashed: u64,
    /// Replicas active now (counting toward their orders).
    pub deals_active: u64,
    /// Slots claimed or published now, not yet active.
    pub in_flight: u64,
    /// Padded bytes of those.
    pub in_flight_bytes: u64,
    /// Padded bytes of the active replicas.
    pub active_bytes: u64,
    /// Mean epochs from claim to publication.
    pub publish_epochs: Option<f64>,
    /// Mean epochs from claim to activation.
    pub activate_epochs: Option<f64>,
    /// Block of the most recent failure (a lapse, an early end, a slashing or a failed probe).
    pub last_failure: Option<u64>,
    /// Probes that read verified bytes from it.
    pub probes_ok: u64,
    /// Probes that did not.
    pub probes_failed: u64,
    /// Its replicas found lost by probes.
    pub replicas_lost: u64,
    /// Mean latency of its recent verified probes.
    pub probe_latency_ms: Option<f64>,
    /// Suspended by the operator: not chosen for new deals.
    pub suspended: bool,
    /// Activations over activations and failures, failures and successes decayed by age.
    pub success_rate: f64,
    /// The score (0–1): success × speed.
    pub score: f64,
}

/// One order's history, as the store reads it.
#[derive(Debug, Clone)]
pub struct OrderHistory {
    /// Its slot events, in chain order.
    pub events: Vec<SlotEvent>,
    /// Its replicas now (folded from `events`, with their market views).
    pub replicas: Vec<Replica>,
    /// The piece's padded size.
    pub padded_size: u64,
}

#[derive(Default)]
struct Tally {
    claims: u64,
    published: u64,
    activated: u64,
    lapsed: u64,
    ended_early: u64,
    completed: u64,
    slashed: u64,
    active: u64,
    in_flight: u64,
    in_flight_bytes: u64,
    active_bytes: u64,
    publish_sum: u64,
    activate_sum: u64,
    successes: Vec<u64>,
    failures: Vec<u64>,
    probes_ok: Vec<u64>,
    probes_failed: Vec<u64>,
    latency_sum: u64,
}

fn weigh(blocks: &[u64], head: u64, half_life: u64) -> f64 {
    let half_life = half_life.max(1) as f64;
    blocks.iter().map(|b| (-(head.saturating_sub(*b) as f64) / half_life).exp2()).sum()
}

/// Every provider that appears in `orders` or was probed, by actor id, at `head`.
pub fn stats(
    orders: &[OrderHistory],
    probes: &ProbeInputs<'_>,
    head: u64,
    rules: &ScoreRules,
) -> Vec<ProviderStats> {
    let mut tallies: BTreeMap<u64, Tally> = BTreeMap::new();
    // A provider suspended before any order saw it is listed too.
    for p in probes.suspended {
        tallies.entry(*p).or_default();
    }
    for p in probes.samples {
        let t = tallies.entry(p.provider).or_default();
        if p.ok {
            t.probes_ok.push(p.block);
            t.latency_sum = t.latency_sum.saturating_add(p.latency_ms);
        } else {
            t.probes_failed.push(p.block);
        }
    }
    for order in orders {
        let mut slots: BTreeMap<u64, (Replica, u64)> = BTreeMap::new();
        for event in &order.events {
            let current = slots.get(&event.provider).map(|(r, _)| r);
            let Ok(next) = step(current, event) else { continue };
            let t = tallies.entry(event.provider).or_default();
            let claimed_at = slots.get(&event.provider).map_or(event.block_number, |(_, c)| *c);
            let since = event.block_number.saturating_sub(claimed_at);
            match event.kind {
                SlotEventKind::Claimed { .. } => t.claims += 1,
                SlotEventKind::Published { .. } => {
                    t.published += 1;
                    t.publish_sum += since;
                }
                SlotEventKind::Activated { .. } => {
                    t.activated += 1;
                    t.activate_sum += since;
                    t.successes.push(event.block_number);
                }
                SlotEventKind::Paid { .. } => {}
                SlotEventKind::Reopened => match current.map(|r| (r.state, r.end_epoch)) {
                    Some((ReplicaState::Active, Some(end))) if event.block_number >= end => {
                        t.completed += 1;
                    }
                    Some((ReplicaState::Active, _)) => {
                        t.ended_early += 1;
                        t.failures.push(event.block_number);
                    }
                    _ => {
                        t.lapsed += 1;
                        t.failures.push(event.block_number);
                    }
                },
            }
            let claimed_at = match event.kind {
                SlotEventKind::Claimed { .. } => event.block_number,
                _ => claimed_at,
            };
            slots.insert(event.provider, (next, claimed_at));
        }
        for r in &order.replicas {
            let t = tallies.entry(r.provider).or_default();
            match r.state {
                ReplicaState::Claimed | ReplicaState::Published => {
                    t.in_flight += 1;
                    t.in_flight_bytes += order.padded_size;
                }
                ReplicaState::Active if r.counts() => {
                    t.active += 1;
                    t.active_bytes += order.padded_size;
                }
                _ => {}
            }
            if let Some(m) = r.market
                && m.state == MarketState::Slashed
            {
                t.slashed += 1;
                // Once reopened, the early end already counted as the failure.
                if r.state != ReplicaState::Reopened {
                    t.failures.push(m.epoch);
                }
            }
        }
    }
    tallies
        .into_iter()
        .map(|(provider, t)| {
            let mean = |sum: u64, n: u64| (n > 0).then(|| sum as f64 / n as f64);
            let s = weigh(&t.successes, head, rules.half_life)
                + PROBE_OK_WEIGHT * weigh(&t.probes_ok, head, rules.half_life);
            let f = weigh(&t.failures, head, rules.half_life)
                + weigh(&t.probes_failed, head, rules.half_life);
            let success_rate = (s + 1.0) / (s + f + 2.0);
            let probe_latency_ms = mean(t.latency_sum, t.probes_ok.len() as u64);
            let sluggish = probe_latency_ms.map_or(0.0, |ms| (ms / SLOW_PROBE_MS).min(1.0));
            let totals = probes.totals.get(&provider).copied().unwrap_or_default();
            let activate_epochs = mean(t.activate_sum, t.activated);
            let slow =
                activate_epochs.map_or(0.0, |e| (e / rules.claim_window.max(1) as f64).min(1.0));
            ProviderStats {
                provider,
                claims: t.claims,
                published: t.published,
                activated: t.activated,
                lapsed: t.lapsed,
                ended_early: t.ended_early,
                completed: t.completed,
                slashed: t.slashed,
                deals_active: t.active,
                in_flight: t.in_flight,
                in_flight_bytes: t.in_flight_bytes,
                active_bytes: t.active_bytes,
                publish_epochs: mean(t.publish_sum, t.published),
                activate_epochs,
                last_failure: t.failures.iter().chain(&t.probes_failed).copied().max(),
                probes_ok: totals.ok,
                probes_failed: totals.failed,
                replicas_lost: totals.lost,
                probe_latency_ms,
                suspended: probes.suspended.contains(&provider),
                success_rate,
                score: success_rate * (1.0 - 0.25 * slow) * (1.0 - 0.2 * sluggish),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::deal::fold;

    fn ev(provider: u64, block_number: u64, kind: SlotEventKind) -> SlotEvent {
        SlotEvent { provider, block_number, kind }
    }

    fn history(events: Vec<SlotEvent>) -> OrderHistory {
        let (replicas, _) = fold(&events);
        OrderHistory { events, replicas, padded_size: 1024 }
    }

    const RULES: ScoreRules = ScoreRules { half_life: 1000, claim_window: 100 };

    #[test]
    fn a_provider_that_delivers_outscores_one_that_lapses_and_failures_fade() {
        use SlotEventKind as E;
        let claimed = E::Claimed { deadline: None };
        let good = history(vec![
            ev(1000, 10, claimed),
            ev(1000, 20, E::Published { deal_id: 1 }),
            ev(1000, 30, E::Activated { deal_id: Some(1), start_epoch: 30, end_epoch: 130 }),
            ev(1001, 10, claimed),
            ev(1001, 200, E::Reopened),
            ev(1002, 210, claimed),
        ]);
        let all = stats(std::slice::from_ref(&good), &ProbeInputs::none(), 300, &RULES);
        let (a, b, c) = (&all[0], &all[1], &all[2]);
        assert_eq!((a.claims, a.published, a.activated, a.deals_active), (1, 1, 1, 1));
        assert_eq!((a.publish_epochs, a.activate_epochs), (Some(10.0), Some(20.0)));
        assert_eq!((b.lapsed, b.last_failure, b.deals_active), (1, Some(200), 0));
        assert_eq!((c.in_flight, c.in_flight_bytes), (1, 1024));
        assert!(a.score > c.score && c.score > b.score, "{a:?} {b:?} {c:?}");
        assert!((c.score - 0.5).abs() < 1e-9, "a provider never seen scores ½");
        // The same lapse, long ago, weighs less.
        let later = stats(&[good], &ProbeInputs::none(), 20_000, &RULES);
        assert!(later[1].score > b.score);
        // A term completed is no failure; a replica reopened before its end is.
        let ended = history(vec![
            ev(1000, 10, claimed),
            ev(1000, 30, E::Activated { deal_id: Some(1), start_epoch: 30, end_epoch: 130 }),
            ev(1000, 130, E::Reopened),
            ev(1001, 10, claimed),
            ev(1001, 30, E::Activated { deal_id: Some(2), start_epoch: 30, end_epoch: 130 }),
            ev(1001, 60, E::Reopened),
        ]);
        let s = stats(&[ended], &ProbeInputs::none(), 200, &RULES);
        assert_eq!((s[0].completed, s[0].ended_early, s[0].last_failure), (1, 0, None));
        assert_eq!((s[1].completed, s[1].ended_early, s[1].last_failure), (0, 1, Some(60)));
    }

    #[test]
    fn failed_probes_sink_a_provider_and_verified_ones_lift_it_a_little() {
        use SlotEventKind as E;
        let claimed = E::Claimed { deadline: None };
        // Two providers with the same deal history.
        let both = history(vec![
            ev(1000, 10, claimed),
            ev(1000, 30, E::Activated { deal_id: Some(1), start_epoch: 30, end_epoch: 130 }),
            ev(1001, 10, claimed),
            ev(1001, 30, E::Activated { deal_id: Some(2), start_epoch: 30, end_epoch: 130 }),
        ]);
        let even = stats(std::slice::from_ref(&both), &ProbeInputs::none(), 100, &RULES);
        assert!((even[0].score - even[1].score).abs() < 1e-12);
        let sample = |provider, block, ok| ProbeSample { provider, block, ok, latency_ms: 50 };
        let samples = [
            sample(1000, 60, true),
            sample(1000, 70, true),
            sample(1001, 60, false),
            sample(1001, 70, false),
        ];
        let totals = BTreeMap::from([(1001, ProbeTotals { ok: 0, failed: 2, lost: 1 })]);
        let probes = ProbeInputs { samples: &samples, totals: &totals, suspended: &[1001] };
        let s = stats(std::slice::from_ref(&both), &probes, 100, &RULES);
        assert!(s[0].score > even[0].score, "verified reads lift it");
        assert!(s[1].score < even[1].score * 0.7, "two failed reads sink it: {:?}", s[1]);
        assert_eq!((s[1].probes_failed, s[1].replicas_lost, s[1].suspended), (2, 1, true));
        assert_eq!((s[1].last_failure, s[0].probe_latency_ms), (Some(70), Some(50.0)));
        // Slow reads cost up to a fifth.
        let slow = [ProbeSample { latency_ms: 60_000, ..samples[0] }];
        let probes = ProbeInputs { samples: &slow, ..ProbeInputs::none() };
        let fast = [samples[0]];
        let quick = ProbeInputs { samples: &fast, ..ProbeInputs::none() };
        let (a, b) = (
            stats(std::slice::from_ref(&both), &probes, 100, &RULES),
            stats(std::slice::from_ref(&both), &quick, 100, &RULES),
        );
        assert!((a[0].score / b[0].score - 0.8).abs() < 0.01, "{} {}", a[0].score, b[0].score);
    }

    fn kind() -> impl Strategy<Value = SlotEventKind> {
        prop_oneof![
            Just(SlotEventKind::Claimed { deadline: None }),
            (0u64..5).prop_map(|deal_id| SlotEventKind::Published { deal_id }),
            proptest::option::of(0u64..5).prop_map(|deal_id| SlotEventKind::Activated {
                deal_id,
                start_epoch: 1,
                end_epoch: 50
            }),
            Just(SlotEventKind::Reopened),
        ]
    }

    proptest! {
        /// Any history gives scores in 0..=1, and counts that add up.
        #[test]
        fn scores_stay_in_range_and_counts_add_up(
            events in proptest::collection::vec((1000u64..1004, kind()), 0..60),
            head in 0u64..100_000,
        ) {
            let events: Vec<SlotEvent> = events
                .into_iter()
                .enumerate()
                .map(|(i, (provider, kind))| ev(provider, i as u64 * 7, kind))
                .collect();
            for p in stats(&[history(events)], &ProbeInputs::none(), head, &RULES) {
                prop_assert!((0.0..=1.0).contains(&p.score));
                prop_assert!(p.score <= p.success_rate);
                prop_assert!(p.published <= p.claims && p.activated <= p.claims);
                prop_assert!(p.lapsed + p.ended_early + p.completed <= p.claims);
                prop_assert!(p.deals_active + p.in_flight <= 1);
            }
        }
    }
}
