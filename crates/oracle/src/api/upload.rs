//! Resumable CAR uploads (the tus core protocol's shape).
//!
//! - `POST /uploads` with `Upload-Length: N` → `201`, `Location: /uploads/{id}`;
//! - `HEAD /uploads/{id}` → `Upload-Offset` (what the server has) and `Upload-Length`;
//! - `PATCH /uploads/{id}` with `Upload-Offset: k` (must equal the server's offset, else `409`)
//!   and the next bytes → `204` with the new `Upload-Offset`.
//!
//! A client that lost its connection asks `HEAD` and re-sends from there, so at most the chunk
//! in flight is sent twice. One `PATCH` per upload at a time: a concurrent one gets `409`. Bytes go to a file as they arrive (no upload is held in memory).
//! When the last byte arrives the CAR is decoded and every block verified into the blockstore;
//! the response carries `Upload-Root` (the CAR's root). A bad CAR is refused with `422` and
//! removed; nothing already stored is touched. Jobs for that root then find the DAG locally.

use std::{
    io::{self, SeekFrom},
    path::Path as FsPath,
    sync::Arc,
};

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use estuary_dag::car::{CarDecoder, CarItem, CarLimits};
use futures_util::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{ApiError, ApiState};
use crate::blockstore::Blockstore;

/// Largest upload accepted.
pub const MAX_UPLOAD: u64 = 32 << 30;

/// Uploads with a `PATCH` under way: a second one at the same time gets `409` rather than
/// writing at the same offset.
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

fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("missing or invalid {name} header")))
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no upload {id:?}")))
    }
}

fn with_offset(status: StatusCode, offset: u64, length: u64) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert("upload-offset", HeaderValue::from(offset));
    h.insert("upload-length", HeaderValue::from(length));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

async fn length_of(dir: &FsPath, id: &str) -> Result<(u64, u64), ApiError> {
    let length: u64 = tokio::fs::read_to_string(dir.join(format!("{id}.length")))
        .await
        .map_err(|_| ApiError::NotFound(format!("no upload {id}")))?
        .trim()
        .parse()
        .map_err(|_| ApiError::NotFound(format!("upload {id} is damaged")))?;
    let offset = match tokio::fs::metadata(dir.join(format!("{id}.part"))).await {
        Ok(m) => m.len(),
        Err(_) => return Err(ApiError::NotFound(format!("no upload {id}"))),
    };
    Ok((offset, length))
}

/// `POST /uploads`.
pub(super) async fn create<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let length = header_u64(&headers, "upload-length")?;
    if length == 0 || length > MAX_UPLOAD {
        return Err(ApiError::BadRequest(format!("Upload-Length must be 1 to {MAX_UPLOAD} bytes")));
    }
    let dir = st.uploads_dir.clone();
    tokio::fs::create_dir_all(&dir).await?;
    let id = alloy::hex::encode(rand::random::<[u8; 16]>());
    tokio::fs::write(dir.join(format!("{id}.part")), b"").await?;
    tokio::fs::write(dir.join(format!("{id}.length")), length.to_string()).await?;
    let mut r = with_offset(StatusCode::CREATED, 0, length);
    if let Ok(v) = HeaderValue::from_str(&format!("/uploads/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    *r.body_mut() = Body::from(serde_json::json!({ "id": id }).to_string());
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `HEAD /uploads/{id}`.
pub(super) async fn offset<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    valid_id(&id)?;
    let (offset, length) = length_of(&st.uploads_dir, &id).await?;
    Ok(with_offset(StatusCode::OK, offset, length))
}

/// `PATCH /uploads/{id}`.
pub(super) async fn append<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    valid_id(&id)?;
    let dir = st.uploads_dir.clone();
    let (offset, length) = length_of(&dir, &id).await?;
    let Some(_writing) = Writing::take(&id) else {
        return Ok(with_offset(StatusCode::CONFLICT, offset, length));
    };
    let claimed = header_u64(&headers, "upload-offset")?;
    if claimed != offset {
        return Ok(with_offset(StatusCode::CONFLICT, offset, length));
    }
    let part = dir.join(format!("{id}.part"));
    let mut file = tokio::fs::OpenOptions::new().write(true).open(&part).await?;
    file.seek(SeekFrom::Start(offset)).await?;
    let mut written = offset;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        // A dropped connection keeps what arrived: the client resumes from `HEAD`'s offset.
        let Ok(chunk) = chunk else { break };
        if written + chunk.len() as u64 > length {
            let _ = file.set_len(offset).await;
            return Err(ApiError::BadRequest("more bytes than Upload-Length".into()));
        }
        file.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    file.sync_all().await?;
    drop(file);
    if written < length {
        return Ok(with_offset(StatusCode::NO_CONTENT, written, length));
    }
    // Complete: verify and import.
    let blocks = Arc::clone(&st.blocks);
    let imported = tokio::task::spawn_blocking(move || import(&part, &blocks))
        .await
        .expect("importing a CAR does not panic");
    let forget = || async {
        let _ = tokio::fs::remove_file(dir.join(format!("{id}.part"))).await;
        let _ = tokio::fs::remove_file(dir.join(format!("{id}.length"))).await;
    };
    match imported {
        Ok((root, count)) => {
            forget().await;
            let mut r = with_offset(StatusCode::OK, written, length);
            if let Ok(v) = HeaderValue::from_str(&root) {
                r.headers_mut().insert("upload-root", v);
            }
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            *r.body_mut() =
                Body::from(serde_json::json!({ "root": root, "blocks": count }).to_string());
            Ok(r)
        }
        Err(e @ (ImportError::Car(_) | ImportError::NoRoot)) => {
            forget().await;
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response())
        }
        // The oracle's storage failed: the upload is kept, and the client may try again.
        Err(ImportError::Io(e)) => Err(ApiError::Io(e)),
        Err(ImportError::Store(e)) => Err(ApiError::Blockstore(e)),
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
    /// Reading the upload back failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The blockstore failed.
    #[error(transparent)]
    Store(#[from] crate::blockstore::BlockstoreError),
}

/// Decodes the CAR at `path`, verifying every block into `blocks`; returns its first root and
/// the number of blocks.
fn import<B: Blockstore>(path: &FsPath, blocks: &Arc<B>) -> Result<(String, u64), ImportError> {
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
                CarItem::Header(h) => root = h.roots.first().copied(),
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
