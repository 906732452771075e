-- Jobs keyed by their source and id (oracle-architecture issue): a request made on chain is
-- `contract/<chain id>/<address>`, a pin made through the Pinning Service API is
-- `api/<account>`. Replaces pin_requests, whose API pins hid under chain 0 and contract 'api'.
-- The retry backoff gets a column of its own (it used to borrow the lease's).
CREATE TABLE jobs (
    source        TEXT    NOT NULL,      -- contract/<chain>/<0x address> | api/<account>
    job_id        TEXT    NOT NULL,      -- request id in decimal | pin request id (UUID)
    requester     TEXT    NOT NULL,      -- checksummed 0x address | the account
    cid_bytes     BLOB    NOT NULL,
    cid           TEXT,                  -- canonical text; NULL when the bytes are not a CID
    block_number  INTEGER,               -- NULL for pins made through the API
    block_hash    TEXT,
    tx_hash       TEXT,
    log_index     INTEGER,
    state         TEXT    NOT NULL,
    error         TEXT,
    failure       TEXT,                  -- FailureCode name, once failing
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_until   INTEGER NOT NULL DEFAULT 0,   -- unix ms; a worker holds the job until then
    retry_at      INTEGER NOT NULL DEFAULT 0,   -- unix ms; not claimable before
    dag_blocks    INTEGER,
    dag_bytes     INTEGER,
    piece_cid     TEXT,
    padded_size   INTEGER,
    car_size      INTEGER,
    report_tx     TEXT,
    origins       TEXT,                  -- JSON array of multiaddrs
    seq           INTEGER NOT NULL,      -- insertion order, for listing and claiming
    updated_at    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, job_id)
);

INSERT INTO jobs (source, job_id, requester, cid_bytes, cid, block_number, block_hash, tx_hash,
                  log_index, state, error, attempts, lease_until, retry_at, dag_blocks, dag_bytes,
                  piece_cid, padded_size, car_size, report_tx, origins, seq, updated_at)
SELECT CASE WHEN chain_id = 0 AND contract = 'api' THEN 'api/' || requester
            ELSE 'contract/' || chain_id || '/' || contract END,
       request_id, requester, cid_bytes, cid,
       CASE WHEN contract = 'api' THEN NULL ELSE block_number END,
       CASE WHEN contract = 'api' THEN NULL ELSE block_hash END,
       CASE WHEN contract = 'api' THEN NULL ELSE tx_hash END,
       CASE WHEN contract = 'api' THEN NULL ELSE log_index END,
       status, error, attempts, 0, 0, dag_blocks, dag_bytes, piece_cid, padded_size, car_size,
       report_tx, origins, seq, updated_at
FROM pin_requests;

-- The watcher's checkpoints: the cursors it moved to, to find a reorg's common ancestor.
CREATE TABLE checkpoints (
    stream        TEXT    NOT NULL,
    block_number  INTEGER NOT NULL,
    block_hash    TEXT    NOT NULL,
    PRIMARY KEY (stream, block_number)
);
INSERT OR IGNORE INTO checkpoints (stream, block_number, block_hash)
SELECT DISTINCT chain_id || ':' || contract, block_number, block_hash
FROM pin_requests WHERE contract != 'api';
INSERT OR IGNORE INTO checkpoints (stream, block_number, block_hash)
SELECT source, block_number, block_hash FROM cursors;

DROP TABLE pin_requests;

CREATE INDEX jobs_seq ON jobs (seq);
CREATE INDEX jobs_work ON jobs (state, lease_until, retry_at);
CREATE INDEX jobs_piece ON jobs (piece_cid);
CREATE INDEX jobs_blocks ON jobs (source, block_number);
CREATE INDEX jobs_requester ON jobs (requester);
