//! Who may upload: bearer tokens, Sign-In with Ethereum sessions and pre-signed upload URLs.
//!
//! - `POST /auth/nonce` → `201 {"nonce", "expires"}`: a nonce for one sign-in, good for ten
//!   minutes (at most 100,000 are out at once; beyond, 503).
//! - `POST /auth/siwe` with `{"message", "signature"}` (an EIP-4361 message naming one of the
//!   `--siwe-domain`s, this oracle's chain and the nonce, signed with `personal_sign`) →
//!   `201 {"token", "account", "scope": "upload", "expires"}`: a session token bound to the
//!   address, which may create uploads (owned by the address, under the wallet quota) and
//!   nothing else, until it expires (`--session-secs` at most).
//! - `POST /uploads/presign` with a write token and `{"max_bytes", "expires_in"}` →
//!   `201 {"url": "/uploads?presigned=…", "token", "max_bytes", "expires"}`: a URL a page can
//!   upload to once, with no token of its own — one upload of at most `max_bytes`, owned by
//!   (and counted against) the account that made the URL, before `expires_in` seconds
//!   (`--presign-max-secs` at most) have passed.
//!
//! Secrets are `est_…` (tokens), `est_s_…` (sessions) and `est_p_…` (pre-signed URLs); only
//! their SHA-256 is kept.

use std::sync::Arc;

use axum::{
    Json,
    extract::{State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, bearer, is_operator_token, pins::DEFAULT_ACCOUNT};
use crate::{
    blockstore::Blockstore,
    domain::{
        auth::{self, AuthError, SiwePolicy},
        now_ms,
        pinning::{Scope, format_time, secret_digest},
    },
    store::GrantRecord,
};

/// How long a sign-in nonce is good for.
const NONCE_MS: u64 = 10 * 60 * 1000;
/// Most nonces out at once.
const MAX_NONCES: u64 = 100_000;

/// Who is creating an upload.
#[derive(Debug, Clone)]
pub enum Uploader {
    /// A write token (or the operator's), or a session made by signing in: the upload is this
    /// account's.
    Account(String),
    /// A pre-signed URL: one upload, the account's that made the URL.
    Presigned {
        /// The URL's secret's digest.
        digest: String,
        /// What it allows.
        grant: GrantRecord,
    },
}

/// A random secret with `prefix`: 32 random bytes, hex.
fn secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The uploader a request names: the pre-signed URL's secret (`?presigned=`), or the bearer
/// token (an account's write token, the operator's, a session, or a pre-signed URL's secret);
/// `None` when it names none.
pub async fn uploader<B>(
    st: &ApiState<B>,
    headers: &HeaderMap,
    presigned: Option<&str>,
) -> Result<Option<Uploader>, ApiError> {
    let now = now_ms();
    if let Some(secret) = presigned {
        let digest = secret_digest(secret);
        let grant = st.store.grant(&digest, now).await?.ok_or(ApiError::Unauthorized)?;
        return Ok(Some(Uploader::Presigned { digest, grant }));
    }
    let Some(token) = bearer(headers) else { return Ok(None) };
    if is_operator_token(st, token) {
        return Ok(Some(Uploader::Account(DEFAULT_ACCOUNT.to_owned())));
    }
    let digest = secret_digest(token);
    if let Some(caller) = st.store.caller(&digest).await? {
        return match caller.scope {
            Scope::Write | Scope::Upload => Ok(Some(Uploader::Account(caller.account))),
            Scope::Read => Err(ApiError::Forbidden("a read-only token cannot upload".into())),
        };
    }
    if let Some(caller) = st.store.session(&digest, now).await? {
        return Ok(Some(Uploader::Account(caller.account)));
    }
    if let Some(grant) = st.store.grant(&digest, now).await? {
        return Ok(Some(Uploader::Presigned { digest, grant }));
    }
    Err(ApiError::Unauthorized)
}

fn json<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(v)| v).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))
}

#[derive(Serialize)]
pub(super) struct NonceBody {
    nonce: String,
    expires: String,
}

/// `POST /auth/nonce`.
pub(super) async fn nonce<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
) -> Result<(StatusCode, Json<NonceBody>), ApiError> {
    let now = now_ms();
    let nonce = auth::new_nonce();
    let expires = now + NONCE_MS;
    if !st.store.add_nonce(&nonce, now, expires, MAX_NONCES).await? {
        return Err(ApiError::Busy);
    }
    Ok((StatusCode::CREATED, Json(NonceBody { nonce, expires: format_time(expires) })))
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    message: String,
    signature: String,
}

#[derive(Serialize)]
pub(super) struct SessionBody {
    token: String,
    account: String,
    scope: &'static str,
    expires: String,
}

/// `POST /auth/siwe`.
pub(super) async fn siwe<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    payload: Result<Json<SignIn>, JsonRejection>,
) -> Result<(StatusCode, Json<SessionBody>), ApiError> {
    let body = json(payload)?;
    let Some((chain_id, _)) = st.source.contract() else {
        return Err(ApiError::NotFound("this oracle follows no chain to sign in to".into()));
    };
    let policy = SiwePolicy {
        domains: st.policy.siwe_domains.clone(),
        chain_id,
        max_session_ms: u64::try_from(st.policy.session.as_millis()).unwrap_or(u64::MAX),
    };
    let now = now_ms();
    let signed = auth::check_siwe(&body.message, &body.signature, &policy, now)?;
    if !auth::valid_nonce(&signed.nonce) || !st.store.take_nonce(&signed.nonce, now).await? {
        return Err(AuthError::Nonce.into());
    }
    let token = secret("est_s_");
    let account = signed.address.to_checksum(None);
    st.store
        .add_session(&secret_digest(&token), &account, Scope::Upload, now, signed.expires_ms)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionBody {
            token,
            account,
            scope: Scope::Upload.as_str(),
            expires: format_time(signed.expires_ms),
        }),
    ))
}

#[derive(Deserialize)]
pub(super) struct Presign {
    max_bytes: u64,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct PresignBody {
    url: String,
    token: String,
    max_bytes: u64,
    expires: String,
}

/// `POST /uploads/presign`.
pub(super) async fn presign<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    headers: HeaderMap,
    payload: Result<Json<Presign>, JsonRejection>,
) -> Result<(StatusCode, Json<PresignBody>), ApiError> {
    let account = match uploader(&st, &headers, None).await? {
        Some(Uploader::Account(account)) if !super::is_wallet_account(&account) => account,
        Some(_) => {
            return Err(ApiError::Forbidden(
                "pre-signed upload URLs are made with an account's write token".into(),
            ));
        }
        None => return Err(ApiError::Unauthorized),
    };
    let body = json(payload)?;
    let max = st.policy.max_upload;
    if body.max_bytes == 0 || body.max_bytes > max {
        return Err(ApiError::BadRequest(format!("max_bytes must be 1 to {max}")));
    }
    let longest = st.policy.presign_max.as_secs();
    let expires_in = body.expires_in.unwrap_or(3600);
    if expires_in == 0 || expires_in > longest {
        return Err(ApiError::BadRequest(format!("expires_in must be 1 to {longest} seconds")));
    }
    let now = now_ms();
    let expires = now.saturating_add(expires_in.saturating_mul(1000));
    let token = secret("est_p_");
    st.store.add_grant(&secret_digest(&token), &account, body.max_bytes, now, expires).await?;
    Ok((
        StatusCode::CREATED,
        Json(PresignBody {
            url: format!("/uploads?presigned={token}"),
            token,
            max_bytes: body.max_bytes,
            expires: format_time(expires),
        }),
    ))
}
