//! The simulated sealer: the market model's real paths on the local chain (see
//! `docs/filecoin-model.md`, "Using the model from outside").
//!
//! - Publish: `MarketSimulator.publishStorageDeals([(proposal, 0xdead)])` from the miner's
//!   controlling address — Boost's contract-deal path (boost
//!   `storagemarket/contract_deal_monitor.go`: the proposal as the contract gives it, the
//!   provider set to this miner, a garbage `0xdead` signature that the market does not check for
//!   a contract client, which authenticates the deal itself).
//! - Prove, `activate_after` blocks after the deal was first seen published: a market deal of
//!   a `PerpetualStorage` slot with `activateDeals(sector, expiration, [deal])`; a `DealClient`
//!   deal with `proveCommitSectors3`, notifying the market and the client contract (as a
//!   DDO-aware provider does, so the contract records the activation).
//! - Direct deals (`--sim-direct`, for `DealClient` proposals: Curio's `mk20` DDO path): nothing
//!   is published; `activate_after` blocks after the hand-over the sector is proven with
//!   `proveCommitSectors3`, its piece notifying the client contract alone with the proposal's
//!   32-byte id as payload (curio `tasks/storage-market/mk20.go` sets the deal's
//!   `notification_address` and `notification_payload` on the piece's activation manifest;
//!   builtin-actors `actors/miner/src/notifications.rs` delivers it), and `DealClient` records
//!   the deal as `NO_DEAL`.
//! - Faults for tests, by piece CID: `fail` (refuse the piece: nothing published), `expire`
//!   (publish, never prove: the deal times out at its start epoch), `terminate` (prove, then
//!   terminate the sector once the deal is counted active: the market removes it at once).

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use alloy::primitives::Bytes;
use estuary_chain::TxError;
use estuary_contracts::{
    MARKET_ACTOR, MarketSimulator, MinerActorSimulator,
    market_simulator::MarketSimulator::MarketSimulatorErrors, masked_id_address,
};

use super::{Deal, SealError, SealJob, SealProgress, Sealer};
use crate::{chain::ChainClient, domain::WorkKind};

/// A fault to inject for a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Refuse the piece: nothing is published.
    Fail,
    /// Publish the deal and never prove it.
    Expire,
    /// Prove it, then terminate the sector once the deal is counted active (once).
    Terminate,
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(Self::Fail),
            "expire" => Ok(Self::Expire),
            "terminate" => Ok(Self::Terminate),
            other => Err(format!("unknown fault {other:?} (fail, expire, terminate)")),
        }
    }
}

/// Seals on the simulated market.
#[derive(Debug)]
pub struct SimulatedSealer {
    chain: ChainClient,
    activate_after: u64,
    faults: HashMap<String, Fault>,
    /// Whether proposals are made as direct deals (no market).
    direct: bool,
    /// The block each deal was first seen published at (activation counts from there); a
    /// direct deal's by its work's name.
    seen: Mutex<HashMap<String, u64>>,
    /// Pieces the `terminate` fault struck (it strikes once per piece).
    terminated: Mutex<HashSet<String>>,
}

/// The CBOR unsigned integer `n` (major type 0).
pub fn cbor_uint(n: u64) -> Vec<u8> {
    match n {
        0..=23 => vec![n as u8],
        24..=0xff => vec![0x18, n as u8],
        0x100..=0xffff => {
            let mut v = vec![0x19];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v
        }
        0x1_0000..=0xffff_ffff => {
            let mut v = vec![0x1a];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![0x1b];
            v.extend_from_slice(&n.to_be_bytes());
            v
        }
    }
}

/// The sector a direct deal is proven in (no market deal ID to name it by): from the
/// proposal's id, below 2^62.
fn direct_sector(job: &SealJob) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&job.proposal_id[..8]);
    u64::from_be_bytes(b) >> 2
}

fn tx_error(what: &str, e: &TxError) -> SealError {
    if let TxError::WouldRevert { source } = e
        && let Some(err) = source.as_decoded_interface_error::<MarketSimulatorErrors>()
    {
        return SealError::Fail(format!("{what}: the market refused: {err:?}"));
    }
    SealError::Retry(format!("{what}: {e}"))
}

impl SimulatedSealer {
    /// A sealer on `chain` proving deals `activate_after` blocks after publishing them, with
    /// `faults` by piece CID (v1 or v2 text).
    pub fn new(chain: ChainClient, activate_after: u64, faults: HashMap<String, Fault>) -> Self {
        Self {
            chain,
            activate_after,
            faults,
            direct: false,
            seen: Mutex::default(),
            terminated: Mutex::default(),
        }
    }

