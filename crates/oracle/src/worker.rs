//! Workers: take jobs from the store and move them through their lifecycle.
//!
//! Each worker claims a job (with a lease), stores the state a stage starts from, runs the
//! stage in a task of its own — so a panic in one job becomes that job's failure, never the
//! process's — and stores the outcome through the pure [`crate::job`] state machine. A
//! supervisor restarts a worker whose loop ended unexpectedly.

use std::{path::PathBuf, sync::Arc, time::Duration};

use alloy::primitives::U256;
use estuary_piece::PieceCid;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    blockstore::Blockstore,
    fetch::Fetcher,
    job::{self, Outcome, Stage},
    model::now_ms,
    pack::pack,
    report::{Reported, Reporter},
    store::{Job, JobStore},
};

/// How the workers behave.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs processed at once.
    pub workers: usize,
    /// How long a claimed job stays with its worker before another may take it.
    pub lease: Duration,
    /// Retryable failures before a job is quarantined.
    pub max_attempts: u32,
    /// Pause when there is nothing to do.
    pub idle: Duration,
    /// Where packed CARs go.
    pub packed_dir: PathBuf,
}

/// Everything a worker needs.
pub struct Pipeline<S, B, R> {
    store: Arc<S>,
    blocks: Arc<B>,
    fetcher: Fetcher,
    reporter: Arc<R>,
    config: WorkerConfig,
}

impl<S: JobStore, B: Blockstore, R: Reporter> Pipeline<S, B, R> {
    /// A pipeline over these adapters.
    pub fn new(
        store: Arc<S>,
        blocks: Arc<B>,
        fetcher: Fetcher,
        reporter: Arc<R>,
        config: WorkerConfig,
    ) -> Arc<Self> {
        Arc::new(Self { store, blocks, fetcher, reporter, config })
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
        while let Some(ended) = tasks.join_next().await {
            if shutdown.is_cancelled() {
                continue;
            }
            if let Err(e) = ended {
                error!(error = %e, "a worker stopped; restarting it");
            }
            tasks.spawn(Arc::clone(&self).worker(shutdown.clone()));
        }
    }

