//! Pins made through the Pinning Service API, and the tokens that make them.

use sqlx::{Row, any::AnyRow};

use super::{Dialect, Store, StoreError, get_u64, int, need};
use crate::domain::{
    JobId, JobKey, JobSource, JobState,
    pinning::{Caller, CheckedPin, Pin, PinQuery, PinRecord, Scope, TextMatch},
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

/// The pin objects joined with their jobs.
const FROM: &str =
    "FROM api_pins p JOIN jobs r ON r.source = 'api/' || p.owner AND r.job_id = p.requestid";

fn row_to_pin(row: &AnyRow) -> Result<PinRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("api_pins.{what}"));
    let state: String = row.try_get("state")?;
    let origins: String = row.try_get("origins")?;
    let meta: String = row.try_get("meta")?;
    Ok(PinRecord {
        requestid: row.try_get("requestid")?,
        owner: row.try_get("owner")?,
        pin: Pin {
            cid: row.try_get("cid")?,
            name: row.try_get("name")?,
            origins: serde_json::from_str(&origins).map_err(|_| corrupt("origins"))?,
            meta: serde_json::from_str(&meta).map_err(|_| corrupt("meta"))?,
        },
        created_ms: get_u64(row, "created_ms")?,
        status: JobState::parse(&state).ok_or_else(|| corrupt("state"))?,
        error: row.try_get("error")?,
        failure: row
            .try_get::<Option<String>, _>("failure")?
            .map(|f| crate::domain::FailureCode::parse(&f).ok_or_else(|| corrupt("failure")))
            .transpose()?,
        dag_bytes: super::opt_u64(row, "dag_bytes")?,
        piece_cid: row.try_get("piece_cid")?,
    })
}

/// A query's text with numbered parameters (`$1`, `$2`, …: what both databases take through
/// the `Any` driver) and their values, in order.
#[derive(Default)]
struct Built {
    sql: String,
    args: Vec<Arg>,
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Built {
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.sql.push_str(&format!("${}", self.args.len()));
        self
    }

