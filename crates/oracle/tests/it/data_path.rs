//! The data path under attack and under faults, with the real workers, store and blockstore
//! (pins made through the Pinning Service API, which report to no chain):
//! - four slow-drip requests do not stall a fifth honest one (per-requester caps, the
//!   throughput floor, retries behind fresh work);
//! - garbage collection, raced against new pins of shared blocks, never deletes a block a live
//!   pin needs, and frees exactly what the unpinned pins alone held;
//! - a failing blockstore pauses the workers instead of quarantining the backlog, and an outage
//!   makes the gateway answer 503 and the reconciler requeue nothing.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, SystemTime},
};

use alloy::primitives::{Address, Bytes};
use axum::{Router, body::Body, extract::Path, response::IntoResponse, routing::get};
use cid::Cid;
use estuary_dag::{
    Block,
    block::{DAG_PB, RAW},
    car::{encode_section, header_v1},
    pb::{PbLink, PbNode},
    walk::{self, WalkLimits},
};
use estuary_oracle::{
    api::{ApiState, router},
    blockstore::{Blockstore, BlockstoreError, FsBlockstore, Listed, Source},
    domain::{
        FailureCode, JobKey, JobSource, JobState, now_ms,
        pinning::{Pin, new_requestid},
        state::Policy,
    },
    fetch::{FetchLimits, Fetcher, NetPolicy},
    gc::{Collector, GcGate, GcPolicy},
    pipeline::{
        Pipeline, WorkerConfig,
        report::{ReportError, Reported, Reporter},
    },
    store::{DatabaseUrl, Store},
};

/// Pins made through the Pinning Service API have no one on chain to tell: the pipeline never
/// calls its reporter for them, so this one refuses loudly if it ever is.
struct ApiOnly;

impl Reporter for ApiOnly {
    async fn report_pinned(
        &self,
        key: &JobKey,
        _: &[u8],
        _: Bytes,
        _: u64,
    ) -> Result<Reported, ReportError> {
        panic!("{key} was reported on chain, but API pins have no chain to report to")
    }

    async fn report_failed(
        &self,
        key: &JobKey,
        _: &[u8],
        _: FailureCode,
        _: &str,
    ) -> Result<Reported, ReportError> {
        panic!("{key}'s failure was reported on chain, but API pins have no chain")
    }
}

/// A directory on tmpfs when the machine has one: these tests make thousands of blocks and
/// database commits, and what they test is not how fast the disk syncs.
fn fast_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    match shm.is_dir().then(|| tempfile::tempdir_in(shm)) {
        Some(Ok(dir)) => dir,
        _ => tempfile::tempdir().unwrap(),
    }
}

async fn serve(app: Router) -> (String, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), addr)
}

fn car(root: Cid, blocks: &[Block]) -> Vec<u8> {
    let mut out = header_v1(&[root]);
    for b in blocks {
        encode_section(b, &mut out);
    }
    out
}

/// A gateway that answers every CID with `body`, one `chunk` every `every`.
fn dripping(body: Vec<u8>, chunk: usize, every: Duration) -> Router {
    Router::new().route(
        "/ipfs/{cid}",
        get(move |Path(_c): Path<String>| {
            let body = body.clone();
            async move {
                let stream = futures_util::stream::unfold(0usize, move |at| {
                    let body = body.clone();
                    async move {
                        if at >= body.len() {
                            return None;
                        }
                        tokio::time::sleep(every).await;
                        let end = (at + chunk).min(body.len());
                        Some((Ok::<_, std::io::Error>(body[at..end].to_vec()), end))
                    }
                });
                Body::from_stream(stream).into_response()
            }
        }),
    )
}

/// A raw block of `len` bytes from `seed`.
fn leaf(seed: u64, len: usize) -> Block {
    Block::new(cid::Version::V1, RAW, crate::support::noise(len, seed))
}

