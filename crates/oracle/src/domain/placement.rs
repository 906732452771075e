//! Where a piece's replicas go, pure: the storage providers the operator works with (each with
//! its own policy), which of them take a piece, in which order (by score), and the terms of a
//! deal proposed to one of them, checked before anything goes on chain.
//!
//! ```text
//!   --provider policies ─┐
//!   scores (provider.rs) ├─► choose(piece, wanted, held, tried) ──► providers, best first
//!   in-flight bytes     ─┘                                     └─► the others, each with why
//!
//!   chosen provider + DealClient policy + head ──► proposal_terms ──► DealTerms | Preflight
//! ```
//!
//! Rules, in the order [`choose`] applies them:
//! - never two replicas of a piece at one provider, and never again a provider that failed the
//!   piece before (a lapsed proposal, a deal gone early) while another can take it;
//! - the provider's policy takes the deal: its price is at most what the operator pays, it takes
//!   verified (or unverified) deals as asked, the piece is within its sizes, and its bytes in
//!   flight stay under its cap;
//! - optional caps on replicas per organisation and per region;
//! - among those left, the highest score first (a provider never seen scores ½, as in
//!   [`super::provider`]); ties go to the lower miner id, so a choice is reproducible.

use std::collections::HashMap;

use serde::Serialize;

/// One GiB, the unit prices are quoted in.
pub const GIB: u64 = 1 << 30;

/// A storage provider the operator deals with, and on what terms (`--provider`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderPolicy {
    /// The miner actor id (`f0…`).
    pub provider: u64,
    /// What it asks, in attoFIL per GiB (padded) per epoch.
    pub price: u128,
    /// Which deals it takes: `Some(true)` only verified (Fil+), `Some(false)` only unverified,
    /// `None` both.
    pub verified: Option<bool>,
    /// Smallest padded piece it takes.
    pub min_size: u64,
    /// Largest padded piece it takes.
    pub max_size: u64,
    /// Most padded bytes proposed to it and not yet active (None: no cap).
    pub max_in_flight: Option<u64>,
    /// Its organisation (several miners may be one company).
    pub org: Option<String>,
    /// Its region.
    pub region: Option<String>,
    /// Where it serves retrievals (`/piece/{cid}` and the trustless gateway), for the
    /// oracle's probes (none: not probed).
    pub url: Option<String>,
}

