//! `estuary add` against the npm reference implementation (`ipfs-unixfs-importer` + `@ipld/car`,
//! through `tests/interop/unixfs-reference.mjs`): same root CID, same number of blocks, and a
//! byte-identical CAR in `dfs` order, over a generated corpus.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use estuary_cli::devnet::repo_root;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Test data sized in `u64`, as the sizes here are.
fn noise(len: u64, seed: u64) -> Vec<u8> {
    crate::support::noise(usize::try_from(len).unwrap(), seed)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[derive(Clone)]
struct Case {
    path: PathBuf,
    profile: &'static str,
    extra: Vec<(&'static str, Value)>,
}

impl Case {
    fn new(path: PathBuf, profile: &'static str) -> Self {
        Case { path, profile, extra: Vec::new() }
    }

    fn with(mut self, key: &'static str, value: Value) -> Self {
        self.extra.push((key, value));
        self
    }

    fn reference_input(&self) -> Value {
        let mut v = json!({ "path": self.path, "profile": self.profile });
        for (k, val) in &self.extra {
            v[*k] = val.clone();
        }
        v
    }

    fn estuary_args(&self) -> Vec<String> {
        let mut args = vec!["--profile".to_owned(), self.profile.to_owned()];
        for (k, v) in &self.extra {
            match *k {
                "wrap" => args.push("--wrap".into()),
                "chunkSize" => args.extend(["--chunk-size".into(), v.to_string()]),
                "maxLinks" => args.extend(["--max-links".into(), v.to_string()]),
                "rawLeaves" => args.extend(["--raw-leaves".into(), v.to_string()]),
                "cidVersion" => args.extend(["--cid-version".into(), v.to_string()]),
                other => panic!("unknown option {other}"),
            }
        }
        args
    }

    fn name(&self) -> String {
        format!("{} {} {:?}", self.path.display(), self.profile, self.extra)
    }
}

fn reference(cases: &[Case]) -> Vec<Value> {
    let root = repo_root();
    let input = Value::Array(cases.iter().map(Case::reference_input).collect());
    let mut child = Command::new("node")
        .arg(root.join("tests/interop/unixfs-reference.mjs"))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (run scripts/setup first)");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference importer failed");
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn estuary(case: &Case, car: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .arg("add")
        .arg(&case.path)
        .args(case.estuary_args())
        .args(["--json", "--car-order", "dfs", "--car"])
        .arg(car)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", case.name(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn corpus(dir: &Path) -> Vec<Case> {
    let f = |name: &str| dir.join("files").join(name);
    let mut files = Vec::new();
    for (name, len) in [
        ("empty", 0),
        ("one", 1),
        ("256k-1", 256 * KIB - 1),
        ("256k", 256 * KIB),
        ("256k+1", 256 * KIB + 1),
        ("512k", 512 * KIB),
        ("1m-1", MIB - 1),
        ("1m", MIB),
        ("1m+1", MIB + 1),
        ("3m+7", 3 * MIB + 7),
    ] {
        write(&f(name), &noise(len, len + 1));
        files.push(f(name));
    }
    // Deeper than one level of 174 links of 256 KiB.
    write(&f("over-174"), &noise(174 * 256 * KIB + 1, 7));
    files.push(f("over-174"));
    // All zeros: every leaf the same block.
    write(&f("zeros-5m"), &vec![0u8; (5 * MIB) as usize]);
    files.push(f("zeros-5m"));

    let mut cases = Vec::new();
    for profile in ["unixfs-v0-2015", "kubo-cidv1", "unixfs-v1-2025"] {
        for file in &files {
            cases.push(Case::new(file.clone(), profile));
        }
    }
    // Deeper than one level of 1024 links, with the profile's width and small chunks.
    write(&f("over-1024"), &noise(1025 * KIB + 3, 9));
    cases.push(Case::new(f("over-1024"), "unixfs-v1-2025").with("chunkSize", json!(1024)));
    cases.push(Case::new(f("over-1024"), "kubo-cidv1").with("chunkSize", json!(1024)));
    // Three levels with tiny nodes; dag-pb leaves under CIDv1; raw leaves under CIDv0.
    write(&f("deep"), &noise(100 * KIB + 5, 11));
    cases.push(
        Case::new(f("deep"), "kubo-cidv1")
            .with("chunkSize", json!(1000))
            .with("maxLinks", json!(3)),
    );
    cases.push(
        Case::new(f("deep"), "unixfs-v1-2025")
            .with("chunkSize", json!(4096))
            .with("rawLeaves", json!(false)),
    );
    cases.push(
        Case::new(f("deep"), "unixfs-v0-2015")
            .with("chunkSize", json!(4096))
            .with("rawLeaves", json!(true)),
    );
    cases.push(Case::new(f("one"), "unixfs-v0-2015").with("rawLeaves", json!(true)));
    cases.push(Case::new(f("3m+7"), "kubo-cidv1").with("wrap", json!(true)));

    // A tree: nesting, empty directories, Unicode names, repeated content, symlinks.
    let t = dir.join("tree");
    write(&t.join("a.txt"), b"hello world\n");
    write(&t.join("copy-of-a.txt"), b"hello world\n");
    write(&t.join("nested/deeper/still/a.txt"), b"hello world\n");
    write(&t.join("nested/big.bin"), &noise(2 * MIB + 17, 3));
    write(&t.join("unicode/é"), b"e acute");
    write(&t.join("unicode/e\u{301}"), b"e + combining acute");
    write(&t.join("unicode/日本語.txt"), b"nihongo");
    write(&t.join("unicode/🦀"), b"crab");
    write(&t.join("unicode/Z"), b"upper");
    write(&t.join("unicode/a"), b"lower");
    write(&t.join("zeros"), &vec![0u8; (MIB + 1) as usize]);
    std::fs::create_dir_all(t.join("empty")).unwrap();
    std::fs::create_dir_all(t.join("nested/empty-too")).unwrap();
    std::os::unix::fs::symlink("a.txt", t.join("link-to-a")).unwrap();
    std::os::unix::fs::symlink("../nowhere/🦀", t.join("unicode/dangling")).unwrap();
    for profile in ["unixfs-v0-2015", "kubo-cidv1", "unixfs-v1-2025"] {
        cases.push(Case::new(t.clone(), profile));
        cases.push(Case::new(t.clone(), profile).with("wrap", json!(true)));
    }
    // HAMT sharding: a flat directory of 10,000 entries (with a subdirectory and a symlink in
    // it), and directories exactly at the threshold and one byte over it, for each strategy.
    let wide = dir.join("wide");
    for i in 0..10_000 {
        write(&wide.join(format!("file-{i:05}.txt")), format!("entry {i}\n").as_bytes());
    }
    write(&wide.join("zz-subdir/inner.txt"), b"inside a sharded directory");
    std::os::unix::fs::symlink("file-00001.txt", wide.join("a-link")).unwrap();
    for profile in ["unixfs-v0-2015", "kubo-cidv1", "unixfs-v1-2025"] {
        cases.push(Case::new(wide.clone(), profile));
    }
    // links-bytes (v0): 4096 names of 30 bytes + 34-byte CIDv0s = 262,144 bytes: stays flat.
    let at_links = dir.join("at-threshold-links");
    for i in 0..4096 {
        write(&at_links.join(format!("{i:030}")), b"x");
    }
    let over_links = dir.join("over-threshold-links");
    for i in 0..4096 {
        let name = if i == 0 { format!("{i:031}") } else { format!("{i:030}") };
        write(&over_links.join(name), b"x");
    }
    cases.push(Case::new(at_links, "unixfs-v0-2015"));
    cases.push(Case::new(over_links, "unixfs-v0-2015"));
    // block-bytes (v1-2025): 4 bytes of data + 4369 links of 60 bytes (16-byte names, 1-byte
    // raw files) = 262,144 bytes: stays flat; one 17-byte name tips it over.
    let at_block = dir.join("at-threshold-block");
    for i in 0..4369 {
        write(&at_block.join(format!("{i:016}")), b"y");
    }
    let over_block = dir.join("over-threshold-block");
    for i in 0..4369 {
        let name = if i == 0 { format!("{i:017}") } else { format!("{i:016}") };
        write(&over_block.join(name), b"y");
    }
    cases.push(Case::new(at_block, "unixfs-v1-2025"));
    cases.push(Case::new(over_block, "unixfs-v1-2025"));

    let empty = dir.join("empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    cases.push(Case::new(empty.clone(), "unixfs-v0-2015"));
    cases.push(Case::new(empty, "unixfs-v1-2025"));
    cases
}

#[test]
fn add_matches_ipfs_unixfs_importer_and_ipld_car() {
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus(dir.path());
    let expected = reference(&cases);
    assert_eq!(expected.len(), cases.len());
    let mut failures = Vec::new();
    for (i, (case, want)) in cases.iter().zip(&expected).enumerate() {
        let want_root = want["root"].as_str().expect("reference gave a root");
        assert!(want_root.starts_with("Qm") || want_root.starts_with("baf"), "{want_root}");
        let car = dir.path().join(format!("{i}.car"));
        let got = estuary(case, &car);
        let bytes = std::fs::read(&car).unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        if got["root"] != want["root"]
            || got["blocks"] != want["blocks"]
            || got["car_bytes"] != want["carBytes"]
            || sha != want["carSha256"].as_str().unwrap()
        {
            failures.push(format!(
                "{}\n  estuary:   {got} sha256 {sha}\n  reference: {want}",
                case.name()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
