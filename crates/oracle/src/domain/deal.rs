//! Deals, pure: what an order for a piece is, the replicas an order has, and the one fold that
//! turns the storage contract's events into replica states.
//!
//! ```text
//!   a pin reported ──► order `sending` ──createOrder mined──► `open` (order id known)
//!                        │  pre-flight refused, or the contract refused: `failed` (with why)
//!
//!   per slot (order, provider), from `PerpetualStorage`'s events, in chain order:
//!
//!        SlotClaimed       SlotDealPublished      SlotActivated
//!   ──► claimed ─────────► published ───────────► active
//!         │                   │                     │
//!         └──── SlotReopened (lapsed claim, unproven or ended deal) ──► reopened ──► claimed …
//! ```
//!
//! Events come from the chain and are not trusted to arrive in an order that makes sense (a
//! reorg, a contract of another version): an event that does not follow from the slot's state
//! is refused by [`step`] and left out of the fold, never guessed at. A replica counts toward
//! its order's target only while `active`. Which contract and event each input comes from:
//! `contracts/src/PerpetualStorage.sol` (`createOrder`, `claim`, `notifyDeal` → `publish`,
//! `activate`, `reopen`) in this repository. A contract deal's proposal folds the same way
//! ([`ProposalLogKind::slot`], from `contracts/src/DealClient.sol`): `DealProposalOffered` is a
//! claim due by the deal's start, `DealPublished` a publication, `DealActivated` an activation,
//! and `DealProposalCancelled` before any deal a reopening.

use serde::Serialize;

use super::{
    market::{MarketState, MarketView},
    probe::ProbeView,
};

/// Which backend made an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// A `PerpetualStorage` order: SPs claim its replica slots and are paid per epoch active.
    Perpetual,
    /// A `PerpetualStorage` order a DataDAO funded (`fundOrder`, called by this oracle as the
    /// DAO's operator): the DAO is its client and pays for it.
    #[serde(rename = "datadao")]
    DataDao,
    /// Contract deals through a `DealClient` (FRC-0068, Boost's and Curio's contract-deal
    /// flows): one proposal per replica, each naming the provider the oracle chose.
    Contract,
}

impl Backend {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Perpetual => "perpetual",
            Self::DataDao => "datadao",
            Self::Contract => "contract",
        }
    }

    /// The backend a stored name names.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Perpetual, Self::DataDao, Self::Contract].into_iter().find(|b| b.as_str() == s)
    }
}

/// Where an order for a piece is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Recorded; its transaction is being sent (or waits for a pre-flight check to pass).
    Sending,
    /// On chain: SPs may claim its slots.
    Open,
    /// The contract refused it; the error says why. Not retried by itself.
    Failed,
}

impl OrderState {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::Sending, Self::Open, Self::Failed];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Open => "open",
            Self::Failed => "failed",
        }
    }

    /// The state a stored name names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What a slot event says happened (one `PerpetualStorage` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotEventKind {
    /// `SlotClaimed`: the provider claimed the slot with its bond.
    Claimed {
        /// The last epoch its deal may be proven by (`SlotClaimed.deadline`; `None` in events
        /// stored before it was kept: then the claim's block plus the contract's `claimWindow`).
        deadline: Option<u64>,
    },
    /// `SlotDealPublished`: the market published the slot's deal.
    Published {
        /// The market's deal id.
        deal_id: u64,
    },
    /// `SlotActivated`: the deal is active; the bounty streams from `start` to `end`.
    Activated {
        /// The market's deal id; none for a deal made without the market (a `DealClient`
        /// proposal's direct deal, recorded as `NO_DEAL`: Curio's DDO deals).
        deal_id: Option<u64>,
        /// First epoch paid.
        start_epoch: u64,
        /// Last epoch paid (the replica's term ends here).
        end_epoch: u64,
    },
    /// `SlotReopened`: the claim lapsed, or the deal was never proven or ended; open again.
    Reopened,
    /// `BountyPaid`: the replica's bounty is paid up to `until` (by `collect`, or by `reopen`
    /// just before the slot reopens).
    Paid {
        /// The last epoch paid for.
        until: u64,
    },
}

