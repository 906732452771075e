//! Pins made through the Pinning Service API, and the tokens that make them.

use std::future::Future;

use sqlx::{QueryBuilder, Row};

use super::{
    Columns, Dialect, POSTGRES, PgStore, SQLITE, SqliteStore, StoreError, need, u64_to_i64,
};
use crate::{
    model::RequestStatus,
    pinning::{
        API_CHAIN_ID, API_CONTRACT, Caller, CheckedPin, Pin, PinQuery, PinRecord, Scope, TextMatch,
    },
};

/// A token as listed to its operator (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The account it acts for.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// When it was made (unix ms).
    pub created_ms: u64,
}

/// Pin objects and API tokens.
pub trait PinStore: Send + Sync + 'static {
    /// Records a pin for `owner` and queues its job, in one transaction. `created_ms` is
    /// `now_ms` or, if another pin already has that time, the next free millisecond.
    fn create_pin(
        &self,
        owner: &str,
        requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> impl Future<Output = Result<PinRecord, StoreError>> + Send;

    /// `owner`'s pin `requestid`.
    fn pin(
        &self,
        owner: &str,
        requestid: &str,
    ) -> impl Future<Output = Result<Option<PinRecord>, StoreError>> + Send;

    /// `owner`'s pins matching `query`, newest first, and how many match in all.
    fn pins(
        &self,
        owner: &str,
        query: &PinQuery,
    ) -> impl Future<Output = Result<(u64, Vec<PinRecord>), StoreError>> + Send;

    /// Removes `owner`'s pin `requestid` and cancels its job if unfinished; false if there is
    /// no such pin.
    fn delete_pin(
        &self,
        owner: &str,
        requestid: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes pin `old` and records `pin` as `new_requestid` in one transaction (blocks the
    /// two share stay held throughout); `None` if `old` is not `owner`'s.
    fn replace_pin(
        &self,
        owner: &str,
        old: &str,
        new_requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<PinRecord>, StoreError>> + Send;

    /// Adds a token; false if one with that name exists.
    fn add_token(
        &self,
        name: &str,
        secret_sha256: &str,
        scope: Scope,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The caller whose secret has this digest.
    fn caller(
        &self,
        secret_sha256: &str,
    ) -> impl Future<Output = Result<Option<Caller>, StoreError>> + Send;

    /// Every token, by name.
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenInfo>, StoreError>> + Send;

    /// Deletes a token (its pins stay); false if there was none.
    fn revoke_token(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

const SELECT: &str = "SELECT p.requestid, p.owner, p.cid, p.name, p.origins, p.meta, p.created_ms,
        r.status, r.error, r.dag_bytes, r.piece_cid
    FROM api_pins p JOIN pin_requests r
      ON r.chain_id = 0 AND r.contract = 'api' AND r.request_id = p.requestid";

fn row_to_pin(row: &impl Columns) -> Result<PinRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("api_pins.{what}"));
    let status = need(row.text("status")?, "status")?;
    let origins = need(row.text("origins")?, "origins")?;
    let meta = need(row.text("meta")?, "meta")?;
    let created = need(row.int("created_ms")?, "created_ms")?;
    Ok(PinRecord {
        requestid: need(row.text("requestid")?, "requestid")?,
        owner: need(row.text("owner")?, "owner")?,
        pin: Pin {
            cid: need(row.text("cid")?, "cid")?,
            name: row.text("name")?,
            origins: serde_json::from_str(&origins).map_err(|_| corrupt("origins"))?,
            meta: serde_json::from_str(&meta).map_err(|_| corrupt("meta"))?,
        },
        created_ms: u64::try_from(created).map_err(|_| corrupt("created_ms"))?,
        status: RequestStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        error: row.text("error")?,
        dag_bytes: row.int("dag_bytes")?.and_then(|b| u64::try_from(b).ok()),
        piece_cid: row.text("piece_cid")?,
    })
}

/// Appends `query`'s conditions (after `WHERE p.owner = ?`).
fn push_filters<'a, DB: sqlx::Database>(
    qb: &mut QueryBuilder<'a, DB>,
    d: Dialect,
    owner: &'a str,
    query: &'a PinQuery,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push(" WHERE p.owner = ").push_bind(owner);
    if !query.cids.is_empty() {
        qb.push(" AND (p.cid IN (");
        let mut list = qb.separated(", ");
        for cid in &query.cids {
            list.push_bind(cid);
        }
        qb.push(") OR r.cid IN (");
        let mut list = qb.separated(", ");
        for cid in &query.cids {
            list.push_bind(cid);
        }
        qb.push("))");
    }
    if let Some((name, how)) = &query.name {
        qb.push(
            match how {
                TextMatch::Exact => " AND p.name = ",
                TextMatch::Iexact => " AND lower(p.name) = lower(",
                TextMatch::Partial => " AND {instr}(p.name, ",
                TextMatch::Ipartial => " AND {instr}(lower(p.name), lower(",
            }
            .replace("{instr}", d.instr),
        );
        qb.push_bind(name.as_str());
        qb.push(match how {
            TextMatch::Exact => "",
            TextMatch::Iexact => ")",
            TextMatch::Partial => ") > 0",
            TextMatch::Ipartial => ")) > 0",
        });
    }
    if !query.statuses.is_empty() {
        let states: Vec<String> = query
            .statuses
            .iter()
            .flat_map(|s| s.job_states())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        qb.push(format!(" AND r.status IN ({})", states.join(", ")));
    }
    if let Some(before) = query.before_ms {
        qb.push(" AND p.created_ms < ").push_bind(i64::try_from(before).unwrap_or(i64::MAX));
    }
    if let Some(after) = query.after_ms {
        qb.push(" AND p.created_ms > ").push_bind(i64::try_from(after).unwrap_or(i64::MAX));
    }
    for (key, value) in &query.meta {
        qb.push(format!(" AND EXISTS (SELECT 1 FROM {} WHERE key = ", d.json_pairs))
            .push_bind(key.as_str())
            .push(" AND value = ")
            .push_bind(value.as_str())
            .push(")");
    }
}

macro_rules! pin_store {
    ($store:ident, $conn:ty, $db:ty, $d:expr) => {
impl $store {
    async fn insert_pin(
        tx: &mut $conn,
        owner: &str,
        requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let origins = serde_json::to_string(&pin.pin.origins)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let meta =
            serde_json::to_string(&pin.pin.meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = u64_to_i64(now_ms)?;
        if let Some(lock) = $d.pin_lock {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::query(&format!(
            "INSERT INTO api_pins (requestid, owner, cid, name, origins, meta, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6,
                     {greatest}($7, COALESCE((SELECT MAX(created_ms) FROM api_pins), 0) + 1))",
            greatest = $d.greatest
        ))
        .bind(requestid)
        .bind(owner)
        .bind(&pin.pin.cid)
        .bind(&pin.pin.name)
        .bind(&origins)
        .bind(&meta)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO pin_requests (chain_id, contract, request_id, requester, cid_bytes, cid,
                block_number, block_hash, tx_hash, log_index, status, seq, origins, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 0, '', $7, 0, 'queued',
                     {next_seq}, $8, $9)",
            next_seq = $d.next_seq
        ))
        .bind(u64_to_i64(API_CHAIN_ID)?)
        .bind(API_CONTRACT)
        .bind(requestid)
        .bind(owner)
        .bind(&pin.cid_bytes)
        .bind(&pin.cid_text)
        .bind(format!("api:{requestid}"))
        .bind(&origins)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Deletes the pin row and cancels its job; false if `owner` has no such pin.
    async fn remove_pin(
        tx: &mut $conn,
        owner: &str,
        requestid: &str,
    ) -> Result<bool, StoreError> {
        let gone = sqlx::query("DELETE FROM api_pins WHERE owner = $1 AND requestid = $2")
            .bind(owner)
            .bind(requestid)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE pin_requests SET status = 'cancelled', lease_until = 0
             WHERE chain_id = 0 AND contract = 'api' AND request_id = $1
               AND status IN ('queued', 'fetching', 'failing')",
        )
        .bind(requestid)
        .execute(&mut *tx)
        .await?;
        Ok(true)
    }
}

impl PinStore for $store {
    async fn create_pin(
        &self,
        owner: &str,
        requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> Result<PinRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::insert_pin(&mut tx, owner, requestid, pin, now_ms).await?;
        tx.commit().await?;
        self.pin(owner, requestid).await?.ok_or_else(|| StoreError::Corrupt("pin vanished".into()))
    }

    async fn pin(&self, owner: &str, requestid: &str) -> Result<Option<PinRecord>, StoreError> {
        let row = sqlx::query(&format!("{SELECT} WHERE p.owner = $1 AND p.requestid = $2"))
            .bind(owner)
            .bind(requestid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| row_to_pin(r)).transpose()
    }

    async fn pins(
        &self,
        owner: &str,
        query: &PinQuery,
    ) -> Result<(u64, Vec<PinRecord>), StoreError> {
        let mut count = QueryBuilder::<$db>::new(
            "SELECT COUNT(*) AS n FROM api_pins p JOIN pin_requests r
               ON r.chain_id = 0 AND r.contract = 'api' AND r.request_id = p.requestid",
        );
        push_filters(&mut count, $d, owner, query);
        let n: i64 = count.build().fetch_one(&self.pool).await?.try_get("n")?;
        let mut list = QueryBuilder::<$db>::new(SELECT);
        push_filters(&mut list, $d, owner, query);
        list.push(" ORDER BY p.created_ms DESC LIMIT ").push_bind(i64::from(query.limit));
        let rows = list.build().fetch_all(&self.pool).await?;
        let pins = rows.iter().map(|r| row_to_pin(r)).collect::<Result<Vec<_>, _>>()?;
        Ok((u64::try_from(n).unwrap_or(0), pins))
    }

    async fn delete_pin(&self, owner: &str, requestid: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let removed = Self::remove_pin(&mut tx, owner, requestid).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn replace_pin(
        &self,
        owner: &str,
        old: &str,
        new_requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> Result<Option<PinRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !Self::remove_pin(&mut tx, owner, old).await? {
            return Ok(None);
        }
        Self::insert_pin(&mut tx, owner, new_requestid, pin, now_ms).await?;
        tx.commit().await?;
        self.pin(owner, new_requestid).await
    }

    async fn add_token(
        &self,
        name: &str,
        secret_sha256: &str,
        scope: Scope,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO api_tokens (name, secret_sha256, scope, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(secret_sha256)
        .bind(scope.as_str())
        .bind(u64_to_i64(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn caller(&self, secret_sha256: &str) -> Result<Option<Caller>, StoreError> {
        let row = sqlx::query("SELECT name, scope FROM api_tokens WHERE secret_sha256 = $1")
            .bind(secret_sha256)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let scope: String = row.try_get("scope")?;
        Ok(Some(Caller {
            account: row.try_get("name")?,
            scope: Scope::parse(&scope)
                .ok_or_else(|| StoreError::Corrupt(format!("token scope {scope:?}")))?,
        }))
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query("SELECT name, scope, created_ms FROM api_tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let scope: String = row.try_get("scope")?;
                let created: i64 = row.try_get("created_ms")?;
                Ok(TokenInfo {
                    name: row.try_get("name")?,
                    scope: Scope::parse(&scope)
                        .ok_or_else(|| StoreError::Corrupt(format!("token scope {scope:?}")))?,
                    created_ms: u64::try_from(created).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

    };
}

pin_store!(SqliteStore, sqlx::SqliteConnection, sqlx::Sqlite, SQLITE);
pin_store!(PgStore, sqlx::PgConnection, sqlx::Postgres, POSTGRES);
