//! Faults of the oracle itself — its blockstore failing: a full disk, an S3 outage — are not
//! failures of the jobs that met them. The first job that meets one is released with its
//! attempt uncounted ([`Outcome::Interrupted`](crate::domain::Outcome::Interrupted)), and the
//! workers pause, all of them: no job is claimed while paused, so a full disk cannot quarantine
//! (or churn through) the backlog. A probe — a block written, read back and deleted — runs every
//! few seconds and resumes the workers once the store answers again. The pause is shown by
//! `/health`, `/status` and `/metrics` (`estuary_workers_paused`, `estuary_storage_faults_total`).

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::{blockstore::Blockstore, domain::now_ms};

/// Why and since when the workers are paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// The fault, as the store reported it (for operators: it can name paths and hosts).
    pub reason: String,
    /// When the workers paused (unix ms).
    pub since_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    paused: Option<Pause>,
    faults: u64,
}

/// The workers' fault state, shared with the API. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

impl Faults {
    /// No fault yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a fault and pauses the workers (the first reason is kept while paused).
    pub fn fault(&self, reason: &str) {
        let mut state = self.lock();
        state.faults += 1;
        if state.paused.is_none() {
            tracing::error!(%reason, "the blockstore failed: workers paused until it answers");
            state.paused = Some(Pause { reason: reason.to_owned(), since_ms: now_ms() });
        }
    }

    /// Resumes the workers.
    pub fn resume(&self) {
        if let Some(pause) = self.lock().paused.take() {
            tracing::info!(
                paused_ms = now_ms().saturating_sub(pause.since_ms),
                "blockstore answers again: workers resumed"
            );
        }
    }

    /// The pause, if the workers are paused.
    pub fn paused(&self) -> Option<Pause> {
        self.lock().paused.clone()
    }

    /// Faults met since start.
    pub fn total(&self) -> u64 {
        self.lock().faults
    }
}

/// Whether the store works: a small block written, read back and deleted.
pub fn probe<B: Blockstore + ?Sized>(store: &B) -> Result<(), String> {
    let data = format!("estuary blockstore probe {}", rand::random::<u64>()).into_bytes();
    let block = estuary_dag::Block::new(cid::Version::V1, estuary_dag::block::RAW, data);
    store.put_verified(&block.cid, &block.data).map_err(|e| e.to_string())?;
    let read = store.get(&block.cid).map_err(|e| e.to_string())?;
    store.delete(&block.cid).map_err(|e| e.to_string())?;
    match read {
        Some(bytes) if bytes == block.data => Ok(()),
        _ => Err("the probe block did not read back".into()),
    }
}
