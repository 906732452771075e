//! DataDAO funding: the accepted proposals of the DataDAOs this oracle operates, and the orders
//! their `fundOrder` made (`deals::datadao`). The pins a DAO requests are its own to fund: the
//! DAO's address is registered as a requester whose pieces are never bucketed or ordered with
//! the operator's money ([`Store::pieces_to_bucket`], [`Store::pieces_to_order`]).

use alloy::primitives::Address;
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, deals::PieceToOrder, get_u64, int, opt_u64};
use crate::domain::{
    JobSource, JobState,
    deal::{Backend, OrderState},
};

/// Where a DAO proposal's funding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FundingState {
    /// Accepted; `fundOrder` not called yet (the pin not reported, or a refusal retried).
    Waiting,
    /// The order exists.
    Funded,
    /// Not funded by its `fundBy`: the DAO releases its budget and cancels the pin.
    Expired,
}

impl FundingState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Funded => "funded",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Waiting, Self::Funded, Self::Expired].into_iter().find(|f| f.as_str() == s)
    }
}

/// An accepted proposal of a DataDAO, as the funder sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaoFunding {
    /// The DAO (0x, lower case).
    pub dao: String,
    /// The proposal.
    pub proposal_id: u64,
    /// Its `EstuaryPinning` request (decimal).
    pub request_id: String,
    /// `fundOrder`'s last second (unix).
    pub fund_by: u64,
    /// Where it is.
    pub state: FundingState,
    /// The pin's piece (v2), once reported.
    pub piece_cid: Option<String>,
    /// The order, once funded.
    pub order_id: Option<u64>,
    /// The `fundOrder` transaction, when this oracle sent it.
    pub tx_hash: Option<String>,
    /// Why it waits.
    pub error: Option<String>,
    /// When it last changed (unix ms).
    pub updated_ms: u64,
}

