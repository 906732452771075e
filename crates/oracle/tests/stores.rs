//! One suite for both job stores: SQLite (embedded) and PostgreSQL (started by the test, from
//! the machine's PostgreSQL server binaries), and what only a shared store must do — several
//! processes claiming from one queue, each job once, and rescuing the jobs of a dead worker.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::postgres::Postgres;

use std::{collections::BTreeMap, sync::Arc};

use alloy::primitives::{Address, B256, Bytes, U256, bytes};
use estuary_oracle::{
    job::{Outcome, Transition},
    model::{Cursor, PinRequest, PinRequestEvent, RequestStatus, Source},
    pinning::{Caller, CheckedPin, Pin, PinQuery, PinState, RawPinQuery, Scope},
    store::{JobStore, PgStore, PinStore, RequestStore, SqliteStore, TxLedger},
};

fn source() -> Source {
    Source { chain_id: 31337, contract: Address::repeat_byte(0x11) }
}

fn event(id: u64, block: u64, log_index: u64) -> PinRequestEvent {
    PinRequestEvent {
        request_id: U256::from(id),
        requester: Address::repeat_byte(0x22),
        cid: Bytes::from(
            bytes!("01551220c7d01489080858c500065836c658f847a6ca67c4864619212be4f8200e4bbace")
                .to_vec(),
        ),
        block_number: block,
        block_hash: B256::repeat_byte(block as u8),
        tx_hash: B256::from(U256::from(id)),
        log_index,
        origins: Vec::new(),
        refused: None,
    }
}

fn cursor(n: u64) -> Cursor {
    Cursor { block_number: n, block_hash: B256::repeat_byte(n as u8) }
}

const A: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
const B: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

fn checked(cid: &str, name: Option<&str>, meta: &[(&str, &str)]) -> CheckedPin {
    Pin {
        cid: cid.into(),
        name: name.map(Into::into),
        origins: vec!["/ip4/127.0.0.1/tcp/8080/http".into()],
        meta: meta.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
    }
    .check()
    .unwrap()
}

fn query(q: RawPinQuery) -> PinQuery {
    q.check().unwrap()
}

async fn requests_and_cursors<S: RequestStore>(store: &S) {
    assert_eq!(store.cursor(source()).await.unwrap(), None);
    let events = vec![event(1, 5, 0), event(2, 5, 1)];
    let reqs: Vec<_> = events.iter().map(|e| PinRequest::from_event(source(), e)).collect();
    assert_eq!(store.ingest(source(), &events, cursor(5)).await.unwrap(), 2);
    // The same range again, and then a later one that repeats a request.
    assert_eq!(store.ingest(source(), &events, cursor(5)).await.unwrap(), 0);
    let more = vec![event(2, 5, 1), event(3, 7, 0), event(4, 9, 0)];
    assert_eq!(store.ingest(source(), &more, cursor(9)).await.unwrap(), 2);
    assert_eq!(store.count(source()).await.unwrap(), 4);
    assert_eq!(store.cursor(source()).await.unwrap(), Some(cursor(9)));
    let listed = store.list(source(), 0, 10).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    assert_eq!(store.list(source(), listed[1].0, 10).await.unwrap().len(), 2);
    assert_eq!(store.request(source(), U256::from(2)).await.unwrap().unwrap(), reqs[1]);
    assert_eq!(store.request(source(), U256::from(99)).await.unwrap(), None);
    // A reorg: blocks above 5 are orphaned.
    let blocks: Vec<u64> =
        store.request_blocks(source(), 0).await.unwrap().iter().map(|b| b.0).collect();
    assert_eq!(blocks, [9, 7, 5]);
    assert_eq!(store.rewind(source(), 5, Some(cursor(5))).await.unwrap(), 2);
    assert_eq!(store.count(source()).await.unwrap(), 2);
    assert_eq!(store.cursor(source()).await.unwrap(), Some(cursor(5)));
    assert_eq!(store.rewind(source(), 0, None).await.unwrap(), 2);
    assert_eq!(store.cursor(source()).await.unwrap(), None);
}

