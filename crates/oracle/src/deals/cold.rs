//! Cold reads: a piece the oracle no longer holds, read back from the providers that hold it,
//! each span checked before a byte of it is served.
//!
//! ```text
//!   GET /piece/{pieceCid} (Range)  ── not here ──► ColdReads::read
//!     the piece's levels (kept since it was ordered) + its replicas: active, at a provider
//!     with url=, the last verified first, the lost last
//!     spans covering the range, two in flight:
//!       GET {provider}/piece/{pieceCid} Range: span ──► hashed up to its node ──► equal?
//!         yes: served (trimmed to the range)   no, or no answer: the next provider
//!     the first span is read before the answer's head: nobody can serve it ──► 502
//!
//!   GET /ipfs/{cid}…, a Bitswap want  ── block not here ──► ColdReads::block
//!     its places in pieces whose pins' blocks went (piece_blocks ⋈ cold_blocks)
//!     ──► ColdReads::read of [place, place + length) ──► hashes to the CID? ──► served
//! ```
//!
//! - Where each block lies in a piece is recorded when the piece is read back before its copy
//!   goes ([`ReadBacks::pass`]); the collection then lets the pin's blocks go too, and
//!   [`ReadBacks::restore`] brings copy and blocks back from the providers once they falter.
//!
//! - What is served is what the piece's commitment says, whoever served it: a span that does
//!   not hash to its node is refused and read from the next provider
//!   (`estuary_cold_spans_refused_total{provider}`).
//! - Work is bounded: four cold reads at once (more answer busy), each with two spans in
//!   flight (at most 16 MiB each, [`crate::domain::probe::MAX_SPAN`]), each read capped at its
//!   span's bytes and deadlined. Verified spans are kept in memory (64 MiB, the least recently
//!   used going first, each `--cold-cache-secs`), so a range asked for again, or a small range
//!   of a large span, does not make the oracle read the span from a provider again.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::body::Bytes;
use cid::Cid;
use estuary_piece::PieceCid;
use futures::{StreamExt, stream::BoxStream};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tracing::warn;

use super::probes::{ProbeFailure, provider_client, read_span};
use crate::{
    blockstore::Blockstore,
    domain::{
        now_ms,
        probe::{ColdRules, PieceLevels},
    },
    store::{Store, StoreError},
};

/// Spans read ahead of the one being sent.
const IN_FLIGHT: usize = 2;
/// Bytes of a span sent at a time.
const FRAME: usize = 256 << 10;
/// Cold reads at once (each holds up to [`IN_FLIGHT`] spans); more are refused as busy.
const READS_AT_ONCE: usize = 4;
/// Pieces a block read from providers tries, at most.
const PLACES: u32 = 4;
/// The largest block read from providers (the fetch's own limit is smaller).
const MAX_BLOCK: u64 = 4 << 20;
/// Verified spans kept in memory, in bytes: a span asked for again (another range of it, the
/// same piece read again) is not read from a provider again.
const CACHE_BYTES: usize = 64 << 20;

/// A provider a piece can be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The miner actor id.
    pub provider: u64,
    /// Where it serves retrievals.
    pub url: String,
}

/// Why a cold read cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ColdError {
    /// No provider served the span as the commitment says (each one's failure is logged, not
    /// told: it may name a provider's private address).
    #[error("no provider served span {index} of piece {piece} as its commitment says")]
    Unserved {
        /// The piece.
        piece: String,
        /// The span.
        index: u64,
        /// Each provider's failure.
        why: String,
    },
    /// A read was cut off.
    #[error("a read from providers was cut off: {0}")]
    Cut(String),
    /// Writing the copy here failed.
    #[error("writing the copy here: {0}")]
    Local(std::io::Error),
    /// As many cold reads as the oracle makes at once are under way.
    #[error("too many reads from providers at once; try again shortly")]
    Busy,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What cold reads have done, by provider (for `/metrics`).
