//! Buckets: which packed pieces are grouped into which FRC-0058 aggregate (see
//! [`crate::domain::bucket`]). The store keeps what the bucketer decided; placing a piece is a
//! compare-and-set on the bucket's end, so two writers never give one offset twice.

use serde::Serialize;
use sqlx::{Row, any::AnyRow};

use super::jobs::key_of;
use super::{
    OrderWithReplicas, PieceToOrder, Store, StoreError, deals::piece_to_order, get_u64, int,
    opt_u64,
};
use crate::domain::{JobKey, JobSource, JobState, bucket::OpenBucket, deal::OrderState};

/// A bucket, as stored, with its aggregate's order where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketRecord {
    /// Its id.
    pub id: u64,
    /// `open` or `closed`.
    pub state: String,
    /// Where its pieces end, padded bytes.
    pub end_bytes: u64,
    /// Pieces in it.
    pub pieces: u64,
    /// When its first piece came, unix ms.
    pub created_ms: u64,
    /// When it closed.
    pub closed_ms: Option<u64>,
    /// Whose it is: `pin:<key>` (one pin's own), `requester:<who>` (an account's or a
    /// contract's); none for the shared bucket. Public views show only its kind
    /// (`own`, `dedicated`): the group names an account.
    #[serde(serialize_with = "group_kind")]
    pub group: Option<String>,
    /// Why it closed: `full`, `age` or `own` (a pin's own bucket, closed with its pin).
    pub why: Option<String>,
    /// The aggregate's padded size.
    pub deal_size: Option<u64>,
    /// The aggregate's v2 piece CID.
    pub piece_cid: Option<String>,
    /// The aggregate's order state (`sending`, `open`, `failed`), once there is one.
    pub order_state: Option<String>,
    /// The aggregate's order id.
    pub order_id: Option<u64>,
}

/// A piece in a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketPiece {
    /// Its v2 piece CID.
    pub piece_cid: String,
    /// The pin's root (not shown by the public `GET /buckets`: a pin made through the Pinning
    /// Service API is its account's business).
    #[serde(skip)]
    pub payload_cid: String,
    /// Its padded size.
    pub padded_size: u64,
    /// Its CAR's size.
    pub car_size: u64,
    /// Its offset in the deal, padded bytes.
    pub offset: u64,
}

/// Positions in a bucket: at most 2^19 index entries (a 64 GiB deal), so `bucket × 2^24 + seq`
/// orders every bucket piece.
const SEQ_SPAN: u64 = 1 << 24;

const BUCKET_COLUMNS: &str = "b.id, b.state, b.end_bytes, b.pieces, b.created_ms, b.closed_ms,
    b.grp, b.why, b.deal_size, b.piece_cid,
    (SELECT MIN(o.state) FROM deal_orders o WHERE o.piece_cid = b.piece_cid) AS order_state,
    (SELECT MIN(o.order_id) FROM deal_orders o WHERE o.piece_cid = b.piece_cid) AS order_id";

fn bucket_from_row(row: &AnyRow) -> Result<BucketRecord, StoreError> {
    Ok(BucketRecord {
        id: get_u64(row, "id")?,
        state: row.try_get("state")?,
        end_bytes: get_u64(row, "end_bytes")?,
        pieces: get_u64(row, "pieces")?,
        created_ms: get_u64(row, "created_ms")?,
        closed_ms: opt_u64(row, "closed_ms")?,
        group: row.try_get("grp")?,
        why: row.try_get("why")?,
        deal_size: opt_u64(row, "deal_size")?,
        piece_cid: row.try_get("piece_cid")?,
        order_state: row.try_get("order_state")?,
        order_id: opt_u64(row, "order_id")?,
    })
}

