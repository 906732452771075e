//! Resumable CAR uploads: tus 1.0.0 core with the creation, expiration and termination
//! extensions (<https://tus.io/protocols/resumable-upload>), as `tus-js-client` and Uppy speak
//! it.
//!
//! - `OPTIONS /uploads` → `204`: `Tus-Version: 1.0.0`, `Tus-Extension:
//!   creation,expiration,termination`, `Tus-Max-Size`.
//! - `POST /uploads` with `Upload-Length: N` (and optionally `Upload-Metadata`) → `201`,
//!   `Location: /uploads/{id}`, `Upload-Expires`. Who may create one ([`super::auth`]):
//!   - a bearer token with write scope (an account's, or the operator's: account `default`);
//!   - a session token from Sign-In with Ethereum (the address's account, wallet quota);
//!   - a pre-signed upload URL, `POST /uploads?presigned=…` (one upload, at most its size);
//!   - an on-chain pin request: `Upload-Metadata: request <id>,signature <sig>` (base64 values),
//!     the signature being the requester's `personal_sign` of
//!     [`crate::domain::auth::request_upload_message`]; the upload is the requester's, at most
//!     the request's `sizeHint`, and its CAR's root must be the request's CID.
//!
//!   Anything else is refused (401). The upload counts against its account's quota (bytes
//!   stored, uploads in flight: 403 `QUOTA_EXCEEDED`), and while the data directory's free
//!   space is under `--min-free-bytes` creation and appends are refused with 507.
//! - `HEAD /uploads/{id}` → `Upload-Offset` (what the server has), `Upload-Length`,
//!   `Upload-Metadata`, `Upload-Expires` (unfinished) or `Upload-Root` (finished).
//! - `PATCH /uploads/{id}` with `Content-Type: application/offset+octet-stream`,
//!   `Upload-Offset: k` (must equal the server's offset, else `409`) and the next bytes →
//!   `204` with the new `Upload-Offset`; the last one also carries `Upload-Root`.
//! - `DELETE /uploads/{id}` → `204`: an unfinished upload and its bytes are deleted (a finished
//!   one is kept: 403).
//!
//! An upload made with a token or a session is its account's: every later request needs that
//! account's token too. One made with a pre-signed URL or a request's signature is reached by
//! its URL alone (the id is 128 random bits), as a pre-signed URL is. Every response carries
//! `Tus-Resumable: 1.0.0`.
//!
//! A client that lost its connection asks `HEAD` and re-sends from there, so at most the chunk
//! in flight is sent twice. One `PATCH` per upload at a time: a concurrent one gets `409`.
//! Bytes go to a file as they arrive (no upload is held in memory). When the last byte arrives
//! the CAR is decoded and every block verified into the blockstore; the upload is then kept as
//! its owner's (`done`, with its root). A bad CAR is refused with `422` and removed; nothing
//! already stored is touched. An unfinished upload expires `--upload-ttl-secs` after it was
//! made (default 24 h): [`janitor`] deletes its bytes and its record.

use std::{
    io::{self, SeekFrom},
    path::{Path as FsPath, PathBuf},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use alloy::primitives::U256;
use axum::{
    body::Body,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cid::Cid;
use estuary_dag::car::{CarDecoder, CarItem, CarLimits};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    ApiError, ApiState,
    auth::{Uploader, uploader},
};
use crate::{
    blockstore::{Blockstore, space},
    domain::{
        JobId, JobKey, JobState,
        auth::{AuthError, recover_signer, request_upload_message},
        now_ms,
        upload::{self as tus, Metadata, valid_upload_id},
    },
    store::{NewUpload, UploadRecord, UploadRefused, UploadState},
};

pub use crate::domain::upload::TUS_VERSION;

/// Bytes written between two checks of the free-space floor.
const FLOOR_CHECK_EVERY: u64 = 64 << 20;

/// Uploads with a `PATCH` (or a deletion) under way: a second one at the same time gets `409`
/// rather than writing at the same offset.
fn busy() -> &'static std::sync::Mutex<std::collections::HashSet<String>> {
    static BUSY: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    BUSY.get_or_init(Default::default)
}

/// Holds an upload's slot in [`busy`] until dropped.
struct Writing(String);

impl Writing {
    fn take(id: &str) -> Option<Self> {
        let mut set = busy().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.insert(id.to_owned()).then(|| Self(id.to_owned()))
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        busy().lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.0);
    }
}

fn part_path(dir: &FsPath, id: &str) -> PathBuf {
    dir.join(format!("{id}.part"))
}