/// Why a policy text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The miner is not `f0<id>` (or `t0<id>`).
    #[error("{0:?} is not a miner id (f0…)")]
    Miner(String),
    /// A setting this parser does not know.
    #[error(
        "unknown setting {0:?} (price, verified, min-size, max-size, max-in-flight, org, region, url)"
    )]
    Unknown(String),
    /// A setting's value is not one.
    #[error("{key}={value:?}: {why}")]
    Value {
        /// The setting.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// A size: bytes, or with a `KiB`, `MiB`, `GiB` or `TiB` suffix.
fn size(key: &str, value: &str) -> Result<u64, PolicyError> {
    let bad = |why| PolicyError::Value { key: key.to_owned(), value: value.to_owned(), why };
    let (digits, unit) = value
        .find(|c: char| !c.is_ascii_digit())
        .map_or((value, ""), |at| (&value[..at], &value[at..]));
    let n: u64 = digits.parse().map_err(|_| bad("not a size"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "tib" => 40,
        _ => return Err(bad("units are B, KiB, MiB, GiB, TiB")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| bad("too large"))
}

impl std::str::FromStr for ProviderPolicy {
    type Err = PolicyError;

    /// `f01000` or `f01000:price=0,verified=any,min-size=1MiB,max-size=32GiB,max-in-flight=1TiB,org=acme,region=eu,url=https://sp.example`.
    /// Defaults: price 0, both kinds of deal, any size up to 64 GiB, no in-flight cap, no
    /// organisation or region.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (miner, settings) = s.split_once(':').unwrap_or((s, ""));
        let miner = miner.trim();
        let provider = miner
            .strip_prefix("f0")
            .or_else(|| miner.strip_prefix("t0"))
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| PolicyError::Miner(miner.to_owned()))?;
        let mut policy = Self {
            provider,
            price: 0,
            verified: None,
            min_size: 0,
            max_size: 64 * GIB,
            max_in_flight: None,
            org: None,
            region: None,
            url: None,
        };
        for setting in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
            let bad =
                |why| PolicyError::Value { key: key.to_owned(), value: value.to_owned(), why };
            match key {
                "price" => {
                    policy.price = value.parse().map_err(|_| bad("attoFIL per GiB per epoch"))?;
                }
                "verified" => {
                    policy.verified = match value {
                        "any" => None,
                        "true" | "only" => Some(true),
                        "false" | "no" => Some(false),
                        _ => return Err(bad("any, true or false")),
                    }
                }
                "min-size" => policy.min_size = size(key, value)?,
                "max-size" => policy.max_size = size(key, value)?,
                "max-in-flight" => policy.max_in_flight = Some(size(key, value)?),
                "org" | "region" if value.is_empty() || value.len() > 64 => {
                    return Err(bad("1 to 64 characters"));
                }
                "org" => policy.org = Some(value.to_owned()),
                "region" => policy.region = Some(value.to_owned()),
                "url" => {
                    let ok = (value.starts_with("http://") || value.starts_with("https://"))
                        && value.len() <= 256
                        && value.parse::<http::Uri>().is_ok_and(|u| {
                            u.host().is_some_and(|h| !h.is_empty()) && u.query().is_none()
                        });
                    if !ok {
                        return Err(bad("an http(s) URL"));
                    }
                    policy.url = Some(value.trim_end_matches('/').to_owned());
                }
                _ => return Err(PolicyError::Unknown(key.to_owned())),
            }
        }
        if policy.min_size > policy.max_size {
            return Err(PolicyError::Value {
                key: "min-size".into(),
                value: policy.min_size.to_string(),
                why: "above max-size",
            });
        }
        Ok(policy)
    }
}

/// The operator's rules for every piece.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementRules {
    /// Most the operator pays, in attoFIL per GiB per epoch.
    pub max_price: u128,
    /// Verified (Fil+) deals.
    pub verified: bool,
    /// Most replicas of one piece in one organisation (None: no cap).
    pub per_org: Option<u16>,
    /// Most replicas of one piece in one region (None: no cap).
    pub per_region: Option<u16>,
}

/// Why a provider is not chosen for a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// It holds (or is being proposed) a replica of the piece.
    Holds,
    /// It failed this piece before (and another provider can take it).
    FailedBefore,
    /// It asks more than the operator pays.
    Price,
    /// It does not take this kind of deal (verified or not).
    Verified,
    /// The piece is outside its sizes.
    Size,
    /// Its bytes in flight would pass its cap.
    InFlight,
    /// Its organisation holds as many replicas as allowed.
    Org,
    /// Its region holds as many replicas as allowed.
    Region,
    /// The operator suspended it.
    Suspended,
}

/// What [`choose`] decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Choice {
    /// Providers to propose to, best first (at most the number wanted).
    pub chosen: Vec<u64>,
    /// Providers left out, with why (in policy order).
    pub skipped: Vec<(u64, Skip)>,
}

/// What [`choose`] knows of the piece and of the providers now.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// Padded size of the piece.
    pub padded_size: u64,
    /// Providers holding or being proposed a replica of it.
    pub held: &'a [u64],
    /// Providers that failed it before.
    pub failed: &'a [u64],
    /// Providers not to ask for it at all (failed it too often, or a proposal of theirs is
    /// being withdrawn).
    pub excluded: &'a [u64],
    /// Providers asked first whatever their score, unless they failed it (the provider of a
    /// deal being renewed).
    pub preferred: &'a [u64],
    /// Providers the operator suspended: never asked.
    pub suspended: &'a [u64],
    /// Score of each provider seen (the others score ½).
    pub scores: &'a HashMap<u64, f64>,
    /// Padded bytes in flight at each provider (proposed, not yet active).
    pub in_flight: &'a HashMap<u64, u64>,
}

