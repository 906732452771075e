-- The same as the SQLite migration 0009 (deal-engine issue): a claim's deadline, and what the
-- storage market last said of each deal of the oracle's orders.
ALTER TABLE deal_events ADD COLUMN deadline BIGINT;  -- claimed: the last epoch to prove the deal by

CREATE TABLE deal_market (
    deal_id       BIGINT  PRIMARY KEY,
    state         TEXT    NOT NULL,      -- domain::market::MarketState
    epoch         BIGINT  NOT NULL,      -- the epoch the answer holds at
    start_epoch   BIGINT,                -- the deal's term, kept after it is gone
    end_epoch     BIGINT,
    checked_ms    BIGINT  NOT NULL
);
