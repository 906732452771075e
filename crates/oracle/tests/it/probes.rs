//! Retrieval probes against real SP agents (the `estuary-sp` crate, as `estuary dev` runs them:
//! simulated sealer, the same contracts): contract deals at two of three providers, each replica
//! read back from its provider and checked; a provider stopped for good loses its replica after
//! two failed probes and the replica is made again at the third; a provider that keeps its
//! deal but answers wrong bytes (a proxy in front of its agent flips one byte of each answer,
//! keeping the `206`) fails its probes on the bytes alone and loses its replica; the scores
//! follow, and a restart keeps them; once the proxy passes the bytes unchanged, its replica is
//! found again. The oracle drops its copy once both first replicas are verified
//! (`--cold-after-secs`): `/piece` is read from the providers from then on (by f01002 too,
//! when it takes the lost replica), a tampered span refused and read from the next; with
//! none left that serves it, `502`. The pin's blocks go with the copy: the gateway serves the
//! DAG from the providers, and the copy read back from them brings the blocks back; once no
//! provider serves the piece, the copy and the blocks come back from the origin gateway, not
//! before it has the CAR again.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use alloy::primitives::U256;
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};

use estuary_oracle::{
    blockstore::FsBlockstore,
    config::P2pConfig,
    deals::{
        cold::{ColdError, ColdReads, Source},
        registry::ProviderUrls,
    },
    fetch::NetPolicy,
    p2p::P2p,
    store::{DatabaseUrl, Store},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    oracle_pinning::{Cars, add, cid_bytes, gateway},
    support::{Chain, OracleProcess, SpProcess, noise},
};

