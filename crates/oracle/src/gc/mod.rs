//! Garbage collection: only what a live pin needs is kept.
//!
//! ```text
//!  gc_begin (a lease in the database; new holds refused) ──► wait for live holds to end
//!    mark:  every root of every RootSet (live jobs today; buckets and deals add theirs),
//!           walked through the store — and through its staging area, for a fetch under way —
//!           missing blocks skipped, any storage fault aborting the collection
//!           — but not the DAGs of pins whose pieces are now read from their providers,
//!           with `--cold-drop-blocks` (`GcPolicy::cold`; `block_pieces.cold_ms` recorded
//!           before anything goes)
//!    sweep: blocks not marked and last written before now − grace
//!           packed CARs no root claims (after the grace), or past their retention, or of
//!           pieces now read from their providers
//!           staging areas no live job owns, idle for a while
//!  gc_finish: totals (runs, blocks and bytes freed) kept for /metrics
//! ```
//!
//! A block is deleted only if no root reaches it when the collection runs and it was written
//! before the grace period began. What makes that safe against pins being made meanwhile: a
//! fetch decides its DAG is complete, and moves its blocks into the store, only while holding
//! collection off ([`GcGate`]), and the collection reads its roots only after every hold has
//! ended and while refusing new ones — so every job that counts as holding its DAG is among the
//! roots, with its DAG whole in the store, and every job that completes later checks its DAG
//! again after the collection. A job still fetching is a root too (its staging area leads the
//! walk), so a block it found in the store is kept. The grace period keeps what was written
//! recently whatever reaches it: an upload waiting for the pin that follows it.
//!
//! Cancelled, failed and quarantined jobs are not roots: cancelling a request on chain or
//! deleting a pin unpins it, and its blocks and CAR go at the next collection (unless another
//! pin needs them).

pub mod gate;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use cid::Cid;
use estuary_dag::{
    BlockError,
    source::from_fn,
    walk::{WalkError, WalkLimits, Walker, inline, links},
};
use futures::future::BoxFuture;

pub use gate::{GcGate, Hold};

use crate::{
    blockstore::{Blockstore, BlockstoreError, Listed},
    domain::{JobState, now_ms},
    fetch::stage_of,
    store::{Freed, LiveJob, Store, StoreError},
};

/// What the collection keeps besides the roots' blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Anything written more recently than this is kept, whatever reaches it.
    pub grace: Duration,
    /// A live pin's packed CAR is kept this long after it was written (`None`: while the pin
    /// lives). A deal's CAR is kept while the deal needs it, whatever this says.
    pub packed_retention: Option<Duration>,
    /// When a deal's CAR, and its pin's blocks, may go all the same: its piece held and
    /// verified at enough providers, read from them from then on (none: kept while the order
    /// lives).
    pub cold: Option<crate::domain::probe::ColdRules>,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(86_400),
            packed_retention: Some(Duration::from_secs(7 * 86_400)),
            cold: None,
        }
    }
}

/// How long a packed CAR a root claims is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Subject to [`GcPolicy::packed_retention`] (a pin's CAR: it can be packed again).
    Policy,
    /// While the root is there (a deal's CAR, which storage providers fetch).
    Always,
}

/// Something the collection keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// A DAG whose every block (as far as the store holds it) is kept.
    pub cid: Cid,
    /// The staging area of a fetch under way for it, walked before the store.
    pub stage: Option<String>,
    /// A packed CAR to keep (piece CID v2), and for how long.
    pub piece: Option<(String, Retention)>,
}

/// One page of roots, and where the next starts (`None`: this was the last).
#[derive(Debug, Clone, Default)]
pub struct RootPage {
    /// The roots.
    pub roots: Vec<Root>,
    /// Pass back to get the next page.
    pub next: Option<u64>,
}

/// A source of roots: live pins ([`LiveJobs`]); the deal engine adds buckets and deals.
pub trait RootSet: Send + Sync {
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// The page of roots starting at `cursor` (0 for the first).
    fn page<'a>(
        &'a self,
        store: &'a Store,
        cursor: u64,
    ) -> BoxFuture<'a, Result<RootPage, StoreError>>;
}

