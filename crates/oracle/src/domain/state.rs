//! A job's states and the one machine that moves it between them.
//!
//! ```text
//!                    Start            Fetched          Packed           Reported
//!   queued ──────► fetching ──────► pinned ───────► packed ────────► reported
//!     ▲  │             │ (retryable: stays, retried    │                 │
//!     │  │             │  after a backoff; quarantined │ Damaged         │ Damaged
//!     │  │             │  after `max_attempts`)        ▼                 ▼
//!     │  │             └──── permanent ──► failing ──Reported──► failed   queued again
//!     │  └──────────────── Requeue (operator) ◄──── quarantined, failed
//!     └── Cancel (requester on chain, API delete): any state but cancelled ──► cancelled
//! ```
//!
//! Every change of state is an [`Input`] to [`apply`]: the outcome of a stage, and also a
//! cancellation, an operator's requeue, damage the reconciler found. `apply` is pure: the
//! current [`JobStatus`], the input, the time and the [`Policy`] give the [`Change`] to store,
//! which the store writes with a compare-and-set on the status it was computed from. A stage is
//! started (`Start`, stored) before its effect begins and its outcome stored after it ended, so
//! a restart resumes from the stored state: a job found in `fetching` fetches again (fetching is
//! idempotent: blocks already stored are kept), one in `pinned` packs, one in `packed` reports
//! (the contract refuses a repeated report and that refusal counts as done).
//!
//! Deals add their own machines (buckets, replicas) beside this one; a pin job's part ends at
//! `reported` (or `packed` for a pin made through the API).

use serde::Serialize;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// Recorded and waiting for a worker.
    Queued,
    /// A worker is fetching and verifying the DAG.
    Fetching,
    /// The whole DAG is in the blockstore.
    Pinned,
    /// Its CAR and piece are ready for deals.
    Packed,
    /// The pin is reported on chain (or, for a pin made through the API, done).
    Reported,
    /// Will not be pinned (bad or too-large content); the failure is being reported on chain.
    Failing,
    /// Will not be pinned; the error says why.
    Failed,
    /// Failed too often to retry by itself; the error has the last reason.
    Quarantined,
    /// Cancelled by its requester (on chain, or by deleting the pin).
    Cancelled,
}

/// What a worker does for a job in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fetch and verify the DAG into the blockstore.
    Fetch,
    /// Write the CAR and compute its piece.
    Pack,
    /// Report the pin.
    Report,
    /// Report the failure.
    ReportFailure,
}

impl JobState {
    /// Every state.
    pub const ALL: [Self; 9] = [
        Self::Queued,
        Self::Fetching,
        Self::Pinned,
        Self::Packed,
        Self::Reported,
        Self::Failing,
        Self::Failed,
        Self::Quarantined,
        Self::Cancelled,
    ];

    /// The states a worker has something to do in (claimable).
    pub fn active() -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(|s| s.stage().is_some())
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Fetching => "fetching",
            Self::Pinned => "pinned",
            Self::Packed => "packed",
            Self::Reported => "reported",
            Self::Failing => "failing",
            Self::Failed => "failed",
            Self::Quarantined => "quarantined",
            Self::Cancelled => "cancelled",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// The stage a job in this state needs, or `None` when there is nothing to do.
    pub fn stage(self) -> Option<Stage> {
        match self {
            Self::Queued | Self::Fetching => Some(Stage::Fetch),
            Self::Pinned => Some(Stage::Pack),
            Self::Packed => Some(Stage::Report),
            Self::Failing => Some(Stage::ReportFailure),
            _ => None,
        }
    }

