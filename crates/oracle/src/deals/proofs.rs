//! Deal reports: once a bucket's aggregate is in a deal (published or active), every pin request
//! of `EstuaryPinning` inside it is reported to the contract with its FRC-0058 inclusion proof
//! (`reportDeal`), which the contract checks on chain against the deal's piece as the market
//! gives it (`PoDSI`). A client, or any contract, can then see its pin in a Filecoin deal without
//! trusting the oracle.
//!
//! A direct deal (made without the market for a `DealClient` proposal, Curio DDO) has no market
//! deal to name: it is reported with `reportDirectDeal(client, proposal, provider, pins)`, which
//! the contract checks against the client's record of the activation and the proposal's piece.
//! It is kept in `deal_reports` under its probe key ([`crate::domain::deal::direct_probe_key`]),
//! which no market deal id reaches.
//!
//! ```text
//!   closed buckets with an open order ──► replicas with a deal id, published or active,
//!                                         or active direct deals
//!   ──► not yet in deal_reports ──► Aggregate::build (the bucket's pieces) ──► proofs
//!   ──► reportDeal(deal, provider, aggregate, pins) or reportDirectDeal(client, proposal,
//!       provider, pins), in batches (TxManager, key per batch)
//!   ──► deal_reports
//! ```
//!
//! The contract skips a pin already recorded for the deal, so a report sent again after a
//! crash costs gas only, never a wrong record. A report the contract refuses (the deal not in
//! the market yet, another piece in it) is tried again a minute later.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use alloy::primitives::{Address, B256, FixedBytes};
use estuary_chain::TxManager;
use estuary_contracts::pinning::{EstuaryPinning, PoDSI};
use estuary_piece::aggregate::{Aggregate, MerkleProof};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    deals::buckets::{BucketError, aggregate_of},
    domain::{
        JobSource,
        deal::{Backend, OrderState, Replica, ReplicaState},
        now_ms,
    },
    pipeline::report::cid_hash,
    store::{Store, StoreError},
};

/// Pins per `reportDeal` transaction (each proof costs up to ~33k gas).
const PINS_PER_REPORT: usize = 64;
/// Buckets read per query.
const BUCKET_PAGE: u64 = 1000;
/// A refused report is tried again after this long.
const RETRY: Duration = Duration::from_secs(60);

/// A deal holding a bucket's aggregate, as its report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldIn {
    /// A market deal, by its id.
    Market(u64),
    /// A direct deal: `client`'s `proposal`, activated without the market; `key` is the probe
    /// key it is recorded under.
    Direct { client: Address, proposal: B256, key: u64 },
}

impl HeldIn {
    /// What the deal is recorded under in `deal_reports` (and remembered as refused by).
    fn key(self) -> u64 {
        match self {
            Self::Market(id) => id,
            Self::Direct { key, .. } => key,
        }
    }

    /// The deal `replica` of an order of `backend` at `contract` stands for, if there is one to
    /// report: a market deal published or active, or an active direct deal of a `DealClient`
    /// proposal that nothing refuted, its term nor its probes (the only sign of a direct
    /// deal's sector ending early).
    fn of(replica: &Replica, backend: Backend, contract: Address) -> Option<Self> {
        if let Some(id) = replica.deal_id {
            return matches!(replica.state, ReplicaState::Published | ReplicaState::Active)
                .then_some(Self::Market(id));
        }
        let direct = replica.direct.filter(|_| replica.is_direct() && replica.counts())?;
        let proposal = direct.proposal.filter(|_| backend == Backend::Contract)?;
        Some(Self::Direct { client: contract, proposal, key: direct.key })
    }
}

/// Why a round stopped (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored bucket cannot be aggregated (a corrupt row).
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// Reports deals holding bucketed pins to `EstuaryPinning`.
#[derive(Debug)]
pub struct DealReporter {
    store: Store,
    tx: TxManager,
    pinning: Address,
    source: JobSource,
    every: Duration,
}

