//! Cold reads of `/piece` (issue 18), ignored by the test command. Run with `cargo nextest run
//! -p estuary-oracle --test it --cargo-profile bench-cli --run-ignored only -E
//! 'test(/bench_cold/)' --no-capture`; the figures are in docs/benchmarks.md.
//!
//! A 100 MiB piece payload (random bytes: neither side parses CARs to serve `/piece`) is held
//! by an SP agent's retrieval server (`estuary_sp::api::router`, as `estuary sp` serves it,
//! its piece recorded in its own database) and by the oracle as its packed CAR, both on
//! loopback, page cache warm. Three downloads of the whole payload, the best of three each:
//! - **hot**: the oracle's `GET /piece/{pieceCid}` from its packed directory;
//! - **cold**: the oracle's cold read from the SP (`deals::cold::ColdReads::read_from`, what
//!   `/piece` of a piece not here streams): span by span, each hashed up to the piece tree's
//!   node before it is passed on, two in flight;
//! - **SP, unchecked**: the SP's `GET /piece/{pieceCid}` read directly, one request: what the
//!   transfer alone costs.
//!
//! Each kind's first download is checked, untimed: its commP is the piece's.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, Instant},
};

use estuary_oracle::{
    deals::cold::{ColdReads, Source},
    domain::probe::LevelsBuilder,
    store::{DatabaseUrl, Store},
};
use estuary_piece::{CommP, PieceCid};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bench_aggregate::{api, random};

/// Payload bytes: 100 MiB (a 128 MiB piece).
const SIZE: usize = 100 << 20;
/// Timed downloads of each kind; the best counts.
const RUNS: usize = 3;

/// An SP agent's retrieval server holding the file at `path` as `piece`.
async fn sp(
    dir: &std::path::Path,
    path: &std::path::Path,
    piece: &PieceCid,
    v1: String,
    padded: u64,
) -> String {
    use estuary_sp::{
        agent::Stats,
        api::{ApiState, router},
        store::{PieceRow, Store},
    };
    let store = Store::open(&dir.join("sp.sqlite")).await.unwrap();
    store
        .add_piece(&PieceRow {
            id: 0,
            name: piece.to_string(),
            piece_v1: v1,
            piece_v2: Some(piece.to_string()),
            car_size: SIZE as u64,
            padded_size: padded,
            path: path.display().to_string(),
            indexed: 2,
            blocks: 0,
            roots: None,
            index_error: Some("random bytes".into()),
            verified_ms: 1,
        })
        .await
        .unwrap();
    let state = Arc::new(ApiState {
        store,
        miner: 1000,
        account: "0x0".into(),
        chain_id: 31337,
        watchers: Vec::new(),
        stats: Arc::new(Stats::default()),
        downloads: Arc::new(Mutex::default()),
        retrievals: Arc::new(tokio::sync::Semaphore::new(16)),
        idle: Duration::from_secs(30),
        bytes_served: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    url
}

/// Downloads `url` whole: its bytes, and the time.
async fn download(url: &str) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::with_capacity(SIZE);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (bytes, started.elapsed())
}

/// Whether `bytes` are the piece whose commitment is `commp` (untimed).
fn check(bytes: &[u8], commp: &estuary_piece::commp::Node) {
    let mut c = CommP::new();
    c.update(bytes);
    assert_eq!((c.finish().unwrap().commp, bytes.len()), (*commp, SIZE));
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand (see the module's docs)"]
async fn bench_cold_piece_reads_from_an_sp_beside_hot_ones() {
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("packed");
    std::fs::create_dir_all(&packed).unwrap();
    let payload = random(SIZE, 7);
    let mut c = CommP::new();
    c.update(&payload);
    let info = c.finish().unwrap();
    let piece = PieceCid::v2(&info);
    let v1 = piece.to_v1().to_cid().to_string();
    let mut b = LevelsBuilder::new(info.padded_size).unwrap();
    b.update(&payload).unwrap();
    let levels = Arc::new(b.finish(&info.commp).unwrap());
    let car = packed.join(format!("{piece}.car"));
    std::fs::write(&car, &payload).unwrap();
    drop(payload);

    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("oracle.sqlite"))).await.unwrap();
    let shutdown = CancellationToken::new();
    let oracle = api(&store, dir.path(), &packed, &shutdown).await;
    let sp = sp(dir.path(), &car, &piece, v1, info.padded_size).await;
    let cold = Arc::new(
        // No cache: each run reads from the SP.
        ColdReads::new(
            store.clone(),
            HashMap::from([(1000, sp.clone())]),
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap(),
    );
    let sources = vec![Source { provider: 1000, url: sp.clone() }];

    let (mut hot, mut cold_best, mut direct) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for run in 0..RUNS {
        let (bytes, took) = download(&format!("{oracle}/piece/{piece}")).await;
        hot = hot.min(took);
        if run == 0 {
            check(&bytes, &info.commp);
        }

        let started = Instant::now();
        let read = cold
            .read_from(piece.to_string(), Arc::clone(&levels), sources.clone(), (0, SIZE as u64))
            .await
            .unwrap()
            .unwrap();
        let mut body = read.body;
        let mut bytes = Vec::with_capacity(SIZE);
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        cold_best = cold_best.min(started.elapsed());
        if run == 0 {
            check(&bytes, &info.commp);
        }

        let (bytes, took) = download(&format!("{sp}/piece/{piece}")).await;
        direct = direct.min(took);
        if run == 0 {
            check(&bytes, &info.commp);
        }
    }
    let spans = levels.nodes.len();
    let span_kib = levels.span(0).map(|(a, b)| (b - a) / 1024).unwrap_or(0);
    println!("payload {SIZE} B, {spans} spans of {span_kib} KiB, best of {RUNS}:");
    println!("  hot  (oracle /piece, packed CAR)        {:>7.1} MB/s", mbps(SIZE as u64, hot));
    println!(
        "  cold (oracle from the SP, checked)      {:>7.1} MB/s",
        mbps(SIZE as u64, cold_best)
    );
    println!("  SP /piece directly, unchecked           {:>7.1} MB/s", mbps(SIZE as u64, direct));
    shutdown.cancel();
}
