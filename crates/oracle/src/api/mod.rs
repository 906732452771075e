//! The oracle's HTTP API.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /health` | – | liveness; `paused` while a storage fault pauses the workers |
//! | `GET /p2p` | – | the libp2p node's peer id and addresses (browser nodes dial them) |
//! | `GET /status` | operator | chain, contract, watcher progress, request count, the workers' pause |
//! | `GET /metrics` | operator | Prometheus text: jobs by state, watcher cursor and head, reorgs, RPC failovers, workers paused, storage faults, GC runs and bytes freed, requests in flight |
//! | `GET /requests/{id}` | – | one `EstuaryPinning` request: a reason code and a public reason (the operator also sees the error's detail), its replicas (`deals`), the bucket it is in (`bucket`), its replicas against their target (`replicas`), and the parts of a split pin (`pieces`) |
//! | `GET /requests?after=&limit=` | operator | requests in the order stored |
//! | `GET /jobs/{key}` | operator | any job by its key (`contract/…/…/id`, `api/<account>/<id>`) |
//! | `GET`/`HEAD /ipfs/{cid}?format=raw\|car` | – | trustless gateway: a block, or the DAG as a CAR |
//! | `GET`/`HEAD /piece/{pieceCid}` | – | a packed CAR by its v2 piece CID (ranges supported) |
//! | `OPTIONS /uploads` | – | tus discovery: version, extensions, `Tus-Max-Size` |
//! | `POST /uploads` | write token, session, pre-signed URL or request signature | create a resumable CAR upload ([`upload`]) |
//! | `HEAD`/`PATCH`/`DELETE /uploads/{id}` | its creator | offset, append, terminate |
//! | `POST /uploads/presign` | write token | a pre-signed upload URL ([`auth`]) |
//! | `POST /auth/nonce`, `POST /auth/siwe` | – | Sign-In with Ethereum: a nonce, then a session token |
//! | `GET`/`POST /pins`, `GET`/`POST`/`DELETE /pins/{requestid}` | bearer | IPFS Pinning Service API v1 ([`pins`]) |
//!
//! Requests are public on chain, so reading one needs no token; listing, status, metrics and
//! jobs are for the operator. Every failure is an [`ApiError`] (the pinning API answers with
//! the spec's `Failure` object instead), a JSON `{"error", "code"}`: client errors say what was
//! wrong; a failing database is a 500, a failing blockstore a 503 (a full disk, or free space
//! under `--min-free-bytes`: 507), each with a generic body and the cause logged. Per-source
//! detail (gateway URLs, peer ids, I/O errors) is shown to the operator only.
//!
//! Limits (see [`serve`]): the head of a request must arrive within `--http-header-timeout-secs`,
//! a body may pause at most `--http-body-timeout-secs`, a response may wait at most
//! `--http-idle-timeout-secs` for a client that does not read; connections are capped in all and
//! per address, requests in flight in all (`--http-max-requests`) and for the gateway and
//! `/piece` (`--gateway-max-requests`), beyond which the answer is 503 with `Retry-After`. CORS
//! allows the configured origins (`--cors-origin`, the dapp's by default) on every route but the
//! gateway's, `/piece` and `/health`, which any page may read (content-addressed, public).

use std::{path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use alloy::primitives::U256;
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::error;

use crate::{
    blockstore::{Blockstore, BlockstoreError},
    domain::{
        JobKey, JobSource, JobState,
        auth::AuthError,
        request::Job,
        upload::{Quota, QuotaExceeded, TusError},
    },
    store::{Store, StoreError},
};
use estuary_chain::WatchState;

mod aggregate;
pub mod auth;
mod gateway;
pub mod history;
mod inclusion;
pub mod pins;
pub mod serve;
pub mod upload;

pub use aggregate::{AggregateCache, PieceBytes, piece_bytes};
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
    /// Uploads, sign-in, quotas and request limits.
    pub policy: ApiPolicy,
    /// The largest aggregate, if pins are bucketed (`--bucket-size`).
    pub bucket_size: Option<u64>,
    /// Aggregates `/piece/{aggregate}` served recently, assembled.
    pub aggregates: AggregateCache,
    /// Pieces not here read from the providers that hold them (providers with `url=` or a
    /// registered URL).
    pub cold: Option<Arc<crate::deals::cold::ColdReads>>,
    /// Wakes the deal rounds (`POST /deals/repair`).
    pub wake: crate::deals::Wake,
    /// The metrics over time (`GET /metrics/history`), sampled by [`history::run`].
    pub history: Arc<history::MetricsHistory>,
}

/// The API's rules: who may upload how much, for how long, and how many requests run at once.
#[derive(Debug, Clone)]
pub struct ApiPolicy {
    /// The largest upload (`Tus-Max-Size`).
    pub max_upload: u64,
    /// How long an unfinished upload is kept.
    pub upload_ttl: Duration,
    /// Each account's quota, unless set for the account.
    pub quota: Quota,
    /// The bytes quota of wallet accounts (a `0x` address: Sign-In with Ethereum, requests).
    pub wallet_quota_bytes: u64,
    /// Free bytes the data directory keeps: below it uploads are refused with 507.
    pub min_free_bytes: u64,
    /// The domains a Sign-In with Ethereum message may name.
    pub siwe_domains: Vec<String>,
    /// The longest session a sign-in gives.
    pub session: Duration,
    /// The longest life of a pre-signed upload URL.
    pub presign_max: Duration,
    /// Origins allowed by CORS (`*`: any).
    pub cors_origins: Vec<String>,
    /// The longest pause between two pieces of a request body.
    pub body_timeout: Duration,
    /// Requests in flight at once (beyond: 503); set with [`ApiPolicy::with_limits`].
    pub requests: Arc<Semaphore>,
    /// Gateway and `/piece` requests in flight at once (beyond: 503); held until the walk or
    /// the file behind a response ends.
    pub gateway_requests: Arc<Semaphore>,
    /// The sizes of the two: (requests, gateway requests).
    pub request_limits: (usize, usize),
}

