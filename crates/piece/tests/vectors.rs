//! Published commP vectors (Lotus-generated, from go-fil-commp-hashhash).
#![allow(missing_docs, clippy::unwrap_used)]

use estuary_piece::{CommP, PieceCid};

fn check(file: &str, byte: u8) {
    let text =
        std::fs::read_to_string(format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let mut count = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split(',').collect();
        let (size, padded, cid): (usize, u64, &str) =
            (parts[0].parse().unwrap(), parts[1].parse().unwrap(), parts[2]);
        let mut c = CommP::new();
        c.update(&vec![byte; size]);
        let info = c.finish().unwrap();
        assert_eq!(info.padded_size, padded, "{file}: {size} bytes");
        assert_eq!(PieceCid::v1(&info).to_string(), cid, "{file}: {size} bytes");
        count += 1;
    }
    assert!(count >= 18, "{file}: only {count} vectors");
}

#[test]
fn lotus_zero_vectors() {
    check("zero.csv", 0x00);
}

#[test]
fn lotus_0xcc_vectors() {
    check("0xcc.csv", 0xcc);
}