/// A bucket's group as public views show it: `own` (a pin's own bucket), `dedicated` (a
/// requester's), or null (the shared bucket); who it belongs to is not shown.
pub fn group_kind<S: serde::Serializer>(group: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match group.as_deref() {
        None => s.serialize_none(),
        Some(g) if g.starts_with(crate::domain::bucket::OWN_GROUP) => s.serialize_str("own"),
        Some(_) => s.serialize_str("dedicated"),
    }
}

fn open_from_row(r: &AnyRow) -> Result<OpenBucket, StoreError> {
    Ok(OpenBucket {
        id: get_u64(r, "id")?,
        end: get_u64(r, "end_bytes")?,
        pieces: get_u64(r, "pieces")?,
        created_ms: get_u64(r, "created_ms")?,
    })
}

fn piece_from_row(row: &AnyRow) -> Result<BucketPiece, StoreError> {
    Ok(BucketPiece {
        piece_cid: row.try_get("piece_cid")?,
        payload_cid: row.try_get("payload_cid")?,
        padded_size: get_u64(row, "padded_size")?,
        car_size: get_u64(row, "car_size")?,
        offset: get_u64(row, "offset_bytes")?,
    })
}

impl Store {
    /// Up to `limit` pieces of reported pins, at most `largest` padded bytes, in no bucket and
    /// with no order of their own, oldest first.
    ///
    /// Each with the group whose bucket it goes into. Only requesters the operator named
    /// (`dedicated_requesters`) have buckets apart: a pin's own (`pin:<key>`, asked for by the
    /// pin) or else their own (`requester:<who>`). Anyone else's pins, whatever they ask, go
    /// into the shared bucket (none): a bucket of one's own is an order of one's own, which the
    /// operator pays for. A piece several pins share goes where any of them asks.
    pub async fn pieces_to_bucket(
        &self,
        largest: u64,
        limit: u64,
    ) -> Result<Vec<(PieceToOrder, Option<String>)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT j.piece_cid, MIN(j.cid) AS cid, MIN(j.padded_size) AS padded_size,
                    MIN(j.car_size) AS car_size, MIN(j.seq) AS first,
                    MIN(CASE WHEN NOT EXISTS (SELECT 1 FROM dedicated_requesters d
                                              WHERE d.requester = j.requester) THEN NULL
                             WHEN j.bucket_group IS NOT NULL THEN j.bucket_group
                             ELSE 'requester:' || j.requester END) AS grp
             FROM jobs j
             WHERE j.state = '{reported}' AND j.piece_cid IS NOT NULL AND j.cid IS NOT NULL
               AND j.padded_size <= $1
               AND NOT EXISTS (SELECT 1 FROM bucket_pieces p WHERE p.piece_cid = j.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM deal_orders o WHERE o.piece_cid = j.piece_cid)
               AND NOT EXISTS (SELECT 1 FROM dao_requesters d WHERE d.requester = j.requester)
             GROUP BY j.piece_cid ORDER BY first LIMIT $2",
            reported = JobState::Reported.as_str(),
        ))
        .bind(int(largest)?)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((piece_to_order(r)?, r.try_get("grp")?))).collect()
    }

    /// Makes `requesters` (as `jobs.requester` has them) the ones whose pins go into buckets of
    /// their own, and no others.
    pub async fn set_dedicated_requesters(&self, requesters: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM dedicated_requesters").execute(&mut *tx).await?;
        for r in requesters {
            sqlx::query(
                "INSERT INTO dedicated_requesters (requester) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(r)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every open bucket, with its group (none: the shared bucket).
    pub async fn open_buckets(&self) -> Result<Vec<(Option<String>, OpenBucket)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, end_bytes, pieces, created_ms, grp FROM buckets WHERE state = 'open'
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("grp")?, open_from_row(r)?))).collect()
    }

    /// The shared open bucket, if any.
    pub async fn open_bucket(&self) -> Result<Option<OpenBucket>, StoreError> {
        let row = sqlx::query(
            "SELECT id, end_bytes, pieces, created_ms FROM buckets
             WHERE state = 'open' AND grp IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(open_from_row).transpose()
    }

    /// Puts `piece` at `offset` into `open` (a new bucket of `group` when `None`), whose
    /// pieces then end at `end`. Returns the bucket's id, or `None` if another writer changed
    /// the bucket (or placed the piece, or opened the group's bucket) first: nothing is written
    /// then.
    pub async fn add_to_bucket(
        &self,
        open: Option<&OpenBucket>,
        group: Option<&str>,
        piece: &PieceToOrder,
        offset: u64,
        end: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (id, seq) = match open {
            Some(b) => {
                let moved = sqlx::query(
                    "UPDATE buckets SET end_bytes = $1, pieces = pieces + 1
                     WHERE id = $2 AND state = 'open' AND end_bytes = $3 AND pieces = $4",
                )
                .bind(int(end)?)
                .bind(int(b.id)?)
                .bind(int(b.end)?)
                .bind(int(b.pieces)?)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved != 1 {
                    // Rolled back now: a dropped transaction would hold SQLite's lock until
                    // its connection is used again.
                    tx.rollback().await?;
                    return Ok(None);
                }
                (b.id, b.pieces)
            }
            None => {
                let row =
                    sqlx::query("SELECT MAX(id) AS id FROM buckets").fetch_one(&mut *tx).await?;
                let id = opt_u64(&row, "id")?.unwrap_or(0) + 1;
                let made = sqlx::query(
                    "INSERT INTO buckets (id, state, end_bytes, pieces, created_ms, grp)
                     VALUES ($1, 'open', $2, 1, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(int(id)?)
                .bind(int(end)?)
                .bind(int(now_ms)?)
                .bind(group)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if made != 1 {
                    // Rolled back now: a dropped transaction would hold SQLite's lock until
                    // its connection is used again.
                    tx.rollback().await?;
                    return Ok(None);
                }
                (id, 0)
            }
        };
        let added = sqlx::query(
            "INSERT INTO bucket_pieces (piece_cid, bucket_id, seq, payload_cid, padded_size,
                                        car_size, offset_bytes, added_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(piece.piece_cid.as_str())
        .bind(int(id)?)
        .bind(int(seq)?)
        .bind(piece.payload_cid.as_str())
        .bind(int(piece.padded_size)?)
        .bind(int(piece.car_size)?)
        .bind(int(offset)?)
        .bind(int(now_ms)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if added != 1 {
            // Rolled back now: a dropped transaction would hold SQLite's lock until
            // its connection is used again.
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Closes open bucket `bucket` as an aggregate of `deal_size` with piece CID `piece_cid`,
    /// if it still holds what the aggregate was built from (its pieces and end: another writer
    /// may have added one since). Returns whether it was closed.
    pub async fn close_bucket(
        &self,
        bucket: &OpenBucket,
        why: &str,
        deal_size: u64,
        piece_cid: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE buckets SET state = 'closed', why = $1, deal_size = $2, piece_cid = $3,
                                closed_ms = $4
             WHERE id = $5 AND state = 'open' AND pieces = $6 AND end_bytes = $7",
        )
        .bind(why)
        .bind(int(deal_size)?)
        .bind(piece_cid)
        .bind(int(now_ms)?)
        .bind(int(bucket.id)?)
        .bind(int(bucket.pieces)?)
        .bind(int(bucket.end)?)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// The pieces of bucket `id`, in their order in the aggregate.
    pub async fn bucket_pieces(&self, id: u64) -> Result<Vec<BucketPiece>, StoreError> {
        let rows = sqlx::query(
            "SELECT piece_cid, payload_cid, padded_size, car_size, offset_bytes
             FROM bucket_pieces WHERE bucket_id = $1 ORDER BY seq",
        )
        .bind(int(id)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(piece_from_row).collect()
    }

    /// A page of bucket `id`'s pieces, in their order in the aggregate.
    pub async fn bucket_pieces_page(
        &self,
        id: u64,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<BucketPiece>, StoreError> {
        let rows = sqlx::query(
            "SELECT piece_cid, payload_cid, padded_size, car_size, offset_bytes
             FROM bucket_pieces WHERE bucket_id = $1 ORDER BY seq LIMIT $2 OFFSET $3",
        )
        .bind(int(id)?)
        .bind(int(limit)?)
        .bind(int(offset)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(piece_from_row).collect()
    }

    /// The closed bucket whose aggregate is `piece_cid` (v2), with its pieces.
    pub async fn bucket_of_aggregate(
        &self,
        piece_cid: &str,
    ) -> Result<Option<(BucketRecord, Vec<BucketPiece>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets b WHERE b.piece_cid = $1 AND b.state = 'closed'"
        ))
        .bind(piece_cid)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let bucket = bucket_from_row(&row)?;
        let pieces = self.bucket_pieces(bucket.id).await?;
        Ok(Some((bucket, pieces)))
    }

    /// The bucket `piece_cid` (a pin's piece, v2) is in.
    pub async fn bucket_of_piece(
        &self,
        piece_cid: &str,
    ) -> Result<Option<BucketRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets b
             JOIN bucket_pieces p ON p.bucket_id = b.id WHERE p.piece_cid = $1"
        ))
        .bind(piece_cid)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(bucket_from_row).transpose()
    }

    /// The orders that hold pin piece `piece_cid`: its own, and its bucket's aggregate's; with
    /// the bucket it is in, if any (its aggregate's piece CID once closed).
    pub async fn pin_deals(
        &self,
        piece_cid: &str,
    ) -> Result<(Vec<OrderWithReplicas>, Option<BucketRecord>), StoreError> {
        let mut orders = self.deals(Some(piece_cid), 10, 0).await?;
        // A pin split across pieces: its parts' orders (the first 256).
        orders.extend(self.split_deals(piece_cid, 256).await?);
        let bucket = self.bucket_of_piece(piece_cid).await?;
        if let Some(aggregate) = bucket.as_ref().and_then(|b| b.piece_cid.as_deref()) {
            orders.extend(self.deals(Some(aggregate), 10, 0).await?);
        }
        Ok((orders, bucket))
    }

    /// Bucket `id`.
    pub async fn bucket(&self, id: u64) -> Result<Option<BucketRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {BUCKET_COLUMNS} FROM buckets b WHERE b.id = $1"))
            .bind(int(id)?)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(bucket_from_row).transpose()
    }

    /// Buckets, newest first.
    pub async fn buckets(&self, limit: u64, offset: u64) -> Result<Vec<BucketRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets b ORDER BY b.id DESC LIMIT $1 OFFSET $2"
        ))
        .bind(int(limit)?)
        .bind(int(offset)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bucket_from_row).collect()
    }

    /// Closed buckets whose aggregate has no order at `contract` yet, oldest first, as pieces
    /// to order: the aggregate's piece, its deal size, its payload (`deal_size` × 127/128), and
    /// its first pin's root as the deal's label.
    pub async fn buckets_to_order(
        &self,
        contract: &str,
        limit: u64,
    ) -> Result<Vec<PieceToOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT b.piece_cid, b.deal_size,
                    (SELECT p.payload_cid FROM bucket_pieces p
                     WHERE p.bucket_id = b.id AND p.seq = 0) AS cid
             FROM buckets b
             WHERE b.state = 'closed' AND b.piece_cid IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM deal_orders o
                               WHERE o.piece_cid = b.piece_cid
                                 AND (o.contract = $1 OR o.state != 'failed'))
             ORDER BY b.id LIMIT $2",
        )
        .bind(contract)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let deal_size = get_u64(r, "deal_size")?;
                Ok(PieceToOrder {
                    piece_cid: r.try_get("piece_cid")?,
                    payload_cid: r.try_get("cid")?,
                    padded_size: deal_size,
                    car_size: deal_size / 128 * 127,
                })
            })
            .collect()
    }

    /// The pin requests of `source` whose pieces are in bucket `id` and are reported: key,
    /// CID bytes, piece CID (v2), padded size.
    pub async fn bucket_requests(
        &self,
        id: u64,
        source: &JobSource,
    ) -> Result<Vec<BucketRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT j.source, j.job_id, j.cid_bytes, j.piece_cid, j.padded_size
             FROM jobs j JOIN bucket_pieces p ON p.piece_cid = j.piece_cid
             WHERE p.bucket_id = $1 AND j.source = $2 AND j.state = '{reported}'
             ORDER BY j.seq",
            reported = JobState::Reported.as_str(),
        ))
        .bind(int(id)?)
        .bind(source.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BucketRequest {
                    key: key_of(r)?,
                    cid: r.try_get("cid_bytes")?,
                    piece_cid: r.try_get("piece_cid")?,
                    padded_size: get_u64(r, "padded_size")?,
                })
            })
            .collect()
    }

    /// A page of the pieces whose CARs a bucket still needs (its aggregate may still be
    /// downloaded: the bucket is open, or closed with no order, or its order is sending or
    /// open), after `cursor`: (piece CID, root CID) and the next page's cursor.
    pub async fn bucket_roots(
        &self,
        cursor: u64,
        limit: u64,
    ) -> Result<(Vec<(String, String)>, Option<u64>), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT p.piece_cid, p.payload_cid, p.bucket_id * {SEQ_SPAN} + p.seq AS at
             FROM bucket_pieces p JOIN buckets b ON b.id = p.bucket_id
             WHERE p.bucket_id * {SEQ_SPAN} + p.seq > $1
               AND (b.piece_cid IS NULL
                    OR NOT EXISTS (SELECT 1 FROM deal_orders o WHERE o.piece_cid = b.piece_cid)
                    OR EXISTS (SELECT 1 FROM deal_orders o WHERE o.piece_cid = b.piece_cid
                                 AND o.state IN ('{sending}', '{open}')))
             ORDER BY p.bucket_id, p.seq LIMIT $2",
            sending = OrderState::Sending.as_str(),
            open = OrderState::Open.as_str(),
        ))
        .bind(int(cursor)?)
        .bind(int(limit)?)
        .fetch_all(&self.pool)
        .await?;
        let next = if rows.len() as u64 == limit {
            rows.last().map(|r| get_u64(r, "at")).transpose()?
        } else {
            None
        };
        let pieces = rows
            .iter()
            .map(|r| Ok((r.try_get("piece_cid")?, r.try_get("payload_cid")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok((pieces, next))
    }

    /// The deals already reported to `contract`.
    pub async fn reported_deals(&self, contract: &str) -> Result<Vec<u64>, StoreError> {
        let rows = sqlx::query("SELECT deal_id FROM deal_reports WHERE contract = $1")
            .bind(contract)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| get_u64(r, "deal_id")).collect()
    }

    /// Records deal `deal_id` as reported to `contract` with `pins` pins proven.
    pub async fn deal_reported(
        &self,
        contract: &str,
        deal: (u64, u64),
        bucket_id: u64,
        pins: u64,
        tx_hash: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO deal_reports (contract, deal_id, provider, bucket_id, pins, tx_hash,
                                       reported_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(contract)
        .bind(int(deal.0)?)
        .bind(int(deal.1)?)
        .bind(int(bucket_id)?)
        .bind(int(pins)?)
        .bind(tx_hash)
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A pin request in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRequest {
    /// Its job's key (the request id is its id).
    pub key: JobKey,
    /// Its CID, binary.
    pub cid: Vec<u8>,
    /// Its piece (v2).
    pub piece_cid: String,
    /// Its padded size.
    pub padded_size: u64,
}