impl SlotEventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed { .. } => "claimed",
            Self::Published { .. } => "published",
            Self::Activated { .. } => "activated",
            Self::Reopened => "reopened",
            Self::Paid { .. } => "paid",
        }
    }
}

/// One slot event of an order, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotEvent {
    /// The provider's miner actor id (`f0…`).
    pub provider: u64,
    /// Block it was in (events are folded in (block, log index) order).
    pub block_number: u64,
    /// What happened.
    pub kind: SlotEventKind,
}

/// Where a replica (a slot of an order, held by one provider) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Claimed; the provider is fetching and sealing.
    Claimed,
    /// The deal is published on the market.
    Published,
    /// The deal is active and paid: the replica counts.
    Active,
    /// The slot opened again (the claim lapsed or the deal ended); another claim may follow.
    Reopened,
}

impl ReplicaState {
    /// The name shown (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Published => "published",
            Self::Active => "active",
            Self::Reopened => "reopened",
        }
    }
}

/// A replica, as the events leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replica {
    /// The provider's miner actor id.
    pub provider: u64,
    /// Where it is.
    pub state: ReplicaState,
    /// The market's deal id, once published.
    pub deal_id: Option<u64>,
    /// First epoch of the active term.
    pub start_epoch: Option<u64>,
    /// Last epoch of the active term.
    pub end_epoch: Option<u64>,
    /// Block of the event that set this state.
    pub since_block: u64,
    /// While claimed or published: the last epoch the deal may be proven by (past it, anyone
    /// may reopen the slot).
    pub deadline: Option<u64>,
    /// While active: the last epoch its bounty was paid up to (by a collection).
    pub paid_until: Option<u64>,
    /// What the storage market said of the deal at the last read (the keeper's), if read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market: Option<MarketView>,
    /// What its retrieval probes say (`last_probe`, `last_probe_ok`, …), if probed.
    #[serde(flatten)]
    pub probe: Option<ProbeView>,
    /// For an active direct deal (no market deal id): the proposal it was made for and the key
    /// its probes are kept under; `None` otherwise.
    #[serde(skip)]
    pub direct: Option<DirectDeal>,
}

/// An active direct deal's own names: no market deal id stands for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectDeal {
    /// The `DealClient` proposal it was made for (what `reportDirectDeal` names), when its
    /// stored text is a proposal id.
    pub proposal: Option<alloy::primitives::B256>,
    /// The key its probes and its deal report are kept under ([`direct_probe_key`]).
    pub key: u64,
}

/// The key a direct deal's probes are kept under, as a market deal's are under its deal id:
/// from its `proposal` (the id's text, as stored) and `provider`. It lies in [2^62, 2^63): far
/// above any market deal id (mainnet's are under 2^27) and within SQL's signed 64-bit integers.
pub fn direct_probe_key(proposal: &str, provider: u64) -> u64 {
    let digest =
        alloy::primitives::keccak256([proposal.as_bytes(), &provider.to_be_bytes()].concat());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (1 << 62) | (u64::from_be_bytes(first) & ((1 << 62) - 1))
}

impl Replica {
    /// The key its probes are kept under: its market deal's id, else a direct deal's key.
    pub fn probe_key(&self) -> Option<u64> {
        self.deal_id.or(self.direct.map(|d| d.key))
    }

    /// Whether it is an active direct deal: active with no market deal (a `DealClient`
    /// proposal activated without the market, `NO_DEAL`).
    pub fn is_direct(&self) -> bool {
        self.deal_id.is_none() && self.state == ReplicaState::Active
    }

    /// Names it as a direct deal made for `proposal` (the id's stored text) if it is one
    /// ([`Self::is_direct`]): its probe key ([`direct_probe_key`]) and its proposal.
    pub fn key_direct(&mut self, proposal: &str) {
        if self.is_direct() {
            self.direct = Some(DirectDeal {
                proposal: proposal.parse().ok(),
                key: direct_probe_key(proposal, self.provider),
            });
        }
    }

