//! Which offers a provider takes, and why it skips the rest.
//!
//! ```text
//!  Offer (read from the chain: an order's open slot, or a contract-deal proposal)
//!    │  evaluate(policy, offer, load, miner)
//!    ├─ Ok(())      → take it: claim the slot / fetch the proposal's piece
//!    └─ Err(Skip)   → recorded with its reason (`estuary sp status`), looked at again when the
//!                     contract says something changed (an event about the order or proposal)
//! ```
//!
//! The checks run in a fixed order, cheapest and most telling first, so that a skipped offer's
//! reason is the one an operator can act on: is it for us at all, is it still open, then the
//! provider's terms (size, verified, client, price, term), then its capacity (in-flight bytes)
//! and whether the work can be finished in time given what is already in flight.

use alloy::primitives::{Address, B256, U256};
use serde::Serialize;

/// Bytes in a GiB.
pub const GIB: u64 = 1 << 30;

/// Where an offer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OfferSource {
    /// An open replica slot of a `PerpetualStorage` order.
    Slot {
        /// The `PerpetualStorage` contract.
        contract: Address,
        /// The order.
        order: u64,
    },
    /// A `DealClient` proposal (FRC-0068 contract deal).
    Proposal {
        /// The `DealClient` contract.
        contract: Address,
        /// The proposal's id.
        id: B256,
    },
}

/// Why nothing can be taken from an offer whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Closed {
    /// The order or proposal was cancelled.
    Cancelled,
    /// The order stopped taking claims.
    Suspended,
    /// Every replica slot is in use (or every replica of the proposal has its deal).
    Full,
    /// The order's balance does not cover a slot's bounty.
    Underfunded,
    /// This miner already holds a slot of the order or a deal of the proposal.
    Held,
    /// The order's client marked this miner's replica lost (`markLost`): it may not claim a
    /// slot of the order again.
    Excluded,
    /// The deal's start epoch is past: it can no longer be published.
    StartPassed,
    /// The order or proposal does not exist (a reorg removed it).
    Unknown,
}

/// An offer as the agent evaluates it: the terms read from the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Where it comes from.
    pub source: OfferSource,
    /// Who asks: the order's client, or the proposal's proposer.
    pub client: Address,
    /// The one provider a proposal names (`None`: any provider).
    pub named_provider: Option<u64>,
    /// The padded piece size.
    pub piece_size: u64,
    /// The CAR's size: what is downloaded.
    pub car_size: u64,
    /// Whether the deal spends DataCap (Fil+).
    pub verified: bool,
    /// What the provider is paid over the deal's term: the slot's bounty, or the proposal's
    /// price per epoch times its duration.
    pub total_price: U256,
    /// The deal's duration in epochs.
    pub term: u64,
    /// Epochs from now until the deal must be active: a slot's claim window, or until a
    /// proposal's start epoch.
    pub time_to_start: u64,
    /// Epochs from now until the deal ends.
    pub remaining: u64,
    /// Whether there is anything to take, whatever the policy.
    pub open: Result<(), Closed>,
    /// Whether it names at least one place to download the CAR from.
    pub has_location: bool,
    /// Why this miner's last attempt at the same offer, from the same origins, failed (it is
    /// not taken again until something about it changes).
    pub failed_before: Option<String>,
}

/// The provider's terms and capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lowest price, in attoFIL per GiB (padded) per epoch.
    pub min_price_per_gib_epoch: U256,
    /// Smallest padded piece taken.
    pub min_piece_size: u64,
    /// Largest padded piece taken.
    pub max_piece_size: u64,
    /// Take verified (Fil+) deals only.
    pub verified_only: bool,
    /// Clients (order creators, proposal proposers) taken; empty: any.
    pub allowed_clients: Vec<Address>,
    /// Most padded bytes of work not yet active (claimed, fetching, sealing).
    pub max_in_flight_bytes: u64,
    /// Shortest deal taken, in epochs from now to its end.
    pub min_term: u64,
    /// Download rate counted on, in bytes per second, to decide whether work fits its window.
    pub fetch_rate: u64,
    /// Epochs the sealer needs from a fetched piece to an active deal.
    pub seal_epochs: u64,
    /// Milliseconds per epoch (30,000 on Filecoin).
    pub epoch_ms: u64,
    /// Epochs kept in hand beyond the estimate.
    pub margin_epochs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_price_per_gib_epoch: U256::ZERO,
            min_piece_size: 128,
            max_piece_size: 32 * GIB,
            verified_only: false,
            allowed_clients: Vec::new(),
            max_in_flight_bytes: 256 * GIB,
            min_term: 0,
            fetch_rate: 20_000_000,
            seal_epochs: 120,
            epoch_ms: 30_000,
            margin_epochs: 2,
        }
    }
}

