//! The agent's HTTP server: its state, and retrievals of what it holds, as SPs serve them.
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | liveness, with the miner |
//! | `GET /metrics` | Prometheus text: work by kind and state, skips by reason, downloads, bytes, bounty collected, retrievals, the watchers' cursors |
//! | `GET /status` | the miner, its account, the chain, watchers, load, work and skip counts, recent skips with reasons, running downloads |
//! | `GET /work?state=&limit=` | work taken, newest first |
//! | `GET /claims` | slots claimed (slot work past `claiming`) |
//! | `GET /deals` | work with a published deal |
//! | `GET`/`HEAD /piece/{pieceCid}` | a held piece's CAR by piece CID (v1 or v2), with single byte ranges |
//! | `GET`/`HEAD /ipfs/{cid}[/path]?format=raw\|car` | trustless gateway over the blocks of held pieces |
//!
//! Retrievals are untrusted: at most `max_retrievals` responses are produced at once (the rest
//! get 503 at once, not a queue), a response whose client stops reading for `idle` is cut off
//! (its file and permit released), gateway CARs are bounded by the walk limits, and every block
//! served is checked against its CID first. The listing routes are bounded (`limit` ≤ 1000).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cid::Cid;
use estuary_chain::WatchState;
use estuary_dag::{
    Block, BlockError,
    car::{encode_section, header_v1},
    export::ExportError,
    source::from_fn,
    traversal::{DagScope, EntityBytes, TraversalError, resolve_path, select_blocks},
    walk::WalkLimits,
};
use estuary_piece::PieceCid;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::error;

use crate::{
    agent::Stats,
    domain::{WorkKind, WorkState},
    store::{BlockLocation, Lead, Store, StoreError, Work},
};

const CAR: &str = "application/vnd.ipld.car";
const RAW: &str = "application/vnd.ipld.raw";
/// Bytes per chunk of a streamed response.
const CHUNK: usize = 256 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    /// The database.
    pub store: Store,
    /// The miner.
    pub miner: u64,
    /// The controlling account the agent sends from.
    pub account: String,
    /// The chain.
    pub chain_id: u64,
    /// The watchers' progress, by contract.
    pub watchers: Vec<(String, watch::Receiver<WatchState>)>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Bytes held by each running download.
    pub downloads: Arc<Mutex<HashMap<i64, Arc<AtomicU64>>>>,
    /// Retrieval responses at once.
    pub retrievals: Arc<Semaphore>,
    /// A retrieval whose client stops reading this long is cut off.
    pub idle: Duration,
    /// Bytes served by retrievals.
    pub bytes_served: AtomicU64,
}

/// An API failure: client errors say what was wrong; internal ones are logged and hidden.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing by that name here.
    #[error("{0}")]
    NotFound(String),
    /// Too many retrievals at once.
    #[error("busy: too many retrievals at once, try again")]
    Busy,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A piece file could not be read.
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, self.to_string()),
            Self::Store(e) => {
                error!(error = %e, "database error while serving a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
            }
            Self::Io(e) => {
                error!(error = %e, "storage error while serving a request");
                (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; try again later".to_owned())
            }
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// The router.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/work", get(list_work))
        .route("/claims", get(claims))
        .route("/deals", get(deals))
        .route("/piece/{piece}", get(piece))
        .route("/ipfs/{*path}", get(ipfs))
        .with_state(state)
}

async fn health(State(st): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "miner": format!("f0{}", st.miner) }))
}

/// `/status`'s body.
#[derive(Debug, Serialize)]
pub struct StatusBody {
    /// The miner (`f0…`).
    pub miner: String,
    /// The account sending its transactions.
    pub account: String,
    /// The chain.
    pub chain_id: u64,
    /// Each watcher's progress, by contract.
    pub watchers: HashMap<String, WatchState>,
    /// Padded bytes of work not yet active.
    pub in_flight_bytes: u64,
    /// CAR bytes still to download.
    pub bytes_to_fetch: u64,
    /// Work by `kind/state`.
    pub work: HashMap<String, u64>,
    /// Skipped offers by reason code.
    pub skipped: HashMap<String, u64>,
    /// The latest skipped offers, with their reasons.
    pub recent_skips: Vec<Lead>,
    /// Running downloads: work id → bytes held.
    pub downloads: HashMap<i64, u64>,
}