#[derive(Debug, Default)]
pub struct ColdStats {
    /// Verified bytes read from each provider.
    pub bytes: BTreeMap<u64, u64>,
    /// Spans each provider answered that did not check, or did not answer.
    pub refused: BTreeMap<u64, u64>,
    /// Spans served from the cache.
    pub cached: u64,
    /// Blocks read from providers for the gateway and Bitswap, each checked against its CID.
    pub blocks: u64,
}

/// A cold read under way: the payload's length, and the bytes of the range asked for.
pub struct ColdRead {
    /// The piece's payload bytes (what `/piece` serves in full).
    pub total: u64,
    /// The range's bytes, checked span by span.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl std::fmt::Debug for ColdRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdRead").field("total", &self.total).finish_non_exhaustive()
    }
}

/// Reads pieces the oracle no longer holds from the providers that do.
#[derive(Debug)]
pub struct ColdReads {
    store: Store,
    http: reqwest::Client,
    urls: HashMap<u64, String>,
    stats: Mutex<ColdStats>,
    reads: Arc<Semaphore>,
    cache: SpanCache,
}

/// A cached span: its piece and index, when it was read, its bytes.
type Cached = ((String, u64), Instant, Bytes);

/// Verified spans, the most recently used last, within [`CACHE_BYTES`], each kept `ttl`.
#[derive(Debug)]
struct SpanCache {
    entries: Mutex<(VecDeque<Cached>, usize)>,
    ttl: Duration,
}

impl SpanCache {
    fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::default(), ttl }
    }

    fn get(&self, piece: &str, index: u64) -> Option<Bytes> {
        let mut guard = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (entries, total) = &mut *guard;
        let at = entries.iter().position(|((p, i), _, _)| p == piece && *i == index)?;
        let entry = entries.remove(at)?;
        if entry.1.elapsed() >= self.ttl {
            *total -= entry.2.len();
            return None;
        }
        let bytes = entry.2.clone();
        entries.push_back(entry);
        Some(bytes)
    }

    fn put(&self, piece: &str, index: u64, bytes: Bytes) {
        if bytes.len() > CACHE_BYTES || self.ttl.is_zero() {
            return;
        }
        let mut guard = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (entries, total) = &mut *guard;
        if let Some(at) = entries.iter().position(|((p, i), _, _)| p == piece && *i == index)
            && let Some(old) = entries.remove(at)
        {
            *total -= old.2.len();
        }
        while *total + bytes.len() > CACHE_BYTES {
            let Some((_, _, old)) = entries.pop_front() else { break };
            *total -= old.len();
        }
        *total += bytes.len();
        entries.push_back(((piece.to_owned(), index), Instant::now(), bytes));
    }
}

/// One read's shared state: the piece, its levels, its sources and the one that served last.
#[derive(Debug)]
struct Reading {
    reads: Arc<ColdReads>,
    piece: String,
    levels: Arc<PieceLevels>,
    sources: Vec<Source>,
    preferred: AtomicUsize,
}

