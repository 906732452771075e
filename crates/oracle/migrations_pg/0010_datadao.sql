-- The same as the SQLite migration 0012.
-- DataDAO funding (deal-engine issue): the oracle, as a DataDAO's operator, calls `fundOrder` for
-- each accepted proposal once the proposal's pin is reported. The DAO pays for its own order, so
-- the pins a DAO requests are never bucketed or ordered with the operator's money.
CREATE TABLE dao_requesters (
    requester     TEXT    NOT NULL PRIMARY KEY   -- a DataDAO, checksummed 0x, as jobs.requester
);
CREATE TABLE dao_fundings (
    dao           TEXT    NOT NULL,      -- 0x address, lower case
    proposal_id   BIGINT NOT NULL,
    request_id    TEXT    NOT NULL,      -- its EstuaryPinning request (decimal)
    fund_by       BIGINT NOT NULL,      -- unix seconds: fundOrder's last second
    state         TEXT    NOT NULL,      -- waiting | funded | expired
    piece_cid     TEXT,                  -- the pin's piece (v2), once reported
    order_id      BIGINT,               -- the PerpetualStorage order, once funded
    tx_hash       TEXT,
    error         TEXT,                  -- why it waits (the pin not reported, a refusal)
    updated_ms    BIGINT NOT NULL,
    PRIMARY KEY (dao, proposal_id)
);
