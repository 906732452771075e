//! One suite for both databases: SQLite (embedded) and PostgreSQL (started by the test, from
//! the machine's PostgreSQL server binaries), and what only a shared store must do — several
//! processes claiming from one queue, each job once, and rescuing the jobs of a dead worker.

use std::{collections::BTreeMap, sync::Arc};

use alloy::primitives::{Address, B256, Bytes, U256, bytes};
use estuary_chain::{Cursor, TxLedger};
use estuary_oracle::{
    domain::{
        JobKey, JobSource, JobState, JobStatus,
        pinning::{Caller, CheckedPin, Pin, PinQuery, PinState, RawPinQuery, Scope},
        request::RequestEvent,
        state::{FailureCode, Input, Outcome, Policy, apply},
    },
    store::{DatabaseUrl, Store},
};

use crate::postgres::Postgres;

fn source() -> JobSource {
    JobSource::Contract { chain: 31337, address: Address::repeat_byte(0x11) }
}

const STREAM: &str = "31337:0x1111111111111111111111111111111111111111";

fn key(id: u64) -> JobKey {
    JobKey::request(31337, Address::repeat_byte(0x11), U256::from(id))
}

fn event(id: u64, block: u64, log_index: u64) -> RequestEvent {
    RequestEvent {
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
        size_hint: None,
        refused: None,
        store: None,
    }
}

fn cursor(n: u64) -> Cursor {
    Cursor { block_number: n, block_hash: B256::repeat_byte(n as u8) }
}

