-- The same as the SQLite migration 0017.
-- Pins larger than a deal (deal-engine issue): the pin's CAR split into consecutive byte spans,
-- each a piece of its own within the deal size (domain::bucket::split_spans), ordered like any
-- piece and served at /piece/{part} from the one packed CAR.
CREATE TABLE piece_splits (
    piece_cid     TEXT    NOT NULL,      -- the whole CAR's piece (jobs.piece_cid), v2
    seq           BIGINT  NOT NULL,      -- 0, 1, … in CAR order
    offset_bytes  BIGINT  NOT NULL,      -- where the span starts in the CAR
    length        BIGINT  NOT NULL,      -- its bytes
    part_cid      TEXT    NOT NULL,      -- the span's piece, v2
    padded_size   BIGINT  NOT NULL,
    payload_cid   TEXT    NOT NULL,      -- the pin's root (kept: GC keeps the CAR and its DAG
                                         -- while a part's order lives, pinned or not)
    PRIMARY KEY (piece_cid, seq)
);
CREATE INDEX piece_splits_part ON piece_splits (part_cid);
