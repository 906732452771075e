//! DataDAO funding: the oracle, as a DataDAO's operator, turns each CID the members accepted into
//! a funded `PerpetualStorage` order, with no manual step.
//!
//! ```text
//!   DataDAO.getProposal(id), id = first not settled ..= proposalCount
//!     Accepted ──► pinRequestOf(id) ──► that pin reported here? ──► fundOrder(id, carSize,
//!                  [{public-url}/piece/{pieceCid}]) (TxManager, key fund/<dao>/<id>)
//!     Funded   ──► orderOf(id) ──► deal_orders (backend datadao, open) ──► the deal watcher,
//!                  the keeper, /deals, the collection treat it like the operator's orders
//! ```
//!
//! The contract is the source of truth: a proposal is read again each round until it is
//! settled (funded, rejected, expired), so nothing depends on an event having been seen, and a
//! second `fundOrder` can never fund twice (the contract refuses it as `DataDAOWrongState`; the
//! next read finds the proposal funded and binds its order). The DAO pays its order from the
//! budget it reserved at acceptance, on the terms its members set: the oracle brings only the
//! CAR's size and where providers download it. Pins a DAO requests are never bucketed or
//! ordered with the operator's money (`store::datadao`).

use std::{collections::HashMap, time::Duration};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use estuary_chain::{TxError, TxManager};
use estuary_contracts::{
    DataDAO, EstuaryPinning, PerpetualStorage, data_dao::DataDAO::DataDAOErrors,
};
use estuary_piece::PieceCid;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    domain::{JobSource, now_ms},
    store::{DaoFunding, FundingState, PieceToOrder, Store, StoreError},
};

/// `DataDAO.State` as the contract numbers it.
mod state {
    pub const OPEN: u8 = 1;
    pub const ACCEPTED: u8 = 2;
    pub const FUNDED: u8 = 4;
}

/// Proposals read per round at most.
const READS: u64 = 256;
/// `fundOrder` is not sent this close to a proposal's `fundBy` (seconds): it would be mined
/// after it and refused.
const FUND_MARGIN_SECS: u64 = 60;