/// A proxy to an SP agent that, once `tamper` is set, flips a byte of every body it passes on
/// (status and headers kept).
pub(crate) async fn tampering_proxy(upstream: String, tamper: Arc<AtomicBool>) -> String {
    async fn pass(
        State((upstream, tamper, http)): State<(String, Arc<AtomicBool>, reqwest::Client)>,
        request: Request,
    ) -> Response {
        let url = format!("{upstream}{}", request.uri());
        let mut out = http.get(url);
        for (name, value) in request.headers() {
            if name == "range" || name == "accept" {
                out = out.header(name.as_str(), value.as_bytes());
            }
        }
        let Ok(answer) = out.send().await else {
            return Response::builder().status(502).body(Body::empty()).unwrap();
        };
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
        let mut response = Response::builder().status(status);
        for (name, value) in answer.headers() {
            response = response.header(name.as_str(), value.as_bytes());
        }
        let mut body = answer.bytes().await.unwrap_or_default().to_vec();
        if tamper.load(Ordering::SeqCst) && !body.is_empty() {
            let at = body.len() / 2;
            body[at] ^= 0x01;
        }
        response.body(Body::from(body)).unwrap()
    }
    let app = Router::new().fallback(pass).with_state((upstream, tamper, reqwest::Client::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A trustless gateway serving the CARs in `cars` by root CID (as `oracle_pinning::gateway`),
/// counting in `asked` the requests it has answered.
pub(crate) async fn counting_gateway(cars: Cars, asked: Arc<AtomicUsize>) -> String {
    let upstream = gateway(cars).await;
    let pass = move |request: Request| {
        let (upstream, asked) = (upstream.clone(), Arc::clone(&asked));
        async move {
            let answer = reqwest::get(format!("{upstream}{}", request.uri())).await.unwrap();
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            let body = answer.bytes().await.unwrap();
            asked.fetch_add(1, Ordering::SeqCst);
            Response::builder().status(status).body(Body::from(body)).unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, Router::new().fallback(pass)).await });
    url
}

/// The value of the `/metrics` line starting with `name` (0 if there is none).
async fn metric(oracle: &OracleProcess, name: &str) -> u64 {
    let metrics = oracle.metrics().await;
    let line = metrics.lines().find(|l| l.starts_with(&format!("{name} ")));
    line.and_then(|l| l.split(' ').nth(1)?.parse().ok()).unwrap_or(0)
}

/// What an order holds: its id and piece, and its replicas' providers and deals, sorted.
fn holdings(order: &Value) -> (Value, Value, Vec<String>) {
    let replicas = order["replicas"].as_array().into_iter().flatten();
    let mut replicas: Vec<String> =
        replicas.map(|r| format!("{}:{}", r["provider"], r["deal_id"])).collect();
    replicas.sort();
    (order["order_id"].clone(), order["piece_cid"].clone(), replicas)
}

/// A CAR's blocks (CID bytes and data), each once, sorted.
fn blocks_of(car: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (_, blocks) = estuary_dag::car::read_car(car, Default::default()).unwrap();
    let mut out: Vec<_> = blocks.into_iter().map(|b| (b.cid.to_bytes(), b.data)).collect();
    out.sort();
    out.dedup();
    out
}

/// The DAG of `root` as the gateway serves it, and where the gateway says it read it from
/// (`x-estuary-source`: `providers` for a cold pin).
async fn dag_from_gateway(
    oracle: &OracleProcess,
    root: &str,
) -> (Vec<(Vec<u8>, Vec<u8>)>, Option<String>) {
    let url = format!("{}/ipfs/{root}?format=car", oracle.url);
    let response = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let source = response.headers().get("x-estuary-source").map(|v| v.to_str().unwrap().to_owned());
    (blocks_of(&response.bytes().await.unwrap()), source)
}

/// Each of `dag`'s blocks as the oracle's Bitswap serves them, to a node of our own.
async fn dag_from_bitswap(oracle: &OracleProcess, dag: &[(Vec<u8>, Vec<u8>)]) {
    let info = oracle.get("/p2p").await.unwrap();
    let peer: libp2p::PeerId = info["peer_id"].as_str().unwrap().parse().unwrap();
    let addrs = info["addrs"].as_array().unwrap().iter();
    let addrs = addrs.map(|a| a.as_str().unwrap().parse().unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let blocks = Arc::new(FsBlockstore::open(dir.path().join("blocks")).unwrap());
    let config = P2pConfig {
        p2p_listen: Vec::new(),
        p2p_max_connections: 4,
        p2p_peer_bytes_per_second: 1 << 30,
    };
    let stop = CancellationToken::new();
    let node =
        P2p::start(&dir.path().join("p2p.key"), &config, blocks, None, stop.clone()).await.unwrap();
    node.connect(peer, addrs).await.unwrap();
    for (cid, data) in dag {
        let cid = cid::Cid::try_from(cid.as_slice()).unwrap();
        let got = node.bitswap().get(peer, cid).await.unwrap();
        assert!(got == *data, "{cid} over Bitswap");
    }
    stop.cancel();
}

/// Blocks the oracle read from providers (`estuary_cold_blocks_total`).
async fn cold_blocks(oracle: &OracleProcess) -> u64 {
    metric(oracle, "estuary_cold_blocks_total").await
}

/// Waits until `ok` holds (`secs` at most).
async fn until(what: &str, secs: u64, ok: impl Fn() -> bool) {
    for _ in 0..secs * 10 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok(), "{what}: not within {secs} s");
}

/// The one order's JSON in `/deals`, once `ok` holds (`secs` at most).
async fn order_when(
    oracle: &OracleProcess,
    secs: u64,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deals = oracle
        .wait_for_within(
            |d| d["results"].as_array().and_then(|r| r.first()).is_some_and(&ok),
            "/deals",
            Duration::from_secs(secs),
        )
        .await;
    let order = deals["results"][0].clone();
    assert!(ok(&order), "{what}");
    order
}

/// The replicas of `order` at `provider`.
fn at(order: &Value, provider: u64) -> Vec<Value> {
    order["replicas"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["provider"] == provider).cloned().collect())
        .unwrap_or_default()
}

/// The oracle's arguments for contract deals through the deployed `DealClient` and
/// `DealStateView` with the operator's key, pins fetched through `origin`; then `more`.
fn contract_deal_args(chain: &Chain, origin: &str, more: &[&str]) -> Vec<String> {
    let client = chain.deployment.contracts["DealClient"].to_string();
    let view = chain.deployment.contracts["DealStateView"].to_string();
    let key = chain.operator_key();
    let base = [
        "--gateway",
        origin,
        "--operator-key",
        &key,
        "--deal-client-address",
        &client,
        "--deal-state-view-address",
        &view,
    ];
    base.iter().chain(more).map(|s| (*s).to_owned()).collect()
}

/// Deals checked and providers probed every second, a replica lost after two failed probes
/// ([`PROBING`]), and marked lost on chain at once: the oracle's arguments of the mark-lost
/// tests.
const MARK_LOST: &[&str] = &[
    "--deal-check-secs",
    "1",
    "--deal-expiring-epochs",
    "100",
    "--probe-every-secs",
    "1",
    "--probe-lost-after",
    "2",
    "--probe-timeout-secs",
    "10",
    "--mark-lost-after-secs",
    "0",
];

/// [`MARK_LOST`] but its last flag: the probe arguments of the tests that mark nothing lost.
const PROBING: &[&str] = MARK_LOST.split_at(MARK_LOST.len() - 2).0;

/// Every `SlotLost` event of `perpetual`, oldest first.
async fn slots_lost(
    reader: &impl alloy::providers::Provider,
    perpetual: alloy::primitives::Address,
) -> Vec<estuary_contracts::PerpetualStorage::SlotLost> {
    use alloy::{rpc::types::Filter, sol_types::SolEvent};
    use estuary_contracts::PerpetualStorage::SlotLost;
    let filter =
        Filter::new().address(perpetual).event_signature(SlotLost::SIGNATURE_HASH).from_block(0);
    let logs = reader.get_logs(&filter).await.unwrap();
    logs.iter().map(|l| SlotLost::decode_log_data(l.data()).unwrap()).collect()
}

/// No provider's URL known (cold reads that have nobody to ask).
fn no_urls() -> Arc<ProviderUrls> {
    Arc::new(ProviderUrls::default())
}

/// The network policy with nothing internal allowed.
fn strict() -> Arc<NetPolicy> {
    Arc::new(NetPolicy::strict())
}

fn probed_ok(order: &Value, provider: u64) -> bool {
    at(order, provider).iter().any(|r| r["state"] == "active" && r["last_probe_ok"] == true)
}

fn lost(order: &Value, provider: u64) -> bool {
    at(order, provider).iter().any(|r| r["lost_at"].is_u64())
}

async fn providers(oracle: &OracleProcess) -> Vec<Value> {
    oracle.get("/providers").await.unwrap()["results"].as_array().unwrap().clone()
}

fn of(providers: &[Value], provider: u64) -> Value {
    providers.iter().find(|p| p["provider"] == provider).cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_find_a_stopped_sp_and_one_serving_wrong_bytes_and_their_replicas_move() {
    let chain = Chain::start_mining(Duration::from_millis(250)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sps = Vec::new();
    for i in 0..3 {
        sps.push(Some(SpProcess::start(&chain, i, &dir.path().join(format!("sp{i}"))).await));
    }
    let tamper = Arc::new(AtomicBool::new(false));
    let f01001 = tampering_proxy(sps[1].as_ref().unwrap().url.clone(), Arc::clone(&tamper)).await;
    let urls = [sps[0].as_ref().unwrap().url.clone(), f01001, sps[2].as_ref().unwrap().url.clone()];

    let cars: Cars = Arc::default();
    let asked = Arc::new(AtomicUsize::new(0));
    let origin = counting_gateway(Arc::clone(&cars), Arc::clone(&asked)).await;
    let mut args = contract_deal_args(
        &chain,
        &origin,
        &[
            "--deal-replicas",
            "2",
            "--deal-term-epochs",
            "3600",
            // A minute of blocks to fetch, seal and publish.
            "--deal-start-epochs",
            "240",
            // The copy here goes once both replicas are verified; collections every 2 s.
            "--cold-after-secs",
            "0",
            "--cold-min-verified",
            "2",
            "--gc-interval-secs",
            "2",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            // The pin's blocks go with its copy, as soon as it does.
            "--cold-drop-blocks",
            "--gc-grace-secs",
            "1",
            "--cold-cache-secs",
            "2",
            // Probes of one provider come about every 10 s here (6 a minute at most).
            "--cold-verified-within-secs",
            "30",
        ],
    );
    args.extend(PROBING.iter().map(|s| (*s).to_owned()));
    for (i, url) in urls.iter().enumerate() {
        args.extend(["--provider".into(), format!("f0{}:price=0,url={url}", 1000 + i)]);
    }
    let db = dir.path().join("oracle.sqlite");
    let oracle = OracleProcess::start_with(&chain, &db, &args).await;

    // The owner escrows FIL in the market for the contract.
    chain.escrow_for_deals(U256::from(10u64).pow(U256::from(17u64))).await;

    // A pin: one CAR, its own piece, two replicas (f01000 and f01001: unscored, lower ids first).
    let (root, _piece, car) = add(dir.path(), "p", &noise(300_000, 5));
    let dag = blocks_of(&car);
    cars.lock().unwrap().insert(root.clone(), car.clone());
    chain.pin(4, &cid_bytes(&root)).await;
    let order = order_when(&oracle, 240, "two replicas active and read back", |o| {
        probed_ok(o, 1000) && probed_ok(o, 1001) && o["replicas_active"] == 2
    })
    .await;
    assert!(at(&order, 1002).is_empty(), "{order:#}");

    // Both verified: the oracle drops its copy (the piece is read from the providers now).
    let piece = order["piece_cid"].as_str().unwrap().to_owned();
    let packed = dir.path().join("oracle-data/packed").join(format!("{piece}.car"));
    until("the copy dropped", 30, || !packed.exists()).await;
    // The pin's blocks went with it: the gateway reads them from the providers, each checked.
    let (got, source) = dag_from_gateway(&oracle, &root).await;
    assert!(got == dag, "the DAG, from the providers");
    assert_eq!(source.as_deref(), Some("providers"), "and the gateway says so");
    assert!(cold_blocks(&oracle).await >= dag.len() as u64);
    // Bitswap too.
    let read = cold_blocks(&oracle).await;
    dag_from_bitswap(&oracle, &dag).await;
    assert!(cold_blocks(&oracle).await >= read + dag.len() as u64);

    // f01000 stops for good: lost after two failed probes, made again at f01002 (which
    // fetches the piece from the oracle: read from f01001, each span checked).
    sps[0].take().unwrap().kill().await;
    // Its probes fail: fewer verified replicas than the drop asks, so the oracle reads its
    // copy back from f01001, and the pin's blocks with it.
    until("the copy packed again", 60, || packed.exists()).await;
    let read = cold_blocks(&oracle).await;
    let (got, source) = dag_from_gateway(&oracle, &root).await;
    assert!(got == dag, "the DAG, here again");
    assert_eq!(source, None, "read here");
    assert_eq!(cold_blocks(&oracle).await, read, "no block read from providers");
    let order = order_when(&oracle, 240, "f01000's replica lost and replaced at f01002", |o| {
        lost(o, 1000) && probed_ok(o, 1002) && o["replicas_active"] == 2
    })
    .await;
    let gone = &at(&order, 1000)[0];
    assert_eq!(gone["last_probe_ok"], false, "{gone}");
    assert!(gone["failures_in_a_row"].as_u64() >= Some(2), "{gone}");
    let all = providers(&oracle).await;
    let (a, b, c) = (of(&all, 1000), of(&all, 1001), of(&all, 1002));
    assert!(a["probes_failed"].as_u64().unwrap() >= 2, "{a}");
    assert_eq!(a["replicas_lost"], 1, "{a}");
    assert!(a["score"].as_f64() < b["score"].as_f64(), "{a} {b}");
    assert!(a["score"].as_f64() < c["score"].as_f64(), "{a} {c}");
    assert!(b["probes_ok"].as_u64().unwrap() >= 1, "{b}");

    // f01001 keeps its deal but answers wrong bytes, with the right status: lost all the same.
    tamper.store(true, Ordering::SeqCst);
    let order =
        order_when(&oracle, 120, "f01001's replica lost on its bytes", |o| lost(o, 1001)).await;
    assert_eq!(order["replicas_active"], 1, "one provider left that serves it: {order:#}");
    // Nobody is asked again who lost it.
    let proposals = order["proposals"].as_array().unwrap();
    for p in [1000, 1001] {
        let n = proposals.iter().filter(|x| x["provider"] == p).count();
        assert_eq!(n, 1, "f0{p} asked once: {order:#}");
    }
    let all = providers(&oracle).await;
    let (b, c) = (of(&all, 1001), of(&all, 1002));
    assert_eq!(b["replicas_lost"], 1, "{b}");
    assert!(b["score"].as_f64() < c["score"].as_f64(), "{b} {c}");
    let metrics = oracle.metrics().await;
    assert!(metrics.contains("estuary_replicas_lost{provider=\"f01000\"} 1"), "{metrics}");
    assert!(metrics.contains("estuary_probes_total{provider=\"f01002\",result=\"ok\"}"));

    // A restart keeps the probes, the losses and the scores.
    let before = providers(&oracle).await;
    oracle.kill().await;
    let oracle = OracleProcess::start_with(&chain, &db, &args).await;
    let after = providers(&oracle).await;
    for p in [1000, 1001] {
        let (x, y) = (of(&before, p), of(&after, p));
        assert_eq!(x["replicas_lost"], y["replicas_lost"], "{x} {y}");
        assert!(y["probes_failed"].as_u64() >= x["probes_failed"].as_u64(), "{x} {y}");
    }
    let order = order_when(&oracle, 30, "still lost", |o| lost(o, 1000)).await;
    assert!(lost(&order, 1001), "{order:#}");

    // f01001 serves the right bytes again: its replica, still probed (less often), is found
    // and counts again beside its replacement; nobody is asked for another.
    tamper.store(false, Ordering::SeqCst);
    let order = order_when(&oracle, 60, "f01001's replica found again", |o| {
        !lost(o, 1001) && probed_ok(o, 1001) && o["replicas_active"] == 2
    })
    .await;
    assert!(lost(&order, 1000), "a stopped provider stays lost: {order:#}");
    assert_eq!(order["proposals"].as_array().unwrap().len(), 3, "{order:#}");
    let all = providers(&oracle).await;
    assert_eq!(of(&all, 1001)["replicas_lost"], 0);

    // Both replicas verified again: the copy goes again, and /piece is read from the
    // providers, each span checked.
    until("the copy dropped again", 60, || !packed.exists()).await;
    let (got, source) = dag_from_gateway(&oracle, &root).await;
    assert!(got == dag, "the DAG, from the providers again");
    assert_eq!(source.as_deref(), Some("providers"));
    assert!(cold_blocks(&oracle).await >= dag.len() as u64);
    let http = reqwest::Client::new();
    let read = |range: Option<&'static str>| {
        let mut request = http.get(format!("{}/piece/{piece}", oracle.url));
        if let Some(range) = range {
            request = request.header("range", range);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        }
    };
    let (status, hot) = read(None).await;
    assert_eq!(status, 200);
    assert!(hot == car, "the CAR");
    let head = http.get(format!("{}/piece/{piece}", oracle.url)).header("range", "bytes=0-0");
    let head = head.send().await.unwrap();
    let source = head.headers().get("x-estuary-source").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(source.as_deref(), Some("providers"), "read from the providers, and said so");
    let mut c = estuary_piece::CommP::new();
    c.update(&hot);
    let info = c.finish().unwrap();
    assert_eq!(estuary_piece::PieceCid::v2(&info).to_string(), piece, "the piece's bytes");
    let (status, part) = read(Some("bytes=1000-299999")).await;
    assert_eq!(status, 206);
    assert!(part == hot[1000..300_000], "a range, across spans");
    let metrics = oracle.metrics().await;
    assert!(!metrics.contains("estuary_cold_spans_cached_total 0"), "spans read again are kept");
    let (status, tail) = read(Some("bytes=-1000")).await;
    assert!(status == 206 && tail == hot[hot.len() - 1000..], "the last 1,000 bytes: {status}");
    let (status, _) = read(Some("bytes=99999999-")).await;
    assert_eq!(status, 416);
    let metrics = oracle.metrics().await;
    assert!(metrics.contains("estuary_cold_bytes_total{provider=\"f0100"), "{metrics}");
    // f01002 stops and f01001 answers wrong bytes again, once the spans kept in memory (2 s
    // here) have gone; the origin gateway no longer has the CAR either. The restore finds no
    // provider that gives the piece back, asks the network, and waits: nothing comes back and
    // nothing kept is lost; `/piece` answers 502, never wrong bytes.
    let order = order_when(&oracle, 10, "the order", |_| true).await;
    cars.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = asked.load(Ordering::SeqCst);
    sps[2].take().unwrap().kill().await;
    tamper.store(true, Ordering::SeqCst);
    until("the restore asked the network twice", 60, || asked.load(Ordering::SeqCst) >= before + 2)
        .await;
    assert!(!packed.exists(), "nothing restored");
    let (status, _) = read(None).await;
    assert_eq!(status, 502);
    let restores = "estuary_cold_restores_total{source=";
    assert_eq!(metric(&oracle, &format!("{restores}\"network\"}}")).await, 0);
    let now = order_when(&oracle, 10, "the order", |_| true).await;
    assert_eq!(holdings(&now), holdings(&order), "the order and its replicas kept");
    // The origin has the CAR again: the pin's DAG is fetched from it (each block checked), its
    // blocks kept here again and the copy packed from them, the same piece.
    cars.lock().unwrap().insert(root.clone(), car.clone());
    until("the copy restored from the network", 60, || packed.exists()).await;
    let response = http.get(format!("{}/piece/{piece}", oracle.url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("x-estuary-source"), None, "served from the copy");
    assert!(response.bytes().await.unwrap() == car, "the CAR, byte for byte");
    let read = cold_blocks(&oracle).await;
    let (got, source) = dag_from_gateway(&oracle, &root).await;
    assert!(got == dag && source.is_none(), "the blocks, here again: {source:?}");
    assert_eq!(cold_blocks(&oracle).await, read, "no block read from providers");
    assert_eq!(metric(&oracle, &format!("{restores}\"network\"}}")).await, 1);
    assert_eq!(metric(&oracle, &format!("{restores}\"providers\"}}")).await, 0);
    let now = order_when(&oracle, 10, "the order", |_| true).await;
    assert_eq!(holdings(&now), holdings(&order), "the order and its replicas kept");
    // A cold read from f01001 (wrong bytes) and f01002 (gone) fails, never wrong bytes (made
    // here, on the oracle's database).
    let store = Store::open(&DatabaseUrl::Sqlite(db.clone())).await.unwrap();
    let levels = Arc::new(store.piece_levels(&piece).await.unwrap().unwrap());
    let reads = Arc::new(
        ColdReads::new(store, no_urls(), strict(), Duration::from_secs(10), Duration::ZERO)
            .unwrap(),
    );
    let sources = [1, 2].map(|i| Source {
        provider: 1000 + i as u64,
        url: urls[i].clone(),
        registered: false,
    });
    let read =
        reads.read_from(piece.clone(), levels, sources.to_vec(), (0, hot.len() as u64)).await;
    assert!(matches!(read, Err(ColdError::Unserved { .. })), "{read:?}");
    let refused = reads.stats().refused;
    assert_eq!((refused.get(&1001), refused.get(&1002)), (Some(&1), Some(&1)), "{refused:?}");
    drop(sps);
}

/// A block of a pin whose blocks went is read by its place in a piece; an empty block (an
/// empty file's raw leaf) has no bytes to read and is served as what its CID says, and a
/// place that names no readable piece (no levels, no provider) is not served.
#[tokio::test]
async fn cold_blocks_known_by_place_and_the_empty_block_without_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("o.sqlite"))).await.unwrap();
    let empty = estuary_dag::Block::new(cid::Version::V1, estuary_dag::block::RAW, Vec::new()).cid;
    let other =
        estuary_dag::Block::new(cid::Version::V1, estuary_dag::block::RAW, b"elsewhere".to_vec())
            .cid;
    let piece = "bafkzcibcaapao7wbz5nicijjjyxi2ijhhy7zltuyzyqiqi2ncdrvr4fvhpi6lxy";
    let id = store.start_piece_blocks(piece).await.unwrap().unwrap();
    store
        .add_piece_blocks(id, &[(empty.to_bytes(), 40, 0), (other.to_bytes(), 40, 9)])
        .await
        .unwrap();
    store.finish_piece_blocks(id, 2).await.unwrap();
    let reads = Arc::new(
        ColdReads::new(store.clone(), no_urls(), strict(), Duration::from_secs(1), Duration::ZERO)
            .unwrap(),
    );
    assert!(!reads.holds(&empty).await.unwrap(), "its blocks are still here");
    assert_eq!(reads.block(&empty).await.unwrap(), None);
    store.mark_blocks_cold(&[piece.to_owned()], 1).await.unwrap();
    assert!(reads.holds(&empty).await.unwrap() && reads.holds(&other).await.unwrap());
    assert_eq!(reads.block(&empty).await.unwrap(), Some(Vec::new()));
    assert_eq!(reads.block(&other).await.unwrap(), None, "no levels, no provider: not served");
    let stranger =
        estuary_dag::Block::new(cid::Version::V1, estuary_dag::block::RAW, b"stranger".to_vec())
            .cid;
    assert!(!reads.holds(&stranger).await.unwrap());
    assert_eq!(reads.stats().blocks, 0, "nothing read from a provider");
}