/// Up to `wanted` providers for a piece, best first; see the module's rules.
pub fn choose(
    policies: &[ProviderPolicy],
    rules: &PlacementRules,
    now: &Situation<'_>,
    wanted: usize,
) -> Choice {
    let mut choice = Choice::default();
    let mut eligible: Vec<(&ProviderPolicy, bool)> = Vec::new();
    for p in policies {
        let skip = if now.held.contains(&p.provider) {
            Some(Skip::Holds)
        } else if now.suspended.contains(&p.provider) {
            Some(Skip::Suspended)
        } else if now.excluded.contains(&p.provider) {
            Some(Skip::FailedBefore)
        } else if p.price > rules.max_price {
            Some(Skip::Price)
        } else if p.verified.is_some_and(|v| v != rules.verified) {
            Some(Skip::Verified)
        } else if now.padded_size < p.min_size || now.padded_size > p.max_size {
            Some(Skip::Size)
        } else if p.max_in_flight.is_some_and(|cap| {
            now.in_flight.get(&p.provider).copied().unwrap_or(0).saturating_add(now.padded_size)
                > cap
        }) {
            Some(Skip::InFlight)
        } else {
            None
        };
        match skip {
            Some(why) => choice.skipped.push((p.provider, why)),
            None => eligible.push((p, now.failed.contains(&p.provider))),
        }
    }
    // Best first: never failed this piece, then preferred, then score, then the lower id.
    let score = |p: u64| now.scores.get(&p).copied().unwrap_or(0.5);
    let preferred = |p: u64| now.preferred.contains(&p);
    eligible.sort_by(|(a, fa), (b, fb)| {
        fa.cmp(fb)
            .then_with(|| preferred(b.provider).cmp(&preferred(a.provider)))
            .then_with(|| score(b.provider).total_cmp(&score(a.provider)))
            .then_with(|| a.provider.cmp(&b.provider))
    });
    // Replicas per organisation and region: those held, then those chosen here.
    let mut orgs: HashMap<&String, usize> = HashMap::new();
    let mut regions: HashMap<&String, usize> = HashMap::new();
    let policy_of = |p: &u64| policies.iter().find(|x| x.provider == *p);
    for held in now.held.iter().filter_map(policy_of) {
        if let Some(org) = held.org.as_ref() {
            *orgs.entry(org).or_default() += 1;
        }
        if let Some(region) = held.region.as_ref() {
            *regions.entry(region).or_default() += 1;
        }
    }
    let full = |cap: Option<u16>, tag: Option<&String>, taken: &HashMap<&String, usize>| {
        matches!((cap, tag), (Some(cap), Some(tag))
            if taken.get(tag).copied().unwrap_or(0) >= usize::from(cap))
    };
    for (p, failed) in eligible {
        if choice.chosen.len() >= wanted {
            break;
        }
        if failed && !choice.chosen.is_empty() {
            // Only once no provider that never failed it is left.
            choice.skipped.push((p.provider, Skip::FailedBefore));
            continue;
        }
        if full(rules.per_org, p.org.as_ref(), &orgs) {
            choice.skipped.push((p.provider, Skip::Org));
            continue;
        }
        if full(rules.per_region, p.region.as_ref(), &regions) {
            choice.skipped.push((p.provider, Skip::Region));
            continue;
        }
        if let Some(org) = p.org.as_ref() {
            *orgs.entry(org).or_default() += 1;
        }
        if let Some(region) = p.region.as_ref() {
            *regions.entry(region).or_default() += 1;
        }
        choice.chosen.push(p.provider);
    }
    choice
}

/// What a `DealClient` contract checks a proposal against (its `dealPolicy()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPolicy {
    /// Shortest deal, in epochs.
    pub min_duration: u64,
    /// Longest deal, in epochs.
    pub max_duration: u64,
    /// Fewest epochs from now to the deal's start.
    pub min_start_delay: u64,
    /// Most epochs from now to the deal's end.
    pub max_end_delay: u64,
    /// Provider collateral per padded byte, at least.
    pub min_collateral_per_byte: u128,
}

