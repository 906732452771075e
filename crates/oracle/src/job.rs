//! A request's lifecycle as a pure state machine.
//!
//! ```text
//! queued ─► fetching ─► pinned ─► packed ─► reported
//!    │          │          │         │
//!    │          │          │         └──► quarantined (N retryable failures)
//!    └──────────┴──────────┴──► failing (permanent failure) ─► failed (reported on chain)
//! ```
//!
//! [`start`] is stored before a stage's effect begins, [`apply`] after it ended, so a restart
//! resumes from the stored state: a job found in `fetching` fetches again (fetching is
//! idempotent: blocks already stored are kept), one in `pinned` packs, one in `packed` reports
//! (the contract refuses a repeated report and that refusal counts as done).

use crate::model::RequestStatus;

/// What a worker does next for a job in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fetch and verify the DAG into the blockstore.
    Fetch,
    /// Write the CAR and compute its piece.
    Pack,
    /// Report the pin on chain.
    Report,
    /// Report the failure on chain.
    ReportFailure,
}

/// The stage a job in `status` needs, or `None` when it is finished.
pub fn stage(status: RequestStatus) -> Option<Stage> {
    match status {
        RequestStatus::Queued | RequestStatus::Fetching => Some(Stage::Fetch),
        RequestStatus::Pinned => Some(Stage::Pack),
        RequestStatus::Packed => Some(Stage::Report),
        RequestStatus::Failing => Some(Stage::ReportFailure),
        _ => None,
    }
}

/// What a stage produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole DAG is stored and verified.
    Fetched {
        /// Distinct blocks.
        blocks: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// The CAR is written and its piece computed.
    Packed {
        /// Piece CID v2 (text).
        piece_cid: String,
        /// Padded piece size.
        padded_size: u64,
        /// CAR size in bytes.
        car_size: u64,
    },
    /// The report is on chain (or the contract already had it).
    Reported {
        /// Transaction hash, when this oracle sent it.
        tx: Option<String>,
    },
    /// The request was closed on chain (cancelled, or failed by another oracle).
    Closed,
    /// The stage failed. `permanent` failures (malformed CID, DAG over the limits, hostile
    /// content) end the job; others are retried until the attempt limit.
    Failed {
        /// Why, for people.
        reason: String,
        /// Whether retrying cannot help.
        permanent: bool,
    },
}

/// The state to store after a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// New status.
    pub status: RequestStatus,
    /// Failed attempts so far (reset by progress).
    pub attempts: u32,
    /// The reason shown for failed and quarantined jobs.
    pub error: Option<String>,
}

/// An outcome that does not belong to the stage of the job's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outcome {outcome} does not apply to a job in state {status:?}")]
pub struct InvalidTransition {
    /// The job's state.
    pub status: RequestStatus,
    /// The outcome's name.
    pub outcome: &'static str,
}

/// The state stored before a stage's effect begins.
pub fn start(status: RequestStatus) -> RequestStatus {
    match status {
        RequestStatus::Queued => RequestStatus::Fetching,
        other => other,
    }
}

