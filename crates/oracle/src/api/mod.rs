//! The oracle's HTTP API.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /health` | – | liveness; `paused` while a storage fault pauses the workers |
//! | `GET /status` | – | chain, contract, watcher progress, request count, the workers' pause |
//! | `GET /metrics` | – | Prometheus text: jobs by state, watcher cursor and head, reorgs, RPC failovers, workers paused, storage faults, GC runs and bytes freed |
//! | `GET /requests/{id}` | – | one `EstuaryPinning` request ([`Job`] as JSON) |
//! | `GET /requests?after=&limit=` | bearer | requests in the order stored |
//! | `GET /jobs/{key}` | – | any job by its key (`contract/…/…/id`, `api/<account>/<id>`) |
//! | `GET`/`HEAD /ipfs/{cid}?format=raw\|car` | – | trustless gateway: a block, or the DAG as a CAR |
//! | `GET`/`HEAD /piece/{pieceCid}` | – | a packed CAR by its v2 piece CID (ranges supported) |
//! | `POST /uploads`, `HEAD`/`PATCH /uploads/{id}` | – | resumable CAR upload (tus-style offsets) |
//! | `GET`/`POST /pins`, `GET`/`POST`/`DELETE /pins/{requestid}` | bearer | IPFS Pinning Service API v1 ([`pins`]) |
//!
//! Requests are public on chain, so reading one needs no token; listing is for operators.
//! Every failure is an [`ApiError`] (the pinning API answers with the spec's `Failure` object
//! instead): client errors say what was wrong; a failing database is a 500, a failing
//! blockstore a 503 (a full disk: 507), each with a generic body and the cause logged.

use std::{path::PathBuf, str::FromStr, sync::Arc};

use alloy::primitives::U256;
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tower_http::cors::CorsLayer;
use tracing::error;

use crate::{
    blockstore::{Blockstore, BlockstoreError},
    domain::{JobKey, JobSource, request::Job},
    store::{Store, StoreError},
};
use estuary_chain::WatchState;

mod gateway;
pub mod pins;
mod upload;

pub use gateway::GatewayLimits;

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState<B> {
    /// The database.
    pub store: Store,
    /// Pinned blocks, served by the gateway.
    pub blocks: Arc<B>,
    /// Packed CARs, served by piece CID.
    pub packed_dir: PathBuf,
    /// Uploads being received.
    pub uploads_dir: PathBuf,
    /// The `EstuaryPinning` source whose requests `/requests` serves.
    pub source: JobSource,
    /// The watcher's progress.
    pub watch: watch::Receiver<WatchState>,
    /// Token for authenticated routes; `None` disables them.
    pub api_token: Option<String>,
    /// Multiaddrs of this oracle, returned as `delegates` by the pinning API.
    pub delegates: Vec<String>,
    /// The libp2p node, whose addresses `/p2p` gives (browser nodes dial them).
    pub p2p: Option<crate::p2p::P2p>,
    /// Budgets of each gateway request's walk.
    pub gateway_limits: GatewayLimits,
    /// Whether the workers are paused by a storage fault (shown by `/health`, `/status`,
    /// `/metrics`).
    pub faults: crate::pipeline::Faults,
}