/// What the operator asks of every proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DealAsk {
    /// The deal's duration, in epochs.
    pub duration: u64,
    /// Epochs from now to the deal's start (time to fetch and seal).
    pub start_delay: u64,
}

/// A proposal's terms, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DealTerms {
    /// The provider named.
    pub provider: u64,
    /// First epoch of the deal (it must be active by then).
    pub start_epoch: u64,
    /// Last epoch.
    pub end_epoch: u64,
    /// attoFIL per epoch.
    #[serde(serialize_with = "decimal")]
    pub price_per_epoch: u128,
    /// The provider's collateral, in attoFIL.
    #[serde(serialize_with = "decimal")]
    pub provider_collateral: u128,
    /// What the client's market escrow must hold for it: price × duration (no client
    /// collateral).
    #[serde(serialize_with = "decimal")]
    pub escrow: u128,
}

fn decimal<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Why a proposal is not sent (nothing goes on chain, no gas is paid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalPreflight {
    /// The CAR does not fit the piece (Fr32: 127 payload bytes per 128).
    #[error("a CAR of {car_size} bytes does not fit a padded piece of {padded_size}")]
    BadSize {
        /// The padded size.
        padded_size: u64,
        /// The CAR's size.
        car_size: u64,
    },
    /// The duration is outside the client contract's bounds.
    #[error("a deal of {duration} epochs is outside the contract's {min}..={max}")]
    Duration {
        /// Asked.
        duration: u64,
        /// Shortest.
        min: u64,
        /// Longest.
        max: u64,
    },
    /// The start is sooner than the contract allows.
    #[error("a start {delay} epochs away is sooner than the contract's {min}")]
    Start {
        /// Asked.
        delay: u64,
        /// Fewest.
        min: u64,
    },
    /// The end is later than the contract allows.
    #[error("an end {delay} epochs away is later than the contract's {max}")]
    End {
        /// Asked.
        delay: u64,
        /// Most.
        max: u64,
    },
    /// The price or collateral is past the market's bound.
    #[error("price or collateral past the market's bound")]
    Amount,
    /// The client's free market escrow does not cover the deal (the contract's own check,
    /// answered without gas).
    #[error("market escrow {available} attoFIL free, the deal needs {needed}")]
    Escrow {
        /// What the deal needs.
        needed: u128,
        /// What is free.
        available: u128,
    },
    /// A verified deal: the client's DataCap, less what its proposals not yet published will
    /// take, does not cover the piece (the market would drop the deal when the provider
    /// publishes it, and the proposal would lapse).
    #[error(
        "DataCap: the client has {balance} bytes, {pending} of them for proposals not yet \
         published; a verified deal of this piece needs {needed}"
    )]
    DataCap {
        /// The piece's padded size.
        needed: u64,
        /// The client's DataCap balance (whole tokens: bytes).
        balance: u64,
        /// Taken by its proposals not yet published.
        pending: u64,
    },
    /// A verified deal the verified registry would refuse to allocate for: the market asks it
    /// for an allocation per verified deal when the provider publishes, and a refusal fails the
    /// provider's whole PublishStorageDeals message.
    #[error(
        "a verified deal of {padded_size} bytes lasting {duration} epochs is outside the verified \
         registry's bounds ({MIN_VERIFIED_SIZE} bytes at least, {MIN_VERIFIED_TERM} to \
         {MAX_VERIFIED_TERM} epochs)"
    )]
    Allocation {
        /// The piece's padded size.
        padded_size: u64,
        /// The deal's duration (the allocation's minimum term).
        duration: u64,
    },
    /// A verified deal, and the client's DataCap could not be read (retried next round).
    #[error("DataCap: the client's balance could not be read: {0}")]
    DataCapUnread(String),
}

impl ProposalPreflight {
    /// Whether waiting can fix it (the operator adds escrow or DataCap, or a read comes
    /// through); the others need new settings.
    pub fn may_pass_later(&self) -> bool {
        matches!(self, Self::Escrow { .. } | Self::DataCap { .. } | Self::DataCapUnread(_))
    }
}

