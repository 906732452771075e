//! The oracle's records.

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::Serialize;

/// Now, in unix milliseconds (the store's time unit).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where requests come from: one contract on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The `EstuaryPinning` contract.
    pub contract: Address,
}

impl Source {
    /// The key the store files this source's cursor under.
    pub fn key(&self) -> String {
        format!("{}:{:#x}", self.chain_id, self.contract)
    }
}

/// How far a source has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Last block whose logs are all stored.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: B256,
}

/// A `PinRequested` event as read from the chain, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequestEvent {
    /// The request's id in its contract.
    pub request_id: U256,
    /// Who asked.
    pub requester: Address,
    /// The CID bytes as emitted.
    pub cid: Bytes,
    /// Block that holds the event.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: B256,
    /// Transaction that emitted it.
    pub tx_hash: B256,
    /// Position of the log in its block.
    pub log_index: u64,
    /// Where the content can be fetched from (multiaddrs), as the requester gave them
    /// (`PinRequestOptions`); empty when none were given.
    pub origins: Vec<String>,
    /// Why this oracle refuses the request outright (it is reported failed on chain, with the
    /// reason, without fetching anything).
    pub refused: Option<String>,
}

/// Where a request is in its life (see [`crate::job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestStatus {
    /// Recorded from the chain and waiting for a worker.
    Queued,
    /// A worker is fetching and verifying the DAG.
    Fetching,
    /// The whole DAG is in the blockstore.
    Pinned,
    /// Its CAR and piece are ready for deals.
    Packed,
    /// The pin is reported on chain.
    Reported,
    /// Will not be pinned (bad or too-large content); the failure is being reported on chain.
    Failing,
    /// Will not be pinned; `error` says why.
    Failed,
    /// Failed too often to retry by itself; `error` has the last reason (`estuary oracle requeue`).
    Quarantined,
    /// Cancelled by the requester (or closed on chain).
    Cancelled,
}

impl RequestStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Fetching => "fetching",
            Self::Pinned => "pinned",
            Self::Packed => "packed",
            Self::Reported => "reported",
            Self::Failing => "failing",
            Self::Failed => "failed",
            Self::Quarantined => "quarantined",
            Self::Cancelled => "cancelled",
        }
    }

    /// Every status.
    pub const ALL: [Self; 9] = [
        Self::Queued,
        Self::Fetching,
        Self::Pinned,
        Self::Packed,
        Self::Reported,
        Self::Failing,
        Self::Failed,
        Self::Quarantined,
        Self::Cancelled,
    ];

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// A request as the oracle holds it, and as `GET /requests/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinRequest {
    /// The request's id, in decimal.
    pub id: String,
    /// Chain the request was made on.
    pub chain_id: u64,
    /// The contract it was made to.
    pub contract: String,
    /// Who asked, checksummed.
    pub requester: String,
    /// The CID's canonical text, or `null` if the bytes are not a CID.
    pub cid: Option<String>,
    /// The CID bytes, 0x-hex.
    pub cid_bytes: String,
    /// Block that holds the request.
    pub block: u64,
    /// Transaction that made it.
    pub tx_hash: String,
    /// Where it is.
    pub status: RequestStatus,
    /// Why it failed, if it did (or the last retryable failure).
    pub error: Option<String>,
    /// Failed attempts since the last progress.
    pub attempts: u32,
    /// Distinct blocks of the pinned DAG.
    pub dag_blocks: Option<u64>,
    /// Their bytes.
    pub dag_bytes: Option<u64>,
    /// Piece CID v2 of the packed CAR.
    pub piece_cid: Option<String>,
    /// Padded piece size.
    pub padded_size: Option<u64>,
    /// CAR size in bytes.
    pub car_size: Option<u64>,
    /// The report's transaction, when this oracle sent it.
    pub report_tx: Option<String>,
}

impl PinRequest {
    /// Checks an event and turns it into a request: queued if its bytes are a CID, failed with
    /// the reason otherwise. Chain data is untrusted even from our own contract.
    pub fn from_event(source: Source, event: &PinRequestEvent) -> Self {
        let (cid, status, error) = match (estuary_dag::parse_cid_bytes(&event.cid), &event.refused)
        {
            (Ok(info), Some(reason)) => {
                (Some(info.text), RequestStatus::Failing, Some(reason.clone()))
            }
            (Ok(info), None) => (Some(info.text), RequestStatus::Queued, None),
            (Err(e), _) => (None, RequestStatus::Failed, Some(e.to_string())),
        };
        Self {
            id: event.request_id.to_string(),
            chain_id: source.chain_id,
            contract: format!("{:#x}", source.contract),
            requester: event.requester.to_checksum(None),
            cid,
            cid_bytes: event.cid.to_string(),
            block: event.block_number,
            tx_hash: format!("{:#x}", event.tx_hash),
            status,
            error,
            attempts: 0,
            dag_blocks: None,
            dag_bytes: None,
            piece_cid: None,
            padded_size: None,
            car_size: None,
            report_tx: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{address, b256, bytes};

    fn event(cid: Bytes) -> PinRequestEvent {
        PinRequestEvent {
            request_id: U256::from(7),
            requester: address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            cid,
            block_number: 10,
            block_hash: B256::ZERO,
            tx_hash: b256!("1111111111111111111111111111111111111111111111111111111111111111"),
            log_index: 0,
            origins: Vec::new(),
            refused: None,
        }
    }

    fn source() -> Source {
        Source { chain_id: 31337, contract: Address::repeat_byte(0xab) }
    }

    #[test]
    fn valid_cid_is_queued() {
        let cid =
            bytes!("01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace");
        let req = PinRequest::from_event(source(), &event(cid));
        assert_eq!(req.status, RequestStatus::Queued);
        assert_eq!(req.id, "7");
        assert_eq!(
            req.cid.as_deref(),
            Some("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
        );
        assert_eq!(req.requester, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    }

    #[test]
    fn bad_cid_bytes_fail_with_a_reason() {
        let req = PinRequest::from_event(source(), &event(bytes!("0155")));
        assert_eq!(req.status, RequestStatus::Failed);
        assert!(req.cid.is_none());
        assert!(req.error.unwrap().contains("CID"));
    }
}