/// Builds the status (shared with `estuary sp status`, which reads the database).
pub async fn status_of(
    store: &Store,
) -> Result<(HashMap<String, u64>, HashMap<String, u64>, Vec<Lead>), StoreError> {
    let work = store
        .work_counts()
        .await?
        .into_iter()
        .map(|(k, s, n)| (format!("{}/{}", k.as_str(), s.as_str()), n))
        .collect();
    let skipped = store.skip_counts().await?.into_iter().collect();
    let recent = store.leads(Some("skipped"), 20).await?;
    Ok((work, skipped, recent))
}

async fn status(State(st): State<Arc<ApiState>>) -> Result<Json<StatusBody>, ApiError> {
    let watchers = st.watchers.iter().map(|(c, w)| (c.clone(), *w.borrow())).collect();
    let load = st.store.load().await?;
    let (work, skipped, recent_skips) = status_of(&st.store).await?;
    let downloads = st
        .downloads
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(id, held)| (*id, held.load(Ordering::Relaxed)))
        .collect();
    Ok(Json(StatusBody {
        miner: format!("f0{}", st.miner),
        account: st.account.clone(),
        chain_id: st.chain_id,
        watchers,
        in_flight_bytes: load.in_flight_bytes,
        bytes_to_fetch: load.bytes_to_fetch,
        work,
        skipped,
        recent_skips,
        downloads,
    }))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

fn limit(q: &ListQuery) -> Result<u32, ApiError> {
    match q.limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(_) => Err(ApiError::BadRequest("limit must be between 1 and 1000".into())),
    }
}

async fn list_work(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Work>>, ApiError> {
    let states = match q.state.as_deref() {
        None => Vec::new(),
        Some(s) => vec![
            WorkState::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown state {s:?}")))?,
        ],
    };
    Ok(Json(st.store.works(&states, limit(&q)?).await?))
}

/// Slot work past its claim.
pub fn is_claim(w: &Work) -> bool {
    w.kind == WorkKind::Slot && w.deadline.is_some()
}

async fn claims(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Work>>, ApiError> {
    let all = st.store.works(&[], limit(&q)?).await?;
    Ok(Json(all.into_iter().filter(is_claim).collect()))
}

async fn deals(
    State(st): State<Arc<ApiState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Work>>, ApiError> {
    let all = st.store.works(&[], limit(&q)?).await?;
    Ok(Json(all.into_iter().filter(|w| w.deal().is_some()).collect()))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

async fn metrics(State(st): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    use std::fmt::Write;
    let work = st.store.work_counts().await?;
    let skips = st.store.skip_counts().await?;
    let (bytes, collected) = st.store.totals().await?;
    let pieces = st.store.piece_count().await?;
    let load = st.store.load().await?;
    let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    family(
        &mut out,
        "estuary_sp_work",
        "gauge",
        "Work taken, by kind (slot: a claimed slot; proposal) and state.",
    );
    for (kind, state, count) in &work {
        let _ = writeln!(
            out,
            "estuary_sp_work{{kind=\"{}\",state=\"{}\"}} {count}",
            kind.as_str(),
            state.as_str()
        );
    }
    let claims: u64 = work
        .iter()
        .filter(|(k, s, _)| *k == WorkKind::Slot && !matches!(s, WorkState::Claiming))
        .map(|w| w.2)
        .sum();
    single(
        &mut out,
        "estuary_sp_claims",
        "gauge",
        "Slot work past its claim decision (claimed, or refused), whatever became of it.",
        claims,
    );
    single(&mut out, "estuary_sp_pieces", "gauge", "Verified pieces held.", pieces);
    single(
        &mut out,
        "estuary_sp_downloads_total",
        "counter",
        "Downloads that ended in a verified piece, since start.",
        counter(&st.stats.downloads_ok),
    );
    single(
        &mut out,
        "estuary_sp_download_failures_total",
        "counter",
        "Downloads given up (bad origin), since start.",
        counter(&st.stats.downloads_failed),
    );
    single(
        &mut out,
        "estuary_sp_slots_marked_lost_total",
        "counter",
        "Active slots the order's client marked lost (their pay ended; their deals stay live), since start.",
        counter(&st.stats.slots_marked_lost),
    );
    single(
        &mut out,
        "estuary_sp_downloaded_bytes",
        "gauge",
        "Bytes downloaded over the network for all work.",
        bytes,
    );
    single(
        &mut out,
        "estuary_sp_bounty_collected_attofil",
        "gauge",
        "Bounty paid to the miner by collect and reopen, over all work.",
        collected,
    );
    single(
        &mut out,
        "estuary_sp_in_flight_bytes",
        "gauge",
        "Padded bytes of work claimed and not yet active.",
        load.in_flight_bytes,
    );
    single(
        &mut out,
        "estuary_sp_retrieval_bytes_total",
        "counter",
        "Bytes served by retrievals since start.",
        counter(&st.bytes_served),
    );
    single(
        &mut out,
        "estuary_sp_piece_requests_total",
        "counter",
        "/piece responses started since start.",
        counter(&st.stats.piece_requests),
    );
    single(
        &mut out,
        "estuary_sp_block_requests_total",
        "counter",
        "/ipfs responses started since start.",
        counter(&st.stats.block_requests),
    );
    single(
        &mut out,
        "estuary_sp_retrievals_shed_total",
        "counter",
        "Retrievals refused (503) for load since start.",
        counter(&st.stats.retrievals_shed),
    );
    family(&mut out, "estuary_sp_skipped", "gauge", "Offers skipped, by reason.");
    for (code, count) in skips {
        let _ = writeln!(out, "estuary_sp_skipped{{reason=\"{code}\"}} {count}");
    }
    family(
        &mut out,
        "estuary_sp_watcher_cursor",
        "gauge",
        "Last block whose logs are stored, by contract.",
    );
    for (contract, w) in &st.watchers {
        let _ = writeln!(
            out,
            "estuary_sp_watcher_cursor{{contract=\"{contract}\"}} {}",
            w.borrow().cursor.unwrap_or(0)
        );
    }
    let head = st.watchers.iter().filter_map(|(_, w)| w.borrow().head).max().unwrap_or(0);
    single(&mut out, "estuary_sp_chain_head", "gauge", "Chain head last seen.", head);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

// ------------------------------------------------------------------ retrievals

fn take_permit(st: &ApiState) -> Result<OwnedSemaphorePermit, ApiError> {
    Arc::clone(&st.retrievals).try_acquire_owned().map_err(|_| {
        st.stats.retrievals_shed.fetch_add(1, Ordering::Relaxed);
        ApiError::Busy
    })
}

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// One byte range of a `Range` header over `len` bytes: `Ok(None)` for no (or an unusable
/// multi-range) header, `Err(())` when unsatisfiable.
#[allow(clippy::result_unit_err)]
pub fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ok(None),
        // The last `b` bytes.
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len - 1)
        }
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end: u64 = if b.is_empty() { u64::MAX } else { b.parse().map_err(|_| ())? };
            if start >= len || end < start {
                return Err(());
            }
            (start, end.min(len - 1))
        }
    };
    Ok(Some(range))
}

