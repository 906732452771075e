//! Requests as read from the chain, and jobs as people see them.

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    rpc::types::Log,
    sol_types::SolEvent,
};
use estuary_contracts::{
    PinRequested,
    oracle::EstuaryOracle::{JobCancelled, JobRequested},
    pinning::EstuaryPinning::{PinCancelled, PinRequestOptions},
};
use serde::Serialize;
use tracing::warn;

use super::{FailureCode, JobKey, JobState};

/// Which of Estuary's request contracts a stream of logs comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractKind {
    /// `EstuaryPinning`: `PinRequested`, `PinRequestOptions`, `PinCancelled`.
    Pinning,
    /// `EstuaryOracle`: `JobRequested` (pin jobs; store jobs when this oracle makes deals) and
    /// `JobCancelled` (a consumer took its payment back: the job stops, as a cancelled pin).
    OracleJobs,
}

impl ContractKind {
    /// The events (topic 0) the watcher reads for this kind.
    pub fn topics(self) -> Vec<B256> {
        match self {
            Self::Pinning => vec![
                PinRequested::SIGNATURE_HASH,
                PinCancelled::SIGNATURE_HASH,
                PinRequestOptions::SIGNATURE_HASH,
            ],
            Self::OracleJobs => vec![JobRequested::SIGNATURE_HASH, JobCancelled::SIGNATURE_HASH],
        }
    }
}

/// The failure a store job gets from an oracle that makes no deals in buckets.
pub const STORE_JOBS_REFUSED: &str =
    "store jobs (Filecoin deals) are not served by this oracle; request a pin job";

/// What a store job asks for (`EstuaryOracle`'s `params`: `abi.encode(uint16 replicas, bool
/// verified)`, which the contract checked: 1 to `MAX_REPLICAS` replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreAsk {
    /// Active deals at different providers before the job is fulfilled.
    pub replicas: u16,
    /// Whether they must be verified (Fil+) deals.
    pub verified: bool,
}

impl StoreAsk {
    /// The ask `params` encode, if they are what the contract accepts.
    pub fn decode(params: &[u8]) -> Option<Self> {
        if params.len() != 64 {
            return None;
        }
        let replicas = U256::from_be_slice(&params[..32]);
        let verified = U256::from_be_slice(&params[32..]);
        let replicas = u16::try_from(replicas).ok().filter(|r| (1..=10).contains(r))?;
        let verified = match u8::try_from(verified).ok()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(Self { replicas, verified })
    }
}

/// What this oracle's deals give a store job: its orders' replicas and whether they are
/// verified (deals are made only for pieces in buckets, where each pin has an inclusion proof).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOffer {
    /// Replicas per order.
    pub replicas: u16,
    /// Whether its deals are verified.
    pub verified: bool,
}

impl StoreOffer {
    /// Why `ask` is refused at once (`None`: served). With no offer, every store job is.
    pub fn refusal(offer: Option<Self>, ask: StoreAsk) -> Option<String> {
        let Some(offer) = offer else { return Some(STORE_JOBS_REFUSED.to_owned()) };
        if ask.replicas > offer.replicas {
            return Some(format!(
                "this oracle keeps {} replicas; the job asks for {}",
                offer.replicas, ask.replicas
            ));
        }
        if ask.verified && !offer.verified {
            return Some("this oracle makes unverified deals; the job asks for verified".into());
        }
        None
    }
}

/// Most origins kept per request, and longest origin: the same bounds as the pinning API's.
const MAX_ORIGINS: usize = 20;
const MAX_ORIGIN_LEN: usize = 1024;

