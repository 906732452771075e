//! A piece of work's states and the one machine that moves it between them.
//!
//! ```text
//!  slot:      claiming ─Claimed─► fetching ─Verified─► sealing ─Published─► activating
//!                │                   │                    │                    │ Activated
//!                │ClaimRefused       └──── Abandon ───────┴──────┬─────────────┤
//!                ▼                                               ▼             ▼
//!              failed ◄──────────Released────────────────── releasing ◄─Abandon─ proving
//!                                                                              │ Proven
//!                                                              ended ◄─Ended── active
//!
//!  proposal:  fetching ─► sealing ─► activating ─Activated─► active ─Ended─► ended
//!                 └──────────┴───────────┴── Abandon ──► failed
//! ```
//!
//! Every change of state is an [`Input`] to [`apply`], which is pure: the kind of work, its
//! state and the input give the next state, or a refusal. The store writes the result with a
//! compare-and-set on the state it was computed from, and each state's effect is carried out
//! only once the state is stored: a work found in `claiming` after a restart first asks the
//! chain whether its claim is there; one in `sealing` first asks whether its deal was
//! published; one in `proving`, whether its slot is active. So a kill at any point resumes
//! without sending anything twice.
//!
//! A slot given up before its deal is proven is `releasing`: its bond is lost whatever
//! happens (the contract's rule), and the agent waits for the claim's deadline to `reopen` it,
//! which returns the slot to the order (and the keeper's tip to the agent).

use alloy::primitives::B256;
use serde::Serialize;

/// What a piece of work is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// A replica slot of a `PerpetualStorage` order, claimed with a bond.
    Slot,
    /// A `DealClient` proposal.
    Proposal,
}

impl WorkKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slot => "slot",
            Self::Proposal => "proposal",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Slot, Self::Proposal].into_iter().find(|k| k.as_str() == s)
    }

    /// The state a new piece of work of this kind starts in.
    pub fn first_state(self) -> WorkState {
        match self {
            Self::Slot => WorkState::Claiming,
            Self::Proposal => WorkState::Fetching,
        }
    }
}

/// Where a piece of work is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    /// A claim is decided; its transaction may be on its way (slots only).
    Claiming,
    /// The CAR is being downloaded and its piece checked.
    Fetching,
    /// The piece is verified and handed to sealing; the deal is being published.
    Sealing,
    /// The deal is published; its sector is being proven.
    Activating,
    /// The deal is active; `publish` is being sent to start the bounty (slots only).
    Proving,
    /// Stored and paid for: the bounty streams (collected now and then), retrievals served.
    Active,
    /// Given up before being proven: waiting for the claim's deadline to reopen the slot.
    Releasing,
    /// The deal or the replica's term is over.
    Ended,
    /// Given up; the reason says why.
    Failed,
}

impl WorkState {
    /// Every state, in the order work moves through them.
    pub const ALL: [Self; 9] = [
        Self::Claiming,
        Self::Fetching,
        Self::Sealing,
        Self::Activating,
        Self::Proving,
        Self::Active,
        Self::Releasing,
        Self::Ended,
        Self::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claiming => "claiming",
            Self::Fetching => "fetching",
            Self::Sealing => "sealing",
            Self::Activating => "activating",
            Self::Proving => "proving",
            Self::Active => "active",
            Self::Releasing => "releasing",
            Self::Ended => "ended",
            Self::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Nothing more happens to work in this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ended | Self::Failed)
    }

    /// Work in this state takes capacity: it is not yet active.
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            Self::Claiming | Self::Fetching | Self::Sealing | Self::Activating | Self::Proving
        )
    }
}

/// The deal a piece was handed over as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deal {
    /// A deal the storage market published, by its ID (Boost, the simulated market).
    Market(u64),
    /// A deal made without the market (direct data onboarding, FIP-0076; Curio's `mk20` DDO
    /// deals): the sector's activation notifies the client contract, which records it with
    /// `DealClient.NO_DEAL` (`u64::MAX`) as its deal ID. Only a `DealClient` proposal can be
    /// one: `PerpetualStorage.publish` checks a market deal.
    Direct,
}

impl Deal {
    /// `DealClient`'s deal ID for a deal made without the market.
    pub const NO_DEAL: u64 = estuary_contracts::NO_DEAL;

