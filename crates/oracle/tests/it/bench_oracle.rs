//! Oracle benchmarks (ignored by the test command; no timing assertions). Run with
//! `cargo nextest run -p estuary-cli --release --run-ignored only bench_ --no-capture`;
//! the figures are recorded in docs/benchmarks.md.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::{network::EthereumWallet, primitives::Bytes, providers::ProviderBuilder};
use estuary_contracts::EstuaryPinning;

use crate::support::{Chain, OracleProcess, cid, noise};

/// Sends `n` pin requests without waiting for each receipt.
async fn pin_many(chain: &Chain, n: usize, cid_of: impl Fn(usize) -> Vec<u8>) {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(chain.signer(1)))
        .connect_http(chain.anvil.endpoint_url());
    let pinning = EstuaryPinning::new(chain.deployment.pinning, &provider);
    let fee = alloy::primitives::U256::from(pinning.fee().call().await.unwrap());
    let mut pending = Vec::new();
    for i in 0..n {
        let call = pinning.pinToEstuary_0(Bytes::from(cid_of(i))).value(fee).gas(200_000);
        pending.push(call.send().await.unwrap());
        if pending.len() >= 200 {
            for p in pending.drain(..) {
                p.get_receipt().await.unwrap();
            }
        }
    }
    for p in pending {
        p.get_receipt().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_chain_events_ingested_per_second() {
    let chain = Chain::start().await;
    let n = 5000;
    pin_many(&chain, n, |i| {
        let mut v = cid(0);
        v[4..12].copy_from_slice(&(i as u64).to_be_bytes());
        v
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let oracle = OracleProcess::start(&chain, &dir.path().join("o.sqlite")).await;
    oracle.wait_for(|s| s["requests"] == n, "/status").await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "BENCH ingest: {n} PinRequested events backfilled in {secs:.2} s = {:.0} events/s",
        n as f64 / secs
    );
    oracle.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_pins_of_1kib_dags_per_second() {
    let chain = Chain::start().await;
    let n = 500;
    let cars: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let mut roots = Vec::new();
    for i in 0..n {
        let data = noise(1024, 5000 + i as u64);
        let (root, blocks) =
            estuary_dag::file::import_bytes(&data, estuary_dag::Profile::KuboCidV1.options())
                .unwrap();
        let mut car = estuary_dag::car::header_v1(&[root.cid]);
        for b in &blocks {
            estuary_dag::car::encode_section(b, &mut car);
        }
        cars.lock().unwrap().insert(root.cid.to_string(), car);
        roots.push(root.cid.to_bytes());
    }
    let app = axum::Router::new().route(
        "/ipfs/{cid}",
        axum::routing::get(move |axum::extract::Path(cid): axum::extract::Path<String>| {
            let cars = Arc::clone(&cars);
            async move { cars.lock().unwrap().get(&cid).cloned().unwrap_or_default() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    pin_many(&chain, n, |i| roots[i].clone()).await;
    let args: Vec<String> = [
        "--gateway",
        &url,
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--operator-key",
        &chain.operator_key(),
        "--workers",
        "48",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let started = Instant::now();
    let oracle = OracleProcess::start_with(&chain, &dir.path().join("o.sqlite"), &args).await;
    loop {
        let list = oracle.get("/requests?limit=1000").await.unwrap();
        let done = list["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "reported")
            .count();
        if done == n {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "BENCH pins: {n} 1 KiB DAGs fetched, verified, packed and reported on chain in {secs:.2} s = {:.0} pins/s",
        n as f64 / secs
    );
    oracle.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_gateway_car_throughput() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let oracle = OracleProcess::start_with(
        &chain,
        &dir.path().join("o.sqlite"),
        &["--data-dir".to_owned(), dir.path().join("data").display().to_string()],
    )
    .await;
    // 512 MiB in 1 MiB raw leaves, uploaded once.
    let data = noise(512 << 20, 77);
    let (root, blocks) =
        estuary_dag::file::import_bytes(&data, estuary_dag::Profile::UnixfsV1_2025.options())
            .unwrap();
    drop(data);
    let mut car = estuary_dag::car::header_v1(&[root.cid]);
    for b in &blocks {
        estuary_dag::car::encode_section(b, &mut car);
    }
    drop(blocks);
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/uploads", oracle.url))
        .bearer_auth(&oracle.token)
        .header("upload-length", car.len())
        .send()
        .await
        .unwrap();
    let url = format!("{}{}", oracle.url, created.headers()["location"].to_str().unwrap());
    let r = client
        .patch(&url)
        .bearer_auth(&oracle.token)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 0)
        .body(car.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut best = 0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let mut response = client
            .get(format!("{}/ipfs/{}?format=car", oracle.url, root.cid))
            .send()
            .await
            .unwrap();
        let mut got = 0usize;
        while let Some(chunk) = response.chunk().await.unwrap() {
            got += chunk.len();
        }
        assert_eq!(got, car.len());
        let mbps = got as f64 / 1e6 / started.elapsed().as_secs_f64();
        best = best.max(mbps);
        eprintln!(
            "BENCH gateway: {} MB CAR in {:.2} s = {mbps:.0} MB/s",
            got / 1_000_000,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!("BENCH gateway best: {best:.0} MB/s");
    oracle.kill().await;
}
