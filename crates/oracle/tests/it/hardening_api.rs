//! The API against the attacks of the hardening review (issue 15) it owns, each over real HTTP on
//! loopback: anonymous uploads cannot fill the disk (refused, quotas, expiry), uploads below the
//! free-space floor get 507 and fetches wait, slowloris and other slow clients are cut, the
//! gateway has its own concurrency limit, CORS admits the configured origins only, and public
//! errors carry a reason code but no internal detail. Sign-In with Ethereum, pre-signed upload
//! URLs and uploads tied to a request are driven the way a client drives them.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    signers::{SignerSync, local::PrivateKeySigner},
};
use axum::http::{StatusCode, header};
use estuary_chain::Cursor;
use estuary_dag::{
    Block, Profile,
    car::{encode_section, header_v1},
    file::import_bytes,
};
use estuary_oracle::{
    api::{
        ApiPolicy, ApiState, router,
        serve::{ServerLimits, serve},
        upload::expire_uploads,
    },
    blockstore::{Blockstore, FsBlockstore},
    domain::{
        JobId, JobKey, JobSource, JobState, JobStatus,
        auth::request_upload_message,
        now_ms,
        pinning::{Scope, secret_digest},
        request::RequestEvent,
        state::{Change, ErrorChange},
        upload::Quota,
    },
    store::{DatabaseUrl, Store},
};
use tokio_util::sync::CancellationToken;

const OCTETS: &str = "application/offset+octet-stream";
const CHAIN: u64 = 31337;
const DAPP: &str = "http://dapp.example:5173";

fn pinning() -> Address {
    Address::repeat_byte(0x11)
}

fn source() -> JobSource {
    JobSource::Contract { chain: CHAIN, address: pinning() }
}

/// A small file DAG (4 KiB chunks) and its CAR.
fn car(seed: u8, len: usize) -> (cid::Cid, Vec<Block>, Vec<u8>) {
    car_of(seed, len, 4096)
}

/// A file DAG of `chunk`-byte leaves and its CAR.
fn car_of(seed: u8, len: usize, chunk: usize) -> (cid::Cid, Vec<Block>, Vec<u8>) {
    let data = crate::support::noise(len, u64::from(seed));
    let mut opts = Profile::KuboCidV1.options();
    opts.chunk_size = chunk;
    let (root, blocks) = import_bytes(&data, opts).unwrap();
    let mut out = header_v1(&[root.cid]);
    for b in &blocks {
        encode_section(b, &mut out);
    }
    (root.cid, blocks, out)
}

struct Api {
    base: String,
    state: Arc<ApiState<FsBlockstore>>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Api {
    /// The API over a fresh store, served with `limits`, under `policy`; the operator's token is
    /// `op`, and accounts `alice` (write) and `reader` (read) have tokens of their names.
    async fn start(policy: ApiPolicy, limits: ServerLimits) -> Api {
        Self::start_with_p2p(policy, limits, None).await
    }

    /// [`start`](Self::start), with the libp2p node `p2p` behind `/p2p` and `/metrics`.
    async fn start_with_p2p(
        policy: ApiPolicy,
        limits: ServerLimits,
        p2p: Option<estuary_oracle::p2p::P2p>,
    ) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
        for (name, scope) in
            [("alice", Scope::Write), ("bob", Scope::Write), ("reader", Scope::Read)]
        {
            store.add_token(name, &secret_digest(name), scope, 1).await.unwrap();
        }
        let blocks = Arc::new(FsBlockstore::open(dir.path().join("data")).unwrap());
        let (tx, watch) = tokio::sync::watch::channel(estuary_chain::WatchState::default());
        std::mem::forget(tx);
        let state = Arc::new(ApiState {
            store,
            blocks,
            packed_dir: dir.path().join("data/packed"),
            uploads_dir: dir.path().join("data/uploads"),
            source: source(),
            watch,
            api_token: Some("op".into()),
            delegates: vec![],
            p2p,
            policy,
            bucket_size: None,
            aggregates: Default::default(),
            cold: None,
            wake: Default::default(),
            history: Default::default(),
            gateway_limits: Default::default(),
            faults: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, router(Arc::clone(&state)), limits, stop.clone()));
        Api {
            base: format!("http://{addr}"),
            state,
            client: reqwest::Client::new(),
            _dir: dir,
            stop,
        }
    }

