//! Workers: take jobs from the store and move them through their lifecycle.
//!
//! ```text
//!  claim (lease) ──► Start ──► store (CAS) ──► run the stage in its own task ──► outcome
//!       ▲               heartbeats renew the lease while it runs        │
//!       └──────── next stage, or release ◄── store (CAS) ◄── machine::apply
//! ```
//!
//! Each worker claims a job (with a lease), stores the state a stage starts from, runs the
//! stage in a task of its own — so a panic in one job becomes that job's failure, never the
//! process's — and stores the outcome through the pure state machine
//! ([`crate::domain::state::apply`]) with a compare-and-set. A job that moved on meanwhile (a
//! cancellation, another worker after a lost lease) is left alone. A supervisor restarts a
//! worker whose loop ended unexpectedly.
//!
//! Claims are fair ([`Store::claim_within`]): a requester holds at most
//! [`WorkerConfig::per_requester`] jobs at once, and retries wait behind fresh work. A fetch
//! goes into the job's own staging area ([`crate::fetch::stage_of`]) within a time budget
//! scaled to the request's size hint. A fault of the oracle's storage pauses every worker
//! ([`super::faults`]) until a probe finds the store working again.

use std::{path::PathBuf, sync::Arc, time::Duration};

use estuary_piece::PieceCid;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{
    faults::{self, Faults},
    pack::pack_within,
    report::{Reported, Reporter},
};
use crate::{
    blockstore::Blockstore,
    domain::{
        JobSource, JobState, JobStatus, now_ms,
        state::{Change, FailureCode, Input, Outcome, Policy, Stage, apply},
    },
    fetch::{FetchJob, Fetcher, stage_of},
    store::{Claimed, Store},
};

/// How the workers behave.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs processed at once.
    pub workers: usize,
    /// How long a claimed job stays with its worker before another may take it.
    pub lease: Duration,
    /// Retries and backoff.
    pub policy: Policy,
    /// Pause when there is nothing to do.
    pub idle: Duration,
    /// Where packed CARs go.
    pub packed_dir: PathBuf,
    /// Most jobs one requester holds at once (the others wait for a worker to free up).
    pub per_requester: u32,
    /// How often a probe checks a failing blockstore while the workers are paused.
    pub probe_every: Duration,
    /// Free bytes the data directory keeps: below, a fetch does not start (a fault, retried
    /// after a backoff, costing the job no attempt).
    pub min_free_bytes: u64,
}

impl WorkerConfig {
    /// `workers` workers with the defaults: a lease of 10 minutes, the default retry policy,
    /// and a requester holding at most all workers but one.
    pub fn new(workers: usize, packed_dir: PathBuf) -> Self {
        Self {
            workers,
            lease: Duration::from_secs(600),
            policy: Policy::default(),
            idle: Duration::from_millis(200),
            packed_dir,
            per_requester: default_per_requester(workers),
            probe_every: Duration::from_secs(5),
            min_free_bytes: 0,
        }
    }
}

/// All workers but one, so that one requester never holds them all (one, with one worker).
pub fn default_per_requester(workers: usize) -> u32 {
    u32::try_from(workers.saturating_sub(1).max(1)).unwrap_or(u32::MAX)
}

/// Everything a worker needs.
pub struct Pipeline<B, R> {
    store: Store,
    blocks: Arc<B>,
    fetcher: Fetcher,
    reporter: Arc<R>,
    config: WorkerConfig,
    faults: Faults,
}

impl<B: Blockstore, R: Reporter> Pipeline<B, R> {
    /// A pipeline over these adapters.
    pub fn new(
        store: Store,
        blocks: Arc<B>,
        fetcher: Fetcher,
        reporter: Arc<R>,
        config: WorkerConfig,
    ) -> Arc<Self> {
        Arc::new(Self { store, blocks, fetcher, reporter, config, faults: Faults::new() })
    }