/// A dag-pb node linking to `children`.
fn node(children: &[&Block], salt: u64) -> Block {
    let node = PbNode {
        links: children
            .iter()
            .map(|c| PbLink { hash: c.cid, name: Some(String::new()), tsize: None })
            .collect(),
        data: Some(salt.to_be_bytes().to_vec()),
    };
    Block::new(cid::Version::V1, DAG_PB, node.encode())
}

async fn pin(store: &Store, account: &str, root: Cid, origins: &[String]) -> JobKey {
    let requestid = new_requestid();
    let checked = Pin {
        cid: root.to_string(),
        name: None,
        origins: origins.to_vec(),
        meta: Default::default(),
    }
    .check()
    .unwrap();
    store.create_pin(account, &requestid, &checked, now_ms()).await.unwrap();
    format!("api/{account}/{requestid}").parse().unwrap()
}

fn workers(n: usize, dir: &std::path::Path) -> WorkerConfig {
    WorkerConfig {
        idle: Duration::from_millis(20),
        policy: Policy { max_attempts: 5, backoff_ms: 300, max_backoff_ms: 5_000 },
        probe_every: Duration::from_millis(100),
        ..WorkerConfig::new(n, dir.join("packed"))
    }
}

fn loopback() -> NetPolicy {
    NetPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()])
}

async fn state(store: &Store, key: &JobKey) -> (JobState, u32) {
    let job = store.job(key).await.unwrap().unwrap();
    (job.status, job.attempts)
}

