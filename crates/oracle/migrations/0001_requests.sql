-- Where each request source has been read up to.
CREATE TABLE cursors (
    source        TEXT    PRIMARY KEY,   -- "<chain id>:<contract address>"
    block_number  INTEGER NOT NULL,      -- last block fully ingested
    block_hash    TEXT    NOT NULL       -- its hash, to notice reorgs
);

-- One row per PinRequested event; the primary key makes a repeated event harmless.
CREATE TABLE pin_requests (
    chain_id      INTEGER NOT NULL,
    contract      TEXT    NOT NULL,      -- lower-case 0x address
    request_id    TEXT    NOT NULL,      -- uint256 in decimal
    requester     TEXT    NOT NULL,      -- checksummed 0x address
    cid_bytes     BLOB    NOT NULL,
    cid           TEXT,                  -- canonical text; NULL when the bytes are not a CID
    block_number  INTEGER NOT NULL,
    block_hash    TEXT    NOT NULL,
    tx_hash       TEXT    NOT NULL,
    log_index     INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    error         TEXT,
    seq           INTEGER NOT NULL,      -- insertion order, for listing
    PRIMARY KEY (chain_id, contract, request_id),
    UNIQUE (chain_id, tx_hash, log_index)
);
CREATE INDEX pin_requests_seq ON pin_requests (seq);
CREATE INDEX pin_requests_requester ON pin_requests (requester);