    /// Whether the DAG is held (pinned, packed or reported).
    pub fn holds_dag(self) -> bool {
        matches!(self, Self::Pinned | Self::Packed | Self::Reported)
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
    /// The report is on chain (or the contract already had it, or there is no one to tell).
    Reported {
        /// Transaction hash, when this oracle sent it.
        tx: Option<String>,
    },
    /// The request was closed on chain (cancelled, or failed by another oracle).
    Closed,
    /// The stage could not run because this oracle failed (its disk or object store): not the
    /// job's fault, so it costs no attempt; it is retried after a backoff.
    Interrupted {
        /// What failed.
        reason: String,
    },
    /// The stage failed. Permanent failures (malformed CID, DAG over the limits, hostile
    /// content) end the job; others are retried after a backoff, until the attempt limit.
    Failed {
        /// Why, for people.
        reason: String,
        /// Whether retrying cannot help.
        permanent: bool,
        /// What kind of failure, as reported on chain.
        code: FailureCode,
    },
}

/// Why a request cannot be served, as `EstuaryPinning.FailureCode` has it (same order: the
/// discriminant is the value the contract takes). The text of the reason is kept off chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FailureCode {
    /// No more specific code applies.
    Unspecified = 0,
    /// No origin or peer served the content within the limits.
    NotFound = 1,
    /// The DAG is larger than the operator accepts.
    TooLarge = 2,
    /// Fetching did not finish in time.
    Timeout = 3,
    /// Blocks did not hash to their CIDs, or the DAG does not decode.
    InvalidContent = 4,
    /// A codec or hash function the operator does not support.
    Unsupported = 5,
    /// Refused by the operator's content policy.
    Refused = 6,
    /// The operator's own failure.
    Internal = 7,
}

impl FailureCode {
    /// Every code, in the contract's order.
    pub const ALL: [Self; 8] = [
        Self::Unspecified,
        Self::NotFound,
        Self::TooLarge,
        Self::Timeout,
        Self::InvalidContent,
        Self::Unsupported,
        Self::Refused,
        Self::Internal,
    ];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::Timeout => "timeout",
            Self::InvalidContent => "invalid_content",
            Self::Unsupported => "unsupported",
            Self::Refused => "refused",
            Self::Internal => "internal",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What the code means, in a short sentence anyone may read: no source's address, peer id
    /// or error text (those are for the operator and the logs).
    pub fn public_reason(self) -> &'static str {
        match self {
            Self::Unspecified => "the request could not be served",
            Self::NotFound => "no origin or peer served the content",
            Self::TooLarge => "the content is larger than this oracle accepts",
            Self::Timeout => "fetching the content did not finish in time",
            Self::InvalidContent => "the content does not match its CID or does not decode",
            Self::Unsupported => "the CID's codec or hash function is not supported",
            Self::Refused => "the content was refused by the operator's policy",
            Self::Internal => "this oracle failed; an operator can retry it",
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Self::Fetched { .. } => "fetched",
            Self::Packed { .. } => "packed",
            Self::Reported { .. } => "reported",
            Self::Closed => "closed",
            Self::Interrupted { .. } => "interrupted",
            Self::Failed { .. } => "failed",
        }
    }
}

/// An input to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A worker starts the job's stage.
    Start,
    /// The stage ended.
    Finished(Outcome),
    /// The requester cancelled it (on chain), or deleted the pin (API).
    Cancel,
    /// An operator puts a failed or quarantined job back in the queue.
    Requeue,
    /// The reconciler found the pinned DAG damaged (a block missing or corrupt).
    Damaged {
        /// What it found.
        reason: String,
    },
}

impl Input {
    fn name(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Finished(o) => o.name(),
            Self::Cancel => "cancel",
            Self::Requeue => "requeue",
            Self::Damaged { .. } => "damaged",
        }
    }
}

/// What the machine needs to know of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// Its state.
    pub state: JobState,
    /// Failed attempts since the last progress.
    pub attempts: u32,
}

/// How failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retryable failures before a job is quarantined.
    pub max_attempts: u32,
    /// The first retry's wait, in milliseconds; each further one doubles it.
    pub backoff_ms: u64,
    /// The longest wait between retries.
    pub max_backoff_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self { max_attempts: 5, backoff_ms: 500, max_backoff_ms: 600_000 }
    }
}

impl Policy {
    /// The wait before attempt `attempts + 1`, after `attempts` failures (at least one).
    pub fn backoff(&self, attempts: u32) -> u64 {
        let doubled = self.backoff_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
        doubled.min(self.max_backoff_ms)
    }
}