    /// Its state as shown to people: the contract's (claimed, published, active, reopened),
    /// refined by the market's last answer once the deal is published (expiring, expired,
    /// slashed, failed, not_found, mismatch). An unknown answer leaves the contract's. An active
    /// replica its probes found lost shows as `lost`.
    pub fn shown_state(&self) -> &'static str {
        if self.lost() && self.state == ReplicaState::Active && !self.gone() {
            return "lost";
        }
        match (self.state, self.market) {
            (ReplicaState::Published | ReplicaState::Active, Some(m))
                if m.state != MarketState::Unknown =>
            {
                m.state.as_str()
            }
            _ => self.state.as_str(),
        }
    }

    /// Whether the replica counts toward its order's target: active by the contract's events,
    /// and not refuted by the market (gone, never published, or another piece or provider).
    /// A market read that failed or answered an unknown code refutes nothing.
    pub fn counts(&self) -> bool {
        self.state == ReplicaState::Active && !self.gone() && !self.lost()
    }

    /// Whether its provider has shown it does not serve it: its last probes all failed
    /// ([`crate::domain::probe`]). A lost replica is replaced elsewhere.
    pub fn lost(&self) -> bool {
        self.probe.is_some_and(|p| p.lost())
    }

    /// Whether the market's last answer refutes the deal: gone (expired, slashed, failed),
    /// never published, or another piece or provider. A market read that failed, or answered
    /// an unknown code, refutes nothing.
    pub fn gone(&self) -> bool {
        self.market.is_some_and(|m| {
            matches!(
                m.state,
                MarketState::Expired
                    | MarketState::Slashed
                    | MarketState::Failed
                    | MarketState::NotFound
                    | MarketState::Mismatch
            )
        })
    }
}

/// An event that does not follow from the slot's state (left out of the fold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{event} does not follow {from:?}")]
pub struct Unexpected {
    /// The slot's state before (None: never claimed).
    pub from: Option<ReplicaState>,
    /// The event's name.
    pub event: &'static str,
}

/// The replica after `event`, from `current` (None: the slot was never claimed by this
/// provider). A claim follows nothing or a reopening; a publication follows a claim; an
/// activation follows a claim or a publication (one transaction may carry both); a reopening
/// follows any held state.
pub fn step(current: Option<&Replica>, event: &SlotEvent) -> Result<Replica, Unexpected> {
    use ReplicaState as S;
    use SlotEventKind as E;
    let from = current.map(|r| r.state);
    let unexpected = Unexpected { from, event: event.kind.as_str() };
    let base = Replica {
        provider: event.provider,
        state: S::Claimed,
        deal_id: None,
        start_epoch: None,
        end_epoch: None,
        since_block: event.block_number,
        deadline: None,
        paid_until: None,
        market: None,
        probe: None,
        direct: None,
    };
    match (from, event.kind) {
        (None | Some(S::Reopened), E::Claimed { deadline }) => Ok(Replica { deadline, ..base }),
        (Some(S::Claimed), E::Published { deal_id }) => {
            let deadline = current.and_then(|r| r.deadline);
            Ok(Replica { state: S::Published, deal_id: Some(deal_id), deadline, ..base })
        }
        (Some(S::Claimed | S::Published), E::Activated { deal_id, start_epoch, end_epoch }) => {
            Ok(Replica {
                state: S::Active,
                deal_id: deal_id.or(current.and_then(|r| r.deal_id)),
                start_epoch: Some(start_epoch),
                end_epoch: Some(end_epoch),
                ..base
            })
        }
        (Some(S::Active), E::Paid { until }) => {
            let last = current.copied().unwrap_or(base);
            Ok(Replica { paid_until: Some(until), ..last })
        }
        (Some(S::Claimed | S::Published | S::Active), E::Reopened) => {
            // The last deal stays named: it is what ended.
            let last = current.copied().unwrap_or(base);
            Ok(Replica {
                state: S::Reopened,
                since_block: event.block_number,
                deadline: None,
                ..last
            })
        }
        _ => Err(unexpected),
    }
}

