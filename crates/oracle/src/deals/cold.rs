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
//! ```
//!
//! - What is served is what the piece's commitment says, whoever served it: a span that does
//!   not hash to its node is refused and read from the next provider
//!   (`estuary_cold_spans_refused_total{provider}`).
//! - Work per request is bounded: one span (at most 16 MiB, [`crate::domain::probe::MAX_SPAN`])
//!   per read in flight, two in flight, each read capped at its span's bytes and deadlined; the
//!   gateway's request slots bound the requests.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::body::Bytes;
use estuary_piece::PieceCid;
use futures::{StreamExt, stream::BoxStream};
use tracing::warn;

use super::probes::{ProbeFailure, provider_client, read_span};
use crate::{
    domain::probe::PieceLevels,
    store::{Store, StoreError},
};

/// Spans read ahead of the one being sent.
const IN_FLIGHT: usize = 2;

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
    /// No provider served the span as the commitment says.
    #[error("no provider served span {index} of piece {piece} as its commitment says: {why}")]
    Unserved {
        /// The piece.
        piece: String,
        /// The span.
        index: u64,
        /// Each provider's failure.
        why: String,
    },
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
    /// Cold reads from the providers in `urls` (their `url=`), each read within `timeout`.
    pub fn new(
        store: Store,
        urls: HashMap<u64, String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self { store, http: provider_client(timeout)?, urls, stats: Mutex::default() })
    }

    /// What cold reads have done so far.
    pub fn stats(&self) -> ColdStats {
        let stats = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ColdStats { bytes: stats.bytes.clone(), refused: stats.refused.clone() }
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
        let reading = Arc::new(Reading {
            reads: Arc::clone(self),
            piece,
            levels,
            sources,
            preferred: AtomicUsize::new(0),
        });
        let (first, last) = (reading.levels.index_of(start), reading.levels.index_of(end - 1));
        let head = Arc::clone(&reading).span(first, start, end).await?;
        let rest = futures::stream::iter(first + 1..=last)
            .map(move |index| {
                let reading = Arc::clone(&reading);
                async move { reading.span(index, start, end).await.map_err(std::io::Error::other) }
            })
            .buffered(IN_FLIGHT);
        let body = futures::stream::once(async move { Ok(head) }).chain(rest).boxed();
        Ok(Some(ColdRead { total, body }))
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
        let first = self.preferred.load(Ordering::Relaxed);
        let mut why = Vec::new();
        for k in 0..self.sources.len() {
            let at = (first + k) % self.sources.len();
            let source = &self.sources[at];
            match read_span(&self.reads.http, &source.url, &self.piece, &self.levels, index).await {
                Ok((bytes, _)) => {
                    self.reads.count(source.provider, Some(bytes.len() as u64));
                    self.preferred.store(at, Ordering::Relaxed);
                    let (a, _) = self.levels.span(index).unwrap_or((0, 0));
                    let from = usize::try_from(start.saturating_sub(a)).unwrap_or(usize::MAX);
                    let to = usize::try_from(end.saturating_sub(a)).unwrap_or(usize::MAX);
                    let bytes = Bytes::from(bytes);
                    return Ok(bytes.slice(from.min(bytes.len())..to.min(bytes.len())));
                }
                Err(e) => {
                    if !matches!(e, ProbeFailure::Unchecked(_)) {
                        self.reads.count(source.provider, None);
                    }
                    warn!(piece = %self.piece, index, provider = source.provider, error = %e,
                          "cold read: span refused; the next provider");
                    why.push(format!("f0{}: {e}", source.provider));
                }
            }
        }
        Err(ColdError::Unserved { piece: self.piece.clone(), index, why: why.join("; ") })
    }
}