    fn text(&mut self, v: &str) -> &mut Self {
        self.bind(Arg::Text(v.to_owned()))
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for arg in &self.args {
            q = match arg {
                Arg::Text(t) => q.bind(t.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// Appends `query`'s conditions (a `WHERE` on the owner and every filter).
fn push_filters(qb: &mut Built, d: Dialect, owner: &str, query: &PinQuery) {
    qb.push(" WHERE p.owner = ").text(owner);
    if !query.cids.is_empty() {
        for column in ["p.cid", "r.cid"] {
            qb.push(if column == "p.cid" { " AND (" } else { " OR " }).push(column).push(" IN (");
            for (i, cid) in query.cids.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                qb.text(cid);
            }
            qb.push(")");
        }
        qb.push(")");
    }
    if let Some((name, how)) = &query.name {
        qb.push(
            &match how {
                TextMatch::Exact => " AND p.name = ",
                TextMatch::Iexact => " AND lower(p.name) = lower(",
                TextMatch::Partial => " AND {instr}(p.name, ",
                TextMatch::Ipartial => " AND {instr}(lower(p.name), lower(",
            }
            .replace("{instr}", d.instr),
        );
        qb.text(name);
        qb.push(match how {
            TextMatch::Exact => "",
            TextMatch::Iexact => ")",
            TextMatch::Partial => ") > 0",
            TextMatch::Ipartial => ")) > 0",
        });
    }
    if !query.statuses.is_empty() {
        let states = query.statuses.iter().flat_map(|s| s.job_states().iter().copied());
        qb.push(&format!(" AND r.state IN {}", super::state_list(states)));
    }
    if let Some(before) = query.before_ms {
        qb.push(" AND p.created_ms < ").bind(Arg::Int(i64::try_from(before).unwrap_or(i64::MAX)));
    }
    if let Some(after) = query.after_ms {
        qb.push(" AND p.created_ms > ").bind(Arg::Int(i64::try_from(after).unwrap_or(i64::MAX)));
    }
    for (key, value) in &query.meta {
        qb.push(&format!(" AND EXISTS (SELECT 1 FROM {} WHERE key = ", d.json_pairs))
            .text(key)
            .push(" AND value = ")
            .text(value)
            .push(")");
    }
}

fn pin_key(owner: &str, requestid: &str) -> Result<JobKey, StoreError> {
    Ok(JobKey {
        source: JobSource::PinningApi { account: owner.to_owned() },
        id: JobId::pin(requestid).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

impl Store {
    pub(super) async fn insert_pin(
        &self,
        tx: &mut sqlx::AnyConnection,
        owner: &str,
        requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let origins = serde_json::to_string(&pin.pin.origins)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let meta =
            serde_json::to_string(&pin.pin.meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = int(now_ms)?;
        if let Some(lock) = self.dialect.pin_lock {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::query(&format!(
            "INSERT INTO api_pins (requestid, owner, cid, name, origins, meta, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6,
                     {greatest}($7, COALESCE((SELECT MAX(created_ms) FROM api_pins), 0) + 1))",
            greatest = self.dialect.greatest
        ))
        .bind(requestid)
        .bind(owner)
        .bind(pin.pin.cid.as_str())
        .bind(pin.pin.name.clone())
        .bind(origins.as_str())
        .bind(meta)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let key = pin_key(owner, requestid)?;
        sqlx::query(&format!(
            "INSERT INTO jobs (source, job_id, requester, cid_bytes, cid, state, seq, origins,
                               updated_at, bucket_group)
             VALUES ($1, $2, $3, $4, $5, $6, {next_seq}, $7, $8, $9)",
            next_seq = self.dialect.next_seq
        ))
        .bind(key.source.to_string())
        .bind(key.id.as_str())
        .bind(owner)
        .bind(pin.cid_bytes.clone())
        .bind(pin.cid_text.as_str())
        .bind(JobState::Queued.as_str())
        .bind(origins)
        .bind(now)
        .bind(pin.own_bucket().then(|| format!("{}{key}", crate::domain::bucket::OWN_GROUP)))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Deletes the pin row and cancels its job through the machine; false if `owner` has no
    /// such pin.
    async fn remove_pin(
        tx: &mut sqlx::AnyConnection,
        owner: &str,
        requestid: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let gone = sqlx::query("DELETE FROM api_pins WHERE owner = $1 AND requestid = $2")
            .bind(owner)
            .bind(requestid)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        super::requests::cancel_in(tx, &pin_key(owner, requestid)?, now_ms).await?;
        Ok(true)
    }

    /// Records a pin for `owner` and queues its job, in one transaction. `created_ms` is
    /// `now_ms` or, if another pin already has that time, the next free millisecond.
    pub async fn create_pin(
        &self,
        owner: &str,
        requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> Result<PinRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.insert_pin(&mut tx, owner, requestid, pin, now_ms).await?;
        tx.commit().await?;
        self.pin(owner, requestid).await?.ok_or_else(|| StoreError::Corrupt("pin vanished".into()))
    }

    /// `owner`'s pin `requestid`.
    pub async fn pin(&self, owner: &str, requestid: &str) -> Result<Option<PinRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT p.requestid, p.owner, p.cid, p.name, p.origins, p.meta, p.created_ms,
                    r.state, r.error, r.failure, r.dag_bytes, r.piece_cid {FROM}
             WHERE p.owner = $1 AND p.requestid = $2"
        ))
        .bind(owner)
        .bind(requestid)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_pin).transpose()
    }

    /// `owner`'s pins matching `query`, newest first, and how many match in all.
    pub async fn pins(
        &self,
        owner: &str,
        query: &PinQuery,
    ) -> Result<(u64, Vec<PinRecord>), StoreError> {
        let mut count = Built::default();
        count.push(&format!("SELECT COUNT(*) AS n {FROM}"));
        push_filters(&mut count, self.dialect, owner, query);
        let n: i64 = count.query().fetch_one(&self.pool).await?.try_get("n")?;
        let mut list = Built::default();
        list.push(&format!(
            "SELECT p.requestid, p.owner, p.cid, p.name, p.origins, p.meta, p.created_ms,
                    r.state, r.error, r.failure, r.dag_bytes, r.piece_cid {FROM}"
        ));
        push_filters(&mut list, self.dialect, owner, query);
        list.push(" ORDER BY p.created_ms DESC LIMIT ").bind(Arg::Int(i64::from(query.limit)));
        let rows = list.query().fetch_all(&self.pool).await?;
        let pins = rows.iter().map(row_to_pin).collect::<Result<Vec<_>, _>>()?;
        Ok((u64::try_from(n).unwrap_or(0), pins))
    }

    /// Removes `owner`'s pin `requestid` and cancels its job; false if there is no such pin.
    pub async fn delete_pin(
        &self,
        owner: &str,
        requestid: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let removed = Self::remove_pin(&mut tx, owner, requestid, now_ms).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Removes pin `old` and records `pin` as `new_requestid` in one transaction (blocks the
    /// two share stay held throughout); `None` if `old` is not `owner`'s.
    pub async fn replace_pin(
        &self,
        owner: &str,
        old: &str,
        new_requestid: &str,
        pin: &CheckedPin,
        now_ms: u64,
    ) -> Result<Option<PinRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !Self::remove_pin(&mut tx, owner, old, now_ms).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        self.insert_pin(&mut tx, owner, new_requestid, pin, now_ms).await?;
        tx.commit().await?;
        self.pin(owner, new_requestid).await
    }

    /// Adds a token; false if one with that name exists.
    pub async fn add_token(
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
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The caller whose secret has this digest.
    pub async fn caller(&self, secret_sha256: &str) -> Result<Option<Caller>, StoreError> {
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

    /// Every token, by name.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query("SELECT name, scope, created_ms FROM api_tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let scope: String = row.try_get("scope")?;
                Ok(TokenInfo {
                    name: row.try_get("name")?,
                    scope: Scope::parse(&scope)
                        .ok_or_else(|| StoreError::Corrupt(format!("token scope {scope:?}")))?,
                    created_ms: need(super::opt_u64(row, "created_ms")?, "created_ms")?,
                })
            })
            .collect()
    }

    /// Deletes a token (its pins stay); false if there was none.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
