//! The contract reads and transactions the agent's steps need, through one
//! [`estuary_chain::TxManager`] (the miner's controlling key) and its provider.
//!
//! Every transaction is sent under a ledger key naming its effect (`claim/<work>`,
//! `publish/<work>`, …): the manager records it before sending, so a restart waits for it
//! instead of sending a second one. Each step also reads the contract first (has the slot been
//! claimed, the deal published, the replica started?) and sends nothing when it has.

use std::{collections::HashMap, sync::Arc};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionReceipt,
};
use estuary_chain::{TxError, TxManager};
use estuary_contracts::{
    DealClient, MARKET_ACTOR, MarketSimulator, PerpetualStorage, ProviderRegistry,
    deal_client::DealClient::DealClientErrors, perpetual::PerpetualStorage::PerpetualStorageErrors,
};
use tokio::sync::Mutex;

use crate::domain::{
    Deal, Offer, OfferSource,
    origin::http_urls,
    piece::ExpectedPiece,
    policy::{Closed, GIB},
};

/// A read from the chain failed (retryable: nothing was changed).
#[derive(Debug, thiserror::Error)]
#[error("reading {what}: {source}")]
pub struct ReadError {
    /// What was read.
    pub what: &'static str,
    /// The call's error.
    #[source]
    pub source: alloy::contract::Error,
}

fn read(what: &'static str) -> impl FnOnce(alloy::contract::Error) -> ReadError {
    move |source| ReadError { what, source }
}

/// The slot states `PerpetualStorage.SlotState` has.
pub mod slot_state {
    /// Not held by this provider.
    pub const OPEN: u8 = 0;
    /// Claimed; the deal is offered.
    pub const CLAIMED: u8 = 1;
    /// The market published the deal.
    pub const DEALT: u8 = 2;
    /// `publish` saw the deal active; the bounty streams.
    pub const ACTIVE: u8 = 3;
}

/// What the agent needs of an offer besides what the policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferDetails {
    /// The piece as the deal names it.
    pub piece: Option<ExpectedPiece>,
    /// Download locations as the contract gives them.
    pub origins: Vec<String>,
    /// The deal's start and end, when known now (proposals).
    pub start_epoch: Option<u64>,
    /// See `start_epoch`.
    pub end_epoch: Option<u64>,
    /// The provider collateral: a proposal's, or what a claim offers.
    pub collateral: U256,
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Claimed (now, or before: the slot is this provider's).
    Claimed {
        /// The claim's deadline (the deal's start).
        deadline: u64,
        /// The offer's id.
        proposal_id: B256,
    },
    /// The contract refused it: nothing is held.
    Refused(String),
}

/// The contracts, read and written for one miner.
#[derive(Debug, Clone)]
pub struct ChainClient {
    tx: TxManager,
    miner: u64,
    /// Provider collateral per padded GiB; `None`: the simulated market's minimum.
    collateral_per_gib: Option<U256>,
    claim_windows: Arc<Mutex<HashMap<Address, u64>>>,
}

/// The id `PerpetualStorage.claim` gives its offer (`orderId << 192 | provider << 128 |
/// deadline << 88 | collateral`).
pub fn slot_proposal_id(order: u64, miner: u64, deadline: u64, collateral: U256) -> B256 {
    let id = (U256::from(order) << 192)
        | (U256::from(miner) << 128)
        | (U256::from(deadline) << 88)
        | (collateral & ((U256::from(1) << 88) - U256::from(1)));
    B256::from(id)
}

/// The revert of a refused call, by its contract error's name.
pub fn revert_name(e: &TxError) -> Option<String> {
    let TxError::WouldRevert { source } = e else { return None };
    if let Some(err) = source.as_decoded_interface_error::<PerpetualStorageErrors>() {
        return Some(format!("{err:?}"));
    }
    if let Some(err) = source.as_decoded_interface_error::<DealClientErrors>() {
        return Some(format!("{err:?}"));
    }
    if let Some(err) = source.as_decoded_interface_error::<
        estuary_contracts::provider_registry::ProviderRegistry::ProviderRegistryErrors,
    >() {
        return Some(format!("{err:?}"));
    }
    if let Some(err) = source
        .as_decoded_interface_error::<estuary_contracts::market_simulator::MarketSimulator::MarketSimulatorErrors>()
    {
        return Some(format!("{err:?}"));
    }
    Some(source.to_string())
}

