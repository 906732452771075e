//! Uploads and who may make them: upload records with their owners, pre-signed upload URLs,
//! Sign-In with Ethereum nonces and sessions, and per-account quotas.
//!
//! Quotas are checked in the transaction that records the upload (or pin): the row is written
//! first, the account's usage read back with it, and the transaction rolled back if the usage is
//! over. On PostgreSQL an advisory lock per account serialises the account's writers; SQLite has
//! one writer at a time.

use sqlx::{Row, any::AnyRow};

use super::{Store, StoreError, get_u64, int, opt_u64};
use crate::domain::{
    JobKey, JobState,
    pinning::{Caller, CheckedPin, PinRecord, Scope},
    upload::{Quota, QuotaExceeded, Usage},
};

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    /// Receiving bytes.
    Open,
    /// Verified and imported.
    Done,
}

impl UploadState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Done => "done",
        }
    }
}

/// An upload as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Its id (32 hex digits).
    pub id: String,
    /// The account it belongs to.
    pub account: String,
    /// `Upload-Length`.
    pub length: u64,
    /// `Upload-Metadata` as sent.
    pub metadata: Option<String>,
    /// The on-chain request it is tied to (job key), if any.
    pub request_key: Option<String>,
    /// The pre-signed URL it was made with (digest), if any.
    pub grant_sha256: Option<String>,
    /// Receiving, or done.
    pub state: UploadState,
    /// The CAR's root, once imported.
    pub root: Option<String>,
    /// Blocks imported.
    pub blocks: Option<u64>,
    /// When it was made (unix ms).
    pub created_ms: u64,
    /// When an unfinished upload is deleted (unix ms).
    pub expires_ms: u64,
}

/// A new upload.
#[derive(Debug, Clone)]
pub struct NewUpload<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its owner.
    pub account: &'a str,
    /// `Upload-Length`.
    pub length: u64,
    /// `Upload-Metadata` as sent.
    pub metadata: Option<&'a str>,
    /// The request it is tied to.
    pub request_key: Option<&'a str>,
    /// The pre-signed URL it is made with: claimed in the same transaction (one upload each).
    pub grant_sha256: Option<&'a str>,
    /// Now (unix ms).
    pub now_ms: u64,
    /// When it expires if unfinished.
    pub expires_ms: u64,
}

/// Why an upload was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    /// The account is at its quota.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// The pre-signed URL was used already, or has expired.
    #[error("this pre-signed upload URL was used already or has expired")]
    GrantUsed,
}

/// A pre-signed upload URL as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// The account that made it; the upload is that account's.
    pub account: String,
    /// The largest upload it allows.
    pub max_bytes: u64,
    /// When it stops working (unix ms).
    pub expires_ms: u64,
    /// The upload it made, once used.
    pub upload_id: Option<String>,
}

/// What the oracle knows of an on-chain request an upload may be tied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestForUpload {
    /// Who made it (checksummed address).
    pub requester: String,
    /// Its size hint, if it gave one.
    pub size_hint: Option<u64>,
    /// Where its job is.
    pub state: JobState,
    /// Its CID's text, if the bytes are a CID.
    pub cid: Option<String>,
}

const UPLOAD_COLUMNS: &str = "id, account, length, metadata, request_key, grant_sha256, state, \
     root, blocks, created_ms, expires_ms";

fn row_to_upload(row: &AnyRow) -> Result<UploadRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(UploadRecord {
        id: row.try_get("id")?,
        account: row.try_get("account")?,
        length: get_u64(row, "length")?,
        metadata: row.try_get("metadata")?,
        request_key: row.try_get("request_key")?,
        grant_sha256: row.try_get("grant_sha256")?,
        state: match state.as_str() {
            "open" => UploadState::Open,
            "done" => UploadState::Done,
            other => return Err(StoreError::Corrupt(format!("upload state {other:?}"))),
        },
        root: row.try_get("root")?,
        blocks: opt_u64(row, "blocks")?,
        created_ms: get_u64(row, "created_ms")?,
        expires_ms: get_u64(row, "expires_ms")?,
    })
}

