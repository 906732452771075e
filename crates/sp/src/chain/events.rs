//! Which events point at work, and what each says.
//!
//! | contract | event | lead |
//! |---|---|---|
//! | `PerpetualStorage` | `OrderCreated`, `OrderFunded`, `BountyChanged`, `ReplicaTargetChanged`, `OrderSuspended`, `OrderCancelled`, `OriginsChanged`, `SlotReopened` | the order (topic 1), to look at |
//! | `DealClient` | `DealProposalOffered` naming this miner or none | the proposal (topic 1), to look at |
//! | `DealClient` | `DealProposalOffered` naming another miner | the proposal, skipped at once: nothing read, nothing downloaded |
//! | `DealClient` | `DealProposalCancelled` | the proposal, to look at (work not yet published stops) |
//!
//! `DealProposalCreate` (Boost's FRC-0068 event) carries no provider, so every Boost races for
//! every proposal; Estuary's `DealProposalOffered` names the provider in a topic, which is what
//! lets the other agents skip a proposal without reading or downloading anything.

use alloy::{
    primitives::{Address, B256, U256},
    rpc::types::Log,
    sol_types::SolEvent,
};
use estuary_contracts::{DealClient, PerpetualStorage};

use crate::{
    domain::{Skip, WorkKind},
    store::LeadEvent,
};

/// The contracts the agent follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractKind {
    /// `PerpetualStorage`: orders with replica slots.
    Perpetual,
    /// `DealClient`: contract-deal proposals.
    DealClient,
}

impl ContractKind {
    /// The events followed (topic 0).
    pub fn topics(self) -> Vec<B256> {
        match self {
            Self::Perpetual => vec![
                PerpetualStorage::OrderCreated::SIGNATURE_HASH,
                PerpetualStorage::OrderFunded::SIGNATURE_HASH,
                PerpetualStorage::BountyChanged::SIGNATURE_HASH,
                PerpetualStorage::ReplicaTargetChanged::SIGNATURE_HASH,
                PerpetualStorage::OrderSuspended::SIGNATURE_HASH,
                PerpetualStorage::OrderCancelled::SIGNATURE_HASH,
                PerpetualStorage::OriginsChanged::SIGNATURE_HASH,
                PerpetualStorage::SlotReopened::SIGNATURE_HASH,
            ],
            Self::DealClient => vec![
                DealClient::DealProposalOffered::SIGNATURE_HASH,
                DealClient::DealProposalCancelled::SIGNATURE_HASH,
            ],
        }
    }

    /// The kind of work its leads are.
    pub fn work(self) -> WorkKind {
        match self {
            Self::Perpetual => WorkKind::Slot,
            Self::DealClient => WorkKind::Proposal,
        }
    }
}

/// The leads `logs` of `contract` point at, for `miner`. Logs of other contracts or events, or
/// without the topics their event has, are ignored.
pub fn decode(kind: ContractKind, contract: Address, miner: u64, logs: &[Log]) -> Vec<LeadEvent> {
    let topics = kind.topics();
    let mut out = Vec::new();
    for log in logs {
        let t = log.topics();
        let (Some(sig), Some(id), Some(block)) = (t.first(), t.get(1), log.block_number) else {
            continue;
        };
        if log.address() != contract || !topics.contains(sig) {
            continue;
        }
        let (reference, settled) = match kind {
            ContractKind::Perpetual => {
                let Ok(order) = u64::try_from(U256::from_be_bytes(id.0)) else { continue };
                (order.to_string(), None)
            }
            ContractKind::DealClient => {
                let mut settled = None;
                if *sig == DealClient::DealProposalOffered::SIGNATURE_HASH {
                    let Some(provider) = t.get(2) else { continue };
                    let Ok(named) = u64::try_from(U256::from_be_bytes(provider.0)) else {
                        continue;
                    };
                    if named != 0 && named != miner {
                        settled = Some(Skip::OtherProvider { named });
                    }
                }
                (format!("{id:#x}"), settled)
            }
        };
        out.push(LeadEvent { kind: kind.work(), contract, reference, block, settled });
    }
    out
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Bytes, LogData};

    use super::*;

    fn log(address: Address, topics: Vec<B256>, block: u64) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address,
                data: LogData::new_unchecked(topics, Bytes::new()),
            },
            block_number: Some(block),
            ..Log::default()
        }
    }

    #[test]
    fn proposals_naming_another_miner_are_settled_at_once() {
        let c = Address::repeat_byte(1);
        let id = B256::repeat_byte(9);
        let offered = DealClient::DealProposalOffered::SIGNATURE_HASH;
        let to = |m: u64| B256::from(U256::from(m));
        let leads = decode(
            ContractKind::DealClient,
            c,
            1000,
            &[
                log(c, vec![offered, id, to(1001)], 5),
                log(c, vec![offered, id, to(1000)], 6),
                log(c, vec![offered, id, to(0)], 7),
                log(c, vec![offered, id], 8),
                log(Address::repeat_byte(2), vec![offered, id, to(0)], 9),
                log(c, vec![DealClient::DealProposalCancelled::SIGNATURE_HASH, id], 10),
            ],
        );
        assert_eq!(leads.len(), 4);
        assert_eq!(leads[0].settled, Some(Skip::OtherProvider { named: 1001 }));
        assert_eq!(leads[1].settled, None);
        assert_eq!(leads[2].settled, None);
        assert_eq!(leads[3].block, 10);
        assert_eq!(leads[0].reference, format!("{id:#x}"));
    }

    #[test]
    fn order_events_point_at_their_order() {
        let c = Address::repeat_byte(1);
        let leads = decode(
            ContractKind::Perpetual,
            c,
            1000,
            &[
                log(
                    c,
                    vec![PerpetualStorage::OrderCreated::SIGNATURE_HASH, B256::from(U256::from(7))],
                    3,
                ),
                log(
                    c,
                    vec![PerpetualStorage::SlotClaimed::SIGNATURE_HASH, B256::from(U256::from(7))],
                    3,
                ),
                log(
                    c,
                    vec![PerpetualStorage::SlotReopened::SIGNATURE_HASH, B256::repeat_byte(0xff)],
                    4,
                ),
            ],
        );
        assert_eq!(leads.len(), 1, "SlotClaimed is not followed; an order id past u64 is not one");
        assert_eq!(leads[0].reference, "7");
        assert_eq!(leads[0].kind, WorkKind::Slot);
    }
}
