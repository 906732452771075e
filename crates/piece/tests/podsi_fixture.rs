//! FRC-0058 inclusion proofs shared with the contracts: this test builds aggregates with
//! [`estuary_piece::aggregate`], checks them against go-data-segment's published vectors, and
//! writes every proof to `contracts/test/fixtures/podsi.json`, which the Solidity `PoDSI`
//! library's tests verify (`contracts/test/PoDSI.t.sol`). It fails when the committed fixture
//! differs from what it generates; regenerate with
//! `UPDATE_FIXTURES=1 cargo test -p estuary-piece --test podsi_fixture`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use estuary_piece::PieceCid;
use estuary_piece::aggregate::{Aggregate, InclusionProof, verify};
use estuary_piece::commp::{Node, commp};
use serde_json::{Value, json};

const FIXTURE: &str = "../../contracts/test/fixtures/podsi.json";

fn hex32(n: &Node) -> String {
    let mut s = String::from("0x");
    for b in n {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim_start_matches("0x");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn node(s: &str) -> Node {
    unhex(s).try_into().unwrap()
}

/// `commForDeal(x)` of go-data-segment's `inclusion_test.go`: `0d 0e 0a 01 00` and the decimal
/// digits of `x`, one per byte, then zeros.
fn comm_for_deal(x: usize) -> Node {
    let mut n = [0u8; 32];
    n[..4].copy_from_slice(&[0xd, 0xe, 0xa, 0x1]);
    for (i, d) in x.to_string().bytes().enumerate() {
        n[5 + i] = d - b'0';
    }
    n
}

fn height(padded: u64) -> u8 {
    (padded / 32).trailing_zeros() as u8
}

fn commp_of(cid: &str) -> Node {
    *cid.parse::<PieceCid>().unwrap().commp()
}

/// A named aggregate and every proof in it, as the fixture holds them.
fn case(name: &str, source: &str, pieces: &[(Node, u8)], deal_size: u64) -> (Aggregate, Value) {
    let agg = Aggregate::build(pieces, deal_size).unwrap();
    let mut out = Vec::new();
    for (n, (commp, h)) in pieces.iter().enumerate() {
        let proof = agg.proof(n).unwrap();
        let segment = verify(&proof, commp, *h, &agg.root, agg.height).unwrap();
        out.push(json!({
            "commPc": hex32(commp),
            "sizePc": 32u64 << h,
            "offset": segment.offset,
            "subtreeIndex": proof.subtree.index,
            "subtreePath": proof.subtree.path.iter().map(hex32).collect::<Vec<_>>(),
            "indexIndex": proof.index.index,
            "indexPath": proof.index.path.iter().map(hex32).collect::<Vec<_>>(),
        }));
    }
    let value = json!({
        "name": name,
        "source": source,
        "commPa": hex32(&agg.root),
        "sizePa": deal_size,
        "count": out.len(),
        "pieces": out,
    });
    (agg, value)
}

fn payload(seed: u8, len: usize) -> (Node, u8) {
    let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed)).collect();
    let info = commp(&data).unwrap();
    (info.commp, info.height())
}

