-- The same as the SQLite migration 0013.
-- EstuaryOracle store jobs (deal-engine issue): a store job is pinned and packed like a pin job,
-- then its piece goes into a bucket like any pin's, and the job is fulfilled with the deals
-- holding the bucket's aggregate (each with its FRC-0058 inclusion proof) once enough are active.
ALTER TABLE jobs ADD COLUMN store_replicas BIGINT;   -- a store job's replicas (1-10); NULL: a pin
ALTER TABLE jobs ADD COLUMN store_verified BIGINT;   -- 1: it asked for verified deals
CREATE TABLE store_results (
    source        TEXT    NOT NULL,      -- the job's key, as jobs
    job_id        TEXT    NOT NULL,
    ok            BIGINT NOT NULL,      -- 1: fulfilled with deals; 0: with a failure
    deals         TEXT    NOT NULL,      -- "f01000#12, …" (or the failure's reason)
    tx_hash       TEXT,
    sent_ms       BIGINT NOT NULL,
    PRIMARY KEY (source, job_id)
);