/// Every provider's replica after `events` (in chain order), by provider; events that do not
/// follow are skipped (and counted in the second value).
pub fn fold(events: &[SlotEvent]) -> (Vec<Replica>, usize) {
    let mut replicas: Vec<Replica> = Vec::new();
    let mut skipped = 0;
    for event in events {
        let at = replicas.iter().position(|r| r.provider == event.provider);
        match step(at.map(|i| &replicas[i]), event) {
            Ok(next) => match at {
                Some(i) => replicas[i] = next,
                None => replicas.push(next),
            },
            Err(_) => skipped += 1,
        }
    }
    replicas.sort_by_key(|r| r.provider);
    (replicas, skipped)
}

/// A contract deal's activation as the market reports it. The market does not tell a deal's
/// client when the deal's sector is proven: in builtin-actors v18 a miner's
/// `ProveCommitSectors3` notifies the data's consumers it names (for a market deal, the
/// market, `f05`), and the market's `SectorContentChanged` handler notifies no one further;
/// only a provider that also names the client (a DDO-aware one, as the simulated sealer does)
/// gives `DealClient` its `DealActivated`. So for a contract deal published and not yet seen
/// activated, the market's word that it is active (or expiring) is taken as its activation, at
/// the epoch of that read, with the term the market gives. `None` for anything else.
pub fn activated_by_market(replica: &Replica) -> Option<SlotEvent> {
    let market = replica.market?;
    let live = matches!(market.state, MarketState::Active | MarketState::Expiring);
    if replica.state != ReplicaState::Published || !live {
        return None;
    }
    Some(SlotEvent {
        provider: replica.provider,
        block_number: market.epoch.max(replica.since_block),
        kind: SlotEventKind::Activated {
            deal_id: Some(replica.deal_id?),
            start_epoch: market.start_epoch?,
            end_epoch: market.end_epoch?,
        },
    })
}

/// One `PerpetualStorage` event about an order, decoded (by the chain adapter) from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealLog {
    /// Block it was in.
    pub block_number: u64,
    /// Its index in the block.
    pub log_index: u64,
    /// The order it is about.
    pub order_id: u64,
    /// What it says.
    pub kind: DealLogKind,
}

/// What a [`DealLog`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DealLogKind {
    /// `OrderCreated`: by `client`, for the piece whose v1 CID is `piece_v1`.
    Created {
        /// The order's client (the oracle's operator for its own orders).
        client: alloy::primitives::Address,
        /// The piece's v1 CID, as bytes.
        piece_v1: Vec<u8>,
    },
    /// A slot event.
    Slot {
        /// The provider's miner actor id.
        provider: u64,
        /// What happened to its slot.
        kind: SlotEventKind,
    },
    /// `OrderCancelled`.
    Cancelled,
    /// `ReplicaTargetChanged`: the order's client asks for `replicas` replicas from now on (the
    /// keeper raises an order's target by one per replica being renewed, and lowers it back).
    Target {
        /// The new target.
        replicas: u16,
    },
}

impl DealLogKind {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Slot { kind, .. } => kind.as_str(),
            Self::Cancelled => "cancelled",
            Self::Target { .. } => "target",
        }
    }
}

/// One `DealClient` event about a proposal, decoded (by the chain adapter) from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalLog {
    /// Block it was in.
    pub block_number: u64,
    /// Its index in the block.
    pub log_index: u64,
    /// The proposal it is about.
    pub id: [u8; 32],
    /// What it says.
    pub kind: ProposalLogKind,
}