/// An API failure: client errors say what was wrong; internal ones are logged and hidden.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request was malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// The database failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blockstore failed (503, or 507 when it is full): the content may well be here.
    #[error(transparent)]
    Blockstore(#[from] BlockstoreError),
    /// The disk failed while receiving (500, or 507 when it is full).
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// Whether an I/O error means the disk is full.
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, self.to_string()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Self::Store(e) => {
                error!(error = %e, "database error while serving a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
            }
            Self::Blockstore(BlockstoreError::Io(e)) | Self::Io(e) if is_full(e) => {
                error!(error = %e, "storage full while serving a request");
                (StatusCode::INSUFFICIENT_STORAGE, "storage is full".to_owned())
            }
            Self::Blockstore(e) => {
                error!(error = %e, "blockstore error while serving a request");
                (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable; try again later".to_owned())
            }
            Self::Io(e) => {
                error!(error = %e, "storage error while serving a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
            }
        };
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The API's router.
pub fn router<B: Blockstore>(state: Arc<ApiState<B>>) -> Router {
    Router::new()
        .route("/health", get(health::<B>))
        .route("/p2p", get(p2p_info::<B>))
        .route("/status", get(status::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/requests", get(list_requests::<B>))
        .route("/requests/{id}", get(get_request::<B>))
        .route("/jobs/{*key}", get(get_job::<B>))
        .route("/ipfs/{*path}", get(gateway::ipfs::<B>))
        .route("/piece/{piece}", get(gateway::piece::<B>))
        .route("/uploads", axum::routing::post(upload::create::<B>))
        .route("/uploads/{id}", axum::routing::head(upload::offset::<B>).patch(upload::append::<B>))
        .route("/pins", get(pins::list::<B>).post(pins::add::<B>))
        .route(
            "/pins/{requestid}",
            get(pins::get::<B>).post(pins::replace::<B>).delete(pins::remove::<B>),
        )
        .layer(CorsLayer::permissive())
        .with_state(state)
}

async fn metrics<B: Blockstore>(State(st): State<Arc<ApiState<B>>>) -> Result<Response, ApiError> {
    use std::fmt::Write;
    let counts = st.store.state_counts().await?;
    let w = *st.watch.borrow();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP estuary_requests Jobs by lifecycle state.");
    let _ = writeln!(out, "# TYPE estuary_requests gauge");
    for (state, n) in counts {
        let _ = writeln!(out, "estuary_requests{{status=\"{}\"}} {n}", state.as_str());
    }
    let _ = writeln!(out, "# HELP estuary_watcher_cursor Last block fully ingested.");
    let _ = writeln!(out, "# TYPE estuary_watcher_cursor gauge");
    let _ = writeln!(out, "estuary_watcher_cursor {}", w.cursor.unwrap_or(0));
    let _ = writeln!(out, "# HELP estuary_chain_head Chain head last seen.");
    let _ = writeln!(out, "# TYPE estuary_chain_head gauge");
    let _ = writeln!(out, "estuary_chain_head {}", w.head.unwrap_or(0));
    let _ = writeln!(out, "# HELP estuary_ingested_total Requests stored since start.");
    let _ = writeln!(out, "# TYPE estuary_ingested_total counter");
    let _ = writeln!(out, "estuary_ingested_total {}", w.ingested);
    let _ = writeln!(out, "# HELP estuary_reorgs_total Reorgs the watcher rewound.");
    let _ = writeln!(out, "# TYPE estuary_reorgs_total counter");
    let _ = writeln!(out, "estuary_reorgs_total {}", w.reorgs);
    let _ = writeln!(
        out,
        "# HELP estuary_rpc_failovers_total Watcher steps moved to another RPC endpoint."
    );
    let _ = writeln!(out, "# TYPE estuary_rpc_failovers_total counter");
    let _ = writeln!(out, "estuary_rpc_failovers_total {}", w.rpc_failovers);
    data_metrics(&st, &mut out).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// The oracle's libp2p identity: `{ "peer_id", "addrs": [multiaddr…/p2p/…], "peers" }`.
async fn p2p_info<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p2p = st.p2p.as_ref().ok_or_else(|| ApiError::NotFound("libp2p is off".into()))?;
    let addrs: Vec<String> = p2p.addrs().iter().map(ToString::to_string).collect();
    let stats = p2p.bitswap().stats();
    Ok(Json(serde_json::json!({
        "peer_id": p2p.peer_id().to_string(),
        "addrs": addrs,
        "peers": p2p.peers(),
        "blocks_sent": stats.blocks_sent,
        "blocks_received": stats.blocks_received,
    })))
}

/// The metrics of the data path: the workers' pause, storage faults, garbage collection.
async fn data_metrics<B>(st: &ApiState<B>, out: &mut String) -> Result<(), ApiError> {
    use std::fmt::Write;
    let gc = st.store.gc_totals(crate::domain::now_ms()).await?;
    let paused = u8::from(st.faults.paused().is_some());
    let metrics: [(&str, &str, &str, u64); 8] = [
        (
            "estuary_workers_paused",
            "gauge",
            "1 while a storage fault pauses the workers.",
            paused.into(),
        ),
        (
            "estuary_storage_faults_total",
            "counter",
            "Blockstore faults the workers met.",
            st.faults.total(),
        ),
        ("estuary_gc_runs_total", "counter", "Garbage collections finished.", gc.runs),
        (
            "estuary_gc_freed_blocks_total",
            "counter",
            "Blocks garbage collection deleted.",
            gc.freed_blocks,
        ),
        (
            "estuary_gc_freed_bytes_total",
            "counter",
            "Bytes of blocks garbage collection deleted.",
            gc.freed_bytes,
        ),
        (
            "estuary_gc_freed_car_bytes_total",
            "counter",
            "Bytes of packed CARs garbage collection deleted.",
            gc.freed_car_bytes,
        ),
        (
            "estuary_gc_running",
            "gauge",
            "1 while a garbage collection runs.",
            u64::from(gc.running),
        ),
        (
            "estuary_gc_last_finished_seconds",
            "gauge",
            "When the last garbage collection finished (unix).",
            gc.last_finished_ms.unwrap_or(0) / 1000,
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    Ok(())
}

/// Liveness, and whether the workers run: `{"status": "ok"}`, or `{"status": "paused",
/// "reason": "storage_unavailable", "since_ms": …}` while a storage fault pauses them (the
/// fault itself is in `/status`, for operators).
async fn health<B: Blockstore>(State(st): State<Arc<ApiState<B>>>) -> Json<serde_json::Value> {
    match st.faults.paused() {
        None => Json(serde_json::json!({ "status": "ok" })),
        Some(pause) => Json(serde_json::json!({
            "status": "paused",
            "reason": "storage_unavailable",
            "since_ms": pause.since_ms,
        })),
    }
}

#[derive(Serialize)]
struct StatusBody {
    chain_id: Option<u64>,
    contract: Option<String>,
    #[serde(flatten)]
    watch: WatchState,
    requests: u64,
    /// Why the workers are paused, if they are.
    paused: Option<crate::pipeline::faults::Pause>,
}

async fn status<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
) -> Result<Json<StatusBody>, ApiError> {
    // The watch state first: the watcher moves its cursor only after the range is stored, so the
    // count read next includes every request up to the cursor shown.
    let watch = *st.watch.borrow();
    let requests = st.store.count(&st.source).await?;
    let (chain_id, contract) = match st.source.contract() {
        Some((chain, address)) => (Some(chain), Some(format!("{address:#x}"))),
        None => (None, None),
    };
    Ok(Json(StatusBody { chain_id, contract, watch, requests, paused: st.faults.paused() }))
}

async fn get_request<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let parsed = U256::from_str_radix(&id, 10)
        .ok()
        .filter(|_| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("request id must be a decimal number, got {id:?}"))
        })?;
    let key = JobKey { source: st.source.clone(), id: crate::domain::JobId::request(parsed) };
    st.store
        .job(&key)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no request {parsed} seen yet")))
}

async fn get_job<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(key): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let key: JobKey =
        key.parse().map_err(|e: crate::domain::job::BadKey| ApiError::BadRequest(e.to_string()))?;
    st.store.job(&key).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("no job {key}")))
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct ListBody {
    results: Vec<Job>,
    /// Pass as `after` to get the next page; `null` when this page was the last.
    next: Option<u64>,
}

async fn list_requests<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<ListBody>, ApiError> {
    authorize(&st, &headers)?;
    let after = parse_param(q.after.as_deref(), "after", 0, u64::MAX)?;
    let limit = parse_param(q.limit.as_deref(), "limit", 100, 1000)?;
    if limit == 0 {
        return Err(ApiError::BadRequest("limit must be between 1 and 1000".into()));
    }
    let limit = u32::try_from(limit).expect("at most 1000");
    let page = st.store.list(&st.source, after, limit).await?;
    let next = (page.len() == limit as usize).then(|| page.last().map(|(seq, _)| *seq)).flatten();
    Ok(Json(ListBody { results: page.into_iter().map(|(_, r)| r).collect(), next }))
}

fn parse_param(v: Option<&str>, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => u64::from_str(s).ok().filter(|n| *n <= max).ok_or_else(|| {
            ApiError::BadRequest(format!("{name} must be a whole number up to {max}"))
        }),
    }
}

