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
//!
//! A log of another contract, of another event, without its block or index, or whose data does
//! not decode is left out (logs come from an RPC endpoint and are not trusted).

use alloy::{
    primitives::{Address, B256},
    rpc::types::Log,
    sol_types::SolEvent,
};
use estuary_contracts::PerpetualStorage as PS;

use crate::domain::deal::{DealLog, DealLogKind, SlotEventKind};

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
                deal_id: e.dealId,
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
        let mut truncated = created.encode_log_data();
        truncated.data = Bytes::from(vec![0u8; 7]);
        let logs = [
            log(contract, created.encode_log_data(), Some(1)),
            log(contract, activated.encode_log_data(), Some(2)),
            log(Address::repeat_byte(8), activated.encode_log_data(), Some(2)),
            log(contract, activated.encode_log_data(), None),
            log(contract, huge.encode_log_data(), Some(3)),
            log(contract, truncated, Some(4)),
        ];
        let decoded = decode(contract, &logs);
        assert_eq!(decoded.len(), 2);
        assert_eq!(
            decoded[0].kind,
            DealLogKind::Created { client: Address::repeat_byte(1), piece_v1: vec![1, 2, 3] }
        );
        assert_eq!(
            decoded[1].kind,
            DealLogKind::Slot {
                provider: 1000,
                kind: SlotEventKind::Activated { deal_id: 9, start_epoch: 10, end_epoch: 20 }
            }
        );
    }
}
