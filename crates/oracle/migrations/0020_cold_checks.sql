-- Pieces read back whole from their providers, every span checked (deals::cold::ReadBacks):
-- garbage collection drops a deal's copy here only after a recent one.
CREATE TABLE cold_checks (
    piece_cid   TEXT    NOT NULL PRIMARY KEY,    -- v2
    checked_ms  INTEGER NOT NULL
);