/// `ms` as an HTTP date (RFC 9110), as `Upload-Expires` is written.
fn http_date(ms: u64) -> Option<HeaderValue> {
    let ts = jiff::Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?;
    let text = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&ts).ok()?;
    HeaderValue::from_str(&text).ok()
}

/// Adds `Tus-Resumable` (every response of the protocol carries it).
fn tus_response(mut response: Response) -> Response {
    response.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    response
}

fn respond(result: Result<Response, ApiError>) -> Response {
    tus_response(result.unwrap_or_else(IntoResponse::into_response))
}

fn with_offset(status: StatusCode, offset: u64, record: &UploadRecord) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(offset));
    h.insert("upload-length", HeaderValue::from(record.length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if record.state == UploadState::Open
        && let Some(date) = http_date(record.expires_ms)
    {
        h.insert("upload-expires", date);
    }
    if let Some(root) = record.root.as_deref().and_then(|r| HeaderValue::from_str(r).ok()) {
        h.insert("upload-root", root);
    }
    r
}

/// `OPTIONS /uploads`: what this server speaks.
pub(super) fn discovery(max_upload: u64) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(tus::TUS_EXTENSIONS));
    h.insert("tus-max-size", HeaderValue::from(max_upload));
    tus_response(r)
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateQuery {
    presigned: Option<String>,
}

/// Who an upload is for and what it may hold.
struct Owner {
    account: String,
    grant: Option<String>,
    request_key: Option<String>,
}

/// The owner of an upload tied to an on-chain request, from its metadata's `request` and
/// `signature`, with the request's size hint checked against `length`.
async fn request_owner<B>(
    st: &ApiState<B>,
    metadata: &Metadata,
    length: u64,
) -> Result<Option<Owner>, ApiError> {
    let (Some(request), Some(signature)) = (metadata.text("request"), metadata.text("signature"))
    else {
        return Ok(None);
    };
    let id = tus::parse_u64(request)
        .map(U256::from)
        .or_else(|| {
            (request.bytes().all(|b| b.is_ascii_digit()) && !request.is_empty())
                .then(|| U256::from_str_radix(request, 10).ok())
                .flatten()
        })
        .ok_or_else(|| ApiError::BadRequest("metadata request must be a decimal id".into()))?;
    let Some((chain_id, contract)) = st.source.contract() else {
        return Err(ApiError::NotFound("this oracle follows no contract".into()));
    };
    let key = JobKey { source: st.source.clone(), id: JobId::request(id) };
    let request = st.store.request_for_upload(&key).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "request {id} is not known here yet: wait until the oracle has seen it confirmed"
        ))
    })?;
    let signer =
        recover_signer(request_upload_message(chain_id, contract, id).as_bytes(), signature)?;
    let requester = alloy::primitives::Address::from_str(&request.requester)
        .map_err(|_| ApiError::Store(crate::store::StoreError::Corrupt("requester".into())))?;
    if signer != requester {
        return Err(AuthError::WrongSigner(requester).into());
    }
    match request.state {
        // Waiting, being fetched, or given up for want of a source: the upload is that source.
        JobState::Queued | JobState::Fetching | JobState::Quarantined => {}
        s if s.holds_dag() => {
            return Err(ApiError::Conflict(format!("request {id} is pinned already")));
        }
        s => {
            return Err(ApiError::Conflict(format!(
                "request {id} is {}: nothing will be pinned from an upload",
                s.as_str()
            )));
        }
    }
    let Some(hint) = request.size_hint else {
        return Err(ApiError::Forbidden(format!(
            "request {id} gave no size hint: an upload tied to a request is at most its \
             sizeHint (pinToEstuary with options), or sign in to upload"
        )));
    };
    if length > hint {
        return Err(ApiError::TooLarge(format!(
            "Upload-Length {length} is over request {id}'s size hint of {hint} bytes"
        )));
    }
    Ok(Some(Owner { account: request.requester, grant: None, request_key: Some(key.to_string()) }))
}

/// `POST /uploads`.
pub(super) async fn create<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    query: Result<Query<CreateQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    respond(create_upload(&st, query, &headers).await)
}

