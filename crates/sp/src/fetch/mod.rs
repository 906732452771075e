//! Downloading a deal's CAR and checking that it is the deal's piece, as it streams.
//!
//! ```text
//!  origins (URLs, in order) ──► GET (Range: bytes=<offset>- after a drop or a restart)
//!     │ guard: HTTP(S) only, public addresses only (DNS and redirects too), ≤ 5 redirects
//!     │ per chunk: no more than the CAR's size, no silence longer than `no_progress`,
//!     │            no slower than `min_rate` on average after `grace`
//!     ▼ bounded channel (backpressure)
//!  writer thread: append to <partial file> ─► commP (one core, or every core)
//!     ▼ at the CAR's size
//!  ExpectedPiece::check: size, padded size, commitment (padded with zero subtrees)
//! ```
//!
//! The partial file is the resume point: after a dropped connection or a killed process the
//! download goes on from its length, and the bytes already there are hashed again from the
//! disk (no network). What was lost is what the killed process had read but not yet written
//! — at most the writer's buffer ([`WRITE_BUFFER`]) and the [`IN_FLIGHT`] chunks in the
//! channel.
//! An origin that sends more than the CAR, says a size other than the CAR's, or never
//! finishes is given up; every origin given up ends the download with the reasons.

pub mod guard;

use std::{
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use estuary_piece::{CommP, ParallelCommP, PieceInfo};
use reqwest::{StatusCode, header};
use serde::Serialize;
use tokio::{sync::mpsc, time::Instant};

use crate::domain::{ExpectedPiece, PieceMismatch};

pub use guard::Guard;

/// The writer's buffer: with [`IN_FLIGHT`] chunks on their way to it, the most a killed
/// process may have received and not written.
pub const WRITE_BUFFER: usize = 128 * 1024;

/// Chunks on their way from the connection to the writer.
pub const IN_FLIGHT: usize = 8;

/// Bounds on one download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Longest silence from an origin.
    pub no_progress: Duration,
    /// Slowest average rate accepted (bytes per second), once `grace` has passed.
    pub min_rate: u64,
    /// Time an attempt may take before its rate counts.
    pub grace: Duration,
    /// Attempts per origin (a drop, a timeout, a 5xx each count one).
    pub attempts: u32,
    /// Threads hashing the piece (1: on the writer's thread).
    pub hash_threads: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            no_progress: Duration::from_secs(60),
            min_rate: 64 * 1024,
            grace: Duration::from_secs(30),
            attempts: 3,
            hash_threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Why one attempt at one origin failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OriginFailure {
    /// The guard refused the URL or a redirect (private address, scheme, too many).
    #[error("refused: {0}")]
    Refused(String),
    /// The origin answered with this status.
    #[error("HTTP {0}")]
    Status(u16),
    /// The origin says the CAR has another size.
    #[error("the origin says {said} bytes; the CAR has {expected}")]
    WrongSize {
        /// What it said (Content-Length, Content-Range, or how much it had when it stopped).
        said: u64,
        /// The CAR's size.
        expected: u64,
    },
    /// The origin sent more than the CAR's size (an endless stream).
    #[error("more than the CAR's {0} bytes")]
    TooLong(u64),
    /// Nothing came for too long.
    #[error("no bytes for {0:?}")]
    NoProgress(Duration),
    /// Bytes came, too slowly.
    #[error("too slow: {rate} B/s, below {min} B/s")]
    TooSlow {
        /// The average rate.
        rate: u64,
        /// The minimum.
        min: u64,
    },
    /// The connection failed or was dropped.
    #[error("connection: {0}")]
    Connection(String),
}

impl OriginFailure {
    /// Whether another attempt at the same origin may do better.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status(s) => *s >= 500 || *s == 408 || *s == 429,
            Self::NoProgress(_) | Self::TooSlow { .. } | Self::Connection(_) => true,
            Self::Refused(_) | Self::WrongSize { .. } | Self::TooLong(_) => false,
        }
    }
}