/// Jobs in a live state ([`crate::store::LIVE`]): their DAGs, their staging areas while they
/// fetch, and their packed CARs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveJobs;

const PAGE: u32 = 1000;

impl RootSet for LiveJobs {
    fn name(&self) -> &'static str {
        "live jobs"
    }

    fn page<'a>(
        &'a self,
        store: &'a Store,
        cursor: u64,
    ) -> BoxFuture<'a, Result<RootPage, StoreError>> {
        Box::pin(async move {
            let jobs = store.live_jobs(cursor, PAGE).await?;
            let next = (jobs.len() == PAGE as usize).then(|| jobs.last().map(|j| j.seq)).flatten();
            let roots = jobs.into_iter().filter_map(|job: LiveJob| {
                let cid = Cid::try_from(job.cid.as_slice()).ok()?;
                let fetching = matches!(job.state, JobState::Queued | JobState::Fetching);
                Some(Root {
                    cid,
                    stage: fetching.then(|| stage_of(&job.key)),
                    piece: job.piece_cid.map(|p| {
                        (p, if job.dealing { Retention::Always } else { Retention::Policy })
                    }),
                })
            });
            Ok(RootPage { roots: roots.collect(), next })
        })
    }
}

/// The pieces of buckets whose aggregate SPs may still download (open, closed and not yet
/// ordered, or ordered and the order sending or open): their CARs are kept whatever happened to
/// the pins (deleted, cancelled), since `/piece/{aggregate}` is assembled from them.
#[derive(Debug, Clone, Copy, Default)]
pub struct BucketPieces;

impl RootSet for BucketPieces {
    fn name(&self) -> &'static str {
        "bucket pieces"
    }

    fn page<'a>(
        &'a self,
        store: &'a Store,
        cursor: u64,
    ) -> BoxFuture<'a, Result<RootPage, StoreError>> {
        Box::pin(async move {
            let (pieces, next) = store.bucket_roots(cursor, u64::from(PAGE)).await?;
            let roots = pieces.into_iter().filter_map(|(piece, payload)| {
                Some(Root {
                    cid: payload.parse().ok()?,
                    stage: None,
                    piece: Some((piece, Retention::Always)),
                })
            });
            Ok(RootPage { roots: roots.collect(), next })
        })
    }
}

/// Pins split across pieces whose parts SPs may still download (a part not yet ordered, or
/// ordered and the order sending or open): their CARs and DAGs are kept whatever happened to
/// the pins, since `/piece/{part}` is read from the CAR.
#[derive(Debug, Clone, Copy, Default)]
pub struct SplitPieces;

impl RootSet for SplitPieces {
    fn name(&self) -> &'static str {
        "split pieces"
    }

    fn page<'a>(
        &'a self,
        store: &'a Store,
        cursor: u64,
    ) -> BoxFuture<'a, Result<RootPage, StoreError>> {
        Box::pin(async move {
            // The store pages by piece CID; the cursor here counts pages (0: the first).
            let mut after = String::new();
            for _ in 0..cursor {
                match store.split_roots(&after, u64::from(PAGE)).await?.1 {
                    Some(next) => after = next,
                    None => return Ok(RootPage { roots: Vec::new(), next: None }),
                }
            }
            let (pieces, next) = store.split_roots(&after, u64::from(PAGE)).await?;
            let roots = pieces.into_iter().filter_map(|(piece, payload)| {
                Some(Root {
                    cid: payload.parse().ok()?,
                    stage: None,
                    piece: Some((piece, Retention::Always)),
                })
            });
            Ok(RootPage { roots: roots.collect(), next: next.map(|_| cursor + 1) })
        })
    }
}

