//! The operator's report transactions: every one sent and not yet settled, with its nonce and
//! the request states it reports. A restarted oracle continues its nonces past the ones still in
//! the mempool, and waits for a report it had already sent instead of sending it again.

use std::future::Future;

use alloy::primitives::B256;
use sqlx::Row;

use super::{PgStore, SqliteStore, StoreError, u64_to_i64};

/// Report transactions and nonces, per operator account.
pub trait TxLedger: Send + Sync + 'static {
    /// The newest unsettled transaction of `operator`: (nonce, hash). Settled ones are gone,
    /// so this is what may still be in a mempool.
    fn last_unsettled(
        &self,
        operator: &str,
    ) -> impl Future<Output = Result<Option<(u64, B256)>, StoreError>> + Send;

    /// Records that `tx`, sent with `nonce`, reports `keys` (one per request state, such as
    /// `pinned/<contract>/<id>`).
    fn record_sent(
        &self,
        operator: &str,
        nonce: u64,
        tx: B256,
        keys: &[String],
        now_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The transactions recorded for `key`, oldest first: (nonce, hash).
    fn sent_for(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Vec<(u64, B256)>, StoreError>> + Send;

    /// Forgets the transactions recorded for `keys`: their reports are settled.
    fn settle(&self, keys: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

macro_rules! tx_ledger {
    ($store:ident, $row:ty) => {
        impl $store {
            fn nonce_and_hash(r: &$row) -> Result<(u64, B256), StoreError> {
                let n: i64 = r.try_get("nonce")?;
                let h: String = r.try_get("tx_hash")?;
                Ok((
                    u64::try_from(n).map_err(|_| StoreError::Corrupt("nonce".into()))?,
                    h.parse().map_err(|_| StoreError::Corrupt(format!("tx hash {h:?}")))?,
                ))
            }
        }

        impl TxLedger for $store {
            async fn last_unsettled(
                &self,
                operator: &str,
            ) -> Result<Option<(u64, B256)>, StoreError> {
                let row = sqlx::query(
                    "SELECT nonce, tx_hash FROM report_txs WHERE operator = $1
                     ORDER BY nonce DESC, sent_ms DESC LIMIT 1",
                )
                .bind(operator)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::nonce_and_hash).transpose()
            }

            async fn record_sent(
                &self,
                operator: &str,
                nonce: u64,
                tx: B256,
                keys: &[String],
                now_ms: u64,
            ) -> Result<(), StoreError> {
                let mut db = self.pool.begin().await?;
                for key in keys {
                    sqlx::query(
                        "INSERT INTO report_txs (request_key, tx_hash, operator, nonce, sent_ms)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(key)
                    .bind(format!("{tx:#x}"))
                    .bind(operator)
                    .bind(u64_to_i64(nonce)?)
                    .bind(u64_to_i64(now_ms)?)
                    .execute(&mut *db)
                    .await?;
                }
                db.commit().await?;
                Ok(())
            }

            async fn sent_for(&self, key: &str) -> Result<Vec<(u64, B256)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT nonce, tx_hash FROM report_txs WHERE request_key = $1
                     ORDER BY sent_ms, tx_hash",
                )
                .bind(key)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::nonce_and_hash).collect()
            }

            async fn settle(&self, keys: &[String]) -> Result<(), StoreError> {
                let mut db = self.pool.begin().await?;
                for key in keys {
                    sqlx::query("DELETE FROM report_txs WHERE request_key = $1")
                        .bind(key)
                        .execute(&mut *db)
                        .await?;
                }
                db.commit().await?;
                Ok(())
            }
        }
    };
}

tx_ledger!(SqliteStore, sqlx::sqlite::SqliteRow);
tx_ledger!(PgStore, sqlx::postgres::PgRow);