/// Why a download did not give the deal's piece.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The bytes are not the deal's piece (wrong bytes or size): they are discarded.
    #[error(transparent)]
    Mismatch(#[from] PieceMismatch),
    /// Every origin was tried and given up.
    #[error("every origin failed: {}", summary(.0))]
    Exhausted(Vec<(String, OriginFailure)>),
    /// No origin to try.
    #[error("no HTTP origin")]
    NoOrigin,
    /// The local disk failed (retryable; not the origin's fault).
    #[error("local storage: {0}")]
    Io(#[from] std::io::Error),
}

fn summary(failures: &[(String, OriginFailure)]) -> String {
    failures.iter().map(|(url, f)| format!("{url}: {f}")).collect::<Vec<_>>().join("; ")
}

impl FetchError {
    /// Whether the download should be tried again later rather than the work given up.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(_))
    }
}

/// A finished download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// The piece computed over the bytes.
    pub info: PieceInfo,
    /// Bytes received over the network by this call.
    pub network_bytes: u64,
    /// Bytes found in the partial file when it started (a resumed download).
    pub resumed_from: u64,
}

/// Downloads CARs into files, checking them as they stream.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    guard: Guard,
    limits: FetchLimits,
}

enum Msg {
    Data(bytes::Bytes),
    /// Start again from zero (an origin that ignores ranges, or one given up for lying).
    Reset,
}

enum Hasher {
    One(CommP),
    Many(ParallelCommP),
}

impl Hasher {
    fn new(threads: usize) -> Self {
        if threads <= 1 {
            Self::One(CommP::new())
        } else {
            Self::Many(ParallelCommP::with_threads(threads))
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::One(h) => h.update(data),
            Self::Many(h) => h.update(data),
        }
    }

    fn finish(self) -> Result<PieceInfo, estuary_piece::PieceError> {
        match self {
            Self::One(h) => h.finish(),
            Self::Many(h) => h.finish(),
        }
    }
}

/// The writer: appends to the partial file and hashes, on its own thread.
struct Writer {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    hasher: Hasher,
    threads: usize,
    len: u64,
}

impl Writer {
    /// Opens the partial file and hashes what it holds (at most `max` bytes are kept).
    fn resume(path: &Path, max: u64, threads: usize) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let mut len = file.metadata()?.len();
        if len > max {
            file.set_len(max)?;
            len = max;
        }
        let mut hasher = Hasher::new(threads);
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        file.rewind()?;
        while left > 0 {
            let n = file.read(&mut buf[..usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20)])?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        file.seek(std::io::SeekFrom::Start(len))?;
        Ok(Self {
            path: path.to_owned(),
            file: std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher,
            threads,
            len,
        })
    }

    fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    fn reset(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let file = self.file.get_mut();
        file.set_len(0)?;
        file.rewind()?;
        self.hasher = Hasher::new(self.threads);
        self.len = 0;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<(PieceInfo, u64)> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let info = self.hasher.finish().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", self.path.display()),
            )
        })?;
        Ok((info, self.len))
    }
}

/// How one attempt ended.
enum Attempt {
    /// The CAR's size was reached.
    Complete,
    /// It failed; `offset` is where the next attempt resumes.
    Failed(OriginFailure),
}

impl Fetcher {
    /// A fetcher connecting as `guard` allows, within `limits`.
    pub fn new(guard: Guard, limits: FetchLimits) -> Result<Self, reqwest::Error> {
        Ok(Self { client: guard::client(guard)?, guard, limits })
    }

    /// The limits.
    pub fn limits(&self) -> FetchLimits {
        self.limits
    }