async fn ingest(store: &Store, events: &[RequestEvent], at: Cursor) -> u64 {
    store.ingest_requests(STREAM, &source(), events, &[], at, 1).await.unwrap()
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

async fn requests_and_cursors(store: &Store) {
    assert_eq!(store.cursor(STREAM).await.unwrap(), None);
    let events = vec![event(1, 5, 0), event(2, 5, 1)];
    assert_eq!(ingest(store, &events, cursor(5)).await, 2);
    // The same range again, and then a later one that repeats a request.
    assert_eq!(ingest(store, &events, cursor(5)).await, 0);
    let more = vec![event(2, 5, 1), event(3, 7, 0), event(4, 9, 0)];
    assert_eq!(ingest(store, &more, cursor(9)).await, 2);
    assert_eq!(store.count(&source()).await.unwrap(), 4);
    assert_eq!(store.cursor(STREAM).await.unwrap(), Some(cursor(9)));
    let listed = store.list(&source(), 0, 10).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    assert_eq!(store.list(&source(), listed[1].0, 10).await.unwrap().len(), 2);
    let two = store.job(&key(2)).await.unwrap().unwrap();
    assert_eq!(
        (two.key.as_str(), two.status, two.block),
        (key(2).to_string().as_str(), JobState::Queued, Some(5))
    );
    assert_eq!(two.requester, Address::repeat_byte(0x22).to_checksum(None));
    assert_eq!(two.cid.as_deref(), Some(A));
    assert_eq!(store.job(&key(99)).await.unwrap(), None);
    // The same id in another source is another job.
    let other = JobSource::Contract { chain: 31337, address: Address::repeat_byte(0x33) };
    store.ingest_requests("other", &other, &[event(2, 5, 1)], &[], cursor(5), 1).await.unwrap();
    assert_eq!(store.jobs_with_id("2").await.unwrap().len(), 2);
    assert_eq!(store.count(&source()).await.unwrap(), 4);
    // A reorg: blocks above 5 are orphaned.
    let blocks: Vec<u64> =
        store.checkpoints(STREAM, 0).await.unwrap().iter().map(|c| c.block_number).collect();
    assert_eq!(blocks, [9, 5]);
    assert_eq!(store.rewind(STREAM, &source(), 5, Some(cursor(5))).await.unwrap(), 2);
    assert_eq!(store.count(&source()).await.unwrap(), 2);
    assert_eq!(store.cursor(STREAM).await.unwrap(), Some(cursor(5)));
    assert_eq!(store.rewind(STREAM, &source(), 0, None).await.unwrap(), 2);
    assert_eq!(store.cursor(STREAM).await.unwrap(), None);
    assert_eq!(store.count(&other).await.unwrap(), 1, "another source is untouched");
}

/// Applies `input` to the job at `status` through the machine and stores it.
async fn step(
    store: &Store,
    key: &JobKey,
    status: &JobStatus,
    input: Input,
    now: u64,
) -> (bool, JobStatus) {
    let change = apply(status, &input, now, &Policy::default()).unwrap();
    let stored = store.transition(key, status, &change, now, 500).await.unwrap();
    (stored, JobStatus { state: change.state, attempts: change.attempts })
}

async fn job_lifecycle(store: &Store) {
    ingest(store, &[event(1, 5, 0), event(2, 5, 1)], cursor(5)).await;
    let job = store.claim(1_000, 500).await.unwrap().unwrap();
    assert_eq!(job.key, key(1));
    // Leased: the next claim takes the other job, then nothing until a lease ends.
    assert_eq!(store.claim(1_000, 500).await.unwrap().unwrap().key, key(2));
    assert!(store.claim(1_100, 500).await.unwrap().is_none());
    let (ok, held) = step(store, &job.key, &job.status, Input::Start, 1_100).await;
    assert!(ok);
    assert_eq!(held.state, JobState::Fetching);
    // A heartbeat keeps it past the first lease; the other job's lease ends and it is rescued.
    assert!(store.heartbeat(&job.key, JobState::Fetching, 1_400, 500).await.unwrap());
    let rescued = store.claim(1_600, 500).await.unwrap().unwrap();
    assert_eq!(rescued.key, key(2));
    assert!(store.claim(1_600, 500).await.unwrap().is_none());
    let fetched = Input::Finished(Outcome::Fetched { blocks: 3, bytes: 30 });
    assert!(step(store, &job.key, &held, fetched.clone(), 1_700).await.0);
    // A stale change (the job moved on) changes nothing.
    assert!(!step(store, &job.key, &held, fetched, 1_700).await.0);
    let r = store.job(&key(1)).await.unwrap().unwrap();
    assert_eq!((r.status, r.dag_blocks, r.dag_bytes), (JobState::Pinned, Some(3), Some(30)));
    // Failures quarantine after the limit; a requeue through the machine puts it back.
    let mut status = step(store, &rescued.key, &rescued.status, Input::Start, 1_800).await.1;
    for _ in 0..Policy::default().max_attempts {
        let fail = Input::Finished(Outcome::Failed {
            reason: "gone".into(),
            permanent: false,
            code: FailureCode::Unspecified,
        });
        status = step(store, &rescued.key, &status, fail, 1_800).await.1;
    }
    assert_eq!(status.state, JobState::Quarantined);
    let bad = store.in_states(&[JobState::Quarantined], 10).await.unwrap();
    assert_eq!((bad.len(), bad[0].error.as_deref()), (1, Some("gone")));
    assert!(step(store, &rescued.key, &status, Input::Requeue, 1_900).await.0);
    let counts: BTreeMap<JobState, u64> = store.state_counts().await.unwrap().into_iter().collect();
    assert_eq!(counts.get(&JobState::Queued), Some(&1));
    assert_eq!(counts.get(&JobState::Pinned), Some(&1));
    assert!(store.by_piece("bafkzcibnothing").await.unwrap().is_none());
    // A retry waits for its backoff before it can be claimed again.
    let again = store.claim(2_000, 500).await.unwrap().unwrap();
    let started = step(store, &again.key, &again.status, Input::Start, 2_000).await.1;
    let fail = Input::Finished(Outcome::Failed {
        reason: "later".into(),
        permanent: false,
        code: FailureCode::Unspecified,
    });
    step(store, &again.key, &started, fail, 2_000).await;
    assert!(store.claim(2_100, 500).await.unwrap().is_none(), "backing off");
    assert!(store.claim(2_600, 500).await.unwrap().is_some(), "after 0.5 s");
}

async fn pins_listed_filtered_paged(s: &Store) {
    // Same millisecond for all: the store makes created times unique.
    for i in 0..15 {
        let cid = if i % 2 == 0 { A } else { B };
        let name = format!("File-{i}");
        let meta = [("app", if i < 5 { "one" } else { "two" })];
        s.create_pin("alice", &rid(i), &checked(cid, Some(&name), &meta), 1_000).await.unwrap();
    }
    s.create_pin("bob", &rid(100), &checked(A, Some("File-1"), &[]), 1_000).await.unwrap();

    let (n, page) = s.pins("alice", &PinQuery::default()).await.unwrap();
    assert_eq!((n, page.len()), (15, 10));
    assert_eq!(page[0].requestid, rid(14), "newest first");
    let created: Vec<u64> = page.iter().map(|p| p.created_ms).collect();
    assert!(created.windows(2).all(|w| w[0] > w[1]), "unique and descending");
    let before = Some(page.last().unwrap().created_ms);
    let (_, next) =
        s.pins("alice", &PinQuery { before_ms: before, ..Default::default() }).await.unwrap();
    assert_eq!(next.len(), 5);
    assert_eq!(next[4].requestid, rid(0));

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

async fn pins_deleted_and_replaced(s: &Store) {
    let (r1, r2) = (rid(1), rid(2));
    let pin = s.create_pin("alice", &r1, &checked(A, None, &[]), 5).await.unwrap();
    assert_eq!(PinState::of(pin.status), PinState::Queued);
    assert!(!s.delete_pin("bob", &r1, 6).await.unwrap());
    assert!(s.replace_pin("bob", &r1, &r2, &checked(B, None, &[]), 6).await.unwrap().is_none());
    let new = s.replace_pin("alice", &r1, &r2, &checked(B, None, &[]), 6).await.unwrap().unwrap();
    assert_eq!(new.pin.cid, B);
    assert!(s.pin("alice", &r1).await.unwrap().is_none());
    // The old job is cancelled, so no worker takes it.
    let job = s.claim(10, 1_000).await.unwrap().unwrap();
    assert_eq!(job.key.to_string(), format!("api/alice/{r2}"));
    assert_eq!(job.origins, vec!["/ip4/127.0.0.1/tcp/8080/http".to_owned()]);
    assert!(s.claim(10, 1_000).await.unwrap().is_none());
    assert!(s.delete_pin("alice", &r2, 20).await.unwrap());
    assert!(!s.delete_pin("alice", &r2, 20).await.unwrap());
    assert_eq!(s.pins("alice", &PinQuery::default()).await.unwrap().0, 0);
    assert!(
        s.pins("alice", &PinQuery { meta: BTreeMap::new(), ..Default::default() })
            .await
            .unwrap()
            .1
            .is_empty()
    );
    assert_eq!(
        s.job(&job.key).await.unwrap().unwrap().status,
        JobState::Cancelled,
        "deleting cancels"
    );
}

/// A pin's request id: a UUID, as the API makes them.
fn rid(i: u32) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

async fn tokens_kept_as_digests(s: &Store) {
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

async fn report_transactions_kept_until_settled(s: &Store) {
    let op = "0x00000000000000000000000000000000000000aa";
    let (a, b) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb));
    assert_eq!(s.last_unsettled(op).await.unwrap(), None);
    let keys = ["pinned/0x01/1".to_owned(), "pinned/0x01/2".to_owned()];
    s.record_sent(op, 7, a, &keys).await.unwrap();
    // A replacement: same nonce, another hash, one request.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    s.record_sent(op, 7, b, &keys[..1]).await.unwrap();
    s.record_sent(op, 7, b, &keys[..1]).await.unwrap();
    assert_eq!(s.sent_for(&keys[0]).await.unwrap(), vec![(7, a), (7, b)]);
    assert_eq!(s.sent_for(&keys[1]).await.unwrap(), vec![(7, a)]);
    assert_eq!(s.last_unsettled(op).await.unwrap(), Some((7, b)));
    assert_eq!(s.last_unsettled("0x00000000000000000000000000000000000000bb").await.unwrap(), None);
    // What a gap filler must leave alone: the nonces from 7 (the first), below 8 (excluded).
    let mut held = s.unsettled_between(op, 7, 8).await.unwrap();
    held.sort();
    held.dedup();
    assert_eq!(held, vec![(7, a), (7, b)]);
    assert!(s.unsettled_between(op, 0, 7).await.unwrap().is_empty());
    assert!(s.unsettled_between(op, 8, 100).await.unwrap().is_empty());
    s.settle(&keys[..1]).await.unwrap();
    assert!(s.sent_for(&keys[0]).await.unwrap().is_empty());
    assert_eq!(s.last_unsettled(op).await.unwrap(), Some((7, a)));
    s.settle(&keys).await.unwrap();
    assert_eq!(s.last_unsettled(op).await.unwrap(), None);
}

/// One requester cannot take every worker, and retries wait behind fresh work.
async fn claims_are_fair_between_requesters(store: &Store) {
    let by = |id: u64, who: u8| RequestEvent {
        requester: Address::repeat_byte(who),
        ..event(id, 5, id)
    };
    // Mallory queued four before alice's one.
    let events = vec![by(1, 0xaa), by(2, 0xaa), by(3, 0xaa), by(4, 0xaa), by(5, 0xbb)];
    ingest(store, &events, cursor(5)).await;
    let mut order = Vec::new();
    while let Some(job) = store.claim_within(1_000, 10_000, 2).await.unwrap() {
        order.push(job.key);
    }
    assert_eq!(order, [key(1), key(2), key(5)], "mallory holds two; alice's is next");
    // A failed attempt (after its backoff) waits behind every fresh job.
    let failed = Input::Finished(Outcome::Failed {
        reason: "timeout".into(),
        permanent: false,
        code: FailureCode::Timeout,
    });
    for k in [key(1), key(2), key(5)] {
        let status = store.status(&k).await.unwrap().unwrap();
        let start = apply(&status, &Input::Start, 1_000, &Policy::default()).unwrap();
        assert!(store.transition(&k, &status, &start, 1_000, 10_000).await.unwrap());
        let status = store.status(&k).await.unwrap().unwrap();
        let change = apply(&status, &failed, 1_000, &Policy::default()).unwrap();
        assert!(store.transition(&k, &status, &change, 1_000, 10_000).await.unwrap());
    }
    let later = 1_000 + Policy::default().backoff(1) + 1;
    let next = store.claim_within(later, 10_000, 2).await.unwrap().unwrap();
    assert_eq!(next.key, key(3), "mallory's fresh job before the retries");
    assert_eq!(store.claim_within(later, 10_000, 2).await.unwrap().unwrap().key, key(4));
    assert_eq!(
        store.claim_within(later, 10_000, 2).await.unwrap().unwrap().key,
        key(5),
        "alice's retry"
    );
    assert!(store.claim_within(later, 10_000, 2).await.unwrap().is_none(), "mallory holds two");
}

/// Garbage collection and the writers it must not overlap exclude each other.
async fn gc_and_its_holds_exclude_each_other(store: &Store) {
    assert!(store.gc_hold("fetch-a", 1_000, 5_000).await.unwrap());
    assert!(store.gc_begin("gc-1", 1_000, 60_000).await.unwrap(), "it begins, then waits");
    assert_eq!(store.gc_live_holds(1_000).await.unwrap(), 1);
    assert!(!store.gc_hold("fetch-b", 1_000, 5_000).await.unwrap(), "no new hold while it runs");
    assert!(!store.gc_begin("gc-2", 1_000, 60_000).await.unwrap(), "one collection at a time");
    store.gc_release("fetch-a").await.unwrap();
    assert_eq!(store.gc_live_holds(1_000).await.unwrap(), 0);
    // A dead holder blocks nothing past its lease.
    assert!(store.gc_renew("gc-1", 2_000, 60_000).await.unwrap());
    let freed = estuary_oracle::store::Freed { blocks: 3, bytes: 300, cars: 1, car_bytes: 99 };
    store.gc_finish("gc-1", freed, None, 3_000).await.unwrap();
    assert!(store.gc_hold("fetch-b", 3_000, 5_000).await.unwrap());
    assert_eq!(store.gc_live_holds(7_999).await.unwrap(), 1);
    assert_eq!(store.gc_live_holds(8_000).await.unwrap(), 0, "its lease ran out");
    let totals = store.gc_totals(9_000).await.unwrap();
    assert_eq!((totals.runs, totals.freed_bytes, totals.freed_car_bytes), (1, 300, 99));
    assert!(!totals.running);
    // A collection whose lease ran out is taken over.
    assert!(store.gc_begin("gc-3", 10_000, 1_000).await.unwrap());
    assert!(store.gc_begin("gc-4", 11_001, 1_000).await.unwrap());
    assert!(!store.gc_renew("gc-3", 11_002, 1_000).await.unwrap());
}

async fn uploads_owned_within_quotas(s: &Store) {
    use estuary_oracle::{
        domain::upload::{Quota, QuotaExceeded},
        store::{NewUpload, UploadRefused, UploadState},
    };
    let quota = Quota { max_bytes: 1000, max_uploads: 2, max_pins: 1 };
    let new = |id: &'static str, length: u64, grant: Option<&'static str>| NewUpload {
        id,
        account: "alice",
        length,
        metadata: Some("filename YQ=="),
        request_key: None,
        grant_sha256: grant,
        now_ms: 10,
        expires_ms: 100,
    };
    let a = s.create_upload(&new("a", 600, None), &quota).await.unwrap().unwrap();
    assert_eq!((a.account.as_str(), a.state, a.length), ("alice", UploadState::Open, 600));
    assert_eq!(
        s.create_upload(&new("b", 401, None), &quota).await.unwrap(),
        Err(UploadRefused::Quota(QuotaExceeded::Bytes { would: 1001, max: 1000 }))
    );
    assert!(s.upload("b").await.unwrap().is_none(), "a refused upload leaves no record");
    // A pre-signed URL makes one upload.
    s.add_grant("g", "alice", 300, 10, 50).await.unwrap();
    assert_eq!(s.grant("g", 49).await.unwrap().unwrap().max_bytes, 300);
    assert!(s.grant("g", 50).await.unwrap().is_none(), "expired");
    s.create_upload(&new("c", 100, Some("g")), &quota).await.unwrap().unwrap();
    assert_eq!(s.grant("g", 20).await.unwrap().unwrap().upload_id.as_deref(), Some("c"));
    assert_eq!(
        s.create_upload(&new("d", 100, Some("g")), &quota).await.unwrap(),
        Err(UploadRefused::GrantUsed)
    );
    // Finished uploads count their bytes, not as in flight; expired open ones are listed.
    assert!(s.finish_upload("a", "bafy", 3, 20).await.unwrap());
    assert!(!s.finish_upload("a", "bafy", 3, 20).await.unwrap());
    let usage = s.usage("alice").await.unwrap();
    assert_eq!((usage.bytes, usage.uploads), (700, 1));
    assert_eq!(s.expired_uploads(100, 10).await.unwrap(), vec!["c".to_owned()]);
    assert!(s.delete_upload("c").await.unwrap());
    // Quotas of one account.
    let defaults = Quota { max_bytes: 9, max_uploads: 9, max_pins: 9 };
    assert_eq!(s.quota("alice", defaults).await.unwrap(), defaults);
    s.set_quota("alice", Some(5), None, Some(1)).await.unwrap();
    assert_eq!(
        s.quota("alice", defaults).await.unwrap(),
        Quota { max_bytes: 5, max_uploads: 9, max_pins: 1 }
    );
    // Nonces are used once; sessions end.
    assert!(s.add_nonce("n1", 0, 100, 2).await.unwrap());
    assert!(s.add_nonce("n2", 0, 100, 2).await.unwrap());
    assert!(!s.add_nonce("n3", 0, 100, 2).await.unwrap(), "no more than the cap");
    assert!(s.take_nonce("n1", 50).await.unwrap());
    assert!(!s.take_nonce("n1", 50).await.unwrap());
    assert!(!s.take_nonce("n2", 100).await.unwrap(), "expired");
    s.add_session("sd", "0xabc", Scope::Upload, 0, 100).await.unwrap();
    assert_eq!(s.session("sd", 99).await.unwrap().unwrap().scope, Scope::Upload);
    assert!(s.session("sd", 100).await.unwrap().is_none());
    assert!(s.purge_expired_auth(1000).await.unwrap() >= 2);
}

/// `key` moved from queued to reported with `piece`.
async fn reported_with(store: &Store, key: &JobKey, piece: &str) {
    let mut status = JobStatus { state: JobState::Queued, attempts: 0 };
    for input in [
        Input::Start,
        Input::Finished(Outcome::Fetched { blocks: 1, bytes: 30 }),
        Input::Start,
        Input::Finished(Outcome::Packed {
            piece_cid: piece.into(),
            padded_size: 128,
            car_size: 100,
        }),
        Input::Start,
        Input::Finished(Outcome::Reported { tx: None }),
    ] {
        let (stored, next) = step(store, key, &status, input, 3_000).await;
        assert!(stored, "{key} from {status:?}");
        status = next;
    }
    assert_eq!(status.state, JobState::Reported);
}

/// Pieces go into a bucket once each, a stale writer changes nothing, a bucket's pieces never
/// get orders of their own, and a closed bucket is ordered as its aggregate.
async fn buckets_take_each_piece_once(s: &Store) {
    use estuary_oracle::domain::bucket::OpenBucket;
    let contract = Address::repeat_byte(0x33);
    ingest(s, &[event(1, 5, 0), event(2, 5, 1), event(3, 5, 2)], cursor(5)).await;
    let (a, b) = ("bafkzcibcaaces3a", "bafkzcibcaaces3b");
    reported_with(s, &key(1), a).await;
    reported_with(s, &key(2), b).await;
    let pieces: Vec<_> =
        s.pieces_to_bucket(512, 10).await.unwrap().into_iter().map(|(p, _)| p).collect();
    assert_eq!(pieces.iter().map(|p| p.piece_cid.as_str()).collect::<Vec<_>>(), [a, b]);
    assert!(s.pieces_to_bucket(64, 10).await.unwrap().is_empty(), "larger than a bucket takes");
    assert_eq!(s.add_to_bucket(None, None, &pieces[0], 0, 128, 1_000).await.unwrap(), Some(1));
    let open = s.open_bucket().await.unwrap().unwrap();
    assert_eq!(open, OpenBucket { id: 1, end: 128, pieces: 1, created_ms: 1_000 });
    let stale = OpenBucket { end: 0, pieces: 0, ..open };
    assert_eq!(s.add_to_bucket(Some(&stale), None, &pieces[1], 0, 128, 1_001).await.unwrap(), None);
    assert_eq!(
        s.add_to_bucket(Some(&open), None, &pieces[0], 128, 256, 1_001).await.unwrap(),
        None,
        "a piece is in one bucket"
    );
    assert_eq!(s.open_bucket().await.unwrap(), Some(open), "nothing half-written");
    assert_eq!(
        s.add_to_bucket(Some(&open), None, &pieces[1], 128, 256, 1_002).await.unwrap(),
        Some(1)
    );
    assert!(s.pieces_to_bucket(512, 10).await.unwrap().is_empty());
    assert!(s.pieces_to_order(contract, 10, Some(512)).await.unwrap().is_empty(), "still open");
    assert!(s.pieces_to_order(contract, 10, None).await.unwrap().is_empty(), "never alone");
    let live = s.live_jobs(0, 10).await.unwrap();
    let dealing: Vec<bool> = live.iter().map(|j| j.dealing).collect();
    assert_eq!(dealing, [true, true, false], "a bucket's CARs are kept");
    let agg = "bafkzcibcaaggregate";
    let full = OpenBucket { id: 1, end: 256, pieces: 2, created_ms: 1_000 };
    assert!(!s.close_bucket(&open, "age", 4096, agg, 2_000).await.unwrap(), "a piece came since");
    // The bucket's CARs are roots of garbage collection whatever happens to the pins.
    let (roots, next) = s.bucket_roots(0, 10).await.unwrap();
    assert_eq!((roots.len(), next), (2, None));
    assert!(s.close_bucket(&full, "age", 4096, agg, 2_000).await.unwrap());
    assert!(!s.close_bucket(&full, "full", 8192, "other", 2_001).await.unwrap(), "closed once");
    assert_eq!(s.bucket_roots(0, 1).await.unwrap().0.len(), 1, "closed, not yet ordered");
    assert_eq!(s.open_bucket().await.unwrap(), None);
    let to_order = s.pieces_to_order(contract, 10, Some(512)).await.unwrap();
    assert_eq!(to_order.len(), 1);
    let o = &to_order[0];
    assert_eq!((o.piece_cid.as_str(), o.padded_size, o.car_size), (agg, 4096, 4064));
    assert_eq!(o.payload_cid, pieces[0].payload_cid, "labelled with its first pin");
    let (bucket, inside) = s.bucket_of_aggregate(agg).await.unwrap().unwrap();
    assert_eq!(
        (bucket.why.as_deref(), bucket.deal_size, bucket.pieces),
        (Some("age"), Some(4096), 2)
    );
    let offsets: Vec<_> = inside.iter().map(|p| (p.piece_cid.as_str(), p.offset)).collect();
    assert_eq!(offsets, [(a, 0), (b, 128)]);
    assert_eq!(s.bucket_of_piece(b).await.unwrap().unwrap().piece_cid.as_deref(), Some(agg));
    assert_eq!(s.buckets(10, 0).await.unwrap().len(), 1);
    assert!(s.bucket_of_aggregate(a).await.unwrap().is_none());
    // The pin requests inside, for deal reports, and each deal reported once.
    let inside = s.bucket_requests(1, &key(1).source).await.unwrap();
    let keys: Vec<_> = inside.iter().map(|r| (r.key.clone(), r.piece_cid.as_str())).collect();
    assert_eq!(keys, [(key(1), a), (key(2), b)]);
    s.deal_reported("0xp", (7, 1000), 1, 2, Some("0xt"), 3_000).await.unwrap();
    s.deal_reported("0xp", (7, 1000), 1, 2, None, 3_001).await.unwrap();
    assert_eq!(s.reported_deals("0xp").await.unwrap(), [7]);
    assert!(s.reported_deals("0xq").await.unwrap().is_empty());
    let counts = s.deal_engine_counts().await.unwrap();
    let closed = ("closed".to_owned(), "shared".to_owned(), 1, 256);
    assert_eq!((counts.buckets, counts.deals_reported), (vec![closed], (1, 2)));
}

/// A DataDAO's pins are its own to fund: never bucketed nor ordered by the operator; its
/// proposals' funding kept (inserted, then updated without losing what was known), and its
/// order recorded once, open and bound.
async fn dao_pins_are_the_daos_to_fund(s: &Store) {
    use estuary_oracle::{
        domain::deal::OrderState,
        store::{DaoFunding, FundingState},
    };
    let contract = Address::repeat_byte(0x33);
    ingest(s, &[event(1, 5, 0)], cursor(5)).await;
    let piece = "bafkzcibcaaces3a";
    reported_with(s, &key(1), piece).await;
    assert_eq!(s.pieces_to_bucket(512, 10).await.unwrap().len(), 1);
    s.register_dao(Address::repeat_byte(0x22)).await.unwrap();
    s.register_dao(Address::repeat_byte(0x22)).await.unwrap();
    assert!(s.pieces_to_bucket(512, 10).await.unwrap().is_empty(), "the DAO's pin");
    assert!(s.pieces_to_order(contract, 10, None).await.unwrap().is_empty());
    let found = s.reported_piece(&key(1).source, "1").await.unwrap().unwrap();
    assert_eq!((found.piece_cid.as_str(), found.car_size), (piece, 100));
    assert!(s.reported_piece(&key(1).source, "2").await.unwrap().is_none());
    let waiting = DaoFunding {
        dao: "0xdao".into(),
        proposal_id: 1,
        request_id: "1".into(),
        fund_by: 99,
        state: FundingState::Waiting,
        piece_cid: None,
        order_id: None,
        tx_hash: None,
        error: Some("waiting for its pin to be reported".into()),
        updated_ms: 1_000,
    };
    s.put_dao_funding(&waiting).await.unwrap();
    let funded = DaoFunding {
        state: FundingState::Funded,
        piece_cid: Some(piece.into()),
        order_id: Some(7),
        tx_hash: Some("0xt".into()),
        error: None,
        updated_ms: 2_000,
        ..waiting.clone()
    };
    s.put_dao_funding(&funded).await.unwrap();
    let again = DaoFunding { tx_hash: None, order_id: None, updated_ms: 3_000, ..funded.clone() };
    s.put_dao_funding(&again).await.unwrap();
    let kept = s.dao_fundings(10, 0).await.unwrap();
    assert_eq!(kept, [DaoFunding { updated_ms: 3_000, ..funded }], "what was known is kept");
    assert!(s.dao_fundings(10, 1).await.unwrap().is_empty());
    let v1 = [1u8, 2, 3];
    let new = s.record_dao_order(contract, &found, &v1, 3, 7, Some("0xt"), 5, 4_000).await.unwrap();
    assert!(new);
    assert!(!s.record_dao_order(contract, &found, &v1, 3, 7, None, 5, 4_001).await.unwrap());
    assert!(s.record_dao_order(contract, &found, &v1, 3, 8, None, 5, 4_002).await.unwrap());
    assert!(!s.record_dao_order(contract, &found, &v1, 3, 8, None, 5, 4_003).await.unwrap());
    let orders = s.deals(None, 10, 0).await.unwrap();
    assert_eq!(orders.len(), 1);
    let order = &orders[0].order;
    assert_eq!(
        (order.backend.as_str(), order.state, order.order_id, order.tx_hash.as_deref()),
        ("datadao", OrderState::Open, Some(8), Some("0xt")),
        "re-bound, its transaction kept"
    );
    assert!(s.orders_in(contract, OrderState::Open).await.unwrap().is_empty(), "not the maker's");
    assert!(s.live_jobs(0, 10).await.unwrap()[0].dealing, "its CAR is kept for the providers");
    let counts = s.deal_engine_counts().await.unwrap();
    assert_eq!(counts.dao_fundings, [("funded".to_owned(), 1)]);
    assert_eq!((counts.store_results, counts.store_waiting), ((0, 0), 0));
}

/// Dedicated buckets: a requester named dedicated and a pin asking for its own bucket each get
/// buckets apart from the shared one, one open bucket per group.
async fn dedicated_buckets_keep_to_their_own(s: &Store) {
    use estuary_oracle::domain::{JobId, bucket::OpenBucket};
    let contract = RequestEvent { requester: Address::repeat_byte(0x44), ..event(2, 5, 1) };
    ingest(s, &[event(1, 5, 0), contract], cursor(5)).await;
    let (a, b, c) = ("bafkzcibcaaces3a", "bafkzcibcaaces3b", "bafkzcibcaaces3c");
    reported_with(s, &key(1), a).await;
    reported_with(s, &key(2), b).await;
    s.create_pin("alice", &rid(1), &checked(A, None, &[("estuary.bucket", "own")]), 1_000)
        .await
        .unwrap();
    let own = JobKey {
        source: JobSource::PinningApi { account: "alice".into() },
        id: JobId::pin(&rid(1)).unwrap(),
    };
    reported_with(s, &own, c).await;
    let groups = async || -> Vec<(String, Option<String>)> {
        let pieces = s.pieces_to_bucket(512, 10).await.unwrap();
        pieces.into_iter().map(|(p, g)| (p.piece_cid, g)).collect()
    };
    let own_group = format!("pin:{own}");
    let shared: Vec<(String, Option<String>)> =
        vec![(a.into(), None), (b.into(), None), (c.into(), None)];
    assert_eq!(groups().await, shared, "only requesters the operator named have their own");
    let dedicated = Address::repeat_byte(0x44).to_checksum(None);
    let named = [dedicated.clone(), "alice".to_owned()];
    s.set_dedicated_requesters(&named).await.unwrap();
    let account = format!("requester:{dedicated}");
    let listed = groups().await;
    assert_eq!(listed[1], (b.into(), Some(account.clone())));
    assert_eq!(listed[2], (c.into(), Some(own_group.clone())), "the pin asked for its own");
    s.set_dedicated_requesters(&[]).await.unwrap();
    assert_eq!(groups().await, shared, "no longer dedicated");
    s.set_dedicated_requesters(&named).await.unwrap();
    let pieces: Vec<_> = groups().await;
    let to_order = |n: usize| {
        let (piece, _) = &pieces[n];
        estuary_oracle::store::PieceToOrder {
            piece_cid: piece.clone(),
            payload_cid: "bafy".into(),
            padded_size: 128,
            car_size: 100,
        }
    };
    assert_eq!(s.add_to_bucket(None, None, &to_order(0), 0, 128, 1_000).await.unwrap(), Some(1));
    let mine = Some(account.as_str());
    assert_eq!(s.add_to_bucket(None, mine, &to_order(1), 0, 128, 1_000).await.unwrap(), Some(2));
    let again = s.add_to_bucket(None, mine, &to_order(2), 0, 128, 1_000).await.unwrap();
    assert_eq!(again, None, "one open bucket per group");
    let own_bucket = Some(own_group.as_str());
    assert_eq!(
        s.add_to_bucket(None, own_bucket, &to_order(2), 0, 128, 1_000).await.unwrap(),
        Some(3)
    );
    let open = s.open_buckets().await.unwrap();
    let listed: Vec<_> = open.iter().map(|(g, b)| (g.clone(), b.id)).collect();
    assert_eq!(listed, [(None, 1), (Some(account.clone()), 2), (Some(own_group.clone()), 3)]);
    assert_eq!(s.open_bucket().await.unwrap().map(|b: OpenBucket| b.id), Some(1), "the shared one");
    assert_eq!(s.bucket(2).await.unwrap().unwrap().group, Some(account));
    assert!(s.pieces_to_bucket(512, 10).await.unwrap().is_empty());
}

async fn deal_orders_bound_once_and_reorgs_undone(s: &Store) {
    use estuary_oracle::{
        domain::deal::{Backend, DealLog, DealLogKind, OrderState, ReplicaState, SlotEventKind},
        store::OrderRecord,
    };
    let contract = Address::repeat_byte(0x33);
    let operator = Address::repeat_byte(0x44);
    let stream = "deals:31337:0x3333333333333333333333333333333333333333";
    // Two pins of the same piece, one still queued: one piece to order.
    ingest(s, &[event(1, 5, 0), event(2, 5, 1), event(3, 5, 2)], cursor(5)).await;
    let piece = "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi";
    reported_with(s, &key(1), piece).await;
    reported_with(s, &key(2), piece).await;
    let pieces = s.pieces_to_order(contract, 10, None).await.unwrap();
    assert_eq!(pieces.len(), 1);
    assert_eq!((pieces[0].padded_size, pieces[0].car_size), (128, 100));
    let order = OrderRecord {
        backend: Backend::Perpetual,
        contract,
        piece_cid: piece.into(),
        piece_v1: vec![1, 2, 3],
        payload_cid: pieces[0].payload_cid.clone(),
        padded_size: 128,
        car_size: 100,
        replicas_target: 3,
        state: OrderState::Sending,
        order_id: None,
        tx_hash: None,
        error: None,
        funding: None,
        sent_block: 6,
        created_ms: 0,
        updated_ms: 0,
    };
    assert!(s.record_order(&order, 4_000).await.unwrap());
    assert!(!s.record_order(&order, 4_001).await.unwrap(), "one order per piece");
    assert!(s.pieces_to_order(contract, 10, None).await.unwrap().is_empty());
    // While the order lives, garbage collection keeps the piece's CAR (SPs download it).
    let live = s.live_jobs(0, 10).await.unwrap();
    let dealing: Vec<bool> = live.iter().map(|j| j.dealing).collect();
    assert_eq!(dealing, [true, true, false], "the two pins of the piece; the queued one has none");
    let counts = s.order_counts().await.unwrap();
    assert!(counts.contains(&(OrderState::Sending, 1)) && counts.contains(&(OrderState::Open, 0)));
    // The value it is sent with counts toward the deal budget (until it fails).
    assert_eq!(s.committed_funding(contract).await.unwrap(), 0);
    s.order_funding(contract, piece, u128::from(u64::MAX) * 3).await.unwrap();
    assert_eq!(s.committed_funding(contract).await.unwrap(), u128::from(u64::MAX) * 3);
    // A pre-flight refusal that may pass later keeps it sending, with why.
    s.order_refused(contract, piece, "pre-flight: balance", false, 4_002).await.unwrap();
    let sending = s.orders_in(contract, OrderState::Sending).await.unwrap();
    assert_eq!(sending[0].error.as_deref(), Some("pre-flight: balance"));

    // The watcher reads: another client's order (not ours, nor its slots), then ours, its
    // claims, a publication and an activation, and an event that does not follow (ignored).
    let log = |block, index, order_id, kind| DealLog {
        block_number: block,
        log_index: index,
        order_id,
        kind,
    };
    let slot = |provider, kind| DealLogKind::Slot { provider, kind };
    let logs = [
        log(
            7,
            0,
            1,
            DealLogKind::Created { client: Address::repeat_byte(9), piece_v1: vec![1, 2, 3] },
        ),
        log(7, 1, 1, slot(1000, SlotEventKind::Claimed { deadline: Some(130) })),
        log(8, 0, 2, DealLogKind::Created { client: operator, piece_v1: vec![1, 2, 3] }),
        log(9, 0, 2, slot(1000, SlotEventKind::Claimed { deadline: Some(130) })),
        log(9, 1, 2, slot(1001, SlotEventKind::Claimed { deadline: Some(130) })),
        log(10, 0, 2, slot(1000, SlotEventKind::Published { deal_id: 5 })),
        log(
            11,
            0,
            2,
            slot(
                1000,
                SlotEventKind::Activated { deal_id: Some(5), start_epoch: 12, end_epoch: 3612 },
            ),
        ),
        log(
            11,
            1,
            2,
            slot(
                1002,
                SlotEventKind::Activated { deal_id: Some(6), start_epoch: 12, end_epoch: 3612 },
            ),
        ),
    ];
    let stored = s
        .ingest_deal_events(stream, contract, &[operator], &logs, cursor(11), 5_000)
        .await
        .unwrap();
    assert_eq!(stored, 6, "the stranger's two events are not kept");
    assert_eq!(s.cursor(stream).await.unwrap(), Some(cursor(11)));
    assert!(s.orders_in(contract, OrderState::Sending).await.unwrap().is_empty());
    let deals = s.deals(None, 10, 0).await.unwrap();
    assert_eq!(deals.len(), 1);
    assert_eq!((deals[0].order.order_id, deals[0].order.state), (Some(2), OrderState::Open));
    assert_eq!(deals[0].replicas_active, 1);
    let states: Vec<_> = deals[0].replicas.iter().map(|r| (r.provider, r.state)).collect();
    assert_eq!(states, [(1000, ReplicaState::Active), (1001, ReplicaState::Claimed)]);
    assert_eq!(s.deals(Some(piece), 10, 0).await.unwrap().len(), 1);
    assert!(s.deals(Some("bafkzcibother"), 10, 0).await.unwrap().is_empty());
    assert_eq!(s.created_order(contract, operator, &[1, 2, 3], 6).await.unwrap(), Some(2));
    let dao = Address::repeat_byte(0x77);
    let theirs = s.created_order(contract, dao, &[1, 2, 3], 6).await.unwrap();
    assert_eq!(theirs, None, "only an order the client created binds");
    // The claim's deadline is kept (the keeper reopens lapsed claims), and so is a payment.
    assert_eq!(deals[0].replicas[1].deadline, Some(130));
    let paid = [log(12, 0, 2, slot(1000, SlotEventKind::Paid { until: 40 }))];
    s.ingest_deal_events(stream, contract, &[operator], &paid, cursor(12), 5_000).await.unwrap();
    assert_eq!(s.deals(None, 10, 0).await.unwrap()[0].replicas[0].paid_until, Some(40));
    // The target its client set last (the keeper's renewals) stands beside the order's own.
    assert_eq!(deals[0].replicas_on_chain, deals[0].order.replicas_target);
    let targets = [
        log(12, 1, 2, DealLogKind::Target { replicas: 9 }),
        log(13, 0, 2, DealLogKind::Target { replicas: 8 }),
    ];
    s.ingest_deal_events(stream, contract, &[operator], &targets, cursor(13), 5_000).await.unwrap();
    let order = &s.deals(None, 10, 0).await.unwrap()[0];
    assert_eq!((order.replicas_on_chain, order.replicas.len()), (8, 2), "not a slot");
    // What the market says is kept per deal and put on the replicas: a slashed deal no
    // longer counts. The keeper sees the open order, the scores see its history.
    use estuary_oracle::domain::market::{MarketState, MarketView};
    let view = |state| MarketView { state, epoch: 50, start_epoch: Some(12), end_epoch: Some(99) };
    s.record_market(&[(5, view(MarketState::Active))], 5_001).await.unwrap();
    s.record_market(&[(5, view(MarketState::Slashed))], 5_002).await.unwrap();
    let open = s.open_orders(contract).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].replicas[0].market, Some(view(MarketState::Slashed)));
    assert_eq!(open[0].replicas_active, 0);
    assert!(s.open_orders(Address::repeat_byte(1)).await.unwrap().is_empty());
    let histories = s.order_histories().await.unwrap();
    assert_eq!((histories.len(), histories[0].events.len()), (1, 6));
    s.record_market(&[(5, view(MarketState::Active))], 5_003).await.unwrap();

    // A receipt seen later does not change the id the watcher bound.
    s.order_created(contract, piece, 99, None, 5_001).await.unwrap();
    assert_eq!(s.deals(None, 10, 0).await.unwrap()[0].order.order_id, Some(2));

    // A reorg above block 7 forgets our order's events: it waits for its id again.
    let forgotten = s.rewind_deal_events(stream, contract, 7, Some(cursor(7))).await.unwrap();
    assert_eq!(forgotten, 9);
    let waiting = s.orders_in(contract, OrderState::Sending).await.unwrap();
    assert_eq!((waiting.len(), waiting[0].order_id), (1, None));
    assert_eq!(s.created_order(contract, operator, &[1, 2, 3], 6).await.unwrap(), None);
    assert_eq!(s.cursor(stream).await.unwrap(), Some(cursor(7)));
    // Mined again after the reorg, with its receipt: bound and kept through the next reorg.
    s.order_created(contract, piece, 3, Some("0xabc"), 6_000).await.unwrap();
    s.rewind_deal_events(stream, contract, 6, Some(cursor(6))).await.unwrap();
    let deals = s.deals(None, 10, 0).await.unwrap();
    assert_eq!(
        (deals[0].order.order_id, deals[0].order.tx_hash.as_deref()),
        (Some(3), Some("0xabc"))
    );
    // A refusal after the order is bound changes nothing.
    s.order_refused(contract, piece, "late", true, 6_001).await.unwrap();
    assert_eq!(s.deals(None, 10, 0).await.unwrap()[0].order.state, OrderState::Open);
}

