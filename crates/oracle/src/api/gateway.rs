//! The trustless gateway (raw blocks and CARs of pinned DAGs) and packed CARs by piece CID.
//!
//! Follows the Trustless Gateway spec: the response format is chosen by `?format=raw|car` or the
//! `Accept` header (`application/vnd.ipld.raw`, `application/vnd.ipld.car`). A path after the
//! CID (`/ipfs/{cid}/a/b`) is resolved through UnixFS directories and HAMT shards. CARs are v1
//! with the requested CID as root and hold the blocks proving the path, then the terminal
//! element's blocks by `dag-scope` (`all` by default, `entity`, `block`) and, for a file under
//! `entity`, `entity-bytes=from:to` (see [`estuary_dag::traversal`]); blocks depth first, each
//! once. Responses carry an `ETag` (a matching `If-None-Match` gets 304) and are immutable. A
//! request for any other format gets 406, a bad parameter 400, a CID or path not held here 404.
//!
//! A block of a pin whose blocks went, its piece held by storage providers, is read from them:
//! its place in the piece (recorded before the blocks went), the spans around it checked
//! against the piece's commitment, the block against its CID (`deals::cold`). When no provider
//! serves a raw block or a path's block: 502; when as many reads from providers as the oracle
//! makes are under way: 503. Within a CAR's walk (the status already sent), either ends the
//! body early, as a walk over budget does. `HEAD` and a matching `If-None-Match` read nothing
//! from providers.
//!
//! Every CAR is walked within the request's [`GatewayLimits`]: block visits (a byte range's node
//! loads included, each repeat of a subtree counted), bytes read from the store, and time. A
//! walk over budget ends the body early with an error, so the client sees a truncated CAR; the
//! server has spent no more than the budget, whatever the DAG (a HAMT whose buckets all link to
//! the next, a file whose links all name one child).
//!
//! At most `--gateway-max-requests` gateway and `/piece` requests run at once (beyond: 503
//! with `Retry-After`); a request's slot is held until its walk or file ends, and a CAR walk
//! stops at the next block once the client has gone away.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use cid::Cid;
use estuary_dag::{
    Block, BlockError, BlockSource,
    car::{encode_section, header_v1},
    export::ExportError,
    traversal::{DagScope, EntityBytes, ResolvedPath, TraversalError, resolve_path, select_blocks},
    walk::WalkLimits,
};
use estuary_piece::PieceCid;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::{ApiError, ApiState, hold};
use crate::{
    blockstore::{Blockstore, BlockstoreError},
    deals::cold::{ColdError, ColdReads, ColdSource},
};

/// Budgets of one gateway request's walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayLimits {
    /// Most block visits: links read by a walk, node loads by a byte-range read.
    pub max_visits: u64,
    /// Most bytes read from the store.
    pub max_bytes: u64,
    /// Longest walk.
    pub max_time: Duration,
}

impl Default for GatewayLimits {
    /// 4 Mi visits, 64 GiB read, an hour: a whole pinned DAG within the fetch's limits fits.
    fn default() -> Self {
        Self { max_visits: 1 << 22, max_bytes: 64 << 30, max_time: Duration::from_secs(3600) }
    }
}

impl GatewayLimits {
    /// The walk's limits.
    pub fn walk(&self) -> WalkLimits {
        WalkLimits {
            max_visits: self.max_visits,
            max_blocks: self.max_visits,
            max_bytes: self.max_bytes,
            max_queued: 1 << 20,
            ..WalkLimits::default()
        }
    }
}

/// The request's budget ran out (as the source's error, so the walk stops at once).
#[derive(Debug, thiserror::Error)]
#[error("the request's walk budget ran out")]
struct OverBudget;

/// The store as a block source that counts the bytes read and the time, and fails with
/// [`OverBudget`] once either runs out.
struct Budgeted<'a, B: ?Sized> {
    source: ColdSource<'a, B>,
    read: u64,
    max_bytes: u64,
    deadline: Instant,
    over: &'a AtomicBool,
}

impl<B: Blockstore + ?Sized> estuary_dag::BlockSource for Budgeted<'_, B> {
    type Bytes = Vec<u8>;

    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, BlockError> {
        if self.read > self.max_bytes || Instant::now() >= self.deadline {
            self.over.store(true, Ordering::Relaxed);
            return Err(BlockError::Io { cid: *cid, source: Box::new(OverBudget) });
        }
        let block = self.source.block(cid)?;
        self.read += block.len() as u64;
        Ok(block)
    }
}

