//! The IPFS Pinning Service API v1 (`/pins`), over the oracle's own job pipeline.
//!
//! Every call needs `Authorization: Bearer <token>`: a token made with `estuary oracle token add`
//! (read or write scope; its name is the account that owns the pins) or the operator's API token
//! (account `default`, write scope). A pin's `status` follows its job: queued → pinning (being
//! fetched) → pinned (the whole DAG is held, then packed for deals) or failed (`info.status_details`
//! gives the reason code's public sentence, and `info.reason_code` the code; the operator's token
//! also sees the detail: which source failed how). An account has at most its quota of pins
//! (`--quota-pins`; beyond, 403 `QUOTA_EXCEEDED`). Failures answer with the spec's `Failure`
//! object.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tracing::error;

use super::ApiState;
use crate::{
    blockstore::Blockstore,
    domain::{
        JobState, now_ms,
        pinning::{
            Caller, Invalid, Pin, PinRecord, PinState, RawPinQuery, Scope, format_time,
            new_requestid, secret_digest,
        },
    },
    store::StoreError,
};

/// Account of the operator's API token.
pub const DEFAULT_ACCOUNT: &str = "default";

/// A failed call, answered with the spec's `Failure` object.
#[derive(Debug, thiserror::Error)]
pub enum PinApiError {
    /// Bad input.
    #[error(transparent)]
    BadRequest(#[from] Invalid),
    /// No token, or one the oracle does not know.
    #[error("access token is missing or invalid")]
    Unauthorized,
    /// A read-only token asked to change something.
    #[error("this token may only read pins")]
    Forbidden,
    /// No such pin for this account.
    #[error("no pin with requestid {0:?}")]
    NotFound(String),
    /// The account has as many pins as it may.
    #[error(transparent)]
    Quota(#[from] crate::domain::upload::QuotaExceeded),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Serialize)]
struct Failure<'a> {
    error: FailureBody<'a>,
}

#[derive(Serialize)]
struct FailureBody<'a> {
    reason: &'a str,
    details: String,
}

impl IntoResponse for PinApiError {
    fn into_response(self) -> Response {
        let (status, reason) = match &self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::Quota(_) => (StatusCode::FORBIDDEN, "QUOTA_EXCEEDED"),
            Self::Store(e) => {
                error!(error = %e, "store error while serving the pinning API");
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR")
            }
        };
        let details = match &self {
            Self::Store(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let mut response =
            (status, Json(Failure { error: FailureBody { reason, details } })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A `PinStatus` object.
#[derive(Debug, Serialize)]
pub struct PinStatus {
    requestid: String,
    status: PinState,
    created: String,
    pin: Pin,
    delegates: Vec<String>,
    info: std::collections::BTreeMap<&'static str, String>,
}

/// A `PinResults` object.
#[derive(Debug, Serialize)]
pub struct PinResults {
    count: u64,
    results: Vec<PinStatus>,
}

/// A pin as `GET /pins` shows it; the error's detail (which source failed how) only to the
/// operator.
fn to_status(record: PinRecord, delegates: &[String], operator: bool) -> PinStatus {
    let state = PinState::of(record.status);
    let mut info = std::collections::BTreeMap::new();
    let reason = match (record.failure, record.status) {
        (Some(code), _) => Some((code.as_str(), code.public_reason())),
        (None, JobState::Quarantined) => {
            Some(("quarantined", "it failed too often to be retried by itself"))
        }
        (None, JobState::Cancelled) => Some(("cancelled", "the pin was deleted")),
        (None, s) if s.stage().is_some() && record.error.is_some() => {
            Some(("retrying", "the last attempt failed; it will be tried again"))
        }
        _ => None,
    };
    let details = match (operator, state, record.error, reason) {
        (true, PinState::Failed, Some(e), _) => e,
        (true, _, Some(e), _) => format!("{}; last attempt failed: {e}", record.status.as_str()),
        (_, PinState::Failed, _, Some((_, why))) => why.to_owned(),
        (_, _, _, Some((_, why))) => format!("{}; {why}", record.status.as_str()),
        (_, PinState::Failed, _, None) => "failed".to_owned(),
        (_, _, _, None) => record.status.as_str().to_owned(),
    };
    info.insert("status_details", details);
    if let Some((code, _)) = reason {
        info.insert("reason_code", code.to_owned());
    }
    if let Some(bytes) = record.dag_bytes {
        info.insert("dag_size", bytes.to_string());
    }
    if let Some(piece) = record.piece_cid {
        info.insert("piece_cid", piece);
    }
    PinStatus {
        requestid: record.requestid,
        status: state,
        created: format_time(record.created_ms),
        pin: record.pin,
        delegates: delegates.to_vec(),
        info,
    }
}

/// Who holds the bearer token in `headers`, and whether it is the operator.
async fn caller<B>(
    st: &ApiState<B>,
    headers: &HeaderMap,
    needs: Scope,
) -> Result<(Caller, bool), PinApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(PinApiError::Unauthorized)?;
    let operator = super::is_operator_token(st, token);
    let caller = if operator {
        Caller { account: DEFAULT_ACCOUNT.to_owned(), scope: Scope::Write }
    } else {
        st.store.caller(&secret_digest(token)).await?.ok_or(PinApiError::Unauthorized)?
    };
    if needs == Scope::Write && caller.scope != Scope::Write {
        return Err(PinApiError::Forbidden);
    }
    Ok((caller, operator))
}

fn body(payload: Result<Json<Pin>, JsonRejection>) -> Result<Pin, PinApiError> {
    payload
        .map(|Json(pin)| pin)
        .map_err(|e| PinApiError::BadRequest(Invalid(format!("the body is not a Pin object: {e}"))))
}

/// `GET /pins`.
pub async fn list<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
    query: Result<Query<RawPinQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PinResults>, PinApiError> {
    let (who, operator) = caller(&st, &headers, Scope::Read).await?;
    let Query(raw) = query.map_err(|e| Invalid(format!("bad query: {e}")))?;
    let query = raw.check()?;
    let (count, records) = st.store.pins(&who.account, &query).await?;
    let results = records.into_iter().map(|r| to_status(r, &st.delegates, operator)).collect();
    Ok(Json(PinResults { count, results }))
}

/// `POST /pins`.
pub async fn add<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
    payload: Result<Json<Pin>, JsonRejection>,
) -> Result<(StatusCode, Json<PinStatus>), PinApiError> {
    let (who, operator) = caller(&st, &headers, Scope::Write).await?;
    let pin = body(payload)?.check()?;
    let quota = st.store.quota(&who.account, st.policy.default_quota(&who.account)).await?;
    let record = st
        .store
        .create_pin_within(&who.account, &new_requestid(), &pin, now_ms(), &quota)
        .await??;
    Ok((StatusCode::ACCEPTED, Json(to_status(record, &st.delegates, operator))))
}

/// `GET /pins/{requestid}`.
pub async fn get<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
    Path(requestid): Path<String>,
) -> Result<Json<PinStatus>, PinApiError> {
    let (who, operator) = caller(&st, &headers, Scope::Read).await?;
    let record =
        st.store.pin(&who.account, &requestid).await?.ok_or(PinApiError::NotFound(requestid))?;
    let orders = match &record.piece_cid {
        Some(piece) => st.store.pin_deals(piece).await?.0,
        None => Vec::new(),
    };
    let mut status = to_status(record, &st.delegates, operator);
    if let Some((active, summary)) = deals_info(&orders) {
        status.info.insert("deals_active", active);
        status.info.insert("deals", summary);
    }
    Ok(Json(status))
}

/// The pin's replicas in `info` (whose values the specification makes strings of at most 255
/// characters): `deals_active` as `active/target` of its order that has the fewest active
/// (for a pin split across pieces, its least kept part; an order that failed counts only when
/// no other is left), and `deals` as `f01000 active #3, …` (provider, state, deal id) over its
/// orders, cut at 255 characters.
fn deals_info(orders: &[crate::store::OrderWithReplicas]) -> Option<(String, String)> {
    let (count, live) = super::ReplicaCount::of(orders)?;
    let active = format!("{}/{}", count.active, count.target);
    let mut summary = String::new();
    for r in live.iter().flat_map(|o| o.replicas.iter()) {
        let state = r.shown_state();
        let probed = match r.probe {
            Some(p) if p.last_probe_ok => " (probe ok)",
            Some(_) => " (probe failed)",
            None => "",
        };
        let item = match r.deal_id {
            Some(id) => format!("f0{} {state} #{id}{probed}", r.provider),
            None => format!("f0{} {state}{probed}", r.provider),
        };
        let sep = if summary.is_empty() { "" } else { ", " };
        if summary.len() + sep.len() + item.len() > 255 {
            break;
        }
        summary.push_str(sep);
        summary.push_str(&item);
    }
    Some((active, summary))
}

/// `POST /pins/{requestid}`: replaces the pin with a new one (new requestid).
pub async fn replace<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
    Path(requestid): Path<String>,
    payload: Result<Json<Pin>, JsonRejection>,
) -> Result<(StatusCode, Json<PinStatus>), PinApiError> {
    let (who, operator) = caller(&st, &headers, Scope::Write).await?;
    let pin = body(payload)?.check()?;
    let record = st
        .store
        .replace_pin(&who.account, &requestid, &new_requestid(), &pin, now_ms())
        .await?
        .ok_or(PinApiError::NotFound(requestid))?;
    Ok((StatusCode::ACCEPTED, Json(to_status(record, &st.delegates, operator))))
}

/// `DELETE /pins/{requestid}`.
pub async fn remove<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
    Path(requestid): Path<String>,
) -> Result<StatusCode, PinApiError> {
    let (who, _) = caller(&st, &headers, Scope::Write).await?;
    if st.store.delete_pin(&who.account, &requestid, now_ms()).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(PinApiError::NotFound(requestid))
    }
}