async fn contract_proposals_bound_folded_and_rewound(s: &Store) {
    use estuary_oracle::{
        domain::deal::{Backend, OrderState, ProposalLog, ProposalLogKind, ReplicaState},
        store::{ProposalRecord, ProposalState},
    };
    let client = Address::repeat_byte(0x55);
    let stream = "proposals:31337:0x5555555555555555555555555555555555555555";
    ingest(s, &[event(1, 5, 0), event(2, 5, 1)], cursor(5)).await;
    let (a, b) = (
        "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi",
        "bafkzcibcaacesgfh3q5srm63xxsjqrd7lw7z7yxyjrhdjpc5v3kbcuqp2wd6zba",
    );
    reported_with(s, &key(1), a).await;
    reported_with(s, &key(2), b).await;
    // Each piece gets a contract order with the next id; a piece is ordered once.
    let pieces = s.pieces_to_order(client, 10, None).await.unwrap();
    assert_eq!(pieces.len(), 2);
    for p in &pieces {
        assert!(s.record_contract_order(client, p, &[7, 7], 2, 6, 1_000).await.unwrap());
        assert!(!s.record_contract_order(client, p, &[7, 7], 2, 6, 1_001).await.unwrap());
    }
    assert!(s.pieces_to_order(client, 10, None).await.unwrap().is_empty());
    // Neither is ordered again at another contract while these live.
    assert!(s.pieces_to_order(Address::repeat_byte(0x66), 10, None).await.unwrap().is_empty());
    let open = s.open_orders(client).await.unwrap();
    let ids: Vec<Option<u64>> = open.iter().map(|o| o.order.order_id).collect();
    assert_eq!(ids, [Some(1), Some(2)]);
    assert_eq!((open[0].order.backend, open[0].order.state), (Backend::Contract, OrderState::Open));
    // A note says why an order is short, and clears.
    s.contract_order_note(client, 1, Some("pre-flight: escrow"), false, 1_002).await.unwrap();
    assert_eq!(
        s.open_orders(client).await.unwrap()[0].order.error.as_deref(),
        Some("pre-flight: escrow")
    );
    s.contract_order_note(client, 1, None, false, 1_003).await.unwrap();
    assert_eq!(s.open_orders(client).await.unwrap()[0].order.error, None);

    // Two proposals of order 1: one bound from its receipt, one left sending (the process
    // stopped) and bound from its offer; a stranger's offer is not kept.
    let proposal = |provider, attempt| ProposalRecord {
        client,
        order_id: 1,
        provider,
        attempt,
        piece_v1: "0707".into(),
        state: ProposalState::Sending,
        proposal_id: None,
        start_epoch: 40,
        end_epoch: 400,
        price: "1".into(),
        collateral: "2".into(),
        sent_block: 6,
        tx_hash: None,
        error: None,
    };
    let (p0, p1) = (proposal(1000, 0), proposal(1001, 0));
    assert!(s.record_proposal(&p0, 2_000).await.unwrap());
    assert!(!s.record_proposal(&p0, 2_001).await.unwrap(), "one row per attempt");
    assert!(s.record_proposal(&p1, 2_000).await.unwrap());
    let id = |n: u8| B256::repeat_byte(n);
    s.proposal_offered(&p0, &format!("{:#x}", id(1)), Some("0xt"), 2_002).await.unwrap();
    let log = |block, index, n, kind| ProposalLog {
        block_number: block,
        log_index: index,
        id: id(n).0,
        kind,
    };
    let offered =
        |provider| ProposalLogKind::Offered { provider, piece_v1: vec![7, 7], start_epoch: 40 };
    let logs = [
        log(7, 0, 1, offered(1000)),
        log(7, 1, 2, offered(1001)),
        log(7, 2, 9, offered(1002)),
        log(8, 0, 1, ProposalLogKind::Published { provider: 1000, deal_id: 5 }),
        // Another provider's deal is not this proposal's.
        log(8, 1, 2, ProposalLogKind::Published { provider: 1003, deal_id: 6 }),
        log(9, 0, 1, ProposalLogKind::Activated { provider: 1000, deal_id: Some(5) }),
        // Withdrawn after its deal was made: nothing changes.
        log(10, 0, 1, ProposalLogKind::Cancelled),
    ];
    let stored = s.ingest_proposal_events(stream, client, &logs, cursor(10), 3_000).await.unwrap();
    assert_eq!(stored, 4, "offers of ours, the publication and the activation");
    let rows = s.proposals(client).await.unwrap();
    assert_eq!(rows.iter().map(|p| p.state).collect::<Vec<_>>(), [ProposalState::Offered; 2]);
    assert_eq!(rows[1].proposal_id, Some(format!("{:#x}", id(2))), "bound from its offer");
    let replicas = s.proposal_replicas(client).await.unwrap();
    let r = |n: u8| replicas[&format!("{:#x}", id(n))];
    assert_eq!(
        (r(1).state, r(1).deal_id, r(1).end_epoch),
        (ReplicaState::Active, Some(5), Some(400))
    );
    assert_eq!((r(2).state, r(2).deadline), (ReplicaState::Claimed, Some(40)));
    // The order shows them as replicas, and the scores count them.
    let deals = s.deals(Some(a), 10, 0).await.unwrap();
    assert_eq!((deals[0].replicas_active, deals[0].replicas.len()), (1, 2));
    assert_eq!(s.order_histories().await.unwrap().len(), 2);

    // f01001's proposal is withdrawn unpublished: lapsed, its replica reopened.
    let cancel = [log(11, 0, 2, ProposalLogKind::Cancelled)];
    s.ingest_proposal_events(stream, client, &cancel, cursor(11), 3_001).await.unwrap();
    assert_eq!(s.proposals(client).await.unwrap()[1].state, ProposalState::Lapsed);
    assert_eq!(
        s.proposal_replicas(client).await.unwrap()[&format!("{:#x}", id(2))].state,
        ReplicaState::Reopened
    );
    // A reorg undoes the withdrawal: offered again.
    s.rewind_proposal_events(stream, client, 10, Some(cursor(10))).await.unwrap();
    assert_eq!(s.proposals(client).await.unwrap()[1].state, ProposalState::Offered);
    // A deeper one undoes the offer the watcher bound; the receipt's binding stays.
    s.rewind_proposal_events(stream, client, 6, Some(cursor(6))).await.unwrap();
    let rows = s.proposals(client).await.unwrap();
    assert_eq!((rows[0].state, rows[1].state), (ProposalState::Offered, ProposalState::Sending));
    assert_eq!(rows[1].proposal_id, None);
    assert!(s.proposal_replicas(client).await.unwrap().is_empty());
    assert_eq!(s.cursor(stream).await.unwrap(), Some(cursor(6)));
    // A send given up as too late is bound if its offer shows up after all.
    s.proposal_moved(&rows[1], ProposalState::Failed, Some("too late"), 4_000).await.unwrap();
    s.ingest_proposal_events(stream, client, &logs[1..2], cursor(7), 4_001).await.unwrap();
    assert_eq!(s.proposals(client).await.unwrap()[1].state, ProposalState::Offered);
}

