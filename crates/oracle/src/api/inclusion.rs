//! `GET /inclusion/{piece}`: what a client needs to see for itself that its piece is inside the
//! Filecoin deals that hold it, rather than take this oracle's word for it.
//!
//! A pin's piece (v2 piece CID) is either its deals' own piece, or a data segment of its
//! bucket's FRC-0058 aggregate, which the deals hold. For the second, the answer carries the
//! segment's inclusion proof (the subtree from the piece to the aggregate's root, and the path
//! of its entry in the aggregate's index), cut from the bucket's tree
//! (`api/aggregate.rs`, `Trees`), in the shape of FRC-0058's Solidity types: a client checks it
//! in the browser (`estuary-piece`'s `verify`, compiled to wasm) and against each deal's piece
//! as the storage market actor gives it (`DealStateView.checkInclusion`, PoDSI on chain).
//!
//! Public, as `/piece` is: the pieces, the aggregate and its deals are on chain already (and
//! `GET /buckets?id=` lists a bucket's pieces). A request holds one of the gateway's slots; a
//! bucket's tree is built from its rows by one request at a time (another is answered 503 at
//! once), checked against the aggregate recorded, and kept while used (`Trees`: 256 MiB, 64
//! trees at most). A pin split across pieces has no proof here: each part is its deals' own
//! piece (`/inclusion/{part}`).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use estuary_piece::{PieceCid, aggregate::MerkleProof};
use serde::Serialize;

use super::{ApiError, ApiState, DealView, deal_views};
use crate::blockstore::Blockstore;

/// Deals (orders) read per piece: its own and its aggregate's.
const ORDERS: u64 = 10;

/// A piece's inclusion in its deals.
#[derive(Debug, Serialize)]
pub(super) struct InclusionBody {
    /// The piece (v2 piece CID).
    piece_cid: String,
    /// Its commitment (the 32-byte digest, `0x` hex): FRC-0058's `commPc`.
    comm_pc: String,
    /// Its padded size: `sizePc`.
    size_pc: u64,
    /// Its place in its bucket's aggregate, with the proof; none until the bucket closes, and
    /// for a piece that is its deals' own.
    aggregate: Option<AggregateInclusion>,
    /// The deals holding it, its aggregate's and its own: each names its `deal_piece_cid`.
    deals: Vec<DealView>,
}

/// A data segment's place in an aggregate, and its FRC-0058 proof.
#[derive(Debug, Serialize)]
struct AggregateInclusion {
    /// The aggregate (v2 piece CID): the deals' piece.
    piece_cid: String,
    /// Its commitment: `commPa`.
    comm_pa: String,
    /// Its padded size (the deal's): `sizePa`.
    size_pa: u64,
    /// Where the piece starts in it, padded bytes.
    offset: u64,
    /// From the piece's root to the aggregate's root (`proofSubtree`).
    proof_subtree: ProofView,
    /// From the piece's index entry to the aggregate's root (`proofIndex`).
    proof_index: ProofView,
}

/// A Merkle path as FRC-0058's `ProofData`: the node's index at its level, siblings bottom up.
#[derive(Debug, Serialize)]
struct ProofView {
    index: u64,
    path: Vec<String>,
}

impl From<&MerkleProof> for ProofView {
    fn from(p: &MerkleProof) -> Self {
        Self { index: p.index, path: p.path.iter().map(alloy::hex::encode_prefixed).collect() }
    }
}

/// `GET /inclusion/{piece}` (see the module's doc).
pub(super) async fn inclusion<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(piece): Path<String>,
) -> Result<Json<InclusionBody>, ApiError> {
    let _slot =
        Arc::clone(&st.policy.gateway_requests).try_acquire_owned().map_err(|_| ApiError::Busy)?;
    let parsed: PieceCid = piece
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("not a piece CID: {piece:?}: {e}")))?;
    let Some(size_pc) = parsed.padded_size() else {
        return Err(ApiError::BadRequest(
            "a v1 piece CID does not carry the piece size: use the v2 piece CID".into(),
        ));
    };
    let text = parsed.to_string();
    let mut orders = st.store.deals(Some(&text), ORDERS, 0).await?;
    let bucket = st.store.bucket_of_piece(&text).await?;
    let mut aggregate = None;
    let mut waiting = None;
    if let Some(b) = bucket {
        match (b.state.as_str(), &b.piece_cid, b.deal_size) {
            ("closed", Some(agg_cid), Some(deal_size)) => {
                let recorded = agg_cid
                    .parse::<PieceCid>()
                    .map_err(|e| ApiError::Internal(format!("bucket {}'s aggregate: {e}", b.id)))?;
                let tree = st.aggregates.trees.tree(&st.store, b.id, &recorded, deal_size).await?;
                let place = tree.places.get(&text).copied();
                let proof = place.and_then(|n| Some((tree.aggregate.proof(n)?, n)));
                let Some((proof, n)) = proof else {
                    return Err(ApiError::Internal(format!(
                        "piece {text} is in bucket {} but not in its tree",
                        b.id
                    )));
                };
                aggregate = Some(AggregateInclusion {
                    piece_cid: agg_cid.clone(),
                    comm_pa: alloy::hex::encode_prefixed(tree.aggregate.root),
                    size_pa: deal_size,
                    offset: tree.aggregate.segments[n].offset,
                    proof_subtree: ProofView::from(&proof.subtree),
                    proof_index: ProofView::from(&proof.index),
                });
                orders.extend(st.store.deals(Some(agg_cid), ORDERS, 0).await?);
            }
            _ => waiting = Some(b.id),
        }
    }
    if aggregate.is_none() && orders.is_empty() {
        return Err(ApiError::NotFound(match waiting {
            Some(id) => format!(
                "piece {text} is in bucket {id}, still open: its proof exists once the bucket closes"
            ),
            None => format!("no deal holds piece {text} here"),
        }));
    }
    let agg_cid = aggregate.as_ref().map(|a| a.piece_cid.clone());
    Ok(Json(InclusionBody {
        deals: deal_views(&orders, Some(&text), agg_cid.as_deref()),
        piece_cid: text,
        comm_pc: alloy::hex::encode_prefixed(parsed.commp()),
        size_pc,
        aggregate,
    }))
}