impl Default for ApiPolicy {
    fn default() -> Self {
        Self {
            max_upload: 32 << 30,
            upload_ttl: Duration::from_secs(24 * 3600),
            quota: Quota { max_bytes: 64 << 30, max_uploads: 8, max_pins: 100_000 },
            wallet_quota_bytes: 4 << 30,
            min_free_bytes: 0,
            siwe_domains: Vec::new(),
            session: Duration::from_secs(24 * 3600),
            presign_max: Duration::from_secs(7 * 24 * 3600),
            cors_origins: vec!["http://127.0.0.1:5173".into(), "http://localhost:5173".into()],
            body_timeout: Duration::from_secs(30),
            requests: Arc::new(Semaphore::new(512)),
            gateway_requests: Arc::new(Semaphore::new(64)),
            request_limits: (512, 64),
        }
    }
}

impl ApiPolicy {
    /// The policy with at most `requests` requests in flight, `gateway` of them to the gateway
    /// and `/piece`.
    pub fn with_limits(mut self, requests: usize, gateway: usize) -> Self {
        let (requests, gateway) = (requests.max(1), gateway.max(1));
        self.requests = Arc::new(Semaphore::new(requests));
        self.gateway_requests = Arc::new(Semaphore::new(gateway));
        self.request_limits = (requests, gateway);
        self
    }

    /// The quota `account` has unless the operator set its own: wallet accounts (a `0x`
    /// address) have the wallet bytes quota.
    pub fn default_quota(&self, account: &str) -> Quota {
        if is_wallet_account(account) {
            Quota { max_bytes: self.wallet_quota_bytes, ..self.quota }
        } else {
            self.quota
        }
    }
}

/// Whether `account` is a wallet's (a checksummed or lowercase `0x` address).
pub fn is_wallet_account(account: &str) -> bool {
    account.len() == 42
        && account.starts_with("0x")
        && account.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
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
    /// The credential does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// The resource is not in a state that allows this (409).
    #[error("{0}")]
    Conflict(String),
    /// The resource existed and is gone (410).
    #[error("{0}")]
    Gone(String),
    /// More than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// The account is at its quota (403).
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// A sign-in or a request signature was refused (400 when malformed, else 401).
    #[error(transparent)]
    SignIn(#[from] AuthError),
    /// A tus header was refused (400, 412, 413 or 415).
    #[error(transparent)]
    Tus(#[from] TusError),
    /// Free space is under the floor (507).
    #[error("the oracle is low on storage and takes no uploads now; try again later")]
    LowOnStorage,
    /// Too many requests in flight (503).
    #[error("the oracle is busy; try again shortly")]
    Busy,
    /// The database failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blockstore failed (503, or 507 when it is full): the content may well be here.
    #[error(transparent)]
    Blockstore(#[from] BlockstoreError),
    /// The disk failed while receiving (500, or 507 when it is full).
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    /// No provider served what was asked as its commitment says (502).
    #[error("{0}")]
    Upstream(String),
    /// Something here that should not fail did (500; the detail is logged, not sent).
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    code: &'static str,
}

/// Whether an I/O error means the disk is full.
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

impl ApiError {
    /// The status, the reason code and the public message.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "BAD_REQUEST", m.clone()),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", self.to_string()),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "FORBIDDEN", m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "NOT_FOUND", m.clone()),
            Self::Conflict(m) => (StatusCode::CONFLICT, "CONFLICT", m.clone()),
            Self::Gone(m) => (StatusCode::GONE, "GONE", m.clone()),
            Self::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", m.clone()),
            Self::Quota(e) => (StatusCode::FORBIDDEN, "QUOTA_EXCEEDED", e.to_string()),
            Self::SignIn(e @ AuthError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "BAD_REQUEST", e.to_string())
            }
            Self::SignIn(e) => (StatusCode::UNAUTHORIZED, "SIGN_IN_REFUSED", e.to_string()),
            Self::Tus(e) => {
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                let code = match e {
                    TusError::Version(_) => "TUS_VERSION",
                    TusError::TooLarge { .. } => "TOO_LARGE",
                    TusError::MediaType => "UNSUPPORTED_MEDIA_TYPE",
                    TusError::BadRequest(_) => "BAD_REQUEST",
                };
                (status, code, e.to_string())
            }
            Self::LowOnStorage => {
                (StatusCode::INSUFFICIENT_STORAGE, "INSUFFICIENT_STORAGE", self.to_string())
            }
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "BUSY", self.to_string()),
            Self::Internal(detail) => {
                error!(error = %detail, "internal error while serving a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error".to_owned())
            }
            Self::Store(e) => {
                error!(error = %e, "database error while serving a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error".to_owned())
            }
            Self::Blockstore(BlockstoreError::Io(e)) | Self::Io(e) if is_full(e) => {
                error!(error = %e, "storage full while serving a request");
                (StatusCode::INSUFFICIENT_STORAGE, "INSUFFICIENT_STORAGE", "storage is full".into())
            }
            Self::Blockstore(e) => {
                error!(error = %e, "blockstore error while serving a request");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "STORAGE_UNAVAILABLE",
                    "storage unavailable; try again later".to_owned(),
                )
            }
            Self::Io(e) => {
                error!(error = %e, "storage error while serving a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error".to_owned())
            }
            Self::Upstream(m) => (StatusCode::BAD_GATEWAY, "UPSTREAM", m.clone()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut response = (status, Json(ErrorBody { error: message, code })).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Tus(TusError::Version(_)) => {
                headers.insert("tus-version", HeaderValue::from_static(upload::TUS_VERSION));
            }
            Self::Busy | Self::LowOnStorage => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

/// Request headers a page may send (CORS).
const ALLOWED_HEADERS: [&str; 11] = [
    "authorization",
    "content-type",
    "accept",
    "range",
    "if-none-match",
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-defer-length",
    "x-requested-with",
];

/// Response headers a page may read (CORS): what tus clients and the gateway's readers need.
const EXPOSED_HEADERS: [&str; 17] = [
    "location",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "upload-root",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "etag",
    "content-range",
    "content-length",
    "accept-ranges",
    "x-ipfs-path",
    gateway::SOURCE,
    "retry-after",
];

fn cors(origins: Option<&[String]>) -> CorsLayer {
    let allow = match origins {
        None => AllowOrigin::any(),
        Some(list) if list.iter().any(|o| o == "*") => AllowOrigin::any(),
        Some(list) => AllowOrigin::list(
            list.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        ),
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(3600))
}

/// The API's router.
pub fn router<B: Blockstore>(state: Arc<ApiState<B>>) -> Router {
    let policy = state.policy.clone();
    // Content-addressed and public: any page may read it.
    let public = Router::new()
        .route("/health", get(health::<B>))
        .route("/ipfs/{*path}", get(gateway::ipfs::<B>))
        .route("/piece/{piece}", get(gateway::piece::<B>))
        .route("/inclusion/{piece}", get(inclusion::inclusion::<B>))
        .layer(cors(None));
    let own = Router::new()
        .route("/p2p", get(p2p_info::<B>))
        .route("/status", get(status::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/metrics/history", get(history::history::<B>))
        .route("/requests", get(list_requests::<B>))
        .route("/requests/{id}", get(get_request::<B>))
        .route("/jobs/{*key}", get(get_job::<B>))
        .route("/deals", get(list_deals::<B>))
        .route("/deals/repair", post(repair_now::<B>))
        .route("/providers", get(list_providers::<B>))
        .route("/buckets", get(list_buckets::<B>))
        .route("/datadao", get(list_dao_fundings::<B>))
        .route("/uploads", post(upload::create::<B>))
        .route("/uploads/presign", post(auth::presign::<B>))
        .route(
            "/uploads/{id}",
            axum::routing::head(upload::offset::<B>)
                .patch(upload::append::<B>)
                .delete(upload::terminate::<B>),
        )
        .route("/auth/nonce", post(auth::nonce::<B>))
        .route("/auth/siwe", post(auth::siwe::<B>))
        .route("/pins", get(pins::list::<B>).post(pins::add::<B>))
        .route(
            "/pins/{requestid}",
            get(pins::get::<B>).post(pins::replace::<B>).delete(pins::remove::<B>),
        )
        .layer(cors(Some(&policy.cors_origins)))
        .layer(middleware::from_fn_with_state(policy.max_upload, tus_discovery));
    public
        .merge(own)
        .with_state(state)
        .layer(middleware::from_fn_with_state(policy.body_timeout, body_timeout))
        .layer(middleware::from_fn_with_state(Arc::clone(&policy.requests), in_flight))
}

/// Answers tus discovery (`OPTIONS /uploads…` that is not a CORS preflight) before the CORS
/// layer, which takes every `OPTIONS` for a preflight.
async fn tus_discovery(State(max_upload): State<u64>, request: Request, next: Next) -> Response {
    let discovery = request.method() == Method::OPTIONS
        && request.uri().path().starts_with("/uploads")
        && !request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if discovery { upload::discovery(max_upload) } else { next.run(request).await }
}

/// Cuts a request body that pauses longer than the timeout (the handler sees an error and keeps
/// what arrived).
async fn body_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let request = request.map(|body| Body::new(tower_http::timeout::TimeoutBody::new(limit, body)));
    next.run(request).await
}

/// Caps the requests in flight: beyond the cap the answer is 503 at once. The slot is held
/// until the response's body has been sent.
async fn in_flight(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(permit) = slots.try_acquire_owned() else {
        return ApiError::Busy.into_response();
    };
    let response = next.run(request).await;
    hold(response, permit)
}

/// `response` with `permit` kept until its body is dropped.
pub(crate) fn hold(response: Response, permit: OwnedSemaphorePermit) -> Response {
    use http_body_util::BodyExt;
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _held = &permit;
            frame
        }))
    })
}