/// The verified registry's bounds on the allocation a verified deal asks for, as mainnet and
/// Calibration build them (builtin-actors v18 `runtime/src/runtime/policy.rs`:
/// `MINIMUM_VERIFIED_ALLOCATION_SIZE` 1 MiB without the `small-deals` feature,
/// `MINIMUM_VERIFIED_ALLOCATION_TERM` 180 days, `MAXIMUM_VERIFIED_ALLOCATION_TERM` 5 years of
/// `EPOCHS_IN_YEAR` = 31,556,925 s / 30; `actors/market/src/lib.rs`
/// `alloc_request_for_deal`: the minimum term is the deal's duration, the maximum that plus 90
/// days, at most 5 years; `actors/verifreg/src/lib.rs` `validate_new_allocation`).
pub const MIN_VERIFIED_SIZE: u64 = 1 << 20;
/// The shortest verified deal (its allocation's minimum term), in epochs.
pub const MIN_VERIFIED_TERM: u64 = 180 * 2880;
/// The longest verified deal, in epochs.
pub const MAX_VERIFIED_TERM: u64 = 5 * (31_556_925 / 30);

/// Whether the verified registry takes the allocation of a verified deal of `padded_size`
/// bytes lasting `duration` epochs.
pub fn verified_allocation(padded_size: u64, duration: u64) -> Result<(), ProposalPreflight> {
    if padded_size < MIN_VERIFIED_SIZE
        || !(MIN_VERIFIED_TERM..=MAX_VERIFIED_TERM).contains(&duration)
    {
        return Err(ProposalPreflight::Allocation { padded_size, duration });
    }
    Ok(())
}

/// What a client's DataCap leaves for the next verified proposal: its balance (whole tokens,
/// one per byte of padded piece) less what its proposals not yet published will take when the
/// market publishes them (builtin-actors v18 `actors/market/src/lib.rs`
/// `publish_storage_deals`: `TokenAmount::from_whole(piece_size)` each, a deal the balance
/// does not cover dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataCapLeft {
    /// The balance read.
    pub balance: u64,
    /// Bytes its proposals not yet published will take.
    pub pending: u64,
}

impl DataCapLeft {
    /// Takes a verified proposal of `padded_size` out of what is left, or says why not.
    pub fn take(&mut self, padded_size: u64) -> Result<(), ProposalPreflight> {
        let after = self.pending.checked_add(padded_size).filter(|&used| used <= self.balance);
        match after {
            Some(used) => {
                self.pending = used;
                Ok(())
            }
            None => Err(ProposalPreflight::DataCap {
                needed: padded_size,
                balance: self.balance,
                pending: self.pending,
            }),
        }
    }
}

/// Epochs allowed between the head a proposal is planned at and the block it lands in.
pub const INCLUSION_SLACK: u64 = 5;

/// The market's bound on any amount (`TOTAL_FILECOIN`: 2 × 10⁹ FIL).
pub const TOTAL_FILECOIN: u128 = 2_000_000_000 * 10u128.pow(18);

