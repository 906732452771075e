//! Pins made through the Pinning Service API, and the tokens that make them.

use std::future::Future;

use sqlx::{QueryBuilder, Row, Sqlite, sqlite::SqliteRow};

use super::{SqliteStore, StoreError, u64_to_i64};
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

fn row_to_pin(row: &SqliteRow) -> Result<PinRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let origins: String = row.try_get("origins")?;
    let meta: String = row.try_get("meta")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("api_pins.{what}"));
    let created: i64 = row.try_get("created_ms")?;
    let dag_bytes: Option<i64> = row.try_get("dag_bytes")?;
    Ok(PinRecord {
        requestid: row.try_get("requestid")?,
        owner: row.try_get("owner")?,
        pin: Pin {
            cid: row.try_get("cid")?,
            name: row.try_get("name")?,
            origins: serde_json::from_str(&origins).map_err(|_| corrupt("origins"))?,
            meta: serde_json::from_str(&meta).map_err(|_| corrupt("meta"))?,
        },
        created_ms: u64::try_from(created).map_err(|_| corrupt("created_ms"))?,
        status: RequestStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        error: row.try_get("error")?,
        dag_bytes: dag_bytes.and_then(|b| u64::try_from(b).ok()),
        piece_cid: row.try_get("piece_cid")?,
    })
}

/// Appends `query`'s conditions (after `WHERE p.owner = ?`).
fn push_filters<'a>(qb: &mut QueryBuilder<'a, Sqlite>, owner: &'a str, query: &'a PinQuery) {
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
        qb.push(match how {
            TextMatch::Exact => " AND p.name = ",
            TextMatch::Iexact => " AND lower(p.name) = lower(",
            TextMatch::Partial => " AND instr(p.name, ",
            TextMatch::Ipartial => " AND instr(lower(p.name), lower(",
        });
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
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(p.meta) WHERE key = ")
            .push_bind(key.as_str())
            .push(" AND value = ")
            .push_bind(value.as_str())
            .push(")");
    }
}

impl SqliteStore {
    async fn insert_pin(
        tx: &mut sqlx::SqliteConnection,
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
        sqlx::query(
            "INSERT INTO api_pins (requestid, owner, cid, name, origins, meta, created_ms)
             VALUES (?, ?, ?, ?, ?, ?,
                     MAX(?, COALESCE((SELECT MAX(created_ms) FROM api_pins), 0) + 1))",
        )
        .bind(requestid)
        .bind(owner)
        .bind(&pin.pin.cid)
        .bind(&pin.pin.name)
        .bind(&origins)
        .bind(&meta)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO pin_requests (chain_id, contract, request_id, requester, cid_bytes, cid,
                block_number, block_hash, tx_hash, log_index, status, seq, origins, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 0, '', ?, 0, 'queued',
                     (SELECT COALESCE(MAX(seq), 0) + 1 FROM pin_requests), ?, ?)",
        )
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
        tx: &mut sqlx::SqliteConnection,
        owner: &str,
        requestid: &str,
    ) -> Result<bool, StoreError> {
        let gone = sqlx::query("DELETE FROM api_pins WHERE owner = ? AND requestid = ?")
            .bind(owner)
            .bind(requestid)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE pin_requests SET status = 'cancelled', lease_until = 0
             WHERE chain_id = 0 AND contract = 'api' AND request_id = ?
               AND status IN ('queued', 'fetching', 'failing')",
        )
        .bind(requestid)
        .execute(&mut *tx)
        .await?;
        Ok(true)
    }
}