/// A `PerpetualStorage` replica whose provider keeps its deal but serves wrong bytes (a proxy in
/// front of its agent flips a byte of each answer): its probes fail, and the oracle, the order's
/// client, marks it lost on chain (`markLost`: the provider paid what it earned and a loss fee,
/// and excluded from the order); the slot reopens, the third SP agent claims it, and two
/// replicas are active again. The marked provider's agent sees why its slot ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_perpetual_replica_found_lost_is_marked_lost_and_its_slot_goes_to_another_sp() {
    use estuary_contracts::PerpetualStorage;
    let chain = Chain::start_mining(Duration::from_millis(250)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sps = Vec::new();
    for i in 0..3 {
        // An active slot's work looks at its slot every 8 epochs (2 s), not every day's.
        let at = dir.path().join(format!("sp{i}"));
        let extra = ["--collect-interval-epochs", "8"];
        sps.push(Some(SpProcess::start_with(&chain, i, &at, &extra).await));
    }
    let mut tamper = Vec::new();
    let mut urls = Vec::new();
    for sp in &sps {
        let flag = Arc::new(AtomicBool::new(false));
        urls.push(tampering_proxy(sp.as_ref().unwrap().url.clone(), Arc::clone(&flag)).await);
        tamper.push(flag);
    }
    let cars: Cars = Arc::default();
    let origin = gateway(Arc::clone(&cars)).await;
    let perpetual = chain.deployment.contracts["PerpetualStorage"];
    let mut args: Vec<String> = [
        "--gateway",
        &origin,
        "--operator-key",
        &chain.operator_key(),
        "--perpetual-address",
        &perpetual.to_string(),
        "--deal-state-view-address",
        &chain.deployment.contracts["DealStateView"].to_string(),
        "--deal-term-epochs",
        "3600",
        "--deal-replicas",
        "2",
    ]
    .iter()
    .chain(MARK_LOST)
    .map(|s| (*s).to_owned())
    .collect();
    for (i, url) in urls.iter().enumerate() {
        args.extend(["--provider".into(), format!("f0{}:price=0,url={url}", 1000 + i)]);
    }
    let oracle = OracleProcess::start_with(&chain, &dir.path().join("oracle.sqlite"), &args).await;
    let (root, _piece, car) = add(dir.path(), "q", &noise(200_000, 9));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.pin(4, &cid_bytes(&root)).await;

    // Two SPs claim the order's two slots; both replicas active and read back.
    let holders = |o: &Value| -> Vec<u64> { (1000..1003).filter(|p| probed_ok(o, *p)).collect() };
    let order = order_when(&oracle, 240, "two replicas active and read back", |o| {
        holders(o).len() == 2 && o["replicas_active"] == 2
    })
    .await;
    let held = holders(&order);
    let (gone, kept) = (held[0], held[1]);
    let third = (1000..1003).find(|p| !held.contains(p)).unwrap();
    let order_id = order["order_id"].as_u64().unwrap();

    // The first holder answers wrong bytes from now on: lost after two failed probes, marked
    // lost on chain, and its slot goes to the third SP.
    let index = usize::try_from(gone - 1000).unwrap();
    tamper[index].store(true, Ordering::SeqCst);
    let order = order_when(&oracle, 240, "marked lost and the slot taken again", |o| {
        lost(o, gone) && probed_ok(o, third) && probed_ok(o, kept) && o["replicas_active"] == 2
    })
    .await;
    assert!(at(&order, gone).iter().all(|r| r["state"] == "reopened"), "{order:#}");
    let reader = alloy::providers::ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let marked = slots_lost(&reader, perpetual).await;
    assert_eq!(marked.len(), 1, "marked lost once: {marked:?}");
    assert_eq!((marked[0].orderId, marked[0].provider), (U256::from(order_id), gone));
    assert_eq!(marked[0].client, *chain.anvil.addresses().last().unwrap(), "by the oracle");
    let ps = PerpetualStorage::new(perpetual, &reader);
    assert!(ps.excluded(U256::from(order_id), gone).call().await.unwrap());
    assert!(!ps.excluded(U256::from(order_id), third).call().await.unwrap());
    let all = providers(&oracle).await;
    assert_eq!(of(&all, gone)["replicas_lost"], 1, "{all:?}");
    // The marked provider's agent ends its work saying why, and counts it.
    let metrics = format!("{}/metrics", sps[index].as_ref().unwrap().url);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        if seen.contains("estuary_sp_slots_marked_lost_total 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen.contains("estuary_sp_slots_marked_lost_total 1"), "{seen}");
    drop(sps);
}

/// A DataDAO's replica whose provider serves wrong bytes is marked lost through the DAO (the
/// order's client; the oracle is its operator): `DataDAO.markReplicaLost` calls
/// `PerpetualStorage.markLost`, the provider is excluded from the DAO's order and its slot
/// reopens.
#[tokio::test(flavor = "multi_thread")]
async fn a_datadao_replica_found_lost_is_marked_lost_through_the_dao() {
    use estuary_contracts::PerpetualStorage;
    let chain = Chain::start_mining(Duration::from_millis(250)).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--collect-interval-epochs", "8"];
    let sp = SpProcess::start_with(&chain, 0, &dir.path().join("sp0"), &extra).await;
    let tamper = Arc::new(AtomicBool::new(false));
    let url = tampering_proxy(sp.url.clone(), Arc::clone(&tamper)).await;
    let cars: Cars = Arc::default();
    let origin = gateway(Arc::clone(&cars)).await;
    let perpetual = chain.deployment.contracts["PerpetualStorage"];
    let dao_address = chain.deployment.contracts["DataDAO"];
    let args: Vec<String> = [
        "--gateway",
        &origin,
        "--operator-key",
        &chain.operator_key(),
        "--perpetual-address",
        &perpetual.to_string(),
        "--datadao-address",
        &dao_address.to_string(),
        "--deal-state-view-address",
        &chain.deployment.contracts["DealStateView"].to_string(),
        "--provider",
        &format!("f01000:price=0,url={url}"),
    ]
    .iter()
    .chain(MARK_LOST)
    .map(|s| (*s).to_owned())
    .collect();
    let oracle = OracleProcess::start_with(&chain, &dir.path().join("oracle.sqlite"), &args).await;

    // The DAO (its owner the deployer, account 0): two members and a treasury; a CID proposed,
    // voted and executed.
    chain.datadao(&[5, 6], None).await;
    let (root, piece, car) = add(dir.path(), "dao", &noise(200_000, 9));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.datadao_accept(1, &root, 200_000, [5, 6, 6]).await;

    // The oracle pins and funds it; the SP takes a slot; the replica is active and read back.
    let order = order_when(&oracle, 240, "the DAO's replica active and read back", |o| {
        o["backend"] == "datadao" && probed_ok(o, 1000)
    })
    .await;
    assert_eq!(order["piece_cid"], piece.as_str());
    let order_id = order["order_id"].as_u64().unwrap();

    // It answers wrong bytes from now on: lost after two failed probes, and marked lost on
    // chain through the DAO.
    tamper.store(true, Ordering::SeqCst);
    let reader = alloy::providers::ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let ps = PerpetualStorage::new(perpetual, &reader);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ps.excluded(U256::from(order_id), 1000).call().await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "never marked lost");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let marked = slots_lost(&reader, perpetual).await;
    assert_eq!(marked.len(), 1, "marked lost once: {marked:?}");
    assert_eq!((marked[0].orderId, marked[0].provider), (U256::from(order_id), 1000));
    assert_eq!(marked[0].client, dao_address, "through the DAO, the order's client");
    // The oracle reads the slot's events: its replica shown lost, then reopened.
    order_when(&oracle, 30, "the replica shown lost and reopened", |o| {
        lost(o, 1000) && at(o, 1000).iter().all(|r| r["state"] == "reopened")
    })
    .await;
    oracle.kill().await;
    drop(sp);
}