impl Store {
    /// Registers `dao` as a requester whose pins it funds itself (idempotent).
    pub async fn register_dao(&self, dao: Address) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO dao_requesters (requester) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(dao.to_checksum(None))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what the funder knows of a proposal (inserted, or every field replaced).
    pub async fn put_dao_funding(&self, f: &DaoFunding) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dao_fundings (dao, proposal_id, request_id, fund_by, state, piece_cid,
               order_id, tx_hash, error, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (dao, proposal_id) DO UPDATE SET request_id = excluded.request_id,
               fund_by = excluded.fund_by, state = excluded.state,
               piece_cid = COALESCE(excluded.piece_cid, dao_fundings.piece_cid),
               order_id = COALESCE(excluded.order_id, dao_fundings.order_id),
               tx_hash = COALESCE(excluded.tx_hash, dao_fundings.tx_hash),
               error = excluded.error, updated_ms = excluded.updated_ms",
        )
        .bind(&f.dao)
        .bind(int(f.proposal_id)?)
        .bind(&f.request_id)
        .bind(int(f.fund_by)?)
        .bind(f.state.as_str())
        .bind(f.piece_cid.as_deref())
        .bind(f.order_id.map(int).transpose()?)
        .bind(f.tx_hash.as_deref())
        .bind(f.error.as_deref())
        .bind(int(f.updated_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A page of the proposals the funder has seen accepted, newest first (`limit` from
    /// `offset`).
    pub async fn dao_fundings(
        &self,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<DaoFunding>, StoreError> {
        let rows = sqlx::query(
            "SELECT dao, proposal_id, request_id, fund_by, state, piece_cid, order_id, tx_hash,
                    error, updated_ms
             FROM dao_fundings ORDER BY updated_ms DESC, dao, proposal_id DESC
             LIMIT $1 OFFSET $2",
        )
        .bind(int(limit)?)
        .bind(int(offset)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(DaoFunding {
                    dao: r.try_get("dao")?,
                    proposal_id: get_u64(r, "proposal_id")?,
                    request_id: r.try_get("request_id")?,
                    fund_by: get_u64(r, "fund_by")?,
                    state: FundingState::parse(&state).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown funding state {state:?}"))
                    })?,
                    piece_cid: r.try_get("piece_cid")?,
                    order_id: opt_u64(r, "order_id")?,
                    tx_hash: r.try_get("tx_hash")?,
                    error: r.try_get("error")?,
                    updated_ms: get_u64(r, "updated_ms")?,
                })
            })
            .collect()
    }

    /// The proposals of `dao` (0x, lower case) recorded funded.
    pub async fn dao_funded(&self, dao: &str) -> Result<Vec<u64>, StoreError> {
        let rows =
            sqlx::query("SELECT proposal_id FROM dao_fundings WHERE dao = $1 AND state = $2")
                .bind(dao)
                .bind(FundingState::Funded.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| get_u64(r, "proposal_id")).collect()
    }

    /// The proposal of `dao` (0x, lower case) whose funded order is `order_id`, if any.
    pub async fn dao_proposal_of_order(
        &self,
        dao: &str,
        order_id: u64,
    ) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT proposal_id FROM dao_fundings WHERE dao = $1 AND order_id = $2 AND state = $3",
        )
        .bind(dao)
        .bind(int(order_id)?)
        .bind(FundingState::Funded.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| get_u64(r, "proposal_id")).transpose()
    }

    /// The piece of request `request_id` of `source`, if it is reported.
    pub async fn reported_piece(
        &self,
        source: &JobSource,
        request_id: &str,
    ) -> Result<Option<PieceToOrder>, StoreError> {
        let row = sqlx::query(
            "SELECT piece_cid, cid, padded_size, car_size FROM jobs
             WHERE source = $1 AND job_id = $2 AND state = $3 AND piece_cid IS NOT NULL
               AND cid IS NOT NULL",
        )
        .bind(source.to_string())
        .bind(request_id)
        .bind(JobState::Reported.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(super::deals::piece_to_order).transpose()
    }

    /// Records the order a DAO's `fundOrder` created at `contract` (open, bound to `order_id`),
    /// so that `/deals`, the keeper and the collection see it like the operator's; a DAO order
    /// recorded before under another id (a reorg replaced it) takes the new one. Nothing if the
    /// piece has an order of the operator's there already (another pin of the same piece was
    /// ordered by the operator). Returns whether it wrote.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_dao_order(
        &self,
        contract: Address,
        piece: &PieceToOrder,
        piece_v1: &[u8],
        replicas: u16,
        order_id: u64,
        tx_hash: Option<&str>,
        sent_block: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO deal_orders (backend, contract, piece_cid, piece_v1, payload_cid,
               padded_size, car_size, replicas, state, order_id, tx_hash, error, sent_block,
               funding, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, NULL, $13, $13)
             ON CONFLICT (contract, piece_cid) DO UPDATE SET order_id = excluded.order_id,
               state = excluded.state, updated_ms = excluded.updated_ms,
               tx_hash = COALESCE(excluded.tx_hash, deal_orders.tx_hash)
             WHERE deal_orders.backend = excluded.backend
               AND deal_orders.order_id <> excluded.order_id",
        )
        .bind(Backend::DataDao.as_str())
        .bind(format!("{contract:#x}"))
        .bind(piece.piece_cid.as_str())
        .bind(alloy::hex::encode(piece_v1))
        .bind(piece.payload_cid.as_str())
        .bind(int(piece.padded_size)?)
        .bind(int(piece.car_size)?)
        .bind(i64::from(replicas))
        .bind(OrderState::Open.as_str())
        .bind(int(order_id)?)
        .bind(tx_hash)
        .bind(int(sent_block)?)
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The deal engine's counts for `/metrics`: buckets by state and kind, with their padded
    /// bytes; deals reported with proofs and the pins proven; DataDAO proposals by state; store
    /// jobs answered (with deals, with a failure) and waiting.
    pub async fn deal_engine_counts(&self) -> Result<DealEngineCounts, StoreError> {
        let mut counts = DealEngineCounts::default();
        let rows = sqlx::query(
            "SELECT state, CASE WHEN grp IS NULL THEN 'shared'
                                WHEN grp LIKE 'pin:%' THEN 'own' ELSE 'dedicated' END AS kind,
                    COUNT(*) AS n, CAST(SUM(end_bytes) AS BIGINT) AS bytes
             FROM buckets GROUP BY state, kind ORDER BY state, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            counts.buckets.push((
                r.try_get("state")?,
                r.try_get("kind")?,
                get_u64(r, "n")?,
                opt_u64(r, "bytes")?.unwrap_or(0),
            ));
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(SUM(pins) AS BIGINT) AS pins FROM deal_reports",
        )
        .fetch_one(&self.pool)
        .await?;
        counts.deals_reported = (get_u64(&row, "n")?, opt_u64(&row, "pins")?.unwrap_or(0));
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM dao_fundings GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            counts.dao_fundings.push((r.try_get("state")?, get_u64(r, "n")?));
        }
        let rows = sqlx::query("SELECT ok, COUNT(*) AS n FROM store_results GROUP BY ok")
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            let n = get_u64(r, "n")?;
            if get_u64(r, "ok")? == 1 {
                counts.store_results.0 = n;
            } else {
                counts.store_results.1 = n;
            }
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs j WHERE j.store_replicas IS NOT NULL AND j.state = $1
               AND NOT EXISTS (SELECT 1 FROM store_results r
                               WHERE r.source = j.source AND r.job_id = j.job_id)",
        )
        .bind(JobState::Reported.as_str())
        .fetch_one(&self.pool)
        .await?;
        counts.store_waiting = get_u64(&row, "n")?;
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM deal_proposals GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            counts.proposals.push((r.try_get("state")?, get_u64(r, "n")?));
        }
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT piece_cid) AS pins, COUNT(*) AS parts FROM piece_splits",
        )
        .fetch_one(&self.pool)
        .await?;
        counts.splits = (get_u64(&row, "pins")?, get_u64(&row, "parts")?);
        Ok(counts)
    }
}

/// What [`Store::deal_engine_counts`] gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DealEngineCounts {
    /// Buckets: (state, kind: `shared` | `dedicated` | `own`, how many, padded bytes placed).
    pub buckets: Vec<(String, String, u64, u64)>,
    /// Deals reported with inclusion proofs, and the pins proven in them.
    pub deals_reported: (u64, u64),
    /// DataDAO proposals by funding state.
    pub dao_fundings: Vec<(String, u64)>,
    /// Store jobs answered with deals, and with a failure.
    pub store_results: (u64, u64),
    /// Store jobs pinned and waiting for their deals.
    pub store_waiting: u64,
    /// Contract-deal proposals by state (`sending`, `offered`, `lapsed`, `failed`).
    pub proposals: Vec<(String, u64)>,
    /// Pins split across pieces, and their parts.
    pub splits: (u64, u64),
}
