//! Operators' and requesters' commands on jobs — requeue, cancel, damage found — as inputs to
//! the state machine: read the status, apply the input, store the change with a
//! compare-and-set, and try again if a worker moved the job meanwhile.

use crate::{
    domain::{
        JobKey, JobState, now_ms,
        state::{Input, Invalid, Policy, apply},
    },
    store::{Store, StoreError},
};

/// Why a command did not apply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No job by that key.
    #[error("no job {0}")]
    NotFound(JobKey),
    /// The job is in a state the command does not apply to.
    #[error(transparent)]
    Refused(#[from] Invalid),
    /// The job kept moving under the command (a very busy worker); try again.
    #[error("job {0} kept changing; try again")]
    Busy(JobKey),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Puts every quarantined job back in the queue (after a fault that quarantined many). Returns
/// the jobs requeued and, for the others, why not (one that moved on meanwhile is left alone).
pub async fn requeue_all_quarantined(
    store: &Store,
) -> Result<(Vec<JobKey>, Vec<(JobKey, String)>), StoreError> {
    let (mut queued, mut left) = (Vec::new(), Vec::new());
    loop {
        let batch = store.in_states(&[JobState::Quarantined], 1000).await?;
        let before = queued.len() + left.len();
        for job in batch {
            let key = job.key().clone();
            if left.iter().any(|(k, _)| *k == key) {
                continue;
            }
            match run(store, &key, &Input::Requeue, &Policy::default()).await {
                Ok(_) => queued.push(key),
                Err(CommandError::Store(e)) => return Err(e),
                Err(e) => left.push((key, e.to_string())),
            }
        }
        if queued.len() + left.len() == before {
            return Ok((queued, left));
        }
    }
}

/// Applies `input` to job `key`; returns its new state.
pub async fn run(
    store: &Store,
    key: &JobKey,
    input: &Input,
    policy: &Policy,
) -> Result<JobState, CommandError> {
    for _ in 0..5 {
        let status = store.status(key).await?.ok_or_else(|| CommandError::NotFound(key.clone()))?;
        let change = apply(&status, input, now_ms(), policy)?;
        if store.transition(key, &status, &change, now_ms(), 0).await? {
            return Ok(change.state);
        }
    }
    Err(CommandError::Busy(key.clone()))
}