/// Providers the operator did not list with `url=` are probed at the retrieval URL their
/// agents registered in the `ProviderRegistry` (`--provider-registry-address` on both sides):
/// f01000's agent registers its own address; f01001's registers nothing, and its replica is not
/// probed until its controlling account registers a URL by hand (read again within the
/// refresh); f01002's registers an address inside a private network, which the oracle's
/// network policy refuses (`--provider-allow-net` has loopback only), so it is never asked.
#[tokio::test(flavor = "multi_thread")]
async fn providers_are_probed_at_the_urls_their_agents_registered() {
    use estuary_contracts::ProviderRegistry;
    let chain = Chain::start_mining(Duration::from_millis(250)).await;
    let dir = tempfile::tempdir().unwrap();
    let registry = chain.deployment.contracts["ProviderRegistry"];
    let at_registry = registry.to_string();
    let hidden = "http://10.11.12.13:3100";
    let mut sps = Vec::new();
    for i in 0..3 {
        let mut extra = vec!["--collect-interval-epochs", "8"];
        if i != 1 {
            extra.extend(["--provider-registry-address", &at_registry]);
        }
        if i == 2 {
            extra.extend(["--public-url", hidden]);
        }
        let at = dir.path().join(format!("sp{i}"));
        sps.push(SpProcess::start_with(&chain, i, &at, &extra).await);
    }
    let cars: Cars = Arc::default();
    let origin = gateway(Arc::clone(&cars)).await;
    let args: Vec<String> = [
        "--gateway",
        &origin,
        "--operator-key",
        &chain.operator_key(),
        "--perpetual-address",
        &chain.deployment.contracts["PerpetualStorage"].to_string(),
        "--deal-state-view-address",
        &chain.deployment.contracts["DealStateView"].to_string(),
        "--deal-term-epochs",
        "3600",
        "--deal-replicas",
        "3",
        "--deal-check-secs",
        "1",
        "--probe-every-secs",
        "1",
        "--provider-registry-address",
        &at_registry,
        "--provider-registry-refresh-secs",
        "1",
        "--provider-allow-net",
        "127.0.0.0/8",
    ]
    .map(|s| (*s).to_owned())
    .to_vec();
    let oracle = OracleProcess::start_with(&chain, &dir.path().join("oracle.sqlite"), &args).await;
    let (root, _piece, car) = add(dir.path(), "r", &noise(150_000, 11));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.pin(4, &cid_bytes(&root)).await;

    let reader = alloy::providers::ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let on_chain = ProviderRegistry::new(registry, &reader);
    order_when(&oracle, 240, "three replicas active, f01000's read back", |o| {
        o["replicas_active"] == 3 && probed_ok(o, 1000)
    })
    .await;
    assert_eq!(on_chain.urlOf(1000).call().await.unwrap(), sps[0].url.trim_end_matches('/'));
    assert_eq!(on_chain.urlOf(1001).call().await.unwrap(), "");
    assert_eq!(on_chain.urlOf(1002).call().await.unwrap(), hidden, "the contract takes it");
    // Seconds of probes at 1 s: the two others were never asked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let order = order_when(&oracle, 5, "f01000 still read back", |o| probed_ok(o, 1000)).await;
    for provider in [1001, 1002] {
        let replicas = at(&order, provider);
        assert!(
            replicas.iter().all(|r| r["last_probe"].is_null()),
            "f0{provider} has no usable URL: {order:#}"
        );
    }

    // f01001's controlling account registers its agent's URL: read within the refresh, and
    // its replica is read back.
    // Account 2 is f01001's agent's key too: a transaction of the agent's taking the same nonce
    // at the same moment refuses this one ("nonce too low"), so it is sent again.
    let owner = chain.wallet(2);
    let registry_of_owner = ProviderRegistry::new(registry, &owner);
    let mut tries = 0;
    loop {
        let sent = registry_of_owner.setUrl(1001, sps[1].url.clone()).send().await;
        match sent {
            Ok(pending) => {
                assert!(pending.get_receipt().await.unwrap().status(), "setUrl reverted");
                break;
            }
            Err(e) if tries < 10 && e.to_string().contains("nonce too low") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("setUrl: {e}"),
        }
    }
    order_when(&oracle, 60, "f01001 read back at its registered URL", |o| probed_ok(o, 1001)).await;
    let order = order_when(&oracle, 5, "f01002 still not asked", |o| {
        at(o, 1002).iter().all(|r| r["last_probe"].is_null())
    })
    .await;
    assert!(probed_ok(&order, 1000), "{order:#}");
    // `/providers` says where each is read from (a registered URL shown, being public).
    let all = providers(&oracle).await;
    assert_eq!(of(&all, 1000)["url_source"], "registry", "{all:?}");
    assert_eq!(of(&all, 1001)["registered_url"], sps[1].url.trim_end_matches('/'), "{all:?}");
    assert!(of(&all, 1002)["url_source"].is_null(), "{all:?}");
    // `/metrics` counts them: f01000's and f01001's, not f01002's refused one.
    assert_eq!(metric(&oracle, "estuary_provider_urls{source=\"registry\"}").await, 2);
    drop(sps);
}

