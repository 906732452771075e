//! RPC faults: the oracle reads the chain through two bad endpoints — one lagging behind the
//! head (and answering `eth_getLogs` past its head with nothing, as some nodes do), one that
//! drops responses, answers late or fails — and still stores every request, exactly as a clean
//! index of the chain has them, without mistaking a lagging endpoint for a reorg.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::providers::{Provider, ProviderBuilder};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use crate::{
    oracle_reorg::snapshot,
    support::{Chain, OracleProcess, cid},
};

/// How a proxy misbehaves: it is `lag` blocks behind the head, and of every 100 calls it loses
/// the response of `drop`, answers `late` after the oracle gave up, and fails `fail` with a 502.
#[derive(Clone, Copy)]
struct Fault {
    lag: u64,
    drop: u32,
    late: u32,
    fail: u32,
}

struct Proxy {
    upstream: String,
    fault: Fault,
    rng: Mutex<StdRng>,
    client: reqwest::Client,
    stats: Mutex<[u64; 4]>, // ok, dropped, late, failed
    /// Fails every call (502) while set.
    down: std::sync::atomic::AtomicBool,
}

impl Proxy {
    async fn forward(&self, body: &Value) -> Value {
        self.client.post(&self.upstream).json(body).send().await.unwrap().json().await.unwrap()
    }