fn authorize<B>(st: &ApiState<B>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = st.api_token.as_deref() else {
        return Err(ApiError::Unauthorized);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    // Constant-time compare: the token is a secret.
    let equal = given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if equal { Ok(()) } else { Err(ApiError::Unauthorized) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{domain::request::RequestEvent, store::DatabaseUrl};
    use alloy::primitives::{Address, B256, bytes};
    use axum::body::Body;
    use estuary_chain::Cursor;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn app() -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
        let source = JobSource::Contract { chain: 31337, address: Address::repeat_byte(1) };
        let event = RequestEvent {
            request_id: U256::from(1),
            requester: Address::repeat_byte(2),
            cid: bytes!("01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace"),
            block_number: 3,
            block_hash: B256::repeat_byte(3),
            tx_hash: B256::repeat_byte(4),
            log_index: 0,
            origins: Vec::new(),
            size_hint: None,
            refused: None,
        };
        let cursor = Cursor { block_number: 3, block_hash: B256::repeat_byte(3) };
        store.ingest_requests("s", &source, &[event], &[], cursor, 1).await.unwrap();
        let (_tx, watch) = watch::channel(WatchState::default());
        let blocks =
            Arc::new(crate::blockstore::FsBlockstore::open(dir.path().join("data")).unwrap());
        let state = ApiState {
            store,
            blocks,
            packed_dir: dir.path().join("data/packed"),
            uploads_dir: dir.path().join("data/uploads"),
            source,
            watch,
            api_token: Some("secret".into()),
            delegates: vec!["/ip4/127.0.0.1/tcp/3000/http".into()],
            p2p: None,
            gateway_limits: GatewayLimits::default(),
            faults: crate::pipeline::Faults::new(),
        };
        (router(Arc::new(state)), dir)
    }

    async fn call(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::get(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn get_request_by_id() {
        let (app, _dir) = app().await;
        let (status, body) = call(&app, "/requests/1", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], "1");
        assert_eq!(body["status"], "queued");
        assert_eq!(body["cid"], "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy");
        assert_eq!(body["block"], 3);
        assert_eq!(body["requester"], Address::repeat_byte(2).to_checksum(None));
    }

    #[tokio::test]
    async fn bad_and_unknown_ids() {
        let (app, _dir) = app().await;
        assert_eq!(call(&app, "/requests/2", None).await.0, StatusCode::NOT_FOUND);
        for bad in [
            "abc",
            "-1",
            "0x1",
            "1e3",
            "99999999999999999999999999999999999999999999999999999999999999999999999999999999",
        ] {
            let (status, body) = call(&app, &format!("/requests/{bad}"), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(body["error"].as_str().unwrap().contains("decimal"));
        }
    }

    #[tokio::test]
    async fn listing_needs_the_token() {
        let (app, _dir) = app().await;
        assert_eq!(call(&app, "/requests", None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "/requests", Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
        let (status, body) = call(&app, "/requests?limit=10", Some("secret")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["results"].as_array().unwrap().len(), 1);
        assert_eq!(body["next"], serde_json::Value::Null);
        assert_eq!(
            call(&app, "/requests?limit=0", Some("secret")).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call(&app, "/requests?after=x", Some("secret")).await.0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn status_reports_counts() {
        let (app, _dir) = app().await;
        let (status, body) = call(&app, "/status", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["requests"], 1);
        assert_eq!(body["chain_id"], 31337);
    }

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn pinning_service_api() {
        use crate::domain::pinning::{Scope, secret_digest};
        let (app, dir) = app().await;
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        let pin = serde_json::json!({ "cid": cid, "name": "n", "meta": { "app": "x" } });

        // Tokens: none, unknown, read-only.
        let (status, body) = send(&app, "GET", "/pins", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["reason"], "UNAUTHORIZED");
        assert_eq!(
            send(&app, "GET", "/pins", Some("nope"), None).await.0,
            StatusCode::UNAUTHORIZED
        );

        let (status, created) =
            send(&app, "POST", "/pins", Some("secret"), Some(pin.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(created["status"], "queued");
        assert_eq!(created["pin"]["cid"], cid);
        assert_eq!(created["delegates"][0], "/ip4/127.0.0.1/tcp/3000/http");
        assert!(created["created"].as_str().unwrap().ends_with('Z'));
        let id = created["requestid"].as_str().unwrap().to_owned();

        let (status, got) = send(&app, "GET", &format!("/pins/{id}"), Some("secret"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["pin"]["meta"]["app"], "x");
        let (status, list) = send(
            &app,
            "GET",
            "/pins?status=queued&meta=%7B%22app%22%3A%22x%22%7D",
            Some("secret"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["count"], 1);

        // Bad input gets the spec's Failure object.
        for bad in [
            serde_json::json!({ "cid": "nope" }),
            serde_json::json!({ "name": "no cid" }),
            serde_json::json!({ "cid": cid, "name": "x".repeat(256) }),
            serde_json::json!({ "cid": cid, "origins": ["not-a-multiaddr"] }),
            serde_json::json!([1, 2]),
        ] {
            let (status, body) = send(&app, "POST", "/pins", Some("secret"), Some(bad)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"]["reason"], "BAD_REQUEST");
        }
        for q in ["limit=0", "status=done", "before=yesterday", "match=regex&name=a", "meta=1"] {
            let (status, _) = send(&app, "GET", &format!("/pins?{q}"), Some("secret"), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        }

        // Another account sees nothing of it; a read token cannot write.
        let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
        assert!(store.add_token("reader", &secret_digest("r"), Scope::Read, 1).await.unwrap());
        let (status, list) = send(&app, "GET", "/pins", Some("r"), None).await;
        assert_eq!((status, list["count"].clone()), (StatusCode::OK, serde_json::json!(0)));
        assert_eq!(
            send(&app, "GET", &format!("/pins/{id}"), Some("r"), None).await.0,
            StatusCode::NOT_FOUND
        );
        let (status, body) = send(&app, "POST", "/pins", Some("r"), Some(pin.clone())).await;
        assert_eq!(
            (status, body["error"]["reason"].clone()),
            (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE".into())
        );

        // Replace gives a new id; the old one is gone; delete removes the new one.
        let (status, replaced) =
            send(&app, "POST", &format!("/pins/{id}"), Some("secret"), Some(pin.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let new_id = replaced["requestid"].as_str().unwrap().to_owned();
        assert_ne!(new_id, id);
        assert_eq!(
            send(&app, "GET", &format!("/pins/{id}"), Some("secret"), None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            send(&app, "DELETE", &format!("/pins/{id}"), Some("secret"), None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            send(&app, "DELETE", &format!("/pins/{new_id}"), Some("secret"), None).await.0,
            StatusCode::ACCEPTED
        );
        assert_eq!(send(&app, "GET", "/pins", Some("secret"), None).await.1["count"], 0);
    }
}