/// What a [`ProposalLog`] says. As a replica of the piece's order, a proposal folds like a
/// `PerpetualStorage` slot (see [`ProposalLogKind::slot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalLogKind {
    /// `DealProposalOffered`: made, naming `provider` (0: any), for this piece and start.
    Offered {
        /// The provider named.
        provider: u64,
        /// The piece's v1 CID, as bytes.
        piece_v1: Vec<u8>,
        /// The deal's start epoch (it must be published and proven by then).
        start_epoch: u64,
    },
    /// `DealPublished`: the market published `deal_id` for it (`MarketNotifyDeal`).
    Published {
        /// The provider.
        provider: u64,
        /// The market's deal id.
        deal_id: u64,
    },
    /// `DealActivated`: the provider's sector holding it is proven.
    Activated {
        /// The provider.
        provider: u64,
        /// The market's deal id; none for a deal made without the market (`NO_DEAL`).
        deal_id: Option<u64>,
    },
    /// `DealProposalCancelled`: withdrawn; no deal can be made for it any more.
    Cancelled,
}

impl ProposalLogKind {
    /// The slot event it stands for, for a proposal of `provider` with a term of
    /// `start..=end`: offered = claimed (the deadline is the start epoch), published,
    /// activated (the proposal's term), and withdrawn before publication = reopened
    /// (`published`: whether it was published, when a withdrawal changes nothing).
    pub fn slot(&self, start: u64, end: u64, published: bool) -> Option<SlotEventKind> {
        Some(match *self {
            Self::Offered { start_epoch, .. } => {
                SlotEventKind::Claimed { deadline: Some(start_epoch) }
            }
            Self::Published { deal_id, .. } => SlotEventKind::Published { deal_id },
            Self::Activated { deal_id, .. } => {
                SlotEventKind::Activated { deal_id, start_epoch: start, end_epoch: end }
            }
            Self::Cancelled if published => return None,
            Self::Cancelled => SlotEventKind::Reopened,
        })
    }

    /// The provider the event names, if it names one.
    pub fn provider(&self) -> Option<u64> {
        match *self {
            Self::Offered { provider, .. }
            | Self::Published { provider, .. }
            | Self::Activated { provider, .. } => Some(provider),
            Self::Cancelled => None,
        }
    }
}

/// What an order for a piece asks of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerms {
    /// Replicas wanted.
    pub replicas: u16,
    /// Bounty per replica for one term, in attoFIL.
    pub bounty: u128,
    /// A replica's term, in epochs.
    pub term: u64,
    /// Terms paid for up front (the order's first funding: `bounty × replicas × terms`).
    pub funded_terms: u64,
    /// Fil+ (verified) deals.
    pub verified: bool,
}

/// The piece an order is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPiece {
    /// Padded piece size (a power of two).
    pub padded_size: u64,
    /// The CAR's size: what SPs download.
    pub car_size: u64,
}

/// The contract's own limits, read from it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractLimits {
    /// Shortest term (`minTerm`).
    pub min_term: u64,
    /// Longest term (`maxTerm`).
    pub max_term: u64,
    /// Most replicas (`MAX_REPLICAS`).
    pub max_replicas: u16,
    /// How far an open slot's bounty can rise, in basis points (`MAX_RISE_BPS`): a claim locks
    /// the bounty of its block (`currentBounty`), so a term's funding covers the risen bounty.
    pub max_rise_bps: u64,
}

/// Why an order is not sent (a pre-flight check failed: nothing goes on chain, no gas is paid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Preflight {
    /// The piece's sizes are not ones the contract (and the market) take.
    #[error("piece of {car_size} bytes does not fit a padded size of {padded_size}")]
    BadSize {
        /// The padded size.
        padded_size: u64,
        /// The CAR's size.
        car_size: u64,
    },
    /// The term is outside the contract's bounds.
    #[error("term of {term} epochs is outside the contract's {min}..={max}")]
    BadTerm {
        /// The term asked.
        term: u64,
        /// The contract's shortest.
        min: u64,
        /// The contract's longest.
        max: u64,
    },
    /// Zero replicas, or more than the contract takes.
    #[error("{replicas} replicas: the contract takes 1..={max}")]
    BadReplicas {
        /// Replicas asked.
        replicas: u16,
        /// The contract's most.
        max: u16,
    },
    /// A bounty of zero, or funding past the contract's 96-bit balance.
    #[error("bounty {bounty} × {replicas} replicas × {terms} terms is not a fundable amount")]
    BadFunding {
        /// Per replica and term.
        bounty: u128,
        /// Replicas.
        replicas: u16,
        /// Terms funded.
        terms: u64,
    },
    /// The operator's account cannot pay the funding and the gas.
    #[error("the operator's balance {balance} is below the {needed} attoFIL this order needs")]
    Balance {
        /// What the account holds.
        balance: u128,
        /// Funding plus the gas allowance.
        needed: u128,
    },
}