    /// The workers' fault state (paused or not), for the API.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs the workers until `shutdown`, restarting any that stops. Leases left by a previous
    /// life of this process are released first, so its jobs resume at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        match self.store.release_leases().await {
            Ok(0) => {}
            Ok(n) => info!(jobs = n, "resuming jobs held when the oracle stopped"),
            Err(e) => warn!(error = %e, "cannot release old leases"),
        }
        let mut tasks = JoinSet::new();
        for _ in 0..self.config.workers.max(1) {
            tasks.spawn(Arc::clone(&self).worker(shutdown.clone()));
        }
        let prober = tokio::spawn(Arc::clone(&self).probe(shutdown.clone()));
        while let Some(ended) = tasks.join_next().await {
            if shutdown.is_cancelled() {
                continue;
            }
            if let Err(e) = ended {
                error!(error = %e, "a worker stopped; restarting it");
            }
            tasks.spawn(Arc::clone(&self).worker(shutdown.clone()));
        }
        prober.abort();
    }

    /// While the workers are paused, checks the blockstore every `probe_every`, and resumes
    /// them when it works.
    async fn probe(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.probe_every) => {}
            }
            if self.faults.paused().is_none() {
                continue;
            }
            let blocks = Arc::clone(&self.blocks);
            match tokio::task::spawn_blocking(move || faults::probe(&*blocks)).await {
                Ok(Ok(())) => self.faults.resume(),
                Ok(Err(e)) => debug!(error = %e, "blockstore probe failed; workers stay paused"),
                Err(e) => warn!(error = %e, "blockstore probe crashed"),
            }
        }
    }

    async fn worker(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if self.faults.paused().is_some() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.config.idle) => {}
                }
                continue;
            }
            let claimed =
                self.store.claim_within(now_ms(), self.lease_ms(), self.config.per_requester).await;
            match claimed {
                Ok(Some(job)) => Arc::clone(&self).process(job).await,
                Ok(None) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(self.config.idle) => {}
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot claim jobs");
                    tokio::time::sleep(self.config.idle * 4).await;
                }
            }
        }
    }

    /// Feeds `input` to the machine and stores the change; the change, or `None` if the job
    /// moved on (or the store failed) and the worker should let it go.
    async fn step(&self, job: &Claimed, status: &JobStatus, input: &Input) -> Option<Change> {
        let change = match apply(status, input, now_ms(), &self.config.policy) {
            Ok(change) => change,
            Err(e) => {
                error!(error = %e, key = %job.key, "invalid transition");
                return None;
            }
        };
        match self.store.transition(&job.key, status, &change, now_ms(), self.lease_ms()).await {
            Ok(true) => {
                debug!(key = %job.key, from = status.state.as_str(), to = change.state.as_str(), "job moved");
                Some(change)
            }
            Ok(false) => None,
            Err(e) => {
                warn!(error = %e, key = %job.key, "cannot store the job's change");
                None
            }
        }
    }

    /// Runs `job` through its stages until it finishes, fails or is taken by someone else.
    async fn process(self: Arc<Self>, mut job: Claimed) {
        let mut status = job.status.clone();
        while let Some(stage) = status.state.stage() {
            let Some(started) = self.step(&job, &status, &Input::Start).await else { return };
            // A packed CAR appears before its job records it: garbage collection waits until
            // both are done, so it never takes a new CAR for nobody's.
            let hold = match (stage, self.fetcher.gate()) {
                (Stage::Pack, Some(gate)) => {
                    match gate.hold(&format!("pack-{}", stage_of(&job.key))).await {
                        Ok(hold) => Some(hold),
                        Err(e) => {
                            warn!(error = %e, key = %job.key, "cannot hold off GC to pack");
                            return;
                        }
                    }
                }
                _ => None,
            };
            status = JobStatus { state: started.state, attempts: started.attempts };
            let me = Arc::clone(&self);
            let stage_job = job.clone();
            let mut stage_task = tokio::spawn(async move { me.run_stage(stage, &stage_job).await });
            // Heartbeats: the lease is renewed while the stage runs, so a long fetch keeps its
            // job, and a worker that dies stops renewing and lets another take it over.
            let mut beat =
                tokio::time::interval(Duration::from_millis((self.lease_ms() / 3).max(1)));
            beat.tick().await;
            let joined = loop {
                tokio::select! {
                    joined = &mut stage_task => break joined,
                    _ = beat.tick() => {
                        match self.store.heartbeat(&job.key, status.state, now_ms(), self.lease_ms()).await {
                            Ok(true) => {}
                            Ok(false) => {
                                stage_task.abort();
                                return debug!(key = %job.key, "job taken or moved on; stage stopped");
                            }
                            Err(e) => warn!(error = %e, key = %job.key, "cannot renew the lease"),
                        }
                    }
                }
            };
            let input = match joined {
                Ok(input) => input,
                Err(e) => Input::Finished(Outcome::Failed {
                    reason: format!("the job crashed: {e}"),
                    permanent: false,
                    code: FailureCode::Internal,
                }),
            };
            if let Input::Finished(
                Outcome::Failed { reason, .. } | Outcome::Interrupted { reason },
            ) = &input
            {
                warn!(key = %job.key, state = status.state.as_str(), %reason, "stage failed");
            }
            if let Input::Finished(Outcome::Interrupted { reason }) = &input {
                self.faults.fault(reason);
            }
            if let Input::Finished(Outcome::Packed { piece_cid, padded_size, .. }) = &input {
                job.piece_cid = Some(piece_cid.clone());
                job.padded_size = Some(*padded_size);
            }
            if let Input::Finished(Outcome::Failed { reason, permanent: true, code }) = &input {
                job.error = Some(reason.clone());
                job.failure = Some(*code);
            }
            let next = self.step(&job, &status, &input).await;
            if let Some(hold) = hold
                && let Err(e) = hold.release().await
            {
                warn!(error = %e, key = %job.key, "cannot release the hold against GC");
            }
            let Some(next) = next else { return };
            if next.state == JobState::Reported {
                info!(key = %job.key, "pinned and reported");
            }
            if next.release {
                return;
            }
            status = JobStatus { state: next.state, attempts: next.attempts };
        }
    }

    async fn run_stage(&self, stage: Stage, job: &Claimed) -> Input {
        let is_api = matches!(job.key.source, JobSource::PinningApi { .. });
        let outcome = match stage {
            Stage::Fetch if !self.room_to_fetch() => Outcome::Interrupted {
                reason: "the data directory is below its free-space floor".into(),
            },
            Stage::Fetch => {
                let fetch = FetchJob {
                    cid: &job.cid,
                    origins: &job.origins,
                    size_hint: job.size_hint,
                    stage: stage_of(&job.key),
                };
                match self.fetcher.fetch_job(&fetch, &self.blocks).await {
                    Ok(stats) => Outcome::Fetched { blocks: stats.blocks, bytes: stats.bytes },
                    Err(e) if e.is_fault() => Outcome::Interrupted { reason: e.to_string() },
                    Err(e) => Outcome::Failed {
                        reason: e.to_string(),
                        permanent: e.is_permanent(),
                        code: e.code(),
                    },
                }
            }
            Stage::Pack => {
                let blocks = Arc::clone(&self.blocks);
                let cid = job.cid.clone();
                let dir = self.config.packed_dir.clone();
                let limits = self.fetcher.limits().walk();
                let packed =
                    tokio::task::spawn_blocking(move || pack_within(&*blocks, &cid, &dir, limits))
                        .await
                        .expect("packing does not panic");
                match packed {
                    Ok(p) => Outcome::Packed {
                        piece_cid: p.piece_cid,
                        padded_size: p.padded_size,
                        car_size: p.car_size,
                    },
                    Err(e) if e.is_fault() => Outcome::Interrupted { reason: e.to_string() },
                    // A block of a pinned DAG is gone: fetch it again.
                    Err(e) => return Input::Damaged { reason: e.to_string() },
                }
            }
            // A pin made through the Pinning Service API has no one on chain to tell.
            Stage::Report | Stage::ReportFailure if is_api => Outcome::Reported { tx: None },
            // A store job is fulfilled once its deals are active (`deals::store_jobs`), not
            // when it is pinned: its pin is done here, and its piece goes into a bucket.
            Stage::Report if job.store => Outcome::Reported { tx: None },
            Stage::Report => self.report(job).await,
            Stage::ReportFailure => {
                let code = job.failure.unwrap_or(FailureCode::Unspecified);
                let detail = job.error.as_deref().unwrap_or("failed");
                reported(self.reporter.report_failed(&job.key, &job.cid, code, detail).await)
            }
        };
        Input::Finished(outcome)
    }

    /// Whether the data directory has room for a fetch (above `min_free_bytes`); a filesystem
    /// that cannot be asked does not stop the fetch (a full disk still shows as a write error).
    fn room_to_fetch(&self) -> bool {
        let dir = &self.config.packed_dir;
        match crate::blockstore::space::above_floor(dir, self.config.min_free_bytes, 0) {
            Ok(room) => room,
            Err(e) => {
                warn!(error = %e, "cannot read the free space of the data directory");
                true
            }
        }
    }

    async fn report(&self, job: &Claimed) -> Outcome {
        let (Some(piece), Some(padded)) = (&job.piece_cid, job.padded_size) else {
            unreachable!("a packed job has its piece: the Packed outcome stores both");
        };
        let piece =
            piece.parse::<PieceCid>().expect("the stored piece CID is one this oracle wrote");
        let v1 = piece.to_v1().to_cid().to_bytes();
        reported(self.reporter.report_pinned(&job.key, &job.cid, v1.into(), padded).await)
    }
}

fn reported(result: Result<Reported, super::report::ReportError>) -> Outcome {
    match result {
        Ok(Reported::Sent { tx }) => Outcome::Reported { tx: Some(format!("{tx:#x}")) },
        Ok(Reported::AlreadyThere) => Outcome::Reported { tx: None },
        Ok(Reported::Closed) => Outcome::Closed,
        Err(e) => Outcome::Failed {
            reason: e.to_string(),
            permanent: !e.is_retryable(),
            code: FailureCode::Internal,
        },
    }
}