async fn create_upload<B: Blockstore>(
    st: &ApiState<B>,
    query: Result<Query<CreateQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?;
    let creation = tus::parse_creation(headers, st.policy.max_upload)?;
    let owner = match uploader(st, headers, query.presigned.as_deref()).await? {
        Some(Uploader::Account(account)) => Owner { account, grant: None, request_key: None },
        Some(Uploader::Presigned { digest, grant }) => {
            if grant.upload_id.is_some() {
                return Err(ApiError::Forbidden(
                    "this pre-signed upload URL was used already".into(),
                ));
            }
            if creation.length > grant.max_bytes {
                return Err(ApiError::TooLarge(format!(
                    "Upload-Length {} is over this pre-signed URL's {} bytes",
                    creation.length, grant.max_bytes
                )));
            }
            Owner { account: grant.account, grant: Some(digest), request_key: None }
        }
        None => request_owner(st, &creation.metadata, creation.length)
            .await?
            .ok_or(ApiError::Unauthorized)?,
    };
    let dir = &st.uploads_dir;
    if !space::above_floor(dir, st.policy.min_free_bytes, creation.length)? {
        return Err(ApiError::LowOnStorage);
    }
    // The request's signature is a credential: not kept, not echoed by HEAD.
    let metadata = creation.metadata.raw.as_ref().map(|_| {
        creation
            .metadata
            .raw
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|pair| pair.trim().split(' ').next() != Some("signature"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let quota = st.store.quota(&owner.account, st.policy.default_quota(&owner.account)).await?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let now = now_ms();
    let ttl = u64::try_from(st.policy.upload_ttl.as_millis()).unwrap_or(u64::MAX);
    let new = NewUpload {
        id: &id,
        account: &owner.account,
        length: creation.length,
        metadata: metadata.as_deref(),
        request_key: owner.request_key.as_deref(),
        grant_sha256: owner.grant.as_deref(),
        now_ms: now,
        expires_ms: now.saturating_add(ttl),
    };
    let record = match st.store.create_upload(&new, &quota).await? {
        Ok(record) => record,
        Err(UploadRefused::Quota(e)) => return Err(e.into()),
        Err(UploadRefused::GrantUsed) => {
            return Err(ApiError::Forbidden(UploadRefused::GrantUsed.to_string()));
        }
    };
    let made = async {
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::write(part_path(dir, &id), b"").await
    };
    if let Err(e) = made.await {
        let _ = st.store.delete_upload(&id).await;
        return Err(e.into());
    }
    let mut r = with_offset(StatusCode::CREATED, 0, &record);
    if let Ok(v) = HeaderValue::from_str(&format!("/uploads/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    *r.body_mut() = Body::from(
        serde_json::json!({
            "id": id,
            "account": record.account,
            "expires": crate::domain::pinning::format_time(record.expires_ms),
        })
        .to_string(),
    );
    Ok(r)
}

/// The upload `id`, if the request may act on it: an upload made with a token or a session
/// needs its account's token; one made with a pre-signed URL or a request's signature is
/// reached by its URL. Another account's upload is not found.
async fn load<B>(
    st: &ApiState<B>,
    id: &str,
    headers: &HeaderMap,
) -> Result<UploadRecord, ApiError> {
    let missing = || ApiError::NotFound(format!("no upload {id:?}"));
    if !valid_upload_id(id) {
        return Err(missing());
    }
    let record = st.store.upload(id).await?.ok_or_else(missing)?;
    if record.grant_sha256.is_some() || record.request_key.is_some() {
        return Ok(record);
    }
    match uploader(st, headers, None).await? {
        Some(Uploader::Account(account)) if account == record.account => Ok(record),
        Some(_) => Err(missing()),
        None => Err(ApiError::Unauthorized),
    }
}

fn expired(record: &UploadRecord) -> bool {
    record.state == UploadState::Open && record.expires_ms <= now_ms()
}

/// What the server has of an open upload.
async fn received(dir: &FsPath, id: &str) -> Result<u64, ApiError> {
    match tokio::fs::metadata(part_path(dir, id)).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(ApiError::Gone(format!("upload {id}'s bytes are gone; start again")))
        }
        Err(e) => Err(e.into()),
    }
}

/// `HEAD /uploads/{id}`.
pub(super) async fn offset<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let record = load(&st, &id, &headers).await?;
            if expired(&record) {
                return Err(ApiError::Gone(format!("upload {id} has expired")));
            }
            let offset = match record.state {
                UploadState::Done => record.length,
                UploadState::Open => received(&st.uploads_dir, &id).await?,
            };
            let mut r = with_offset(StatusCode::OK, offset, &record);
            if let Some(v) = record.metadata.as_deref().and_then(|m| HeaderValue::from_str(m).ok())
            {
                r.headers_mut().insert("upload-metadata", v);
            }
            Ok(r)
        }
        .await,
    )
}