    /// Makes `DealClient` proposals direct deals (no market deal; the sector's proof notifies
    /// the client contract alone), as Curio's `mk20` DDO deals are.
    #[must_use]
    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Whether `activate_after` blocks have passed since `key` was first seen.
    async fn due(&self, key: String) -> Result<bool, SealError> {
        let head = self.chain.head().await.map_err(|e| SealError::Retry(e.to_string()))?;
        let first = *self.seen.lock().expect("not poisoned").entry(key).or_insert(head);
        Ok(head >= first.saturating_add(self.activate_after))
    }

    /// A direct deal: once due, the sector is proven with the client contract notified, its
    /// payload the proposal id; the activation is what the contract then records.
    async fn poll_direct(&self, job: &SealJob) -> Result<SealProgress, SealError> {
        let activated = || async {
            let (found, _) = self
                .chain
                .proposal_deal(job.contract, job.proposal_id)
                .await
                .map_err(|e| SealError::Retry(e.to_string()))?;
            Ok::<_, SealError>(found.filter(|(deal, at)| *deal == Deal::Direct && *at >= 0))
        };
        if activated().await?.is_some() {
            return Ok(SealProgress::Active { sector: Some(direct_sector(job)) });
        }
        if self.fault(job) == Some(Fault::Expire) || !self.due(job.work.clone()).await? {
            return Ok(SealProgress::Sealing);
        }
        let miner =
            MinerActorSimulator::new(masked_id_address(job.miner), self.chain.provider().clone());
        let piece = cid::Cid::try_from(job.piece_v1.as_str())
            .map_err(|e| SealError::Fail(format!("piece CID: {e}")))?;
        let activation = MinerActorSimulator::SectorActivation {
            sector: direct_sector(job),
            expiration: i64::try_from(job.end_epoch).unwrap_or(i64::MAX),
            pieces: vec![MinerActorSimulator::PieceActivation {
                pieceCid: Bytes::from(piece.to_bytes()),
                size: job.padded_size,
                notify: vec![MinerActorSimulator::Notification {
                    addr: Bytes::from(estuary_contracts::delegated_address(job.contract)),
                    payload: Bytes::copy_from_slice(job.proposal_id.as_slice()),
                }],
            }],
        };
        let key = vec![format!("activate/{}", job.work)];
        self.chain
            .tx()
            .send(miner.proveCommitSectors3(vec![activation], false), &key)
            .await
            .map_err(|e| tx_error("proving the sector", &e))?;
        match activated().await? {
            Some(_) => Ok(SealProgress::Active { sector: Some(direct_sector(job)) }),
            None => {
                Err(SealError::Fail("the client contract did not accept the activation".into()))
            }
        }
    }

    fn fault(&self, job: &SealJob) -> Option<Fault> {
        self.faults.get(&job.piece_v1).or_else(|| self.faults.get(&job.piece_v2)).copied()
    }

    async fn activate(&self, job: &SealJob, deal: u64) -> Result<SealProgress, SealError> {
        let miner =
            MinerActorSimulator::new(masked_id_address(job.miner), self.chain.provider().clone());
        let sector = deal;
        let expiration = i64::try_from(job.end_epoch).unwrap_or(i64::MAX);
        let key = vec![format!("activate/{}", job.work)];
        let receipt = match job.kind {
            WorkKind::Slot => {
                self.chain
                    .tx()
                    .send(miner.activateDeals(sector, expiration, vec![deal]), &key)
                    .await
            }
            WorkKind::Proposal => {
                let piece = cid::Cid::try_from(job.piece_v1.as_str())
                    .map_err(|e| SealError::Fail(format!("piece CID: {e}")))?;
                let payload = Bytes::from(cbor_uint(deal));
                let client = estuary_contracts::delegated_address(job.contract);
                let activation = MinerActorSimulator::SectorActivation {
                    sector,
                    expiration,
                    pieces: vec![MinerActorSimulator::PieceActivation {
                        pieceCid: Bytes::from(piece.to_bytes()),
                        size: job.padded_size,
                        notify: vec![
                            MinerActorSimulator::Notification {
                                addr: Bytes::from_static(&[0x00, 0x05]),
                                payload: payload.clone(),
                            },
                            MinerActorSimulator::Notification {
                                addr: Bytes::from(client),
                                payload,
                            },
                        ],
                    }],
                };
                self.chain.tx().send(miner.proveCommitSectors3(vec![activation], false), &key).await
            }
        };
        receipt.map_err(|e| tx_error("proving the sector", &e))?;
        // Whether the market took it is read back, as after a restart.
        let d = self.chain.market_deal(deal).await.map_err(|e| SealError::Retry(e.to_string()))?;
        if d.activated >= 0 {
            Ok(SealProgress::Active { sector: Some(d.sector) })
        } else {
            Err(SealError::Fail("the market did not activate the deal".into()))
        }
    }
}