async fn metrics<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let out = metrics_text(&st).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// The metrics, in Prometheus' text format.
async fn metrics_text<B: Blockstore>(st: &ApiState<B>) -> Result<String, ApiError> {
    use std::fmt::Write;
    let totals = st.store.state_totals().await?;
    let w = *st.watch.borrow();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP estuary_requests Jobs by lifecycle state.");
    let _ = writeln!(out, "# TYPE estuary_requests gauge");
    for (state, n, _) in &totals {
        let _ = writeln!(out, "estuary_requests{{status=\"{}\"}} {n}", state.as_str());
    }
    let _ = writeln!(out, "# HELP estuary_dag_bytes DAG bytes of the jobs, by lifecycle state.");
    let _ = writeln!(out, "# TYPE estuary_dag_bytes gauge");
    for (state, _, bytes) in &totals {
        let _ = writeln!(out, "estuary_dag_bytes{{status=\"{}\"}} {bytes}", state.as_str());
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
    data_metrics(st, &mut out).await?;
    let _ = writeln!(out, "# HELP estuary_deal_orders Storage orders for pieces, by state.");
    let _ = writeln!(out, "# TYPE estuary_deal_orders gauge");
    for (state, n) in st.store.order_counts().await? {
        let _ = writeln!(out, "estuary_deal_orders{{state=\"{}\"}} {n}", state.as_str());
    }
    deal_metrics(st, w.head, &mut out).await?;
    engine_metrics(&st.store.deal_engine_counts().await?, &mut out);
    let p = &st.policy;
    let _ = writeln!(out, "# HELP estuary_http_requests_in_flight Requests being served.");
    let _ = writeln!(out, "# TYPE estuary_http_requests_in_flight gauge");
    let used = |s: &Semaphore, max: usize| max.saturating_sub(s.available_permits());
    let (max_requests, max_gateway) = p.request_limits;
    let _ = writeln!(out, "estuary_http_requests_in_flight {}", used(&p.requests, max_requests));
    let _ = writeln!(
        out,
        "# HELP estuary_gateway_requests_in_flight Gateway and /piece requests being served."
    );
    let _ = writeln!(out, "# TYPE estuary_gateway_requests_in_flight gauge");
    let _ = writeln!(
        out,
        "estuary_gateway_requests_in_flight {}",
        used(&p.gateway_requests, max_gateway)
    );
    if let Some(p2p) = &st.p2p {
        p2p_metrics(&p2p.bitswap().stats(), &mut out);
    }
    Ok(out)
}

/// Buckets, deal reports, DataDAO fundings and store jobs.
fn engine_metrics(c: &crate::store::DealEngineCounts, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP estuary_buckets Buckets of pins, by state and kind.");
    let _ = writeln!(out, "# TYPE estuary_buckets gauge");
    for (state, kind, n, _) in &c.buckets {
        let _ = writeln!(out, "estuary_buckets{{state=\"{state}\",kind=\"{kind}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP estuary_bucket_bytes Padded bytes placed in buckets.");
    let _ = writeln!(out, "# TYPE estuary_bucket_bytes gauge");
    for (state, kind, _, bytes) in &c.buckets {
        let _ = writeln!(out, "estuary_bucket_bytes{{state=\"{state}\",kind=\"{kind}\"}} {bytes}");
    }
    let _ = writeln!(out, "# HELP estuary_deals_reported Deals reported with inclusion proofs.");
    let _ = writeln!(out, "# TYPE estuary_deals_reported gauge");
    let _ = writeln!(out, "estuary_deals_reported {}", c.deals_reported.0);
    let _ = writeln!(out, "# HELP estuary_pins_proven Pins proven inside reported deals.");
    let _ = writeln!(out, "# TYPE estuary_pins_proven gauge");
    let _ = writeln!(out, "estuary_pins_proven {}", c.deals_reported.1);
    let _ =
        writeln!(out, "# HELP estuary_dao_fundings DataDAO proposals funded, waiting, expired.");
    let _ = writeln!(out, "# TYPE estuary_dao_fundings gauge");
    for (state, n) in &c.dao_fundings {
        let _ = writeln!(out, "estuary_dao_fundings{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP estuary_store_jobs Store jobs by outcome.");
    let _ = writeln!(out, "# TYPE estuary_store_jobs gauge");
    let _ = writeln!(out, "estuary_store_jobs{{state=\"fulfilled\"}} {}", c.store_results.0);
    let _ = writeln!(out, "estuary_store_jobs{{state=\"failed\"}} {}", c.store_results.1);
    let _ = writeln!(out, "estuary_store_jobs{{state=\"waiting\"}} {}", c.store_waiting);
    let _ = writeln!(out, "# HELP estuary_deal_proposals Contract-deal proposals by state.");
    let _ = writeln!(out, "# TYPE estuary_deal_proposals gauge");
    for (state, n) in &c.proposals {
        let _ = writeln!(out, "estuary_deal_proposals{{state=\"{state}\"}} {n}");
    }
    let _ =
        writeln!(out, "# HELP estuary_split_pins Pins split across pieces (larger than a deal).");
    let _ = writeln!(out, "# TYPE estuary_split_pins gauge");
    let _ = writeln!(out, "estuary_split_pins {}", c.splits.0);
    let _ = writeln!(out, "# HELP estuary_split_parts The pieces split pins were split into.");
    let _ = writeln!(out, "# TYPE estuary_split_parts gauge");
    let _ = writeln!(out, "estuary_split_parts {}", c.splits.1);
}

/// Replicas by state and provider, and each provider's figures (from the same events and
/// market reads as `/providers`).
async fn deal_metrics<B: Blockstore>(
    st: &ApiState<B>,
    head: Option<u64>,
    out: &mut String,
) -> Result<(), ApiError> {
    use std::{collections::BTreeMap, fmt::Write};
    let mut by_state: BTreeMap<(&'static str, u64), u64> = BTreeMap::new();
    for history in st.store.order_histories().await? {
        for r in &history.replicas {
            *by_state.entry((r.shown_state(), r.provider)).or_default() += 1;
        }
    }
    let _ = writeln!(
        out,
        "# HELP estuary_deals Replicas of the oracle's orders, by state and provider."
    );
    let _ = writeln!(out, "# TYPE estuary_deals gauge");
    for ((state, provider), n) in by_state {
        let _ = writeln!(out, "estuary_deals{{state=\"{state}\",provider=\"f0{provider}\"}} {n}");
    }
    let rules = crate::domain::provider::ScoreRules::default();
    let providers = st.store.providers(head, &rules).await?;
    type Figure = fn(&crate::domain::provider::ProviderStats) -> Option<f64>;
    let gauges: [(&str, &str, Figure); 5] = [
        ("estuary_provider_score", "The provider's score (0-1).", |p| Some(p.score)),
        (
            "estuary_provider_success_ratio",
            "Activations over activations and failures, decayed by age.",
            |p| Some(p.success_rate),
        ),
        (
            "estuary_provider_publish_epochs",
            "Mean epochs from a claim to its deal's publication.",
            |p| p.publish_epochs,
        ),
        (
            "estuary_provider_activate_epochs",
            "Mean epochs from a claim to its replica's activation.",
            |p| p.activate_epochs,
        ),
        (
            "estuary_provider_in_flight_bytes",
            "Padded bytes claimed or published, not yet active.",
            |p| Some(p.in_flight_bytes as f64),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for p in &providers {
            if let Some(v) = value(p) {
                let _ = writeln!(out, "{name}{{provider=\"f0{}\"}} {v}", p.provider);
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP estuary_probes_total Retrieval probes of the provider's replicas, by result \
         (ok: the bytes read were the piece's)."
    );
    let _ = writeln!(out, "# TYPE estuary_probes_total counter");
    for p in providers.iter().filter(|p| p.probes_ok + p.probes_failed > 0) {
        for (result, n) in [("ok", p.probes_ok), ("failed", p.probes_failed)] {
            let _ = writeln!(
                out,
                "estuary_probes_total{{provider=\"f0{}\",result=\"{result}\"}} {n}",
                p.provider
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP estuary_replicas_lost Replicas lost now by their probes (each is replaced \
         elsewhere; a probe that verifies again finds it), by provider."
    );
    let _ = writeln!(out, "# TYPE estuary_replicas_lost gauge");
    if let Some(cold) = &st.cold {
        let stats = cold.stats();
        for (name, help, of) in [
            (
                "estuary_cold_bytes_total",
                "Bytes of pieces not here read from the provider, each span checked.",
                &stats.bytes,
            ),
            (
                "estuary_cold_spans_refused_total",
                "Spans of cold reads the provider did not serve as the commitment says.",
                &stats.refused,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (provider, n) in of {
                let _ = writeln!(out, "{name}{{provider=\"f0{provider}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP estuary_cold_restores_total Dropped copies brought back once their replicas \
             faltered, by source (pack: from the pin's blocks; providers: read back from the \
             providers; network: the pin's DAG fetched again)."
        );
        let _ = writeln!(out, "# TYPE estuary_cold_restores_total counter");
        for source in crate::deals::cold::RestoreSource::ALL {
            let n = stats.restores.get(&source).copied().unwrap_or(0);
            let _ =
                writeln!(out, "estuary_cold_restores_total{{source=\"{}\"}} {n}", source.as_str());
        }
        let (configured, registered) = cold.urls().counts();
        let _ = writeln!(
            out,
            "# HELP estuary_provider_urls Providers whose replicas are read back, by where their \
             URL comes from (operator: url=; registry: the ProviderRegistry, usable under the \
             network policy)."
        );
        let _ = writeln!(out, "# TYPE estuary_provider_urls gauge");
        let _ = writeln!(out, "estuary_provider_urls{{source=\"operator\"}} {configured}");
        let _ = writeln!(out, "estuary_provider_urls{{source=\"registry\"}} {registered}");
        for (name, help, n) in [
            (
                "estuary_cold_spans_cached_total",
                "Spans of cold reads served from memory.",
                stats.cached,
            ),
            (
                "estuary_cold_blocks_total",
                "Blocks read from providers (gateway, Bitswap, cold pins pinned again), each checked.",
                stats.blocks,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {n}");
        }
    }
    for p in providers.iter().filter(|p| p.replicas_lost > 0) {
        let _ = writeln!(
            out,
            "estuary_replicas_lost{{provider=\"f0{}\"}} {}",
            p.provider, p.replicas_lost
        );
    }
    Ok(())
}

/// Bitswap's counters, the limits' among them.
fn p2p_metrics(stats: &estuary_p2p::Stats, out: &mut String) {
    let counters: [(&str, &str, u64); 10] = [
        ("estuary_bitswap_blocks_sent_total", "Blocks served to peers.", stats.blocks_sent),
        (
            "estuary_bitswap_blocks_received_total",
            "Wanted blocks received from peers.",
            stats.blocks_received,
        ),
        (
            "estuary_bitswap_bad_messages_total",
            "Messages that failed to decode (stream dropped).",
            stats.bad_messages,
        ),
        (
            "estuary_bitswap_streams_refused_total",
            "Inbound streams closed at once: a peer's or the node's stream limit.",
            stats.streams_refused,
        ),
        (
            "estuary_bitswap_streams_flooding_total",
            "Streams dropped for sending too many unsolicited blocks.",
            stats.streams_flooding,
        ),
        (
            "estuary_bitswap_streams_idle_total",
            "Streams closed after a minute of silence.",
            stats.streams_idle,
        ),
        (
            "estuary_bitswap_wants_ignored_total",
            "Wants ignored past the per-message limit.",
            stats.wants_ignored,
        ),
        (
            "estuary_bitswap_blocks_delayed_total",
            "Blocks held back, then sent, for a peer over its byte budget.",
            stats.blocks_delayed,
        ),
        (
            "estuary_bitswap_blocks_throttled_total",
            "Blocks answered \"don't have\": the peer's byte budget would not allow them soon.",
            stats.blocks_throttled,
        ),
        (
            "estuary_bitswap_unsolicited_bytes_total",
            "Bytes of blocks received that nobody wanted.",
            stats.unsolicited_bytes,
        ),
    ];
    let counters = counters.map(|(name, help, value)| (name, "counter", help, value));
    write_metrics(out, &counters);
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
        "limits": {
            "streams_refused": stats.streams_refused,
            "streams_flooding": stats.streams_flooding,
            "streams_idle": stats.streams_idle,
            "wants_ignored": stats.wants_ignored,
            "blocks_delayed": stats.blocks_delayed,
            "blocks_throttled": stats.blocks_throttled,
            "unsolicited_bytes": stats.unsolicited_bytes,
        },
    })))
}

/// The metrics of the data path: the workers' pause, storage faults, garbage collection.
async fn data_metrics<B>(st: &ApiState<B>, out: &mut String) -> Result<(), ApiError> {
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
    write_metrics(out, &metrics);
    Ok(())
}

/// Writes each `(name, type, help, value)` in Prometheus' text format.
fn write_metrics(out: &mut String, metrics: &[(&str, &str, &str, u64)]) {
    use std::fmt::Write;
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
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
    headers: HeaderMap,
) -> Result<Json<StatusBody>, ApiError> {
    authorize(&st, &headers)?;
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

/// A job as shown over HTTP: its public reason code and reason, and its error's detail only
/// for the operator.
#[derive(Debug, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    job: Job,
    /// Why it failed or is being retried, as a code (`not_found`, `too_large`, …,
    /// `quarantined`, `retrying`, `cancelled`).
    reason_code: Option<&'static str>,
    /// The code in a short sentence.
    reason: Option<&'static str>,
    /// Each replica of the pin's piece on Filecoin (only on a single request's page).
    #[serde(skip_serializing_if = "Option::is_none")]
    deals: Option<Vec<DealView>>,
    /// A pin larger than a deal: the pieces its CAR was split into, in order (each with its
    /// offset and length in the CAR), each dealt on its own (only on a single request's page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pieces: Option<Vec<crate::store::SplitPart>>,
    /// The bucket its piece is in, once packed into one (only on a single request's page).
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<BucketRef>,
    /// Its replicas against their target, once it has an order (only on a single request's
    /// page; see `ReplicaCount`).
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<ReplicaCount>,
}

/// The bucket a pin's piece is in.
#[derive(Debug, Serialize)]
pub struct BucketRef {
    /// Its id (`GET /buckets?id=`).
    id: u64,
    /// `open` (still filling) or `closed` (its aggregate made and dealt).
    state: String,
}

/// A pin's replicas against their target, from its order with the fewest active: for a pin
/// split across pieces, its least kept part. A failed order counts only when no other is left.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReplicaCount {
    /// Replicas active now.
    pub active: usize,
    /// Replicas the order keeps.
    pub target: u16,
    /// No order of the pin is live: the one counted failed.
    pub failed: bool,
}

impl ReplicaCount {
    /// The count of `orders`' weakest order, if there is an order.
    pub fn of(
        orders: &[crate::store::OrderWithReplicas],
    ) -> Option<(Self, Vec<&crate::store::OrderWithReplicas>)> {
        use crate::domain::deal::OrderState;
        let live: Vec<_> = orders.iter().filter(|o| o.order.state != OrderState::Failed).collect();
        let weakest = live.iter().min_by_key(|o| o.replicas_active).copied().or(orders.first())?;
        let count = Self {
            active: weakest.replicas_active,
            target: weakest.order.replicas_target,
            failed: weakest.order.state == OrderState::Failed,
        };
        Some((count, live))
    }
}

/// One replica of a piece, as `/requests/{id}` and `/deals` show it.
#[derive(Debug, Serialize)]
pub struct DealView {
    /// The market's deal id, once published.
    deal_id: Option<u64>,
    /// The provider (`f0…`).
    provider: String,
    /// `claimed` (proposed), `published`, `active`, `expiring`, `expired`, `slashed`,
    /// `failed`, `not_found`, `mismatch` (the market's deal is not this slot's piece or
    /// provider) or `reopened`: the contract's state, refined by the market's last answer.
    state: &'static str,
    /// The market's last answer was at this epoch (none: not read).
    market_epoch: Option<u64>,
    /// First epoch of the active term (from the slot's events, else the market's last answer).
    start_epoch: Option<u64>,
    /// Last epoch of the active term (likewise).
    end_epoch: Option<u64>,
    /// The piece (the pin's CAR).
    piece_cid: String,
    /// The aggregate the piece is inside (none when the piece is its own deal).
    aggregate_piece_cid: Option<String>,
    /// The deal's own piece: the pin's, its aggregate's, or a part's of a pin split across
    /// pieces.
    deal_piece_cid: String,
    /// How the deal was made (`perpetual`, `datadao` or `contract`).
    backend: crate::domain::deal::Backend,
    /// The order at the storage contract (for contract deals, the oracle's number of the
    /// piece's order at the `DealClient`).
    order_id: Option<u64>,
    /// When its provider was last asked for it (ms since the epoch), if it was probed.
    last_probe: Option<u64>,
    /// Whether that read was the piece's bytes.
    last_probe_ok: Option<bool>,
    /// For a direct deal (made without the market: `deal_id` is null), where the chain records
    /// it: the `DealClient` and the proposal whose activation it recorded (`getProposal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    direct: Option<DirectDealView>,
}

/// Where a direct deal is recorded on chain.
#[derive(Debug, Serialize)]
pub struct DirectDealView {
    /// The `DealClient` (0x address).
    client: alloy::primitives::Address,
    /// The proposal's id (0x, 32 bytes).
    proposal: alloy::primitives::B256,
}

/// The replicas of `orders`, flattened: for pin piece `piece` (when given) held inside
/// `aggregate` where an order is the aggregate's.
fn deal_views(
    orders: &[crate::store::OrderWithReplicas],
    piece: Option<&str>,
    aggregate: Option<&str>,
) -> Vec<DealView> {
    orders
        .iter()
        .flat_map(|o| {
            o.replicas.iter().map(|r| DealView {
                deal_id: r.deal_id,
                provider: format!("f0{}", r.provider),
                state: r.shown_state(),
                market_epoch: r.market.map(|m| m.epoch),
                // The slot's events give the term once it is active; the market's last answer
                // gives it as soon as the deal is read.
                start_epoch: r.start_epoch.or(r.market.and_then(|m| m.start_epoch)),
                end_epoch: r.end_epoch.or(r.market.and_then(|m| m.end_epoch)),
                piece_cid: piece.unwrap_or(&o.order.piece_cid).to_owned(),
                aggregate_piece_cid: aggregate
                    .filter(|a| *a == o.order.piece_cid)
                    .map(str::to_owned),
                deal_piece_cid: o.order.piece_cid.clone(),
                backend: o.order.backend,
                order_id: o.order.order_id,
                last_probe: r.probe.map(|p| p.last_probe),
                last_probe_ok: r.probe.map(|p| p.last_probe_ok),
                direct: r
                    .direct
                    .and_then(|d| d.proposal)
                    .map(|proposal| DirectDealView { client: o.order.contract, proposal }),
            })
        })
        .collect()
}

/// `view` with the deals of its piece.
async fn with_deals<B>(st: &ApiState<B>, mut view: JobView) -> Result<JobView, ApiError> {
    let (orders, bucket) = match &view.job.piece_cid {
        Some(piece) => st.store.pin_deals(piece).await?,
        None => (Vec::new(), None),
    };
    let aggregate = bucket.as_ref().and_then(|b| b.piece_cid.as_deref());
    view.deals = Some(deal_views(&orders, view.job.piece_cid.as_deref(), aggregate));
    view.replicas = ReplicaCount::of(&orders).map(|(count, _)| count);
    view.bucket = bucket.map(|b| BucketRef { id: b.id, state: b.state });
    if let Some(piece) = &view.job.piece_cid {
        let parts = st.store.split_of(piece).await?;
        view.pieces = (!parts.is_empty()).then_some(parts);
    }
    Ok(view)
}

/// `job` as `operator` may see it (the error's detail hidden from anyone else).
pub fn job_view(mut job: Job, operator: bool) -> JobView {
    let (reason_code, reason) =
        public_reason(&job).map_or((None, None), |(c, r)| (Some(c), Some(r)));
    if !operator {
        job.error = None;
    }
    JobView { job, reason_code, reason, deals: None, pieces: None, bucket: None, replicas: None }
}

/// A job's reason code and public reason: from its failure code, or its state.
pub fn public_reason(job: &Job) -> Option<(&'static str, &'static str)> {
    if let Some(code) = job.failure {
        return Some((code.as_str(), code.public_reason()));
    }
    match job.status {
        JobState::Quarantined => Some((
            "quarantined",
            "it failed too often to be retried by itself; an operator can requeue it",
        )),
        JobState::Cancelled => Some(("cancelled", "cancelled by its requester")),
        s if s.stage().is_some() && job.error.is_some() => {
            Some(("retrying", "the last attempt failed; it will be tried again"))
        }
        _ => None,
    }
}

async fn get_request<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    let parsed = U256::from_str_radix(&id, 10)
        .ok()
        .filter(|_| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("request id must be a decimal number, got {id:?}"))
        })?;
    let key = JobKey { source: st.source.clone(), id: crate::domain::JobId::request(parsed) };
    let operator = authorize(&st, &headers).is_ok();
    let job = st
        .store
        .job(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no request {parsed} seen yet")))?;
    Ok(Json(with_deals(&st, job_view(job, operator)).await?))
}

async fn get_job<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Json<JobView>, ApiError> {
    authorize(&st, &headers)?;
    let key: JobKey =
        key.parse().map_err(|e: crate::domain::job::BadKey| ApiError::BadRequest(e.to_string()))?;
    let job =
        st.store.job(&key).await?.ok_or_else(|| ApiError::NotFound(format!("no job {key}")))?;
    Ok(Json(with_deals(&st, job_view(job, true)).await?))
}

#[derive(Deserialize)]
struct DealsQuery {
    piece: Option<String>,
    offset: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct DealsBody {
    results: Vec<OrderView>,
}

/// An order in `GET /deals`.
#[derive(Serialize)]
struct OrderView {
    #[serde(flatten)]
    order: crate::store::OrderWithReplicas,
    /// A contract order's proposals, one per provider asked and attempt: each with its
    /// provider, terms, state (`sending`, `offered`, `lapsed`, `failed`), proposal id and why
    /// it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    proposals: Option<Vec<crate::store::ProposalRecord>>,
}

/// `GET /deals`: the orders for pieces, newest first, each with its replicas (and, for contract
/// deals, the proposals made; public: all of it is on chain). `piece` filters by piece CID;
/// `limit` up to 1,000; `offset` pages.
async fn list_deals<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Query(q): Query<DealsQuery>,
) -> Result<Json<DealsBody>, ApiError> {
    let limit = parse_param(q.limit.as_deref(), "limit", 100, 1000)?.max(1);
    let offset = parse_param(q.offset.as_deref(), "offset", 0, 1_000_000)?;
    if let Some(piece) = &q.piece
        && piece.parse::<estuary_piece::PieceCid>().is_err()
    {
        return Err(ApiError::BadRequest(format!("piece must be a piece CID, got {piece:?}")));
    }
    let mut results = Vec::new();
    for order in st.store.deals(q.piece.as_deref(), limit, offset).await? {
        let proposals = match (order.order.backend, order.order.order_id) {
            (crate::domain::deal::Backend::Contract, Some(id)) => {
                Some(st.store.proposals_of(order.order.contract, id).await?)
            }
            _ => None,
        };
        results.push(OrderView { order, proposals });
    }
    Ok(Json(DealsBody { results }))
}

#[derive(Deserialize)]
struct BucketsQuery {
    offset: Option<String>,
    limit: Option<String>,
    /// A bucket's id: that bucket with its pieces.
    id: Option<String>,
}

/// A bucket in `GET /buckets`.
#[derive(Serialize)]
struct BucketView {
    #[serde(flatten)]
    bucket: crate::store::BucketRecord,
    /// Padded bytes of pieces over the deal size (open buckets: over `--bucket-size`).
    fill: Option<f64>,
    /// The pieces, in their order in the aggregate (when one bucket is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pieces: Option<Vec<crate::store::BucketPiece>>,
}

#[derive(Serialize)]
struct BucketsBody {
    results: Vec<BucketView>,
}

/// `GET /buckets`: the buckets pins are grouped in, newest first (public: the aggregates and
/// their orders are on chain): state, pieces, where they end, why and when it closed, the
/// aggregate's piece CID and deal size, and its order. `id` gives one bucket with a page of its
/// pieces (each with its offset, sizes and piece CID); `limit` up to 1,000; `offset` pages (the
/// buckets, or that bucket's pieces).
async fn list_buckets<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Query(q): Query<BucketsQuery>,
) -> Result<Json<BucketsBody>, ApiError> {
    let limit = parse_param(q.limit.as_deref(), "limit", 100, 1000)?.max(1);
    let offset = parse_param(q.offset.as_deref(), "offset", 0, 1_000_000)?;
    let id =
        q.id.as_deref().map(|id| parse_param(Some(id), "id", 0, i64::MAX as u64)).transpose()?;
    let buckets = match id {
        Some(id) => st.store.bucket(id).await?.into_iter().collect(),
        None => st.store.buckets(limit, offset).await?,
    };
    let mut results = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let size = bucket.deal_size.or(st.bucket_size);
        let fill = size.map(|s| bucket.end_bytes as f64 / s as f64);
        let pieces = match id {
            Some(_) => Some(st.store.bucket_pieces_page(bucket.id, limit, offset).await?),
            None => None,
        };
        results.push(BucketView { bucket, fill, pieces });
    }
    Ok(Json(BucketsBody { results }))
}

#[derive(Deserialize)]
struct PageQuery {
    offset: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct DaoFundingsBody {
    results: Vec<crate::store::DaoFunding>,
}

/// `GET /datadao`: the DataDAO proposals the oracle has seen accepted and funds
/// (`--datadao-address`), most recently changed first (public: all of it is on chain): the
/// proposal, its pin request, `fund_by`, `waiting` (and why: the pin not reported yet, a
/// refusal), `funded` (the order, the transaction) or `expired`. `limit` up to 1,000, `offset`.
async fn list_dao_fundings<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Query(q): Query<PageQuery>,
) -> Result<Json<DaoFundingsBody>, ApiError> {
    let limit = parse_param(q.limit.as_deref(), "limit", 100, 1000)?.max(1);
    let offset = parse_param(q.offset.as_deref(), "offset", 0, 1_000_000)?;
    Ok(Json(DaoFundingsBody { results: st.store.dao_fundings(limit, offset).await? }))
}

/// One provider in `GET /providers`.
#[derive(Serialize)]
struct ProviderView {
    /// `f0…`.
    address: String,
    /// Where the oracle reads its replicas back: `"operator"` (its `url=`, not shown),
    /// `"registry"` (what its miner registered: `registered_url`), or `null` (not probed).
    url_source: Option<&'static str>,
    /// The URL its miner registered in the `ProviderRegistry`, if that is what is used.
    registered_url: Option<String>,
    #[serde(flatten)]
    stats: crate::domain::provider::ProviderStats,
}

#[derive(Serialize)]
struct ProvidersBody {
    /// The epoch the scores are computed at.
    head: u64,
    /// Best score first.
    results: Vec<ProviderView>,
}

/// `POST /deals/repair` (the operator's token): the deal rounds (the contract deal scheduler,
/// the perpetual keeper) run now rather than at their next tick, replacing lost and ending
/// replicas (`estuary oracle repair --now`). `202` with `woken`, the rounds that listen (none
/// when the oracle makes no deals), and the orders short of their replicas now.
async fn repair_now<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let woken = st.wake.wake();
    let short = st.store.orders_short().await?;
    let body = serde_json::json!({ "woken": woken, "orders_short": short.len() });
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// `GET /providers`: every storage provider the oracle's orders have seen, best score first,
/// with what it did (claims, publications, activations, lapsed claims, replicas ended early,
/// slashed deals), what it holds now (active, in flight, bytes), its times in epochs, its
/// score (`domain::provider`) and where it is read back from.
async fn list_providers<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
) -> Result<Json<ProvidersBody>, ApiError> {
    let seen = st.watch.borrow().head;
    let head = match seen {
        Some(head) => head,
        None => st.store.latest_deal_block().await?,
    };
    let rules = crate::domain::provider::ScoreRules::default();
    let mut stats = st.store.providers(Some(head), &rules).await?;
    stats.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.provider.cmp(&b.provider)));
    let results = stats
        .into_iter()
        .map(|stats| {
            let url = st.cold.as_ref().and_then(|c| c.urls().get(stats.provider));
            ProviderView {
                address: format!("f0{}", stats.provider),
                url_source: url
                    .as_ref()
                    .map(|u| if u.registered { "registry" } else { "operator" }),
                registered_url: url.filter(|u| u.registered).map(|u| u.url),
                stats,
            }
        })
        .collect();
    Ok(Json(ProvidersBody { head, results }))
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct ListBody {
    results: Vec<JobView>,
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
    Ok(Json(ListBody { results: page.into_iter().map(|(_, r)| job_view(r, true)).collect(), next }))
}

fn parse_param(v: Option<&str>, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => u64::from_str(s).ok().filter(|n| *n <= max).ok_or_else(|| {
            ApiError::BadRequest(format!("{name} must be a whole number up to {max}"))
        }),
    }
}