fn generate() -> String {
    let mut cases = Vec::new();

    // go-data-segment `TestAggregateCreation` / `TestComputeExpectedAuxData1`: ten synthetic
    // commitments of 256 MiB to 1 GiB in a 32 GiB deal; the published root and golden proof.
    let sizes: [u64; 10] = [256, 1024, 512, 512, 1024, 256, 512, 1024, 256, 512];
    let pieces: Vec<(Node, u8)> =
        sizes.iter().enumerate().map(|(i, mib)| (comm_for_deal(i), height(mib << 20))).collect();
    let (agg, value) = case(
        "go-data-segment TestAggregateCreation",
        "filecoin-project/go-data-segment datasegment/creation_test.go, inclusion_test.go (sampleSizes1, commForDeal)",
        &pieces,
        32 << 30,
    );
    // The golden proof is of piece 3, and its expected aggregate piece CID is the one
    // `TestAggregateCreation` publishes for this aggregate.
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/go-data-segment-golden1.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        unhex(golden["commPa"].as_str().unwrap())[7..],
        agg.root,
        "go's aggregate piece CID"
    );
    assert_eq!(golden["sizePa"], 32u64 << 30);
    assert_eq!(unhex(golden["commPc"].as_str().unwrap())[7..], comm_for_deal(3));
    assert_eq!(golden["sizePc"], 512u64 << 20);
    assert_eq!(agg.proof(3).unwrap(), golden_proof(&golden), "go-data-segment's InclusionGolden1");
    cases.push(value);

    // go-data-segment `TestAggregateObjectReader` / `TestAggregateSample`: two CARs in 1 MiB,
    // whose aggregate's commP go-fil-commp-hashhash computed from the bytes.
    let cat = (commp_of("baga6ea4seaqae5ysjdbsr4b5jhotaz5ooh62jrrdbxwygfpkkfjz44kvywycmgy"), 14);
    let vda = (commp_of("baga6ea4seaqnrm2n2g4m23t6rs26obxjw2tjtr7tcho24gepj2naqhevytduyoa"), 13);
    let (agg, value) = case(
        "go-data-segment TestAggregateObjectReader",
        "filecoin-project/go-data-segment datasegment/creation_test.go, testdata/sample_aggregate",
        &[cat, vda],
        1 << 20,
    );
    assert_eq!(
        agg.root,
        commp_of("baga6ea4seaqnqkeoqevjjjfe46wo2lpfclcbmkyms4wkz5srou3vzmr3w3c72bq"),
        "go-data-segment's sample aggregate"
    );
    // testdata/sample_aggregate/index.json: the offsets and sizes of its entries.
    let offsets: Vec<(u64, u64)> = agg.segments.iter().map(|s| (s.offset, s.size)).collect();
    assert_eq!(offsets, [(0, 524_288), (524_288, 262_144)]);
    cases.push(value);

    // go-data-segment `TestProofForPieceInfo`: the same two CARs in 1 GiB.
    cases.push(
        case(
            "go-data-segment TestProofForPieceInfo",
            "filecoin-project/go-data-segment datasegment/creation_test.go",
            &[cat, vda],
            1 << 30,
        )
        .1,
    );

    // go-data-segment `TestAlvin`: five 512 KiB pieces in CeilPow2(5 × 512 KiB) = 4 MiB.
    let alvin: Vec<(Node, u8)> = [
        "baga6ea4seaqhiopmpmv2iztddng5ado4dm4yzzv22yfe6vhr7rtsth6lkwym6ki",
        "baga6ea4seaqnv5iuavkp6dx645qy2h4qiqptnmbshduvdbwlfvj7mk7yz7lr6dy",
        "baga6ea4seaqjikavnkvhiy73eyhhm7nmki2v7iqq3eivxyzfiezspivfydblala",
        "baga6ea4seaqk4ezncvnugzxhuafadt5jep5vn4izylh772jtlopiufymbu4dmlq",
        "baga6ea4seaqfusknxkmyf6ehrz5keq3ij65hmz2i5hyk2cxbmo4s7pujbzrqccq",
    ]
    .iter()
    .map(|c| (commp_of(c), height(524_288)))
    .collect();
    cases.push(
        case(
            "go-data-segment TestAlvin",
            "filecoin-project/go-data-segment datasegment/creation_test.go",
            &alvin,
            4 << 20,
        )
        .1,
    );

    // Estuary: pieces of real payloads (65 B to 300 kB) packed in 8 MiB.
    let real: Vec<(Node, u8)> = [(3, 65), (5, 1000), (7, 5000), (11, 130_048), (13, 300_000)]
        .iter()
        .map(|&(seed, len)| payload(seed, len))
        .collect();
    cases.push(case("estuary payloads", "estuary-piece commp", &real, 8 << 20).1);

    // The deepest proofs the market allows: 128-byte pieces in a 64 GiB deal (29 + 30 nodes),
    // 32 of them (a batch for the contracts' gas measures).
    let deepest: Vec<(Node, u8)> =
        (0..32u8).map(|k| payload(17 + 2 * k, 20 + 3 * usize::from(k))).collect();
    assert!(deepest.iter().all(|(_, h)| *h == 2));
    cases
        .push(case("deepest: 128 B pieces in 64 GiB", "estuary-piece commp", &deepest, 64 << 30).1);

    let doc = json!({
        "generatedBy": "cargo test -p estuary-piece --test podsi_fixture (UPDATE_FIXTURES=1 to rewrite)",
        "count": cases.len(),
        "aggregates": cases,
    });
    serde_json::to_string_pretty(&doc).unwrap() + "\n"
}

fn golden_proof(v: &Value) -> InclusionProof {
    let proof = |p: &Value| estuary_piece::aggregate::MerkleProof {
        index: p["index"].as_u64().unwrap(),
        path: p["path"].as_array().unwrap().iter().map(|n| node(n.as_str().unwrap())).collect(),
    };
    InclusionProof { subtree: proof(&v["subtree"]), index: proof(&v["index"]) }
}

#[test]
fn podsi_fixture_is_up_to_date() {
    let generated = generate();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run UPDATE_FIXTURES=1 cargo test -p estuary-piece --test podsi_fixture",
        path.display()
    );
}
