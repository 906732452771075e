//! The senders' transactions: every one sent and not yet settled, with its nonce and what it
//! does (`pinned/<contract>/<id>`, …), kept for [`estuary_chain::TxManager`].

use alloy::primitives::B256;
use estuary_chain::TxLedger;
use sqlx::Row;

use super::{Store, StoreError, get_u64, int};

fn nonce_and_hash(r: &sqlx::any::AnyRow) -> Result<(u64, B256), StoreError> {
    let h: String = r.try_get("tx_hash")?;
    Ok((
        get_u64(r, "nonce")?,
        h.parse().map_err(|_| StoreError::Corrupt(format!("tx hash {h:?}")))?,
    ))
}

impl TxLedger for Store {
    type Error = StoreError;

    async fn last_unsettled(&self, sender: &str) -> Result<Option<(u64, B256)>, StoreError> {
        let row = sqlx::query(
            "SELECT nonce, tx_hash FROM report_txs WHERE operator = $1
             ORDER BY nonce DESC, sent_ms DESC LIMIT 1",
        )
        .bind(sender)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(nonce_and_hash).transpose()
    }

    async fn unsettled_between(
        &self,
        sender: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, B256)>, StoreError> {
        let rows = sqlx::query(
            "SELECT nonce, tx_hash FROM report_txs WHERE operator = $1 AND nonce >= $2 AND nonce < $3",
        )
        .bind(sender)
        .bind(int(from)?)
        .bind(int(to)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(nonce_and_hash).collect()
    }

    async fn record_sent(
        &self,
        sender: &str,
        nonce: u64,
        tx: B256,
        keys: &[String],
    ) -> Result<(), StoreError> {
        let mut db = self.pool.begin().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO report_txs (request_key, tx_hash, operator, nonce, sent_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(key.as_str())
            .bind(format!("{tx:#x}"))
            .bind(sender)
            .bind(int(nonce)?)
            .bind(int(crate::domain::now_ms())?)
            .execute(&mut *db)
            .await?;
        }
        db.commit().await?;
        Ok(())
    }

    async fn sent_for(&self, key: &str) -> Result<Vec<(u64, B256)>, StoreError> {
        let rows = sqlx::query(
            "SELECT nonce, tx_hash FROM report_txs WHERE request_key = $1 ORDER BY sent_ms, tx_hash",
        )
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(nonce_and_hash).collect()
    }

    async fn settle(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut db = self.pool.begin().await?;
        for key in keys {
            sqlx::query("DELETE FROM report_txs WHERE request_key = $1")
                .bind(key.as_str())
                .execute(&mut *db)
                .await?;
        }
        db.commit().await?;
        Ok(())
    }
}