impl ChainClient {
    /// The contracts for `miner`, sending through `tx`.
    pub fn new(tx: TxManager, miner: u64, collateral_per_gib: Option<U256>) -> Self {
        Self { tx, miner, collateral_per_gib, claim_windows: Arc::default() }
    }

    /// The provider (every endpoint).
    pub fn provider(&self) -> &DynProvider {
        self.tx.provider()
    }

    /// The transaction manager.
    pub fn tx(&self) -> &TxManager {
        &self.tx
    }

    /// The miner.
    pub fn miner(&self) -> u64 {
        self.miner
    }

    /// The chain's head.
    pub async fn head(&self) -> Result<u64, ReadError> {
        self.provider().get_block_number().await.map_err(|e| ReadError {
            what: "the head",
            source: alloy::contract::Error::TransportError(e),
        })
    }

    fn perpetual(
        &self,
        contract: Address,
    ) -> PerpetualStorage::PerpetualStorageInstance<DynProvider> {
        PerpetualStorage::new(contract, self.provider().clone())
    }

    fn deal_client(&self, contract: Address) -> DealClient::DealClientInstance<DynProvider> {
        DealClient::new(contract, self.provider().clone())
    }

    /// `PerpetualStorage.claimWindow` (immutable: read once).
    pub async fn claim_window(&self, contract: Address) -> Result<u64, ReadError> {
        if let Some(w) = self.claim_windows.lock().await.get(&contract) {
            return Ok(*w);
        }
        let w = self.perpetual(contract).claimWindow().call().await.map_err(read("claimWindow"))?;
        self.claim_windows.lock().await.insert(contract, w);
        Ok(w)
    }

    /// The provider collateral a claim of a `padded`-byte piece offers.
    pub async fn collateral_for(&self, padded: u64) -> Result<U256, ReadError> {
        if let Some(per_gib) = self.collateral_per_gib {
            return Ok((per_gib * U256::from(padded)).div_ceil(U256::from(GIB)));
        }
        MarketSimulator::new(MARKET_ACTOR, self.provider().clone())
            .minProviderCollateral(padded)
            .call()
            .await
            .map_err(read("the simulated market's minimum collateral (set --provider-collateral-per-gib on a real chain)"))
    }

