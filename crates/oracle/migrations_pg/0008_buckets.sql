-- The same as the SQLite migration 0010 (deal-engine issue): packed pins grouped into one FRC-0058 aggregate per deal
-- (domain::bucket). A bucket is open while pieces are placed in it, then closed with the
-- aggregate's piece CID and deal size; its order is then the aggregate's, in deal_orders.
CREATE TABLE buckets (
    id            BIGINT NOT NULL PRIMARY KEY,  -- assigned by the bucketer (max + 1)
    state         TEXT    NOT NULL,      -- open | closed
    end_bytes     BIGINT NOT NULL,      -- where its pieces end, padded bytes
    pieces        BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL,      -- its first piece
    closed_ms     BIGINT,
    why           TEXT,                  -- full | age
    deal_size     BIGINT,               -- the aggregate's padded size, at close
    piece_cid     TEXT                   -- the aggregate's v2 piece CID, at close
);
CREATE INDEX buckets_state ON buckets (state);
-- One open bucket at a time, whatever number of oracle processes share the database.
CREATE UNIQUE INDEX buckets_one_open ON buckets (state) WHERE state = 'open';
-- Orders are looked up by piece alone (a bucket's aggregate, GC's roots).
CREATE INDEX deal_orders_piece ON deal_orders (piece_cid);
CREATE UNIQUE INDEX buckets_piece ON buckets (piece_cid);

CREATE TABLE bucket_pieces (
    piece_cid     TEXT    NOT NULL PRIMARY KEY,  -- v2, as jobs.piece_cid: one bucket per piece
    bucket_id     BIGINT NOT NULL,
    seq           BIGINT NOT NULL,      -- its place in the bucket, from 0
    payload_cid   TEXT    NOT NULL,
    padded_size   BIGINT NOT NULL,
    car_size      BIGINT NOT NULL,
    offset_bytes  BIGINT NOT NULL,      -- its offset in the deal, padded bytes
    added_ms      BIGINT NOT NULL
);
CREATE UNIQUE INDEX bucket_pieces_seq ON bucket_pieces (bucket_id, seq);