/// Streams `len` bytes of `path` from `offset`, through a small channel: a client that stops
/// reading for `idle` is cut off and the file and `permit` released.
fn file_body(
    path: PathBuf,
    offset: u64,
    len: u64,
    idle: Duration,
    permit: OwnedSemaphorePermit,
    served: Arc<ApiState>,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let _permit = permit;
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if let Err(e) = file.seek(std::io::SeekFrom::Start(offset)).await {
            let _ = tx.send(Err(e)).await;
            return;
        }
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
            match file.read_exact(&mut buf).await {
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            left -= buf.len() as u64;
            let n = buf.len() as u64;
            match tokio::time::timeout(idle, tx.send(Ok(Bytes::from(buf)))).await {
                Ok(Ok(())) => {
                    served.bytes_served.fetch_add(n, Ordering::Relaxed);
                }
                // The client stopped reading, or went away.
                _ => return,
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `GET`/`HEAD /piece/{pieceCid}`.
async fn piece(
    State(st): State<Arc<ApiState>>,
    Path(text): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let parsed: PieceCid = text
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("not a piece CID: {text:?}: {e}")))?;
    let row = match parsed {
        PieceCid::V2 { .. } => st.store.piece_v2(&parsed.to_string()).await?,
        PieceCid::V1 { .. } => st.store.pieces_v1(&parsed.to_string()).await?.into_iter().next(),
    };
    let row = row.ok_or_else(|| ApiError::NotFound(format!("piece {text} is not held here")))?;
    let len = row.car_size;
    let range = byte_range(&headers, len);
    let etag = format!("\"{}\"", row.name);
    let (status, start, count) = match range {
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            set(&mut r, header::CONTENT_RANGE, &format!("bytes */{len}"));
            return Ok(r);
        }
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
    };
    let body = if method == Method::HEAD || count == 0 {
        Body::empty()
    } else {
        let permit = take_permit(&st)?;
        st.stats.piece_requests.fetch_add(1, Ordering::Relaxed);
        file_body(PathBuf::from(&row.path), start, count, st.idle, permit, Arc::clone(&st))
    };
    let mut response = (status, body).into_response();
    set(&mut response, header::CONTENT_TYPE, CAR);
    set(&mut response, header::CONTENT_LENGTH, &count.to_string());
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    set(&mut response, header::ETAG, &etag);
    set(&mut response, header::CACHE_CONTROL, "public, max-age=29030400, immutable");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut response,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct GatewayQuery {
    format: Option<String>,
    #[serde(rename = "dag-scope")]
    dag_scope: Option<String>,
    #[serde(rename = "entity-bytes")]
    entity_bytes: Option<String>,
}

/// Reads and checks one block at `loc` (blocking).
fn read_block(cid: &Cid, loc: &BlockLocation) -> Result<Vec<u8>, BlockError> {
    use std::io::{Read, Seek};
    let io = |e: std::io::Error| BlockError::Io { cid: *cid, source: Box::new(e) };
    let len = usize::try_from(loc.len).map_err(|_| BlockError::Corrupt(*cid))?;
    if len > 4 << 20 {
        return Err(BlockError::Corrupt(*cid));
    }
    let mut file = std::fs::File::open(&loc.path).map_err(io)?;
    file.seek(std::io::SeekFrom::Start(loc.offset)).map_err(io)?;
    let mut data = vec![0u8; len];
    file.read_exact(&mut data).map_err(io)?;
    estuary_dag::car::verify(cid, &data).map_err(|_| BlockError::Corrupt(*cid))?;
    Ok(data)
}

/// A block source over the pieces' index (blocking: call from a blocking thread).
fn source(
    store: Store,
    handle: tokio::runtime::Handle,
) -> impl FnMut(&Cid) -> Result<Vec<u8>, BlockError> {
    move |cid: &Cid| {
        let loc = handle
            .block_on(store.block(&cid.to_bytes()))
            .map_err(|e| BlockError::Io { cid: *cid, source: Box::new(e) })?
            .ok_or(BlockError::Missing(*cid))?;
        read_block(cid, &loc)
    }
}

fn path_error(e: ExportError) -> ApiError {
    match e {
        ExportError::Block(BlockError::Io { source, .. }) => {
            ApiError::Io(std::io::Error::other(source))
        }
        ExportError::NotUnixFs { .. } => {
            ApiError::BadRequest(format!("paths are followed through UnixFS directories only: {e}"))
        }
        other => ApiError::NotFound(other.to_string()),
    }
}

/// `GET`/`HEAD /ipfs/{cid}[/path]?format=raw|car`.
async fn ipfs(
    State(st): State<Arc<ApiState>>,
    Path(path): Path<String>,
    Query(q): Query<GatewayQuery>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (cid_text, rest) = path.split_once('/').unwrap_or((&path, ""));
    let rest = rest.trim_end_matches('/').to_owned();
    let cid = Cid::try_from(cid_text)
        .map_err(|e| ApiError::BadRequest(format!("not a CID: {cid_text:?}: {e}")))?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let car = match q.format.as_deref() {
        Some("car") => true,
        Some("raw") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("format must be raw or car, got {other:?}")));
        }
        None if accept.contains(CAR) => true,
        None if accept.contains(RAW) => false,
        None => {
            return Ok((
                StatusCode::NOT_ACCEPTABLE,
                "this is a trustless gateway: ask for format=raw or format=car",
            )
                .into_response());
        }
    };
    let scope = match q.dag_scope.as_deref() {
        None => DagScope::All,
        Some(s) => DagScope::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!("dag-scope must be block, entity or all, got {s:?}"))
        })?,
    };
    let range = match q.entity_bytes.as_deref() {
        None => None,
        Some(_) if scope != DagScope::Entity => {
            return Err(ApiError::BadRequest("entity-bytes needs dag-scope=entity".into()));
        }
        Some(r) => Some(r.parse::<EntityBytes>().map_err(ApiError::BadRequest)?),
    };
    let permit = take_permit(&st)?;
    st.stats.block_requests.fetch_add(1, Ordering::Relaxed);
    let handle = tokio::runtime::Handle::current();
    let store = st.store.clone();
    let resolve_text = rest.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        resolve_path(cid, &resolve_text, from_fn(source(store, handle))).map_err(Box::new)
    })
    .await
    .map_err(|e| ApiError::Io(std::io::Error::other(e)))?
    .map_err(|e| path_error(*e))?;
    let etag_key = format!("{cid}/{rest}|{}|{:?}|{car}", scope.as_str(), q.entity_bytes);
    let etag = {
        use sha2::Digest;
        format!("\"{}\"", hex::encode(&sha2::Sha256::digest(etag_key.as_bytes())[..16]))
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        set(&mut r, header::ETAG, &etag);
        return Ok(r);
    }
    let head = method == Method::HEAD;
    let mut response = if car {
        let body = if head {
            Body::empty()
        } else {
            car_body(st.store.clone(), cid, resolved, scope, range, st.idle, permit)
        };
        let mut r = body.into_response();
        set(&mut r, header::CONTENT_TYPE, "application/vnd.ipld.car; version=1; order=dfs; dups=n");
        r
    } else {
        let store = st.store.clone();
        let handle = tokio::runtime::Handle::current();
        let terminal = resolved.terminal;
        let data = tokio::task::spawn_blocking(move || source(store, handle)(&terminal))
            .await
            .map_err(|e| ApiError::Io(std::io::Error::other(e)))?
            .map_err(|e| match e {
                BlockError::Io { source, .. } => ApiError::Io(std::io::Error::other(source)),
                other => ApiError::NotFound(other.to_string()),
            })?;
        drop(permit);
        st.bytes_served.fetch_add(data.len() as u64, Ordering::Relaxed);
        let len = data.len();
        let mut r = if head { Body::empty() } else { Body::from(data) }.into_response();
        set(&mut r, header::CONTENT_TYPE, RAW);
        set(&mut r, header::CONTENT_LENGTH, &len.to_string());
        r
    };
    set(&mut response, header::ETAG, &etag);
    set(&mut response, header::CACHE_CONTROL, "public, max-age=29030400, immutable");
    set(&mut response, header::HeaderName::from_static("x-content-type-options"), "nosniff");
    Ok(response)
}