impl ColdReads {
    /// Cold reads from the providers in `urls` (their `url=`), each read within `timeout`,
    /// verified spans kept in memory for `cache_ttl` (zero: none kept).
    pub fn new(
        store: Store,
        urls: HashMap<u64, String>,
        timeout: Duration,
        cache_ttl: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            store,
            http: provider_client(timeout)?,
            urls,
            stats: Mutex::default(),
            reads: Arc::new(Semaphore::new(READS_AT_ONCE)),
            cache: SpanCache::new(cache_ttl),
        })
    }

    /// What cold reads have done so far.
    pub fn stats(&self) -> ColdStats {
        let stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ColdStats {
            bytes: stats.bytes.clone(),
            refused: stats.refused.clone(),
            cached: stats.cached,
            blocks: stats.blocks,
        }
    }

    /// The block `cid` of a pin whose blocks are no longer kept here, read from the providers
    /// of a piece holding it (its place in the piece recorded when the piece was read back)
    /// and checked against the CID; `None` if no such piece holds it.
    pub async fn block(self: &Arc<Self>, cid: &Cid) -> Result<Option<Vec<u8>>, ColdError> {
        let places = self.store.cold_block_places(&cid.to_bytes(), PLACES).await?;
        let mut last = None;
        for place in places {
            if place.len > MAX_BLOCK {
                continue;
            }
            let Ok(piece) = place.piece.parse::<PieceCid>() else { continue };
            let end = place.at.saturating_add(place.len);
            let read =
                match self.read(&piece, |total| (end <= total).then_some((place.at, end))).await {
                    Ok(Some(read)) => read,
                    Ok(None) => continue,
                    Err(e @ ColdError::Busy) => return Err(e),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
            let mut data = Vec::with_capacity(usize::try_from(place.len).unwrap_or(0));
            let mut body = read.body;
            while let Some(frame) = body.next().await {
                match frame {
                    Ok(frame) => data.extend_from_slice(&frame),
                    Err(e) => {
                        last = Some(ColdError::Cut(e.to_string()));
                        break;
                    }
                }
            }
            // The spans are checked against the piece; the block against its CID all the same
            // (a place recorded wrong would serve another block's bytes).
            if data.len() as u64 == place.len && estuary_dag::car::verify(cid, &data).is_ok() {
                self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).blocks += 1;
                return Ok(Some(data));
            }
            if last.is_none() {
                warn!(%cid, piece = %place.piece, "cold block: its place holds other bytes");
            }
        }
        match last {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The providers `piece` can be read from: its active replicas at a provider with a
    /// `url=`, the last verified first and the lost last (every span is checked, so asking
    /// one more costs time only).
    pub async fn sources(&self, piece: &str) -> Result<Vec<Source>, StoreError> {
        let mut held: Vec<_> = self
            .store
            .probe_targets_of(Some(piece))
            .await?
            .into_iter()
            .filter_map(|t| {
                let url = self.urls.get(&t.provider)?;
                let lost = t.probe.is_some_and(|v| v.lost());
                let verified = t.probe.is_some_and(|v| v.last_probe_ok);
                let failures = t.probe.map_or(0, |v| v.failures_in_a_row);
                Some(((lost, !verified, failures, t.provider), url.clone()))
            })
            .collect();
        held.sort();
        let mut sources: Vec<Source> = Vec::new();
        for ((_, _, _, provider), url) in held {
            if !sources.iter().any(|s| s.provider == provider) {
                sources.push(Source { provider, url });
            }
        }
        Ok(sources)
    }

    /// Bytes `[start, end)` of `piece`'s payload (all of it if `range` is `None`), read from the
    /// providers that hold it; `None` if the oracle cannot (no levels kept, no provider to
    /// read from, or a range past the payload's end). The first span is read before this
    /// returns, so a piece nobody serves is an error, not a cut body.
    pub async fn read(
        self: &Arc<Self>,
        piece: &PieceCid,
        range: impl FnOnce(u64) -> Option<(u64, u64)>,
    ) -> Result<Option<ColdRead>, ColdError> {
        let name = piece.to_string();
        let Some(levels) = self.store.piece_levels(&name).await? else { return Ok(None) };
        // Checked against the piece itself: a row that is not this piece's checks nothing.
        if !levels.is_of(piece) {
            warn!(piece = %name, "cold read: the kept levels are not this piece's; not served");
            return Ok(None);
        }
        let sources = self.sources(&name).await?;
        if sources.is_empty() {
            return Ok(None);
        }
        let Some((start, end)) = range(levels.payload_size) else { return Ok(None) };
        self.read_from(name, Arc::new(levels), sources, (start, end)).await
    }

    /// Bytes `[start, end)` of the payload of `piece` (whose levels are `levels`) read from
    /// `sources` in turn, each span checked; `None` for a range outside the payload. The first
    /// span is read before this returns.
    pub async fn read_from(
        self: &Arc<Self>,
        piece: String,
        levels: Arc<PieceLevels>,
        sources: Vec<Source>,
        (start, end): (u64, u64),
    ) -> Result<Option<ColdRead>, ColdError> {
        let total = levels.payload_size;
        if start >= end || end > total || sources.is_empty() {
            return Ok(None);
        }
        // Held until the body is dropped: sent, or the client gone.
        let permit = Arc::clone(&self.reads).try_acquire_owned().map_err(|_| ColdError::Busy)?;
        let reading = Arc::new(Reading {
            reads: Arc::clone(self),
            piece,
            levels,
            sources,
            preferred: AtomicUsize::new(0),
        });
        let (first, last) = (reading.levels.index_of(start), reading.levels.index_of(end - 1));
        let head = Arc::clone(&reading).span(first, start, end).await?;
        // Each span read by a task of its own, so reads ahead go on while a slow client drains
        // the span before; dropped with the body (the client gone), they stop.
        let rest = futures::stream::iter(first + 1..=last)
            .map(move |index| {
                let reading = Arc::clone(&reading);
                AbortOnDropHandle::new(tokio::spawn(reading.span(index, start, end)))
            })
            .buffered(IN_FLIGHT)
            .map(|joined| match joined {
                Ok(read) => read.map_err(std::io::Error::other),
                Err(e) => Err(std::io::Error::other(e)),
            });
        let body = futures::stream::once(async move { Ok(head) })
            .chain(rest)
            // Sent in 256 KiB frames, not a span (up to 16 MiB) at once.
            .flat_map(|read| {
                let frames: Vec<std::io::Result<Bytes>> = match read {
                    Ok(span) => (0..span.len())
                        .step_by(FRAME)
                        .map(|at| Ok(span.slice(at..(at + FRAME).min(span.len()))))
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(frames)
            })
            .map(move |chunk| {
                let _held = &permit;
                chunk
            })
            .boxed();
        Ok(Some(ColdRead { total, body }))
    }

    fn cached(&self) {
        self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).cached += 1;
    }

    fn count(&self, provider: u64, bytes: Option<u64>) {
        let mut stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match bytes {
            Some(n) => *stats.bytes.entry(provider).or_default() += n,
            None => *stats.refused.entry(provider).or_default() += 1,
        }
    }
}

impl Reading {
    /// Span `index`, checked, trimmed to `[start, end)`: from the provider that served last,
    /// then the others in turn.
    async fn span(self: Arc<Self>, index: u64, start: u64, end: u64) -> Result<Bytes, ColdError> {
        let (a, _) = self.levels.span(index).unwrap_or((0, 0));
        let trim = |bytes: Bytes| {
            let from = usize::try_from(start.saturating_sub(a)).unwrap_or(usize::MAX);
            let to = usize::try_from(end.saturating_sub(a)).unwrap_or(usize::MAX);
            bytes.slice(from.min(bytes.len())..to.min(bytes.len()))
        };
        if let Some(bytes) = self.reads.cache.get(&self.piece, index) {
            self.reads.cached();
            return Ok(trim(bytes));
        }
        let first = self.preferred.load(Ordering::Relaxed);
        let mut why = Vec::new();
        for k in 0..self.sources.len() {
            let at = (first + k) % self.sources.len();
            let source = &self.sources[at];
            match read_span(&self.reads.http, &source.url, &self.piece, &self.levels, index).await {
                Ok((bytes, _)) => {
                    self.reads.count(source.provider, Some(bytes.len() as u64));
                    self.preferred.store(at, Ordering::Relaxed);
                    let bytes = Bytes::from(bytes);
                    self.reads.cache.put(&self.piece, index, bytes.clone());
                    return Ok(trim(bytes));
                }
                Err(e) => {
                    if !matches!(e, ProbeFailure::Unchecked(_)) {
                        self.reads.count(source.provider, None);
                    }
                    warn!(piece = %self.piece, index, provider = source.provider, url = %source.url,
                          error = %e, "cold read: span refused; the next provider");
                    why.push(format!("f0{}: {e}", source.provider));
                }
            }
        }
        let why = why.join("; ");
        warn!(piece = %self.piece, index, %why, "cold read: no provider served the span");
        Err(ColdError::Unserved { piece: self.piece.clone(), index, why })
    }
}

/// The blockstore as a block source for blocking walks (the gateway's), reading a block not
/// kept here from the providers of a piece holding it ([`ColdReads::block`]). Used on the
/// blocking pool only: a read from providers blocks the thread until it ends.
pub struct ColdSource<'a, B: ?Sized> {
    blocks: &'a B,
    cold: Option<(&'a Arc<ColdReads>, tokio::runtime::Handle)>,
}

impl<'a, B: Blockstore + ?Sized> ColdSource<'a, B> {
    /// `blocks`, and what is not there read from providers by `cold` (`None`: nothing is).
    /// Must be made within the runtime (on its blocking pool).
    pub fn new(blocks: &'a B, cold: Option<&'a Arc<ColdReads>>) -> Self {
        let cold = cold.and_then(|c| Some((c, tokio::runtime::Handle::try_current().ok()?)));
        Self { blocks, cold }
    }
}

impl<B: Blockstore + ?Sized> estuary_dag::BlockSource for ColdSource<'_, B> {
    type Bytes = Vec<u8>;

    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, estuary_dag::BlockError> {
        use estuary_dag::BlockError;
        match self.blocks.get(cid) {
            Ok(Some(data)) => Ok(data),
            Ok(None) => match &self.cold {
                Some((cold, handle)) => match handle.block_on(cold.block(cid)) {
                    Ok(Some(data)) => Ok(data),
                    Ok(None) => Err(BlockError::Missing(*cid)),
                    Err(e) => Err(BlockError::Io { cid: *cid, source: Box::new(e) }),
                },
                None => Err(BlockError::Missing(*cid)),
            },
            Err(e) => Err(BlockError::Io { cid: *cid, source: Box::new(e) }),
        }
    }
}