/// Waits until `done` holds of the jobs' states (60 s at most).
async fn until(store: &Store, keys: &[JobKey], done: impl Fn(&[(JobState, u32)]) -> bool) {
    for _ in 0..600 {
        let mut states = Vec::new();
        for key in keys {
            states.push(state(store, key).await);
        }
        if done(&states) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the jobs never got there");
}

fn reported(states: &[(JobState, u32)]) -> bool {
    states.iter().all(|(s, _)| *s == JobState::Reported)
}

/// The four drips send 100 bytes a second; the honest origin sends at once.
async fn drips_and_an_honest_request(drippers: [&str; 4]) {
    let dir = fast_dir();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("data")).unwrap());
    let mut drip_keys = Vec::new();
    for (i, account) in drippers.iter().enumerate() {
        let data = leaf(100 + i as u64, 20_000);
        let (url, _) = serve(dripping(
            car(data.cid, std::slice::from_ref(&data)),
            100,
            Duration::from_secs(1),
        ))
        .await;
        let port = url.rsplit(':').next().unwrap().to_owned();
        let origin = format!("/ip4/127.0.0.1/tcp/{port}/http");
        drip_keys.push(pin(&store, account, data.cid, &[origin]).await);
    }
    let honest = leaf(7, 20_000);
    let (url, _) =
        serve(dripping(car(honest.cid, std::slice::from_ref(&honest)), 1 << 20, Duration::ZERO))
            .await;
    let port = url.rsplit(':').next().unwrap().to_owned();
    let alice =
        pin(&store, "alice", honest.cid, &[format!("/ip4/127.0.0.1/tcp/{port}/http")]).await;

    let limits = FetchLimits {
        grace: Duration::from_millis(1500),
        min_throughput: 4 << 10,
        no_progress: Duration::from_secs(30),
        ..FetchLimits::default()
    };
    let fetcher = Fetcher::with_policy(vec![], limits, loopback());
    let pipeline = Pipeline::new(
        store.clone(),
        Arc::clone(&blocks),
        fetcher,
        Arc::new(ApiOnly),
        workers(4, dir.path()),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));

    until(&store, std::slice::from_ref(&alice), reported).await;
    // The honest request is done while the drips are still being tried: it did not wait for
    // them to use up their attempts.
    for key in &drip_keys {
        let (s, attempts) = state(&store, key).await;
        assert!(matches!(s, JobState::Queued | JobState::Fetching), "{key}: {s:?}");
        assert!(attempts < 5, "{key}: {attempts} attempts");
    }
    // And a drip is cut by the throughput floor, not held for the hour-long budget.
    until(&store, &drip_keys, |states| states.iter().all(|(_, attempts)| *attempts >= 1)).await;
    let job = store.job(&drip_keys[0]).await.unwrap().unwrap();
    assert!(job.error.as_deref().unwrap_or("").contains("too slow"), "{:?}", job.error);
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn four_slow_drips_from_one_requester_do_not_stall_a_fifth_honest_request() {
    // One requester may hold all workers but one: the fourth worker is free for alice at once.
    drips_and_an_honest_request(["mallory"; 4]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn four_slow_drips_from_four_requesters_do_not_stall_a_fifth_honest_request() {
    // Four requesters take the four workers; each drip is cut after its grace, retries wait
    // their backoff and then behind fresh work, so alice gets the first worker that frees up.
    drips_and_an_honest_request(["m1", "m2", "m3", "m4"]).await;
}

/// Every block under `root` is in `blocks`.
fn verifies(blocks: &FsBlockstore, root: Cid) -> bool {
    walk::dfs(root, WalkLimits::default(), Source(blocks), |_, _| {}).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_raced_against_new_pins_of_shared_blocks_frees_only_what_the_unpinned_held() {
    let dir = fast_dir();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("data")).unwrap());
    // 1,000 DAGs: a root, a leaf of its own, and a leaf it shares with its neighbour (2k, 2k+1).
    let shared: Vec<Block> = (0..500).map(|k| leaf(1_000_000 + k, 64)).collect();
    let own: Vec<Block> = (0..1000).map(|i| leaf(i, 64 + (i as usize % 7))).collect();
    let roots: Vec<Block> = (0..1000).map(|i| node(&[&own[i], &shared[i / 2]], i as u64)).collect();
    for b in shared.iter().chain(&own).chain(&roots) {
        blocks.put(&b.cid, &b.data).unwrap();
    }
    let mut keys = Vec::new();
    for r in &roots {
        keys.push(pin(&store, "alice", r.cid, &[]).await);
    }
    let fetcher = Fetcher::new(vec![], FetchLimits::default())
        .with_gc_gate(GcGate::new(store.clone(), Duration::from_secs(60)));
    let pipeline = Pipeline::new(
        store.clone(),
        Arc::clone(&blocks),
        fetcher,
        Arc::new(ApiOnly),
        workers(4, dir.path()),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));
    until(&store, &keys, reported).await;

    // Half are unpinned (the odd ones), which shares nothing with the even ones but a leaf.
    for key in keys.iter().skip(1).step_by(2) {
        assert!(store.delete_pin("alice", key.id.as_str(), now_ms()).await.unwrap());
    }
    // New pins reuse the own leaves of the first 100 unpinned DAGs; their roots and new leaves
    // arrive as an upload would.
    let fresh: Vec<Block> = (0..100).map(|j| leaf(2_000_000 + j, 80)).collect();
    let new_roots: Vec<Block> =
        (0..100).map(|j| node(&[&own[2 * j + 1], &fresh[j]], 5_000 + j as u64)).collect();
    for b in fresh.iter().chain(&new_roots) {
        blocks.put(&b.cid, &b.data).unwrap();
    }
    let mut new_keys = Vec::new();
    for r in &new_roots {
        new_keys.push(pin(&store, "bob", r.cid, &[]).await);
    }
    // What the unpinned alone held: their roots and own leaves, but the leaves the new pins use.
    let expected: u64 =
        (1..1000).step_by(2).map(|i| (roots[i].data.len() + own[i].data.len()) as u64).sum::<u64>()
            - (0..100).map(|j| own[2 * j + 1].data.len() as u64).sum::<u64>();

    // Collect while the workers pin the new ones (no grace: every block is old enough).
    let collector = Collector::new(
        store.clone(),
        Arc::clone(&blocks),
        dir.path().join("packed"),
        GcPolicy { grace: Duration::ZERO, packed_retention: None, cold: None },
        FetchLimits::default().walk(),
    );
    let report = collector.run().await.unwrap();
    assert_eq!(report.freed.bytes, expected);
    assert_eq!(report.freed.blocks, 500 + 500 - 100);
    assert_eq!(report.freed.cars, 500, "the unpinned pins' packed CARs");
    let totals = store.gc_totals(now_ms()).await.unwrap();
    assert_eq!((totals.runs, totals.freed_bytes), (1, expected));

    until(&store, &new_keys, reported).await;
    shutdown.cancel();
    running.await.unwrap();
    for (i, r) in roots.iter().enumerate() {
        assert_eq!(verifies(&blocks, r.cid), i % 2 == 0, "pin {i}");
    }
    for r in &new_roots {
        assert!(verifies(&blocks, r.cid));
    }
    // Nothing is left to collect, and a second run frees nothing a pin needs.
    let again = collector.run().await.unwrap();
    assert_eq!(again.freed.blocks, 0);
    let mut held = 0;
    blocks
        .list(&mut |_| {
            held += 1;
            true
        })
        .unwrap();
    assert_eq!(held, 500 + 500 + 500 + 100 + 100 + 100, "shared, own, roots of the live; new");
}

