//! The reconciler: walks every pinned DAG in the blockstore and sends back to the queue any
//! whose blocks are missing or corrupt (the blockstore drops a corrupt block when it reads it),
//! so the workers fetch them again. Reports already on chain stay; the contract refuses a
//! second one and the oracle counts that as done.

use std::sync::Arc;

use cid::Cid;
use estuary_dag::walk::{WalkLimits, dfs_limited};

use crate::{
    blockstore::Blockstore,
    model::RequestStatus,
    store::{JobStore, StoreError},
};

/// What a reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Pinned DAGs walked.
    pub checked: u64,
    /// Requests sent back to the queue, with the reason.
    pub requeued: Vec<(String, String)>,
}

const PINNED: [RequestStatus; 3] =
    [RequestStatus::Pinned, RequestStatus::Packed, RequestStatus::Reported];

/// Walks every pinned DAG and requeues the damaged ones.
pub async fn reconcile<S: JobStore, B: Blockstore>(
    store: &S,
    blocks: &Arc<B>,
) -> Result<Reconciled, StoreError> {
    let mut out = Reconciled::default();
    for request in store.in_status(&PINNED, u32::MAX).await? {
        let Some(text) = request.cid.as_deref() else { continue };
        let Ok(root) = Cid::try_from(text) else { continue };
        let blocks = Arc::clone(blocks);
        let walked = tokio::task::spawn_blocking(move || {
            dfs_limited(root, WalkLimits::default(), |c| blocks.get(c).ok().flatten(), |_, _| {})
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        out.checked += 1;
        let problem = match walked {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e,
            Err(e) => e.to_string(),
        };
        if store.requeue_id(&request.id, &PINNED).await? > 0 {
            out.requeued.push((request.id, problem));
        }
    }
    Ok(out)
}