const RAW: &str = "application/vnd.ipld.raw";
const CAR: &str = "application/vnd.ipld.car";

#[derive(Debug, Deserialize)]
pub(super) struct GatewayQuery {
    format: Option<String>,
    #[serde(rename = "dag-scope")]
    dag_scope: Option<String>,
    #[serde(rename = "entity-bytes")]
    entity_bytes: Option<String>,
}

enum Format {
    Raw,
    Car,
}

fn format(query: &GatewayQuery, headers: &HeaderMap) -> Option<Format> {
    match query.format.as_deref() {
        Some("raw") => return Some(Format::Raw),
        Some("car") => return Some(Format::Car),
        Some(_) => return None,
        None => {}
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains(CAR) {
        Some(Format::Car)
    } else if accept.contains(RAW) {
        Some(Format::Raw)
    } else {
        None
    }
}

fn path_error(e: ExportError) -> ApiError {
    match e {
        ExportError::NotUnixFs { .. } => ApiError::BadRequest(format!(
            "paths are followed through UnixFS (dag-pb) directories only: {e}"
        )),
        ExportError::Block(BlockError::Io { source, .. }) => read_fault(source),
        other => ApiError::NotFound(other.to_string()),
    }
}

/// A block read that failed: from providers (busy, or none served it), or the store (the
/// content may well be here).
fn read_fault(source: Box<dyn std::error::Error + Send + Sync>) -> ApiError {
    match source.downcast::<ColdError>() {
        Ok(cold) => match *cold {
            ColdError::Busy => ApiError::Busy,
            // Each provider's failure is logged, not told: it may name a private address.
            _ => ApiError::Upstream(
                "this content is read from the storage providers holding it, and none served it; \
                 try again later"
                    .into(),
            ),
        },
        Err(source) => ApiError::Blockstore(BlockstoreError::Io(std::io::Error::other(source))),
    }
}

/// `GET`/`HEAD /ipfs/{cid}[/path]`.
pub(super) async fn ipfs<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(path): Path<String>,
    Query(query): Query<GatewayQuery>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let slot =
        Arc::clone(&st.policy.gateway_requests).try_acquire_owned().map_err(|_| ApiError::Busy)?;
    let (cid_text, rest) = path.split_once('/').unwrap_or((&path, ""));
    let rest = rest.trim_end_matches('/').to_owned();
    let cid = Cid::try_from(cid_text)
        .map_err(|e| ApiError::BadRequest(format!("not a CID: {cid_text:?}: {e}")))?;
    let Some(format) = format(&query, &headers) else {
        return Ok((
            StatusCode::NOT_ACCEPTABLE,
            "this is a trustless gateway: ask for format=raw or format=car",
        )
            .into_response());
    };
    let scope = match query.dag_scope.as_deref() {
        None => DagScope::All,
        Some(s) => DagScope::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!("dag-scope must be block, entity or all, got {s:?}"))
        })?,
    };
    let range = match query.entity_bytes.as_deref() {
        None => None,
        Some(_) if scope != DagScope::Entity => {
            return Err(ApiError::BadRequest("entity-bytes needs dag-scope=entity".into()));
        }
        Some(r) => Some(r.parse::<EntityBytes>().map_err(ApiError::BadRequest)?),
    };
    // The path is resolved before any byte is sent, so a missing entry is a 404.
    let (blocks, cold) = (Arc::clone(&st.blocks), st.cold.clone());
    let resolve_path_text = rest.clone();
    let resolved = tokio::task::spawn_blocking(move || {
        resolve_path(cid, &resolve_path_text, ColdSource::new(&*blocks, cold.as_ref()))
            .map_err(Box::new)
    })
    .await
    .expect("resolving a path does not panic")
    .map_err(|e| path_error(*e))?;
    let terminal = resolved.terminal;
    let head = method == Method::HEAD;
    let ipfs_path =
        if rest.is_empty() { format!("/ipfs/{cid}") } else { format!("/ipfs/{cid}/{rest}") };
    // A raw block, or a CAR of the one block, sends the terminal block itself.
    let (etag, one_block) = match format {
        Format::Raw => (format!("\"{terminal}.raw\""), true),
        Format::Car => {
            // One ETag per distinct CAR: root, path, scope and range.
            let key = format!("{ipfs_path}|{}|{:?}", scope.as_str(), query.entity_bytes);
            let digest = {
                use sha2::Digest;
                hex::encode(&sha2::Sha256::digest(key.as_bytes())[..16])
            };
            let whole = scope == DagScope::Block && resolved.path_blocks.is_empty();
            (format!("\"{terminal}.car.{digest}\""), whole)
        }
    };
    let matched = not_modified(&headers, &etag);
    // Held here, or of a pin whose piece providers hold, or a 404 before anything else: read
    // once when its bytes are sent, only looked up otherwise (`HEAD`, `304`, a CAR walk, which
    // reads it itself), so nothing is read from providers for an answer without it. A walk of a
    // pin whose blocks are not here reads them from the providers (the pin is cold).
    let (data, from_providers) = if one_block && !head && !matched {
        (Some(read_block(&st, terminal).await?), false)
    } else {
        let blocks = Arc::clone(&st.blocks);
        let here = tokio::task::spawn_blocking(move || blocks.has(&terminal))
            .await
            .expect("a block lookup does not panic")?;
        let held = here
            || match &st.cold {
                Some(cold) => cold.holds(&terminal).await?,
                None => false,
            };
        if !held {
            return Err(ApiError::NotFound(format!("{terminal} is not pinned here")));
        }
        (None, !here)
    };
    if matched {
        return Ok(not_modified_response(&etag));
    }
    let mut response = match format {
        Format::Raw => immutable(Body::from(data.unwrap_or_default()), RAW, &etag),
        Format::Car => {
            let body = if head {
                Body::empty()
            } else if let Some(data) = data {
                let mut out = header_v1(&[cid]);
                encode_section(&Block { cid, data }, &mut out);
                Body::from(out)
            } else {
                // The walk holds the slot until it ends.
                let body = car_stream(
                    Arc::clone(&st.blocks),
                    st.cold.clone(),
                    cid,
                    resolved,
                    scope,
                    range,
                    st.gateway_limits,
                    slot,
                );
                let mut response = immutable(
                    body,
                    "application/vnd.ipld.car; version=1; order=dfs; dups=n",
                    &etag,
                );
                describe(&mut response, &ipfs_path, from_providers);
                return Ok(response);
            };
            immutable(body, "application/vnd.ipld.car; version=1; order=dfs; dups=n", &etag)
        }
    };
    describe(&mut response, &ipfs_path, from_providers);
    Ok(hold(response, slot))
}

