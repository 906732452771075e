//! The gate between garbage collection and the writers it must not overlap.
//!
//! A writer that makes blocks part of a live pin — a fetch deciding its DAG is complete and
//! moving its staged blocks into the store, a backup copying the store — takes a [`Hold`]
//! through the [`GcGate`]; a collection waits for every hold to end and refuses new ones while
//! it runs (see `store::gc`: a lock in the database, so it spans processes). A hold is a lease,
//! renewed while it is held, so a writer that dies blocks collection for one lease at most.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{
    domain::now_ms,
    store::{Store, StoreError},
};

/// How often a waiting writer asks again while a collection runs.
const POLL: Duration = Duration::from_millis(200);

/// Takes holds against garbage collection.
#[derive(Debug, Clone)]
pub struct GcGate {
    store: Store,
    lease: Duration,
}

/// A hold: no collection runs while it is held. [`release`](Self::release) it; dropped, it is
/// released in the background (or, outside a runtime, its lease runs out).
#[derive(Debug)]
pub struct Hold {
    store: Store,
    holder: String,
    renew: JoinHandle<()>,
}

impl GcGate {
    /// A gate over `store`'s lock, with holds leased for `lease` and renewed every third of it.
    pub fn new(store: Store, lease: Duration) -> Self {
        Self { store, lease }
    }

    /// Waits until no collection runs, then holds collection off as `holder` (a name unique to
    /// the writer: its staging area's, say).
    pub async fn hold(&self, holder: &str) -> Result<Hold, StoreError> {
        loop {
            if let Some(hold) = self.try_hold(holder).await? {
                return Ok(hold);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Holds collection off as `holder` if no collection runs now (`None`: one does).
    pub async fn try_hold(&self, holder: &str) -> Result<Option<Hold>, StoreError> {
        let lease = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        if !self.store.gc_hold(holder, now_ms(), lease).await? {
            return Ok(None);
        }
        let (store, name) = (self.store.clone(), holder.to_owned());
        let every = (self.lease / 3).max(Duration::from_millis(10));
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // A collection cannot start while the hold is live, so renewing cannot fail
                // for that reason; a database error is retried at the next beat.
                if let Err(e) = store.gc_hold(&name, now_ms(), lease).await {
                    tracing::warn!(error = %e, holder = %name, "cannot renew a hold against GC");
                }
            }
        });
        Ok(Some(Hold { store: self.store.clone(), holder: holder.to_owned(), renew }))
    }
}

impl Hold {
    /// Ends the hold.
    pub async fn release(mut self) -> Result<(), StoreError> {
        self.renew.abort();
        let holder = std::mem::take(&mut self.holder);
        self.store.gc_release(&holder).await
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.renew.abort();
        if self.holder.is_empty() {
            return;
        }
        let (store, holder) = (self.store.clone(), std::mem::take(&mut self.holder));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.gc_release(&holder).await {
                    tracing::warn!(error = %e, %holder, "cannot release a hold against GC");
                }
            });
        }
    }
}