/// The terms of a proposal of a piece to `policy`'s provider at `head`, checked against every
/// rule of `DealClient.makeDealProposal` that can be checked off chain (its `check`: the CAR
/// within 127/128 of the padded size, the start delay, the duration and end bounds, the
/// collateral floor, the market's `TOTAL_FILECOIN` bound). The price is the provider's, per
/// GiB, rounded up for pieces smaller than a GiB; the collateral is the contract's floor.
pub fn proposal_terms(
    padded_size: u64,
    car_size: u64,
    policy: &ProviderPolicy,
    client: &ClientPolicy,
    ask: &DealAsk,
    head: u64,
) -> Result<DealTerms, ProposalPreflight> {
    if car_size == 0 || u128::from(car_size) * 128 > u128::from(padded_size) * 127 {
        return Err(ProposalPreflight::BadSize { padded_size, car_size });
    }
    // The contract counts from the block the proposal lands in, a few after the head read.
    let min_delay = client.min_start_delay.saturating_add(INCLUSION_SLACK);
    if ask.start_delay < min_delay {
        return Err(ProposalPreflight::Start { delay: ask.start_delay, min: min_delay });
    }
    if ask.duration < client.min_duration || ask.duration > client.max_duration {
        return Err(ProposalPreflight::Duration {
            duration: ask.duration,
            min: client.min_duration,
            max: client.max_duration,
        });
    }
    let end_delay = ask.start_delay.saturating_add(ask.duration);
    if end_delay > client.max_end_delay {
        return Err(ProposalPreflight::End { delay: end_delay, max: client.max_end_delay });
    }
    let gib = u128::from(GIB);
    let price_per_epoch = policy
        .price
        .checked_mul(u128::from(padded_size))
        .map(|p| p.div_ceil(gib))
        .ok_or(ProposalPreflight::Amount)?;
    let provider_collateral = client
        .min_collateral_per_byte
        .checked_mul(u128::from(padded_size))
        .ok_or(ProposalPreflight::Amount)?;
    let escrow =
        price_per_epoch.checked_mul(u128::from(ask.duration)).ok_or(ProposalPreflight::Amount)?;
    if price_per_epoch > TOTAL_FILECOIN || provider_collateral > TOTAL_FILECOIN {
        return Err(ProposalPreflight::Amount);
    }
    let start_epoch = head.saturating_add(ask.start_delay);
    Ok(DealTerms {
        provider: policy.provider,
        start_epoch,
        end_epoch: start_epoch.saturating_add(ask.duration),
        price_per_epoch,
        provider_collateral,
        escrow,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy(text: &str) -> ProviderPolicy {
        text.parse().unwrap()
    }

    #[test]
    fn a_verified_deal_keeps_within_the_registrys_allocation_bounds() {
        assert_eq!(verified_allocation(1 << 20, 518_400), Ok(()));
        assert_eq!(verified_allocation(1 << 35, MAX_VERIFIED_TERM), Ok(()));
        for (size, duration) in
            [((1 << 20) - 1, 518_400), (1 << 20, 518_399), (1 << 20, MAX_VERIFIED_TERM + 1)]
        {
            let refused = verified_allocation(size, duration).unwrap_err();
            assert!(!refused.may_pass_later(), "{refused}");
        }
        assert_eq!(MAX_VERIFIED_TERM, 5_259_485);
    }

    #[test]
    fn a_verified_proposal_takes_datacap_its_pending_ones_have_not() {
        let mut left = DataCapLeft { balance: 4096, pending: 1024 };
        assert_eq!(left.take(2048), Ok(()));
        assert_eq!(left.pending, 3072);
        let short = left.take(2048).unwrap_err();
        assert_eq!(
            short,
            ProposalPreflight::DataCap { needed: 2048, balance: 4096, pending: 3072 }
        );
        assert!(short.may_pass_later());
        assert_eq!(left.pending, 3072, "a refusal takes nothing");
        assert_eq!(left.take(1024), Ok(()), "exactly what is left");
        let mut full = DataCapLeft { balance: u64::MAX, pending: u64::MAX };
        assert!(full.take(1).is_err(), "no overflow");
    }

    #[test]
    fn policies_parse_with_their_defaults_and_refuse_what_is_not_one() {
        let p = policy("f01000");
        assert_eq!((p.provider, p.price, p.verified, p.max_size), (1000, 0, None, 64 * GIB));
        let p = policy(
            "f01001:price=7,verified=true,min-size=1MiB,max-size=32GiB,max-in-flight=1TiB,org=acme,region=eu",
        );
        assert_eq!(
            (p.price, p.verified, p.min_size, p.max_size),
            (7, Some(true), 1 << 20, 32 * GIB)
        );
        assert_eq!(
            (p.max_in_flight, p.org.as_deref(), p.region.as_deref()),
            (Some(1 << 40), Some("acme"), Some("eu"))
        );
        let p = policy("f01002:price=1,url=http://127.0.0.1:3100/");
        assert_eq!(p.url.as_deref(), Some("http://127.0.0.1:3100"));
        for bad in [
            "1000",
            "f0x",
            "f01000:colour=red",
            "f01000:price=-1",
            "f01000:verified=maybe",
            "f01000:max-size=3PiB",
            "f01000:min-size=2GiB,max-size=1GiB",
            "f01000:org=",
            "f01000:max-size=99999999999999GiB",
            "f01000:url=ftp://sp.example",
            "f01000:url=http://",
            "f01000:url=",
        ] {
            assert!(bad.parse::<ProviderPolicy>().is_err(), "{bad}");
        }
    }

    fn situation<'a>(
        held: &'a [u64],
        failed: &'a [u64],
        scores: &'a HashMap<u64, f64>,
        in_flight: &'a HashMap<u64, u64>,
    ) -> Situation<'a> {
        Situation {
            padded_size: 1 << 20,
            held,
            failed,
            excluded: &[],
            preferred: &[],
            suspended: &[],
            scores,
            in_flight,
        }
    }

    #[test]
    fn the_best_scored_providers_that_take_the_deal_are_chosen_never_twice() {
        let policies = [
            policy("f01000"),
            policy("f01001:price=10"),
            policy("f01002:verified=true"),
            policy("f01003:min-size=2MiB"),
            policy("f01004:max-in-flight=1MiB"),
            policy("f01005"),
            policy("f01006"),
        ];
        let rules = PlacementRules { max_price: 5, ..PlacementRules::default() };
        let scores = HashMap::from([(1005, 0.9), (1000, 0.2)]);
        let in_flight = HashMap::from([(1004, 1)]);
        let c = choose(&policies, &rules, &situation(&[1006], &[], &scores, &in_flight), 3);
        // f01005 scores best; f01000 (0.2) comes after f01006's ½ — but f01006 holds one.
        assert_eq!(c.chosen, [1005, 1000]);
        assert_eq!(
            c.skipped,
            [
                (1001, Skip::Price),
                (1002, Skip::Verified),
                (1003, Skip::Size),
                (1004, Skip::InFlight),
                (1006, Skip::Holds)
            ]
        );
    }

    #[test]
    fn the_provider_of_an_ending_deal_renews_it_first_whatever_the_scores() {
        let policies = [policy("f01000"), policy("f01001")];
        let (scores, flight) = (HashMap::from([(1001, 0.9), (1000, 0.1)]), HashMap::new());
        let rules = PlacementRules::default();
        let mut now = situation(&[], &[], &scores, &flight);
        now.preferred = &[1000];
        assert_eq!(choose(&policies, &rules, &now, 1).chosen, [1000]);
        // Unless it failed the piece.
        now.failed = &[1000];
        assert_eq!(choose(&policies, &rules, &now, 1).chosen, [1001]);
    }

    #[test]
    fn a_provider_that_failed_the_piece_is_taken_only_when_no_other_is_left() {
        let policies = [policy("f01000"), policy("f01001"), policy("f01002")];
        let (scores, flight) = (HashMap::new(), HashMap::new());
        let rules = PlacementRules::default();
        let c = choose(&policies, &rules, &situation(&[], &[1000], &scores, &flight), 2);
        assert_eq!(c.chosen, [1001, 1002]);
        let c = choose(&policies, &rules, &situation(&[1001, 1002], &[1000], &scores, &flight), 1);
        assert_eq!(c.chosen, [1000], "the only one left");
    }

    #[test]
    fn organisation_and_region_caps_hold_with_replicas_already_placed() {
        let policies = [
            policy("f01000:org=a,region=eu"),
            policy("f01001:org=a,region=us"),
            policy("f01002:org=b,region=eu"),
            policy("f01003:org=c,region=us"),
        ];
        let (scores, flight) = (HashMap::new(), HashMap::new());
        let rules =
            PlacementRules { per_org: Some(1), per_region: Some(1), ..PlacementRules::default() };
        let c = choose(&policies, &rules, &situation(&[], &[], &scores, &flight), 4);
        assert_eq!(c.chosen, [1000, 1003]);
        assert_eq!(c.skipped, [(1001, Skip::Org), (1002, Skip::Region)]);
        let c = choose(&policies, &rules, &situation(&[1003], &[], &scores, &flight), 4);
        assert_eq!(c.chosen, [1000]);
    }

    fn client() -> ClientPolicy {
        ClientPolicy {
            min_duration: 300,
            max_duration: 3_680_640,
            min_start_delay: 10,
            max_end_delay: 3_680_640,
            min_collateral_per_byte: 100_000,
        }
    }

    #[test]
    fn terms_follow_the_providers_price_and_the_contracts_floor() {
        let p = policy("f01000:price=1000");
        let ask = DealAsk { duration: 1000, start_delay: 20 };
        let t = proposal_terms(1 << 20, 1000, &p, &client(), &ask, 50).unwrap();
        // 1000 per GiB per epoch for a MiB: 1000 / 1024, rounded up.
        assert_eq!((t.start_epoch, t.end_epoch, t.price_per_epoch), (70, 1070, 1));
        assert_eq!((t.provider_collateral, t.escrow), (100_000 << 20, 1000));
        let e = |ask, car| proposal_terms(1 << 20, car, &p, &client(), &ask, 50).unwrap_err();
        assert!(matches!(e(ask, 0), ProposalPreflight::BadSize { .. }));
        assert!(matches!(e(ask, (1 << 20) * 127 / 128 + 1), ProposalPreflight::BadSize { .. }));
        assert!(matches!(
            e(DealAsk { start_delay: 14, ..ask }, 1),
            ProposalPreflight::Start { .. }
        ));
        assert!(matches!(
            e(DealAsk { duration: 299, ..ask }, 1),
            ProposalPreflight::Duration { .. }
        ));
        assert!(matches!(
            e(DealAsk { duration: 3_680_640, ..ask }, 1),
            ProposalPreflight::End { .. }
        ));
        let dear = policy(&format!("f01000:price={}", u128::MAX));
        assert_eq!(
            proposal_terms(1 << 20, 1, &dear, &client(), &ask, 0),
            Err(ProposalPreflight::Amount)
        );
    }

    proptest! {
        /// Whatever the policies and the state, a choice never names a provider twice, never
        /// one holding the piece, never more than wanted, and only providers whose policy
        /// takes the deal.
        #[test]
        fn choices_keep_the_rules(
            prices in proptest::collection::vec(0u128..4, 1..12),
            held in proptest::collection::vec(0u64..12, 0..4),
            failed in proptest::collection::vec(0u64..12, 0..4),
            wanted in 0usize..6,
            orgs in proptest::collection::vec(0u8..3, 12),
        ) {
            let policies: Vec<ProviderPolicy> = prices
                .iter()
                .enumerate()
                .map(|(i, price)| policy(&format!("f0{}:price={price},org=o{}", 1000 + i, orgs[i])))
                .collect();
            let held: Vec<u64> = held.iter().map(|h| 1000 + h).collect();
            let failed: Vec<u64> = failed.iter().map(|h| 1000 + h).collect();
            let (scores, flight) = (HashMap::new(), HashMap::new());
            let rules = PlacementRules { max_price: 2, per_org: Some(2), ..PlacementRules::default() };
            let c = choose(&policies, &rules, &situation(&held, &failed, &scores, &flight), wanted);
            prop_assert!(c.chosen.len() <= wanted);
            let mut seen = c.chosen.clone();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), c.chosen.len());
            for p in &c.chosen {
                prop_assert!(!held.contains(p));
                let pol = policies.iter().find(|x| x.provider == *p).unwrap();
                prop_assert!(pol.price <= 2);
                let same_org = held.iter().chain(c.chosen.iter())
                    .filter_map(|h| policies.iter().find(|x| x.provider == *h))
                    .filter(|x| x.org == pol.org)
                    .count();
                // Held replicas may already pass the cap; a new one never adds to such an org.
                let held_org = held.iter()
                    .filter_map(|h| policies.iter().find(|x| x.provider == *h))
                    .filter(|x| x.org == pol.org)
                    .count();
                prop_assert!(held_org < 2 && same_org <= 2.max(held_org));
            }
        }
    }
}
