-- Retrieval probes, mended (deals::probes, domain::probe).
-- A lost replica is found again only after as many verified probes in a row as it took to
-- lose it.
ALTER TABLE replica_probes ADD COLUMN oks_in_a_row INTEGER NOT NULL DEFAULT 0;
-- Pieces whose levels could not be made (no hot copy, or a copy that is not the piece): when
-- to try again, backing off.
CREATE TABLE piece_level_attempts (
    piece_cid    TEXT    NOT NULL PRIMARY KEY,    -- v2
    attempts     INTEGER NOT NULL,
    next_try_ms  INTEGER NOT NULL,
    error        TEXT    NOT NULL
);