async fn split_pieces_recorded_whole_ordered_and_kept(s: &Store) {
    use estuary_oracle::store::SplitPart;
    ingest(s, &[event(1, 5, 0), event(2, 5, 1)], cursor(5)).await;
    let big = "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi";
    reported_with(s, &key(1), big).await;
    // Padded 128 (reported_with's): larger than a 64-byte "deal", so it is to split.
    let to_split = s.pieces_to_split(64, 10).await.unwrap();
    assert_eq!(to_split.len(), 1);
    assert_eq!((to_split[0].piece_cid.as_str(), to_split[0].car_size), (big, 100));
    assert!(s.pieces_to_split(128, 10).await.unwrap().is_empty(), "fits a deal of its size");
    let part = |seq: u64, cid: &str| SplitPart {
        seq,
        offset: seq * 50,
        length: 50,
        piece_cid: cid.into(),
        padded_size: 64,
    };
    let parts = [part(0, "bafkzcibpart0"), part(1, "bafkzcibpart1")];
    assert!(s.record_split(&to_split[0], &parts).await.unwrap());
    // Recorded once, all or nothing: a second split (another size) mixes nothing in.
    let other = [part(0, "bafkzcibother0"), part(1, "bafkzcibother1"), part(2, "bafkzcibother2")];
    assert!(!s.record_split(&to_split[0], &other).await.unwrap());
    let stored = s.split_of(big).await.unwrap();
    assert_eq!(
        stored.iter().map(|p| p.piece_cid.as_str()).collect::<Vec<_>>(),
        ["bafkzcibpart0", "bafkzcibpart1"]
    );
    assert!(s.pieces_to_split(64, 10).await.unwrap().is_empty());
    // The parts are ordered, never the whole; read from the pin's CAR.
    let contract = Address::repeat_byte(0x33);
    let pieces = s.pieces_to_order(contract, 10, Some(32)).await.unwrap();
    let names: Vec<&str> = pieces.iter().map(|p| p.piece_cid.as_str()).collect();
    assert_eq!(names, ["bafkzcibpart0", "bafkzcibpart1"]);
    assert_eq!((pieces[0].car_size, pieces[0].padded_size), (50, 64));
    let sources = s.part_sources("bafkzcibpart1").await.unwrap();
    assert_eq!((sources.len(), sources[0].offset, sources[0].car_size), (1, 50, 100));
    assert_eq!(sources[0].parent, big);
    // Kept by GC while a part is not ordered or its order lives.
    let (roots, next) = s.split_roots("", 10).await.unwrap();
    assert_eq!((roots.len(), next), (1, None));
    assert_eq!(roots[0].0, big);
    // The parts' orders are the pin's deals.
    let client = Address::repeat_byte(0x55);
    for p in &pieces {
        s.record_contract_order(client, p, &[1], 1, 6, 1_000).await.unwrap();
    }
    assert_eq!(s.split_deals(big, 10).await.unwrap().len(), 2);
    assert_eq!(s.pin_deals(big).await.unwrap().0.len(), 2);
    // Another pin larger than a deal waits for its split.
    let job = key(2);
    reported_with(s, &job, "bafkzcibcaacesgfh3q5srm63xxsjqrd7lw7z7yxyjrhdjpc5v3kbcuqp2wd6zba")
        .await;
    assert_eq!(s.pieces_to_split(64, 10).await.unwrap().len(), 1, "an ordinary pin is");
}

