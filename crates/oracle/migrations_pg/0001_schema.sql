-- The oracle's schema on PostgreSQL: the same tables as the SQLite migrations 0001–0003 end
-- with, in PostgreSQL's types (every integer 64-bit, binary as BYTEA).

CREATE TABLE cursors (
    source        TEXT    PRIMARY KEY,   -- "<chain id>:<contract address>"
    block_number  BIGINT  NOT NULL,
    block_hash    TEXT    NOT NULL
);

CREATE SEQUENCE pin_requests_seq;

CREATE TABLE pin_requests (
    chain_id      BIGINT  NOT NULL,
    contract      TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    requester     TEXT    NOT NULL,
    cid_bytes     BYTEA   NOT NULL,
    cid           TEXT,
    block_number  BIGINT  NOT NULL,
    block_hash    TEXT    NOT NULL,
    tx_hash       TEXT    NOT NULL,
    log_index     BIGINT  NOT NULL,
    status        TEXT    NOT NULL,
    error         TEXT,
    seq           BIGINT  NOT NULL,
    attempts      BIGINT  NOT NULL DEFAULT 0,
    lease_until   BIGINT  NOT NULL DEFAULT 0,
    dag_blocks    BIGINT,
    dag_bytes     BIGINT,
    piece_cid     TEXT,
    padded_size   BIGINT,
    car_size      BIGINT,
    report_tx     TEXT,
    updated_at    BIGINT  NOT NULL DEFAULT 0,
    origins       TEXT,
    PRIMARY KEY (chain_id, contract, request_id),
    UNIQUE (chain_id, tx_hash, log_index)
);
CREATE INDEX pin_requests_seq_idx ON pin_requests (seq);
CREATE INDEX pin_requests_requester ON pin_requests (requester);
CREATE INDEX pin_requests_work ON pin_requests (status, lease_until);
CREATE INDEX pin_requests_piece ON pin_requests (piece_cid);

CREATE TABLE api_tokens (
    name           TEXT    PRIMARY KEY,
    secret_sha256  TEXT    NOT NULL UNIQUE,
    scope          TEXT    NOT NULL,
    created_ms     BIGINT  NOT NULL
);

CREATE TABLE api_pins (
    requestid   TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    cid         TEXT    NOT NULL,
    name        TEXT,
    origins     TEXT    NOT NULL,
    meta        TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL UNIQUE
);
CREATE INDEX api_pins_owner_created ON api_pins (owner, created_ms);