impl Sealer for SimulatedSealer {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn hand_over(&self, job: &SealJob) -> Result<Deal, SealError> {
        if self.fault(job) == Some(Fault::Fail) {
            return Err(SealError::Fail("sealing failed (simulated fault)".into()));
        }
        if self.direct && job.kind == WorkKind::Proposal {
            let accepts = self
                .chain
                .accepts_direct(job.contract)
                .await
                .map_err(|e| SealError::Retry(e.to_string()))?;
            if accepts {
                // Nothing goes on chain before the proof; the activation is counted from now.
                self.due(job.work.clone()).await?;
                return Ok(Deal::Direct);
            }
            // Its owner takes no direct deals (`DealPolicy.acceptDirect`): a market deal.
            tracing::info!(work = %job.work, "the DealClient takes no direct deals: publishing a market deal");
        }
        let market = MarketSimulator::new(MARKET_ACTOR, self.chain.provider().clone());
        let batch = vec![MarketSimulator::ClientDealProposal {
            proposal: job.proposal.clone(),
            clientSignature: Bytes::from_static(&[0xde, 0xad]),
        }];
        let receipt = self
            .chain
            .tx()
            .send(market.publishStorageDeals(batch), &[format!("deal/{}", job.work)])
            .await
            .map_err(|e| tx_error("publishing the deal", &e))?;
        receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.address() == MARKET_ACTOR)
            .find_map(|l| l.log_decode::<MarketSimulator::DealPublished>().ok())
            .map(|l| Deal::Market(l.inner.data.id))
            .ok_or_else(|| SealError::Fail("the market published no deal".into()))
    }

    async fn poll(
        &self,
        job: &SealJob,
        deal: Deal,
        active: bool,
    ) -> Result<SealProgress, SealError> {
        const TERMINATED: &str = "sector terminated (simulated fault)";
        // A direct deal's sector termination reaches no contract (builtin-actors notifies the
        // market of terminations only), so the `terminate` fault does not apply to one.
        let Deal::Market(deal) = deal else { return self.poll_direct(job).await };
        let d = self.chain.market_deal(deal).await.map_err(|e| SealError::Retry(e.to_string()))?;
        if d.removed {
            // A deal of a struck piece was removed by its sector's termination: said so on
            // every poll, not only the first.
            let struck = self.terminated.lock().expect("not poisoned").contains(&job.piece_v2);
            let why = if struck { TERMINATED } else { "the market removed the deal" };
            return Ok(SealProgress::Gone(why.into()));
        }
        if d.activated >= 0 {
            let strike = active
                && self.fault(job) == Some(Fault::Terminate)
                && self.terminated.lock().expect("not poisoned").insert(job.piece_v2.clone());
            if strike {
                let miner = MinerActorSimulator::new(
                    masked_id_address(job.miner),
                    self.chain.provider().clone(),
                );
                self.chain
                    .tx()
                    .send(
                        miner.terminateSectors(vec![d.sector]),
                        &[format!("terminate/{}", job.work)],
                    )
                    .await
                    .map_err(|e| tx_error("terminating the sector", &e))?;
                return Ok(SealProgress::Gone(TERMINATED.into()));
            }
            return Ok(SealProgress::Active { sector: Some(d.sector) });
        }
        if self.fault(job) == Some(Fault::Expire) {
            return Ok(SealProgress::Sealing);
        }
        if !self.due(format!("deal/{deal}")).await? {
            return Ok(SealProgress::Sealing);
        }
        self.activate(job, deal).await
    }
}

#[cfg(test)]
mod tests {
    use super::cbor_uint;

    #[test]
    fn cbor_unsigned_integers() {
        assert_eq!(cbor_uint(0), [0x00]);
        assert_eq!(cbor_uint(23), [0x17]);
        assert_eq!(cbor_uint(24), [0x18, 24]);
        assert_eq!(cbor_uint(256), [0x19, 1, 0]);
        assert_eq!(cbor_uint(65_536), [0x1a, 0, 1, 0, 0]);
        assert_eq!(cbor_uint(1 << 32), [0x1b, 0, 0, 0, 1, 0, 0, 0, 0]);
    }
}
