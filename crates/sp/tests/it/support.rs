//! A chain with the contracts, HTTP origins that misbehave on demand, CARs, agent processes,
//! and the client's side (orders and proposals), which the oracle will play later.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
};
use axum::{
    Router,
    body::Body,
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cid::Cid;
use estuary_chain::devnet::{self, LocalChain};
use estuary_contracts::{DealClient, PerpetualStorage};
use estuary_dag::{
    Block,
    car::{encode_section, header_v1},
};
use serde_json::Value;
use tokio::process::{Child, Command};

/// Seconds per block of the test chains.
pub const BLOCK_TIME: f64 = 0.25;

/// The shared local chain ([`LocalChain`]: the contracts and the simulated network, miners
/// f01000–f01002 controlled by accounts 1–3), mining a block every `block_time` (and one per
/// transaction), with the client's side of these tests.
pub struct Chain {
    local: LocalChain,
    /// Seconds per block.
    pub block_time: f64,
}

impl std::ops::Deref for Chain {
    type Target = LocalChain;
    fn deref(&self) -> &LocalChain {
        &self.local
    }
}

impl Chain {
    /// The chain with a block every [`BLOCK_TIME`].
    pub async fn start() -> Chain {
        Self::start_with(BLOCK_TIME).await
    }

    /// [`start`](Self::start) with another block time.
    pub async fn start_with(block_time: f64) -> Chain {
        let every = Duration::from_secs_f64(block_time);
        let local = LocalChain::start(Some(every)).await.expect("a local chain");
        Chain { local, block_time }
    }

    /// A provider sending from account `index`.
    pub fn as_account(&self, index: usize) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.signer(index)))
            .connect_http(self.anvil.endpoint_url())
            .erased()
    }

    /// The operator (anvil's last account), which may make `DealClient` proposals.
    pub fn operator(&self) -> DynProvider {
        self.as_account(self.anvil.addresses().len() - 1)
    }

    pub fn reader(&self) -> DynProvider {
        ProviderBuilder::new().connect_http(self.anvil.endpoint_url()).erased()
    }

    pub fn perpetual(&self) -> Address {
        self.deployment.contracts["PerpetualStorage"]
    }

    pub fn deal_client(&self) -> Address {
        self.deployment.contracts["DealClient"]
    }

    pub async fn head(&self) -> u64 {
        self.reader().get_block_number().await.unwrap()
    }

    /// Mines `n` blocks at once.
    pub async fn mine(&self, n: u64) {
        self.reader().raw_request::<_, ()>("anvil_mine".into(), (n,)).await.unwrap();
    }

    /// Waits for the head to pass `block`.
    pub async fn wait_block(&self, block: u64) {
        while self.head().await <= block {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A client (account `index`) orders `replicas` replicas of `car`, downloadable from
    /// `origins`. Returns the order id.
    pub async fn create_order(
        &self,
        index: usize,
        car: &Car,
        replicas: u16,
        origins: Vec<String>,
    ) -> u64 {
        let client = self.as_account(index);
        let ps = PerpetualStorage::new(self.perpetual(), &client);
        let bounty = U256::from(10u64).pow(U256::from(17u64));
        let params = PerpetualStorage::OrderParams {
            pieceCid: Bytes::from(car.piece_v1.clone()),
            payloadCid: Bytes::from(car.root.to_bytes()),
            paddedSize: car.padded,
            carSize: car.bytes.len() as u64,
            replicas,
            bounty: bounty.to(),
            term: 3600,
            verified: false,
            origins,
        };
        let receipt =
            mined!(ps.createOrder(params).value(bounty * U256::from(replicas) * U256::from(2u64)));
        let created =
            receipt.decoded_log::<PerpetualStorage::OrderCreated>().expect("OrderCreated");
        created.data.orderId.to()
    }

    /// The operator proposes a deal of `car` to `provider` (0: any), downloadable at
    /// `location`, starting `delay` blocks from now. Returns the proposal id.
    pub async fn propose(&self, car: &Car, provider: u64, location: String, delay: i64) -> B256 {
        let operator = self.operator();
        let dc = DealClient::new(self.deal_client(), &operator);
        let policy = dc.dealPolicy().call().await.unwrap();
        let start = self.head().await as i64 + delay;
        let request = DealClient::DealRequest {
            pieceCid: Bytes::from(car.piece_v1.clone()),
            pieceSize: car.padded,
            verifiedDeal: false,
            label: car.root.to_string(),
            startEpoch: start,
            endEpoch: start + 400,
            storagePricePerEpoch: U256::ZERO,
            providerCollateral: U256::from(car.padded) * policy.minProviderCollateralPerByte,
            clientCollateral: U256::ZERO,
            provider,
            replicas: 1,
            locationRef: location,
            carSize: car.bytes.len() as u64,
            skipIpniAnnounce: false,
            removeUnsealedCopy: false,
        };
        let receipt = mined!(dc.makeDealProposal(request));
        receipt.decoded_log::<DealClient::DealProposalCreate>().expect("DealProposalCreate").data.id
    }

    /// This miner's slot of an order.
    pub async fn slot(&self, order: u64, miner: u64) -> PerpetualStorage::SlotView {
        PerpetualStorage::new(self.perpetual(), self.reader())
            .getSlot(U256::from(order), miner)
            .call()
            .await
            .unwrap()
    }
}

/// A CAR of raw blocks, its piece, and its names.
#[derive(Debug, Clone)]
pub struct Car {
    pub bytes: Vec<u8>,
    pub root: Cid,
    pub blocks: Vec<Block>,
    /// Binary v1 piece CID.
    pub piece_v1: Vec<u8>,
    pub padded: u64,
    /// The v2 piece CID (text).
    pub v2: String,
}

/// Deterministic bytes that do not repeat (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A CAR of about `size` bytes of raw blocks (up to 256 KiB each), the first block its root.
pub fn car(size: usize, seed: u64) -> Car {
    let data = noise(size, seed);
    let blocks: Vec<Block> =
        data.chunks(256 * 1024).map(|c| Block::new(cid::Version::V1, 0x55, c.to_vec())).collect();
    let root = blocks[0].cid;
    let mut bytes = header_v1(&[root]);
    for b in &blocks {
        encode_section(b, &mut bytes);
    }
    let info = estuary_piece::commp::commp(&bytes).unwrap();
    let v1 = estuary_piece::PieceCid::v1(&info);
    Car {
        piece_v1: v1.to_cid().to_bytes(),
        padded: info.padded_size,
        v2: estuary_piece::PieceCid::v2(&info).to_string(),
        bytes,
        root,
        blocks,
    }
}

/// How an origin serves a CAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The bytes, with ranges.
    Good,
    /// At most this many bytes a second, in 16 KiB chunks, with ranges.
    Throttle(u64),
    /// Other bytes of the same length.
    WrongBytes,
    /// The CAR without its last 100 bytes, and a length that says so.
    Short,
    /// 200 bytes every 200 ms.
    Drip,
    /// Bytes without end, and no length.
    Endless,
    /// The first response stops after this many bytes (the connection drops); then good.
    DropOnceAt(u64),
}