/// Keeps the drop policy safe both ways:
/// - **before a copy goes**, the piece is read back whole from its providers, every span checked
///   against its levels (checked against the piece CID); a piece that reads back is recorded
///   (`cold_checks`) with where each of its blocks lies (`piece_blocks`), and garbage
///   collection drops only pieces read back within the window (their CARs, and their pins'
///   blocks);
/// - **once a dropped piece's replicas no longer meet the rules** (a provider stopped serving,
///   a replica lost or ended), its copy is packed again from the pin's blocks, checked to be
///   the same piece, or, once the blocks went too, read back whole from the providers still
///   serving it, its blocks put back first.
#[derive(Debug)]
pub struct ReadBacks<B> {
    store: Store,
    blocks: Arc<B>,
    reads: Arc<ColdReads>,
    rules: ColdRules,
    packed_dir: PathBuf,
    tick: Duration,
}

impl<B: Blockstore> ReadBacks<B> {
    /// Read-backs of the pieces whose copy in `packed_dir` `rules` would let go, and copies
    /// packed again from `blocks`, every `tick`.
    pub fn new(
        store: Store,
        blocks: Arc<B>,
        reads: Arc<ColdReads>,
        rules: ColdRules,
        packed_dir: PathBuf,
        tick: Duration,
    ) -> Self {
        Self { store, blocks, reads, rules, packed_dir, tick }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.step() => if let Err(e) = result {
                    warn!(error = %e, "read-back: a step failed; retried");
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.tick) => {}
            }
        }
    }

    /// One step: the pieces whose replicas meet the rules (read once), then a read-back and a
    /// restore.
    pub async fn step(&self) -> Result<(), ColdError> {
        let held = self.store.cold_pieces(now_ms(), &self.rules, false).await?;
        self.pass(&held).await?;
        self.restore(&held).await?;
        Ok(())
    }

    /// Packs again the copy of the first pinned single-CAR piece whose copy is gone and whose
    /// replicas no longer meet the rules (are not in `held`): from the pin's blocks, or, once
    /// they are gone too, from the piece's providers (blocks and all). Returns it if it was.
    pub async fn restore(&self, held: &[String]) -> Result<Option<String>, ColdError> {
        let cold_blocks = self.store.cold_block_pieces().await?;
        for (name, root) in self.store.pinned_single_cars().await? {
            if held.contains(&name) || self.packed_dir.join(format!("{name}.car")).exists() {
                continue;
            }
            if cold_blocks.contains(&name) {
                // One a pass, whatever came of it.
                return self.restore_from_providers(&name).await;
            }
            let (blocks, dir) = (Arc::clone(&self.blocks), self.packed_dir.clone());
            let packed = tokio::task::spawn_blocking(move || {
                crate::pipeline::pack::pack(&*blocks, &root, &dir)
            })
            .await;
            match packed {
                Ok(Ok(packed)) if packed.piece_cid == name => {
                    tracing::info!(piece = %name, "restore: copy packed again from the pin's blocks");
                    return Ok(Some(name));
                }
                Ok(Ok(packed)) => {
                    warn!(piece = %name, packed = %packed.piece_cid,
                          "restore: the blocks pack to another piece; left for collection");
                }
                Ok(Err(e)) => warn!(piece = %name, error = %e, "restore: not packed"),
                Err(e) => warn!(piece = %name, error = %e, "restore: packing failed"),
            }
            // One a pass, whatever came of it.
            return Ok(None);
        }
        Ok(None)
    }

    /// Reads `name` whole from its providers (every span checked), puts its blocks back in
    /// the store (each checked against its CID), then its copy; returns it if it was.
    async fn restore_from_providers(&self, name: &str) -> Result<Option<String>, ColdError> {
        let Ok(piece) = name.parse::<PieceCid>() else { return Ok(None) };
        let Some(read) = self.reads.read(&piece, |total| Some((0, total))).await? else {
            warn!(piece = %name, "restore: no provider to read the piece from; the blocks stay gone");
            return Ok(None);
        };
        let tmp = tempfile::NamedTempFile::new_in(&self.packed_dir).map_err(io)?;
        let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        let mut body = read.body;
        let mut bytes = 0u64;
        while let Some(frame) = body.next().await {
            match frame {
                Ok(frame) => {
                    tokio::io::AsyncWriteExt::write_all(&mut out, &frame).await.map_err(io)?;
                    bytes += frame.len() as u64;
                }
                Err(e) => {
                    warn!(piece = %name, error = %e, "restore: the read was cut off; tried again");
                    return Ok(None);
                }
            }
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(io)?;
        if bytes != read.total {
            return Ok(None);
        }
        // Blocks put back and the mark lifted with collection held off: a collection that
        // found the piece cold does not sweep blocks put back meanwhile.
        let hold = crate::gc::GcGate::new(self.store.clone(), Duration::from_secs(60))
            .hold(&format!("restore-{name}"))
            .await?;
        let blocks = Arc::clone(&self.blocks);
        let imported = tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            each_block(tmp.path(), |cid, data, _| {
                blocks.put(cid, data).map_err(|e| std::io::Error::other(e.to_string()))?;
                n += 1;
                Ok(())
            })?;
            Ok::<_, std::io::Error>((tmp, n))
        })
        .await
        .map_err(io)?;
        let (tmp, n) = match imported {
            Ok(done) => done,
            Err(e) => {
                warn!(piece = %name, error = %e, "restore: the piece's blocks not put back");
                return Ok(None);
            }
        };
        // Blocks first, then the mark, then the copy: a crash in between packs it again from
        // the blocks.
        self.store.mark_blocks_hot(name).await?;
        tmp.persist(self.packed_dir.join(format!("{name}.car"))).map_err(|e| io(e.error))?;
        hold.release().await?;
        tracing::info!(piece = %name, blocks = n, bytes, "restore: copy and blocks read back from the providers");
        Ok(Some(name.to_owned()))
    }

    /// One pass: the first piece that needs a read-back is read back; returns it if it read
    /// back whole.
    pub async fn pass(&self, held: &[String]) -> Result<Option<String>, ColdError> {
        let now = now_ms();
        let since = now.saturating_sub(self.rules.verified_within_ms);
        for name in held {
            if !self.packed_dir.join(format!("{name}.car")).exists()
                || (self.store.cold_checked_since(name, since).await?
                    && self.store.piece_blocks_kept(name).await?)
            {
                continue;
            }
            let Ok(piece) = name.parse::<PieceCid>() else { continue };
            let Some(read) = self.reads.read(&piece, |total| Some((0, total))).await? else {
                continue;
            };
            let mut body = read.body;
            let mut bytes = 0u64;
            while let Some(frame) = body.next().await {
                match frame {
                    Ok(frame) => bytes += frame.len() as u64,
                    Err(e) => {
                        warn!(piece = %name, error = %e, "read-back: cut off; the copy stays");
                        return Ok(None);
                    }
                }
            }
            if bytes != read.total {
                return Ok(None);
            }
            // Where each block lies in the piece, so the pin's blocks can go too.
            let path = self.packed_dir.join(format!("{name}.car"));
            let places = tokio::task::spawn_blocking(move || {
                let mut places = Vec::new();
                each_block(&path, |cid, data, at| {
                    places.push((cid.to_bytes(), at, data.len() as u64));
                    Ok(())
                })
                .map(|()| places)
            })
            .await;
            match places {
                Ok(Ok(places)) => self.store.put_piece_blocks(name, &places).await?,
                Ok(Err(e)) => {
                    warn!(piece = %name, error = %e, "read-back: the copy's blocks not read; it stays");
                    return Ok(None);
                }
                Err(e) => {
                    warn!(piece = %name, error = %e, "read-back: reading the copy's blocks failed");
                    return Ok(None);
                }
            }
            self.store.record_cold_check(name, now_ms()).await?;
            tracing::info!(piece = %name, bytes, "read-back: whole and checked; the copy may go");
            return Ok(Some(name.clone()));
        }
        Ok(None)
    }
}

