-- Buckets (deal-engine issue): packed pins grouped into one FRC-0058 aggregate per deal
-- (domain::bucket). A bucket is open while pieces are placed in it, then closed with the
-- aggregate's piece CID and deal size; its order is then the aggregate's, in deal_orders.
CREATE TABLE buckets (
    id            INTEGER NOT NULL PRIMARY KEY,  -- assigned by the bucketer (max + 1)
    state         TEXT    NOT NULL,      -- open | closed
    end_bytes     INTEGER NOT NULL,      -- where its pieces end, padded bytes
    pieces        INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,      -- its first piece
    closed_ms     INTEGER,
    why           TEXT,                  -- full | age
    deal_size     INTEGER,               -- the aggregate's padded size, at close
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
    bucket_id     INTEGER NOT NULL,
    seq           INTEGER NOT NULL,      -- its place in the bucket, from 0
    payload_cid   TEXT    NOT NULL,
    padded_size   INTEGER NOT NULL,
    car_size      INTEGER NOT NULL,
    offset_bytes  INTEGER NOT NULL,      -- its offset in the deal, padded bytes
    added_ms      INTEGER NOT NULL
);
CREATE UNIQUE INDEX bucket_pieces_seq ON bucket_pieces (bucket_id, seq);