/// The CAR of the selected blocks, made by a blocking walk as the client reads it; a client
/// that stops reading for `idle` ends the walk.
fn car_body(
    store: Store,
    root: Cid,
    resolved: estuary_dag::traversal::ResolvedPath,
    scope: DagScope,
    range: Option<EntityBytes>,
    idle: Duration,
    permit: OwnedSemaphorePermit,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let send = |item: Result<Vec<u8>, std::io::Error>| -> bool {
            let started = Instant::now();
            let mut item = item;
            loop {
                match tx.try_send(item) {
                    Ok(()) => return true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    Err(mpsc::error::TrySendError::Full(back)) => {
                        if started.elapsed() > idle {
                            return false;
                        }
                        item = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        };
        if !send(Ok(header_v1(&[root]))) {
            return;
        }
        let mut batch = Vec::with_capacity(CHUNK);
        let walked = select_blocks(
            &resolved,
            scope,
            range,
            WalkLimits::default(),
            from_fn(source(store, handle)),
            |cid, data| {
                encode_section(&Block { cid: *cid, data: data.to_vec() }, &mut batch);
                if batch.len() >= CHUNK {
                    return send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(CHUNK))));
                }
                true
            },
        );
        if !batch.is_empty() && !send(Ok(batch)) {
            return;
        }
        match walked {
            Ok(()) | Err(TraversalError::Stopped) => {}
            Err(e) => {
                // The status line is gone: end the body with an error so the client sees a
                // truncated CAR rather than an incomplete one that looks whole.
                let _ = send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Bytes::from), rx))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, v.parse().unwrap());
        byte_range(&h, len)
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(range("bytes=0-4", 10), Ok(Some((0, 4))));
        assert_eq!(range("bytes=5-", 10), Ok(Some((5, 9))));
        assert_eq!(range("bytes=5-100", 10), Ok(Some((5, 9))));
        assert_eq!(range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(range("bytes=-30", 10), Ok(Some((0, 9))));
        assert_eq!(range("bytes=10-", 10), Err(()));
        assert_eq!(range("bytes=4-2", 10), Err(()));
        assert_eq!(range("bytes=-0", 10), Err(()));
        assert_eq!(range("bytes=x-", 10), Err(()));
        assert_eq!(range("bytes=0-1,3-4", 10), Ok(None), "multiple ranges: the whole piece");
        assert_eq!(range("items=0-1", 10), Ok(None));
    }
}
