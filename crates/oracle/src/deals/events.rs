//! `PerpetualStorage`'s events about orders, decoded from logs (the deal watcher's input).
//!
//! | event | [`DealLogKind`] |
//! |---|---|
//! | `OrderCreated(orderId, client, pieceCid, …)` | `Created { client, piece_v1 }` |
//! | `SlotClaimed(orderId, provider, …, deadline, …)` | `Slot { provider, Claimed { deadline } }` |
//! | `SlotDealPublished(orderId, provider, dealId)` | `Slot { provider, Published }` |
//! | `SlotActivated(orderId, provider, dealId, start, payEnd)` | `Slot { provider, Activated }` |
//! | `SlotReopened(orderId, provider, …)` | `Slot { provider, Reopened }` |
//! | `BountyPaid(orderId, provider, amount, until)` | `Slot { provider, Paid { until } }` |
//! | `OrderCancelled(orderId, refund)` | `Cancelled` |
//! | `ReplicaTargetChanged(orderId, replicas)` | `Target { replicas }` |
//!
//!
//! And `DealClient`'s events about proposals ([`decode_proposals`]):
//!
//! | event | [`ProposalLogKind`] |
//! |---|---|
//! | `DealProposalOffered(id, provider, pieceCid, pieceSize, startEpoch, …)` | `Offered { provider, piece_v1, start_epoch }` |
//! | `DealPublished(id, dealId, provider)` | `Published { provider, deal_id }` |
//! | `DealActivated(id, provider, dealId, sector)` | `Activated { provider, deal_id }` (`deal_id` none for `NO_DEAL`: a deal made without the market) |
//! | `DealProposalCancelled(id)` | `Cancelled` |
//!
//! A log of another contract, of another event, without its block or index, or whose data does
//! not decode is left out (logs come from an RPC endpoint and are not trusted).

use alloy::{
    primitives::{Address, B256},
    rpc::types::Log,
    sol_types::SolEvent,
};
use estuary_contracts::{DealClient as DC, PerpetualStorage as PS};

use crate::domain::deal::{DealLog, DealLogKind, ProposalLog, ProposalLogKind, SlotEventKind};

/// The events followed (topic 0).
pub fn topics() -> Vec<B256> {
    vec![
        PS::OrderCreated::SIGNATURE_HASH,
        PS::SlotClaimed::SIGNATURE_HASH,
        PS::SlotDealPublished::SIGNATURE_HASH,
        PS::SlotActivated::SIGNATURE_HASH,
        PS::SlotReopened::SIGNATURE_HASH,
        PS::BountyPaid::SIGNATURE_HASH,
        PS::OrderCancelled::SIGNATURE_HASH,
        PS::ReplicaTargetChanged::SIGNATURE_HASH,
    ]
}

fn order_id(id: alloy::primitives::U256) -> Option<u64> {
    u64::try_from(id).ok()
}

/// The order events among `logs` of `contract`, in the order given.
pub fn decode(contract: Address, logs: &[Log]) -> Vec<DealLog> {
    logs.iter()
        .filter(|log| log.address() == contract)
        .filter_map(|log| {
            let (block_number, log_index) = (log.block_number?, log.log_index?);
            let (order, kind) = decode_one(log)?;
            Some(DealLog { block_number, log_index, order_id: order_id(order)?, kind })
        })
        .collect()
}

/// The `DealClient` events followed (topic 0).
pub fn proposal_topics() -> Vec<B256> {
    vec![
        DC::DealProposalOffered::SIGNATURE_HASH,
        DC::DealPublished::SIGNATURE_HASH,
        DC::DealActivated::SIGNATURE_HASH,
        DC::DealProposalCancelled::SIGNATURE_HASH,
    ]
}

/// The proposal events among `logs` of the `DealClient` at `client`, in the order given.
pub fn decode_proposals(client: Address, logs: &[Log]) -> Vec<ProposalLog> {
    logs.iter()
        .filter(|log| log.address() == client)
        .filter_map(|log| {
            let (block_number, log_index) = (log.block_number?, log.log_index?);
            let (id, kind) = decode_proposal(log)?;
            Some(ProposalLog { block_number, log_index, id: id.0, kind })
        })
        .collect()
}

/// A market deal id as stored (the database's integers are signed 64-bit): `DealClient`'s
/// `NO_DEAL` (`u64::MAX`) and anything past `i64::MAX` are none.
fn market_id(id: u64) -> Option<u64> {
    (i64::try_from(id).is_ok()).then_some(id)
}