/// The state after `outcome`, for a job in `status` with `attempts` failures so far.
pub fn apply(
    status: RequestStatus,
    attempts: u32,
    outcome: &Outcome,
    max_attempts: u32,
) -> Result<Transition, InvalidTransition> {
    let stage = stage(status);
    let ok = |status| Ok(Transition { status, attempts: 0, error: None });
    match (stage, outcome) {
        (Some(Stage::Fetch), Outcome::Fetched { .. }) => ok(RequestStatus::Pinned),
        (Some(Stage::Pack), Outcome::Packed { .. }) => ok(RequestStatus::Packed),
        (Some(Stage::Report), Outcome::Reported { .. }) => ok(RequestStatus::Reported),
        // The failure is on chain; its reason stays (`error: None` keeps the stored one).
        (Some(Stage::ReportFailure), Outcome::Reported { .. }) => ok(RequestStatus::Failed),
        (Some(_), Outcome::Closed) => ok(RequestStatus::Cancelled),
        (Some(Stage::ReportFailure), Outcome::Failed { reason, .. }) => {
            // Reporting a failure is retried until the attempt limit, then left quarantined.
            let attempts = attempts.saturating_add(1);
            let status = if attempts >= max_attempts { RequestStatus::Quarantined } else { status };
            Ok(Transition { status, attempts, error: Some(reason.clone()) })
        }
        (Some(_), Outcome::Failed { reason, permanent }) => {
            let attempts = attempts.saturating_add(1);
            let status = if *permanent {
                RequestStatus::Failing
            } else if attempts >= max_attempts {
                RequestStatus::Quarantined
            } else {
                status
            };
            Ok(Transition { status, attempts, error: Some(reason.clone()) })
        }
        _ => Err(InvalidTransition {
            status,
            outcome: match outcome {
                Outcome::Fetched { .. } => "fetched",
                Outcome::Packed { .. } => "packed",
                Outcome::Reported { .. } => "reported",
                Outcome::Closed => "closed",
                Outcome::Failed { .. } => "failed",
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [RequestStatus; 9] = RequestStatus::ALL;

    fn success(stage: Stage) -> Outcome {
        match stage {
            Stage::Fetch => Outcome::Fetched { blocks: 1, bytes: 1 },
            Stage::Pack => Outcome::Packed { piece_cid: "b".into(), padded_size: 128, car_size: 9 },
            Stage::Report | Stage::ReportFailure => Outcome::Reported { tx: None },
        }
    }

    #[test]
    fn the_happy_path_ends_reported() {
        let mut status = RequestStatus::Queued;
        let mut steps = 0;
        while let Some(st) = stage(status) {
            status = start(status);
            status = apply(status, 0, &success(st), 3).unwrap().status;
            steps += 1;
        }
        assert_eq!((status, steps), (RequestStatus::Reported, 3));
    }

    #[test]
    fn retryable_failures_quarantine_after_the_limit() {
        let fail = Outcome::Failed { reason: "timeout".into(), permanent: false };
        let t = apply(RequestStatus::Fetching, 0, &fail, 3).unwrap();
        assert_eq!((t.status, t.attempts), (RequestStatus::Fetching, 1));
        let t = apply(RequestStatus::Fetching, 2, &fail, 3).unwrap();
        assert_eq!(t.status, RequestStatus::Quarantined);
        assert_eq!(t.error.as_deref(), Some("timeout"));
        let hostile = Outcome::Failed { reason: "block too large".into(), permanent: true };
        let t = apply(RequestStatus::Fetching, 0, &hostile, 3).unwrap();
        assert_eq!(t.status, RequestStatus::Failing);
        let reported = apply(t.status, 0, &Outcome::Reported { tx: None }, 3).unwrap();
        assert_eq!((reported.status, reported.error), (RequestStatus::Failed, None));
    }

    #[test]
    fn finished_jobs_take_no_outcome() {
        for status in [RequestStatus::Reported, RequestStatus::Failed, RequestStatus::Cancelled] {
            assert!(stage(status).is_none());
            assert!(apply(status, 0, &Outcome::Closed, 3).is_err());
        }
        assert!(apply(RequestStatus::Pinned, 0, &success(Stage::Fetch), 3).is_err());
    }

    proptest! {
        /// From any state, any sequence of outcomes only ever moves along the lifecycle: no
        /// finished job is revived and a stage never runs before its predecessor finished.
        #[test]
        fn outcomes_never_move_backwards(start_index in 0usize..9, outcomes in proptest::collection::vec(0u8..6, 0..20)) {
            let order = |s: RequestStatus| match s {
                RequestStatus::Queued => 0, RequestStatus::Fetching => 1, RequestStatus::Pinned => 2,
                RequestStatus::Packed => 3, _ => 4,
            };
            let mut status = ALL[start_index];
            let mut attempts = 0;
            for o in outcomes {
                let outcome = match o {
                    0 => success(Stage::Fetch), 1 => success(Stage::Pack), 2 => success(Stage::Report),
                    3 => Outcome::Closed,
                    4 => Outcome::Failed { reason: "x".into(), permanent: false },
                    _ => Outcome::Failed { reason: "x".into(), permanent: true },
                };
                if let Ok(t) = apply(start(status), attempts, &outcome, 3) {
                    prop_assert!(order(t.status) >= order(status));
                    prop_assert!(stage(status).is_some());
                    status = t.status;
                    attempts = t.attempts;
                }
            }
        }
    }
}
