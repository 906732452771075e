-- The same as the SQLite migration 0018.
-- Retrieval probes (keeping-it-on-Filecoin issue; deals::probes, domain::probe).
-- One level of each probed piece's tree, made once from the hot copy and checked against its
-- commitment: what a read back from a provider is checked against, also once the copy is gone.
CREATE TABLE piece_levels (
    piece_cid     TEXT    NOT NULL PRIMARY KEY,  -- v2
    level         BIGINT  NOT NULL,              -- a node covers 2^level leaves
    payload_size  BIGINT  NOT NULL,
    padded_size   BIGINT  NOT NULL,
    nodes         BYTEA   NOT NULL               -- 32 bytes a node, left to right (≤ 128 KiB)
);
-- Each probed replica, by its deal: the last probe, failures in a row, totals, lost.
CREATE TABLE replica_probes (
    deal_id            BIGINT  NOT NULL PRIMARY KEY,
    provider           BIGINT  NOT NULL,
    piece_cid          TEXT    NOT NULL,
    last_probe_ms      BIGINT  NOT NULL,
    last_ok            BIGINT  NOT NULL,          -- 0 | 1
    failures_in_a_row  BIGINT  NOT NULL,
    probes_ok          BIGINT  NOT NULL,
    probes_failed      BIGINT  NOT NULL,
    lost_at_ms         BIGINT ,                   -- set once, when found lost
    last_error         TEXT
);
CREATE INDEX replica_probes_provider ON replica_probes (provider);
-- Each replica's last 32 probes (older ones deleted as new ones come): what scores read.
CREATE TABLE probes (
    deal_id       BIGINT  NOT NULL,
    at_ms         BIGINT  NOT NULL,
    provider      BIGINT  NOT NULL,
    block_number  BIGINT  NOT NULL,               -- the head at the probe (scores decay by it)
    ok            BIGINT  NOT NULL,               -- 0 | 1
    latency_ms    BIGINT  NOT NULL,
    bytes         BIGINT  NOT NULL,
    error         TEXT,
    PRIMARY KEY (deal_id, at_ms)
);
CREATE INDEX probes_provider ON probes (provider);
-- Providers the operator suspended (`estuary oracle provider suspend`): never chosen.
CREATE TABLE provider_overrides (
    provider    BIGINT  NOT NULL PRIMARY KEY,
    suspended   BIGINT  NOT NULL,                 -- 0 | 1
    note        TEXT,
    updated_ms  BIGINT  NOT NULL
);