/// Why a round stopped (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum FundError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read of the chain failed.
    #[error("reading {what}: {reason}")]
    Read {
        /// What was read.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

fn read(what: &'static str) -> impl Fn(alloy::contract::Error) -> FundError {
    move |e| FundError::Read { what, reason: e.to_string() }
}

/// Calls `fundOrder` for a DataDAO's accepted proposals.
#[derive(Debug)]
pub struct DaoFunder {
    store: Store,
    tx: TxManager,
    dao: Address,
    perpetual: Address,
    /// The `EstuaryPinning` requests' source (the DAO's pins are its requests).
    pinning: JobSource,
    public_url: String,
    every: Duration,
}

/// What the funder remembers between rounds.
#[derive(Debug, Default)]
struct Progress {
    /// Proposals below this are settled.
    first: u64,
    /// Where the next round starts reading.
    next: u64,
    /// Whether the proposals funded before a restart were read from the database.
    loaded: bool,
    /// What was stored last for each proposal, so that an unchanged state is not written again
    /// (`Funded`: bound, nothing more to do).
    stored: HashMap<u64, (FundingState, Option<String>)>,
}

impl Progress {
    fn is_funded(&self, id: u64) -> bool {
        self.stored.get(&id).is_some_and(|(s, _)| *s == FundingState::Funded)
    }
}

impl DaoFunder {
    /// Funds the accepted proposals of `dao` (whose orders are at `perpetual`, its pins requests
    /// of `pinning`), sending with `tx`; providers download from `{public_url}/piece/{piece}`.
    pub fn new(
        store: Store,
        tx: TxManager,
        dao: Address,
        perpetual: Address,
        pinning: JobSource,
        public_url: &str,
        every: Duration,
    ) -> Self {
        let public_url = public_url.trim_end_matches('/').to_owned();
        Self { store, tx, dao, perpetual, pinning, public_url, every }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut progress = Progress { first: 1, next: 1, ..Progress::default() };
        loop {
            if let Err(e) = self.round(&mut progress).await {
                warn!(dao = %self.dao, error = %e, "DataDAO funder round failed; retried");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    async fn round(&self, progress: &mut Progress) -> Result<(), FundError> {
        if !progress.loaded {
            let dao = format!("{:#x}", self.dao);
            for id in self.store.dao_funded(&dao).await? {
                progress.stored.insert(id, (FundingState::Funded, None));
            }
            progress.loaded = true;
        }
        let provider = self.tx.provider();
        let dao = DataDAO::new(self.dao, provider.clone());
        let count = dao.proposalCount().call().await.map_err(read("proposalCount"))?;
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let now = provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| FundError::Read { what: "the head", reason: e.to_string() })?
            .map_or(0, |b| b.header.timestamp);
        // At most READS proposals a round, resuming where the last round stopped: proposals
        // never executed (any member may make many) cost a bounded read each round, not one
        // each per round.
        if progress.next < progress.first || progress.next > count {
            progress.next = progress.first;
        }
        let mut prefix = progress.next == progress.first;
        let mut id = progress.next;
        let mut reads = 0;
        while id <= count && reads < READS {
            let settled = if progress.is_funded(id) {
                true
            } else {
                reads += 1;
                match self.proposal(id, now, progress).await {
                    Ok(settled) => settled,
                    Err(e) => {
                        warn!(dao = %self.dao, proposal = id, error = %e, "DataDAO proposal not read; retried");
                        false
                    }
                }
            };
            if settled && prefix {
                progress.first = id + 1;
            } else {
                prefix = false;
            }
            id += 1;
        }
        progress.next = if id > count { progress.first } else { id };
        Ok(())
    }

    /// Proposal `id` read and acted on; whether it is settled (nothing more to do, ever).
    async fn proposal(
        &self,
        id: u64,
        now: u64,
        progress: &mut Progress,
    ) -> Result<bool, FundError> {
        let dao = DataDAO::new(self.dao, self.tx.provider());
        let p = dao.getProposal(U256::from(id)).call().await.map_err(read("getProposal"))?;
        Ok(match p.state {
            state::ACCEPTED => {
                self.accepted(id, p.fundBy, now, progress).await?;
                false
            }
            state::FUNDED => self.funded(id, p.fundBy, progress).await?,
            state::OPEN => false,
            // Rejected, expired: nothing to do, ever.
            _ => {
                if progress.stored.get(&id).is_some_and(|(s, _)| *s == FundingState::Waiting) {
                    let request = self.request_of(id).await?;
                    let why = "not funded by its fundBy: the DAO released its budget";
                    self.put(id, &request, p.fundBy, FundingState::Expired, why, progress).await?;
                }
                true
            }
        })
    }

    /// An accepted proposal: funded if its pin is reported here and its window is open.
    async fn accepted(
        &self,
        id: u64,
        fund_by: u64,
        now: u64,
        progress: &mut Progress,
    ) -> Result<(), FundError> {
        let dao = DataDAO::new(self.dao, self.tx.provider());
        let request = self.request_of(id).await?;
        if now > fund_by {
            // Expired on chain (anyone may): the DAO's budget is released and the pin
            // request cancelled, which unpins it here.
            let key = format!("expire/{:#x}/{id}", self.dao);
            let why = match self.tx.send(dao.expireProposal(U256::from(id)), &[key]).await {
                Ok(_) => "not funded by its fundBy: expired, the DAO's budget released".to_owned(),
                Err(e) => format!("past its fundBy; expiring it: {e}"),
            };
            return self.put(id, &request, fund_by, FundingState::Expired, &why, progress).await;
        }
        if now.saturating_add(FUND_MARGIN_SECS) > fund_by {
            // A transaction sent now would be mined past fundBy and refused.
            let why = "too close to its fundBy to be funded";
            return self.put(id, &request, fund_by, FundingState::Waiting, why, progress).await;
        }
        let Some(piece) = self.store.reported_piece(&self.pinning, &request).await? else {
            let why = "waiting for its pin to be reported";
            return self.put(id, &request, fund_by, FundingState::Waiting, why, progress).await;
        };
        // `fundOrder` takes the piece the pin was reported with on chain, and our CAR's size
        // and URL: with several operators, another's report may have won with another piece,
        // which our CAR would not match. Then the order is not ours to fund.
        if let (Some(address), Ok(cid)) =
            (self.pinning.contract().map(|(_, a)| a), piece.piece_cid.parse::<PieceCid>())
        {
            let pinning = EstuaryPinning::new(address, self.tx.provider());
            let reported = pinning
                .getRequest(U256::from_str_radix(&request, 10).unwrap_or_default())
                .call()
                .await
                .map_err(read("getRequest"))?;
            if reported.commP.0 != *cid.commp() || Some(reported.paddedSize) != cid.padded_size() {
                let why = "its pin was reported on chain with another piece than this oracle's \
                           (another operator's report): not funded from here";
                return self.put(id, &request, fund_by, FundingState::Waiting, why, progress).await;
            }
        }
        let origin = format!("{}/piece/{}", self.public_url, piece.piece_cid);
        let call = dao.fundOrder(U256::from(id), piece.car_size, vec![origin]);
        let key = format!("fund/{:#x}/{id}", self.dao);
        match self.tx.send(call, &[key]).await {
            Ok(receipt) => {
                let funded = receipt
                    .decoded_log::<DataDAO::OrderFunded>()
                    .filter(|l| l.address == self.dao)
                    .and_then(|l| u64::try_from(l.data.orderId).ok());
                let tx = format!("{:#x}", receipt.transaction_hash);
                match funded {
                    Some(order) => {
                        info!(dao = %self.dao, proposal = id, order, %tx, "DataDAO order funded");
                        self.bind(id, &request, fund_by, &piece, order, Some(&tx), progress).await
                    }
                    None => {
                        let why = format!("transaction {tx} funded no order");
                        self.put(id, &request, fund_by, FundingState::Waiting, &why, progress).await
                    }
                }
            }
            Err(TxError::WouldRevert { source }) => {
                // Funded meanwhile (a send before a restart): the next read binds it.
                let why = source
                    .as_decoded_interface_error::<DataDAOErrors>()
                    .map_or_else(|| source.to_string(), |e| format!("{e:?}"));
                warn!(dao = %self.dao, proposal = id, reason = %why, "fundOrder refused; retried");
                let why = format!("refused by the DAO: {why}");
                self.put(id, &request, fund_by, FundingState::Waiting, &why, progress).await
            }
            Err(e) => {
                warn!(dao = %self.dao, proposal = id, error = %e, "fundOrder not sent; retried");
                let why = format!("sending: {e}");
                self.put(id, &request, fund_by, FundingState::Waiting, &why, progress).await
            }
        }
    }

    /// A funded proposal: its order recorded, once. Whether it is settled.
    async fn funded(
        &self,
        id: u64,
        fund_by: u64,
        progress: &mut Progress,
    ) -> Result<bool, FundError> {
        let dao = DataDAO::new(self.dao, self.tx.provider());
        let order = dao.orderOf(U256::from(id)).call().await.map_err(read("orderOf"))?;
        let request = self.request_of(id).await?;
        let (Ok(order), Some(piece)) =
            (u64::try_from(order), self.store.reported_piece(&self.pinning, &request).await?)
        else {
            // Funded by another operator for a pin this oracle does not hold.
            progress.stored.insert(id, (FundingState::Funded, None));
            return Ok(true);
        };
        self.bind(id, &request, fund_by, &piece, order, None, progress).await?;
        Ok(true)
    }

    /// Records the order `fundOrder` made for proposal `id`.
    #[allow(clippy::too_many_arguments)]
    async fn bind(
        &self,
        id: u64,
        request: &str,
        fund_by: u64,
        piece: &PieceToOrder,
        order: u64,
        tx: Option<&str>,
        progress: &mut Progress,
    ) -> Result<(), FundError> {
        let cid: Option<PieceCid> = piece.piece_cid.parse().ok();
        let piece_v1 = cid.map(|c| c.to_v1().to_cid().to_bytes()).unwrap_or_default();
        let storage = PerpetualStorage::new(self.perpetual, self.tx.provider());
        let view = storage.getOrder(U256::from(order)).call().await.map_err(read("getOrder"))?;
        let head = self.tx.provider().get_block_number().await.unwrap_or(0);
        self.store
            .record_dao_order(
                self.perpetual,
                piece,
                &piece_v1,
                view.replicas,
                order,
                tx,
                head,
                now_ms(),
            )
            .await?;
        self.store
            .put_dao_funding(&DaoFunding {
                piece_cid: Some(piece.piece_cid.clone()),
                order_id: Some(order),
                tx_hash: tx.map(str::to_owned),
                ..self.funding(id, request, fund_by, FundingState::Funded, None)
            })
            .await?;
        progress.stored.insert(id, (FundingState::Funded, None));
        Ok(())
    }

    /// The pin request DAO proposal `id` made.
    async fn request_of(&self, id: u64) -> Result<String, FundError> {
        let dao = DataDAO::new(self.dao, self.tx.provider());
        let request = dao.pinRequestOf(U256::from(id)).call().await;
        Ok(request.map_err(read("pinRequestOf"))?.to_string())
    }

    /// Proposal `id`'s funding row as of now, with neither piece, order nor transaction.
    fn funding(
        &self,
        id: u64,
        request: &str,
        fund_by: u64,
        state: FundingState,
        why: Option<&str>,
    ) -> DaoFunding {
        DaoFunding {
            dao: format!("{:#x}", self.dao),
            proposal_id: id,
            request_id: request.to_owned(),
            fund_by,
            state,
            piece_cid: None,
            order_id: None,
            tx_hash: None,
            error: why.map(str::to_owned),
            updated_ms: now_ms(),
        }
    }

    /// Stores proposal `id`'s state and why, if either changed.
    async fn put(
        &self,
        id: u64,
        request: &str,
        fund_by: u64,
        state: FundingState,
        why: &str,
        progress: &mut Progress,
    ) -> Result<(), FundError> {
        let now = (state, Some(why.to_owned()));
        if progress.stored.get(&id) == Some(&now) {
            return Ok(());
        }
        self.store.put_dao_funding(&self.funding(id, request, fund_by, state, Some(why))).await?;
        progress.stored.insert(id, now);
        Ok(())
    }
}
