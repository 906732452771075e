-- Retrieval probes (keeping-it-on-Filecoin issue; deals::probes, domain::probe).
-- One level of each probed piece's tree, made once from the hot copy and checked against its
-- commitment: what a read back from a provider is checked against, also once the copy is gone.
CREATE TABLE piece_levels (
    piece_cid     TEXT    NOT NULL PRIMARY KEY,  -- v2
    level         INTEGER NOT NULL,              -- a node covers 2^level leaves
    payload_size  INTEGER NOT NULL,
    padded_size   INTEGER NOT NULL,
    nodes         BLOB    NOT NULL               -- 32 bytes a node, left to right (≤ 128 KiB)
);
-- Each probed replica, by its deal: the last probe, failures in a row, totals, lost.
CREATE TABLE replica_probes (
    deal_id            INTEGER NOT NULL PRIMARY KEY,
    provider           INTEGER NOT NULL,
    piece_cid          TEXT    NOT NULL,
    last_probe_ms      INTEGER NOT NULL,
    last_ok            INTEGER NOT NULL,          -- 0 | 1
    failures_in_a_row  INTEGER NOT NULL,
    probes_ok          INTEGER NOT NULL,
    probes_failed      INTEGER NOT NULL,
    lost_at_ms         INTEGER,                   -- set once, when found lost
    last_error         TEXT
);
CREATE INDEX replica_probes_provider ON replica_probes (provider);
-- Each replica's last 32 probes (older ones deleted as new ones come): what scores read.
CREATE TABLE probes (
    deal_id       INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    provider      INTEGER NOT NULL,
    block_number  INTEGER NOT NULL,               -- the head at the probe (scores decay by it)
    ok            INTEGER NOT NULL,               -- 0 | 1
    latency_ms    INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    error         TEXT,
    PRIMARY KEY (deal_id, at_ms)
);
CREATE INDEX probes_provider ON probes (provider);
-- Providers the operator suspended (`estuary oracle provider suspend`): never chosen.
CREATE TABLE provider_overrides (
    provider    INTEGER NOT NULL PRIMARY KEY,
    suspended   INTEGER NOT NULL,                 -- 0 | 1
    note        TEXT,
    updated_ms  INTEGER NOT NULL
);
