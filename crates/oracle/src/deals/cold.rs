//! Cold reads: a piece the oracle no longer holds, read back from the providers that hold it,
//! each span checked before a byte of it is served.
//!
//! ```text
//!   GET /piece/{pieceCid} (Range)  ── not here ──► ColdReads::read
//!     the piece's levels (kept since it was ordered) + its replicas: active, at a provider
//!     with url= or a registered URL, the last verified first, the lost last
//!     spans covering the range, two in flight:
//!       GET {provider}/piece/{pieceCid} Range: span ──► hashed up to its node ──► equal?
//!         yes: served (trimmed to the range)   no, or no answer: the next provider
//!     the first span is read before the answer's head: nobody can serve it ──► 502
//!
//!   GET /ipfs/{cid}…, a Bitswap want  ── block not here ──► ColdReads::block
//!     its places in pieces whose pins' blocks went (piece_blocks, block_pieces.cold_ms)
//!     ──► ColdReads::read of [place, place + length) ──► hashes to the CID? ──► served
//!
//!   ReadBacks::restore: a dropped copy whose replicas no longer meet the rules
//!     the pin's blocks here ──► pack_again (packs to the same piece CID?) ──► copy   [pack]
//!     its blocks gone too ──► ColdReads::read_to_keep, the piece whole (every span checked)
//!       ──► [GC held] blocks put back (each against its CID), marked hot, copy  [providers]
//!     no provider gives it back (none serves it, a read refused or cut off)
//!       ──► the pin's DAG fetched as a pin's fetch does (crate::fetch, its limits): the
//!           configured gateways, then the origins the piece's live pins named (Bitswap
//!           peers, gateways); a minute plus the payload at 1 MiB/s, twice the payload free
//!       ──► [GC held] blocks moved into the store (each against its CID), marked hot
//!       ──► pack_again (the same piece CID?) ──► copy                              [network]
//!     neither ──► waits, doubling from a tick up to an hour (both failures logged)
//!                                  [source]: estuary_cold_restores_total{source}
//! ```
//!
//! - Where each block lies in a piece is recorded when the piece is read back before its copy
//!   goes ([`ReadBacks::pass`]); the collection then lets the pin's blocks go too, and
//!   [`ReadBacks::restore`] brings copy and blocks back from the providers once they falter,
//!   or, if no provider gives the piece back, from the IPFS network the pin was fetched from.
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tracing::warn;

use super::{
    probes::{ProbeFailure, read_span},
    registry::{ProviderClients, ProviderUrl, ProviderUrls},
};
use crate::{
    blockstore::Blockstore,
    domain::{
        now_ms,
        probe::{ColdRules, PieceLevels},
    },
    fetch::{FetchError, FetchJob, Fetcher, NetPolicy},
    store::{Store, StoreError},
};

/// Spans read ahead of the one being sent.
const IN_FLIGHT: usize = 2;
/// Bytes of a span sent at a time.
const FRAME: usize = 256 << 10;
/// Cold reads at once (each holds up to [`IN_FLIGHT`] spans); more are refused as busy.
const READS_AT_ONCE: usize = 4;
/// How long a piece's levels and sources are kept in memory (a CAR walk reads many blocks of
/// one piece), and how many pieces at most.
const PIECE_TTL: Duration = Duration::from_secs(10);
const PIECES: usize = 64;
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
    /// Whether the provider registered `url` (read under the network policy) rather than the
    /// operator configuring it.
    pub registered: bool,
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
    /// Blocks read from providers (for the gateway, Bitswap, and cold pins pinned again),
    /// each checked against its CID.
    pub blocks: u64,
    /// Copies brought back by [`ReadBacks::restore`], by where from.
    pub restores: BTreeMap<RestoreSource, u64>,
}

/// Where [`ReadBacks::restore`] brought a copy back from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestoreSource {
    /// Packed again from the pin's blocks, still here.
    Pack,
    /// Read back whole from the piece's providers, the pin's blocks with it.
    Providers,
    /// The pin's DAG fetched from the IPFS network (its origins, the configured gateways),
    /// then packed again.
    Network,
}