    /// The deal a `DealClient` record names (`NO_DEAL`: a direct deal).
    pub fn from_record(deal_id: u64) -> Self {
        if deal_id == Self::NO_DEAL { Self::Direct } else { Self::Market(deal_id) }
    }

    /// The market's deal ID, if it is a market deal.
    pub fn market_id(self) -> Option<u64> {
        match self {
            Self::Market(id) => Some(id),
            Self::Direct => None,
        }
    }
}

impl std::fmt::Display for Deal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Market(id) => write!(f, "deal {id}"),
            Self::Direct => f.write_str("a direct deal"),
        }
    }
}

/// What happened to a piece of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// The slot is claimed: the deal must start by `deadline`; its offer is `proposal_id`.
    Claimed {
        /// Last epoch for `publish`, and the deal's start epoch.
        deadline: u64,
        /// The offer's id (`getDealProposal`).
        proposal_id: B256,
    },
    /// The claim was refused (another provider was first, the order closed): nothing is held.
    ClaimRefused {
        /// Why.
        reason: String,
    },
    /// The piece is downloaded and checked.
    Verified,
    /// The deal is published (a market deal), or handed over as a direct deal.
    Published {
        /// The deal.
        deal: Deal,
    },
    /// The deal's sector is proven.
    Activated {
        /// The sector, when the sealer knows it.
        sector: Option<u64>,
    },
    /// `publish` went through: the bounty streams from `start`.
    Proven {
        /// The epoch the bounty streams from.
        start: u64,
    },
    /// Given up before being proven (bad origin, sealing failed, out of time, cancelled).
    Abandon {
        /// Why.
        reason: String,
    },
    /// The slot of abandoned work was reopened (or found reopened).
    Released,
    /// The deal or replica ended.
    Ended {
        /// Why.
        reason: String,
    },
}

impl Input {
    /// The reason this input carries, if any (kept with the work).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::ClaimRefused { reason } | Self::Abandon { reason } | Self::Ended { reason } => {
                Some(reason)
            }
            _ => None,
        }
    }
}

/// An input that does not apply to work in this state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input} does not apply to {kind:?} work that is {state:?}")]
pub struct Refused {
    /// The work's kind.
    pub kind: WorkKind,
    /// Its state.
    pub state: WorkState,
    /// The input's name.
    pub input: &'static str,
}

fn name(input: &Input) -> &'static str {
    match input {
        Input::Claimed { .. } => "Claimed",
        Input::ClaimRefused { .. } => "ClaimRefused",
        Input::Verified => "Verified",
        Input::Published { .. } => "Published",
        Input::Activated { .. } => "Activated",
        Input::Proven { .. } => "Proven",
        Input::Abandon { .. } => "Abandon",
        Input::Released => "Released",
        Input::Ended { .. } => "Ended",
    }
}

