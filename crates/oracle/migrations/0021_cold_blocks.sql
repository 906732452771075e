-- Pieces whose blocks' places are recorded (deals::cold::ReadBacks, when a piece is read back
-- before its copy goes): `blocks` once all are (0 while they are written), and `cold_ms` once
-- garbage collection let the pieces' pins' blocks go (read from the providers since).
CREATE TABLE block_pieces (
    id         INTEGER PRIMARY KEY,
    piece_cid  TEXT    NOT NULL UNIQUE,          -- v2
    blocks     INTEGER NOT NULL,
    cold_ms    INTEGER
);
-- Where each block lies in its piece's payload (its CAR): the gateway and Bitswap read a block
-- not kept here from the piece's providers by it.
CREATE TABLE piece_blocks (
    cid_bytes  BLOB    NOT NULL,
    piece_id   INTEGER NOT NULL,                 -- block_pieces.id
    data_at    INTEGER NOT NULL,                 -- the block's data: its first byte in the payload
    data_len   INTEGER NOT NULL,
    PRIMARY KEY (cid_bytes, piece_id)
) WITHOUT ROWID;
CREATE INDEX piece_blocks_by_piece ON piece_blocks (piece_id);
