-- Jobs keyed by their source and id (see the SQLite migration 0005 for the why).
CREATE TABLE jobs (
    source        TEXT    NOT NULL,
    job_id        TEXT    NOT NULL,
    requester     TEXT    NOT NULL,
    cid_bytes     BYTEA   NOT NULL,
    cid           TEXT,
    block_number  BIGINT,
    block_hash    TEXT,
    tx_hash       TEXT,
    log_index     BIGINT,
    state         TEXT    NOT NULL,
    error         TEXT,
    failure       TEXT,                  -- FailureCode name, once failing
    attempts      BIGINT  NOT NULL DEFAULT 0,
    lease_until   BIGINT  NOT NULL DEFAULT 0,
    retry_at      BIGINT  NOT NULL DEFAULT 0,
    dag_blocks    BIGINT,
    dag_bytes     BIGINT,
    piece_cid     TEXT,
    padded_size   BIGINT,
    car_size      BIGINT,
    report_tx     TEXT,
    origins       TEXT,
    seq           BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL DEFAULT 0,
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

CREATE TABLE checkpoints (
    stream        TEXT    NOT NULL,
    block_number  BIGINT  NOT NULL,
    block_hash    TEXT    NOT NULL,
    PRIMARY KEY (stream, block_number)
);
INSERT INTO checkpoints (stream, block_number, block_hash)
SELECT DISTINCT chain_id || ':' || contract, block_number, block_hash
FROM pin_requests WHERE contract != 'api'
ON CONFLICT DO NOTHING;
INSERT INTO checkpoints (stream, block_number, block_hash)
SELECT source, block_number, block_hash FROM cursors
ON CONFLICT DO NOTHING;

DROP TABLE pin_requests;
ALTER SEQUENCE pin_requests_seq RENAME TO jobs_seq;

CREATE INDEX jobs_seq_idx ON jobs (seq);
CREATE INDEX jobs_work ON jobs (state, lease_until, retry_at);
CREATE INDEX jobs_piece ON jobs (piece_cid);
CREATE INDEX jobs_blocks ON jobs (source, block_number);
CREATE INDEX jobs_requester ON jobs (requester);
