//! Reporting outcomes on chain, exactly once per state.
//!
//! [`Reporter`] is the port; [`ChainReporter`] sends `EstuaryPinning.reportPinned` from the
//! operator's key. Before sending it simulates the call: a request the contract already has the
//! report for (`EstuaryPinningAlreadyReported`) counts as reported — this is what makes a report
//! re-sent after a crash or a reorg harmless — and a request closed on chain
//! (`EstuaryPinningRequestClosed`: cancelled or failed) ends the job.

use std::{future::Future, time::Duration};

use alloy::sol_types::SolValue;
use alloy::{
    network::EthereumWallet,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use estuary_contracts::{
    oracle::EstuaryOracle::{self, EstuaryOracleErrors},
    pinning::EstuaryPinning::{self, EstuaryPinningErrors},
};

/// What reporting achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Sent and mined in transaction `tx`.
    Sent {
        /// Transaction hash.
        tx: String,
    },
    /// The contract already had this report.
    AlreadyThere,
    /// The request is closed on chain (cancelled by its requester, or failed).
    Closed,
}

/// Why a report could not be made (all retryable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The chain refused or failed the call for another reason.
    #[error("reporting failed: {0}")]
    Chain(String),
}

/// Sends reports to the chain.
pub trait Reporter: Send + Sync + 'static {
    /// Reports that request `id` of `contract` (lower-case 0x) is pinned with piece `piece_cid`
    /// (binary v1) of `padded_size`.
    fn report_pinned(
        &self,
        contract: &str,
        id: U256,
        piece_cid: Bytes,
        padded_size: u64,
    ) -> impl Future<Output = Result<Reported, ReportError>> + Send;

    /// Reports that request `id` of `contract` cannot be pinned, and why.
    fn report_failed(
        &self,
        contract: &str,
        id: U256,
        reason: String,
    ) -> impl Future<Output = Result<Reported, ReportError>> + Send;
}

/// [`Reporter`] for `EstuaryPinning` through an RPC endpoint with the operator's key.
///
/// Nonces are assigned here, one at a time: workers send reports concurrently from one account,
/// and asking the node for the next nonce per transaction would hand two of them the same one.
/// The next nonce is read from the chain (pending) at first use and after any failed send, so
/// a restart or a dropped transaction never leaves a gap.
#[derive(Debug, Clone)]
pub struct ChainReporter {
    contract: EstuaryPinning::EstuaryPinningInstance<DynProvider>,
    oracle: Option<EstuaryOracle::EstuaryOracleInstance<DynProvider>>,
    operator: Address,
    next_nonce: std::sync::Arc<tokio::sync::Mutex<Option<u64>>>,
    confirmations: u64,
}

impl ChainReporter {
    /// A reporter for `pinning` (and the jobs of `oracle`) at `rpc_url`, signing with `key`.
    pub fn new(
        rpc_url: &str,
        pinning: Address,
        oracle: Option<Address>,
        key: PrivateKeySigner,
        confirmations: u64,
    ) -> Result<Self, ReportError> {
        let url =
            rpc_url.parse().map_err(|_| ReportError::Chain(format!("bad RPC URL {rpc_url}")))?;
        let operator = key.address();
        let provider =
            ProviderBuilder::new().wallet(EthereumWallet::from(key)).connect_http(url).erased();
        // Receipts are polled for; alloy's default for a local endpoint (250 ms) caps a worker
        // at four reports a second. A tenth of a second costs a local node nothing.
        provider.client().set_poll_interval(Duration::from_millis(100));
        Ok(Self {
            contract: EstuaryPinning::new(pinning, provider.clone()),
            oracle: oracle.map(|address| EstuaryOracle::new(address, provider)),
            operator,
            next_nonce: std::sync::Arc::default(),
            confirmations,
        })
    }
}

impl ChainReporter {
    /// Simulates `call`, then sends it with the next nonce and waits for its receipt.
    async fn send<C: alloy::sol_types::SolCall + Send + Sync + Unpin>(
        &self,
        call: alloy::contract::CallBuilder<&DynProvider, std::marker::PhantomData<C>>,
    ) -> Result<Reported, ReportError> {
        if let Err(e) = call.call_raw().await {
            return match e.as_decoded_interface_error::<EstuaryPinningErrors>() {
                Some(EstuaryPinningErrors::EstuaryPinningAlreadyReported(_)) => {
                    Ok(Reported::AlreadyThere)
                }
                Some(EstuaryPinningErrors::EstuaryPinningRequestClosed(_)) => Ok(Reported::Closed),
                _ => match e.as_decoded_interface_error::<EstuaryOracleErrors>() {
                    Some(EstuaryOracleErrors::EstuaryOracleAlreadyFulfilled(_)) => {
                        Ok(Reported::AlreadyThere)
                    }
                    _ => Err(ReportError::Chain(e.to_string())),
                },
            };
        }
        let pending = {
            let mut next = self.next_nonce.lock().await;
            let nonce = match *next {
                Some(n) => n,
                None => self
                    .contract
                    .provider()
                    .get_transaction_count(self.operator)
                    .pending()
                    .await
                    .map_err(|e| ReportError::Chain(e.to_string()))?,
            };
            match call.nonce(nonce).send().await {
                Ok(pending) => {
                    *next = Some(nonce + 1);
                    pending
                }
                Err(e) => {
                    *next = None;
                    return Err(ReportError::Chain(e.to_string()));
                }
            }
        };
        let receipt = pending
            .with_required_confirmations(self.confirmations.max(1))
            .with_timeout(Some(Duration::from_secs(120)))
            .get_receipt()
            .await
            .map_err(|e| ReportError::Chain(e.to_string()))?;
        if !receipt.status() {
            // Mined but reverted: most likely another report got in first; the next attempt's
            // simulation tells.
            return Err(ReportError::Chain(format!(
                "report transaction {} reverted",
                receipt.transaction_hash
            )));
        }
        Ok(Reported::Sent { tx: format!("{:#x}", receipt.transaction_hash) })
    }
}

impl ChainReporter {
    /// The `EstuaryOracle` a request belongs to, `None` for `EstuaryPinning`.
    fn job_contract(
        &self,
        contract: &str,
    ) -> Result<Option<&EstuaryOracle::EstuaryOracleInstance<DynProvider>>, ReportError> {
        if contract.eq_ignore_ascii_case(&format!("{:#x}", self.contract.address())) {
            return Ok(None);
        }
        match &self.oracle {
            Some(o) if contract.eq_ignore_ascii_case(&format!("{:#x}", o.address())) => Ok(Some(o)),
            _ => Err(ReportError::Chain(format!("no contract {contract} to report to"))),
        }
    }
}

impl Reporter for ChainReporter {
    async fn report_pinned(
        &self,
        contract: &str,
        id: U256,
        piece_cid: Bytes,
        padded_size: u64,
    ) -> Result<Reported, ReportError> {
        match self.job_contract(contract)? {
            Some(oracle) => {
                let result = (piece_cid, padded_size).abi_encode_params();
                self.send(oracle.fulfill(id, true, result.into())).await
            }
            None => self.send(self.contract.reportPinned(id, piece_cid, padded_size)).await,
        }
    }

    async fn report_failed(
        &self,
        contract: &str,
        id: U256,
        reason: String,
    ) -> Result<Reported, ReportError> {
        match self.job_contract(contract)? {
            Some(oracle) => self.send(oracle.fulfill(id, false, reason.abi_encode().into())).await,
            None => self.send(self.contract.reportFailed(id, reason)).await,
        }
    }
}
