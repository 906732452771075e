//! The check behind the `piece_cid` fuzz target (`crates/piece/fuzz`), shared with the test that
//! replays its committed corpus on stable Rust.

use crate::PieceCid;

/// Piece CID parsing from bytes and text: never panics; what parses round-trips.
pub fn piece_cid(data: &[u8]) {
    if let Ok(cid) = cid::Cid::try_from(data)
        && let Ok(piece) = PieceCid::from_cid(&cid)
    {
        let again = PieceCid::from_cid(&piece.to_cid()).expect("a formatted piece CID parses");
        assert_eq!(again, piece);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(piece) = text.parse::<PieceCid>()
    {
        assert_eq!(piece.to_string().parse::<PieceCid>(), Ok(piece));
    }
}