    async fn default() -> Api {
        Self::start(policy(), ServerLimits::default()).await
    }

    fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    fn post_upload(&self, token: Option<&str>, len: usize) -> reqwest::RequestBuilder {
        let r = self
            .client
            .post(format!("{}/uploads", self.base))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn create(&self, token: &str, len: usize) -> String {
        let r = self.post_upload(Some(token), len).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        format!("{}{}", self.base, r.headers()[header::LOCATION].to_str().unwrap())
    }

    async fn patch(
        &self,
        url: &str,
        token: Option<&str>,
        offset: usize,
        bytes: &[u8],
    ) -> reqwest::Response {
        let mut r = self
            .client
            .patch(url)
            .header("tus-resumable", "1.0.0")
            .header("content-type", OCTETS)
            .header("upload-offset", offset)
            .body(bytes.to_vec());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    fn uploads_on_disk(&self) -> usize {
        std::fs::read_dir(&self.state.uploads_dir).map_or(0, |d| d.count())
    }
}

fn policy() -> ApiPolicy {
    ApiPolicy {
        siwe_domains: vec!["dapp.example:5173".into()],
        cors_origins: vec![DAPP.into()],
        ..ApiPolicy::default()
    }
}

async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

// ------------------------------------------------------------ anonymous uploads cannot fill the disk

#[tokio::test]
async fn anonymous_uploads_are_refused_and_nothing_is_written() {
    let api = Api::default().await;
    // Today's code took these: 32 GiB each, any number, no token.
    for _ in 0..3 {
        let r = api.post_upload(None, 32 << 30).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    }
    let (status, c) = code(api.post_upload(Some("not-a-token"), 10).send().await.unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let (status, c) = code(api.post_upload(Some("reader"), 10).send().await.unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    assert_eq!(api.uploads_on_disk(), 0);
    // A signature that proves nothing is no credential either.
    let r = api
        .post_upload(None, 10)
        .header("upload-metadata", "request MQ==,signature MHgwMA==")
        .send()
        .await
        .unwrap();
    assert!(
        matches!(r.status(), StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED),
        "{}",
        r.status()
    );
    assert_eq!(api.uploads_on_disk(), 0);
}

#[tokio::test]
async fn quotas_bound_each_account_and_uploads_are_their_owners() {
    let quota = Quota { max_bytes: 100_000, max_uploads: 2, max_pins: 1 };
    let api = Api::start(ApiPolicy { quota, ..policy() }, ServerLimits::default()).await;
    let (_, _, bytes) = car(1, 20_000);
    let first = api.create("alice", bytes.len()).await;
    let _second = api.create("alice", 10).await;
    // A third unfinished upload, or more bytes than the quota, are refused.
    let (status, c) = code(api.post_upload(Some("alice"), 10).send().await.unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "QUOTA_EXCEEDED"));
    let (status, c) = code(api.post_upload(Some("bob"), 100_001).send().await.unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "QUOTA_EXCEEDED"));
    // Another account does not see alice's upload, and cannot write to it.
    assert_eq!(
        api.client.head(&first).bearer_auth("bob").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.patch(&first, Some("bob"), 0, &bytes).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(api.patch(&first, None, 0, &bytes).await.status(), StatusCode::UNAUTHORIZED);
    // Finished, it stays alice's and counts against her quota: bytes stored, not in flight.
    let r = api.patch(&first, Some("alice"), 0, &bytes).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().contains_key("upload-root"));
    let usage = api.state.store.usage("alice").await.unwrap();
    assert_eq!((usage.bytes, usage.uploads), (bytes.len() as u64 + 10, 1));
    let head = api.client.head(&first).bearer_auth("alice").send().await.unwrap();
    assert_eq!(head.headers()["upload-offset"], bytes.len().to_string().as_str());
    // A finished upload is not terminated (its bytes are the owner's pin material).
    let r = api.client.delete(&first).bearer_auth("alice").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Pins count too.
    let pin =
        serde_json::json!({ "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" });
    let pins = format!("{}/pins", api.base);
    let r = api.client.post(&pins).bearer_auth("alice").json(&pin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = api.client.post(&pins).bearer_auth("alice").json(&pin).send().await.unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "QUOTA_EXCEEDED");
}

#[tokio::test]
async fn unfinished_uploads_expire_and_their_bytes_go() {
    let api = Api::start(
        ApiPolicy { upload_ttl: Duration::from_secs(1), ..policy() },
        ServerLimits::default(),
    )
    .await;
    let url = api.create("alice", 1000).await;
    let created = api.client.head(&url).bearer_auth("alice").send().await.unwrap();
    assert!(created.headers().contains_key("upload-expires"), "expiration extension");
    assert_eq!(api.patch(&url, Some("alice"), 0, &[7; 300]).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.uploads_on_disk(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Past its time and before the janitor's round: gone for the client.
    assert_eq!(api.patch(&url, Some("alice"), 300, &[7; 10]).await.status(), StatusCode::GONE);
    assert_eq!(expire_uploads(&api.state, now_ms()).await.unwrap(), 1);
    assert_eq!(api.uploads_on_disk(), 0, "the .part file is deleted");
    let id = url.rsplit('/').next().unwrap();
    assert!(api.state.store.upload(id).await.unwrap().is_none(), "and its record");
    assert_eq!(
        api.client.head(&url).bearer_auth("alice").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.state.store.usage("alice").await.unwrap().bytes, 0, "its quota is free again");
    // Termination frees it at once.
    let url = api.create("alice", 1000).await;
    let r = api
        .client
        .delete(&url)
        .bearer_auth("alice")
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.uploads_on_disk(), 0);
}

// ------------------------------------------------------------------ the free-space floor

#[tokio::test]
async fn below_the_free_space_floor_uploads_get_507() {
    let api =
        Api::start(ApiPolicy { min_free_bytes: 1 << 62, ..policy() }, ServerLimits::default())
            .await;
    let r = api.post_upload(Some("alice"), 10).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(code(r).await.1, "INSUFFICIENT_STORAGE");
    assert_eq!(api.uploads_on_disk(), 0);
    // An upload begun while there was room is refused too once the floor is reached.
    let roomy = Api::default().await;
    let url = roomy.create("alice", 100).await;
    let full = Arc::new(ApiState {
        store: roomy.state.store.clone(),
        blocks: Arc::clone(&roomy.state.blocks),
        packed_dir: roomy.state.packed_dir.clone(),
        uploads_dir: roomy.state.uploads_dir.clone(),
        source: source(),
        watch: roomy.state.watch.clone(),
        api_token: Some("op".into()),
        delegates: vec![],
        p2p: None,
        policy: ApiPolicy { min_free_bytes: 1 << 62, ..policy() },
        bucket_size: None,
        aggregates: Default::default(),
        cold: None,
        wake: Default::default(),
        history: Default::default(),
        gateway_limits: Default::default(),
        faults: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, router(full), ServerLimits::default(), roomy.stop.clone()));
    let url = url.replace(&roomy.base, &base);
    let r = roomy.patch(&url, Some("alice"), 0, &[1; 50]).await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
}

#[tokio::test]
async fn below_the_floor_a_fetch_waits_as_a_fault_and_costs_no_attempt() {
    use estuary_oracle::{
        domain::{pinning::Pin, state::Policy},
        fetch::{FetchLimits, Fetcher},
        pipeline::{
            Pipeline, WorkerConfig,
            report::{ReportError, Reported, Reporter},
        },
    };
    /// API pins report to no one: a reporter that is never called.
    struct NoChain;
    impl Reporter for NoChain {
        async fn report_pinned(
            &self,
            _: &JobKey,
            _: &[u8],
            _: Bytes,
            _: u64,
        ) -> Result<Reported, ReportError> {
            unreachable!("API pins are not reported on chain")
        }
        async fn report_failed(
            &self,
            _: &JobKey,
            _: &[u8],
            _: estuary_oracle::domain::FailureCode,
            _: &str,
        ) -> Result<Reported, ReportError> {
            unreachable!("API pins are not reported on chain")
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
    let pin = Pin {
        cid: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into(),
        name: None,
        origins: vec![],
        meta: Default::default(),
    }
    .check()
    .unwrap();
    let record =
        store.create_pin("alice", "11111111-1111-4111-8111-111111111111", &pin, 1).await.unwrap();
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("data")).unwrap());
    let pipeline = Pipeline::new(
        store.clone(),
        blocks,
        Fetcher::new(vec![], FetchLimits::default()),
        Arc::new(NoChain),
        WorkerConfig {
            workers: 1,
            lease: Duration::from_secs(60),
            policy: Policy { max_attempts: 2, backoff_ms: 10, max_backoff_ms: 20 },
            idle: Duration::from_millis(20),
            packed_dir: dir.path().join("data/packed"),
            min_free_bytes: 1 << 62,
            per_requester: 1,
            probe_every: Duration::from_secs(5),
        },
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(pipeline.run(stop.clone()));
    // Many rounds: with failures counted, two would quarantine the job (max_attempts 2).
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.cancel();
    running.await.unwrap();
    let key = JobKey {
        source: JobSource::PinningApi { account: "alice".into() },
        id: JobId::pin(&record.requestid).unwrap(),
    };
    let job = store.job(&key).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobState::Fetching, 0), "{job:?}");
    assert!(job.error.unwrap().contains("free-space floor"));
}

// ------------------------------------------------------------------ slow and numerous clients

/// Reads until the server closes the connection; how long that took.
fn time_to_close(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed());
            }
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_within_30_s_while_honest_clients_are_served() {
    // The default limits, as `estuary oracle run` has them.
    let api = Api::default().await;
    let addr = api.addr();
    let started = Instant::now();
    // 40 connections: half send nothing, half dribble a header byte every 2 s.
    let mut attackers = Vec::new();
    for i in 0..40 {
        attackers.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                return time_to_close(s, Duration::from_secs(40));
            }
            let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            s.write_all(head).unwrap();
            let closer = s.try_clone().unwrap();
            let dribble = std::thread::spawn(move || {
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_secs(2));
                    if s.write_all(b"a").is_err() {
                        return;
                    }
                }
            });
            let closed = time_to_close(closer, Duration::from_secs(40));
            let _ = dribble.join();
            closed
        }));
    }
    // Meanwhile an honest client is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = api.client.get(format!("{}/health", api.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for a in attackers {
        let closed = tokio::task::spawn_blocking(move || a.join().unwrap()).await.unwrap();
        let closed = closed.expect("the server closed the slow connection");
        assert!(closed < Duration::from_secs(30), "cut after {closed:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(35));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_and_a_client_that_stops_reading_is_dropped() {
    let limits = ServerLimits {
        idle_timeout: Duration::from_secs(1),
        max_connections: 4,
        max_per_ip: 4,
        ..ServerLimits::default()
    };
    let api = Api::start(policy(), limits).await;
    let addr = api.addr();
    // Four open connections fill the server; a fifth is closed at once.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let extra = TcpStream::connect(addr).unwrap();
    let closed = tokio::task::spawn_blocking(move || time_to_close(extra, Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(closed.is_some_and(|t| t < Duration::from_secs(2)), "{closed:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A client asks for a large response and never reads it: its connection is dropped once a
    // write has waited 1 s, and its place is free again.
    let (root, blocks, _) = car_of(9, 32 << 20, 1 << 20);
    for b in &blocks {
        api.state.blocks.put(&b.cid, &b.data).unwrap();
    }
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nonblocking(false).unwrap();
        write!(s, "GET /ipfs/{root}?format=car HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        stalled.push(s);
    }
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(r) = api.client.get(format!("{}/health", api.base)).send().await {
            served = r.status() == StatusCode::OK;
            break;
        }
    }
    assert!(served, "the stalled readers still hold every connection");
    drop(stalled);
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_and_what_arrived_is_kept() {
    let api = Api::start(
        ApiPolicy { body_timeout: Duration::from_secs(1), ..policy() },
        ServerLimits::default(),
    )
    .await;
    let url = api.create("alice", 1000).await;
    let stream = futures_util::stream::unfold(0u8, |i| async move {
        match i {
            0 => Some((Ok::<_, std::io::Error>(vec![1u8; 10]), 1)),
            _ => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                None
            }
        }
    });
    let started = Instant::now();
    let r = api
        .client
        .patch(&url)
        .bearer_auth("alice")
        .header("content-type", OCTETS)
        .header("upload-offset", 0)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["upload-offset"], "10");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_gateway_has_its_own_concurrency_limit() {
    let api = Api::start(policy().with_limits(512, 1), ServerLimits::default()).await;
    let (root, blocks, _) = car_of(3, 64 << 20, 1 << 20);
    for b in &blocks {
        api.state.blocks.put(&b.cid, &b.data).unwrap();
    }
    // One CAR being read slowly holds the gateway's one slot.
    let mut slow =
        api.client.get(format!("{}/ipfs/{root}?format=car", api.base)).send().await.unwrap();
    assert_eq!(slow.status(), StatusCode::OK);
    let _ = slow.chunk().await.unwrap();
    let busy = api.client.get(format!("{}/ipfs/{root}?format=raw", api.base)).send().await.unwrap();
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(busy).await.1, "BUSY");
    // The rest of the API is not held up.
    let r = api.client.get(format!("{}/health", api.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The client goes away: the walk stops and the slot is free again.
    drop(slow);
    let mut freed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r =
            api.client.get(format!("{}/ipfs/{root}?format=raw", api.base)).send().await.unwrap();
        if r.status() == StatusCode::OK {
            freed = true;
            break;
        }
    }
    assert!(freed, "the walk kept the slot after its client left");
}

#[tokio::test]
async fn cors_admits_the_configured_origins_and_the_gateway_admits_any() {
    let api = Api::default().await;
    let preflight = |path: &str, origin: &str| {
        api.client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", api.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,upload-length,tus-resumable")
    };
    let r = preflight("/uploads", DAPP).send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], DAPP);
    let r = preflight("/uploads", "http://evil.example").send().await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = api
        .client
        .get(format!("{}/health", api.base))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // tus clients read these in a page.
    let r = api.post_upload(Some("alice"), 10).header("origin", DAPP).send().await.unwrap();
    let exposed = r.headers()["access-control-expose-headers"].to_str().unwrap().to_owned();
    for h in ["location", "upload-offset", "upload-expires", "tus-resumable"] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    // tus discovery.
    let r = api
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/uploads", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert_eq!(r.headers()["tus-extension"], "creation,expiration,termination");
}