async fn job_lifecycle<S: RequestStore + JobStore>(store: &S) {
    store.ingest(source(), &[event(1, 5, 0), event(2, 5, 1)], cursor(5)).await.unwrap();
    let job = store.claim(1_000, 500).await.unwrap().unwrap();
    assert_eq!(job.request_id, "1");
    // Leased: the next claim takes the other job, then nothing until a lease ends.
    assert_eq!(store.claim(1_000, 500).await.unwrap().unwrap().request_id, "2");
    assert!(store.claim(1_100, 500).await.unwrap().is_none());
    assert!(store.begin(&job, RequestStatus::Fetching, 1_100, 500).await.unwrap());
    let mut held = job.clone();
    held.status = RequestStatus::Fetching;
    // A heartbeat keeps it past the first lease; the other job's lease ends and it is rescued.
    assert!(store.heartbeat(&held, RequestStatus::Fetching, 1_400, 500).await.unwrap());
    let rescued = store.claim(1_600, 500).await.unwrap().unwrap();
    assert_eq!(rescued.request_id, "2");
    assert!(store.claim(1_600, 500).await.unwrap().is_none());
    let t = Transition { status: RequestStatus::Pinned, attempts: 0, error: None };
    let fetched = Outcome::Fetched { blocks: 3, bytes: 30 };
    assert!(store.finish(&held, RequestStatus::Fetching, &t, &fetched, 1_700).await.unwrap());
    // A stale finish (the job moved on) changes nothing.
    assert!(!store.finish(&held, RequestStatus::Fetching, &t, &fetched, 1_700).await.unwrap());
    let r = store.request(source(), U256::from(1)).await.unwrap().unwrap();
    assert_eq!((r.status, r.dag_blocks, r.dag_bytes), (RequestStatus::Pinned, Some(3), Some(30)));
    // A permanent failure, quarantine and requeue.
    let failed =
        Transition { status: RequestStatus::Quarantined, attempts: 5, error: Some("gone".into()) };
    assert!(
        store
            .finish(
                &rescued,
                RequestStatus::Queued,
                &failed,
                &Outcome::Failed { reason: "gone".into(), permanent: false },
                1_800
            )
            .await
            .unwrap()
    );
    let bad = store.in_status(&[RequestStatus::Quarantined], 10).await.unwrap();
    assert_eq!((bad.len(), bad[0].error.as_deref()), (1, Some("gone")));
    assert_eq!(store.requeue_id("2", &[RequestStatus::Quarantined]).await.unwrap(), 1);
    let counts: BTreeMap<String, u64> = store.status_counts().await.unwrap().into_iter().collect();
    assert_eq!(counts.get("queued"), Some(&1));
    assert_eq!(counts.get("pinned"), Some(&1));
    assert!(store.by_piece("bafkzcibnothing").await.unwrap().is_none());
}