fn decode_proposal(log: &Log) -> Option<(B256, ProposalLogKind)> {
    Some(match *log.topic0()? {
        DC::DealProposalOffered::SIGNATURE_HASH => {
            let e = log.log_decode::<DC::DealProposalOffered>().ok()?.inner.data;
            let kind = ProposalLogKind::Offered {
                provider: e.provider,
                piece_v1: e.pieceCid.to_vec(),
                start_epoch: u64::try_from(e.startEpoch).ok()?,
            };
            (e.id, kind)
        }
        DC::DealPublished::SIGNATURE_HASH => {
            let e = log.log_decode::<DC::DealPublished>().ok()?.inner.data;
            (
                e.id,
                ProposalLogKind::Published { provider: e.provider, deal_id: market_id(e.dealId)? },
            )
        }
        DC::DealActivated::SIGNATURE_HASH => {
            // A deal made without the market (Curio DDO) names `NO_DEAL`: active, with no
            // market deal to read or prove.
            let e = log.log_decode::<DC::DealActivated>().ok()?.inner.data;
            let deal_id = if e.dealId == estuary_contracts::NO_DEAL {
                None
            } else {
                Some(market_id(e.dealId)?)
            };
            (e.id, ProposalLogKind::Activated { provider: e.provider, deal_id })
        }
        DC::DealProposalCancelled::SIGNATURE_HASH => {
            let e = log.log_decode::<DC::DealProposalCancelled>().ok()?.inner.data;
            (e.id, ProposalLogKind::Cancelled)
        }
        _ => return None,
    })
}