async fn probes_kept_pruned_totalled_and_suspensions(s: &Store) {
    use estuary_oracle::{domain::probe::LevelsBuilder, store::ProbeRecord};
    // A piece's levels round-trip, the first kept.
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let info = estuary_piece::commp::commp(&data).unwrap();
    let mut b = LevelsBuilder::new(info.padded_size).unwrap();
    b.update(&data).unwrap();
    let levels = b.finish(&info.commp).unwrap();
    assert_eq!(s.piece_levels("p").await.unwrap(), None);
    s.put_piece_levels("p", &levels).await.unwrap();
    s.put_piece_levels("p", &levels).await.unwrap();
    assert_eq!(s.piece_levels("p").await.unwrap(), Some(levels.clone()));
    // Probes: lost after two failures in a row; 40 kept as 32; totals over all.
    let probe = |deal_id, provider, at_ms, ok| ProbeRecord {
        deal_id,
        provider,
        piece_cid: "p".into(),
        block: at_ms,
        at_ms,
        ok,
        block_ok: true,
        latency_ms: 7,
        bytes: 100,
        error: (!ok).then(|| "wrong bytes".to_owned()),
    };
    for t in 1..=40 {
        s.record_probe(&probe(5, 1000, t, true), 2).await.unwrap();
    }
    let v = s.record_probe(&probe(6, 1001, 1, false), 2).await.unwrap();
    assert!(!v.lost());
    let v = s.record_probe(&probe(6, 1001, 2, false), 2).await.unwrap();
    assert_eq!((v.failures_in_a_row, v.lost_at), (2, Some(2)));
    let views = s.probe_views(&[5, 6, 7]).await.unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!((views[&5].probes_ok, views[&5].last_probe), (40, 40));
    assert!(views[&6].lost());
    let samples = s.probe_samples(0).await.unwrap();
    assert_eq!(samples.iter().filter(|p| p.provider == 1000).count(), 32, "the last 32 kept");
    assert!(samples.iter().filter(|p| p.provider == 1000).all(|p| p.block > 8));
    assert_eq!(s.probe_samples(31).await.unwrap().len(), 10, "only those since block 31");
    let totals = s.probe_totals().await.unwrap();
    assert_eq!((totals[&1000].ok, totals[&1000].failed, totals[&1000].lost), (40, 0, 0));
    assert_eq!((totals[&1001].ok, totals[&1001].failed, totals[&1001].lost), (0, 2, 1));
    // A root block that does not check weighs in the score, not in the replica's standing.
    let v = s.record_probe(&ProbeRecord { block_ok: false, ..probe(5, 1000, 41, true) }, 2).await;
    assert!(v.unwrap().last_probe_ok);
    let last = s.probe_samples(41).await.unwrap();
    assert_eq!(last.iter().map(|p| p.ok).collect::<Vec<_>>(), [false]);
    // A lost replica is found again after as many verified probes in a row as lost it.
    let v = s.record_probe(&probe(6, 1001, 3, true), 2).await.unwrap();
    assert!(v.lost() && v.oks_in_a_row == 1);
    let v = s.record_probe(&probe(6, 1001, 4, true), 2).await.unwrap();
    assert!(!v.lost());
    assert_eq!(s.probe_totals().await.unwrap()[&1001].lost, 0);
    s.record_probe(&probe(6, 1001, 5, false), 2).await.unwrap();
    s.record_probe(&probe(6, 1001, 6, false), 2).await.unwrap();
    // Suspensions: set, listed, lifted.
    s.set_suspended(1002, true, Some("maintenance"), 10).await.unwrap();
    assert_eq!(s.suspended_providers().await.unwrap(), [1002]);
    let rules = estuary_oracle::domain::provider::ScoreRules::default();
    let listed = s.providers(Some(100), &rules).await.unwrap();
    let p = listed.iter().find(|p| p.provider == 1002).expect("a suspended provider is listed");
    assert!(p.suspended);
    let p = listed.iter().find(|p| p.provider == 1001).expect("a probed provider is listed");
    assert_eq!((p.probes_failed, p.replicas_lost, p.last_failure), (4, 1, Some(6)));
    s.set_suspended(1002, false, None, 11).await.unwrap();
    assert!(s.suspended_providers().await.unwrap().is_empty());
    assert_eq!(s.provider_overrides().await.unwrap()[0].updated_ms, 11);
    // Levels are made for the pieces of orders that may hold deals, and dropped with them.
    {
        use estuary_oracle::{
            domain::deal::{Backend, OrderState},
            store::OrderRecord,
        };
        let order = |piece: &str, state| OrderRecord {
            backend: Backend::Perpetual,
            contract: Address::repeat_byte(0x33),
            piece_cid: piece.into(),
            piece_v1: vec![1],
            payload_cid: "bafy".into(),
            padded_size: 128,
            car_size: 100,
            replicas_target: 3,
            state,
            order_id: None,
            tx_hash: None,
            error: None,
            funding: None,
            sent_block: 6,
            created_ms: 0,
            updated_ms: 0,
        };
        let (r, mut f) = (order("r", OrderState::Sending), order("f", OrderState::Sending));
        f.contract = Address::repeat_byte(0x34);
        assert!(s.record_order(&order("q", OrderState::Sending), 1).await.unwrap());
        assert!(s.record_order(&r, 2).await.unwrap());
        assert!(s.record_order(&f, 3).await.unwrap());
        s.order_refused(f.contract, "f", "never to be sent", true, 4).await.unwrap();
        // The oldest order first, within the limit; a failed order's piece gets none.
        assert_eq!(s.pieces_without_levels(100, 10).await.unwrap(), ["q", "r"]);
        assert_eq!(s.pieces_without_levels(100, 1).await.unwrap(), ["q"]);
        // A piece that could not be made waits, backing off; made, its attempts are forgotten.
        let backoff = |n: u32| 1000u64 << n;
        assert_eq!(s.level_attempt("q", 100, "no hot copy", backoff).await.unwrap(), 1);
        assert_eq!(s.pieces_without_levels(100, 10).await.unwrap(), ["r"]);
        assert_eq!(s.pieces_without_levels(1100, 10).await.unwrap(), ["q", "r"]);
        assert_eq!(s.level_attempt("q", 1100, "no hot copy", backoff).await.unwrap(), 2);
        assert_eq!(s.pieces_without_levels(3099, 10).await.unwrap(), ["r"], "2 s after");
        assert_eq!(s.pieces_without_levels(3100, 10).await.unwrap(), ["q", "r"]);
        s.put_piece_levels("q", &levels).await.unwrap();
        assert_eq!(s.pieces_without_levels(3100, 10).await.unwrap(), ["r"]);
        assert_eq!(s.level_attempt("r", 0, "no hot copy", backoff).await.unwrap(), 1);
        // "p" has no order: its levels go; probes before block 40 go; "q"'s levels stay, and
        // "r"'s attempts (its order lives).
        assert_eq!(s.prune_probes(40).await.unwrap(), 1 + 30 + 6);
        assert!(s.pieces_without_levels(0, 10).await.unwrap().is_empty(), "r waits");
        assert_eq!(s.piece_levels("p").await.unwrap(), None);
        assert!(s.piece_levels("q").await.unwrap().is_some());
        assert_eq!(s.probe_samples(0).await.unwrap().len(), 2);
        assert!(s.probe_views(&[6]).await.unwrap()[&6].lost(), "replica rows are kept");
    }
}