async fn pins_listed_filtered_paged<S: JobStore + PinStore>(s: &S) {
    // Same millisecond for all: the store makes created times unique.
    for i in 0..15 {
        let cid = if i % 2 == 0 { A } else { B };
        let name = format!("File-{i}");
        let meta = [("app", if i < 5 { "one" } else { "two" })];
        s.create_pin("alice", &format!("r{i}"), &checked(cid, Some(&name), &meta), 1_000)
            .await
            .unwrap();
    }
    s.create_pin("bob", "b0", &checked(A, Some("File-1"), &[]), 1_000).await.unwrap();

    let (n, page) = s.pins("alice", &PinQuery::default()).await.unwrap();
    assert_eq!((n, page.len()), (15, 10));
    assert_eq!(page[0].requestid, "r14", "newest first");
    let created: Vec<u64> = page.iter().map(|p| p.created_ms).collect();
    assert!(created.windows(2).all(|w| w[0] > w[1]), "unique and descending");
    let before = Some(page.last().unwrap().created_ms);
    let (_, next) =
        s.pins("alice", &PinQuery { before_ms: before, ..Default::default() }).await.unwrap();
    assert_eq!(next.len(), 5);
    assert_eq!(next[4].requestid, "r0");

    let by = async |raw: RawPinQuery| s.pins("alice", &query(raw)).await.unwrap().0;
    assert_eq!(by(RawPinQuery { name: Some("File-1".into()), ..Default::default() }).await, 1);
    assert_eq!(by(RawPinQuery { name: Some("file-1".into()), ..Default::default() }).await, 0);
    let iexact = RawPinQuery {
        name: Some("file-1".into()),
        text_match: Some("iexact".into()),
        ..Default::default()
    };
    assert_eq!(by(iexact).await, 1);
    let partial = RawPinQuery {
        name: Some("le-1".into()),
        text_match: Some("partial".into()),
        ..Default::default()
    };
    assert_eq!(by(partial).await, 6, "File-1 and File-10..14");
    let ipartial = RawPinQuery {
        name: Some("LE-1".into()),
        text_match: Some("ipartial".into()),
        ..Default::default()
    };
    assert_eq!(by(ipartial).await, 6);
    assert_eq!(by(RawPinQuery { cid: Some(A.into()), ..Default::default() }).await, 8);
    let both = RawPinQuery { cid: Some(format!("{A},{B}")), ..Default::default() };
    assert_eq!(by(both).await, 15);
    let meta = RawPinQuery { meta: Some(r#"{"app":"one"}"#.into()), ..Default::default() };
    assert_eq!(by(meta).await, 5);
    let queued = RawPinQuery { status: Some("queued".into()), ..Default::default() };
    assert_eq!(by(queued).await, 15);
    let pinned = RawPinQuery { status: Some("pinned,failed".into()), ..Default::default() };
    assert_eq!(by(pinned).await, 0);
    assert_eq!(
        s.pins("alice", &PinQuery { after_ms: Some(1_013), ..Default::default() }).await.unwrap().0,
        1
    );
}

async fn pins_deleted_and_replaced<S: JobStore + PinStore>(s: &S) {
    let pin = s.create_pin("alice", "r1", &checked(A, None, &[]), 5).await.unwrap();
    assert_eq!(PinState::of(pin.status), PinState::Queued);
    assert!(!s.delete_pin("bob", "r1").await.unwrap());
    assert!(s.replace_pin("bob", "r1", "r2", &checked(B, None, &[]), 6).await.unwrap().is_none());
    let new = s.replace_pin("alice", "r1", "r2", &checked(B, None, &[]), 6).await.unwrap().unwrap();
    assert_eq!(new.pin.cid, B);
    assert!(s.pin("alice", "r1").await.unwrap().is_none());
    // The old job is cancelled, so no worker takes it.
    let job = s.claim(10, 1_000).await.unwrap().unwrap();
    assert_eq!(job.request_id, "r2");
    assert_eq!(job.origins, vec!["/ip4/127.0.0.1/tcp/8080/http".to_owned()]);
    assert!(s.claim(10, 1_000).await.unwrap().is_none());
    assert!(s.delete_pin("alice", "r2").await.unwrap());
    assert!(!s.delete_pin("alice", "r2").await.unwrap());
    assert_eq!(s.pins("alice", &PinQuery::default()).await.unwrap().0, 0);
    assert!(
        s.pins("alice", &PinQuery { meta: BTreeMap::new(), ..Default::default() })
            .await
            .unwrap()
            .1
            .is_empty()
    );
}

async fn tokens_kept_as_digests<S: PinStore>(s: &S) {
    assert!(s.add_token("alice", "d1", Scope::Write, 1).await.unwrap());
    assert!(!s.add_token("alice", "d2", Scope::Read, 2).await.unwrap());
    assert!(s.add_token("reader", "d3", Scope::Read, 3).await.unwrap());
    assert_eq!(
        s.caller("d1").await.unwrap(),
        Some(Caller { account: "alice".into(), scope: Scope::Write })
    );
    assert_eq!(s.caller("d2").await.unwrap(), None);
    assert_eq!(s.tokens().await.unwrap().len(), 2);
    assert!(s.revoke_token("alice").await.unwrap());
    assert_eq!(s.caller("d1").await.unwrap(), None);
}

async fn report_transactions_kept_until_settled<S: TxLedger>(s: &S) {
    let op = "0x00000000000000000000000000000000000000aa";
    let (a, b) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb));
    assert_eq!(s.last_unsettled(op).await.unwrap(), None);
    let keys = ["pinned/0x01/1".to_owned(), "pinned/0x01/2".to_owned()];
    s.record_sent(op, 7, a, &keys, 1_000).await.unwrap();
    // A replacement: same nonce, another hash, one request.
    s.record_sent(op, 7, b, &keys[..1], 2_000).await.unwrap();
    s.record_sent(op, 7, b, &keys[..1], 2_000).await.unwrap();
    assert_eq!(s.sent_for(&keys[0]).await.unwrap(), vec![(7, a), (7, b)]);
    assert_eq!(s.sent_for(&keys[1]).await.unwrap(), vec![(7, a)]);
    assert_eq!(s.last_unsettled(op).await.unwrap(), Some((7, b)));
    assert_eq!(s.last_unsettled("0x00000000000000000000000000000000000000bb").await.unwrap(), None);
    s.settle(&keys[..1]).await.unwrap();
    assert!(s.sent_for(&keys[0]).await.unwrap().is_empty());
    assert_eq!(s.last_unsettled(op).await.unwrap(), Some((7, a)));
    s.settle(&keys).await.unwrap();
    assert_eq!(s.last_unsettled(op).await.unwrap(), None);
}