/// A blockstore that fails every operation while broken: its disk full, or its server (S3)
/// down.
struct Failing {
    inner: FsBlockstore,
    mode: AtomicU8,
}

const WORKING: u8 = 0;
const FULL: u8 = 1;
const DOWN: u8 = 2;

impl Failing {
    fn check(&self) -> Result<(), BlockstoreError> {
        match self.mode.load(Ordering::SeqCst) {
            FULL => Err(BlockstoreError::Io(std::io::Error::from(std::io::ErrorKind::StorageFull))),
            DOWN => Err(BlockstoreError::Io(std::io::Error::other("S3: connection refused"))),
            _ => Ok(()),
        }
    }
}

impl Blockstore for Failing {
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        self.check()?;
        self.inner.put(cid, data)
    }
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        self.check()?;
        self.inner.get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError> {
        self.check()?;
        self.inner.has(cid)
    }
    fn list(&self, each: &mut dyn FnMut(Listed) -> bool) -> Result<(), BlockstoreError> {
        self.check()?;
        self.inner.list(each)
    }
    fn delete(&self, cid: &Cid) -> Result<(), BlockstoreError> {
        self.check()?;
        self.inner.delete(cid)
    }
    fn put_staged(&self, stage: &str, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        self.check()?;
        self.inner.put_staged(stage, cid, data)
    }
    fn get_staged(&self, stage: &str, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        self.check()?;
        self.inner.get_staged(stage, cid)
    }
    fn promote(&self, stage: &str, cid: &Cid) -> Result<(), BlockstoreError> {
        self.check()?;
        self.inner.promote(stage, cid)
    }
    fn stages(&self) -> Result<Vec<(String, SystemTime)>, BlockstoreError> {
        self.check()?;
        self.inner.stages()
    }
    fn remove_stage(&self, stage: &str) -> Result<u64, BlockstoreError> {
        self.check()?;
        self.inner.remove_stage(stage)
    }
}

/// The token of the API served by [`api`].
const OPERATOR_TOKEN: &str = "operator-token";

