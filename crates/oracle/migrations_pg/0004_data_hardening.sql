-- See the SQLite migration 0006 for the why.
ALTER TABLE jobs ADD COLUMN size_hint BIGINT;
CREATE INDEX jobs_lease ON jobs (lease_until, requester);

CREATE TABLE gc_state (
    id               BIGINT  PRIMARY KEY CHECK (id = 1),
    running_until    BIGINT  NOT NULL DEFAULT 0,
    holder           TEXT,
    runs             BIGINT  NOT NULL DEFAULT 0,
    freed_blocks     BIGINT  NOT NULL DEFAULT 0,
    freed_bytes      BIGINT  NOT NULL DEFAULT 0,
    freed_cars       BIGINT  NOT NULL DEFAULT 0,
    freed_car_bytes  BIGINT  NOT NULL DEFAULT 0,
    last_started_ms  BIGINT,
    last_finished_ms BIGINT,
    last_error       TEXT
);
INSERT INTO gc_state (id) VALUES (1);

CREATE TABLE gc_holds (
    holder    TEXT    PRIMARY KEY,
    until_ms  BIGINT  NOT NULL
);