/// What the provider has on its hands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Padded bytes of work not yet active.
    pub in_flight_bytes: u64,
    /// CAR bytes still to download for that work.
    pub bytes_to_fetch: u64,
}

/// Why an offer was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Skip {
    /// A proposal that names another miner.
    #[error("the proposal names miner f0{named}")]
    OtherProvider {
        /// The miner named.
        named: u64,
    },
    /// Nothing can be taken.
    #[error("closed: {reason:?}")]
    Closed {
        /// Why.
        reason: Closed,
    },
    /// No download location.
    #[error("no place to download the CAR from")]
    NoLocation,
    /// This miner failed it before, from the same origins.
    #[error("failed before from the same origins: {reason}")]
    FailedBefore {
        /// The last failure.
        reason: String,
    },
    /// The piece is smaller than the policy allows.
    #[error("piece of {size} bytes is below the minimum of {min}")]
    TooSmall {
        /// Its padded size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// The piece is larger than the policy allows.
    #[error("piece of {size} bytes is above the maximum of {max}")]
    TooLarge {
        /// Its padded size.
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// The CAR does not fit the piece: the offer cannot be right.
    #[error("a CAR of {car_size} bytes does not fit a piece of {piece_size}")]
    BadSizes {
        /// The CAR's size.
        car_size: u64,
        /// The padded piece size.
        piece_size: u64,
    },
    /// An unverified deal and the policy takes verified ones only.
    #[error("not a verified deal")]
    NotVerified,
    /// A client the policy does not list.
    #[error("client {client} is not allowed")]
    ClientNotAllowed {
        /// The client.
        client: Address,
    },
    /// The price is below the policy's.
    #[error("price {offered} attoFIL/GiB/epoch is below {wanted}")]
    PriceTooLow {
        /// What is offered per GiB per epoch (rounded down).
        offered: U256,
        /// What the policy wants.
        wanted: U256,
    },
    /// The deal ends too soon.
    #[error("{remaining} epochs left is below the minimum term of {min}")]
    TermTooShort {
        /// Epochs left.
        remaining: u64,
        /// The minimum.
        min: u64,
    },
    /// Too much work in flight.
    #[error("{in_flight} bytes in flight; taking {size} more exceeds {max}")]
    Busy {
        /// Bytes in flight.
        in_flight: u64,
        /// This piece.
        size: u64,
        /// The maximum.
        max: u64,
    },
    /// The work cannot be finished before the deal must be active.
    #[error("needs about {needed} epochs to fetch and seal but has {available}")]
    NoTime {
        /// Epochs needed (download of everything in flight and this, sealing, margin).
        needed: u64,
        /// Epochs available.
        available: u64,
    },
}

impl Skip {
    /// A short stable name for metrics and listings.
    pub fn code(&self) -> &'static str {
        match self {
            Self::OtherProvider { .. } => "other_provider",
            Self::Closed { .. } => "closed",
            Self::NoLocation => "no_location",
            Self::FailedBefore { .. } => "failed_before",
            Self::TooSmall { .. } => "too_small",
            Self::TooLarge { .. } => "too_large",
            Self::BadSizes { .. } => "bad_sizes",
            Self::NotVerified => "not_verified",
            Self::ClientNotAllowed { .. } => "client_not_allowed",
            Self::PriceTooLow { .. } => "price_too_low",
            Self::TermTooShort { .. } => "term_too_short",
            Self::Busy { .. } => "busy",
            Self::NoTime { .. } => "no_time",
        }
    }

    /// Whether the same offer may fit later without anything about it changing (the provider
    /// was busy, or short of time because of what it had in flight): the agent looks at it
    /// again after a while.
    pub fn may_change(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::NoTime { .. })
    }
}

/// Epochs needed to download `bytes` at `policy.fetch_rate`, rounded up.
pub fn fetch_epochs(policy: &Policy, bytes: u64) -> u64 {
    let rate = u128::from(policy.fetch_rate.max(1));
    let epoch_ms = u128::from(policy.epoch_ms.max(1));
    // bytes / rate seconds, in epochs: bytes * 1000 / (rate * epoch_ms).
    let epochs = (u128::from(bytes) * 1000).div_ceil(rate * epoch_ms);
    u64::try_from(epochs).unwrap_or(u64::MAX)
}

/// The offer's price per GiB per epoch, rounded down (for the skip reason).
pub fn price_per_gib_epoch(offer: &Offer) -> U256 {
    let denominator = U256::from(offer.piece_size.max(1)) * U256::from(offer.term.max(1));
    offer.total_price.saturating_mul(U256::from(GIB)) / denominator
}