    /// An order's open slot as an offer for this miner.
    pub async fn slot_offer(
        &self,
        contract: Address,
        order: u64,
    ) -> Result<(Offer, OfferDetails), ReadError> {
        let ps = self.perpetual(contract);
        let id = U256::from(order);
        let view = match ps.getOrder(id).call().await {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.as_decoded_interface_error::<PerpetualStorageErrors>(),
                    Some(PerpetualStorageErrors::PerpetualStorageNoOrder(_))
                ) =>
            {
                return Ok(unknown(OfferSource::Slot { contract, order }));
            }
            Err(e) => return Err(read("getOrder")(e)),
        };
        let slot = ps.getSlot(id, self.miner).call().await.map_err(read("getSlot"))?;
        let excluded = ps.excluded(id, self.miner).call().await.map_err(read("excluded"))?;
        let bounty: U256 = ps.currentBounty(id).call().await.map_err(read("currentBounty"))?.to();
        let window = self.claim_window(contract).await?;
        let open = if view.cancelled {
            Err(Closed::Cancelled)
        } else if slot.state != slot_state::OPEN {
            Err(Closed::Held)
        } else if excluded {
            Err(Closed::Excluded)
        } else if view.suspended {
            Err(Closed::Suspended)
        } else if view.inUse >= view.replicas {
            Err(Closed::Full)
        } else if U256::from(view.balance) < bounty {
            Err(Closed::Underfunded)
        } else {
            Ok(())
        };
        let piece = ExpectedPiece::from_v1_bytes(&view.pieceCid, view.paddedSize, view.carSize);
        let v2 = piece.map(|p| p.url_cid()).unwrap_or_default();
        let offer = Offer {
            source: OfferSource::Slot { contract, order },
            client: view.client,
            named_provider: None,
            piece_size: view.paddedSize,
            car_size: view.carSize,
            verified: view.verified,
            total_price: bounty,
            term: view.term,
            time_to_start: window,
            remaining: window.saturating_add(view.term),
            open,
            has_location: !http_urls(&view.origins, &v2).is_empty(),
            failed_before: None,
        };
        let collateral =
            if open.is_ok() { self.collateral_for(view.paddedSize).await? } else { U256::ZERO };
        Ok((
            offer,
            OfferDetails {
                piece,
                origins: view.origins,
                start_epoch: None,
                end_epoch: None,
                collateral,
            },
        ))
    }

    /// A proposal as an offer for this miner.
    pub async fn proposal_offer(
        &self,
        contract: Address,
        id: B256,
    ) -> Result<(Offer, OfferDetails), ReadError> {
        let view = match self.deal_client(contract).getProposal(id).call().await {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.as_decoded_interface_error::<DealClientErrors>(),
                    Some(DealClientErrors::DealClientUnknownProposal(_))
                ) =>
            {
                return Ok(unknown(OfferSource::Proposal { contract, id }));
            }
            Err(e) => return Err(read("getProposal")(e)),
        };
        let now = self.head().await?;
        let r = &view.request;
        let start = u64::try_from(r.startEpoch).unwrap_or(0);
        let end = u64::try_from(r.endEpoch).unwrap_or(0);
        let held = view.deals.iter().any(|d| d.provider == self.miner);
        let open = if view.cancelled {
            Err(Closed::Cancelled)
        } else if held {
            Err(Closed::Held)
        } else if view.deals.len() >= usize::from(r.replicas.max(1)) {
            Err(Closed::Full)
        } else if now > start {
            Err(Closed::StartPassed)
        } else {
            Ok(())
        };
        let piece = ExpectedPiece::from_v1_bytes(&r.pieceCid, r.pieceSize, r.carSize);
        let v2 = piece.map(|p| p.url_cid()).unwrap_or_default();
        let origins = vec![r.locationRef.clone()];
        let offer = Offer {
            source: OfferSource::Proposal { contract, id },
            client: view.proposer,
            named_provider: (r.provider != 0).then_some(r.provider),
            piece_size: r.pieceSize,
            car_size: r.carSize,
            verified: r.verifiedDeal,
            total_price: r
                .storagePricePerEpoch
                .saturating_mul(U256::from(end.saturating_sub(start))),
            term: end.saturating_sub(start),
            time_to_start: start.saturating_sub(now),
            remaining: end.saturating_sub(now),
            open,
            has_location: !http_urls(&origins, &v2).is_empty(),
            failed_before: None,
        };
        Ok((
            offer,
            OfferDetails {
                piece,
                origins,
                start_epoch: Some(start),
                end_epoch: Some(end),
                collateral: r.providerCollateral,
            },
        ))
    }

    /// This miner's slot of an order.
    pub async fn slot(
        &self,
        contract: Address,
        order: u64,
    ) -> Result<PerpetualStorage::SlotView, ReadError> {
        self.perpetual(contract)
            .getSlot(U256::from(order), self.miner)
            .call()
            .await
            .map_err(read("getSlot"))
    }

    /// Whether the order's client marked this miner's replica lost (`markLost`): it may not
    /// claim the order again.
    pub async fn excluded(&self, contract: Address, order: u64) -> Result<bool, ReadError> {
        self.perpetual(contract)
            .excluded(U256::from(order), self.miner)
            .call()
            .await
            .map_err(read("excluded"))
    }

    /// An order's replica term.
    pub async fn order_term(&self, contract: Address, order: u64) -> Result<u64, ReadError> {
        Ok(self
            .perpetual(contract)
            .getOrder(U256::from(order))
            .call()
            .await
            .map_err(read("getOrder"))?
            .term)
    }

    /// This miner's deal for a proposal, if the contract recorded one (published by the
    /// market, or a direct deal's activation): (the deal, activation epoch or -1); and whether
    /// the proposal is cancelled.
    pub async fn proposal_deal(
        &self,
        contract: Address,
        id: B256,
    ) -> Result<(Option<(Deal, i64)>, bool), ReadError> {
        let view =
            self.deal_client(contract).getProposal(id).call().await.map_err(read("getProposal"))?;
        let deal = view
            .deals
            .iter()
            .find(|d| d.provider == self.miner)
            .map(|d| (Deal::from_record(d.dealId), d.activated));
        Ok((deal, view.cancelled))
    }

    /// Whether a `DealClient` takes direct deals (`DealPolicy.acceptDirect`; one deployed
    /// before that flag did).
    pub async fn accepts_direct(&self, contract: Address) -> Result<bool, ReadError> {
        let answer =
            self.deal_client(contract).dealPolicy().call_raw().await.map_err(read("dealPolicy"))?;
        let policy = estuary_contracts::decode_deal_policy(&answer)
            .map_err(|e| read("dealPolicy")(alloy::contract::Error::AbiError(e.into())))?;
        Ok(policy.acceptDirect)
    }

    /// A proposal's number in its `DealClient` (Curio's `market_deal_id`).
    pub async fn proposal_number(&self, contract: Address, id: B256) -> Result<u64, ReadError> {
        self.deal_client(contract).proposalNumber(id).call().await.map_err(read("proposalNumber"))
    }

    /// The deal proposal CBOR a slot's claim offered.
    pub async fn slot_proposal(
        &self,
        contract: Address,
        proposal_id: B256,
    ) -> Result<Bytes, ReadError> {
        self.perpetual(contract)
            .getDealProposal(proposal_id)
            .call()
            .await
            .map_err(read("getDealProposal"))
    }

    /// A proposal's deal proposal CBOR with this miner as provider (what Boost publishes).
    pub async fn proposal_cbor(&self, contract: Address, id: B256) -> Result<Bytes, ReadError> {
        let dc = self.deal_client(contract);
        let mut request = dc.getProposal(id).call().await.map_err(read("getProposal"))?.request;
        request.provider = self.miner;
        dc.encodeProposal(request).call().await.map_err(read("encodeProposal"))
    }

    /// A deal as the simulated market holds it (local chain only).
    pub async fn market_deal(&self, deal_id: u64) -> Result<MarketSimulator::SimDeal, ReadError> {
        MarketSimulator::new(MARKET_ACTOR, self.provider().clone())
            .deal(deal_id)
            .call()
            .await
            .map_err(read("the simulated market's deal"))
    }

    /// Claims a slot of `order` offering `collateral`, with the bond (and a margin for the
    /// bounty's rise until the block it lands in: the excess waits in `withdrawable`).
    pub async fn claim(
        &self,
        contract: Address,
        order: u64,
        collateral: U256,
        key: String,
    ) -> Result<ClaimOutcome, TxError> {
        let ps = self.perpetual(contract);
        let bond: U256 = ps
            .bondFor(U256::from(order))
            .call()
            .await
            .map_err(|source| TxError::WouldRevert { source })?
            .to();
        let value = bond + bond / U256::from(20) + U256::from(1);
        let call = ps.claim(U256::from(order), self.miner, collateral).value(value);
        match self.tx.send(call, &[key]).await {
            Ok(receipt) => {
                let claimed = receipt
                    .decoded_log::<PerpetualStorage::SlotClaimed>()
                    .filter(|l| l.address == contract)
                    .ok_or(TxError::Reverted { tx: receipt.transaction_hash })?;
                Ok(ClaimOutcome::Claimed {
                    deadline: claimed.data.deadline,
                    proposal_id: claimed.data.proposalId,
                })
            }
            Err(e) => match &e {
                TxError::WouldRevert { source } => {
                    match source.as_decoded_interface_error::<PerpetualStorageErrors>() {
                        Some(
                            err @ (PerpetualStorageErrors::PerpetualStorageNoOpenSlot(_)
                            | PerpetualStorageErrors::PerpetualStorageOrderClosed(_)
                            | PerpetualStorageErrors::PerpetualStorageNoOrder(_)
                            | PerpetualStorageErrors::PerpetualStorageUnderfunded(_)
                            | PerpetualStorageErrors::PerpetualStorageNotController(_)
                            | PerpetualStorageErrors::PerpetualStorageBadCollateral(_)),
                        ) => Ok(ClaimOutcome::Refused(format!("claim refused: {err:?}"))),
                        _ => Err(e),
                    }
                }
                _ => Err(e),
            },
        }
    }

    /// `publish(order, miner)`: starts the replica's bounty. Returns the receipt.
    pub async fn publish(
        &self,
        contract: Address,
        order: u64,
        key: String,
    ) -> Result<Box<TransactionReceipt>, TxError> {
        self.tx.send(self.perpetual(contract).publish(U256::from(order), self.miner), &[key]).await
    }

    /// Whether `publish(order, miner)` would go through now (the deal is active).
    pub async fn publish_would_succeed(&self, contract: Address, order: u64) -> bool {
        self.perpetual(contract)
            .publish(U256::from(order), self.miner)
            .from(self.tx.sender())
            .call()
            .await
            .is_ok()
    }

    /// `collect(order, miner)`: returns the bounty paid by it. Nothing is sent while nothing
    /// has accrued (paying the miner costs gas that a simulation with nothing due would not
    /// have counted).
    pub async fn collect(
        &self,
        contract: Address,
        order: u64,
        key: String,
    ) -> Result<U256, TxError> {
        let accrued = self
            .perpetual(contract)
            .accrued(U256::from(order), self.miner)
            .call()
            .await
            .map_err(|source| TxError::WouldRevert { source })?;
        if accrued.is_zero() {
            return Ok(U256::ZERO);
        }
        let receipt = self
            .tx
            .send(self.perpetual(contract).collect(U256::from(order), self.miner), &[key])
            .await?;
        Ok(bounty_paid(&receipt, contract))
    }

    /// `reopen(order, miner)`: ends this miner's slot (paid up to what its deal covered, and
    /// the keeper's tip to this agent). Returns the bounty paid by it.
    pub async fn reopen(
        &self,
        contract: Address,
        order: u64,
        key: String,
    ) -> Result<U256, TxError> {
        let receipt = self
            .tx
            .send(self.perpetual(contract).reopen(U256::from(order), self.miner), &[key])
            .await?;
        Ok(bounty_paid(&receipt, contract))
    }

    /// The retrieval URL this miner has in `registry` ("" if none).
    pub async fn registered_url(&self, registry: Address) -> Result<String, ReadError> {
        ProviderRegistry::new(registry, self.provider())
            .urlOf(self.miner)
            .call()
            .await
            .map_err(read("the registered URL"))
    }

    /// Registers `url` as this miner's retrieval URL in `registry`.
    pub async fn register_url(&self, registry: Address, url: &str) -> Result<(), TxError> {
        let registry_at = ProviderRegistry::new(registry, self.provider().clone());
        let call = registry_at.setUrl(self.miner, url.to_owned());
        // The URL in the key: a transaction left pending for another URL is not taken for it.
        let hash = alloy::primitives::keccak256(url.as_bytes());
        let key =
            format!("register/{registry:#x}/{}/{}", self.miner, alloy::hex::encode(&hash[..8]));
        self.tx.send(call, &[key]).await.map(|_| ())
    }

    /// What `PerpetualStorage` holds for this agent's account (excess bonds, tips).
    pub async fn withdrawable(&self, contract: Address) -> Result<U256, ReadError> {
        self.perpetual(contract)
            .withdrawable(self.tx.sender())
            .call()
            .await
            .map_err(read("withdrawable"))
    }

    /// Takes this agent's excess bonds and tips out of `PerpetualStorage`.
    pub async fn withdraw(&self, contract: Address, key: String) -> Result<(), TxError> {
        self.tx.send(self.perpetual(contract).withdraw(), &[key]).await.map(|_| ())
    }
}