impl RestoreSource {
    /// Every source, in order.
    pub const ALL: [Self; 3] = [Self::Pack, Self::Providers, Self::Network];

    /// Its name (the metric's `source` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pack => "pack",
            Self::Providers => "providers",
            Self::Network => "network",
        }
    }
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

/// A piece's levels and sources, when they were read.
type PieceEntry = (Instant, Arc<PieceLevels>, Vec<Source>);

/// Reads pieces the oracle no longer holds from the providers that do.
#[derive(Debug)]
pub struct ColdReads {
    store: Store,
    http: ProviderClients,
    urls: Arc<ProviderUrls>,
    stats: Mutex<ColdStats>,
    reads: Arc<Semaphore>,
    keeping: Arc<Semaphore>,
    cache: SpanCache,
    pieces: Mutex<HashMap<String, PieceEntry>>,
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
    /// Cold reads from the providers in `urls` (their `url=`, or what they registered: read
    /// under `net`), each read within `timeout`, verified spans kept in memory for
    /// `cache_ttl` (zero: none kept).
    pub fn new(
        store: Store,
        urls: Arc<ProviderUrls>,
        net: Arc<NetPolicy>,
        timeout: Duration,
        cache_ttl: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            store,
            http: ProviderClients::new(timeout, net)?,
            urls,
            stats: Mutex::default(),
            reads: Arc::new(Semaphore::new(READS_AT_ONCE)),
            keeping: Arc::new(Semaphore::new(1)),
            cache: SpanCache::new(cache_ttl),
            pieces: Mutex::default(),
        })
    }

    /// Where the providers serve (the operator's `url=`, and what they registered).
    pub fn urls(&self) -> &ProviderUrls {
        &self.urls
    }

    /// What cold reads have done so far.
    pub fn stats(&self) -> ColdStats {
        let stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ColdStats {
            bytes: stats.bytes.clone(),
            refused: stats.refused.clone(),
            cached: stats.cached,
            blocks: stats.blocks,
            restores: stats.restores.clone(),
        }
    }

    /// Counts a copy brought back from `source`.
    fn restored(&self, source: RestoreSource) {
        let mut stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *stats.restores.entry(source).or_default() += 1;
    }

    /// The block `cid` of a pin whose blocks are no longer kept here, read from the providers
    /// of a piece holding it (its place in the piece recorded when the piece was read back)
    /// and checked against the CID; `None` if no such piece holds it. For clients (the gateway,
    /// Bitswap): with one of the reads made at once, or [`ColdError::Busy`].
    pub async fn block(self: &Arc<Self>, cid: &Cid) -> Result<Option<Vec<u8>>, ColdError> {
        self.block_with(cid, false).await
    }

    /// [`Self::block`], for keeping a copy (a cold pin pinned again): with the slot read-backs
    /// and restores share, waited for, so it never takes a client's read.
    pub async fn block_to_keep(self: &Arc<Self>, cid: &Cid) -> Result<Option<Vec<u8>>, ColdError> {
        self.block_with(cid, true).await
    }

    async fn block_with(
        self: &Arc<Self>,
        cid: &Cid,
        keep: bool,
    ) -> Result<Option<Vec<u8>>, ColdError> {
        let places = self.store.cold_block_places(&cid.to_bytes(), PLACES).await?;
        let mut last = None;
        for place in places {
            if place.len == 0 {
                // Nothing to read: the empty block, if that is what the CID says.
                if estuary_dag::car::verify(cid, &[]).is_ok() {
                    return Ok(Some(Vec::new()));
                }
                continue;
            }
            if place.len > MAX_BLOCK {
                continue;
            }
            let Ok(piece) = place.piece.parse::<PieceCid>() else { continue };
            let end = place.at.saturating_add(place.len);
            let range = |total| (end <= total).then_some((place.at, end));
            let read = if keep {
                self.read_keeping(&piece, range).await
            } else {
                self.read(&piece, range).await
            };
            let read = match read {
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

    /// Whether the block `cid` is of a pin whose blocks went, its piece held by providers
    /// (what Bitswap's want-have is answered from, without reading it).
    pub async fn holds(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(!self.store.cold_block_places(&cid.to_bytes(), 1).await?.is_empty())
    }

    /// The providers `piece` can be read from: its active replicas at a provider with a
    /// URL (`url=` or registered), the last verified first and the lost last (every span is checked, so asking
    /// one more costs time only).
    pub async fn sources(&self, piece: &str) -> Result<Vec<Source>, StoreError> {
        let mut held: Vec<_> = self
            .store
            .probe_targets_of(Some(piece))
            .await?
            .into_iter()
            .filter_map(|t| {
                let url = self.urls.get(t.provider)?;
                let lost = t.probe.is_some_and(|v| v.lost());
                let verified = t.probe.is_some_and(|v| v.last_probe_ok);
                let failures = t.probe.map_or(0, |v| v.failures_in_a_row);
                Some(((lost, !verified, failures, t.provider), url))
            })
            .collect();
        held.sort();
        let mut sources: Vec<Source> = Vec::new();
        for ((_, _, _, provider), url) in held {
            if !sources.iter().any(|s| s.provider == provider) {
                sources.push(Source { provider, url: url.url, registered: url.registered });
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
        let permit = Arc::clone(&self.reads).try_acquire_owned().map_err(|_| ColdError::Busy)?;
        self.read_held(piece, range, permit).await
    }

    /// All of `piece`, as [`Self::read`] reads it, for keeping its copy (a read-back, a
    /// restore): with a slot of its own, waited for, so reads for clients never crowd it out.
    pub async fn read_to_keep(
        self: &Arc<Self>,
        piece: &PieceCid,
    ) -> Result<Option<ColdRead>, ColdError> {
        self.read_keeping(piece, |total| Some((0, total))).await
    }

    /// [`Self::read`] with the keeping slot ([`Self::read_to_keep`]'s), waited for.
    async fn read_keeping(
        self: &Arc<Self>,
        piece: &PieceCid,
        range: impl FnOnce(u64) -> Option<(u64, u64)>,
    ) -> Result<Option<ColdRead>, ColdError> {
        let permit =
            Arc::clone(&self.keeping).acquire_owned().await.map_err(|_| ColdError::Busy)?;
        self.read_held(piece, range, permit).await
    }

    async fn read_held(
        self: &Arc<Self>,
        piece: &PieceCid,
        range: impl FnOnce(u64) -> Option<(u64, u64)>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Option<ColdRead>, ColdError> {
        let Some((levels, sources)) = self.piece(piece).await? else { return Ok(None) };
        let Some(range) = range(levels.payload_size) else { return Ok(None) };
        self.read_spans(piece.to_string(), levels, sources, range, permit).await
    }

    /// `piece`'s levels (checked against it) and its sources, kept [`PIECE_TTL`]; `None` if
    /// either is missing.
    async fn piece(
        &self,
        piece: &PieceCid,
    ) -> Result<Option<(Arc<PieceLevels>, Vec<Source>)>, StoreError> {
        let name = piece.to_string();
        if let Some((at, levels, sources)) = lock(&self.pieces).get(&name)
            && at.elapsed() < PIECE_TTL
        {
            return Ok(Some((Arc::clone(levels), sources.clone())));
        }
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
        let levels = Arc::new(levels);
        let mut pieces = lock(&self.pieces);
        if pieces.len() >= PIECES {
            pieces.retain(|_, (at, _, _)| at.elapsed() < PIECE_TTL);
            if pieces.len() >= PIECES {
                pieces.clear();
            }
        }
        pieces.insert(name, (Instant::now(), Arc::clone(&levels), sources.clone()));
        Ok(Some((levels, sources)))
    }

    /// Bytes `[start, end)` of the payload of `piece` (whose levels are `levels`) read from
    /// `sources` in turn, each span checked; `None` for a range outside the payload. The first
    /// span is read before this returns.
    pub async fn read_from(
        self: &Arc<Self>,
        piece: String,
        levels: Arc<PieceLevels>,
        sources: Vec<Source>,
        range: (u64, u64),
    ) -> Result<Option<ColdRead>, ColdError> {
        let permit = Arc::clone(&self.reads).try_acquire_owned().map_err(|_| ColdError::Busy)?;
        self.read_spans(piece, levels, sources, range, permit).await
    }

    /// [`Self::read_from`], under `permit` (held until the body is dropped: sent, or the
    /// client gone).
    async fn read_spans(
        self: &Arc<Self>,
        piece: String,
        levels: Arc<PieceLevels>,
        sources: Vec<Source>,
        (start, end): (u64, u64),
        permit: OwnedSemaphorePermit,
    ) -> Result<Option<ColdRead>, ColdError> {
        let total = levels.payload_size;
        if start >= end || end > total || sources.is_empty() {
            return Ok(None);
        }
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
            let http = self
                .reads
                .http
                .of(&ProviderUrl { url: source.url.clone(), registered: source.registered });
            match read_span(http, &source.url, &self.piece, &self.levels, index).await {
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
        match (crate::blockstore::Source(self.blocks).block(cid), &self.cold) {
            (Err(BlockError::Missing(_)), Some((cold, handle))) => {
                match handle.block_on(cold.block(cid)) {
                    Ok(Some(data)) => Ok(data),
                    Ok(None) => Err(BlockError::Missing(*cid)),
                    Err(e) => Err(BlockError::Io { cid: *cid, source: Box::new(e) }),
                }
            }
            (read, _) => read,
        }
    }
}

/// Keeps the drop policy safe both ways:
/// - **before a copy goes**, the piece is read back whole from its providers, every span checked
///   against its levels (checked against the piece CID); a piece that reads back is recorded
///   (`cold_checks`), with where each of its blocks lies (`piece_blocks`) if its pins' blocks
///   may go too (`--cold-drop-blocks`), and garbage collection drops only pieces read back
///   within the window (their CARs, and their pins' blocks if asked);
/// - **once a dropped piece's replicas no longer meet the rules** (a provider stopped serving,
///   a replica lost or ended), its copy is packed again from the pin's blocks, checked to be
///   the same piece, or, once the blocks went too, read back whole from the providers still
///   serving it, its blocks put back first; when no provider gives it back, and
///   [`with_network`](Self::with_network) was given a fetcher, the pin's DAG is fetched from
///   the IPFS network as a pin's is, its blocks put back, and the copy packed again from them.
///   A piece that cannot be brought back waits, doubling up to an hour, and the others go
///   first meanwhile.
///
/// Its reads from providers have a slot of their own ([`ColdReads::read_to_keep`]): reads for
/// clients never hold them off.
#[derive(Debug)]
pub struct ReadBacks<B> {
    store: Store,
    blocks: Arc<B>,
    reads: Arc<ColdReads>,
    rules: ColdRules,
    packed_dir: PathBuf,
    restoring: PathBuf,
    tick: Duration,
    waiting: Mutex<HashMap<String, (Instant, u32)>>,
    reading: Mutex<HashMap<String, (Instant, u32)>>,
    network: Option<Network>,
}

/// Where a restore fetches a pin's DAG when no provider gives its piece back.
#[derive(Debug)]
struct Network {
    /// The pins' fetcher, its hold against garbage collection through this store.
    fetcher: Fetcher,
    /// The same with no configured gateways, for the pins' origins once the gateways failed.
    origins_only: Fetcher,
    /// Free bytes the data directory keeps: below, no fetch starts.
    min_free_bytes: u64,
}

/// Blocks of one piece whose places are recorded at most (a 32 GiB piece of 16 KiB blocks);
/// the blocks of a piece with more are kept here.
const MAX_PLACES: u64 = 1 << 21;
/// Places sent to the database at a time.
const PLACE_BATCH: usize = 4096;
/// The longest a piece that could not be brought back waits for its next attempt.
const MAX_WAIT: Duration = Duration::from_secs(3600);

impl<B: Blockstore> ReadBacks<B> {
    /// Read-backs of the pieces whose copy in `packed_dir` `rules` would let go, and copies
    /// packed again from `blocks` (or read back from providers into a directory beside
    /// `packed_dir`, `restoring`), every `tick`.
    pub fn new(
        store: Store,
        blocks: Arc<B>,
        reads: Arc<ColdReads>,
        rules: ColdRules,
        packed_dir: PathBuf,
        tick: Duration,
    ) -> Self {
        let restoring = packed_dir.with_file_name("restoring");
        Self {
            store,
            blocks,
            reads,
            rules,
            packed_dir,
            restoring,
            tick,
            waiting: Mutex::default(),
            reading: Mutex::default(),
            network: None,
        }
    }

    /// Restores of pieces no provider gives back fetch the pin's DAG with `fetcher` (the pins'
    /// own: its gateways, libp2p, limits and origin policy), unless the data directory has less
    /// than `min_free_bytes` free; garbage collection is held off through this store's gate.
    #[must_use]
    pub fn with_network(mut self, fetcher: Fetcher, min_free_bytes: u64) -> Self {
        let gate = crate::gc::GcGate::new(self.store.clone(), Duration::from_secs(60));
        let fetcher = fetcher.with_gc_gate(gate);
        let origins_only = fetcher.clone().without_gateways();
        self.network = Some(Network { fetcher, origins_only, min_free_bytes });
        self
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
    /// restore (the restore whatever came of the read-back).
    pub async fn step(&self) -> Result<(), ColdError> {
        let held = self.store.cold_pieces(now_ms(), &self.rules, false).await?;
        let passed = self.pass(&held).await;
        let restored = self.restore(&held).await;
        passed?;
        restored?;
        Ok(())
    }

    /// Brings back the copy of the first pinned single-CAR piece whose copy is gone and whose
    /// replicas no longer meet the rules (are not in `held`), and that is not waiting after a
    /// failed attempt: from the pin's blocks, or, once they are gone too, from the piece's
    /// providers (blocks and all), or, if none gives it back, from the network (with
    /// [`Self::with_network`]). One attempt a step, counted by source if it succeeds
    /// ([`ColdStats::restores`]); returns the piece if it came back.
    pub async fn restore(&self, held: &[String]) -> Result<Option<String>, ColdError> {
        let cold_blocks = self.store.cold_block_pieces().await?;
        for (name, root) in self.store.pinned_single_cars().await? {
            if held.contains(&name)
                || self.packed_dir.join(format!("{name}.car")).exists()
                || waits(&self.waiting, &name)
            {
                continue;
            }
            let restored = if cold_blocks.contains(&name) {
                self.restore_cold(&name, root).await
            } else {
                let packed = self.pack_again(&name, root).await;
                packed.map(|done| done.then_some(RestoreSource::Pack))
            };
            let done = restored.map(|source| {
                source.inspect(|s| self.reads.restored(*s));
                source.is_some()
            });
            return Ok(self.settle(&self.waiting, &name, &done, "restore").then_some(name));
        }
        Ok(None)
    }

    /// Brings back the copy of `name`, whose pin's (root `root`) blocks are gone too: read
    /// back from its providers ([`Self::restore_from_providers`]), or, when they do not give it
    /// back (none to read from, a span no provider serves as the commitment says, a read cut
    /// off), fetched from the network ([`Self::restore_from_network`]) if the read-backs have a
    /// fetcher. Where it came from; `None` if it did not come back (why logged, each source's).
    async fn restore_cold(
        &self,
        name: &str,
        root: Vec<u8>,
    ) -> Result<Option<RestoreSource>, ColdError> {
        let providers = match self.restore_from_providers(name).await? {
            Ok(()) => return Ok(Some(RestoreSource::Providers)),
            Err(why) => why,
        };
        let Some(network) = &self.network else {
            warn!(piece = %name, %providers,
                  "restore: the providers do not give the piece back; the blocks stay gone");
            return Ok(None);
        };
        match self.restore_from_network(network, name, root).await? {
            Ok(()) => Ok(Some(RestoreSource::Network)),
            Err(network) => {
                warn!(piece = %name, %providers, %network,
                      "restore: neither the providers nor the network give the piece back; tried again later");
                Ok(None)
            }
        }
    }

    /// Records how an attempt at `name` went in `map`: done (`true`), or failed and waiting
    /// (doubling from a tick, up to [`MAX_WAIT`]).
    fn settle(
        &self,
        map: &Mutex<HashMap<String, (Instant, u32)>>,
        name: &str,
        done: &Result<bool, ColdError>,
        what: &str,
    ) -> bool {
        let mut map = lock(map);
        if let Ok(true) = done {
            map.remove(name);
            return true;
        }
        if let Err(e) = done {
            warn!(piece = %name, error = %e, "{what}: failed; tried again later");
        }
        let failures = map.get(name).map_or(0, |(_, n)| *n).saturating_add(1);
        let wait = self.tick.saturating_mul(1 << failures.min(16)).min(MAX_WAIT);
        map.insert(name.to_owned(), (Instant::now() + wait, failures));
        false
    }

    /// Packs `name`'s copy again from the blocks of its pin (`root`); whether it did.
    async fn pack_again(&self, name: &str, root: Vec<u8>) -> Result<bool, ColdError> {
        let (blocks, dir) = (Arc::clone(&self.blocks), self.packed_dir.clone());
        let packed =
            tokio::task::spawn_blocking(move || crate::pipeline::pack::pack(&*blocks, &root, &dir))
                .await;
        match packed {
            Ok(Ok(packed)) if packed.piece_cid == name => {
                tracing::info!(piece = %name, "restore: copy packed again from the pin's blocks");
                return Ok(true);
            }
            Ok(Ok(packed)) => {
                warn!(piece = %name, packed = %packed.piece_cid,
                      "restore: the blocks pack to another piece; left for collection");
            }
            Ok(Err(e)) => warn!(piece = %name, error = %e, "restore: not packed"),
            Err(e) => warn!(piece = %name, error = %e, "restore: packing failed"),
        }
        Ok(false)
    }

    /// Reads `name` whole from its providers (every span checked) into `restoring`, puts its
    /// blocks back in the store (each checked against its CID), then its copy. `Ok(Err(why))`
    /// if the providers did not give it back (none to read from, a span none serves as the
    /// commitment says, a read cut off or short); `Err` if this oracle failed.
    async fn restore_from_providers(&self, name: &str) -> Result<Result<(), String>, ColdError> {
        let Ok(piece) = name.parse::<PieceCid>() else {
            return Ok(Err("not a piece CID".into()));
        };
        let read = match self.reads.read_to_keep(&piece).await {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(Err("no provider to read the piece from".into())),
            Err(e @ (ColdError::Unserved { .. } | ColdError::Cut(_) | ColdError::Busy)) => {
                return Ok(Err(e.to_string()));
            }
            Err(e) => return Err(e),
        };
        // What an attempt a crash cut short left (one restore at a time here).
        let _ = std::fs::remove_dir_all(&self.restoring);
        std::fs::create_dir_all(&self.restoring).map_err(io)?;
        let tmp = tempfile::NamedTempFile::new_in(&self.restoring).map_err(io)?;
        let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        let mut body = read.body;
        let mut bytes = 0u64;
        while let Some(frame) = body.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => return Ok(Err(ColdError::Cut(e.to_string()).to_string())),
            };
            tokio::io::AsyncWriteExt::write_all(&mut out, &frame).await.map_err(io)?;
            bytes += frame.len() as u64;
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(io)?;
        if bytes != read.total {
            return Ok(Err(format!("{bytes} bytes of the piece's {} read", read.total)));
        }
        // The blocks put back and the mark lifted with collection held off: a collection that
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
        let (tmp, n) = imported.map_err(io)?;
        // Blocks first, then the mark, then the copy: a crash in between packs it again from
        // the blocks.
        self.store.mark_blocks_hot(name).await?;
        tmp.persist(self.packed_dir.join(format!("{name}.car"))).map_err(|e| io(e.error))?;
        hold.release().await?;
        tracing::info!(piece = %name, blocks = n, bytes, "restore: copy and blocks read back from the providers");
        Ok(Ok(()))
    }

    /// Fetches the DAG of `name`'s pin (root `root`) as a pin's fetch does ([`crate::fetch`]:
    /// every block checked against its CID, within the pins' limits), into a staging area of its
    /// own: from the configured gateways first, then from the origins the piece's live pins
    /// named (untrusted: a bad one fails its own attempt, never the gateways'). The whole
    /// fetch has [`restore_budget`] for the piece's payload (a source that trickles data cannot
    /// hold the read-backs for long), and starts only with twice the payload free above the
    /// data directory's floor (the blocks, then the copy). Once a walk finds the DAG complete,
    /// its blocks are moved into the store and marked hot under one hold against garbage
    /// collection, and the copy is packed again from them ([`Self::pack_again`], checked to be
    /// the same piece). `Ok(Err(why))` if it did not come back; `Err` if this oracle failed.
    async fn restore_from_network(
        &self,
        network: &Network,
        name: &str,
        root: Vec<u8>,
    ) -> Result<Result<(), String>, ColdError> {
        let size_hint = self.store.piece_levels(name).await?.map(|l| l.payload_size);
        let room = size_hint.unwrap_or(0).saturating_mul(2);
        match crate::blockstore::space::above_floor(&self.packed_dir, network.min_free_bytes, room)
        {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Err(format!(
                    "the data directory has not {room} bytes free above its floor"
                )));
            }
            Err(e) => warn!(error = %e, "cannot read the free space of the data directory"),
        }
        let origins = self.store.piece_origins(name).await?;
        let budget = restore_budget(size_hint);
        let stage = restore_stage(name);
        let fetch = async {
            let mut failures = Vec::new();
            // The operator's gateways, then the pins' own origins (if any), each once.
            let none: &[String] = &[];
            let mut attempts = vec![(&network.fetcher, none)];
            if !origins.is_empty() {
                attempts.push((&network.origins_only, &origins[..]));
            }
            for (fetcher, origins) in attempts {
                let job = FetchJob { cid: &root, origins, size_hint, stage: stage.clone() };
                match fetcher.fetch_job_held(&job, &self.blocks).await {
                    Ok(fetched) => return Ok(Ok(fetched)),
                    Err(FetchError::Database(e)) => return Err(ColdError::from(e)),
                    Err(FetchError::Store(e)) => return Err(io(e)),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            Ok(Err(failures.join("; then ")))
        };
        let (stats, hold) = match tokio::time::timeout(budget, fetch).await {
            Ok(Ok(Ok(fetched))) => fetched,
            Ok(Ok(Err(why))) => return Ok(Err(why)),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(Err(format!("not fetched within {budget:?}"))),
        };
        // Blocks first (moved into the store under the hold), then the mark, then the copy: a
        // crash before the mark leaves the pin cold (the next attempt fetches what is missing
        // again), one after it a hot pin whose copy is packed from its blocks. Marked hot, the
        // blocks are the pin's again for collection: the hold ends here.
        self.store.mark_blocks_hot(name).await?;
        if let Some(hold) = hold {
            hold.release().await?;
        }
        tracing::info!(piece = %name, blocks = stats.blocks, bytes = stats.bytes,
                       "restore: the pin's blocks fetched from the network");
        if self.pack_again(name, root).await? {
            Ok(Ok(()))
        } else {
            Ok(Err("the blocks fetched were not packed into the piece".into()))
        }
    }

    /// One pass: the first piece that needs a read-back, and is not waiting after a failed
    /// one, is read back; returns it if it read back whole. A piece that fails (no provider
    /// serves it, a read cut off, more than 2 Mi blocks) waits, doubling from a tick
    /// up to an hour, so it costs a whole-piece read an hour at most.
    pub async fn pass(&self, held: &[String]) -> Result<Option<String>, ColdError> {
        let now = now_ms();
        let since = now.saturating_sub(self.rules.verified_within_ms);
        for name in held {
            if !self.packed_dir.join(format!("{name}.car")).exists()
                || waits(&self.reading, name)
                || (self.store.cold_checked_since(name, since).await?
                    && (!self.rules.drop_blocks || self.store.piece_blocks_kept(name).await?))
            {
                continue;
            }
            let done = self.read_back(name).await;
            return Ok(self.settle(&self.reading, name, &done, "read-back").then(|| name.clone()));
        }
        Ok(None)
    }

    /// Reads `name` back whole from its providers and, if asked, records where its blocks lie;
    /// whether it did (and recorded the read-back).
    async fn read_back(&self, name: &str) -> Result<bool, ColdError> {
        let Ok(piece) = name.parse::<PieceCid>() else { return Ok(false) };
        let Some(read) = self.reads.read_to_keep(&piece).await? else { return Ok(false) };
        let mut body = read.body;
        let mut bytes = 0u64;
        while let Some(frame) = body.next().await {
            bytes += frame.map_err(|e| ColdError::Cut(e.to_string()))?.len() as u64;
        }
        if bytes != read.total {
            return Ok(false);
        }
        // Where each block lies in the piece, so the pin's blocks can go too.
        if self.rules.drop_blocks {
            self.place_blocks(name).await?;
        }
        self.store.record_cold_check(name, now_ms()).await?;
        tracing::info!(piece = %name, bytes, "read-back: whole and checked; the copy may go");
        Ok(true)
    }

    /// Records where each block of `name` lies in its copy here, a batch at a time (once a
    /// piece: its CAR is fixed by its CID); the number of blocks.
    async fn place_blocks(&self, name: &str) -> Result<u64, ColdError> {
        let Some(id) = self.store.start_piece_blocks(name).await? else { return Ok(0) };
        let path = self.packed_dir.join(format!("{name}.car"));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(Vec<u8>, u64, u64)>>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let stopped = || std::io::Error::other("the database writer stopped");
            let mut batch = Vec::with_capacity(PLACE_BATCH);
            let mut n = 0u64;
            each_block(&path, |cid, data, at| {
                n += 1;
                if n > MAX_PLACES {
                    return Err(std::io::Error::other(format!("more than {MAX_PLACES} blocks")));
                }
                batch.push((cid.to_bytes(), at, data.len() as u64));
                if batch.len() == PLACE_BATCH {
                    tx.blocking_send(std::mem::take(&mut batch)).map_err(|_| stopped())?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                tx.blocking_send(batch).map_err(|_| stopped())?;
            }
            Ok::<_, std::io::Error>(n)
        });
        while let Some(batch) = rx.recv().await {
            self.store.add_piece_blocks(id, &batch).await?;
        }
        let n = reader.await.map_err(io)?.map_err(io)?;
        self.store.finish_piece_blocks(id, n).await?;
        Ok(n)
    }
}

/// Whether `name` waits after a failed attempt.
fn waits(map: &Mutex<HashMap<String, (Instant, u32)>>, name: &str) -> bool {
    lock(map).get(name).is_some_and(|(at, _)| Instant::now() < *at)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io(e: impl std::fmt::Display) -> ColdError {
    ColdError::Local(std::io::Error::other(e.to_string()))
}

/// Bytes per second a network restore must average: a piece's payload fetched at this pace,
/// plus a minute, is all the time a restore has (at most the fetch's own budget), so a source
/// that trickles data at the pins' much lower floor cannot hold the read-backs for an hour.
const RESTORE_THROUGHPUT: u64 = 1 << 20;

/// The time a network restore of a piece of `payload` bytes has (a minute when unknown).
fn restore_budget(payload: Option<u64>) -> Duration {
    Duration::from_secs(60 + payload.unwrap_or(0) / RESTORE_THROUGHPUT)
}

/// The staging area a restore of `piece` fetches into: `restore-` and 24 hex digits of the
/// SHA-256 of its CID (one name a piece: what an attempt cut short left there counts at the
/// next; garbage collection removes it once idle).
fn restore_stage(piece: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(piece.as_bytes());
    format!("restore-{}", hex::encode(&digest[..12]))
}

/// Calls `each` with every block of the CAR at `path` (checked against its CID), and the first
/// byte of its data in the file.
fn each_block(
    path: &std::path::Path,
    mut each: impl FnMut(&Cid, &[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use estuary_dag::car::{CarItem, CarLimits, CarReader};
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut reader = CarReader::new(file, CarLimits::default());
    while let Some(item) = reader.next() {
        if let CarItem::Block(block) = item.map_err(std::io::Error::other)? {
            // The block's data ends where the reader stands.
            let at = reader.offset() - block.data.len() as u64;
            each(&block.cid, &block.data, at)?;
        }
    }
    Ok(())
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