/// `DELETE /uploads/{id}` (termination).
pub(super) async fn terminate<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let record = load(&st, &id, &headers).await?;
            if record.state == UploadState::Done {
                return Err(ApiError::Forbidden(
                    "a finished upload is kept with its owner; it cannot be terminated".into(),
                ));
            }
            let Some(_writing) = Writing::take(&id) else {
                return Err(ApiError::Conflict(format!("upload {id} is being written")));
            };
            remove_part(&st.uploads_dir, &id).await?;
            st.store.delete_upload(&id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn remove_part(dir: &FsPath, id: &str) -> io::Result<()> {
    match tokio::fs::remove_file(part_path(dir, id)).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `PATCH /uploads/{id}`.
pub(super) async fn append<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(append_bytes(&st, &id, &headers, body).await)
}

async fn append_bytes<B: Blockstore>(
    st: &ApiState<B>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let record = load(st, id, headers).await?;
    let claimed = tus::parse_append(headers)?;
    if record.state == UploadState::Done {
        return Ok(with_offset(StatusCode::CONFLICT, record.length, &record));
    }
    if expired(&record) {
        return Err(ApiError::Gone(format!("upload {id} has expired")));
    }
    let dir = &st.uploads_dir;
    let offset = received(dir, id).await?;
    let Some(_writing) = Writing::take(id) else {
        return Ok(with_offset(StatusCode::CONFLICT, offset, &record));
    };
    if claimed != offset {
        return Ok(with_offset(StatusCode::CONFLICT, offset, &record));
    }
    let floor = st.policy.min_free_bytes;
    if !space::above_floor(dir, floor, 0)? {
        return Err(ApiError::LowOnStorage);
    }
    let length = record.length;
    let part = part_path(dir, id);
    let mut file = tokio::fs::OpenOptions::new().write(true).open(&part).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    let mut written = offset;
    let mut next_check = offset + FLOOR_CHECK_EVERY;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        // A dropped or stalled connection keeps what arrived: the client resumes from `HEAD`.
        let Ok(chunk) = chunk else { break };
        if written + chunk.len() as u64 > length {
            let _ = file.set_len(offset).await;
            return Err(ApiError::BadRequest("more bytes than Upload-Length".into()));
        }
        file.write_all(&chunk).await?;
        written += chunk.len() as u64;
        if written >= next_check {
            next_check = written + FLOOR_CHECK_EVERY;
            if !space::above_floor(dir, floor, 0)? {
                file.sync_all().await?;
                return Err(ApiError::LowOnStorage);
            }
        }
    }
    file.sync_all().await?;
    drop(file);
    if written < length {
        return Ok(with_offset(StatusCode::NO_CONTENT, written, &record));
    }
    // Complete: verify and import. An upload tied to a request must be that request's DAG.
    let expected = match record.request_key.as_deref() {
        None => None,
        Some(key) => {
            let key: JobKey = key.parse().map_err(|_| {
                ApiError::Store(crate::store::StoreError::Corrupt("request_key".into()))
            })?;
            st.store
                .request_for_upload(&key)
                .await?
                .and_then(|r| r.cid)
                .and_then(|c| Cid::try_from(c.as_str()).ok())
        }
    };
    let blocks = Arc::clone(&st.blocks);
    let import_path = part.clone();
    let imported = tokio::task::spawn_blocking(move || import(&import_path, &blocks, expected))
        .await
        .expect("importing a CAR does not panic");
    match imported {
        Ok((root, count)) => {
            st.store.finish_upload(id, &root, count, now_ms()).await?;
            remove_part(dir, id).await?;
            if let Some(key) = record.request_key.as_deref() {
                requeue_if_given_up(st, key).await;
            }
            let done = UploadRecord { state: UploadState::Done, root: Some(root), ..record };
            Ok(with_offset(StatusCode::NO_CONTENT, written, &done))
        }
        Err(e @ (ImportError::Car(_) | ImportError::NoRoot | ImportError::WrongRoot { .. })) => {
            remove_part(dir, id).await?;
            st.store.delete_upload(id).await?;
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(serde_json::json!({ "error": e.to_string(), "code": "INVALID_CAR" })),
            )
                .into_response())
        }
        // The oracle's storage failed: the upload is kept, and the client may try again.
        Err(ImportError::Io(e)) => Err(ApiError::Io(e)),
        Err(ImportError::Store(e)) => Err(ApiError::Blockstore(e)),
    }
}

