//! Replays the fuzz corpus and every kept crasher (`fuzz/corpus`, `fuzz/regressions`) through the
//! fuzz targets' checks, on stable Rust, in the normal test run.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use estuary_dag::{
    Block, DirectoryBuilder, ImportOptions, Profile, car, file::import_bytes, fuzzing, pb::PbNode,
    unixfs::UnixFsData,
};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 7] = [
    ("bitswap", fuzzing::bitswap),
    ("dag_cbor", fuzzing::dag_cbor),
    ("varint", fuzzing::varint),
    ("cid", fuzzing::cid),
    ("dag_pb", fuzzing::dag_pb),
    ("unixfs", fuzzing::unixfs),
    ("car", fuzzing::car),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn corpus_and_regressions_replay() {
    for (target, check) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "no seed corpus for {target}: run `cargo test -p estuary-dag --test fuzz_corpus -- --ignored`"
        );
        for path in corpus.iter().chain(&files(&fuzz_dir().join("regressions").join(target))) {
            let bytes = std::fs::read(path).unwrap();
            check(&bytes);
        }
    }
}

/// Writes the seed corpus: valid inputs of every kind, and the malformed cases the decoders must
/// refuse (oversized blocks, huge length prefixes, hash mismatches, unknown codecs, truncation).
#[test]
#[ignore = "writes files; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    let seeds = |target: &str, items: Vec<(&str, Vec<u8>)>| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in items {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    };
    let opts = ImportOptions { chunk_size: 64, max_links: 3, ..Profile::UnixfsV0_2015.options() };
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();
    let (root, blocks) = import_bytes(&data, opts).unwrap();
    let mut dir_blocks = Vec::new();
    let mut dir = DirectoryBuilder::new(opts);
    dir.add_file("a/b.txt", root.clone()).unwrap();
    dir.add_dir("empty").unwrap();
    let dir_root = dir.finish(&mut |b| dir_blocks.push(b)).unwrap();

    let mut want = estuary_dag::bitswap::Message::default();
    want.wants.push(estuary_dag::bitswap::WantEntry::block(root.cid));
    want.full = true;
    let mut reply = estuary_dag::bitswap::Message::default();
    reply.push_block(&root.cid, parent_of(&blocks, &root.cid));
    reply.raw_blocks.push(b"v0".to_vec());
    reply.presences.push((dir_root.cid, estuary_dag::bitswap::Presence::DontHave));
    seeds(
        "bitswap",
        vec![
            ("want", want.encode()),
            ("reply", reply.encode()),
            (
                "unknown-fields",
                vec![0x31, 1, 2, 3, 4, 5, 6, 7, 8, 0x3d, 1, 2, 3, 4, 0x28, 0xff, 0x01],
            ),
            ("negative-priority", {
                let mut m = want.clone();
                m.wants[0].priority = -1;
                m.encode()
            }),
            ("bad-prefix", vec![0x1a, 0x06, 0x0a, 0x02, 0x01, 0x55, 0x12, 0x00]),
            ("truncated", want.encode()[..5].to_vec()),
        ],
    );
    seeds(
        "varint",
        vec![
            ("zero", vec![0]),
            ("max", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            ("overflow", vec![0xff; 11]),
            ("truncated", vec![0x80, 0x80]),
        ],
    );
    seeds(
        "cid",
        vec![
            ("v0", root.cid.to_bytes()),
            ("v1-raw", estuary_dag::block::sha256_cid(cid::Version::V1, 0x55, b"x").to_bytes()),
            ("trailing", [root.cid.to_bytes(), vec![0]].concat()),
            (
                "unknown-codec",
                vec![0x01, 0xf0, 0xff, 0x03, 0x12, 0x20].into_iter().chain([7; 32]).collect(),
            ),
            ("huge-digest-length", vec![0x01, 0x55, 0x12, 0xff, 0xff, 0xff, 0x0f]),
        ],
    );
    let parent = blocks.iter().find(|b| b.cid == root.cid).unwrap().data.clone();
    seeds(
        "dag_pb",
        vec![
            ("file-parent", parent.clone()),
            ("directory", dir_blocks.last().unwrap().data.clone()),
            ("empty", vec![]),
            (
                "data-before-links",
                [vec![0x0a, 0x00], parent[..parent.len().min(60)].to_vec()].concat(),
            ),
            ("huge-length", vec![0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        ],
    );
    let meta = PbNode::decode(&parent).unwrap().data.unwrap();
    seeds(
        "unixfs",
        vec![
            ("file-parent", meta),
            ("directory", UnixFsData::new(estuary_dag::unixfs::DataType::Directory).encode()),
            ("hamt-bad-fanout", vec![0x08, 0x05, 0x12, 0x01, 0xff, 0x28, 0x22, 0x30, 0x07]),
            ("unknown-type", vec![0x08, 0x63]),
            ("many-blocksizes", [vec![0x08, 0x02], [0x20, 0x01].repeat(600)].concat()),
        ],
    );
    let archive = |root: cid::Cid, blocks: &[Block]| {
        let mut out = car::header_v1(&[root]);
        let mut w = car::CarWriter::new();
        for b in blocks {
            w.section(b, &mut out);
        }
        out
    };
    let file_car = archive(root.cid, &blocks);
    let mut all = blocks.clone();
    all.extend(dir_blocks);
    let dir_car = archive(dir_root.cid, &all);
    let mut tampered = file_car.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let mut oversized = car::header_v1(&[root.cid]);
    oversized.extend([0x80, 0x80, 0x80, 0x01]); // a 2 MiB section
    let mut v2 = car::V2_PRAGMA.to_vec();
    let mut header = [0u8; 40];
    header[16..24].copy_from_slice(&51u64.to_le_bytes());
    header[24..32].copy_from_slice(&(file_car.len() as u64).to_le_bytes());
    v2.extend(header);
    v2.extend(&file_car);
    seeds(
        "car",
        vec![
            ("file", [vec![7], file_car.clone()].concat()),
            ("directory", [vec![200], dir_car].concat()),
            ("v2", [vec![3], v2].concat()),
            ("tampered", [vec![1], tampered].concat()),
            ("truncated", [vec![9], file_car[..file_car.len() - 10].to_vec()].concat()),
            ("oversized-section", [vec![0], oversized].concat()),
            ("huge-header", vec![0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            ("missing-blocks", [vec![5], archive(root.cid, &blocks[..2])].concat()),
        ],
    );
}

fn parent_of(blocks: &[Block], cid: &cid::Cid) -> Vec<u8> {
    blocks.iter().find(|b| b.cid == *cid).unwrap().data.clone()
}