async fn whole_suite<S: RequestStore + JobStore + PinStore + TxLedger>(fresh: impl AsyncFn() -> S) {
    requests_and_cursors(&fresh().await).await;
    job_lifecycle(&fresh().await).await;
    pins_listed_filtered_paged(&fresh().await).await;
    pins_deleted_and_replaced(&fresh().await).await;
    tokens_kept_as_digests(&fresh().await).await;
    report_transactions_kept_until_settled(&fresh().await).await;
}

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    whole_suite(async || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SqliteStore::open(&dir.path().join(format!("{i}.sqlite"))).await.unwrap()
    })
    .await;
}

#[tokio::test]
async fn postgres_passes_the_suite() {
    let pg = Postgres::start();
    let n = std::sync::atomic::AtomicU32::new(0);
    whole_suite(async || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let db = format!("suite{i}");
        let conn = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&pg.url())
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&conn).await.unwrap();
        conn.close().await;
        PgStore::connect(&pg.url().replace("/postgres", &format!("/{db}"))).await.unwrap()
    })
    .await;
}

/// Several oracle processes (separate pools) claiming from one queue: every job is claimed
/// exactly once, however they race; a worker that dies holding a job (its lease runs out) loses
/// it to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_shares_one_queue_between_processes() {
    const JOBS: u64 = 300;
    let pg = Postgres::start();
    let first = PgStore::connect(&pg.url()).await.unwrap();
    let events: Vec<_> = (1..=JOBS).map(|i| event(i, 5, i)).collect();
    first.ingest(source(), &events, cursor(5)).await.unwrap();
    let mut processes = vec![Arc::new(first)];
    for _ in 0..3 {
        processes.push(Arc::new(PgStore::connect(&pg.url()).await.unwrap()));
    }
    let mut tasks = Vec::new();
    for (p, store) in processes.iter().enumerate() {
        for _ in 0..4 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(job) = store.claim(10_000, 1_000_000).await.unwrap() {
                    got.push((p, job.request_id));
                }
                got
            }));
        }
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    let mut ids: Vec<u64> = claimed.iter().map(|(_, id)| id.parse().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=JOBS).collect::<Vec<_>>(), "each job claimed once");
    let per_process: Vec<usize> =
        (0..processes.len()).map(|p| claimed.iter().filter(|(q, _)| *q == p).count()).collect();
    assert!(per_process.iter().filter(|n| **n > 0).count() > 1, "work was shared: {per_process:?}");
    // All leased until 1_010_000: none is free before; all are after (their workers "died").
    assert!(processes[1].claim(500_000, 1_000).await.unwrap().is_none());
    // Starting a process does not steal leases from the others.
    assert_eq!(processes[2].release_leases().await.unwrap(), 0);
    assert!(processes[2].claim(2_000_000, 1_000).await.unwrap().is_some());
}
