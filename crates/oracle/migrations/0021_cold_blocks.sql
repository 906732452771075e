-- Where each block of a piece lies in the piece's payload (its CAR), recorded when the piece is
-- read back before its copy goes (deals::cold::ReadBacks), so the gateway and Bitswap can read
-- a block from the piece's providers once the pin's blocks are no longer kept here.
CREATE TABLE piece_blocks (
    cid_bytes  BLOB    NOT NULL,
    piece_cid  TEXT    NOT NULL,                 -- v2
    data_at    INTEGER NOT NULL,                 -- the block's data: its first byte in the payload
    data_len   INTEGER NOT NULL,
    PRIMARY KEY (cid_bytes, piece_cid)
);
CREATE INDEX piece_blocks_by_piece ON piece_blocks (piece_cid);
-- Pieces whose pins' blocks garbage collection no longer keeps (read from the providers): the
-- reconciler leaves their pins alone, and a restore brings the blocks back.
CREATE TABLE cold_blocks (
    piece_cid   TEXT    NOT NULL PRIMARY KEY,    -- v2
    dropped_ms  INTEGER NOT NULL
);