/// Where a piece's blocks lie is recorded once, in batches, and counts only once finished (an
/// unfinished attempt is forgotten); a block's places are found only in pieces whose blocks
/// went; a piece with a live pin keeps its places and its mark, and a piece whose blocks went
/// keeps its levels with no order left.
async fn cold_blocks_placed_marked_and_pruned(s: &Store) {
    use estuary_oracle::{domain::probe::LevelsBuilder, store::BlockPlace};
    ingest(s, &[event(1, 5, 0)], cursor(5)).await;
    let (p, q) = ("bafkzcibcaaces3p", "bafkzcibcaaces3q");
    reported_with(s, &key(1), p).await;
    let (a, b, c) = (vec![1u8, 2, 3], vec![4u8, 5], vec![6u8]);
    // An attempt cut short, then one that finishes: only the second's places are kept.
    let id = s.start_piece_blocks(p).await.unwrap().unwrap();
    s.add_piece_blocks(id, &[(c.clone(), 999, 1)]).await.unwrap();
    assert!(!s.piece_blocks_kept(p).await.unwrap(), "not finished");
    s.mark_blocks_cold(&[p.to_owned()], 4).await.unwrap();
    assert!(s.cold_block_pieces().await.unwrap().is_empty(), "unfinished: never cold");
    let id = s.start_piece_blocks(p).await.unwrap().unwrap();
    s.add_piece_blocks(id, &[(a.clone(), 10, 100), (b.clone(), 200, 50)]).await.unwrap();
    s.finish_piece_blocks(id, 2).await.unwrap();
    assert_eq!(s.start_piece_blocks(p).await.unwrap(), None, "recorded once");
    let q_id = s.start_piece_blocks(q).await.unwrap().unwrap();
    s.add_piece_blocks(q_id, &[(a.clone(), 7, 100)]).await.unwrap();
    s.finish_piece_blocks(q_id, 1).await.unwrap();
    // 2,500 places: written in batches.
    let r = s.start_piece_blocks("bafkzcibcaaces3r").await.unwrap().unwrap();
    let many: Vec<_> = (0..2500u32).map(|i| (i.to_be_bytes().to_vec(), u64::from(i), 1)).collect();
    s.add_piece_blocks(r, &many).await.unwrap();
    s.finish_piece_blocks(r, 2500).await.unwrap();
    assert!(s.piece_blocks_kept(p).await.unwrap());
    assert!(!s.piece_blocks_kept("bafkzcibcaaces3s").await.unwrap());
    assert!(s.cold_block_places(&a, 4).await.unwrap().is_empty(), "no piece went cold");
    s.mark_blocks_cold(&[p.to_owned()], 5).await.unwrap();
    s.mark_blocks_cold(&[p.to_owned()], 6).await.unwrap();
    assert!(s.blocks_cold(p).await.unwrap() && !s.blocks_cold(q).await.unwrap());
    assert_eq!(
        s.cold_block_places(&a, 4).await.unwrap(),
        [BlockPlace { piece: p.into(), at: 10, len: 100 }]
    );
    assert!(s.cold_block_places(&c, 4).await.unwrap().is_empty(), "the cut attempt's");
    assert_eq!(s.cold_block_places(&b, 4).await.unwrap()[0].at, 200);
    assert_eq!(s.cold_block_pieces().await.unwrap().into_iter().collect::<Vec<_>>(), [p]);
    // Its levels, with no order: kept while its blocks are gone.
    let data = vec![7u8; 1000];
    let info = estuary_piece::commp::commp(&data).unwrap();
    let mut builder = LevelsBuilder::new(info.padded_size).unwrap();
    builder.update(&data).unwrap();
    s.put_piece_levels(p, &builder.finish(&info.commp).unwrap()).await.unwrap();
    // q and r: no live pin: their places go (with their rows).
    assert_eq!(s.prune_probes(0).await.unwrap(), (1 + 1) + (2500 + 1));
    assert!(s.piece_levels(p).await.unwrap().is_some());
    assert!(s.piece_blocks_kept(p).await.unwrap());
    assert!(!s.piece_blocks_kept(q).await.unwrap());
    // Back here: the mark goes, then, with no order, its levels.
    s.mark_blocks_hot(p).await.unwrap();
    assert!(s.cold_block_places(&a, 4).await.unwrap().is_empty());
    assert!(s.cold_block_pieces().await.unwrap().is_empty());
    assert_eq!(s.prune_probes(0).await.unwrap(), 1);
    assert!(s.piece_blocks_kept(p).await.unwrap(), "kept while its pin lives");
}