impl PinStore for SqliteStore {
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
        let row = sqlx::query(&format!("{SELECT} WHERE p.owner = ? AND p.requestid = ?"))
            .bind(owner)
            .bind(requestid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_pin).transpose()
    }

    async fn pins(
        &self,
        owner: &str,
        query: &PinQuery,
    ) -> Result<(u64, Vec<PinRecord>), StoreError> {
        let mut count = QueryBuilder::<Sqlite>::new(
            "SELECT COUNT(*) AS n FROM api_pins p JOIN pin_requests r
               ON r.chain_id = 0 AND r.contract = 'api' AND r.request_id = p.requestid",
        );
        push_filters(&mut count, owner, query);
        let n: i64 = count.build().fetch_one(&self.pool).await?.try_get("n")?;
        let mut list = QueryBuilder::<Sqlite>::new(SELECT);
        push_filters(&mut list, owner, query);
        list.push(" ORDER BY p.created_ms DESC LIMIT ").push_bind(i64::from(query.limit));
        let rows = list.build().fetch_all(&self.pool).await?;
        let pins = rows.iter().map(row_to_pin).collect::<Result<Vec<_>, _>>()?;
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
            "INSERT INTO api_tokens (name, secret_sha256, scope, created_ms) VALUES (?, ?, ?, ?)
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
        let row = sqlx::query("SELECT name, scope FROM api_tokens WHERE secret_sha256 = ?")
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
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        pinning::{PinState, RawPinQuery},
        store::JobStore,
    };

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).await.unwrap();
        (dir, store)
    }

    fn checked(cid: &str, name: Option<&str>, meta: &[(&str, &str)]) -> CheckedPin {
        Pin {
            cid: cid.into(),
            name: name.map(Into::into),
            origins: vec!["/ip4/127.0.0.1/tcp/8080/http".into()],
            meta: meta.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        }
        .check()
        .unwrap()
    }

    const A: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    const B: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

    fn query(q: RawPinQuery) -> PinQuery {
        q.check().unwrap()
    }

    #[tokio::test]
    async fn pins_are_listed_filtered_and_paged() {
        let (_dir, s) = store().await;
        // Same millisecond for all: the store makes created times unique.
        for i in 0..15 {
            let cid = if i % 2 == 0 { A } else { B };
            let name = format!("File-{i}");
            let meta = [("app", if i < 5 { "one" } else { "two" })];
            s.create_pin("alice", &format!("r{i}"), &checked(cid, Some(&name), &meta), 1_000)
                .await
                .unwrap();
        }
        s.create_pin("bob", "b0", &checked(A, Some("File-1"), &[]), 1_000).await.unwrap();

        let (n, page) = s.pins("alice", &PinQuery::default()).await.unwrap();
        assert_eq!((n, page.len()), (15, 10));
        assert_eq!(page[0].requestid, "r14", "newest first");
        let created: Vec<u64> = page.iter().map(|p| p.created_ms).collect();
        assert!(created.windows(2).all(|w| w[0] > w[1]), "unique and descending");
        let before = Some(page.last().unwrap().created_ms);
        let (_, next) =
            s.pins("alice", &PinQuery { before_ms: before, ..Default::default() }).await.unwrap();
        assert_eq!(next.len(), 5);
        assert_eq!(next[4].requestid, "r0");

        let by = |raw: RawPinQuery| {
            let s = s.clone();
            async move { s.pins("alice", &query(raw)).await.unwrap().0 }
        };
        assert_eq!(by(RawPinQuery { name: Some("File-1".into()), ..Default::default() }).await, 1);
        assert_eq!(by(RawPinQuery { name: Some("file-1".into()), ..Default::default() }).await, 0);
        let iexact = RawPinQuery {
            name: Some("file-1".into()),
            text_match: Some("iexact".into()),
            ..Default::default()
        };
        assert_eq!(by(iexact).await, 1);
        let partial = RawPinQuery {
            name: Some("le-1".into()),
            text_match: Some("partial".into()),
            ..Default::default()
        };
        assert_eq!(by(partial).await, 6, "File-1 and File-10..14");
        let ipartial = RawPinQuery {
            name: Some("LE-1".into()),
            text_match: Some("ipartial".into()),
            ..Default::default()
        };
        assert_eq!(by(ipartial).await, 6);
        assert_eq!(by(RawPinQuery { cid: Some(A.into()), ..Default::default() }).await, 8);
        let both = RawPinQuery { cid: Some(format!("{A},{B}")), ..Default::default() };
        assert_eq!(by(both).await, 15);
        let meta = RawPinQuery { meta: Some(r#"{"app":"one"}"#.into()), ..Default::default() };
        assert_eq!(by(meta).await, 5);
        let queued = RawPinQuery { status: Some("queued".into()), ..Default::default() };
        assert_eq!(by(queued).await, 15);
        let pinned = RawPinQuery { status: Some("pinned,failed".into()), ..Default::default() };
        assert_eq!(by(pinned).await, 0);
        assert_eq!(
            s.pins("alice", &PinQuery { after_ms: Some(1_013), ..Default::default() })
                .await
                .unwrap()
                .0,
            1
        );
    }

    #[tokio::test]
    async fn delete_and_replace_touch_only_the_owners_pin() {
        let (_dir, s) = store().await;
        let pin = s.create_pin("alice", "r1", &checked(A, None, &[]), 5).await.unwrap();
        assert_eq!(PinState::of(pin.status), PinState::Queued);
        assert!(!s.delete_pin("bob", "r1").await.unwrap());
        assert!(
            s.replace_pin("bob", "r1", "r2", &checked(B, None, &[]), 6).await.unwrap().is_none()
        );
        let new =
            s.replace_pin("alice", "r1", "r2", &checked(B, None, &[]), 6).await.unwrap().unwrap();
        assert_eq!(new.pin.cid, B);
        assert!(s.pin("alice", "r1").await.unwrap().is_none());
        // The old job is cancelled, so no worker takes it.
        let job = s.claim(10, 1_000).await.unwrap().unwrap();
        assert_eq!(job.request_id, "r2");
        assert_eq!(job.origins, vec!["/ip4/127.0.0.1/tcp/8080/http".to_owned()]);
        assert!(s.claim(10, 1_000).await.unwrap().is_none());
        assert!(s.delete_pin("alice", "r2").await.unwrap());
        assert!(!s.delete_pin("alice", "r2").await.unwrap());
        assert_eq!(s.pins("alice", &PinQuery::default()).await.unwrap().0, 0);
        assert!(
            s.pins("alice", &PinQuery { meta: BTreeMap::new(), ..Default::default() })
                .await
                .unwrap()
                .1
                .is_empty()
        );
    }

    #[tokio::test]
    async fn tokens_are_kept_as_digests() {
        let (_dir, s) = store().await;
        assert!(s.add_token("alice", "d1", Scope::Write, 1).await.unwrap());
        assert!(!s.add_token("alice", "d2", Scope::Read, 2).await.unwrap());
        assert!(s.add_token("reader", "d3", Scope::Read, 3).await.unwrap());
        assert_eq!(
            s.caller("d1").await.unwrap(),
            Some(Caller { account: "alice".into(), scope: Scope::Write })
        );
        assert_eq!(s.caller("d2").await.unwrap(), None);
        assert_eq!(s.tokens().await.unwrap().len(), 2);
        assert!(s.revoke_token("alice").await.unwrap());
        assert_eq!(s.caller("d1").await.unwrap(), None);
    }
}