/// Why a collection stopped. Nothing is deleted unless the mark was complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// Another collection runs.
    #[error("another garbage collection is running")]
    Busy,
    /// The collection lost its lease (it took longer than the lease and another started).
    #[error("the collection lost its lease")]
    LostLease,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blockstore failed (nothing more was deleted).
    #[error(transparent)]
    Blockstore(#[from] BlockstoreError),
    /// A root's DAG could not be walked within the limits (nothing was deleted).
    #[error("marking {root}: {error}")]
    Mark {
        /// The root.
        root: Cid,
        /// Why.
        error: WalkError,
    },
    /// The packed CARs' directory could not be read or cleaned.
    #[error("packed CARs: {0}")]
    Packed(#[from] std::io::Error),
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// What it deleted.
    pub freed: Freed,
    /// Roots walked.
    pub roots: u64,
    /// Blocks marked as needed.
    pub marked: u64,
    /// Blocks no root needs, kept because they are younger than the grace period.
    pub young: u64,
    /// Staging areas removed, and their bytes.
    pub stages: (u64, u64),
}

/// Collects garbage in a blockstore and a packed-CAR directory.
pub struct Collector<B> {
    store: Store,
    blocks: Arc<B>,
    packed_dir: PathBuf,
    roots: Vec<Box<dyn RootSet>>,
    policy: GcPolicy,
    limits: WalkLimits,
    lease: Duration,
    holder: String,
}

impl<B> std::fmt::Debug for Collector<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").field("holder", &self.holder).finish_non_exhaustive()
    }
}

/// A staging area with no write for this long and no live job is an abandoned fetch's; a
/// temporary file in the packed CARs' directory unwritten for this long, an abandoned pack's
/// (whatever the grace period: a fetch or a pack under way writes often).
const IDLE: Duration = Duration::from_secs(600);

impl<B: Blockstore> Collector<B> {
    /// A collector of `blocks` and `packed_dir` keeping the roots of live jobs, under
    /// `policy`; each DAG is walked within `limits` (the fetch's: pinned DAGs were fetched
    /// within them).
    pub fn new(
        store: Store,
        blocks: Arc<B>,
        packed_dir: PathBuf,
        policy: GcPolicy,
        limits: WalkLimits,
    ) -> Self {
        Self {
            store,
            blocks,
            packed_dir,
            roots: vec![Box::new(LiveJobs), Box::new(BucketPieces), Box::new(SplitPieces)],
            policy,
            limits,
            lease: Duration::from_secs(600),
            holder: format!("gc-{}", hex::encode(rand::random::<[u8; 8]>())),
        }
    }

