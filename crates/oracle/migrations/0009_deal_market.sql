-- The keeper and the market tracker (deal-engine issue): a claim's deadline, kept with its
-- event (the keeper reopens lapsed claims), BountyPaid events kept as kind 'paid' (end_epoch is
-- the epoch paid until; the keeper collects from there), and what the storage market last said of each deal
-- of the oracle's orders (read in batches through DealStateView).
ALTER TABLE deal_events ADD COLUMN deadline INTEGER;  -- claimed: the last epoch to prove the deal by

CREATE TABLE deal_market (
    deal_id       INTEGER PRIMARY KEY,
    state         TEXT    NOT NULL,      -- domain::market::MarketState
    epoch         INTEGER NOT NULL,      -- the epoch the answer holds at
    start_epoch   INTEGER,               -- the deal's term, kept after it is gone
    end_epoch     INTEGER,
    checked_ms    INTEGER NOT NULL
);