async fn whole_suite(fresh: impl AsyncFn() -> Store) {
    cold_blocks_placed_marked_and_pruned(&fresh().await).await;
    probes_kept_pruned_totalled_and_suspensions(&fresh().await).await;
    claims_are_fair_between_requesters(&fresh().await).await;
    gc_and_its_holds_exclude_each_other(&fresh().await).await;
    requests_and_cursors(&fresh().await).await;
    job_lifecycle(&fresh().await).await;
    pins_listed_filtered_paged(&fresh().await).await;
    pins_deleted_and_replaced(&fresh().await).await;
    tokens_kept_as_digests(&fresh().await).await;
    report_transactions_kept_until_settled(&fresh().await).await;
    uploads_owned_within_quotas(&fresh().await).await;
    deal_orders_bound_once_and_reorgs_undone(&fresh().await).await;
    buckets_take_each_piece_once(&fresh().await).await;
    dao_pins_are_the_daos_to_fund(&fresh().await).await;
    dedicated_buckets_keep_to_their_own(&fresh().await).await;
    contract_proposals_bound_folded_and_rewound(&fresh().await).await;
    split_pieces_recorded_whole_ordered_and_kept(&fresh().await).await;
}

#[tokio::test]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU32::new(0);
    whole_suite(async || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Store::open(&DatabaseUrl::Sqlite(dir.path().join(format!("{i}.sqlite")))).await.unwrap()
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
        Store::open(&DatabaseUrl::Postgres(pg.url().replace("/postgres", &format!("/{db}"))))
            .await
            .unwrap()
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
    let url = DatabaseUrl::Postgres(pg.url());
    let first = Store::open(&url).await.unwrap();
    let events: Vec<_> = (1..=JOBS).map(|i| event(i, 5, i)).collect();
    ingest(&first, &events, cursor(5)).await;
    let mut processes = vec![Arc::new(first)];
    for _ in 0..3 {
        processes.push(Arc::new(Store::open(&url).await.unwrap()));
    }
    let mut tasks = Vec::new();
    for (p, store) in processes.iter().enumerate() {
        for _ in 0..4 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(job) = store.claim(10_000, 1_000_000).await.unwrap() {
                    got.push((p, job.key.id.to_string()));
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

/// The maxima `Store::latest_known_block` reads (deal events' blocks, market reads' epochs) are
/// each read from an index's end, not found by a scan of the table (SQLite's plan says which).
#[tokio::test]
async fn the_latest_known_block_is_read_from_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _store = Store::open(&DatabaseUrl::Sqlite(path.clone())).await.unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for (table, column, index) in [
        ("deal_events", "block_number", "deal_events_block"),
        ("deal_market", "epoch", "deal_market_epoch"),
    ] {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN SELECT MAX({column}) FROM {table}"))
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(plan.iter().any(|(_, _, _, detail)| detail.contains(index)), "{table}: {plan:?}");
    }
}