/// Whether `miner` should take `offer` under `policy` with `load` on its hands.
pub fn evaluate(policy: &Policy, offer: &Offer, load: &Load, miner: u64) -> Result<(), Skip> {
    if let Some(named) = offer.named_provider
        && named != miner
    {
        return Err(Skip::OtherProvider { named });
    }
    offer.open.map_err(|reason| Skip::Closed { reason })?;
    if !offer.has_location {
        return Err(Skip::NoLocation);
    }
    if let Some(reason) = &offer.failed_before {
        return Err(Skip::FailedBefore { reason: reason.clone() });
    }
    let size = offer.piece_size;
    if size < 128
        || !size.is_power_of_two()
        || offer.car_size == 0
        || u128::from(offer.car_size) * 128 > u128::from(size) * 127
    {
        return Err(Skip::BadSizes { car_size: offer.car_size, piece_size: size });
    }
    if size < policy.min_piece_size {
        return Err(Skip::TooSmall { size, min: policy.min_piece_size });
    }
    if size > policy.max_piece_size {
        return Err(Skip::TooLarge { size, max: policy.max_piece_size });
    }
    if policy.verified_only && !offer.verified {
        return Err(Skip::NotVerified);
    }
    if !policy.allowed_clients.is_empty() && !policy.allowed_clients.contains(&offer.client) {
        return Err(Skip::ClientNotAllowed { client: offer.client });
    }
    // price * GiB / (size * term) >= min, without rounding: price * GiB >= min * size * term.
    let offered = offer.total_price.saturating_mul(U256::from(GIB));
    let wanted = policy
        .min_price_per_gib_epoch
        .saturating_mul(U256::from(size))
        .saturating_mul(U256::from(offer.term.max(1)));
    if offered < wanted {
        return Err(Skip::PriceTooLow {
            offered: price_per_gib_epoch(offer),
            wanted: policy.min_price_per_gib_epoch,
        });
    }
    if offer.remaining < policy.min_term {
        return Err(Skip::TermTooShort { remaining: offer.remaining, min: policy.min_term });
    }
    if load.in_flight_bytes.saturating_add(size) > policy.max_in_flight_bytes {
        return Err(Skip::Busy {
            in_flight: load.in_flight_bytes,
            size,
            max: policy.max_in_flight_bytes,
        });
    }
    // Downloads share the link: this one finishes after what is already queued.
    let needed = fetch_epochs(policy, load.bytes_to_fetch.saturating_add(offer.car_size))
        .saturating_add(policy.seal_epochs)
        .saturating_add(policy.margin_epochs);
    if needed > offer.time_to_start {
        return Err(Skip::NoTime { needed, available: offer.time_to_start });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            source: OfferSource::Slot { contract: Address::ZERO, order: 1 },
            client: Address::repeat_byte(7),
            named_provider: None,
            piece_size: GIB,
            car_size: GIB / 2,
            verified: false,
            // 1e12 attoFIL per GiB per epoch over 1000 epochs.
            total_price: U256::from(1_000_000_000_000_000u64),
            term: 1000,
            time_to_start: 5000,
            remaining: 1000 + 5000,
            open: Ok(()),
            has_location: true,
            failed_before: None,
        }
    }

    fn policy() -> Policy {
        Policy { epoch_ms: 1000, fetch_rate: 100 << 20, seal_epochs: 10, ..Policy::default() }
    }

    #[test]
    fn a_fitting_offer_is_taken() {
        assert_eq!(evaluate(&policy(), &offer(), &Load::default(), 1000), Ok(()));
    }

    #[test]
    fn each_rule_gives_its_reason() {
        let p = policy();
        let load = Load::default();
        let named = Offer { named_provider: Some(1001), ..offer() };
        assert_eq!(evaluate(&p, &named, &load, 1000), Err(Skip::OtherProvider { named: 1001 }));
        assert_eq!(evaluate(&p, &named, &load, 1001), Ok(()));
        let closed = Offer { open: Err(Closed::Full), ..offer() };
        assert_eq!(evaluate(&p, &closed, &load, 1000), Err(Skip::Closed { reason: Closed::Full }));
        let nowhere = Offer { has_location: false, ..offer() };
        assert_eq!(evaluate(&p, &nowhere, &load, 1000), Err(Skip::NoLocation));
        let failed = Offer { failed_before: Some("wrong bytes".into()), ..offer() };
        assert_eq!(
            evaluate(&p, &failed, &load, 1000),
            Err(Skip::FailedBefore { reason: "wrong bytes".into() })
        );
        let too_big_car = Offer { car_size: GIB, ..offer() };
        assert!(matches!(evaluate(&p, &too_big_car, &load, 1000), Err(Skip::BadSizes { .. })));
        let small = Policy { min_piece_size: 2 * GIB, ..policy() };
        assert!(matches!(evaluate(&small, &offer(), &load, 1000), Err(Skip::TooSmall { .. })));
        let large = Policy { max_piece_size: GIB / 2, ..policy() };
        assert!(matches!(evaluate(&large, &offer(), &load, 1000), Err(Skip::TooLarge { .. })));
        let verified = Policy { verified_only: true, ..policy() };
        assert_eq!(evaluate(&verified, &offer(), &load, 1000), Err(Skip::NotVerified));
        let v = Offer { verified: true, ..offer() };
        assert_eq!(evaluate(&verified, &v, &load, 1000), Ok(()));
        let clients = Policy { allowed_clients: vec![Address::repeat_byte(8)], ..policy() };
        assert!(matches!(
            evaluate(&clients, &offer(), &load, 1000),
            Err(Skip::ClientNotAllowed { .. })
        ));
        let term = Policy { min_term: 10_000, ..policy() };
        assert_eq!(
            evaluate(&term, &offer(), &load, 1000),
            Err(Skip::TermTooShort { remaining: 6000, min: 10_000 })
        );
    }

    #[test]
    fn the_price_is_compared_exactly_per_gib_and_epoch() {
        let at = Policy { min_price_per_gib_epoch: U256::from(1_000_000_000_000u64), ..policy() };
        assert_eq!(evaluate(&at, &offer(), &Load::default(), 1000), Ok(()));
        let above =
            Policy { min_price_per_gib_epoch: U256::from(1_000_000_000_001u64), ..policy() };
        assert_eq!(
            evaluate(&above, &offer(), &Load::default(), 1000),
            Err(Skip::PriceTooLow {
                offered: U256::from(1_000_000_000_000u64),
                wanted: U256::from(1_000_000_000_001u64),
            })
        );
        // One wei less than the price in total is refused, though per GiB per epoch it rounds
        // to the same figure.
        let short = Offer { total_price: offer().total_price - U256::from(1), ..offer() };
        assert!(matches!(
            evaluate(&at, &short, &Load::default(), 1000),
            Err(Skip::PriceTooLow { .. })
        ));
    }

    #[test]
    fn capacity_and_time_count_what_is_in_flight() {
        let p = Policy { max_in_flight_bytes: 2 * GIB, ..policy() };
        let busy = Load { in_flight_bytes: GIB + 1, bytes_to_fetch: 0 };
        let skip = evaluate(&p, &offer(), &busy, 1000).unwrap_err();
        assert!(matches!(skip, Skip::Busy { .. }) && skip.may_change());
        // 512 MiB at 100 MiB/s with one-second epochs: 6 epochs, +10 sealing, +2 margin.
        assert_eq!(fetch_epochs(&p, GIB / 2), 6);
        let tight = Offer { time_to_start: 17, ..offer() };
        assert_eq!(
            evaluate(&p, &tight, &Load::default(), 1000),
            Err(Skip::NoTime { needed: 18, available: 17 })
        );
        let enough = Offer { time_to_start: 18, ..offer() };
        assert_eq!(evaluate(&p, &enough, &Load::default(), 1000), Ok(()));
        // 4 GiB already queued to download: 4.5 GiB at 100 MiB/s is 47 epochs, +12.
        let queued = Load { in_flight_bytes: 0, bytes_to_fetch: 4 * GIB };
        assert!(matches!(
            evaluate(&p, &enough, &queued, 1000),
            Err(Skip::NoTime { needed: 59, .. })
        ));
    }

    #[test]
    fn no_offer_overflows_the_arithmetic() {
        let huge = Offer {
            total_price: U256::MAX,
            piece_size: 1 << 62,
            car_size: 1,
            term: u64::MAX,
            time_to_start: u64::MAX,
            remaining: u64::MAX,
            ..offer()
        };
        let p = Policy {
            min_price_per_gib_epoch: U256::MAX,
            max_piece_size: u64::MAX,
            max_in_flight_bytes: u64::MAX,
            fetch_rate: 1,
            epoch_ms: 1,
            ..Policy::default()
        };
        let _ =
            evaluate(&p, &huge, &Load { in_flight_bytes: u64::MAX, bytes_to_fetch: u64::MAX }, 1);
        assert_eq!(fetch_epochs(&p, u64::MAX), u64::MAX);
    }
}
