-- The SP agent's state. Every step of a piece of work is stored before its effect; see
-- src/store/mod.rs.

-- How far each contract's logs have been read, and the cursors it moved to (reorg checkpoints).
CREATE TABLE cursors (
    stream       TEXT    PRIMARY KEY,
    block_number INTEGER NOT NULL,
    block_hash   TEXT    NOT NULL
);
CREATE TABLE checkpoints (
    stream       TEXT    NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT    NOT NULL,
    PRIMARY KEY (stream, block_number)
);

-- Offers seen on chain (an order, a proposal): what to look at again, and the last decision.
CREATE TABLE leads (
    kind        TEXT    NOT NULL,           -- slot | proposal
    contract    TEXT    NOT NULL,           -- 0x… lower case
    ref         TEXT    NOT NULL,           -- order id (decimal) | proposal id (0x…)
    first_block INTEGER NOT NULL,
    last_block  INTEGER NOT NULL,
    pending     INTEGER NOT NULL,           -- 1: to evaluate
    version     INTEGER NOT NULL DEFAULT 0, -- bumped by every event: a decision on an older one is not final
    decision    TEXT,                       -- taken | skipped
    reason_code TEXT,
    reason      TEXT,
    retry_ms    INTEGER NOT NULL DEFAULT 0, -- look again after this (a busy provider)
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, contract, ref)
);
CREATE INDEX leads_pending ON leads (pending, retry_ms);

-- Work taken: a claimed slot or a proposal, from decision to its end.
CREATE TABLE work (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    contract      TEXT    NOT NULL,
    ref           TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    piece_cid     TEXT    NOT NULL,         -- v1, as the deal names it
    padded_size   INTEGER NOT NULL,
    car_size      INTEGER NOT NULL,
    origins       TEXT    NOT NULL,         -- JSON list of URLs or multiaddrs
    collateral    TEXT,                     -- provider collateral (decimal attoFIL)
    proposal_id   TEXT,                     -- the deal offer (0x…)
    deadline      INTEGER,                  -- slot: last epoch for publish = the deal's start
    start_epoch   INTEGER,
    end_epoch     INTEGER,
    deal_id       INTEGER,
    sector        INTEGER,
    pay_start     INTEGER,                  -- slot: the bounty streams from here
    bytes_fetched INTEGER NOT NULL DEFAULT 0,
    collected     TEXT    NOT NULL DEFAULT '0',
    last_collect  INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_try_ms   INTEGER NOT NULL DEFAULT 0,
    reason        TEXT,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
CREATE UNIQUE INDEX work_live ON work (kind, contract, ref) WHERE state NOT IN ('ended', 'failed');
CREATE INDEX work_state ON work (state);

-- Verified pieces held, and the blocks of their CARs (for the trustless gateway).
CREATE TABLE pieces (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,    -- v2 CID, or <v1>-<padded size> when v2 cannot name it
    piece_v1    TEXT    NOT NULL,
    piece_v2    TEXT,
    car_size    INTEGER NOT NULL,
    padded_size INTEGER NOT NULL,
    path        TEXT    NOT NULL,
    indexed     INTEGER NOT NULL DEFAULT 0, -- 1: blocks listed; 2: not a CAR that can be indexed
    blocks      INTEGER NOT NULL DEFAULT 0,
    roots       TEXT,
    index_error TEXT,
    verified_ms INTEGER NOT NULL
);
CREATE INDEX pieces_v1 ON pieces (piece_v1);
CREATE INDEX pieces_v2 ON pieces (piece_v2);
CREATE TABLE blocks (
    cid      BLOB    PRIMARY KEY,
    piece_id INTEGER NOT NULL REFERENCES pieces (id),
    offset   INTEGER NOT NULL,
    len      INTEGER NOT NULL
);
CREATE INDEX blocks_piece ON blocks (piece_id);

-- The agent's unsettled transactions (estuary_chain::TxLedger).
CREATE TABLE txs (
    tx_key  TEXT    NOT NULL,
    tx_hash TEXT    NOT NULL,
    sender  TEXT    NOT NULL,
    nonce   INTEGER NOT NULL,
    sent_ms INTEGER NOT NULL,
    PRIMARY KEY (tx_key, tx_hash)
);
CREATE INDEX txs_sender ON txs (sender, nonce);
