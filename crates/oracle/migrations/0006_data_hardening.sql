-- What the requester said the DAG weighs (bytes; NULL when it said nothing): the fetch's time
-- budget scales with it.
ALTER TABLE jobs ADD COLUMN size_hint INTEGER;
-- Claims count the jobs each requester holds (fair scheduling).
CREATE INDEX jobs_lease ON jobs (lease_until, requester);

-- Garbage collection. One row: a collection holds `running_until` (a lease it renews) while it
-- marks and sweeps; the totals of every run are kept for the metrics.
CREATE TABLE gc_state (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    running_until    INTEGER NOT NULL DEFAULT 0,   -- unix ms
    holder           TEXT,
    runs             INTEGER NOT NULL DEFAULT 0,
    freed_blocks     INTEGER NOT NULL DEFAULT 0,
    freed_bytes      INTEGER NOT NULL DEFAULT 0,
    freed_cars       INTEGER NOT NULL DEFAULT 0,
    freed_car_bytes  INTEGER NOT NULL DEFAULT 0,
    last_started_ms  INTEGER,
    last_finished_ms INTEGER,
    last_error       TEXT
);
INSERT INTO gc_state (id) VALUES (1);

-- Writers a collection must not overlap (a fetch moving its staged blocks into the store, a
-- backup copying them): each holds a row, a lease, while it works. A collection starts only
-- when none is held, and none is granted while a collection runs.
CREATE TABLE gc_holds (
    holder    TEXT    PRIMARY KEY,
    until_ms  INTEGER NOT NULL
);
