//! `estuary piece` against @web3-storage/data-segment (tests/interop/piece-reference.mjs):
//! the same piece CID v1, piece CID v2 and padded size, over a corpus of payloads.

use std::{path::PathBuf, process::Command};

use estuary_cli::devnet::repo_root;
use serde_json::Value;

use crate::support::noise;

#[test]
fn piece_matches_data_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = vec![
        0,
        1,
        64,
        65,
        66,
        96,
        126,
        127,
        128,
        129,
        253,
        254,
        255,
        1016,
        1017,
        1 << 20,
        10 << 20,
    ];
    for k in 7..=18 {
        sizes.extend([(1usize << k) - 1, 1 << k, (1 << k) + 1]);
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let path = dir.path().join(format!("noise-{size}"));
        std::fs::write(&path, noise(*size, i as u64 + 1)).unwrap();
        files.push(path);
    }
    for size in [65usize, 127, 1016, 4 << 20] {
        let path = dir.path().join(format!("zeros-{size}"));
        std::fs::write(&path, vec![0u8; size]).unwrap();
        files.push(path);
    }
    // CARs from the DAG engine, v1 and v2.
    let input = dir.path().join("tree");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::write(input.join("a.bin"), noise(3 << 20, 99)).unwrap();
    std::fs::write(input.join("sub/b.txt"), b"hello").unwrap();
    for version in ["1", "2"] {
        let car = dir.path().join(format!("tree-v{version}.car"));
        let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
            .arg("add")
            .arg(&input)
            .args(["--car-version", version, "--car"])
            .arg(&car)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        files.push(car);
    }

    let out = Command::new("node")
        .arg(repo_root().join("tests/interop/piece-reference.mjs"))
        .args(&files)
        .current_dir(repo_root())
        .output()
        .expect("node (run scripts/setup first)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(expected.len(), files.len());

    let mut failures = Vec::new();
    for (file, want) in files.iter().zip(&expected) {
        let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
            .arg("piece")
            .arg(file)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(want["v2"].as_str().unwrap().starts_with("bafkzcib"));
        if got["piece_cid_v1"] != want["v1"]
            || got["piece_cid_v2"] != want["v2"]
            || got["padded_size"] != want["padded"]
        {
            failures
                .push(format!("{}\n  estuary:      {got}\n  data-segment: {want}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn aggregate_matches_data_segment() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, len: usize, seed: u64| {
        let path = dir.path().join(name);
        std::fs::write(&path, noise(len, seed)).unwrap();
        path
    };
    let cases: Vec<(u64, Vec<PathBuf>)> = vec![
        (
            1 << 20,
            vec![file("a", 5000, 1), file("b", 300, 2), file("c", 70_000, 3), file("d", 65, 4)],
        ),
        (16 << 20, vec![file("e", 3 << 20, 5), file("f", 127, 6), file("g", 1 << 20, 7)]),
        (1 << 16, vec![file("h", 1000, 8)]),
    ];
    for (n, (deal_size, files)) in cases.iter().enumerate() {
        let deal = dir.path().join(format!("deal-{n}"));
        let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
            .arg("aggregate")
            .args(files)
            .args(["--deal-size", &deal_size.to_string(), "--json", "--out"])
            .arg(&deal)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ours: Value = serde_json::from_slice(&out.stdout).unwrap();

        let out = Command::new("node")
            .arg(repo_root().join("tests/interop/aggregate-reference.mjs"))
            .arg(deal_size.to_string())
            .args(files)
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let reference: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ours["piece_cid"], reference["piece_cid"], "deal {n}");
        for (o, r) in ours["segments"]
            .as_array()
            .unwrap()
            .iter()
            .zip(reference["segments"].as_array().unwrap())
        {
            assert_eq!(o["piece_cid"], r["piece_cid"]);
            assert_eq!(o["proof"], r["proof"], "deal {n}: proof of {}", o["file"]);
        }

        // The deal bytes written are the aggregate piece.
        let out =
            Command::new(env!("CARGO_BIN_EXE_estuary")).arg("piece").arg(&deal).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            ours["piece_cid"].as_str().unwrap()
        );

        // Every proof verifies; a tampered one does not.
        for (i, seg) in ours["segments"].as_array().unwrap().iter().enumerate() {
            let proof = dir.path().join(format!("proof-{n}-{i}.json"));
            std::fs::write(&proof, seg["proof"].to_string()).unwrap();
            let verify = |proof: &std::path::Path| {
                Command::new(env!("CARGO_BIN_EXE_estuary"))
                    .args([
                        "aggregate",
                        "verify",
                        "--aggregate",
                        ours["piece_cid"].as_str().unwrap(),
                    ])
                    .args(["--piece", seg["piece_cid"].as_str().unwrap(), "--proof"])
                    .arg(proof)
                    .output()
                    .unwrap()
            };
            assert!(verify(&proof).status.success());
            let mut bad = seg["proof"].clone();
            bad["index"]["index"] = Value::from(bad["index"]["index"].as_u64().unwrap() ^ 1);
            std::fs::write(&proof, bad.to_string()).unwrap();
            let out = verify(&proof);
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stderr).contains("inclusion proof is invalid"));
        }
    }
    // Too big for the deal: a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["aggregate", "--deal-size", "64KiB"])
        .arg(file("big", 70_000, 9))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the 65536-byte deal"));
}