#[derive(Clone)]
struct Entry {
    bytes: Arc<Vec<u8>>,
    mode: Serve,
    served: Arc<AtomicU64>,
    dropped: Arc<AtomicBool>,
    streams: Arc<Streams>,
    /// Where each request for it started (its range's first byte; 0 without a range).
    starts: Arc<Mutex<Vec<u64>>>,
}

/// Responses an origin is streaming now, and the most at once.
#[derive(Default)]
struct Streams {
    now: AtomicU64,
    peak: AtomicU64,
}

/// One response being streamed, for its lifetime.
struct Streaming(Arc<Streams>);

impl Streaming {
    fn new(streams: Arc<Streams>) -> Self {
        let now = streams.now.fetch_add(1, Ordering::SeqCst) + 1;
        streams.peak.fetch_max(now, Ordering::SeqCst);
        Self(streams)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An HTTP origin serving CARs at `/car/{name}`, counting the bytes it hands out and the
/// responses it streams at once.
#[derive(Clone)]
pub struct Origin {
    pub base: String,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    streams: Arc<Streams>,
}

impl Origin {
    pub async fn start() -> Origin {
        let entries: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let app = Router::new().route("/car/{name}", get(serve)).with_state(Arc::clone(&entries));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Origin { base, entries, streams: Arc::default() }
    }

    /// Serves `bytes` as `name`; returns its URL.
    pub fn add(&self, name: &str, bytes: &[u8], mode: Serve) -> String {
        self.entries.lock().unwrap().insert(
            name.to_owned(),
            Entry {
                bytes: Arc::new(bytes.to_vec()),
                mode,
                served: Arc::default(),
                dropped: Arc::default(),
                streams: Arc::clone(&self.streams),
                starts: Arc::default(),
            },
        );
        format!("{}/car/{name}", self.base)
    }

    /// Where each request for `name` started, in order.
    pub fn starts(&self, name: &str) -> Vec<u64> {
        self.entries.lock().unwrap()[name].starts.lock().unwrap().clone()
    }

    /// The most responses this origin streamed at once, all CARs together.
    pub fn peak_streams(&self) -> u64 {
        self.streams.peak.load(Ordering::SeqCst)
    }

    /// Bytes handed out for `name` so far.
    pub fn served(&self, name: &str) -> u64 {
        self.entries.lock().unwrap()[name].served.load(Ordering::Relaxed)
    }
}

fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

async fn serve(
    State(entries): State<Arc<Mutex<HashMap<String, Entry>>>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(e) = entries.lock().unwrap().get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = e.bytes.len() as u64;
    let start = range_start(&headers).unwrap_or(0);
    e.starts.lock().unwrap().push(start);
    if start > len {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response();
    }
    let (data, declared): (Vec<u8>, Option<u64>) = match e.mode {
        Serve::WrongBytes => {
            (e.bytes[start as usize..].iter().map(|b| b ^ 0x5a).collect(), Some(len - start))
        }
        Serve::Short => {
            (e.bytes[start as usize..(len as usize - 100)].to_vec(), Some(len - 100 - start))
        }
        Serve::Endless => (Vec::new(), None),
        _ => (e.bytes[start as usize..].to_vec(), Some(len - start)),
    };
    let served = Arc::clone(&e.served);
    let mode = e.mode;
    let drop_at = match mode {
        Serve::DropOnceAt(n) if !e.dropped.swap(true, Ordering::SeqCst) => Some(n),
        _ => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let streaming = Streaming::new(Arc::clone(&e.streams));
    tokio::spawn(async move {
        let _streaming = streaming;
        let chunk = match mode {
            Serve::Throttle(_) => 16 * 1024,
            Serve::Drip => 200,
            _ => 64 * 1024,
        };
        let mut sent = 0u64;
        let started = tokio::time::Instant::now();
        loop {
            let piece: Vec<u8> = if mode == Serve::Endless {
                vec![7u8; chunk]
            } else {
                let from = sent as usize;
                if from >= data.len() {
                    return;
                }
                data[from..(from + chunk).min(data.len())].to_vec()
            };
            if let Some(at) = drop_at
                && sent + piece.len() as u64 > at
            {
                let _ = tx.send(Err(std::io::Error::other("dropped"))).await;
                return;
            }
            match mode {
                Serve::Throttle(rate) => {
                    let due =
                        Duration::from_secs_f64((sent + piece.len() as u64) as f64 / rate as f64);
                    tokio::time::sleep_until(started + due).await;
                }
                Serve::Drip => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => {}
            }
            let n = piece.len() as u64;
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
            served.fetch_add(n, Ordering::Relaxed);
            sent += n;
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut response = if start > 0 {
        let mut r = (StatusCode::PARTIAL_CONTENT, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", len - 1).parse().unwrap(),
        );
        r
    } else {
        body.into_response()
    };
    if let Some(n) = declared {
        response.headers_mut().insert(header::CONTENT_LENGTH, n.into());
    }
    response
}

/// The variable that makes the test binary an agent process (see `child`).
pub const CHILD_ARGS: &str = "ESTUARY_TEST_SP";

/// An agent process.
pub struct AgentProcess {
    pub child: Child,
    pub url: String,
    pub miner: u64,
    pub db: PathBuf,
}

/// The usual arguments of a test agent for miner `1000 + index` (key: anvil account
/// `index + 1`), with its state in `dir`.
pub fn agent_args(chain: &Chain, index: usize, dir: &Path, port: u16) -> Vec<String> {
    let ms = ((chain.block_time * 1000.0) as u64).to_string();
    [
        "--rpc-url",
        &chain.anvil.endpoint(),
        "--miner",
        &format!("f0{}", 1000 + index),
        "--start-block",
        &chain.deployment.block.to_string(),
        "--confirmations",
        "0",
        "--poll-interval-ms",
        "100",
        "--perpetual-address",
        &chain.perpetual().to_string(),
        "--deal-client-address",
        &chain.deal_client().to_string(),
        "--db",
        &dir.join("sp.sqlite").display().to_string(),
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--sealer",
        "sim",
        "--allow-private-origins",
        "--epoch-ms",
        &ms,
        "--tick-ms",
        "100",
        "--collect-interval-epochs",
        "8",
        "--seal-epochs",
        "8",
        "--fetch-rate",
        "4MB",
        "--sim-activate-after",
        "2",
        "--tx-bump-secs",
        "10",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

impl AgentProcess {
    /// Starts an agent for miner `1000 + index` with the usual arguments and `extra`.
    pub async fn start(chain: &Chain, index: usize, dir: &Path, extra: &[String]) -> AgentProcess {
        let port = devnet::free_port().unwrap();
        let mut args = agent_args(chain, index, dir, port);
        args.extend(extra.iter().cloned());
        Self::start_args(args, &chain.key_hex(index + 1), 1000 + index as u64, dir, port, &[]).await
    }

    /// Starts an agent with exactly `args` and its key, plus environment `env`. A port another
    /// test's process took before the agent bound it (each test runs in a process of its own)
    /// is given up for another, in every argument that names it, up to twice.
    pub async fn start_args(
        mut args: Vec<String>,
        key: &str,
        miner: u64,
        dir: &Path,
        mut port: u16,
        env: &[(String, String)],
    ) -> AgentProcess {
        std::fs::create_dir_all(dir).unwrap();
        let log_path = dir.join("agent.log");
        for attempt in 1..=3 {
            let from = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
            match Self::start_once(&args, key, miner, dir, port, env).await {
                Ok(agent) => return agent,
                Err(status) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let this = log.get(from..).unwrap_or_default();
                    if attempt < 3 && this.contains("Address already in use") {
                        let next = devnet::free_port().unwrap();
                        let (old, new) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{next}"));
                        args.iter_mut().for_each(|a| *a = a.replace(&old, &new));
                        eprintln!("the agent could not listen on {port}; {next} instead");
                        port = next;
                        continue;
                    }
                    panic!("agent exited at start ({status}):\n{}", tail(&log, 30));
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start: the agent once it answers `/health`, or how it exited first. With `port` 0,
    /// its port is the one its log says it bound.
    async fn start_once(
        args: &[String],
        key: &str,
        miner: u64,
        dir: &Path,
        port: u16,
        env: &[(String, String)],
    ) -> Result<AgentProcess, std::process::ExitStatus> {
        let log_path = dir.join("agent.log");
        let from = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["child::sp_process_entry", "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ARGS, serde_json::to_string(args).unwrap())
            .env("ESTUARY_SP_KEY", key)
            .env("ESTUARY_LOG", std::env::var("ESTUARY_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut url = format!("http://127.0.0.1:{port}");
        // A bounded time a request: whatever holds the port may never answer.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(status);
            }
            if port == 0 {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                match bound_addr(log.get(from..).unwrap_or_default()) {
                    Some(addr) => url = format!("http://{addr}"),
                    None => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            if client
                .get(format!("{url}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(AgentProcess { child, url, miner, db: dir.join("sp.sqlite") });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("agent did not start");
    }

    /// Its bound port.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap().json().await.unwrap()
    }

    /// Waits until `pred` holds for `GET path` (at most `secs`).
    pub async fn wait_for(
        &self,
        path: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = reqwest::get(format!("{}{path}", self.url)).await
                && let Ok(v) = r.json::<Value>().await
            {
                if pred(&v) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = std::fs::read_to_string(self.db.with_file_name("agent.log")).unwrap_or_default();
        panic!(
            "f0{}: timed out waiting for {what}; last {path}: {last:#}\nlog:\n{}",
            self.miner,
            tail(&log, 40)
        );
    }

    /// The agent's work (every state).
    pub async fn works(&self) -> Vec<Value> {
        self.get("/work?limit=1000").await.as_array().unwrap().clone()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, and wait for it to exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The work of `kind` for `reference` in an agent's `/work` list.
pub fn work_for<'a>(works: &'a [Value], kind: &str, reference: &str) -> Vec<&'a Value> {
    works.iter().filter(|w| w["kind"] == kind && w["reference"] == reference).collect()
}

/// The address an agent's log says it bound (`SP agent started local_addr=…`).
fn bound_addr(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("SP agent started"))?;
    let rest = &line[line.find("local_addr=")? + "local_addr=".len()..];
    Some(rest.split_whitespace().next()?.to_owned())
}