impl Preflight {
    /// Whether waiting can fix it (the operator tops up its account); the others need a new
    /// configuration.
    pub fn may_pass_later(&self) -> bool {
        matches!(self, Self::Balance { .. })
    }
}

/// The checks before an order goes on chain, and the value it is sent with: every rule of
/// `PerpetualStorage.createOrder` that can be checked off chain (`isPaddedSize`, the CAR within
/// 127/128 of the padded size, replicas, bounty, term, the 96-bit balance), and the operator's
/// balance against the funding plus `gas_allowance`. The funding is `terms` terms of every
/// replica at the highest bounty a claim can lock (`bounty × (1 + MAX_RISE_BPS / 10,000)`): with
/// less, the last slots of an order unclaimed for a while are refused as underfunded.
pub fn preflight(
    piece: &OrderPiece,
    terms: &OrderTerms,
    limits: &ContractLimits,
    balance: u128,
    gas_allowance: u128,
) -> Result<u128, Preflight> {
    let OrderPiece { padded_size, car_size } = *piece;
    if !padded_size.is_power_of_two()
        || padded_size < 128
        || car_size == 0
        || u128::from(car_size) * 128 > u128::from(padded_size) * 127
    {
        return Err(Preflight::BadSize { padded_size, car_size });
    }
    if terms.term < limits.min_term || terms.term > limits.max_term {
        return Err(Preflight::BadTerm {
            term: terms.term,
            min: limits.min_term,
            max: limits.max_term,
        });
    }
    if terms.replicas == 0 || terms.replicas > limits.max_replicas {
        return Err(Preflight::BadReplicas { replicas: terms.replicas, max: limits.max_replicas });
    }
    let funding = terms
        .bounty
        .checked_mul(10_000 + u128::from(limits.max_rise_bps))
        .map(|v| v.div_ceil(10_000))
        .and_then(|v| v.checked_mul(u128::from(terms.replicas)))
        .and_then(|v| v.checked_mul(u128::from(terms.funded_terms)))
        .filter(|v| terms.bounty > 0 && terms.bounty < 1 << 96 && *v < 1 << 96);
    let Some(funding) = funding else {
        return Err(Preflight::BadFunding {
            bounty: terms.bounty,
            replicas: terms.replicas,
            terms: terms.funded_terms,
        });
    };
    let needed = funding.saturating_add(gas_allowance);
    if balance < needed {
        return Err(Preflight::Balance { balance, needed });
    }
    Ok(funding)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ev(provider: u64, block_number: u64, kind: SlotEventKind) -> SlotEvent {
        SlotEvent { provider, block_number, kind }
    }

    #[test]
    fn a_slot_goes_claimed_published_active_and_reopens() {
        use SlotEventKind as E;
        let events = [
            ev(1000, 1, E::Claimed { deadline: None }),
            ev(1001, 1, E::Claimed { deadline: None }),
            ev(1000, 2, E::Published { deal_id: 7 }),
            ev(1000, 3, E::Activated { deal_id: Some(7), start_epoch: 10, end_epoch: 3610 }),
            ev(1001, 9, E::Reopened),
            ev(1002, 9, E::Claimed { deadline: None }),
        ];
        let (replicas, skipped) = fold(&events);
        assert_eq!(skipped, 0);
        assert_eq!(replicas.len(), 3);
        assert_eq!(replicas[0].state, ReplicaState::Active);
        assert_eq!(
            (replicas[0].deal_id, replicas[0].start_epoch, replicas[0].end_epoch),
            (Some(7), Some(10), Some(3610))
        );
        assert_eq!(replicas[1].state, ReplicaState::Reopened);
        assert_eq!(replicas[2].state, ReplicaState::Claimed);
    }

    #[test]
    fn a_direct_deal_is_active_without_a_market_deal_and_ends_with_its_term() {
        use SlotEventKind as E;
        let events = [
            ev(1000, 1, E::Claimed { deadline: Some(50) }),
            ev(1000, 4, E::Activated { deal_id: None, start_epoch: 50, end_epoch: 90 }),
            ev(1001, 1, E::Claimed { deadline: Some(50) }),
            ev(1001, 2, E::Published { deal_id: 7 }),
            ev(1001, 4, E::Activated { deal_id: None, start_epoch: 50, end_epoch: 90 }),
        ];
        let (replicas, skipped) = fold(&events);
        assert_eq!(skipped, 0);
        assert_eq!((replicas[0].state, replicas[0].deal_id), (ReplicaState::Active, None));
        assert_eq!(replicas[1].deal_id, Some(7), "a published deal stays named");
        let mut direct = replicas[0];
        assert!(direct.counts());
        let view = crate::domain::market::direct_term_view(&direct, 89).unwrap();
        assert_eq!((view.state, view.end_epoch), (MarketState::Active, Some(90)));
        direct.market = crate::domain::market::direct_term_view(&direct, 90);
        assert_eq!(direct.market.map(|m| m.state), Some(MarketState::Expired));
        assert!(!direct.counts(), "over at its end");
        assert_eq!(direct.shown_state(), "expired");
        assert_eq!(
            crate::domain::market::direct_term_view(&replicas[1], 10),
            None,
            "a market deal"
        );

        // Probed under a key of its proposal and provider, in a range no market deal id
        // reaches; a market deal under its id, even with a proposal given.
        let proposal = format!("0x{}", "ab".repeat(32));
        direct.key_direct(&proposal);
        let key = direct.probe_key().unwrap();
        assert_eq!(
            direct.direct.and_then(|d| d.proposal),
            Some(alloy::primitives::B256::repeat_byte(0xab))
        );
        assert_eq!(key, direct_probe_key(&proposal, 1000));
        assert!((1 << 62..1 << 63).contains(&key), "{key}");
        assert_ne!(key, direct_probe_key(&proposal, 1001), "another provider");
        assert_ne!(key, direct_probe_key(&format!("0x{}", "cd".repeat(32)), 1000));
        let mut market = replicas[1];
        market.key_direct(&proposal);
        assert_eq!((market.probe_key(), market.direct), (Some(7), None));
        let mut claimed = step(None, &ev(1002, 1, E::Claimed { deadline: None })).unwrap();
        claimed.key_direct(&proposal);
        assert_eq!(claimed.probe_key(), None, "nothing to probe before it is active");
    }

    #[test]
    fn events_out_of_order_are_refused_not_guessed() {
        use SlotEventKind as E;
        let never_claimed = ev(1000, 1, E::Published { deal_id: 1 });
        assert_eq!(step(None, &never_claimed), Err(Unexpected { from: None, event: "published" }));
        let claimed = step(None, &ev(1000, 1, E::Claimed { deadline: None })).unwrap();
        assert!(
            step(Some(&claimed), &ev(1000, 2, E::Claimed { deadline: None })).is_err(),
            "claimed twice"
        );
        let (replicas, skipped) = fold(&[
            ev(1000, 1, E::Reopened),
            ev(1000, 2, E::Claimed { deadline: None }),
            ev(1000, 3, E::Claimed { deadline: None }),
        ]);
        assert_eq!((replicas[0].state, skipped), (ReplicaState::Claimed, 2));
    }

    fn limits() -> ContractLimits {
        ContractLimits {
            min_term: 3600,
            max_term: 1_000_000,
            max_replicas: 32,
            max_rise_bps: 10_000,
        }
    }

    fn terms() -> OrderTerms {
        OrderTerms { replicas: 3, bounty: 10, term: 3600, funded_terms: 2, verified: false }
    }

    #[test]
    fn preflight_gives_the_value_or_says_why() {
        let piece = OrderPiece { padded_size: 1024, car_size: 1016 };
        // 3 replicas × 2 terms at the bounty risen to twice its 10.
        assert_eq!(preflight(&piece, &terms(), &limits(), 200, 5), Ok(120));
        assert_eq!(
            preflight(&piece, &terms(), &limits(), 124, 5),
            Err(Preflight::Balance { balance: 124, needed: 125 })
        );
        assert!(preflight(&piece, &terms(), &limits(), 124, 5).unwrap_err().may_pass_later());
        let big = OrderPiece { padded_size: 1024, car_size: 1017 };
        assert!(matches!(
            preflight(&big, &terms(), &limits(), 200, 0),
            Err(Preflight::BadSize { .. })
        ));
        let odd = OrderPiece { padded_size: 1000, car_size: 10 };
        assert!(matches!(
            preflight(&odd, &terms(), &limits(), 100, 0),
            Err(Preflight::BadSize { .. })
        ));
        let short = OrderTerms { term: 10, ..terms() };
        assert!(matches!(
            preflight(&piece, &short, &limits(), 100, 0),
            Err(Preflight::BadTerm { .. })
        ));
        let none = OrderTerms { replicas: 0, ..terms() };
        assert!(matches!(
            preflight(&piece, &none, &limits(), 100, 0),
            Err(Preflight::BadReplicas { .. })
        ));
        let huge = OrderTerms { bounty: 1 << 95, ..terms() };
        assert!(matches!(
            preflight(&piece, &huge, &limits(), u128::MAX, 0),
            Err(Preflight::BadFunding { .. })
        ));
    }

    fn kind() -> impl Strategy<Value = SlotEventKind> {
        prop_oneof![
            (0u64..9).prop_map(|d| SlotEventKind::Claimed { deadline: Some(d) }),
            (0u64..5).prop_map(|deal_id| SlotEventKind::Published { deal_id }),
            proptest::option::of(0u64..5).prop_map(|deal_id| SlotEventKind::Activated {
                deal_id,
                start_epoch: 1,
                end_epoch: 2
            }),
            Just(SlotEventKind::Reopened),
            (0u64..9).prop_map(|until| SlotEventKind::Paid { until }),
        ]
    }

    proptest! {
        /// Whatever the chain says, in whatever order: one replica per provider, and an active
        /// replica always names its term, and its deal unless a direct activation (a deal made
        /// without the market) activated it.
        #[test]
        fn any_event_sequence_folds_to_one_consistent_replica_per_provider(
            events in proptest::collection::vec((1000u64..1004, kind()), 0..60)
        ) {
            let events: Vec<SlotEvent> = events
                .into_iter()
                .enumerate()
                .map(|(i, (provider, kind))| ev(provider, i as u64, kind))
                .collect();
            let (replicas, skipped) = fold(&events);
            prop_assert!(skipped <= events.len());
            let mut providers: Vec<u64> = replicas.iter().map(|r| r.provider).collect();
            providers.dedup();
            prop_assert_eq!(providers.len(), replicas.len());
            for r in &replicas {
                if r.state == ReplicaState::Active {
                    prop_assert!(r.end_epoch.is_some());
                    if r.deal_id.is_none() {
                        let by = events.iter().find(|e| e.block_number == r.since_block);
                        let direct = matches!(
                            by.map(|e| e.kind),
                            Some(SlotEventKind::Activated { deal_id: None, .. })
                        );
                        prop_assert!(direct, "no deal, yet not activated directly");
                    }
                }
                if r.state == ReplicaState::Published {
                    prop_assert!(r.deal_id.is_some());
                }
            }
        }
    }
}