    async fn head(&self) -> u64 {
        let r = self
            .forward(&json!({"jsonrpc":"2.0","id":0,"method":"eth_blockNumber","params":[]}))
            .await;
        u64::from_str_radix(r["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

async fn handle(State(proxy): State<Arc<Proxy>>, body: Bytes) -> Response {
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let fault = proxy.fault;
    // The oracle checks the chain id once at start; faults are for the watcher's calls.
    if request["method"] != "eth_chainId" {
        if proxy.down.load(std::sync::atomic::Ordering::Relaxed) {
            return (StatusCode::BAD_GATEWAY, "down").into_response();
        }
        let roll = proxy.rng.lock().unwrap().random_range(0..100u32);
        let kind = if roll < fault.drop {
            1
        } else if roll < fault.drop + fault.late {
            2
        } else if roll < fault.drop + fault.late + fault.fail {
            3
        } else {
            0
        };
        proxy.stats.lock().unwrap()[kind] += 1;
        match kind {
            // The call runs upstream, but its answer is lost: the body breaks off.
            1 => {
                let _ = proxy.forward(&request).await;
                let broken = futures_util::stream::once(async {
                    Err::<Bytes, _>(std::io::Error::other("connection lost"))
                });
                return Body::from_stream(broken).into_response();
            }
            2 => tokio::time::sleep(Duration::from_secs(3)).await,
            3 => return (StatusCode::BAD_GATEWAY, "upstream unavailable").into_response(),
            _ => {}
        }
    }
    if fault.lag > 0 {
        let head = proxy.head().await.saturating_sub(fault.lag);
        let id = request["id"].clone();
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        let answer = |result: Value| axum::Json(json!({"jsonrpc":"2.0","id":id,"result":result}));
        match method.as_str() {
            "eth_blockNumber" => return answer(json!(format!("{head:#x}"))).into_response(),
            "eth_getBlockByNumber" => match &request["params"][0] {
                Value::String(tag) if tag == "latest" => {
                    request["params"][0] = json!(format!("{head:#x}"));
                }
                number => {
                    if hex_u64(number).is_some_and(|n| n > head) {
                        return answer(Value::Null).into_response();
                    }
                }
            },
            "eth_getLogs" => {
                // Logs past this node's head are silently missing.
                let mut r = proxy.forward(&request).await;
                if let Some(logs) = r["result"].as_array_mut() {
                    logs.retain(|l| hex_u64(&l["blockNumber"]).is_some_and(|n| n <= head));
                }
                return axum::Json(r).into_response();
            }
            _ => {}
        }
    }
    axum::Json(proxy.forward(&request).await).into_response()
}

async fn start_proxy(upstream: String, fault: Fault, seed: u64) -> (String, Arc<Proxy>) {
    let proxy = Arc::new(Proxy {
        upstream,
        fault,
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
        client: reqwest::Client::new(),
        stats: Mutex::new([0; 4]),
        down: std::sync::atomic::AtomicBool::new(false),
    });
    let app = Router::new().route("/", post(handle)).with_state(Arc::clone(&proxy));
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_event_is_missed_through_lagging_and_flaky_endpoints() {
    const REQUESTS: u8 = 60;
    let chain = Chain::start().await;
    let provider = ProviderBuilder::new().connect_http(chain.anvil.endpoint_url());
    let (flaky, flaky_proxy) =
        start_proxy(chain.anvil.endpoint(), Fault { lag: 0, drop: 10, late: 5, fail: 10 }, 2).await;
    let (lagging, lagging_proxy) =
        start_proxy(chain.anvil.endpoint(), Fault { lag: 4, drop: 5, late: 0, fail: 5 }, 1).await;
    let dir = tempfile::tempdir().unwrap();
    // The flaky endpoint first: its failures send the watcher to the lagging one, which is
    // behind the cursor the flaky one let it reach, and sends it back.
    let extra = [
        "--rpc-fallback".to_owned(),
        lagging,
        "--rpc-timeout-secs".to_owned(),
        "1".to_owned(),
        "--max-block-range".to_owned(),
        "3".to_owned(),
    ];
    let oracle =
        OracleProcess::start_on(&chain, &flaky, &dir.path().join("oracle.sqlite"), &extra).await;
    // Requests arrive while the oracle reads: a block each.
    for n in 1..=REQUESTS / 2 {
        chain.pin(1 + usize::from(n % 3), &cid(n)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Only the up-to-date endpoint can take the cursor to the head ...
    let head = provider.get_block_number().await.unwrap();
    // Slow by design (a step reaches the head only when every call of it goes through the
    // flaky endpoint); the limit leaves room for a loaded machine.
    let patient = Duration::from_secs(120);
    oracle.wait_for_within(|s| s["cursor"].as_u64() == Some(head), "/status", patient).await;
    // ... and now it goes down: the lagging one is behind the stored cursor, which must not
    // look like a reorg; it carries on once its head passes the cursor.
    flaky_proxy.down.store(true, std::sync::atomic::Ordering::Relaxed);
    for n in REQUESTS / 2 + 1..=REQUESTS {
        chain.pin(1 + usize::from(n % 3), &cid(n)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // The lagging endpoint never shows the last blocks; a few more let it get there.
    for _ in 0..6 {
        provider.raw_request::<_, Value>("evm_mine".into(), ()).await.unwrap();
    }
    let status = oracle
        .wait_for_within(
            |s| s["requests"].as_u64() == Some(u64::from(REQUESTS)),
            "/status",
            patient,
        )
        .await;
    assert_eq!(status["reorgs"], 0, "a lagging endpoint is not a reorg: {status}");
    let stored = snapshot(&oracle).await;
    let metrics = oracle.metrics().await;
    assert!(metrics.contains("estuary_reorgs_total 0\n"), "{metrics}");
    assert!(!metrics.contains("estuary_rpc_failovers_total 0\n"), "{metrics}");
    oracle.kill().await;
    for (name, proxy) in [("flaky", &flaky_proxy), ("lagging", &lagging_proxy)] {
        let [ok, dropped, late, failed] = *proxy.stats.lock().unwrap();
        assert!(ok > 0, "the {name} endpoint was used");
        eprintln!(
            "{name} endpoint: {ok} answered, {dropped} dropped, {late} late, {failed} failed"
        );
    }
    assert!(status["rpc_failovers"].as_u64().unwrap() > 0, "{status}");
    eprintln!("failovers: {}", status["rpc_failovers"]);

    // Equal to a clean index read straight from the chain.
    let fresh = OracleProcess::start(&chain, &dir.path().join("fresh.sqlite")).await;
    let head = provider.get_block_number().await.unwrap();
    fresh.wait_for(|s| s["cursor"].as_u64() == Some(head), "/status").await;
    assert_eq!(stored, snapshot(&fresh).await);
    fresh.kill().await;
}