impl DealReporter {
    /// Reports to `pinning` (whose requests are jobs of `source`), sending with `tx`.
    pub fn new(
        store: Store,
        tx: TxManager,
        pinning: Address,
        source: JobSource,
        every: Duration,
    ) -> Self {
        Self { store, tx, pinning, source, every }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut refused: HashMap<u64, Instant> = HashMap::new();
        loop {
            if let Err(e) = self.round(&mut refused).await {
                warn!(error = %e, "deal reporter round failed; retried");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
        }
    }

    async fn round(&self, refused: &mut HashMap<u64, Instant>) -> Result<(), ProofError> {
        let contract = format!("{:#x}", self.pinning);
        let done: HashSet<u64> = self.store.reported_deals(&contract).await?.into_iter().collect();
        refused.retain(|_, at| at.elapsed() < RETRY);
        // Every bucket, a page at a time (not only the newest: a late or replacement deal of
        // an old bucket is reported too); only those with an order can hold deals.
        let mut buckets = Vec::new();
        for page in 0.. {
            let got = self.store.buckets(BUCKET_PAGE, page * BUCKET_PAGE).await?;
            let last = (got.len() as u64) < BUCKET_PAGE;
            buckets.extend(
                got.into_iter()
                    .filter(|b| b.order_state.as_deref() == Some(OrderState::Open.as_str())),
            );
            if last {
                break;
            }
        }
        for bucket in buckets {
            let (Some(aggregate), Some(deal_size)) = (&bucket.piece_cid, bucket.deal_size) else {
                continue;
            };
            let deals: Vec<(HeldIn, u64)> = self
                .store
                .deals(Some(aggregate), 10, 0)
                .await?
                .iter()
                .flat_map(|o| o.replicas.iter().map(move |r| (&o.order, r)))
                .filter_map(|(o, r)| Some((HeldIn::of(r, o.backend, o.contract)?, r.provider)))
                .filter(|(d, _)| !done.contains(&d.key()) && !refused.contains_key(&d.key()))
                .collect();
            if deals.is_empty() {
                continue;
            }
            let pieces = self.store.bucket_pieces(bucket.id).await?;
            let agg = aggregate_of(bucket.id, &pieces, deal_size)?;
            let requests = self.store.bucket_requests(bucket.id, &self.source).await?;
            let mut pins = Vec::with_capacity(requests.len());
            for r in &requests {
                let Some(n) = pieces.iter().position(|p| p.piece_cid == r.piece_cid) else {
                    continue;
                };
                let (Some(id), Some(proof)) = (r.key.id.as_request(), agg.proof(n)) else {
                    continue;
                };
                pins.push(EstuaryPinning::PinInclusion {
                    requestId: id,
                    cidHash: cid_hash(&r.cid),
                    commP: FixedBytes(agg.segments[n].commp),
                    paddedSize: r.padded_size,
                    proof: PoDSI::InclusionProof {
                        proofSubtree: proof_data(&proof.subtree),
                        proofIndex: proof_data(&proof.index),
                    },
                });
            }
            for (deal, provider) in deals {
                match self.report(deal, provider, &agg, &pins).await {
                    Ok(tx) => {
                        info!(
                            ?deal,
                            provider,
                            bucket = bucket.id,
                            pins = pins.len(),
                            "deal reported with proofs"
                        );
                        let count = pins.len() as u64;
                        let tx = tx.map(|t| format!("{t:#x}"));
                        self.store
                            .deal_reported(
                                &contract,
                                (deal.key(), provider),
                                bucket.id,
                                count,
                                tx.as_deref(),
                                now_ms(),
                            )
                            .await?;
                    }
                    Err(e) => {
                        warn!(?deal, provider, error = %e, "deal report refused; tried again later");
                        refused.insert(deal.key(), Instant::now());
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends the report of `deal` in batches; the last transaction's hash.
    async fn report(
        &self,
        deal: HeldIn,
        provider: u64,
        agg: &Aggregate,
        pins: &[EstuaryPinning::PinInclusion],
    ) -> Result<Option<B256>, estuary_chain::TxError> {
        let pinning = EstuaryPinning::new(self.pinning, self.tx.provider());
        let mut last = None;
        for (k, batch) in pins.chunks(PINS_PER_REPORT).enumerate() {
            let key = format!("dealreport/{:#x}/{}/{k}", self.pinning, deal.key());
            let pins = batch.to_vec();
            let receipt = match deal {
                HeldIn::Market(deal_id) => {
                    let report = EstuaryPinning::DealReport {
                        dealId: deal_id,
                        provider,
                        aggregateCommP: FixedBytes(agg.root),
                        aggregateSize: agg.deal_size,
                        pins,
                    };
                    self.tx.send(pinning.reportDeal(report), &[key]).await?
                }
                HeldIn::Direct { client, proposal, .. } => {
                    let report =
                        EstuaryPinning::DirectDealReport { client, proposal, provider, pins };
                    self.tx.send(pinning.reportDirectDeal(report), &[key]).await?
                }
            };
            last = Some(receipt.transaction_hash);
        }
        Ok(last)
    }
}

fn proof_data(proof: &MerkleProof) -> PoDSI::ProofData {
    PoDSI::ProofData {
        index: proof.index,
        path: proof.path.iter().map(|n| B256::from(*n)).collect(),
    }
}