/// The bounty a receipt paid this contract's provider (`BountyPaid` logs).
fn bounty_paid(receipt: &TransactionReceipt, contract: Address) -> U256 {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.address() == contract)
        .filter_map(|l| l.log_decode::<PerpetualStorage::BountyPaid>().ok())
        .fold(U256::ZERO, |sum, l| sum.saturating_add(l.inner.data.amount))
}

/// The offer of something that does not exist (anymore).
fn unknown(source: OfferSource) -> (Offer, OfferDetails) {
    (
        Offer {
            source,
            client: Address::ZERO,
            named_provider: None,
            piece_size: 0,
            car_size: 0,
            verified: false,
            total_price: U256::ZERO,
            term: 0,
            time_to_start: 0,
            remaining: 0,
            open: Err(Closed::Unknown),
            has_location: false,
            failed_before: None,
        },
        OfferDetails {
            piece: None,
            origins: Vec::new(),
            start_epoch: None,
            end_epoch: None,
            collateral: U256::ZERO,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_id_is_the_contracts() {
        // PerpetualStorage: (orderId << 192) | (provider << 128) | (deadline << 88) | collateral.
        let id = slot_proposal_id(1, 1001, 0x1234, U256::from(77));
        let v = U256::from_be_bytes(id.0);
        assert_eq!(v >> 192, U256::from(1));
        assert_eq!((v >> 128) & U256::from(u64::MAX), U256::from(1001));
        assert_eq!((v >> 88) & U256::from(0xff_ffff_ffffu64), U256::from(0x1234));
        assert_eq!(v & U256::from(u64::MAX), U256::from(77));
    }
}
