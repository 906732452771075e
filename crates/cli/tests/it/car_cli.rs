//! `estuary add --car`, `car verify`, `car ls` and `cat` on real files, including damaged CARs.

use std::{path::Path, process::Command};

use serde_json::Value;

fn estuary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_estuary")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> Vec<u8> {
    let out = estuary(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn tree(dir: &Path) -> Vec<u8> {
    let big: Vec<u8> =
        (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::create_dir_all(dir.join("docs/empty")).unwrap();
    std::fs::write(dir.join("docs/readme.txt"), b"read me\n").unwrap();
    std::fs::write(dir.join("big.bin"), &big).unwrap();
    big
}

#[test]
fn add_verify_ls_cat_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let big = tree(&input);
    for order in ["produced", "dfs"] {
        let car = tmp.path().join(format!("{order}.car"));
        let car_s = car.to_str().unwrap();
        let add: Value = serde_json::from_slice(&ok(&[
            "add",
            input.to_str().unwrap(),
            "--car",
            car_s,
            "--car-order",
            order,
            "--json",
        ]))
        .unwrap();
        assert_eq!(add["car_bytes"].as_u64().unwrap(), std::fs::metadata(&car).unwrap().len());

        let report: Value = serde_json::from_slice(&ok(&["car", "verify", car_s])).unwrap();
        assert_eq!(report["roots"][0], add["root"]);
        assert_eq!(report["blocks"], add["blocks"]);
        assert_eq!(report["complete"], true);
        assert_eq!(report["duplicates"], 0);

        let ls = String::from_utf8(ok(&["car", "ls", car_s])).unwrap();
        assert_eq!(ls.lines().count() as u64, add["blocks"].as_u64().unwrap());
        let last = ls.lines().last().unwrap();
        let first = ls.lines().next().unwrap();
        let root_line = if order == "dfs" { first } else { last };
        assert!(root_line.starts_with(add["root"].as_str().unwrap()), "{order}: {root_line}");

        // The piece CID reported by `add` (computed while writing) is the CAR file's.
        let piece: Value = serde_json::from_slice(&ok(&["piece", car_s, "--json"])).unwrap();
        assert_eq!(piece["piece_cid_v2"], add["piece_cid"]);
        assert_eq!(piece["padded_size"], add["piece_size"]);
        assert_eq!(piece["payload_size"], add["car_bytes"]);

        assert_eq!(ok(&["cat", car_s, "docs/readme.txt"]), b"read me\n");
        assert_eq!(ok(&["cat", car_s, "big.bin"]), big);
        assert_eq!(
            ok(&["cat", car_s, "big.bin", "--range", "1048570-1048580"]),
            &big[1_048_570..=1_048_580]
        );
        assert_eq!(ok(&["cat", car_s, "big.bin", "--range", "2999990-"]), &big[2_999_990..]);
    }
}

#[test]
fn every_car_form_reports_the_piece_of_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    tree(&input);
    let small = tmp.path().join("small.txt");
    std::fs::write(&small, b"one chunk").unwrap();
    // The last case writes a raw-leaf root under CIDv0: longer than the provisional header.
    let cases: [(&Path, &[&str]); 5] = [
        (&input, &["--car-version", "1"]),
        (&input, &["--car-version", "2"]),
        (&input, &["--car-version", "2", "--car-order", "dfs"]),
        (&input, &["--profile", "unixfs-v0-2015", "--car-order", "dfs"]),
        (&small, &["--profile", "unixfs-v0-2015", "--raw-leaves", "true", "--car-version", "2"]),
    ];
    for (i, (path, extra)) in cases.iter().enumerate() {
        let car = tmp.path().join(format!("{i}.car"));
        let mut args =
            vec!["add", path.to_str().unwrap(), "--json", "--car", car.to_str().unwrap()];
        args.extend_from_slice(extra);
        let add: Value = serde_json::from_slice(&ok(&args)).unwrap();
        let piece: Value =
            serde_json::from_slice(&ok(&["piece", car.to_str().unwrap(), "--json"])).unwrap();
        assert_eq!(piece["piece_cid_v2"], add["piece_cid"], "{extra:?}");
        let verify: Value =
            serde_json::from_slice(&ok(&["car", "verify", car.to_str().unwrap()])).unwrap();
        assert_eq!(verify["roots"][0], add["root"], "{extra:?}");
    }
    // A device as the CAR (the benchmarks write to /dev/null): the same piece, nothing synced.
    if Path::new("/dev/null").exists() {
        let args = ["add", input.to_str().unwrap(), "--json", "--car"];
        let to_null: Value =
            serde_json::from_slice(&ok(&[&args[..], &["/dev/null"]].concat())).unwrap();
        let to_file: Value = serde_json::from_slice(&ok(&[
            &args[..],
            &[tmp.path().join("file.car").to_str().unwrap()],
        ]
        .concat()))
        .unwrap();
        assert_eq!(to_null["piece_cid"], to_file["piece_cid"]);
    }
    // Nine bytes are a piece too: FRC-0069 zero-pads them to 127 (118 bytes of padding).
    let piece: Value =
        serde_json::from_slice(&ok(&["piece", small.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(piece["padded_size"], 128);
    assert_eq!(piece["payload_size"], 9);
}

#[test]
fn damaged_cars_and_bad_requests_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    tree(&input);
    let car = tmp.path().join("a.car");
    ok(&["add", input.to_str().unwrap(), "--car", car.to_str().unwrap()]);
    let bytes = std::fs::read(&car).unwrap();

    let fail = |name: &str, data: &[u8], args: &[&str], expect: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, data).unwrap();
        let mut full = args.to_vec();
        full.insert(full.len().min(2), path.to_str().unwrap());
        let out = estuary(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} should fail");
        assert!(stderr.contains(expect), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    };
    let mut tampered = bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x55;
    fail("tampered.car", &tampered, &["car", "verify"], "does not match its hash");
    fail("truncated.car", &bytes[..bytes.len() - 100], &["car", "verify"], "truncated");
    fail("empty.car", b"", &["car", "verify"], "truncated at byte 0");
    fail("garbage.car", b"\x05hello", &["car", "verify"], "malformed CAR header");
    fail("huge-header.car", &[0xff, 0xff, 0xff, 0xff, 0x0f], &["car", "ls"], "exceeds the limit");

    let car_s = car.to_str().unwrap();
    let out = estuary(&["cat", car_s, "docs/missing.txt"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no entry \"missing.txt\""));
    let out = estuary(&["cat", car_s, "docs"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a file"));
    let out = estuary(&["cat", car_s, "big.bin", "--range", "9-3"]);
    assert!(!out.status.success());
    let out = estuary(&["cat", car_s, "big.bin", "--range", "5000000-"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the end"));
    let out = estuary(&["add", input.to_str().unwrap(), "--chunk-size", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("chunk size 0"));
}