fn io(e: impl std::fmt::Display) -> ColdError {
    ColdError::Local(std::io::Error::other(e.to_string()))
}

/// Calls `each` with every block of the CAR at `path` (checked against its CID), and the first
/// byte of its data in the file.
fn each_block(
    path: &std::path::Path,
    mut each: impl FnMut(&Cid, &[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use estuary_dag::car::{CarDecoder, CarItem, CarLimits};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut decoder = CarDecoder::new(CarLimits::default());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        while let Some(item) = decoder.next_item().map_err(std::io::Error::other)? {
            if let CarItem::Block(block) = item {
                let at = decoder.offset() - block.data.len() as u64;
                each(&block.cid, &block.data, at)?;
            }
        }
        let n = file.read(&mut buf)?;
        if n == 0 {
            return decoder.finish().map_err(std::io::Error::other);
        }
        decoder.push(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_cache_keeps_the_most_recently_used_within_its_bytes() {
        let cache = SpanCache::new(Duration::from_secs(60));
        let span = |n: u8| Bytes::from(vec![n; CACHE_BYTES / 4]);
        for i in 0..4 {
            cache.put("p", i, span(i as u8));
        }
        assert!(cache.get("p", 0).is_some(), "used again: the most recent now");
        cache.put("p", 4, span(4));
        assert!(cache.get("p", 1).is_none(), "the least recently used went");
        assert_eq!(cache.get("p", 0).unwrap()[0], 0);
        assert_eq!(cache.get("p", 4).unwrap()[0], 4);
        assert!(cache.get("q", 4).is_none(), "by piece");
        cache.put("p", 9, Bytes::from(vec![0; CACHE_BYTES + 1]));
        assert!(cache.get("p", 9).is_none(), "larger than the cache: not kept");
        let total = cache.entries.lock().unwrap().1;
        assert!(total <= CACHE_BYTES);
        // Past their time, spans are read again; a cache of no time keeps nothing.
        let brief = SpanCache::new(Duration::from_millis(1));
        brief.put("p", 0, span(0));
        std::thread::sleep(Duration::from_millis(5));
        assert!(brief.get("p", 0).is_none());
        assert_eq!(brief.entries.lock().unwrap().1, 0);
        let none = SpanCache::new(Duration::ZERO);
        none.put("p", 0, span(0));
        assert!(none.get("p", 0).is_none());
    }
}