/// A request whose content has just been uploaded is fetched again if it had been given up
/// (quarantined after its attempts found the content nowhere): it is here now. A request still
/// queued or retrying finds the blocks at its next attempt.
async fn requeue_if_given_up<B>(st: &ApiState<B>, key: &str) {
    let Ok(key) = key.parse::<JobKey>() else { return };
    let quarantined = st.store.status(&key).await.ok().flatten();
    if quarantined.is_none_or(|s| s.state != JobState::Quarantined) {
        return;
    }
    let policy = crate::domain::state::Policy::default();
    match crate::commands::run(&st.store, &key, &crate::domain::Input::Requeue, &policy).await {
        Ok(_) => info!(%key, "request queued again: its content was uploaded"),
        Err(crate::commands::CommandError::Refused(_)) => {}
        Err(e) => warn!(%key, error = %e, "cannot queue the request again after its upload"),
    }
}

/// Why a finished upload was not imported.
#[derive(Debug, thiserror::Error)]
enum ImportError {
    /// The bytes are not a valid CAR (a 422 for the client).
    #[error("not a valid CAR: {0}")]
    Car(#[from] estuary_dag::car::CarError),
    /// The CAR names no root.
    #[error("not a valid CAR: it names no root")]
    NoRoot,
    /// The CAR's root is not the request's CID.
    #[error("the CAR's root {got} is not the request's CID {want}")]
    WrongRoot {
        /// The CAR's.
        got: Cid,
        /// The request's.
        want: Cid,
    },
    /// Reading the upload back failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The blockstore failed.
    #[error(transparent)]
    Store(#[from] crate::blockstore::BlockstoreError),
}

/// Decodes the CAR at `path`, verifying every block into `blocks`; returns its first root and
/// the number of blocks. With `expected`, a CAR with another root is refused before any of its
/// blocks is stored.
fn import<B: Blockstore>(
    path: &FsPath,
    blocks: &Arc<B>,
    expected: Option<Cid>,
) -> Result<(String, u64), ImportError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut decoder = CarDecoder::new(CarLimits::default());
    let mut buf = vec![0u8; 1 << 20];
    let mut root = None;
    let mut count = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        decoder.push(&buf[..n]);
        while let Some(item) = decoder.next_item()? {
            match item {
                CarItem::Header(h) => {
                    root = h.roots.first().copied();
                    if let (Some(want), Some(got)) = (expected, root)
                        && want.hash() != got.hash()
                    {
                        return Err(ImportError::WrongRoot { got, want });
                    }
                }
                CarItem::Block(b) => {
                    blocks.put_verified(&b.cid, &b.data)?;
                    count += 1;
                }
            }
        }
    }
    decoder.finish()?;
    let root = root.ok_or(ImportError::NoRoot)?;
    Ok((root.to_string(), count))
}

/// Deletes unfinished uploads that have expired by `now_ms` (their bytes and their records);
/// an upload being written is left for the next round. Returns how many went.
pub async fn expire_uploads<B>(st: &ApiState<B>, now_ms: u64) -> Result<u64, ApiError> {
    let mut gone = 0;
    for id in st.store.expired_uploads(now_ms, 1000).await? {
        let Some(_writing) = Writing::take(&id) else { continue };
        remove_part(&st.uploads_dir, &id).await?;
        if st.store.delete_upload(&id).await? {
            gone += 1;
        }
    }
    Ok(gone)
}

/// Deletes files in the uploads directory no upload record owns: `.part` files without a
/// record, and the `.length` files of the format before records. Returns how many went.
pub async fn remove_orphans<B>(st: &ApiState<B>) -> Result<u64, ApiError> {
    let mut entries = match tokio::fs::read_dir(&st.uploads_dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut gone = 0;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let orphan = match name.rsplit_once('.') {
            Some((_, "length")) => true,
            Some((id, "part")) => valid_upload_id(id) && st.store.upload(id).await?.is_none(),
            _ => false,
        };
        if orphan && tokio::fs::remove_file(entry.path()).await.is_ok() {
            gone += 1;
        }
    }
    Ok(gone)
}

/// Every `every`, until `shutdown`: expired unfinished uploads, sign-in nonces, sessions and
/// pre-signed URLs are deleted; at start, files no upload owns too.
pub async fn janitor<B: Blockstore>(
    st: Arc<ApiState<B>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    match remove_orphans(&st).await {
        Ok(0) => {}
        Ok(n) => info!(files = n, "removed upload files no upload owns"),
        Err(e) => warn!(error = %e, "cannot sweep the uploads directory"),
    }
    loop {
        let now = now_ms();
        match expire_uploads(&st, now).await {
            Ok(0) => {}
            Ok(n) => info!(uploads = n, "expired unfinished uploads deleted"),
            Err(e) => warn!(error = %e, "cannot expire uploads"),
        }
        if let Err(e) = st.store.purge_expired_auth(now).await {
            warn!(error = %e, "cannot purge expired sign-in nonces and sessions");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