// ------------------------------------------------------------------ public errors

#[tokio::test]
async fn public_errors_carry_a_code_and_no_internal_detail() {
    let api = Api::default().await;
    let requester = Address::repeat_byte(2);
    ingest(&api.state.store, 5, requester, None).await;
    let key = JobKey { source: source(), id: JobId::request(U256::from(5)) };
    let detail =
        "gateway http://10.1.2.3:8080/ipfs: connection refused (os error 111); peer 12D3KooWAbc";
    let status = JobStatus { state: JobState::Queued, attempts: 0 };
    let change = Change {
        state: JobState::Queued,
        attempts: 1,
        error: ErrorChange::Set(detail.into()),
        retry_at: 0,
        release: true,
        record: None,
    };
    assert!(api.state.store.transition(&key, &status, &change, now_ms(), 0).await.unwrap());
    let url = format!("{}/requests/5", api.base);
    let public: serde_json::Value =
        api.client.get(&url).send().await.unwrap().json().await.unwrap();
    let text = public.to_string();
    assert!(
        !text.contains("10.1.2.3") && !text.contains("12D3KooW") && !text.contains("os error"),
        "{text}"
    );
    assert_eq!(public["reason_code"], "retrying");
    assert!(public["reason"].as_str().unwrap().contains("tried again"));
    let operator: serde_json::Value =
        api.client.get(&url).bearer_auth("op").send().await.unwrap().json().await.unwrap();
    assert_eq!(operator["error"], detail);
}

