//! Replays the committed `piece_cid` fuzz corpus (and kept crashers) on stable Rust.
#![allow(missing_docs, clippy::unwrap_used)]

#[test]
fn piece_cid_corpus_replays() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus/piece_cid", "regressions/piece_cid"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries {
            estuary_piece::fuzzing::piece_cid(&std::fs::read(entry.unwrap().path()).unwrap());
            count += 1;
        }
    }
    assert!(count >= 5, "the seed corpus is missing");
}
