//! The reconciler: walks every pinned DAG in the blockstore and sends back to the queue, through
//! the state machine (`Damaged`), any whose blocks are missing or corrupt (the blockstore sets a
//! corrupt block aside when it reads it), so the workers fetch them again. Reports already on
//! chain stay; the contract refuses a second one and the oracle counts that as done.
//!
//! A pin whose blocks garbage collection let go, its piece read from the providers that hold
//! it (`block_pieces.cold_ms`), is not walked, nor requeued if it went cold during its walk.
//!
//! A storage failure (a disk error, an S3 outage) is not damage: the DAG is left alone and the
//! failure counted, so an outage never requeues every pin.
//!
//! The oracle runs it on a schedule (`--reconcile-interval-secs`, daily by default);
//! `estuary oracle reconcile` runs it by hand.

use std::sync::Arc;

use cid::Cid;
use estuary_dag::walk::{self, WalkLimits};

use crate::{
    blockstore::{Blockstore, Source},
    commands,
    domain::{
        JobKey, JobState,
        state::{Input, Policy},
    },
    store::{Store, StoreError},
};

/// What a reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Pinned DAGs walked.
    pub checked: u64,
    /// Jobs sent back to the queue, with the reason.
    pub requeued: Vec<(JobKey, String)>,
    /// Jobs whose DAG could not be read because the store failed (left alone).
    pub faults: Vec<(JobKey, String)>,
}

const PINNED: [JobState; 3] = [JobState::Pinned, JobState::Packed, JobState::Reported];

/// Walks every pinned DAG and requeues the damaged ones (walks within the walker's default
/// limits; see [`reconcile_within`]).
pub async fn reconcile<B: Blockstore>(
    store: &Store,
    blocks: &Arc<B>,
) -> Result<Reconciled, StoreError> {
    reconcile_within(store, blocks, WalkLimits::default()).await
}

/// [`reconcile`], each walk within `limits` (the fetch's: every pinned DAG was fetched within
/// them; one over them now is reported as damaged).
pub async fn reconcile_within<B: Blockstore>(
    store: &Store,
    blocks: &Arc<B>,
    limits: WalkLimits,
) -> Result<Reconciled, StoreError> {
    let mut out = Reconciled::default();
    // Pins whose blocks went once their pieces were held by providers: not damaged.
    let cold = store.cold_block_pieces().await?;
    for job in store.in_states(&PINNED, u32::MAX).await? {
        if job.piece_cid.as_ref().is_some_and(|p| cold.contains(p)) {
            continue;
        }
        let Some(text) = job.cid.as_deref() else { continue };
        let Ok(root) = Cid::try_from(text) else { continue };
        let blocks = Arc::clone(blocks);
        let walked = tokio::task::spawn_blocking(move || {
            walk::dfs(root, limits, Source(&*blocks), |_, _| {})
        })
        .await
        .expect("a walk over the blockstore does not panic");
        out.checked += 1;
        let key = job.key().clone();
        let problem = match walked {
            Ok(_) => continue,
            Err(e) if e.is_fault() => {
                out.faults.push((key, e.to_string()));
                continue;
            }
            Err(e) => e.to_string(),
        };
        // Gone cold meanwhile (a collection let its blocks go during the walk): not damage.
        if let Some(piece) = &job.piece_cid
            && store.blocks_cold(piece).await?
        {
            continue;
        }
        let damaged = Input::Damaged { reason: problem.clone() };
        match commands::run(store, &key, &damaged, &Policy::default()).await {
            Ok(_) => out.requeued.push((key, problem)),
            // Moved on meanwhile (cancelled, already requeued): nothing to do.
            Err(commands::CommandError::Refused(_) | commands::CommandError::NotFound(_)) => {}
            Err(commands::CommandError::Store(e)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "reconciler could not requeue a damaged DAG"),
        }
    }
    Ok(out)
}
