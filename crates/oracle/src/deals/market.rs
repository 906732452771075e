//! The market tracker's reads: what the storage market says of many deals, through
//! `DealStateView.getDeals` (`contracts/src/DealStateView.sol`), 200 deals per `eth_call` and a
//! few calls in flight. The same code reads Calibration, mainnet and the local chain (where
//! `MarketSimulator` answers for the market).
//!
//! The endpoint is not trusted: an answer that does not name the deals asked about, in order,
//! is an error, and an error is retried by the caller — never taken for a deal that is gone.

use alloy::{primitives::Address, providers::Provider};
use estuary_contracts::DealStateView;
use futures::{StreamExt, TryStreamExt};

use crate::domain::market::{MarketRead, MarketStatus};

/// Deals per `eth_call` (`DealStateView.MAX_DEALS`).
pub const PER_CALL: usize = 200;
/// Calls in flight at once.
const IN_FLIGHT: usize = 4;

/// Why a market read failed (the caller retries; nothing is concluded).
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// The call failed.
    #[error("DealStateView.getDeals: {0}")]
    Call(String),
    /// The answer is not one for the deals asked about.
    #[error("DealStateView answered {got} states for {asked} deals, or other deals")]
    Mismatched {
        /// Deals asked about.
        asked: usize,
        /// States answered.
        got: usize,
    },
}

fn status(code: u8) -> MarketStatus {
    match code {
        0 => MarketStatus::Published,
        1 => MarketStatus::Active,
        2 => MarketStatus::NotFound,
        3 => MarketStatus::Gone,
        _ => MarketStatus::Unknown,
    }
}

async fn read_chunk<P: Provider>(
    provider: &P,
    view: Address,
    ids: &[u64],
) -> Result<Vec<MarketRead>, MarketError> {
    let answer = DealStateView::new(view, provider)
        .getDeals(ids.to_vec())
        .call()
        .await
        .map_err(|e| MarketError::Call(e.to_string()))?;
    let mismatched = MarketError::Mismatched { asked: ids.len(), got: answer.states.len() };
    if answer.states.len() != ids.len()
        || answer.states.iter().zip(ids).any(|(s, id)| s.dealId != *id)
    {
        return Err(mismatched);
    }
    Ok(answer
        .states
        .iter()
        .map(|s| MarketRead {
            deal_id: s.dealId,
            status: status(s.status),
            exit_code: i64::try_from(s.exitCode).unwrap_or(i64::MAX),
            provider: s.provider,
            commp: s.commP.0,
            padded_size: s.pieceSize,
            start_epoch: s.start,
            end_epoch: s.start.saturating_add(s.duration),
            epoch: answer.epoch,
        })
        .collect())
}

/// What the market says of each of `ids`, in order.
pub async fn read<P: Provider + Clone + 'static>(
    provider: &P,
    view: Address,
    ids: &[u64],
) -> Result<Vec<MarketRead>, MarketError> {
    let chunks: Vec<Vec<u64>> = ids.chunks(PER_CALL).map(<[u64]>::to_vec).collect();
    let chunks: Vec<Vec<MarketRead>> = futures::stream::iter(chunks)
        .map(|chunk| {
            let provider = provider.clone();
            async move { read_chunk(&provider, view, &chunk).await }
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(chunks.into_iter().flatten().collect())
}