/// What becomes of the stored error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorChange {
    /// Leave it (a failure reported on chain keeps its reason).
    Keep,
    /// Clear it (progress).
    Clear,
    /// Set it.
    Set(String),
}

/// The change to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new state.
    pub state: JobState,
    /// The new count of failed attempts.
    pub attempts: u32,
    /// The stored error.
    pub error: ErrorChange,
    /// Not claimable before this time (unix ms; 0: at once).
    pub retry_at: u64,
    /// Whether the worker's lease ends (it stops working on the job).
    pub release: bool,
    /// Results to keep (the DAG's size, the piece, the report's transaction).
    pub record: Option<Outcome>,
}

/// An input that does not apply to a job in its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input} does not apply to a job in state {state:?}")]
pub struct Invalid {
    /// The job's state.
    pub state: JobState,
    /// The input's name.
    pub input: &'static str,
}

/// The change `input` makes to a job in `status`, at `now_ms`, under `policy`.
pub fn apply(
    status: &JobStatus,
    input: &Input,
    now_ms: u64,
    policy: &Policy,
) -> Result<Change, Invalid> {
    use JobState as S;
    let state = status.state;
    let invalid = Err(Invalid { state, input: input.name() });
    let to = |state: JobState| Change {
        state,
        attempts: 0,
        error: ErrorChange::Clear,
        retry_at: 0,
        release: state.stage().is_none(),
        record: None,
    };
    match (state.stage(), input) {
        (_, Input::Start) => match state {
            S::Queued => Ok(Change {
                error: ErrorChange::Keep,
                attempts: status.attempts,
                ..to(S::Fetching)
            }),
            s if s.stage().is_some() => {
                Ok(Change { error: ErrorChange::Keep, attempts: status.attempts, ..to(s) })
            }
            _ => invalid,
        },
        (_, Input::Cancel) if state != S::Cancelled => {
            Ok(Change { error: ErrorChange::Keep, release: true, ..to(S::Cancelled) })
        }
        // Commands come from outside any worker: the job is free for the next claim.
        (_, Input::Requeue) if matches!(state, S::Failed | S::Quarantined) => {
            Ok(Change { release: true, ..to(S::Queued) })
        }
        (_, Input::Damaged { reason }) if state.holds_dag() => {
            Ok(Change { error: ErrorChange::Set(reason.clone()), release: true, ..to(S::Queued) })
        }
        (Some(stage), Input::Finished(outcome)) if state != S::Queued => {
            let done = |next: JobState| Ok(Change { record: Some(outcome.clone()), ..to(next) });
            match (stage, outcome) {
                (Stage::Fetch, Outcome::Fetched { .. }) => done(S::Pinned),
                (Stage::Pack, Outcome::Packed { .. }) => done(S::Packed),
                (Stage::Report, Outcome::Reported { .. }) => done(S::Reported),
                // The failure is on chain; its reason stays.
                (Stage::ReportFailure, Outcome::Reported { .. }) => {
                    Ok(Change { error: ErrorChange::Keep, ..done(S::Failed)? })
                }
                (_, Outcome::Closed) => done(S::Cancelled),
                (_, Outcome::Interrupted { reason }) => Ok(Change {
                    state,
                    attempts: status.attempts,
                    error: ErrorChange::Set(reason.clone()),
                    retry_at: now_ms.saturating_add(policy.backoff(status.attempts.max(1))),
                    release: true,
                    record: None,
                }),
                (_, Outcome::Failed { reason, permanent, .. }) => {
                    let attempts = status.attempts.saturating_add(1);
                    let next = if *permanent && stage != Stage::ReportFailure {
                        S::Failing
                    } else if attempts >= policy.max_attempts {
                        S::Quarantined
                    } else {
                        state
                    };
                    // Reporting a failure starts afresh; a retry waits its backoff.
                    let (attempts, retry_at) = match next {
                        S::Failing => (0, 0),
                        s if s == state => {
                            (attempts, now_ms.saturating_add(policy.backoff(attempts)))
                        }
                        _ => (attempts, 0),
                    };
                    Ok(Change {
                        state: next,
                        attempts,
                        error: ErrorChange::Set(reason.clone()),
                        retry_at,
                        // A permanent failure moves straight on to reporting it, with its code.
                        release: next != S::Failing,
                        record: (next == S::Failing).then(|| outcome.clone()),
                    })
                }
                _ => invalid,
            }
        }
        _ => invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn success(stage: Stage) -> Outcome {
        match stage {
            Stage::Fetch => Outcome::Fetched { blocks: 1, bytes: 1 },
            Stage::Pack => Outcome::Packed { piece_cid: "b".into(), padded_size: 128, car_size: 9 },
            Stage::Report | Stage::ReportFailure => Outcome::Reported { tx: None },
        }
    }

    fn status(state: JobState, attempts: u32) -> JobStatus {
        JobStatus { state, attempts }
    }

    fn policy() -> Policy {
        Policy { max_attempts: 3, ..Policy::default() }
    }

    #[test]
    fn the_happy_path_ends_reported() {
        let mut s = status(JobState::Queued, 0);
        let mut steps = 0;
        while let Some(stage) = s.state.stage() {
            let started = apply(&s, &Input::Start, 0, &policy()).unwrap();
            s.state = started.state;
            let c = apply(&s, &Input::Finished(success(stage)), 0, &policy()).unwrap();
            s = status(c.state, c.attempts);
            steps += 1;
        }
        assert_eq!((s.state, steps), (JobState::Reported, 3));
    }

    #[test]
    fn retryable_failures_back_off_then_quarantine() {
        let fail = Input::Finished(Outcome::Failed {
            reason: "timeout".into(),
            permanent: false,
            code: FailureCode::Timeout,
        });
        let c = apply(&status(JobState::Fetching, 0), &fail, 10_000, &policy()).unwrap();
        assert_eq!(
            (c.state, c.attempts, c.retry_at, c.release),
            (JobState::Fetching, 1, 10_500, true)
        );
        let c = apply(&status(JobState::Fetching, 1), &fail, 10_000, &policy()).unwrap();
        assert_eq!(c.retry_at, 11_000, "the second wait doubles");
        let c = apply(&status(JobState::Fetching, 2), &fail, 10_000, &policy()).unwrap();
        assert_eq!((c.state, c.error), (JobState::Quarantined, ErrorChange::Set("timeout".into())));
        let hostile = Input::Finished(Outcome::Failed {
            reason: "too large".into(),
            permanent: true,
            code: FailureCode::TooLarge,
        });
        let c = apply(&status(JobState::Fetching, 0), &hostile, 0, &policy()).unwrap();
        assert_eq!((c.state, c.release), (JobState::Failing, false));
        let c = apply(
            &status(JobState::Failing, 0),
            &Input::Finished(Outcome::Reported { tx: None }),
            0,
            &policy(),
        )
        .unwrap();
        assert_eq!((c.state, c.error), (JobState::Failed, ErrorChange::Keep));
        assert_eq!(Policy::default().backoff(40), 600_000, "capped");
    }

    #[test]
    fn commands_go_through_the_machine() {
        let p = policy();
        assert_eq!(
            apply(&status(JobState::Quarantined, 5), &Input::Requeue, 0, &p).unwrap().state,
            JobState::Queued
        );
        assert!(apply(&status(JobState::Packed, 0), &Input::Requeue, 0, &p).is_err());
        let damaged = Input::Damaged { reason: "block gone".into() };
        assert_eq!(
            apply(&status(JobState::Reported, 0), &damaged, 0, &p).unwrap().state,
            JobState::Queued
        );
        assert!(apply(&status(JobState::Queued, 0), &damaged, 0, &p).is_err());
        assert_eq!(
            apply(&status(JobState::Packed, 0), &Input::Cancel, 0, &p).unwrap().state,
            JobState::Cancelled
        );
        assert!(apply(&status(JobState::Cancelled, 0), &Input::Cancel, 0, &p).is_err());
        for state in
            [JobState::Reported, JobState::Failed, JobState::Cancelled, JobState::Quarantined]
        {
            assert!(state.stage().is_none());
            assert!(apply(&status(state, 0), &Input::Finished(Outcome::Closed), 0, &p).is_err());
        }
        assert!(
            apply(&status(JobState::Pinned, 0), &Input::Finished(success(Stage::Fetch)), 0, &p)
                .is_err()
        );
    }

    /// Every edge the machine may take (from, to); a `Start` or a retry that stays is (s, s).
    fn allowed(from: JobState, to: JobState) -> bool {
        use JobState as S;
        from == to && from.stage().is_some()
            || matches!(
                (from, to),
                (S::Queued, S::Fetching)
                    | (S::Fetching, S::Pinned)
                    | (S::Pinned, S::Packed)
                    | (S::Packed, S::Reported)
                    | (
                        S::Queued | S::Fetching | S::Pinned | S::Packed,
                        S::Failing | S::Quarantined
                    )
                    | (S::Failing, S::Failed | S::Quarantined)
                    | (S::Failed | S::Quarantined, S::Queued)
                    | (S::Pinned | S::Packed | S::Reported, S::Queued)
            )
            || (to == S::Cancelled && from != S::Cancelled)
    }

    fn input(code: u8) -> Input {
        match code % 10 {
            0 => Input::Start,
            1 => Input::Finished(success(Stage::Fetch)),
            2 => Input::Finished(success(Stage::Pack)),
            3 => Input::Finished(success(Stage::Report)),
            4 => Input::Finished(Outcome::Closed),
            5 => Input::Finished(Outcome::Failed {
                reason: "x".into(),
                permanent: false,
                code: FailureCode::Unspecified,
            }),
            6 => Input::Finished(Outcome::Failed {
                reason: "x".into(),
                permanent: true,
                code: FailureCode::Unspecified,
            }),
            7 => Input::Cancel,
            8 => Input::Requeue,
            _ => Input::Damaged { reason: "gone".into() },
        }
    }

    fn random_command_sequences_follow_the_graph_impl(
        start: usize,
        codes: &[u8],
    ) -> Result<(), TestCaseError> {
        let mut s = status(JobState::ALL[start], 0);
        for &code in codes {
            let was = s.state;
            if let Ok(c) = apply(&s, &input(code), 1_000, &policy()) {
                prop_assert!(
                    allowed(was, c.state),
                    "{was:?} -> {:?} on {:?}",
                    c.state,
                    input(code)
                );
                prop_assert!(c.attempts <= policy().max_attempts);
                s = status(c.state, c.attempts);
            }
            if was == JobState::Cancelled {
                prop_assert_eq!(s.state, JobState::Cancelled, "cancelled is terminal");
            }
        }
        Ok(())
    }

    proptest! {
        /// From any state, any sequence of inputs moves a job only along the graph's edges (no
        /// state skipped), and a cancelled job stays cancelled.
        #[test]
        fn random_command_sequences_follow_the_graph_proptest(start in 0usize..9, codes in proptest::collection::vec(any::<u8>(), 0..40)) {
            random_command_sequences_follow_the_graph_impl(start, &codes)?;
        }

        /// A job never goes back along its pipeline except by an explicit command (requeue,
        /// damage), and every stage runs only after its predecessor finished.
        #[test]
        fn outcomes_never_move_backwards(start in 0usize..9, codes in proptest::collection::vec(0u8..7, 0..20)) {
            let order = |s: JobState| match s {
                JobState::Queued => 0, JobState::Fetching => 1, JobState::Pinned => 2,
                JobState::Packed => 3, _ => 4,
            };
            let mut s = status(JobState::ALL[start], 0);
            for code in codes {
                if let Ok(c) = apply(&s, &input(code), 0, &policy()) {
                    prop_assert!(order(c.state) >= order(s.state));
                    s = status(c.state, c.attempts);
                }
            }
        }
    }

    #[test]
    fn random_command_sequences_follow_the_graph_cases() {
        // Past failures of the property, kept as cases.
        random_command_sequences_follow_the_graph_impl(8, &[7, 8, 9, 0]).unwrap();
        random_command_sequences_follow_the_graph_impl(6, &[8, 0, 5, 5, 5, 8]).unwrap();
    }
}