fn decode_one(log: &Log) -> Option<(alloy::primitives::U256, DealLogKind)> {
    let slot = |provider: u64, kind| DealLogKind::Slot { provider, kind };
    Some(match *log.topic0()? {
        PS::OrderCreated::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::OrderCreated>().ok()?.inner.data;
            (e.orderId, DealLogKind::Created { client: e.client, piece_v1: e.pieceCid.to_vec() })
        }
        PS::SlotClaimed::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::SlotClaimed>().ok()?.inner.data;
            (e.orderId, slot(e.provider, SlotEventKind::Claimed { deadline: Some(e.deadline) }))
        }
        PS::SlotDealPublished::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::SlotDealPublished>().ok()?.inner.data;
            (e.orderId, slot(e.provider, SlotEventKind::Published { deal_id: e.dealId }))
        }
        PS::SlotActivated::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::SlotActivated>().ok()?.inner.data;
            let kind = SlotEventKind::Activated {
                deal_id: Some(e.dealId),
                start_epoch: e.start,
                end_epoch: e.payEnd,
            };
            (e.orderId, slot(e.provider, kind))
        }
        PS::SlotReopened::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::SlotReopened>().ok()?.inner.data;
            (e.orderId, slot(e.provider, SlotEventKind::Reopened))
        }
        PS::BountyPaid::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::BountyPaid>().ok()?.inner.data;
            (e.orderId, slot(e.provider, SlotEventKind::Paid { until: e.until }))
        }
        PS::OrderCancelled::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::OrderCancelled>().ok()?.inner.data;
            (e.orderId, DealLogKind::Cancelled)
        }
        PS::ReplicaTargetChanged::SIGNATURE_HASH => {
            let e = log.log_decode::<PS::ReplicaTargetChanged>().ok()?.inner.data;
            (e.orderId, DealLogKind::Target { replicas: e.replicas })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use alloy::{
        primitives::{Bytes, LogData, U256},
        sol_types::SolEvent,
    };

    use super::*;

    fn log(contract: Address, data: LogData, block: Option<u64>) -> Log {
        Log {
            inner: alloy::primitives::Log { address: contract, data },
            block_number: block,
            log_index: Some(0),
            ..Log::default()
        }
    }

    #[test]
    fn proposal_events_decode_and_strangers_are_left_out() {
        let client = Address::repeat_byte(9);
        let id = B256::repeat_byte(3);
        let offered = DC::DealProposalOffered {
            id,
            provider: 1000,
            pieceCid: Bytes::from(vec![1, 2]),
            pieceSize: 2048,
            startEpoch: 50,
            endEpoch: 90,
            replicas: 1,
        };
        let before_genesis = DC::DealProposalOffered { startEpoch: -1, ..offered.clone() };
        let published = DC::DealPublished { id, dealId: 4, provider: 1000 };
        let activated = DC::DealActivated { id, provider: 1000, dealId: 4, sector: 2 };
        let cancelled = DC::DealProposalCancelled { id };
        let ddo = DC::DealActivated { id, provider: 1000, dealId: u64::MAX, sector: 2 };
        let past_i64 = DC::DealActivated { id, provider: 1000, dealId: 1 << 63, sector: 2 };
        let logs = [
            log(client, past_i64.encode_log_data(), Some(1)),
            log(client, ddo.encode_log_data(), Some(1)),
            log(client, offered.encode_log_data(), Some(1)),
            log(client, before_genesis.encode_log_data(), Some(1)),
            log(Address::repeat_byte(1), published.encode_log_data(), Some(2)),
            log(client, published.encode_log_data(), Some(2)),
            log(client, activated.encode_log_data(), None),
            log(client, activated.encode_log_data(), Some(3)),
            log(client, cancelled.encode_log_data(), Some(4)),
        ];
        let kinds: Vec<ProposalLogKind> =
            decode_proposals(client, &logs).into_iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                ProposalLogKind::Activated { provider: 1000, deal_id: None },
                ProposalLogKind::Offered { provider: 1000, piece_v1: vec![1, 2], start_epoch: 50 },
                ProposalLogKind::Published { provider: 1000, deal_id: 4 },
                ProposalLogKind::Activated { provider: 1000, deal_id: Some(4) },
                ProposalLogKind::Cancelled,
            ]
        );
        let kinds = &kinds[1..];
        // As replica events: the deadline is the start; a withdrawal after publication is none.
        assert_eq!(
            kinds[0].slot(50, 90, false),
            Some(SlotEventKind::Claimed { deadline: Some(50) })
        );
        assert_eq!(
            kinds[2].slot(50, 90, true),
            Some(SlotEventKind::Activated { deal_id: Some(4), start_epoch: 50, end_epoch: 90 })
        );
        assert_eq!(kinds[3].slot(50, 90, true), None);
        assert_eq!(kinds[3].slot(50, 90, false), Some(SlotEventKind::Reopened));
    }

    #[test]
    fn order_events_decode_and_strangers_are_left_out() {
        let contract = Address::repeat_byte(7);
        let created = PS::OrderCreated {
            orderId: U256::from(3),
            client: Address::repeat_byte(1),
            pieceCid: Bytes::from(vec![1, 2, 3]),
            paddedSize: 1024,
            replicas: 3,
            bounty: alloy::primitives::Uint::from(5),
            term: 3600,
            verified: false,
        };
        let activated = PS::SlotActivated {
            orderId: U256::from(3),
            provider: 1000,
            dealId: 9,
            start: 10,
            payEnd: 20,
        };
        let huge = PS::SlotClaimed {
            orderId: U256::MAX,
            provider: 1000,
            claimant: Address::ZERO,
            bounty: alloy::primitives::Uint::from(1),
            bond: alloy::primitives::Uint::from(1),
            deadline: 5,
            proposalId: B256::ZERO,
        };
        let target = PS::ReplicaTargetChanged { orderId: U256::from(3), replicas: 4 };
        let mut truncated = created.encode_log_data();
        truncated.data = Bytes::from(vec![0u8; 7]);
        let logs = [
            log(contract, created.encode_log_data(), Some(1)),
            log(contract, activated.encode_log_data(), Some(2)),
            log(Address::repeat_byte(8), activated.encode_log_data(), Some(2)),
            log(contract, activated.encode_log_data(), None),
            log(contract, huge.encode_log_data(), Some(3)),
            log(contract, truncated, Some(4)),
            log(contract, target.encode_log_data(), Some(5)),
        ];
        let decoded = decode(contract, &logs);
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[2].kind, DealLogKind::Target { replicas: 4 });
        assert_eq!(
            decoded[0].kind,
            DealLogKind::Created { client: Address::repeat_byte(1), piece_v1: vec![1, 2, 3] }
        );
        assert_eq!(
            decoded[1].kind,
            DealLogKind::Slot {
                provider: 1000,
                kind: SlotEventKind::Activated { deal_id: Some(9), start_epoch: 10, end_epoch: 20 }
            }
        );
    }
}
