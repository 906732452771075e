//! The operator's commands (`estuary oracle status | quarantined | requeue | reconcile`) on an
//! oracle's database and data directory, and `estuary oracle run`'s refusal of a wrong chain.
//! Jobs are named by their keys: request 3 of one contract is never request 3 of another.

use std::{path::Path, process::Command};

use alloy::primitives::{Address, B256, Bytes, U256};
use estuary_chain::Cursor;
use estuary_dag::{Profile, file::import_bytes};
use estuary_oracle::{
    blockstore::{Blockstore, FsBlockstore},
    domain::{
        JobKey, JobSource, JobState,
        request::RequestEvent,
        state::{FailureCode, Input, Outcome, Policy, apply},
    },
    store::{DatabaseUrl, Store},
};

use crate::support::{Chain, noise};

fn estuary(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .arg("oracle")
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn event(id: u64, cid: &[u8]) -> RequestEvent {
    RequestEvent {
        request_id: U256::from(id),
        requester: Address::repeat_byte(2),
        cid: Bytes::copy_from_slice(cid),
        block_number: 5,
        block_hash: B256::repeat_byte(5),
        tx_hash: B256::from(U256::from(id)),
        log_index: id,
        origins: Vec::new(),
        size_hint: None,
        refused: None,
        store: None,
    }
}

async fn step(store: &Store, key: &JobKey, input: Input) {
    let status = store.status(key).await.unwrap().unwrap();
    let change =
        apply(&status, &input, 1, &Policy { max_attempts: 1, ..Policy::default() }).unwrap();
    assert!(store.transition(key, &status, &change, 1, 0).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_commands_name_jobs_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("oracle.sqlite");
    let data = dir.path().join("data");
    let store = Store::open(&DatabaseUrl::Sqlite(db.clone())).await.unwrap();
    let opts = estuary_dag::ImportOptions { chunk_size: 1024, ..Profile::KuboCidV1.options() };
    let (file, blocks) = import_bytes(&noise(5000, 1), opts).unwrap();
    let pinning = JobSource::Contract { chain: 31337, address: Address::repeat_byte(0xaa) };
    let oracle = JobSource::Contract { chain: 31337, address: Address::repeat_byte(0xbb) };
    let cursor = Cursor { block_number: 5, block_hash: B256::repeat_byte(5) };
    let missing = estuary_dag::block::sha256_cid(cid::Version::V1, 0x55, b"nowhere").to_bytes();
    store
        .ingest_requests(
            "p",
            &pinning,
            &[event(1, &file.cid.to_bytes()), event(3, &missing)],
            &[],
            cursor,
            1,
        )
        .await
        .unwrap();
    store.ingest_requests("o", &oracle, &[event(3, &missing)], &[], cursor, 1).await.unwrap();
    let key = |source: &JobSource, id: u64| JobKey {
        source: source.clone(),
        id: estuary_oracle::domain::JobId::request(U256::from(id)),
    };
    // Request 1 of EstuaryPinning is pinned (its blocks in the data directory); request 3 of
    // EstuaryPinning is quarantined; request 3 of EstuaryOracle is queued.
    let fs = FsBlockstore::open(&data).unwrap();
    for b in &blocks {
        fs.put(&b.cid, &b.data).unwrap();
    }
    step(&store, &key(&pinning, 1), Input::Start).await;
    step(&store, &key(&pinning, 1), Input::Finished(Outcome::Fetched { blocks: 1, bytes: 1 }))
        .await;
    step(&store, &key(&pinning, 3), Input::Start).await;
    step(
        &store,
        &key(&pinning, 3),
        Input::Finished(Outcome::Failed {
            reason: "gone".into(),
            permanent: false,
            code: FailureCode::NotFound,
        }),
    )
    .await;

    let (ok, listed, _) = estuary(&db, &["quarantined"]);
    assert!(ok);
    let pinning3 = key(&pinning, 3).to_string();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.starts_with(&format!("{pinning3}\tquarantined\t")), "{listed}");
    assert!(listed.trim_end().ends_with("gone"), "{listed}");
    let (ok, status, _) = estuary(&db, &["status"]);
    assert!(ok && status.contains("pinned\t1") && status.contains("queued\t1"), "{status}");

    // A bare id is ambiguous: refused, with the keys it could mean.
    let (ok, _, err) = estuary(&db, &["requeue", "3"]);
    assert!(!ok);
    assert!(err.contains(&pinning3) && err.contains(&key(&oracle, 3).to_string()), "{err}");
    // By key: only that job moves.
    let (ok, out, err) = estuary(&db, &["requeue", &pinning3]);
    assert!(ok, "{err}");
    assert!(out.contains("queued again"), "{out}");
    assert_eq!(store.job(&key(&pinning, 3)).await.unwrap().unwrap().status, JobState::Queued);
    assert_eq!(store.job(&key(&oracle, 3)).await.unwrap().unwrap().status, JobState::Queued);
    let (ok, _, err) = estuary(&db, &["requeue", &key(&pinning, 1).to_string()]);
    assert!(
        !ok && err.contains("not failed or quarantined"),
        "a pinned job is not requeued by hand: {err}"
    );
    let (ok, shown, _) = estuary(&db, &["status", &key(&pinning, 1).to_string()]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "pinned");

    // Damage one block of the pinned DAG: the reconciler finds it and requeues request 1.
    let leaf = blocks[0].cid;
    let path = data
        .join("blocks")
        .join(format!("{:02x}", leaf.hash().digest().last().unwrap()))
        .join(leaf.to_string());
    std::fs::write(&path, b"bit rot").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["oracle", "reconcile", "--db"])
        .arg(&db)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 requeued"), "{text}");
    assert_eq!(store.job(&key(&pinning, 1)).await.unwrap().unwrap().status, JobState::Queued);
    assert_eq!(
        std::fs::read(data.join("quarantine").join(leaf.to_string())).unwrap(),
        b"bit rot",
        "set aside"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oracle_refuses_the_wrong_chain() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["oracle", "run", "--rpc-url", &chain.anvil.endpoint(), "--chain-id", "1"])
        .args(["--pinning-address", &chain.deployment.pinning.to_string()])
        .arg("--db")
        .arg(dir.path().join("db"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("serves chain 31337"), "{stderr}");
}

fn estuary_data(args: &[&str], db: &Path, data: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .arg("oracle")
        .args(args)
        .arg("--db")
        .arg(db)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_collect_garbage_requeue_every_quarantined_job_and_back_up() {
    let dir = tempfile::tempdir().unwrap();
    let (db, data) = (dir.path().join("oracle.sqlite"), dir.path().join("data"));
    let store = Store::open(&DatabaseUrl::Sqlite(db.clone())).await.unwrap();
    let opts = estuary_dag::ImportOptions { chunk_size: 1024, ..Profile::KuboCidV1.options() };
    let (kept, kept_blocks) = import_bytes(&noise(5000, 2), opts).unwrap();
    let (gone, gone_blocks) = import_bytes(&noise(7000, 3), opts).unwrap();
    let fs = FsBlockstore::open(&data).unwrap();
    for b in kept_blocks.iter().chain(&gone_blocks) {
        fs.put(&b.cid, &b.data).unwrap();
    }
    let pinning = JobSource::Contract { chain: 31337, address: Address::repeat_byte(0xaa) };
    let cursor = Cursor { block_number: 5, block_hash: B256::repeat_byte(5) };
    let missing = |n: u8| estuary_dag::block::sha256_cid(cid::Version::V1, 0x55, &[n]).to_bytes();
    let events = [
        event(1, &kept.cid.to_bytes()),
        event(2, &gone.cid.to_bytes()),
        event(3, &missing(1)),
        event(4, &missing(2)),
    ];
    store.ingest_requests("p", &pinning, &events, &[], cursor, 1).await.unwrap();
    let key = |id: u64| JobKey {
        source: pinning.clone(),
        id: estuary_oracle::domain::JobId::request(U256::from(id)),
    };
    for id in [1, 2] {
        step(&store, &key(id), Input::Start).await;
        step(&store, &key(id), Input::Finished(Outcome::Fetched { blocks: 1, bytes: 1 })).await;
    }
    for id in [3, 4] {
        step(&store, &key(id), Input::Start).await;
        let failed = Outcome::Failed {
            reason: "gone".into(),
            permanent: false,
            code: FailureCode::NotFound,
        };
        step(&store, &key(id), Input::Finished(failed)).await;
    }
    // Request 2 is cancelled on chain: unpinned, its blocks are garbage.
    let later = Cursor { block_number: 6, block_hash: B256::repeat_byte(6) };
    store.ingest_requests("p", &pinning, &[], &[U256::from(2)], later, 2).await.unwrap();

    let (ok, out, err) = estuary_data(&["gc", "--grace-secs", "0"], &db, &data);
    assert!(ok, "{err}");
    let unique_gone: u64 = gone_blocks
        .iter()
        .filter(|b| !kept_blocks.iter().any(|k| k.cid == b.cid))
        .map(|b| b.cid)
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    assert!(out.contains(&format!("freed {unique_gone} blocks")), "{out}");
    assert!(fs.has(&kept.cid).unwrap() && !fs.has(&gone.cid).unwrap());
    // The grace period keeps what was written recently, needed or not.
    fs.put(&gone.cid, &gone_blocks.last().unwrap().data).unwrap();
    let (ok, out, _) = estuary_data(&["gc"], &db, &data);
    assert!(ok && out.contains("freed 0 blocks"), "{out}");

    let (ok, out, err) = estuary(&db, &["requeue", "--all-quarantined"]);
    assert!(ok, "{err}");
    assert!(out.contains("2 quarantined jobs queued again"), "{out}");
    assert_eq!(store.job(&key(3)).await.unwrap().unwrap().status, JobState::Queued);
    let (ok, _, err) = estuary(&db, &["requeue"]);
    assert!(!ok && err.contains("required"), "{err}");

    let saved = dir.path().join("backup");
    let (ok, out, err) = estuary_data(&["backup", saved.to_str().unwrap()], &db, &data);
    assert!(ok, "{err}");
    let manifest: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(manifest["summary"]["jobs"], 4);
    let (db2, data2) = (dir.path().join("restored.sqlite"), dir.path().join("restored"));
    let (ok, out, err) = estuary_data(&["restore", saved.to_str().unwrap()], &db2, &data2);
    assert!(ok, "{err}");
    assert!(out.contains("restored 4 jobs"), "{out}");
    let restored = FsBlockstore::open(&data2).unwrap();
    for b in &kept_blocks {
        assert_eq!(restored.get(&b.cid).unwrap().as_deref(), Some(&b.data[..]));
    }
    let (ok, _, err) = estuary_data(&["restore", saved.to_str().unwrap()], &db2, &data2);
    assert!(!ok && err.contains("fresh database"), "{err}");
}

#[test]
fn secrets_are_never_shown_by_help_or_a_bad_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oracle.toml");
    std::fs::write(&config, "operator-key = \"0xHUSHKEY1\"\napi-token = \"HUSHTOKEN2\"\n").unwrap();
    let help = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["oracle", "run", "--config"])
        .arg(&config)
        .arg("--help")
        .env("ESTUARY_API_TOKEN", "HUSHTOKEN3")
        .env("ESTUARY_OPERATOR_KEY", "0xHUSHKEY4")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && text.contains("--operator-key-file"), "{text}");
    assert!(!text.contains("HUSH"), "a secret is shown by --help:\n{text}");
    // A malformed file names the line, not its text.
    std::fs::write(&config, "workers = 2\noperator-key = 0xHUSHKEY5\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_estuary"))
        .args(["oracle", "run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && text.contains("line 2"), "{text}");
    assert!(!text.contains("HUSH"), "a secret is shown by the error:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_are_shown_and_set_per_account() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    Store::open(&DatabaseUrl::Sqlite(db.clone())).await.unwrap();
    let (ok, out, _) = estuary(&db, &["quota", "show", "alice"]);
    assert!(ok);
    assert_eq!(out, "bytes\t0\tdefault\nuploads\t0\tdefault\npins\t0\tdefault\n");
    let (ok, _, err) = estuary(&db, &["quota", "set", "alice", "--bytes", "1000", "--pins", "3"]);
    assert!(ok, "{err}");
    let (_, out, _) = estuary(&db, &["quota", "show", "alice"]);
    assert_eq!(out, "bytes\t0\t1000\nuploads\t0\tdefault\npins\t0\t3\n");
}
