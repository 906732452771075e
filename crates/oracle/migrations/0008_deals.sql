-- Deals (deal-engine issue; the first backend, PerpetualStorage): one order per piece the oracle
-- packed and reported, and the contract's events about the orders this oracle made. Replica
-- states are folded from the events (domain::deal::fold); the events themselves are kept so that
-- a reorg forgets exactly what it undid, as for requests.
CREATE TABLE deal_orders (
    backend       TEXT    NOT NULL,      -- 'perpetual'
    contract      TEXT    NOT NULL,      -- 0x address, lower case
    piece_cid     TEXT    NOT NULL,      -- v2 text, as jobs.piece_cid
    piece_v1      TEXT    NOT NULL,      -- the v1 CID's bytes in hex, as the contract's events carry it
    payload_cid   TEXT    NOT NULL,      -- the root of the pin it was made for
    padded_size   INTEGER NOT NULL,
    car_size      INTEGER NOT NULL,
    replicas      INTEGER NOT NULL,      -- the target
    state         TEXT    NOT NULL,      -- sending | open | failed
    order_id      INTEGER,               -- the contract's order id, once known
    tx_hash       TEXT,
    error         TEXT,                  -- the last pre-flight refusal or failed send
    sent_block    INTEGER NOT NULL,      -- the chain's head before the first send
    funding       TEXT,                  -- attoFIL sent with the order (decimal), set before it is sent
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    PRIMARY KEY (contract, piece_cid)
);
CREATE INDEX deal_orders_state ON deal_orders (state);
CREATE INDEX deal_orders_id ON deal_orders (contract, order_id);

CREATE TABLE deal_events (
    stream        TEXT    NOT NULL,      -- the watcher's stream (its cursor's key)
    block_number  INTEGER NOT NULL,
    log_index     INTEGER NOT NULL,
    contract      TEXT    NOT NULL,
    order_id      INTEGER NOT NULL,
    kind          TEXT    NOT NULL,      -- created | claimed | published | activated | reopened | cancelled
    provider      INTEGER,               -- miner actor id (slot events)
    deal_id       INTEGER,
    start_epoch   INTEGER,
    end_epoch     INTEGER,
    piece_v1      TEXT,                  -- created: the piece, hex
    PRIMARY KEY (stream, block_number, log_index)
);
CREATE INDEX deal_events_order ON deal_events (contract, order_id);