/// The requests and cancellations a range's logs carry (logs of mined blocks, none removed).
/// Chain data is untrusted even from our own contract: an undecodable log is skipped and
/// logged, origins past the bounds are dropped.
pub fn decode_logs(kind: ContractKind, logs: &[Log]) -> (Vec<RequestEvent>, Vec<U256>) {
    let mut events = Vec::new();
    let mut cancelled = Vec::new();
    let mut options = Vec::new();
    for log in logs {
        let (Some(block_number), Some(block_hash), Some(tx_hash), Some(log_index)) =
            (log.block_number, log.block_hash, log.transaction_hash, log.log_index)
        else {
            continue;
        };
        let event = |request_id, requester, cid, refused| RequestEvent {
            store: None,
            request_id,
            requester,
            cid,
            block_number,
            block_hash,
            tx_hash,
            log_index,
            origins: Vec::new(),
            size_hint: None,
            refused,
        };
        match (kind, log.topic0()) {
            (ContractKind::Pinning, Some(&PinRequested::SIGNATURE_HASH)) => {
                match log.log_decode::<PinRequested>() {
                    Ok(d) => {
                        let PinRequested { requestId, requester, cid } = d.inner.data;
                        events.push(event(requestId, requester, cid, None));
                    }
                    Err(e) => {
                        warn!(%tx_hash, log_index, error = %e, "undecodable PinRequested log skipped");
                    }
                }
            }
            (ContractKind::Pinning, Some(&PinCancelled::SIGNATURE_HASH)) => {
                if let Ok(d) = log.log_decode::<PinCancelled>() {
                    cancelled.push(d.inner.data.requestId);
                }
            }
            (ContractKind::Pinning, Some(&PinRequestOptions::SIGNATURE_HASH)) => options.push(log),
            (ContractKind::OracleJobs, Some(&JobRequested::SIGNATURE_HASH)) => {
                match log.log_decode::<JobRequested>() {
                    Ok(d) => {
                        let job = d.inner.data;
                        // A store job's ask; whether it is served is the oracle's policy
                        // (`StoreOffer`, applied where the requests are stored).
                        let ask = (job.kind != 0).then(|| StoreAsk::decode(&job.params));
                        let refused = matches!(ask, Some(None))
                            .then(|| "a store job's params are not (uint16, bool)".to_owned());
                        let mut ev = event(job.jobId, job.consumer, job.cid, refused);
                        ev.store = ask.flatten();
                        events.push(ev);
                    }
                    Err(e) => {
                        warn!(%tx_hash, log_index, error = %e, "undecodable JobRequested log skipped");
                    }
                }
            }
            (ContractKind::OracleJobs, Some(&JobCancelled::SIGNATURE_HASH)) => {
                // Refunded: nothing more is done for it (a store job is not bucketed, dealt or
                // fulfilled), and its blocks go at the next collection.
                if let Ok(d) = log.log_decode::<JobCancelled>() {
                    cancelled.push(d.inner.data.jobId);
                }
            }
            _ => {}
        }
    }
    // A request's `PinRequestOptions` log comes from the same transaction, right after it.
    for log in options {
        let Ok(decoded) = log.log_decode::<PinRequestOptions>() else {
            warn!(tx = ?log.transaction_hash, "undecodable PinRequestOptions log skipped");
            continue;
        };
        let data = decoded.inner.data;
        let Some(event) = events
            .iter_mut()
            .find(|e| e.request_id == data.requestId && Some(e.tx_hash) == log.transaction_hash)
        else {
            continue;
        };
        event.origins = data
            .origins
            .into_iter()
            .filter(|o| !o.is_empty() && o.len() <= MAX_ORIGIN_LEN)
            .take(MAX_ORIGINS)
            .collect();
        event.size_hint = (data.sizeHint > 0).then_some(data.sizeHint);
    }
    (events, cancelled)
}

/// A request event (`PinRequested`, or an `EstuaryOracle` pin job) as read from the chain, not
/// yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEvent {
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
    /// Where the content can be fetched from (multiaddrs), as the requester gave them;
    /// empty when none were given.
    pub origins: Vec<String>,
    /// The DAG's size in bytes as the requester stated it (`sizeHint`; `None` when not given):
    /// it scales the fetch's time budget.
    pub size_hint: Option<u64>,
    /// Why this oracle refuses the request outright (it is reported failed, with the reason,
    /// without fetching anything).
    pub refused: Option<String>,
    /// An `EstuaryOracle` store job's ask (`None`: a pin).
    pub store: Option<StoreAsk>,
}

/// How a new job starts, given its CID bytes (untrusted, even from our own contract).
pub fn first_state(
    cid: &[u8],
    refused: Option<&str>,
) -> (Option<String>, JobState, Option<String>) {
    match (estuary_dag::parse_cid_bytes(cid), refused) {
        (Ok(info), Some(reason)) => (Some(info.text), JobState::Failing, Some(reason.to_owned())),
        (Ok(info), None) => (Some(info.text), JobState::Queued, None),
        (Err(e), _) => (None, JobState::Failed, Some(e.to_string())),
    }
}

/// A job as the oracle holds it, and as `GET /requests/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Its key (`contract/<chain>/<address>/<id>` or `api/<account>/<id>`).
    pub key: String,
    /// The id within its source.
    pub id: String,
    /// Chain the request was made on (`null` for a pin made through the API).
    pub chain_id: Option<u64>,
    /// The contract it was made to (`null` for a pin made through the API).
    pub contract: Option<String>,
    /// Who asked: a checksummed address, or the API account.
    pub requester: String,
    /// The CID's canonical text, or `null` if the bytes are not a CID.
    pub cid: Option<String>,
    /// The CID bytes, 0x-hex.
    pub cid_bytes: String,
    /// Block that holds the request.
    pub block: Option<u64>,
    /// Transaction that made it.
    pub tx_hash: Option<String>,
    /// Where it is.
    pub status: JobState,
    /// Why it failed, if it did (or the last retryable failure).
    pub error: Option<String>,
    /// The code of a permanent failure (what is reported on chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureCode>,
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
    /// Multiaddrs to fetch from before the configured gateways.
    #[serde(skip)]
    pub origins: Vec<String>,
    /// Parsed key (not shown: `key` is its text).
    #[serde(skip)]
    pub job_key: Option<JobKey>,
}

impl Job {
    /// Its key.
    pub fn key(&self) -> &JobKey {
        self.job_key.as_ref().expect("jobs read from the store carry their key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::bytes;

    #[test]
    fn a_valid_cid_is_queued_and_bad_bytes_fail_with_a_reason() {
        let cid =
            bytes!("01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace");
        let (text, state, error) = first_state(&cid, None);
        assert_eq!(
            text.as_deref(),
            Some("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
        );
        assert_eq!((state, error), (JobState::Queued, None));
        let (text, state, error) = first_state(&bytes!("0155"), None);
        assert_eq!((text, state), (None, JobState::Failed));
        assert!(error.unwrap().contains("CID"));
        let (_, state, error) = first_state(&cid, Some("no deals here"));
        assert_eq!((state, error.as_deref()), (JobState::Failing, Some("no deals here")));
    }
}