// ------------------------------------------------------------------ who may upload

async fn ingest(store: &Store, id: u64, requester: Address, size_hint: Option<u64>) -> cid::Cid {
    let (root, _, _) = car(u8::try_from(id % 250).unwrap(), 5_000);
    let event = RequestEvent {
        request_id: U256::from(id),
        requester,
        cid: Bytes::from(root.to_bytes()),
        block_number: id,
        block_hash: B256::repeat_byte(3),
        tx_hash: B256::from(U256::from(id)),
        log_index: 0,
        origins: Vec::new(),
        size_hint,
        refused: None,
        store: None,
    };
    let cursor = Cursor { block_number: id, block_hash: B256::repeat_byte(3) };
    store.ingest_requests("s", &source(), &[event], &[], cursor, 1).await.unwrap();
    root
}

fn sign(key: &PrivateKeySigner, text: &str) -> String {
    format!("0x{}", hex::encode(key.sign_message_sync(text.as_bytes()).unwrap().as_bytes()))
}

fn siwe_message(key: &PrivateKeySigner, domain: &str, nonce: &str) -> String {
    let now = jiff::Timestamp::now();
    let expires = now + jiff::SignedDuration::from_secs(600);
    format!(
        "{domain} wants you to sign in with your Ethereum account:\n{}\n\nUpload to Estuary.\n\nURI: http://{domain}\nVersion: 1\nChain ID: {CHAIN}\nNonce: {nonce}\nIssued At: {now}\nExpiration Time: {expires}",
        key.address().to_checksum(None)
    )
}

