//! Published vectors: Lotus-generated commPs (from go-fil-commp-hashhash) and the test cases
//! of FRC-0069 (Piece Multihash and v2 Piece CID).
#![allow(missing_docs, clippy::unwrap_used)]

use estuary_piece::commp::{commp, zero_roots};
use estuary_piece::{CommP, PieceCid, PieceCidError};

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

/// 127 bytes of 0, 127 of 1, 127 of 2, 127 of 3: the payload of most FRC-0069 cases.
fn blocks() -> Vec<u8> {
    (0..4u8).flat_map(|b| [b; 127]).collect()
}

fn v2_of(data: &[u8]) -> String {
    PieceCid::v2(&commp(data).unwrap()).to_string()
}

fn v1_of(data: &[u8]) -> String {
    PieceCid::v1(&commp(data).unwrap()).to_string()
}

#[test]
fn frc_0069_test_cases() {
    // 127 × {0, 1, 2, 3}: no padding, height 4.
    let data = blocks();
    assert_eq!(v1_of(&data), "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi");
    let v2 = v2_of(&data);
    assert_eq!(v2, "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi");
    let cid: cid::Cid = v2.parse().unwrap();
    let base16 = cid.to_string_of_base(cid::multibase::Base::Base16Lower).unwrap();
    assert_eq!(
        base16,
        "f01559120220004496dae0cc9e265efe5a006e80626a5dc5c409e5d3155c13984caf6c8d5cfd605"
    );

    // No payload: 127 bytes of padding. 127 zero bytes: none, height 2, the same root.
    assert_eq!(v2_of(&[]), "bafkzcibcp4bdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy");
    let p = commp(&[0; 127]).unwrap();
    assert_eq!((p.padding(), p.height()), (0, 2));
    assert_eq!(
        v2_of(&[0; 127]),
        "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"
    );

    // 128 zero bytes: 126 bytes of padding, height 3.
    let p = commp(&[0; 128]).unwrap();
    assert_eq!((p.padding(), p.height()), (126, 3));
    assert_eq!(
        v2_of(&[0; 128]),
        "bafkzcibcpybwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy"
    );

    // 127 × {0, 1, 2, 3} and 127 × 4 zeros: a full tree.
    let mut data = blocks();
    data.resize(127 * 8, 0);
    assert_eq!(v1_of(&data), "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa");
    assert_eq!(v2_of(&data), "bafkzcibcaac542av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa");

    // 127 × {0, 1, 2, 3} and 4 zeros: the same commitment, 504 bytes of padding; one more zero:
    // 503.
    let mut data = blocks();
    data.resize(128 * 4, 0);
    assert_eq!(commp(&data).unwrap().padding(), 504);
    assert_eq!(v1_of(&data), "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa");
    assert_eq!(v2_of(&data), "bafkzcibd7abqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4");
    data.push(0);
    assert_eq!(v1_of(&data), "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa");
    assert_eq!(v2_of(&data), "bafkzcibd64bqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4");
}

/// The empty 32 GiB and 64 GiB pieces: v1 ↔ v2, and the zero-subtree roots they name.
#[test]
fn frc_0069_empty_sector_pieces() {
    let cases = [
        (
            35u32,
            "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
            "bafkzcibcaapao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
        ),
        (
            36,
            "baga6ea4seaqomqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
            "bafkzcibcaap6mqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
        ),
    ];
    for (log2, v1, v2) in cases {
        let padded = 1u64 << log2;
        let parsed: PieceCid = v1.parse().unwrap();
        assert_eq!(*parsed.commp(), zero_roots()[log2 as usize - 5]);
        let converted = PieceCid::from_v1_with_sizes(*parsed.commp(), padded, padded / 128 * 127);
        assert_eq!(converted.unwrap().to_string(), v2);
        let back: PieceCid = v2.parse().unwrap();
        assert_eq!(back.to_v1().to_string(), v1);
        assert_eq!(back.padded_size(), Some(padded));
    }
}

/// FRC-0069: padding must be less than the payload, except in the smallest piece.
#[test]
fn frc_0069_padding_rule() {
    let root = [0u8; 32];
    assert!(PieceCid::from_v1_with_sizes(root, 128, 0).is_ok());
    assert!(PieceCid::from_v1_with_sizes(root, 256, 128).is_ok());
    assert!(matches!(
        PieceCid::from_v1_with_sizes(root, 256, 127),
        Err(PieceCidError::BadPadding { padding: 127, unpadded: 254, height: 3 })
    ));
}