    /// Keeps the roots of `set` too.
    #[must_use]
    pub fn with_roots(mut self, set: Box<dyn RootSet>) -> Self {
        self.roots.push(set);
        self
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    async fn renew(&self) -> Result<(), GcError> {
        if self.store.gc_renew(&self.holder, now_ms(), self.lease_ms()).await? {
            Ok(())
        } else {
            Err(GcError::LostLease)
        }
    }

    /// Runs one collection.
    pub async fn run(&self) -> Result<GcReport, GcError> {
        if !self.store.gc_begin(&self.holder, now_ms(), self.lease_ms()).await? {
            return Err(GcError::Busy);
        }
        let mut report = GcReport::default();
        let result = self.collect(&mut report).await;
        let error = result.as_ref().err().map(ToString::to_string);
        self.store.gc_finish(&self.holder, report.freed, error.as_deref(), now_ms()).await?;
        match &result {
            Ok(()) => tracing::info!(
                blocks = report.freed.blocks,
                bytes = report.freed.bytes,
                cars = report.freed.cars,
                car_bytes = report.freed.car_bytes,
                marked = report.marked,
                young = report.young,
                "garbage collection done"
            ),
            Err(e) => tracing::warn!(error = %e, "garbage collection stopped"),
        }
        result.map(|()| report)
    }

    async fn collect(&self, report: &mut GcReport) -> Result<(), GcError> {
        // Writers that started before the collection finish first.
        while self.store.gc_live_holds(now_ms()).await? > 0 {
            self.renew().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cutoff =
            SystemTime::now().checked_sub(self.policy.grace).unwrap_or(SystemTime::UNIX_EPOCH);

        // Mark.
        let mut walker = Walker::empty(WalkLimits {
            max_blocks: u64::MAX,
            max_bytes: u64::MAX,
            max_visits: u64::MAX,
            max_queued: self.limits.max_queued.max(1 << 22),
            ..self.limits
        });
        // Deals' pieces now read from their providers: their CARs go, and, if asked, their
        // pins' DAGs are not walked (their blocks go too, unless another root reaches them).
        let cold: HashSet<String> = match &self.policy.cold {
            Some(rules) => {
                self.store.cold_pieces(now_ms(), rules, true).await?.into_iter().collect()
            }
            None => HashSet::new(),
        };
        let drop_blocks = self.policy.cold.is_some_and(|rules| rules.drop_blocks);
        let mut gone_cold: Vec<String> = Vec::new();
        let mut pieces: Vec<(String, Retention)> = Vec::new();
        let mut stages: HashSet<String> = HashSet::new();
        for set in &self.roots {
            let mut cursor = 0;
            loop {
                let mut page = set.page(&self.store, cursor).await?;
                report.roots += page.roots.len() as u64;
                for root in &page.roots {
                    if let Some(piece) = &root.piece {
                        pieces.push(piece.clone());
                    }
                    if let Some(stage) = &root.stage {
                        stages.insert(stage.clone());
                    }
                }
                page.roots.retain(|root| match &root.piece {
                    Some((piece, _))
                        if drop_blocks && root.stage.is_none() && cold.contains(piece) =>
                    {
                        gone_cold.push(piece.clone());
                        false
                    }
                    _ => true,
                });
                let blocks = Arc::clone(&self.blocks);
                walker = tokio::task::spawn_blocking(move || mark(walker, &page.roots, &*blocks))
                    .await
                    .expect("marking does not panic")?;
                self.renew().await?;
                match page.next {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
            tracing::debug!(set = set.name(), "roots marked");
        }
        report.marked = walker.stats().blocks;
        // Recorded before any block goes: the reconciler leaves these pins alone, reads come
        // from the providers, and a restore brings the blocks back.
        gone_cold.sort_unstable();
        gone_cold.dedup();
        self.store.mark_blocks_cold(&gone_cold, now_ms()).await?;

        // Sweep the blocks.
        let blocks = Arc::clone(&self.blocks);
        let (garbage, young) = tokio::task::spawn_blocking(move || {
            let mut garbage: Vec<Listed> = Vec::new();
            let mut young = 0u64;
            blocks
                .list(&mut |listed| {
                    if !walker.is_visited(&listed.cid) {
                        if listed.modified < cutoff {
                            garbage.push(listed);
                        } else {
                            young += 1;
                        }
                    }
                    true
                })
                .map(|()| (garbage, young))
        })
        .await
        .expect("listing does not panic")?;
        report.young = young;
        for batch in garbage.chunks(1000) {
            let blocks = Arc::clone(&self.blocks);
            let batch = batch.to_vec();
            let freed = tokio::task::spawn_blocking(move || {
                let mut freed = (0u64, 0u64);
                for listed in batch {
                    blocks.delete(&listed.cid)?;
                    freed.0 += 1;
                    freed.1 += listed.size;
                }
                Ok::<_, BlockstoreError>(freed)
            })
            .await
            .expect("deleting does not panic")?;
            report.freed.blocks += freed.0;
            report.freed.bytes += freed.1;
            self.renew().await?;
        }

        // Packed CARs (deals' CARs whose pieces are now read from their providers too).
        let (dir, retention) = (self.packed_dir.clone(), self.policy.packed_retention);
        let idle = SystemTime::now().checked_sub(IDLE).unwrap_or(SystemTime::UNIX_EPOCH);
        let (cars, car_bytes) = tokio::task::spawn_blocking(move || {
            sweep_packed(&dir, &pieces, &cold, retention, cutoff, idle)
        })
        .await
        .expect("sweeping packed CARs does not panic")?;
        report.freed.cars = cars;
        report.freed.car_bytes = car_bytes;

        // Staging areas of fetches that ended without removing them (killed, aborted).
        let blocks = Arc::clone(&self.blocks);
        report.stages = tokio::task::spawn_blocking(move || {
            let mut removed = (0u64, 0u64);
            for (name, newest) in blocks.stages()? {
                if !stages.contains(&name) && newest < idle {
                    removed.0 += 1;
                    removed.1 += blocks.remove_stage(&name)?;
                }
            }
            Ok::<_, BlockstoreError>(removed)
        })
        .await
        .expect("removing staging areas does not panic")?;
        Ok(())
    }
}

/// Walks `roots` into `walker` (whose visited set is the mark): through each root's staging
/// area first if it has one, then the store. A block the store does not hold is skipped (a
/// partial DAG keeps what it has); any other failure stops the collection.
fn mark<B: Blockstore + ?Sized>(
    mut walker: Walker,
    roots: &[Root],
    blocks: &B,
) -> Result<Walker, GcError> {
    for root in roots {
        walker.add_root(root.cid);
        let stage = root.stage.as_deref();
        let mut source = from_fn(|cid: &Cid| {
            let staged = match stage {
                Some(stage) => blocks.get_staged(stage, cid),
                None => Ok(None),
            };
            let found = match staged {
                Ok(Some(data)) => Ok(Some(data)),
                Ok(None) => blocks.get(cid),
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(data)) => Ok(data),
                Ok(None) => Err(BlockError::Missing(*cid)),
                Err(e) => Err(BlockError::Io { cid: *cid, source: Box::new(e) }),
            }
        });
        let failed = |error| GcError::Mark { root: root.cid, error };
        while let Some((cid, _)) = walker.peek().map_err(failed)? {
            let data = match inline(&cid) {
                Some(data) => data.to_vec(),
                None => match estuary_dag::BlockSource::block(&mut source, &cid) {
                    Ok(data) => data,
                    // Not held: left out (nothing below it is known from here; another root's
                    // staging area may still hold it).
                    Err(BlockError::Missing(_) | BlockError::Corrupt(_)) => {
                        walker.skip().map_err(failed)?;
                        continue;
                    }
                    Err(e) => return Err(failed(WalkError::Block(e))),
                },
            };
            // A block whose links cannot be read is kept, and its children are unknown.
            let children = links(&cid, &data).unwrap_or_default();
            walker.visit_links(data.len(), children).map_err(failed)?;
        }
    }
    Ok(walker)
}

/// Deletes the packed CARs (`<piece>.car`) no piece in `claimed` keeps — once written before
/// `grace` — the claimed ones under [`Retention::Policy`] older than `retention`, those of
/// `cold` pieces (read from their providers now), and other files (a pack's temporary file)
/// unwritten since `idle`. Returns how many files and bytes went.
fn sweep_packed(
    dir: &Path,
    claimed: &[(String, Retention)],
    cold: &HashSet<String>,
    retention: Option<Duration>,
    grace: SystemTime,
    idle: SystemTime,
) -> std::io::Result<(u64, u64)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let keep: std::collections::HashMap<&str, Retention> = {
        let mut keep = std::collections::HashMap::new();
        for (piece, how) in claimed {
            let entry = keep.entry(piece.as_str()).or_insert(*how);
            if *how == Retention::Always {
                *entry = Retention::Always;
            }
        }
        keep
    };
    let expired = retention.and_then(|r| SystemTime::now().checked_sub(r));
    let mut freed = (0u64, 0u64);
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let modified = meta.modified()?;
        let piece =
            name.strip_suffix(".car").filter(|p| p.parse::<estuary_piece::PieceCid>().is_ok());
        let delete = match piece.map(|piece| (keep.get(piece), cold.contains(piece))) {
            Some((_, true)) => true,
            Some((Some(Retention::Always), false)) => false,
            Some((Some(Retention::Policy), false)) => expired.is_some_and(|at| modified < at),
            // Nobody's.
            Some((None, false)) => modified < grace,
            // A temporary file: a pack under way, or one a crash left.
            None => modified < idle,
        };
        if delete {
            std::fs::remove_file(entry.path())?;
            freed.0 += 1;
            freed.1 += meta.len();
        }
    }
    Ok(freed)
}