#[tokio::test]
async fn sign_in_with_ethereum_gives_an_upload_token_bound_to_the_address() {
    let api = Api::default().await;
    let key = PrivateKeySigner::random();
    let nonce = |api: &Api| {
        let client = api.client.clone();
        let url = format!("{}/auth/nonce", api.base);
        async move {
            let r: serde_json::Value = client.post(url).send().await.unwrap().json().await.unwrap();
            r["nonce"].as_str().unwrap().to_owned()
        }
    };
    let sign_in = |message: String, signature: String| {
        api.client
            .post(format!("{}/auth/siwe", api.base))
            .json(&serde_json::json!({ "message": message, "signature": signature }))
            .send()
    };
    let n = nonce(&api).await;
    let message = siwe_message(&key, "dapp.example:5173", &n);
    let r = sign_in(message.clone(), sign(&key, &message)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: serde_json::Value = r.json().await.unwrap();
    assert_eq!(session["account"], key.address().to_checksum(None));
    assert_eq!(session["scope"], "upload");
    let token = session["token"].as_str().unwrap().to_owned();
    // The nonce is used up.
    let (status, c) = code(sign_in(message.clone(), sign(&key, &message)).await.unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::UNAUTHORIZED, "SIGN_IN_REFUSED"));
    // Another site's message, or another signer, is refused.
    let n = nonce(&api).await;
    let evil = siwe_message(&key, "evil.example", &n);
    assert_eq!(
        sign_in(evil.clone(), sign(&key, &evil)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let m = siwe_message(&key, "dapp.example:5173", &n);
    let other = PrivateKeySigner::random();
    assert_eq!(
        sign_in(m.clone(), sign(&other, &m)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // The session uploads, as the address; it cannot pin through the API.
    let (_, _, bytes) = car(4, 10_000);
    let url = api.create(&token, bytes.len()).await;
    assert_eq!(api.patch(&url, Some(&token), 0, &bytes).await.status(), StatusCode::NO_CONTENT);
    let id = url.rsplit('/').next().unwrap();
    let record = api.state.store.upload(id).await.unwrap().unwrap();
    assert_eq!(record.account, key.address().to_checksum(None));
    let r = api.client.get(format!("{}/pins", api.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Wallet accounts have the wallet quota.
    let (status, c) =
        code(api.post_upload(Some(&token), (4 << 30) + 1).send().await.unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "QUOTA_EXCEEDED"));
}

#[tokio::test]
async fn a_pre_signed_url_allows_one_upload_of_its_size_for_its_account() {
    let api = Api::default().await;
    let presign = |body: serde_json::Value, token: &str| {
        api.client
            .post(format!("{}/uploads/presign", api.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_eq!(
        presign(serde_json::json!({ "max_bytes": 100 }), "reader").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        presign(serde_json::json!({ "max_bytes": 0 }), "alice").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let (_, _, bytes) = car(5, 8_000);
    let r = presign(serde_json::json!({ "max_bytes": bytes.len(), "expires_in": 60 }), "alice")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let grant: serde_json::Value = r.json().await.unwrap();
    let endpoint = format!("{}{}", api.base, grant["url"].as_str().unwrap());
    let create = |len: usize| {
        api.client
            .post(&endpoint)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len)
            .send()
    };
    assert_eq!(create(bytes.len() + 1).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = create(bytes.len()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = format!("{}{}", api.base, r.headers()[header::LOCATION].to_str().unwrap());
    // Once only.
    assert_eq!(create(bytes.len()).await.unwrap().status(), StatusCode::FORBIDDEN);
    // The upload URL is reached without a token, and the upload is alice's.
    assert_eq!(api.patch(&url, None, 0, &bytes).await.status(), StatusCode::NO_CONTENT);
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(api.state.store.upload(id).await.unwrap().unwrap().account, "alice");
    assert_eq!(api.state.store.usage("alice").await.unwrap().bytes, bytes.len() as u64);
    // A made-up pre-signed URL is nothing.
    let r = api
        .client
        .post(format!("{}/uploads?presigned=est_p_00", api.base))
        .header("upload-length", 5)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_upload_tied_to_a_request_is_its_requesters_up_to_its_size_hint_and_its_cid() {
    use base64::Engine;
    let api = Api::default().await;
    let key = PrivateKeySigner::random();
    let (root, blocks, bytes) = car(7, 5_000);
    assert_eq!(ingest(&api.state.store, 7, key.address(), Some(bytes.len() as u64)).await, root);
    ingest(&api.state.store, 8, key.address(), None).await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let metadata = |id: u64, signer: &PrivateKeySigner| {
        let text = request_upload_message(CHAIN, pinning(), U256::from(id));
        format!(
            "request {},signature {},filename {}",
            b64(&id.to_string()),
            b64(&sign(signer, &text)),
            b64("a.car")
        )
    };
    let create = |len: usize, meta: String| {
        api.post_upload(None, len).header("upload-metadata", meta).send()
    };
    // Someone else's signature, a request with no size hint, more than the hint: refused.
    let other = PrivateKeySigner::random();
    assert_eq!(
        create(bytes.len(), metadata(7, &other)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        create(bytes.len(), metadata(8, &key)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        create(bytes.len() + 1, metadata(7, &key)).await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(create(10, metadata(99, &key)).await.unwrap().status(), StatusCode::NOT_FOUND);
    // The request had been given up (nothing served it): its upload brings it back.
    let job = JobKey { source: source(), id: JobId::request(U256::from(7)) };
    let given_up = Change {
        state: JobState::Quarantined,
        attempts: 5,
        error: ErrorChange::Set("no source had it".into()),
        retry_at: 0,
        release: true,
        record: None,
    };
    let queued = JobStatus { state: JobState::Queued, attempts: 0 };
    assert!(api.state.store.transition(&job, &queued, &given_up, now_ms(), 0).await.unwrap());
    // The requester's own upload: the signature is not kept.
    let r = create(bytes.len(), metadata(7, &key)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = format!("{}{}", api.base, r.headers()[header::LOCATION].to_str().unwrap());
    let head = api.client.head(&url).send().await.unwrap();
    let echoed = head.headers()["upload-metadata"].to_str().unwrap();
    assert!(echoed.contains("filename") && !echoed.contains("signature"), "{echoed}");
    assert_eq!(api.patch(&url, None, 0, &bytes).await.status(), StatusCode::NO_CONTENT);
    assert!(api.state.blocks.has(&root).unwrap());
    assert_eq!(api.state.store.status(&job).await.unwrap().unwrap().state, JobState::Queued);
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(
        api.state.store.upload(id).await.unwrap().unwrap().account,
        key.address().to_checksum(None)
    );
    // Another DAG under the request's signature: refused before any block is kept.
    let (other_root, other_blocks, other_bytes) = car(77, 4_000);
    let r = create(other_bytes.len(), metadata(7, &key)).await.unwrap();
    let url = format!("{}{}", api.base, r.headers()[header::LOCATION].to_str().unwrap());
    assert_eq!(
        api.patch(&url, None, 0, &other_bytes).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert!(!api.state.blocks.has(&other_root).unwrap());
    assert!(!api.state.blocks.has(&other_blocks[0].cid).unwrap());
    assert!(api.state.blocks.has(&blocks[0].cid).unwrap());
}

/// The oracle's libp2p node takes no more inbound connections than `--p2p-max-connections`
/// (finding 6: no connection limits), and `/metrics` and `/p2p` show what Bitswap's limits
/// (streams, wants, bytes per peer, unsolicited blocks) turned away. The limits themselves are
/// tested in `estuary-p2p`'s `exchange` tests.
#[tokio::test]
async fn libp2p_connections_past_the_limit_are_refused_and_the_limits_are_visible() {
    use futures::StreamExt;
    use libp2p::{noise, swarm::SwarmEvent, tcp, yamux};
    let dir = tempfile::tempdir().unwrap();
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("blocks")).unwrap());
    let config = estuary_oracle::config::P2pConfig {
        p2p_listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        p2p_max_connections: 1,
        p2p_peer_bytes_per_second: 1 << 20,
    };
    let stop = CancellationToken::new();
    let p2p =
        estuary_oracle::p2p::P2p::start(&dir.path().join("p2p.key"), &config, blocks, None, stop)
            .await
            .unwrap();
    let addr = p2p.addrs()[0].clone();
    let (events, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    for client in 0..2 {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.dial(addr.clone()).unwrap();
        let events = events.clone();
        tokio::spawn(async move {
            loop {
                let outcome = match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => "up",
                    SwarmEvent::ConnectionClosed { .. }
                    | SwarmEvent::OutgoingConnectionError { .. } => "refused",
                    _ => continue,
                };
                if events.send((client, outcome)).is_err() {
                    return;
                }
            }
        });
    }
    let mut refused = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while refused == 0 {
            if let Some((_, "refused")) = outcomes.recv().await {
                refused += 1;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(p2p.peers(), 1, "one connection kept, one refused");

    let api = Api::start_with_p2p(policy(), ServerLimits::default(), Some(p2p)).await;
    let metrics =
        api.client.get(format!("{}/metrics", api.base)).bearer_auth("op").send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    for name in [
        "estuary_bitswap_streams_refused_total 0",
        "estuary_bitswap_wants_ignored_total 0",
        "estuary_bitswap_blocks_throttled_total 0",
        "estuary_bitswap_unsolicited_bytes_total 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let info: serde_json::Value =
        api.client.get(format!("{}/p2p", api.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["peers"], 1);
    assert_eq!(info["limits"]["streams_refused"], 0);
}