impl Store {
    /// Takes the per-account lock of a quota-checked write (PostgreSQL; SQLite has one writer).
    async fn lock_account(
        &self,
        tx: &mut sqlx::AnyConnection,
        account: &str,
    ) -> Result<(), StoreError> {
        if !self.is_embedded() {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1)) IS NULL AS locked")
                .bind(account)
                .fetch_one(&mut *tx)
                .await?;
        }
        Ok(())
    }

    async fn usage_in(tx: &mut sqlx::AnyConnection, account: &str) -> Result<Usage, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(length), 0) AS BIGINT) AS bytes,
                    CAST(COALESCE(SUM(CASE WHEN state = 'open' THEN 1 ELSE 0 END), 0) AS BIGINT)
                      AS uploads,
                    (SELECT COUNT(*) FROM api_pins WHERE owner = $1) AS pins
             FROM uploads WHERE account = $1",
        )
        .bind(account)
        .fetch_one(&mut *tx)
        .await?;
        Ok(Usage {
            bytes: get_u64(&row, "bytes")?,
            uploads: get_u64(&row, "uploads")?,
            pins: get_u64(&row, "pins")?,
        })
    }

    /// What `account` holds now.
    pub async fn usage(&self, account: &str) -> Result<Usage, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::usage_in(&mut conn, account).await
    }

    /// `account`'s quota: its own settings where it has them, `default` otherwise.
    pub async fn quota(&self, account: &str, default: Quota) -> Result<Quota, StoreError> {
        let row = sqlx::query(
            "SELECT max_bytes, max_uploads, max_pins FROM account_quotas WHERE account = $1",
        )
        .bind(account)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(default) };
        Ok(Quota {
            max_bytes: opt_u64(&row, "max_bytes")?.unwrap_or(default.max_bytes),
            max_uploads: opt_u64(&row, "max_uploads")?.unwrap_or(default.max_uploads),
            max_pins: opt_u64(&row, "max_pins")?.unwrap_or(default.max_pins),
        })
    }

    /// Sets `account`'s own quota (`None`: the oracle's default for that limit).
    pub async fn set_quota(
        &self,
        account: &str,
        max_bytes: Option<u64>,
        max_uploads: Option<u64>,
        max_pins: Option<u64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO account_quotas (account, max_bytes, max_uploads, max_pins)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (account) DO UPDATE SET max_bytes = $2, max_uploads = $3, max_pins = $4",
        )
        .bind(account)
        .bind(max_bytes.map(int).transpose()?)
        .bind(max_uploads.map(int).transpose()?)
        .bind(max_pins.map(int).transpose()?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records an upload within `quota` (and claims its pre-signed URL, if it has one), in one
    /// transaction.
    pub async fn create_upload(
        &self,
        new: &NewUpload<'_>,
        quota: &Quota,
    ) -> Result<Result<UploadRecord, UploadRefused>, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.lock_account(&mut tx, new.account).await?;
        if let Some(grant) = new.grant_sha256 {
            let claimed = sqlx::query(
                "UPDATE upload_grants SET upload_id = $1
                 WHERE secret_sha256 = $2 AND upload_id IS NULL AND expires_ms > $3",
            )
            .bind(new.id)
            .bind(grant)
            .bind(int(new.now_ms)?)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() != 1 {
                return Ok(Err(UploadRefused::GrantUsed));
            }
        }
        sqlx::query(
            "INSERT INTO uploads (id, account, length, metadata, request_key, grant_sha256, state,
                                  created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8)",
        )
        .bind(new.id)
        .bind(new.account)
        .bind(int(new.length)?)
        .bind(new.metadata)
        .bind(new.request_key)
        .bind(new.grant_sha256)
        .bind(int(new.now_ms)?)
        .bind(int(new.expires_ms)?)
        .execute(&mut *tx)
        .await?;
        let usage = Self::usage_in(&mut tx, new.account).await?;
        if let Err(e) = quota.admits_upload(usage) {
            return Ok(Err(e.into()));
        }
        tx.commit().await?;
        let record = self
            .upload(new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("upload vanished".into()))?;
        Ok(Ok(record))
    }

    /// Upload `id`.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_upload).transpose()
    }

    /// The unfinished upload tied to request `key`, if there is one.
    pub async fn open_upload_for(&self, key: &JobKey) -> Result<Option<UploadRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE request_key = $1 AND state = 'open'
             ORDER BY created_ms LIMIT 1"
        ))
        .bind(key.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_upload).transpose()
    }

    /// Marks upload `id` imported, with its root; false if it was not open.
    pub async fn finish_upload(
        &self,
        id: &str,
        root: &str,
        blocks: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE uploads SET state = $1, root = $2, blocks = $3, finished_ms = $4
             WHERE id = $5 AND state = $6",
        )
        .bind(UploadState::Done.as_str())
        .bind(root)
        .bind(int(blocks)?)
        .bind(int(now_ms)?)
        .bind(id)
        .bind(UploadState::Open.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes upload `id`'s record; false if there was none.
    pub async fn delete_upload(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Unfinished uploads whose time ran out by `now_ms` (at most `limit`).
    pub async fn expired_uploads(
        &self,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM uploads WHERE state = 'open' AND expires_ms <= $1
             ORDER BY expires_ms LIMIT $2",
        )
        .bind(int(now_ms)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Records a pre-signed upload URL.
    pub async fn add_grant(
        &self,
        secret_sha256: &str,
        account: &str,
        max_bytes: u64,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO upload_grants (secret_sha256, account, max_bytes, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(secret_sha256)
        .bind(account)
        .bind(int(max_bytes)?)
        .bind(int(now_ms)?)
        .bind(int(expires_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pre-signed URL whose secret has this digest, if it has not expired by `now_ms`.
    pub async fn grant(
        &self,
        secret_sha256: &str,
        now_ms: u64,
    ) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT account, max_bytes, expires_ms, upload_id FROM upload_grants
             WHERE secret_sha256 = $1 AND expires_ms > $2",
        )
        .bind(secret_sha256)
        .bind(int(now_ms)?)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(GrantRecord {
                account: row.try_get("account")?,
                max_bytes: get_u64(&row, "max_bytes")?,
                expires_ms: get_u64(&row, "expires_ms")?,
                upload_id: row.try_get("upload_id")?,
            })
        })
        .transpose()
    }

    /// Keeps a sign-in nonce until `expires_ms`; false (nothing kept) when `max_outstanding`
    /// live nonces are already out.
    pub async fn add_nonce(
        &self,
        nonce: &str,
        now_ms: u64,
        expires_ms: u64,
        max_outstanding: u64,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM auth_nonces WHERE expires_ms <= $1")
            .bind(int(now_ms)?)
            .execute(&self.pool)
            .await?;
        let done = sqlx::query(
            "INSERT INTO auth_nonces (nonce, expires_ms)
             SELECT $1, $2 WHERE (SELECT COUNT(*) FROM auth_nonces) < $3",
        )
        .bind(nonce)
        .bind(int(expires_ms)?)
        .bind(int(max_outstanding)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses up a nonce: true if it was out and had not expired by `now_ms`.
    pub async fn take_nonce(&self, nonce: &str, now_ms: u64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM auth_nonces WHERE nonce = $1 AND expires_ms > $2")
            .bind(nonce)
            .bind(int(now_ms)?)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a session token (its digest) for `account` with `scope`, until `expires_ms`.
    pub async fn add_session(
        &self,
        secret_sha256: &str,
        account: &str,
        scope: Scope,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_sessions (secret_sha256, account, scope, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(secret_sha256)
        .bind(account)
        .bind(scope.as_str())
        .bind(int(now_ms)?)
        .bind(int(expires_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The caller whose session secret has this digest, if the session is live at `now_ms`.
    pub async fn session(
        &self,
        secret_sha256: &str,
        now_ms: u64,
    ) -> Result<Option<Caller>, StoreError> {
        let row = sqlx::query(
            "SELECT account, scope FROM api_sessions WHERE secret_sha256 = $1 AND expires_ms > $2",
        )
        .bind(secret_sha256)
        .bind(int(now_ms)?)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let scope: String = row.try_get("scope")?;
        Ok(Some(Caller {
            account: row.try_get("account")?,
            scope: Scope::parse(&scope)
                .ok_or_else(|| StoreError::Corrupt(format!("session scope {scope:?}")))?,
        }))
    }

    /// Deletes expired nonces, sessions and pre-signed URLs; returns how many rows went.
    pub async fn purge_expired_auth(&self, now_ms: u64) -> Result<u64, StoreError> {
        let now = int(now_ms)?;
        let mut gone = 0;
        for sql in [
            "DELETE FROM auth_nonces WHERE expires_ms <= $1",
            "DELETE FROM api_sessions WHERE expires_ms <= $1",
            "DELETE FROM upload_grants WHERE expires_ms <= $1",
        ] {
            gone += sqlx::query(sql).bind(now).execute(&self.pool).await?.rows_affected();
        }
        Ok(gone)
    }

    /// The on-chain request `key`, as an upload tied to it needs it.
    pub async fn request_for_upload(
        &self,
        key: &JobKey,
    ) -> Result<Option<RequestForUpload>, StoreError> {
        let row = sqlx::query(
            "SELECT requester, size_hint, state, cid FROM jobs WHERE source = $1 AND job_id = $2",
        )
        .bind(key.source.to_string())
        .bind(key.id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        Ok(Some(RequestForUpload {
            requester: row.try_get("requester")?,
            size_hint: opt_u64(&row, "size_hint")?,
            state: JobState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?,
            cid: row.try_get("cid")?,
        }))
    }

    /// Records a pin for `owner` and queues its job, unless `owner` is at `quota`'s pins.
    pub async fn create_pin_within(
        &self,
        owner: &str,
        requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
        quota: &Quota,
    ) -> Result<Result<PinRecord, QuotaExceeded>, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.insert_pin(&mut tx, owner, requestid, pin, now_ms).await?;
        let usage = Self::usage_in(&mut tx, owner).await?;
        if let Err(e) = quota.admits_pin(usage) {
            return Ok(Err(e));
        }
        tx.commit().await?;
        let record = self
            .pin(owner, requestid)
            .await?
            .ok_or_else(|| StoreError::Corrupt("pin vanished".into()))?;
        Ok(Ok(record))
    }
}