    /// Downloads the CAR of `expected` from `urls` (in order) into `partial`, resuming from
    /// what it holds, and checks it. `progress` follows the bytes held, `network` counts the
    /// bytes received (whatever the outcome). On a mismatch the partial file is removed.
    pub async fn fetch(
        &self,
        urls: &[String],
        expected: &ExpectedPiece,
        partial: &Path,
        progress: &Arc<AtomicU64>,
        network: &Arc<AtomicU64>,
    ) -> Result<Fetched, FetchError> {
        if urls.is_empty() {
            return Err(FetchError::NoOrigin);
        }
        let (tx, mut rx) = mpsc::channel::<Msg>(IN_FLIGHT);
        let (start_tx, start_rx) = tokio::sync::oneshot::channel::<u64>();
        let path = partial.to_owned();
        let car_size = expected.car_size;
        let threads = self.limits.hash_threads;
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(PieceInfo, u64)> {
            let mut w = Writer::resume(&path, car_size, threads)?;
            let _ = start_tx.send(w.len);
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Msg::Data(bytes) => w.push(&bytes)?,
                    Msg::Reset => w.reset()?,
                }
            }
            w.finish()
        });
        let Ok(resumed_from) = start_rx.await else {
            // The writer failed to open or read the partial file.
            let err = writer.await.map_err(std::io::Error::other)?.err();
            return Err(FetchError::Io(
                err.unwrap_or_else(|| std::io::Error::other("writer stopped")),
            ));
        };
        let mut offset = resumed_from;
        progress.store(offset, Ordering::Relaxed);
        let network_before = network.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut complete = offset == car_size;
        'origins: for url in urls {
            if complete {
                break;
            }
            let mut attempts = 0;
            while attempts < self.limits.attempts.max(1) {
                attempts += 1;
                match self.attempt(url, car_size, &mut offset, network, &tx, progress).await {
                    Attempt::Complete => {
                        complete = true;
                        continue 'origins;
                    }
                    Attempt::Failed(f) => {
                        tracing::info!(%url, offset, attempt = attempts, failure = %f, "download attempt failed");
                        let retry = f.is_retryable();
                        if matches!(f, OriginFailure::TooLong(_)) {
                            // A source that lies about the length is not trusted with any byte.
                            let _ = tx.send(Msg::Reset).await;
                            offset = 0;
                            progress.store(0, Ordering::Relaxed);
                        }
                        if !retry || attempts >= self.limits.attempts.max(1) {
                            failures.push((url.clone(), f));
                            continue 'origins;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
                    }
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(std::io::Error::other)?;
        let (info, len) = match written {
            Ok(done) => done,
            Err(e) => return Err(FetchError::Io(e)),
        };
        if !complete {
            return Err(FetchError::Exhausted(failures));
        }
        if let Err(mismatch) = expected.check(&info, len) {
            let _ = std::fs::remove_file(partial);
            return Err(mismatch.into());
        }
        let network_bytes = network.load(Ordering::Relaxed) - network_before;
        Ok(Fetched { info, network_bytes, resumed_from })
    }

    /// One GET from `offset`.
    async fn attempt(
        &self,
        url: &str,
        car_size: u64,
        offset: &mut u64,
        network: &AtomicU64,
        tx: &mpsc::Sender<Msg>,
        progress: &AtomicU64,
    ) -> Attempt {
        use OriginFailure as F;
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Attempt::Failed(F::Refused(format!("not a URL: {e}"))),
        };
        if let Err(why) = self.guard.check(&parsed) {
            return Attempt::Failed(F::Refused(why));
        }
        let mut request = self.client.get(parsed);
        if *offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
        }
        let response = match tokio::time::timeout(self.limits.no_progress, request.send()).await {
            Err(_) => return Attempt::Failed(F::NoProgress(self.limits.no_progress)),
            Ok(Err(e)) => {
                let text = error_chain(&e);
                return Attempt::Failed(if e.is_redirect() || text.contains("no public address") {
                    F::Refused(text)
                } else {
                    F::Connection(text)
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        match status {
            StatusCode::PARTIAL_CONTENT if *offset > 0 => match content_range(response.headers()) {
                Some((start, total)) if start == *offset && total.is_none_or(|t| t == car_size) => {
                }
                Some((_, Some(total))) if total != car_size => {
                    return Attempt::Failed(F::WrongSize { said: total, expected: car_size });
                }
                _ => {
                    return Attempt::Failed(F::Connection(
                        "a range other than the one asked for".into(),
                    ));
                }
            },
            StatusCode::OK => {
                if let Some(len) = response.content_length()
                    && len != car_size
                {
                    return Attempt::Failed(F::WrongSize { said: len, expected: car_size });
                }
                if *offset > 0 {
                    // The origin ignores ranges: start again from zero.
                    if tx.send(Msg::Reset).await.is_err() {
                        return Attempt::Failed(F::Connection("writer stopped".into()));
                    }
                    *offset = 0;
                    progress.store(0, Ordering::Relaxed);
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let said = content_range(response.headers()).and_then(|(_, t)| t).unwrap_or(0);
                return Attempt::Failed(F::WrongSize { said, expected: car_size });
            }
            s => return Attempt::Failed(F::Status(s.as_u16())),
        }
        let started = Instant::now();
        let mut last_byte = Instant::now();
        let mut this_attempt = 0u64;
        let mut response = response;
        let tick = Duration::from_millis(250).min(self.limits.no_progress);
        loop {
            let chunk = tokio::time::timeout(tick, response.chunk()).await;
            match chunk {
                Err(_) => {}
                Ok(Err(e)) => return Attempt::Failed(F::Connection(error_chain(&e))),
                Ok(Ok(None)) => {
                    return if *offset == car_size {
                        Attempt::Complete
                    } else if response.content_length().is_some()
                        || status == StatusCode::PARTIAL_CONTENT
                    {
                        // It promised more: a dropped connection.
                        Attempt::Failed(F::Connection(format!("the body ended at byte {offset}")))
                    } else {
                        Attempt::Failed(F::WrongSize { said: *offset, expected: car_size })
                    };
                }
                Ok(Ok(Some(bytes))) => {
                    last_byte = Instant::now();
                    let room = car_size - *offset;
                    if bytes.len() as u64 > room {
                        return Attempt::Failed(F::TooLong(car_size));
                    }
                    let n = bytes.len() as u64;
                    if n > 0 && tx.send(Msg::Data(bytes)).await.is_err() {
                        return Attempt::Failed(F::Connection("writer stopped".into()));
                    }
                    *offset += n;
                    network.fetch_add(n, Ordering::Relaxed);
                    this_attempt += n;
                    progress.store(*offset, Ordering::Relaxed);
                    // With a length to stop at, hyper ends the body there; without one, read on
                    // until the end to make sure nothing more comes.
                }
            }
            if last_byte.elapsed() >= self.limits.no_progress {
                return Attempt::Failed(F::NoProgress(self.limits.no_progress));
            }
            let elapsed = started.elapsed();
            if elapsed > self.limits.grace && *offset < car_size {
                let rate = (u128::from(this_attempt) * 1000 / elapsed.as_millis().max(1)) as u64;
                if rate < self.limits.min_rate {
                    return Attempt::Failed(F::TooSlow { rate, min: self.limits.min_rate });
                }
            }
        }
    }
}

/// `Content-Range: bytes start-end/total` → (start, total if known).
fn content_range(headers: &header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    let start = if range == "*" { 0 } else { range.split_once('-')?.0.parse().ok()? };
    Some((start, total))
}

/// An error with its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        let mut h = header::HeaderMap::new();
        h.insert(header::CONTENT_RANGE, "bytes 100-199/1000".parse().unwrap());
        assert_eq!(content_range(&h), Some((100, Some(1000))));
        h.insert(header::CONTENT_RANGE, "bytes 5-9/*".parse().unwrap());
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert(header::CONTENT_RANGE, "bytes */1000".parse().unwrap());
        assert_eq!(content_range(&h), Some((0, Some(1000))));
        h.insert(header::CONTENT_RANGE, "items 1-2/3".parse().unwrap());
        assert_eq!(content_range(&h), None);
    }
}