/// A direct deal (its SP agent seals without the market, `--sim-direct`: `NO_DEAL`, no market
/// deal id) is probed like a market deal, under its own key: read back and verified; once its
/// provider answers wrong bytes, it is found lost and replaced at another provider, which
/// makes a market deal. It never stands for the oracle's copy (nothing on chain would say its
/// sector ended): the copy goes only once two market deals are verified. A restart keeps what
/// its probes found.
#[tokio::test(flavor = "multi_thread")]
async fn a_direct_deal_is_probed_replaced_once_lost_and_never_stands_for_the_copy() {
    let chain = Chain::start_mining(Duration::from_millis(250)).await;
    let dir = tempfile::tempdir().unwrap();
    let direct = SpProcess::start_with(&chain, 0, &dir.path().join("sp0"), &["--sim-direct"]).await;
    let market = [
        SpProcess::start(&chain, 1, &dir.path().join("sp1")).await,
        SpProcess::start(&chain, 2, &dir.path().join("sp2")).await,
    ];
    let tamper = Arc::new(AtomicBool::new(false));
    let f01000 = tampering_proxy(direct.url.clone(), Arc::clone(&tamper)).await;

    let cars: Cars = Arc::default();
    let origin = counting_gateway(Arc::clone(&cars), Arc::default()).await;
    let mut args = contract_deal_args(
        &chain,
        &origin,
        &[
            "--deal-replicas",
            "2",
            "--deal-term-epochs",
            "3600",
            "--deal-start-epochs",
            "240",
            // The copy here may go once two replicas are verified; collections every 2 s.
            "--cold-after-secs",
            "0",
            "--cold-min-verified",
            "2",
            "--cold-verified-within-secs",
            "30",
            "--gc-interval-secs",
            "2",
        ],
    );
    args.extend(PROBING.iter().map(|s| (*s).to_owned()));
    args.extend(["--provider".into(), format!("f01000:price=0,url={f01000}")]);
    for (i, sp) in market.iter().enumerate() {
        args.extend(["--provider".into(), format!("f0{}:price=0,url={}", 1001 + i, sp.url)]);
    }
    let db = dir.path().join("oracle.sqlite");
    let oracle = OracleProcess::start_with(&chain, &db, &args).await;
    chain.escrow_for_deals(U256::from(10u64).pow(U256::from(17u64))).await;

    // Two replicas (unscored: the lower ids), f01000's a direct deal, both read back twice.
    let (root, _piece, car) = add(dir.path(), "d", &noise(200_000, 6));
    cars.lock().unwrap().insert(root.clone(), car);
    chain.pin(4, &cid_bytes(&root)).await;
    let twice = |o: &Value, p: u64| at(o, p).iter().any(|r| r["oks_in_a_row"].as_u64() >= Some(2));
    let order = order_when(&oracle, 240, "both deals active and read back twice", |o| {
        twice(o, 1000) && twice(o, 1001) && o["replicas_active"] == 2
    })
    .await;
    let first = &at(&order, 1000)[0];
    assert!(first["deal_id"].is_null(), "a direct deal: {first}");
    assert!(at(&order, 1001)[0]["deal_id"].is_u64(), "a market deal: {order:#}");
    // Two verified replicas, one of them direct: the copy stays (a market deal's copy goes
    // within seconds, see the first test).
    let piece = order["piece_cid"].as_str().unwrap().to_owned();
    let packed = dir.path().join("oracle-data/packed").join(format!("{piece}.car"));
    assert!(packed.exists());
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(packed.exists(), "the copy stays while a direct deal is one of the two verified");
    let order =
        order_when(&oracle, 5, "both still verified", |o| twice(o, 1000) && twice(o, 1001)).await;
    assert_eq!(order["replicas_active"], 2);

    // f01000 keeps its sector but answers wrong bytes: lost, and replaced at f01002; with two
    // market deals verified, the copy goes.
    tamper.store(true, Ordering::SeqCst);
    let order = order_when(&oracle, 240, "the direct deal lost and replaced", |o| {
        lost(o, 1000) && twice(o, 1002) && o["replicas_active"] == 2
    })
    .await;
    let gone = &at(&order, 1000)[0];
    assert_eq!(gone["last_probe_ok"], false, "{gone}");
    assert!(gone["failures_in_a_row"].as_u64() >= Some(2), "{gone}");
    assert!(at(&order, 1002)[0]["deal_id"].is_u64(), "a market deal: {order:#}");
    let all = providers(&oracle).await;
    assert_eq!(of(&all, 1000)["replicas_lost"], 1, "{all:?}");
    until("the copy dropped", 60, || !packed.exists()).await;

    // A restart keeps it lost.
    oracle.kill().await;
    let oracle = OracleProcess::start_with(&chain, &db, &args).await;
    let order = order_when(&oracle, 30, "still lost", |o| lost(o, 1000)).await;
    assert_eq!(order["replicas_active"], 2, "{order:#}");
    oracle.kill().await;
    direct.kill().await;
    for sp in market {
        sp.kill().await;
    }
}