/// The state `input` moves `kind` work in `state` to.
pub fn apply(kind: WorkKind, state: WorkState, input: &Input) -> Result<WorkState, Refused> {
    use WorkState as S;
    let slot = kind == WorkKind::Slot;
    let next = match (state, input) {
        (S::Claiming, Input::Claimed { .. }) if slot => S::Fetching,
        (S::Claiming, Input::ClaimRefused { .. }) if slot => S::Failed,
        (S::Fetching, Input::Verified) => S::Sealing,
        // `PerpetualStorage.publish` checks a market deal: a slot's cannot be direct.
        (S::Sealing, Input::Published { deal: Deal::Direct }) if slot => {
            return Err(Refused { kind, state, input: name(input) });
        }
        (S::Sealing, Input::Published { .. }) => S::Activating,
        (S::Activating, Input::Activated { .. }) => {
            if slot {
                S::Proving
            } else {
                S::Active
            }
        }
        (S::Proving, Input::Proven { .. }) if slot => S::Active,
        (S::Fetching | S::Sealing | S::Activating | S::Proving, Input::Abandon { .. }) => {
            if slot {
                S::Releasing
            } else {
                S::Failed
            }
        }
        (S::Releasing, Input::Released) => S::Failed,
        (S::Active, Input::Ended { .. }) => S::Ended,
        _ => return Err(Refused { kind, state, input: name(input) }),
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn inputs() -> Vec<Input> {
        vec![
            Input::Claimed { deadline: 10, proposal_id: B256::ZERO },
            Input::ClaimRefused { reason: "x".into() },
            Input::Verified,
            Input::Published { deal: Deal::Market(1) },
            Input::Activated { sector: Some(1) },
            Input::Proven { start: 5 },
            Input::Abandon { reason: "x".into() },
            Input::Released,
            Input::Ended { reason: "x".into() },
        ]
    }

    #[test]
    fn a_slot_goes_from_claim_to_active() {
        let mut s = WorkKind::Slot.first_state();
        for input in [
            Input::Claimed { deadline: 10, proposal_id: B256::ZERO },
            Input::Verified,
            Input::Published { deal: Deal::Market(3) },
            Input::Activated { sector: Some(3) },
            Input::Proven { start: 8 },
            Input::Ended { reason: "term complete".into() },
        ] {
            s = apply(WorkKind::Slot, s, &input).unwrap();
        }
        assert_eq!(s, WorkState::Ended);
    }

    #[test]
    fn a_proposal_needs_no_claim_and_no_proof() {
        let mut s = WorkKind::Proposal.first_state();
        assert_eq!(s, WorkState::Fetching);
        for input in [
            Input::Verified,
            Input::Published { deal: Deal::Market(3) },
            Input::Activated { sector: Some(3) },
        ] {
            s = apply(WorkKind::Proposal, s, &input).unwrap();
        }
        assert_eq!(s, WorkState::Active);
        assert!(apply(WorkKind::Proposal, WorkState::Claiming, &inputs()[0]).is_err());
        assert!(
            apply(WorkKind::Proposal, WorkState::Proving, &Input::Proven { start: 1 }).is_err()
        );
    }

    #[test]
    fn only_a_proposal_may_be_a_direct_deal() {
        let direct = Input::Published { deal: Deal::Direct };
        assert_eq!(
            apply(WorkKind::Proposal, WorkState::Sealing, &direct),
            Ok(WorkState::Activating)
        );
        assert!(apply(WorkKind::Slot, WorkState::Sealing, &direct).is_err());
        assert_eq!(Deal::from_record(u64::MAX), Deal::Direct);
        assert_eq!(Deal::from_record(7), Deal::Market(7));
    }

    #[test]
    fn abandoned_slots_are_released_and_abandoned_proposals_fail() {
        let abandon = Input::Abandon { reason: "wrong bytes".into() };
        for s in
            [WorkState::Fetching, WorkState::Sealing, WorkState::Activating, WorkState::Proving]
        {
            assert_eq!(apply(WorkKind::Slot, s, &abandon), Ok(WorkState::Releasing));
        }
        assert_eq!(
            apply(WorkKind::Slot, WorkState::Releasing, &Input::Released),
            Ok(WorkState::Failed)
        );
        assert_eq!(apply(WorkKind::Proposal, WorkState::Sealing, &abandon), Ok(WorkState::Failed));
        assert!(apply(WorkKind::Slot, WorkState::Active, &abandon).is_err(), "active work ends");
        assert!(apply(WorkKind::Slot, WorkState::Claiming, &abandon).is_err(), "nothing held yet");
    }

    fn outcomes_never_move_backwards_impl(kind: WorkKind, path: &[usize]) {
        let all = inputs();
        let mut state = kind.first_state();
        for &i in path {
            match apply(kind, state, &all[i % all.len()]) {
                Ok(next) => {
                    assert!(next > state, "{state:?} -> {next:?} moves backwards");
                    assert!(!state.is_terminal(), "{state:?} is terminal");
                    state = next;
                }
                Err(refused) => assert_eq!(refused.state, state),
            }
        }
    }

    proptest! {
        #[test]
        fn outcomes_never_move_backwards_proptest(slot: bool, path in proptest::collection::vec(0usize..64, 0..40)) {
            let kind = if slot { WorkKind::Slot } else { WorkKind::Proposal };
            outcomes_never_move_backwards_impl(kind, &path);
        }
    }

    #[test]
    fn outcomes_never_move_backwards_cases() {
        outcomes_never_move_backwards_impl(WorkKind::Slot, &[0, 2, 6, 7, 3]);
        outcomes_never_move_backwards_impl(WorkKind::Proposal, &[2, 3, 4, 8, 6]);
    }

    #[test]
    fn names_round_trip() {
        for s in WorkState::ALL {
            assert_eq!(WorkState::parse(s.as_str()), Some(s));
        }
        assert_eq!(WorkKind::parse("slot"), Some(WorkKind::Slot));
        assert_eq!(WorkKind::parse("order"), None);
    }
}