/// The bearer token in `headers`, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `given` is the operator's token (compared in constant time: it is a secret).
pub(crate) fn is_operator_token<B>(st: &ApiState<B>, given: &str) -> bool {
    let Some(expected) = st.api_token.as_deref() else { return false };
    given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Refuses anyone but the operator.
fn authorize<B>(st: &ApiState<B>, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(given) if is_operator_token(st, given) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
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
            store: None,
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
            policy: ApiPolicy::default(),
            bucket_size: None,
            aggregates: Default::default(),
            wake: Default::default(),
            history: Default::default(),
            cold: None,
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

    /// The metrics over time: the operator's, named metrics only, aligned on the samples.
    #[tokio::test]
    async fn metrics_history_is_the_operators() {
        let (app, _dir) = app().await;
        let path = "/metrics/history?names=estuary_requests";
        assert_eq!(call(&app, path, None).await.0, StatusCode::UNAUTHORIZED);
        let (status, body) = call(&app, path, Some("secret")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["times"].as_array().unwrap().len(), 0, "nothing sampled yet: {body}");
        for bad in ["/metrics/history", "/metrics/history?names=", "/metrics/history?names=Bad{x}"]
        {
            assert_eq!(call(&app, bad, Some("secret")).await.0, StatusCode::BAD_REQUEST, "{bad}");
        }
        let many = vec!["a"; 33].join(",");
        let (status, _) =
            call(&app, &format!("/metrics/history?names={many}"), Some("secret")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) =
            call(&app, "/metrics/history?names=a&since=yesterday", Some("secret")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
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
        for operator_only in ["/status", "/metrics", "/jobs/api/x/1", "/requests"] {
            let mut req = axum::http::Request::get(operator_only);
            req = req.header("authorization", "Bearer wrong");
            let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{operator_only}");
        }
        let (status, body) = call(&app, "/status", Some("secret")).await;
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