/// The headers saying what an answer is: its `x-ipfs-path`, and `x-estuary-source: providers`
/// when its blocks are read from the providers.
fn describe(response: &mut Response, ipfs_path: &str, from_providers: bool) {
    set(response, header::HeaderName::from_static("x-ipfs-path"), ipfs_path);
    if from_providers {
        set(response, header::HeaderName::from_static(SOURCE), "providers");
    }
}

/// The block `cid`: from the store, or from the providers of a piece holding it.
async fn read_block<B: Blockstore>(st: &ApiState<B>, cid: Cid) -> Result<Vec<u8>, ApiError> {
    let (blocks, cold) = (Arc::clone(&st.blocks), st.cold.clone());
    tokio::task::spawn_blocking(move || ColdSource::new(&*blocks, cold.as_ref()).block(&cid))
        .await
        .expect("a block read does not panic")
        .map_err(|e| match e {
            BlockError::Io { source, .. } => read_fault(source),
            _ => ApiError::NotFound(format!("{cid} is not pinned here")),
        })
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn not_modified_response(etag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    set(&mut response, header::ETAG, etag);
    response
}

/// A response for content-addressed bytes: its type, its ETag, cacheable for ever.
fn immutable(body: Body, content_type: &str, etag: &str) -> Response {
    let mut response = body.into_response();
    set(&mut response, header::CONTENT_TYPE, content_type);
    set(&mut response, header::ETAG, etag);
    set(&mut response, header::CACHE_CONTROL, "public, max-age=29030400, immutable");
    set(&mut response, header::HeaderName::from_static("x-content-type-options"), "nosniff");
    response
}

/// The response header a CAR walk of a cold pin carries, `providers`: its blocks are read from
/// the storage providers holding its deals, each checked (the oracle keeps no copy of them).
pub const SOURCE: &str = "x-estuary-source";

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// The CAR of the selected blocks, produced by a blocking walk as the client reads it (bounded
/// buffer), within `limits`. The walk stops at the next block once the client has gone, and
/// holds `slot` until it ends.
#[allow(clippy::too_many_arguments)]
fn car_stream<B: Blockstore>(
    blocks: Arc<B>,
    cold: Option<Arc<ColdReads>>,
    root: Cid,
    resolved: ResolvedPath,
    scope: DagScope,
    range: Option<EntityBytes>,
    limits: GatewayLimits,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        if tx.blocking_send(Ok(header_v1(&[root]))).is_err() {
            return;
        }
        let over = AtomicBool::new(false);
        let source = Budgeted {
            source: ColdSource::new(&*blocks, cold.as_ref()),
            read: 0,
            max_bytes: limits.max_bytes,
            deadline: Instant::now() + limits.max_time,
            over: &over,
        };
        let mut batch = Vec::with_capacity(1 << 20);
        let walked = select_blocks(&resolved, scope, range, limits.walk(), source, |cid, data| {
            // The client went away: stop walking.
            if tx.is_closed() {
                return false;
            }
            encode_section(&Block { cid: *cid, data: data.to_vec() }, &mut batch);
            if batch.len() >= 1 << 20 {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(1 << 20));
                // The client went away: stop walking.
                return tx.blocking_send(Ok(full)).is_ok();
            }
            true
        });
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
        match walked {
            Ok(()) | Err(TraversalError::Stopped) => {}
            Err(e) => {
                let over_budget = over.load(Ordering::Relaxed) || is_limit(&e);
                if over_budget {
                    tracing::info!(%root, error = %e, "a gateway walk ran out of its budget");
                } else if from_providers(&e) {
                    tracing::warn!(%root, error = %e, "a gateway walk's read from providers failed");
                } else if e.is_fault() {
                    tracing::error!(error = %e, "the blockstore failed while a CAR was served");
                }
                // The status line is gone: end the body with an error so the client sees a
                // truncated CAR rather than a silently incomplete one.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    Body::from_stream(stream)
}

/// Whether a walk stopped on a read from providers (busy, or none served the block).
fn from_providers(e: &TraversalError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<ColdError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether a walk stopped at one of its limits.
fn is_limit(e: &TraversalError) -> bool {
    match e {
        TraversalError::Walk(w) => w.is_limit(),
        TraversalError::Export(x) => matches!(**x, ExportError::TooManyVisits(_)),
        _ => false,
    }
}

fn range_of(request: &Request) -> Option<axum::http::HeaderValue> {
    request.headers().get(header::RANGE).cloned()
}

/// `GET`/`HEAD /piece/{pieceCid}`: the packed CAR, a closed bucket's aggregate assembled from its
/// CARs, or a part of a pin split across pieces (its span of the pin's CAR), with range
/// requests; a piece not here is read from the providers holding it (`deals::cold`).
pub(super) async fn piece<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(piece): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let slot =
        Arc::clone(&st.policy.gateway_requests).try_acquire_owned().map_err(|_| ApiError::Busy)?;
    let parsed: PieceCid = piece
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("not a piece CID: {piece:?}: {e}")))?;
    if parsed.padded_size().is_none() {
        return Err(ApiError::BadRequest(
            "a v1 piece CID does not carry the piece size: use the v2 piece CID".into(),
        ));
    }
    let path = st.packed_dir.join(format!("{parsed}.car"));
    if !path.exists() {
        let range = request.headers().get(header::RANGE).cloned();
        return match super::aggregate::serve(
            &st.store,
            &st.aggregates,
            &st.packed_dir,
            &parsed,
            range,
        )
        .await?
        {
            Some(response) => Ok(hold(response, slot)),
            None => {
                // A part of a pin split across pieces: its span of the first of the pins' CARs
                // holding it that is here at its size.
                for source in st.store.part_sources(&parsed.to_string()).await? {
                    let path = st.packed_dir.join(format!("{}.car", source.parent));
                    if let Ok(response) = super::aggregate::serve_span(
                        &parsed,
                        &path,
                        source.car_size,
                        source.offset,
                        source.length,
                        range_of(&request),
                    )
                    .await
                    {
                        return Ok(hold(response, slot));
                    }
                }
                // Not here: read from the providers that hold it, each span checked.
                if let Some(cold) = &st.cold
                    && let Some(response) =
                        super::aggregate::serve_cold(cold, &parsed, range_of(&request)).await?
                {
                    return Ok(hold(response, slot));
                }
                Err(ApiError::NotFound(format!("piece {parsed} is not here")))
            }
        };
    }
    // 256 KiB reads, as `/piece/{aggregate}` does: ServeFile's 64 KiB default costs a fifth of
    // the throughput on loopback (docs/benchmarks.md, "serving an aggregate").
    let served = ServeFile::new(&path)
        .with_buf_chunk_size(256 << 10)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    let mut response = served.into_response();
    set(&mut response, header::CONTENT_TYPE, CAR);
    set(&mut response, header::ETAG, &format!("\"{parsed}\""));
    Ok(hold(response, slot))
}