    async fn worker(self: Arc<Self>, shutdown: CancellationToken) {
        let lease_ms = self.config.lease.as_millis() as u64;
        while !shutdown.is_cancelled() {
            match self.store.claim(now_ms(), lease_ms).await {
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

    /// Runs `job` through its stages until it finishes, fails or is taken by someone else.
    async fn process(self: Arc<Self>, mut job: Job) {
        let lease_ms = self.config.lease.as_millis() as u64;
        let mut leased_at = now_ms();
        while let Some(stage) = job::stage(job.status) {
            let from = job::start(job.status);
            // Store the starting state when it differs (queued → fetching), and renew the lease
            // once half of it is used; otherwise the claim's lease stands.
            if from != job.status || now_ms().saturating_sub(leased_at) > lease_ms / 2 {
                leased_at = now_ms();
                match self.store.begin(&job, from, leased_at, lease_ms).await {
                    Ok(true) => job.status = from,
                    Ok(false) => return,
                    Err(e) => {
                        return warn!(error = %e, id = %job.request_id, "cannot store the stage");
                    }
                }
            }
            let me = Arc::clone(&self);
            let stage_job = job.clone();
            let mut stage_task = tokio::spawn(async move { me.run_stage(stage, &stage_job).await });
            // Heartbeats: the lease is renewed while the stage runs, so a long fetch keeps its
            // job, and a worker that dies stops renewing and lets another take it over.
            let mut beat = tokio::time::interval(Duration::from_millis((lease_ms / 3).max(1)));
            beat.tick().await;
            let joined = loop {
                tokio::select! {
                    joined = &mut stage_task => break joined,
                    _ = beat.tick() => {
                        leased_at = now_ms();
                        match self.store.heartbeat(&job, from, leased_at, lease_ms).await {
                            Ok(true) => {}
                            Ok(false) => {
                                stage_task.abort();
                                return debug!(id = %job.request_id, "job taken or moved on; stage stopped");
                            }
                            Err(e) => warn!(error = %e, id = %job.request_id, "cannot renew the lease"),
                        }
                    }
                }
            };
            let outcome = match joined {
                Ok(outcome) => outcome,
                Err(e) => {
                    Outcome::Failed { reason: format!("the job crashed: {e}"), permanent: false }
                }
            };
            let transition =
                match job::apply(from, job.attempts, &outcome, self.config.max_attempts) {
                    Ok(t) => t,
                    Err(e) => return error!(error = %e, id = %job.request_id, "invalid transition"),
                };
            match self.store.finish(&job, from, &transition, &outcome, now_ms()).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    return warn!(error = %e, id = %job.request_id, "cannot store the outcome");
                }
            }
            debug!(id = %job.request_id, from = from.as_str(), to = transition.status.as_str(), "job moved");
            if let Outcome::Failed { reason, .. } = &outcome {
                warn!(id = %job.request_id, status = transition.status.as_str(), %reason, "job failed");
                if transition.status != crate::model::RequestStatus::Failing {
                    return;
                }
                job.error = Some(reason.clone());
            }
            if let Outcome::Packed { piece_cid, padded_size, .. } = &outcome {
                job.piece_cid = Some(piece_cid.clone());
                job.padded_size = Some(*padded_size);
            }
            job.status = transition.status;
            job.attempts = transition.attempts;
            if transition.status == crate::model::RequestStatus::Reported {
                info!(id = %job.request_id, "pinned and reported");
            }
        }
    }

    async fn run_stage(&self, stage: Stage, job: &Job) -> Outcome {
        match stage {
            Stage::Fetch => match self.fetcher.fetch(&job.cid, &job.origins, &self.blocks).await {
                Ok(stats) => Outcome::Fetched { blocks: stats.blocks, bytes: stats.bytes },
                Err(e) => Outcome::Failed { reason: e.to_string(), permanent: e.is_permanent() },
            },
            Stage::Pack => {
                let blocks = Arc::clone(&self.blocks);
                let cid = job.cid.clone();
                let dir = self.config.packed_dir.clone();
                match tokio::task::spawn_blocking(move || pack(&blocks, &cid, &dir)).await {
                    Ok(Ok(p)) => Outcome::Packed {
                        piece_cid: p.piece_cid,
                        padded_size: p.padded_size,
                        car_size: p.car_size,
                    },
                    Ok(Err(e)) => Outcome::Failed { reason: e.to_string(), permanent: false },
                    Err(e) => Outcome::Failed { reason: e.to_string(), permanent: false },
                }
            }
            // A pin made through the Pinning Service API has no one on chain to tell.
            Stage::Report | Stage::ReportFailure if job.is_api_pin() => {
                Outcome::Reported { tx: None }
            }
            Stage::Report => self.report(job).await,
            Stage::ReportFailure => {
                let Ok(id) = job.request_id.parse::<U256>() else {
                    return Outcome::Failed { reason: "stored request id".into(), permanent: true };
                };
                let reason = job.error.clone().unwrap_or_else(|| "failed".into());
                match self.reporter.report_failed(&job.contract, id, reason).await {
                    Ok(Reported::Sent { tx }) => Outcome::Reported { tx: Some(tx) },
                    Ok(Reported::AlreadyThere) => Outcome::Reported { tx: None },
                    Ok(Reported::Closed) => Outcome::Closed,
                    Err(e) => Outcome::Failed { reason: e.to_string(), permanent: false },
                }
            }
        }
    }

    async fn report(&self, job: &Job) -> Outcome {
        let (Some(piece), Some(padded)) = (&job.piece_cid, job.padded_size) else {
            return Outcome::Failed { reason: "packed without a piece".into(), permanent: false };
        };
        let Ok(piece) = piece.parse::<PieceCid>() else {
            return Outcome::Failed { reason: format!("stored piece {piece:?}"), permanent: true };
        };
        let Ok(id) = job.request_id.parse::<U256>() else {
            return Outcome::Failed { reason: "stored request id".into(), permanent: true };
        };
        let v1 = piece.to_v1().to_cid().to_bytes();
        match self.reporter.report_pinned(&job.contract, id, v1.into(), padded).await {
            Ok(Reported::Sent { tx }) => Outcome::Reported { tx: Some(tx) },
            Ok(Reported::AlreadyThere) => Outcome::Reported { tx: None },
            Ok(Reported::Closed) => Outcome::Closed,
            Err(e) => Outcome::Failed { reason: e.to_string(), permanent: false },
        }
    }
}