async fn api<B: Blockstore>(
    store: &Store,
    blocks: Arc<B>,
    faults: estuary_oracle::pipeline::Faults,
    dir: &std::path::Path,
) -> String {
    let (_tx, watch) = tokio::sync::watch::channel(estuary_chain::WatchState::default());
    std::mem::forget(_tx);
    let state = ApiState {
        store: store.clone(),
        blocks,
        packed_dir: dir.join("packed"),
        uploads_dir: dir.join("uploads"),
        source: JobSource::Contract { chain: 1, address: Address::ZERO },
        watch,
        api_token: Some(OPERATOR_TOKEN.to_owned()),
        delegates: vec![],
        p2p: None,
        gateway_limits: Default::default(),
        faults,
        policy: estuary_oracle::api::ApiPolicy::default(),
        bucket_size: None,
        aggregates: Default::default(),
        cold: None,
        wake: Default::default(),
        history: Default::default(),
    };
    serve(router(Arc::new(state))).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_blockstore_pauses_the_workers_instead_of_quarantining_the_backlog() {
    let dir = fast_dir();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
    let blocks = Arc::new(Failing {
        inner: FsBlockstore::open(dir.path().join("data")).unwrap(),
        mode: AtomicU8::new(FULL),
    });
    let dags: Vec<Block> = (0..12).map(|i| leaf(300 + i, 3000)).collect();
    let mut body = header_v1(&[dags[0].cid]);
    for d in &dags {
        encode_section(d, &mut body);
    }
    let (gateway, _) = serve(dripping(body, 1 << 20, Duration::ZERO)).await;
    let mut keys = Vec::new();
    for d in &dags {
        keys.push(pin(&store, "alice", d.cid, &[]).await);
    }
    let fetcher = Fetcher::new(vec![gateway], FetchLimits::default());
    let pipeline = Pipeline::new(
        store.clone(),
        Arc::clone(&blocks),
        fetcher,
        Arc::new(ApiOnly),
        workers(2, dir.path()),
    );
    let faults = pipeline.faults();
    let base = api(&store, Arc::clone(&blocks), faults.clone(), dir.path()).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(pipeline.run(shutdown.clone()));

    for _ in 0..100 {
        if faults.paused().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(faults.paused().is_some(), "the workers paused");
    // Paused for a while (many probe rounds): nothing is quarantined, no attempt is counted,
    // and the backlog is not churned through (only the jobs that met the fault were touched).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut touched = 0;
    for key in &keys {
        let job = store.job(key).await.unwrap().unwrap();
        assert!(
            matches!(job.status, JobState::Queued | JobState::Fetching),
            "{key}: {:?}",
            job.status
        );
        assert_eq!(job.attempts, 0, "{key}");
        touched += usize::from(job.error.is_some());
    }
    assert!(touched <= 2, "{touched} jobs met the fault: the workers did not pause");
    let health: serde_json::Value =
        reqwest::get(format!("{base}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(
        (health["status"].as_str(), health["reason"].as_str()),
        (Some("paused"), Some("storage_unavailable"))
    );
    // `/metrics` is the operator's.
    let metrics = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("estuary_workers_paused 1"), "{metrics}");
    // The store comes back: the probe resumes the workers and everything gets pinned.
    blocks.mode.store(WORKING, Ordering::SeqCst);
    until(&store, &keys, reported).await;
    assert!(faults.paused().is_none());
    let health: serde_json::Value =
        reqwest::get(format!("{base}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    shutdown.cancel();
    running.await.unwrap();

    // An outage (S3 down): the gateway answers 503 for what it cannot read, not 404, and the
    // reconciler takes it for a fault, not damage, and requeues nothing.
    blocks.mode.store(DOWN, Ordering::SeqCst);
    let r = reqwest::get(format!("{base}/ipfs/{}?format=raw", dags[0].cid)).await.unwrap();
    assert_eq!(r.status(), 503);
    let r = reqwest::get(format!("{base}/ipfs/{}?format=car", dags[3].cid)).await.unwrap();
    assert_eq!(r.status(), 503);
    let done = estuary_oracle::reconcile::reconcile(&store, &blocks).await.unwrap();
    assert_eq!((done.checked, done.requeued.len(), done.faults.len()), (12, 0, 12));
    for key in &keys {
        assert_eq!(state(&store, key).await.0, JobState::Reported, "{key}");
    }
    blocks.mode.store(WORKING, Ordering::SeqCst);
    let done = estuary_oracle::reconcile::reconcile(&store, &blocks).await.unwrap();
    assert_eq!((done.requeued.len(), done.faults.len()), (0, 0));
}
