-- Deal reports (deal-engine issue): each deal holding a bucket's aggregate, reported to
-- EstuaryPinning (`reportDeal`) with an FRC-0058 inclusion proof for each pin request in it.
-- Kept so that a deal is reported once, whatever restarts.
CREATE TABLE deal_reports (
    contract      TEXT    NOT NULL,      -- EstuaryPinning, 0x lower case
    deal_id       INTEGER NOT NULL,
    provider      INTEGER NOT NULL,
    bucket_id     INTEGER NOT NULL,
    pins          INTEGER NOT NULL,      -- pins proven in the report's transactions
    tx_hash       TEXT,                  -- the last of them
    reported_ms   INTEGER NOT NULL,
    PRIMARY KEY (contract, deal_id)
);
