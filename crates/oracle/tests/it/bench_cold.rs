//! Cold reads of `/piece` and the gateway (issue 18), ignored by the test command. Run with
//! `cargo nextest run -p estuary-oracle --test it --cargo-profile bench-cli --run-ignored only
//! -E 'test(/bench_cold/)' --no-capture`; the figures are in docs/benchmarks.md.
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
    deals::{
        cold::{ColdReads, Source},
        registry::ProviderUrls,
    },
    domain::probe::LevelsBuilder,
    fetch::NetPolicy,
    store::{DatabaseUrl, Store},
};
use estuary_piece::{CommP, PieceCid};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::bench_aggregate::{api, api_with, random};

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
    car_size: usize,
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
            car_size: car_size as u64,
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

/// An oracle's store at `dir`, and its cold reads, for a pin whose blocks are gone: the piece
/// of the CAR at `car_path` (its levels and its blocks' places recorded, marked cold) held by
/// f01000, an SP agent's retrieval server serving that file (through a proxy flipping a byte
/// of each body while `tamper` is set, if given), the order's replica active. Verified spans
/// are kept `cache_secs`.
pub(crate) async fn cold_oracle(
    dir: &std::path::Path,
    root: &str,
    piece: &PieceCid,
    car_path: &std::path::Path,
    cache_secs: u64,
    tamper: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> (Store, Arc<ColdReads>) {
    use alloy::primitives::{Address, B256};
    use estuary_chain::Cursor;
    use estuary_oracle::{
        domain::deal::{Backend, DealLog, DealLogKind, OrderState, SlotEventKind},
        store::OrderRecord,
    };
    std::fs::create_dir_all(dir).unwrap();
    let car = std::fs::read(car_path).unwrap();
    let padded = piece.padded_size().unwrap();
    let mut b = LevelsBuilder::new(padded).unwrap();
    b.update(&car).unwrap();
    let levels = {
        let mut c = CommP::new();
        c.update(&car);
        b.finish(&c.finish().unwrap().commp).unwrap()
    };
    // Where each block's data lies in the CAR.
    let mut places = Vec::new();
    let mut decoder = estuary_dag::car::CarDecoder::new(Default::default());
    decoder.push(&car);
    while let Some(item) = decoder.next_item().unwrap() {
        if let estuary_dag::car::CarItem::Block(block) = item {
            let at = decoder.offset() - block.data.len() as u64;
            places.push((block.cid.to_bytes(), at, block.data.len() as u64));
        }
    }
    let store = Store::open(&DatabaseUrl::Sqlite(dir.join("o.sqlite"))).await.unwrap();
    let name = piece.to_string();
    store.put_piece_levels(&name, &levels).await.unwrap();
    let id = store.start_piece_blocks(&name).await.unwrap().unwrap();
    store.add_piece_blocks(id, &places).await.unwrap();
    store.finish_piece_blocks(id, places.len() as u64).await.unwrap();
    store.mark_blocks_cold(std::slice::from_ref(&name), 1).await.unwrap();
    let (contract, operator) = (Address::repeat_byte(0x33), Address::repeat_byte(0x44));
    let piece_v1 = piece.to_v1().to_cid().to_bytes();
    let order = OrderRecord {
        backend: Backend::Perpetual,
        contract,
        piece_cid: name.clone(),
        piece_v1: piece_v1.clone(),
        payload_cid: root.to_owned(),
        padded_size: padded,
        car_size: car.len() as u64,
        replicas_target: 1,
        state: OrderState::Sending,
        order_id: None,
        tx_hash: None,
        error: None,
        funding: None,
        sent_block: 1,
        created_ms: 0,
        updated_ms: 0,
    };
    assert!(store.record_order(&order, 1).await.unwrap());
    let log = |block, order_id, kind| DealLog { block_number: block, log_index: 0, order_id, kind };
    let slot = |kind| DealLogKind::Slot { provider: 1000, kind };
    let logs = [
        log(2, 1, DealLogKind::Created { client: operator, piece_v1 }),
        log(3, 1, slot(SlotEventKind::Claimed { deadline: Some(1000) })),
        log(
            4,
            1,
            slot(SlotEventKind::Activated { deal_id: Some(1), start_epoch: 5, end_epoch: 100_000 }),
        ),
    ];
    let at = Cursor { block_number: 4, block_hash: B256::repeat_byte(4) };
    store.ingest_deal_events("deals:bench", contract, &[operator], &logs, at, 1).await.unwrap();
    let v1 = piece.to_v1().to_cid().to_string();
    let mut sp = sp(dir, car_path, piece, v1, padded, car.len()).await;
    if let Some(tamper) = tamper {
        sp = crate::probes::tampering_proxy(sp, tamper).await;
    }
    let reads = Arc::new(
        ColdReads::new(
            store.clone(),
            Arc::new(ProviderUrls::new(HashMap::from([(1000, sp)]), false)),
            Arc::new(NetPolicy::strict()),
            Duration::from_secs(60),
            Duration::from_secs(cache_secs),
        )
        .unwrap(),
    );
    (store, reads)
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
    let sp = sp(dir.path(), &car, &piece, v1, info.padded_size, SIZE).await;
    let cold = Arc::new(
        // No cache: each run reads from the SP.
        ColdReads::new(
            store.clone(),
            Arc::new(ProviderUrls::new(HashMap::from([(1000, sp.clone())]), false)),
            Arc::new(NetPolicy::strict()),
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap(),
    );
    let sources = vec![Source { provider: 1000, url: sp.clone(), registered: false }];

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

/// A 100 MiB file as `estuary add` makes it (UnixFS, 256 KiB chunks: about 400 blocks), its
/// CAR held by an SP agent, and two oracles' gateways:
/// - **hot**: the pin's blocks in the oracle's store;
/// - **cold**: none of them here, the piece's blocks placed (`piece_blocks`, as the read-back
///   records them) and the piece marked cold, f01000 holding it (an order with its replica
///   active): each block read from the SP by its place, the spans around it checked against
///   the commitment, the block against its CID. Verified spans are kept 2 s (the oracle keeps
///   them `--cold-cache-secs`, 600 by default): each run starts cold, and a span two blocks
///   share is read once.
///
/// Both serve `GET /ipfs/{root}?format=car`; the first download of each is checked, untimed:
/// the same CAR, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand (see the module's docs)"]
async fn bench_cold_gateway_reads_from_an_sp_beside_hot_ones() {
    use estuary_oracle::blockstore::{Blockstore, FsBlockstore};
    let dir = tempfile::tempdir().unwrap();
    let (root, piece, car) = crate::oracle_pinning::add(dir.path(), "f", &random(SIZE, 9));
    let piece: PieceCid = piece.parse().unwrap();
    let (_, blocks) = estuary_dag::car::read_car(&car, Default::default()).unwrap();
    let car_path = dir.path().join("piece.car");
    std::fs::write(&car_path, &car).unwrap();
    drop(car);

    // The hot oracle: the pin's blocks in its store.
    let hot_dir = dir.path().join("hot");
    let hot_blocks = FsBlockstore::open(hot_dir.join("blocks")).unwrap();
    for block in &blocks {
        hot_blocks.put(&block.cid, &block.data).unwrap();
    }
    drop(blocks);
    let shutdown = CancellationToken::new();
    let hot_store = Store::open(&DatabaseUrl::Sqlite(hot_dir.join("o.sqlite"))).await.unwrap();
    let hot = api(&hot_store, &hot_dir, &hot_dir.join("packed"), &shutdown).await;

    // The cold oracle: no blocks, the piece at f01000.
    let cold_dir = dir.path().join("cold");
    let (store, reads) = cold_oracle(&cold_dir, &root, &piece, &car_path, 2, None).await;
    let name = piece.to_string();
    assert_eq!(reads.sources(&name).await.unwrap().len(), 1, "f01000 holds it");
    let cold = api_with(&store, &cold_dir, &cold_dir.join("packed"), &shutdown, Some(reads)).await;

    let path = format!("/ipfs/{root}?format=car");
    let (mut hot_best, mut cold_best, mut bytes) = (Duration::MAX, Duration::MAX, 0);
    for run in 0..RUNS {
        let (a, took) = download(&format!("{hot}{path}")).await;
        hot_best = hot_best.min(took);
        // Past the verified spans' time: each run reads from the SP.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let (b, took) = download(&format!("{cold}{path}")).await;
        cold_best = cold_best.min(took);
        if run == 0 {
            assert!(a == b, "the same CAR, hot and cold");
            bytes = a.len() as u64;
        }
    }
    println!("a {SIZE} B file, its CAR {bytes} B through the gateway, best of {RUNS}:");
    println!("  hot  (the pin's blocks here)            {:>7.1} MB/s", mbps(bytes, hot_best));
    println!("  cold (each block from the SP, checked)  {:>7.1} MB/s", mbps(bytes, cold_best));
    shutdown.cancel();
}
