//! Serving a closed bucket's FRC-0058 aggregate (issue 17), ignored by the test command. Run
//! with `cargo nextest run -p estuary-oracle --test it --cargo-profile bench-cli --run-ignored
//! only -E 'test(/bench_aggregate/)' --no-capture`; the figures are in docs/benchmarks.md.
//!
//! A 1 GiB (padded) deal holding 63 pieces of 16 MiB (padded), each a file of random bytes in
//! the packed directory with its real commP (the server does not parse CARs), put in a bucket
//! and closed with the aggregate's piece CID, as the bucketer does, without the pinning
//! pipeline. `GET /piece/{aggregate}` then assembles the aggregate from those files (zeros
//! between them, the index at the end), and is timed against the same bytes served as one plain
//! file through the same route (tower-http `ServeFile`), by a second server whose packed
//! directory holds `{aggregate}.car`. Both servers are the oracle's own (`api::serve`), on
//! loopback, with the page cache warm. A third server, tower-http `ServeFile` alone with 256
//! KiB reads (the oracle's route reads 64 KiB, tower-http's default), is a diagnostic row: what
//! the reference costs with the aggregate's read size.
//!
//! RSS is the test process's: server and (for reqwest) client together. `curl` (if installed)
//! downloads from another process, so its rows show the server alone.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::primitives::Address;
use estuary_oracle::{
    api::{ApiPolicy, ApiState, router, serve::ServerLimits},
    blockstore::FsBlockstore,
    domain::{JobSource, bucket::OpenBucket, now_ms},
    store::{DatabaseUrl, PieceToOrder, Store},
};
use estuary_piece::{
    CommP, PieceCid,
    aggregate::{Aggregate, next_offset, unpadded},
    commp::PieceInfo,
};
use tokio_util::sync::CancellationToken;

/// Padded size of the deal: 1 GiB.
const DEAL: u64 = 1 << 30;
/// Padded size of each piece.
const PIECE: u64 = 16 << 20;
/// Pieces: 63 × 16 MiB, and the index area (512 KiB) in the last 16 MiB.
const PIECES: u64 = 63;
/// Timed downloads of each kind; the best counts.
const RUNS: usize = 3;

/// Random bytes, fast (xorshift64, eight bytes a step).
pub(crate) fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; len];
    for word in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
    }
    out
}

/// A field of `/proc/self/status`, KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// This process's CPU time (user + system), seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // USER_HZ is 100 on Linux.
    (fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// Samples VmRSS every 2 ms until dropped; its peak, KiB.
struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(status_kib("VmRSS")));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(status_kib("VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self { stop, peak, thread: Some(thread) }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.fetch_max(status_kib("VmRSS"), Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

/// One timed download.
#[derive(Debug, Clone, Copy)]
struct Run {
    secs: f64,
    bytes: u64,
    /// VmRSS before, KiB.
    rss_before: u64,
    /// Peak VmRSS during (sampled), KiB.
    rss_peak: u64,
    /// VmHWM after it was reset before the run (exact peak), KiB; 0 if it cannot be reset.
    hwm: u64,
    /// This process's CPU seconds during the run.
    cpu: f64,
}

impl Run {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }

    fn growth_mib(&self) -> f64 {
        self.rss_peak.max(self.hwm).saturating_sub(self.rss_before) as f64 / 1024.0
    }
}

/// Runs `download` (which returns the bytes and the seconds it took) while watching RSS.
async fn measure<F: std::future::Future<Output = (u64, f64)>>(download: F) -> Run {
    let rss_before = status_kib("VmRSS");
    // Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let cpu = cpu_secs();
    let sampler = RssPeak::start();
    let (bytes, secs) = download.await;
    let rss_peak = sampler.finish();
    let hwm = if hwm_reset { status_kib("VmHWM") } else { 0 };
    Run { secs, bytes, rss_before, rss_peak, hwm, cpu: cpu_secs() - cpu }
}

/// `GET url` with reqwest, the body streamed and counted, not kept.
async fn reqwest_get(client: &reqwest::Client, url: &str) -> (u64, f64) {
    let started = Instant::now();
    let mut res = client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    let mut n = 0u64;
    while let Some(chunk) = res.chunk().await.unwrap() {
        n += chunk.len() as u64;
    }
    (n, started.elapsed().as_secs_f64())
}

/// `curl -o /dev/null url`: bytes and curl's own total time.
async fn curl_get(url: &str) -> (u64, f64) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (bytes, secs) = text.trim().split_once(' ').unwrap();
    (bytes.parse().unwrap(), secs.parse().unwrap())
}

fn has_curl() -> bool {
    std::process::Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The oracle's API over `packed_dir`, served by its own server on loopback.
pub(crate) async fn api(
    store: &Store,
    root: &Path,
    packed_dir: &Path,
    shutdown: &CancellationToken,
) -> String {
    api_with(store, root, packed_dir, shutdown, None).await
}

/// [`api`], reading what is not here from providers with `cold`.
pub(crate) async fn api_with(
    store: &Store,
    root: &Path,
    packed_dir: &Path,
    shutdown: &CancellationToken,
    cold: Option<Arc<estuary_oracle::deals::cold::ColdReads>>,
) -> String {
    let (tx, watch) = tokio::sync::watch::channel(estuary_chain::WatchState::default());
    std::mem::forget(tx);
    let state = ApiState {
        store: store.clone(),
        blocks: Arc::new(FsBlockstore::open(root.join("blocks")).unwrap()),
        packed_dir: packed_dir.to_owned(),
        uploads_dir: root.join("uploads"),
        source: JobSource::Contract { chain: 1, address: Address::ZERO },
        watch,
        api_token: None,
        delegates: vec![],
        p2p: None,
        gateway_limits: Default::default(),
        faults: Default::default(),
        policy: ApiPolicy::default(),
        bucket_size: Some(DEAL),
        aggregates: Default::default(),
        cold,
        wake: Default::default(),
        history: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Arc::new(state));
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        estuary_oracle::api::serve::serve(listener, app, ServerLimits::default(), shutdown).await;
    });
    url
}

/// Only tower-http `ServeFile` of `path` with `chunk`-byte reads (the oracle's route reads 64
/// KiB, tower-http's default), at the same path: what the reference costs with larger reads.
async fn serve_file(
    path: &Path,
    chunk: usize,
    route: &str,
    shutdown: &CancellationToken,
) -> String {
    let service = tower_http::services::ServeFile::new(path).with_buf_chunk_size(chunk);
    let app = axum::Router::new().route_service(route, service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{route}", listener.local_addr().unwrap());
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        estuary_oracle::api::serve::serve(listener, app, ServerLimits::default(), shutdown).await;
    });
    url
}

/// Writes the pieces' CARs to `packed`, puts them in one bucket and closes it as its
/// aggregate. Returns the aggregate's v2 piece CID and the CARs' (piece CID, offset, size).
async fn bucket(store: &Store, packed: &Path) -> (String, Vec<(String, u64, u64)>) {
    std::fs::create_dir_all(packed).unwrap();
    let dir = packed.to_owned();
    let cars = tokio::task::spawn_blocking(move || {
        (0..PIECES)
            .map(|i| {
                // Not quite full, and each a different size: gaps of zeros between them, and
                // reads that do not start on a chunk boundary.
                let car_size = unpadded(PIECE) - 80_000 - i * 1021;
                let car = random(car_size as usize, 1000 + i);
                let mut c = CommP::new();
                c.update(&car);
                let info = c.finish().unwrap();
                assert_eq!(info.padded_size, PIECE);
                let cid = PieceCid::v2(&info).to_string();
                std::fs::write(dir.join(format!("{cid}.car")), &car).unwrap();
                (cid, info.commp, car_size)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let now = now_ms();
    let mut open: Option<OpenBucket> = None;
    let mut placed = Vec::new();
    for (i, (cid, _, car_size)) in cars.iter().enumerate() {
        let end = open.map_or(0, |b| b.end);
        let offset = next_offset(end, PIECE);
        let piece = PieceToOrder {
            piece_cid: cid.clone(),
            payload_cid: format!("bench-root-{i}"),
            padded_size: PIECE,
            car_size: *car_size,
        };
        let id =
            store.add_to_bucket(open.as_ref(), None, &piece, offset, offset + PIECE, now).await;
        let id = id.unwrap().expect("placed");
        open = Some(match open {
            Some(b) => OpenBucket { end: offset + PIECE, pieces: b.pieces + 1, ..b },
            None => OpenBucket { id, end: offset + PIECE, pieces: 1, created_ms: now },
        });
        placed.push((cid.clone(), offset, *car_size));
    }
    let height = (PIECE / 32).trailing_zeros() as u8;
    let nodes: Vec<_> = cars.iter().map(|(_, commp, _)| (*commp, height)).collect();
    let aggregate = Aggregate::build(&nodes, DEAL).unwrap();
    for (s, (_, offset, _)) in aggregate.segments.iter().zip(&placed) {
        assert_eq!(s.offset, *offset, "placed where the aggregate puts it");
    }
    let info = PieceInfo { commp: aggregate.root, padded_size: DEAL, payload_size: unpadded(DEAL) };
    let cid = PieceCid::v2(&info).to_string();
    let bucket = open.unwrap();
    assert!(store.close_bucket(&bucket, "full", DEAL, &cid, now).await.unwrap());
    (cid, placed)
}

/// `GET` the aggregate once, check its commP is the aggregate's piece CID and each CAR is at
/// its offset, and write the bytes to `copy` (the plain-file reference).
async fn check_and_copy(url: &str, aggregate: &str, placed: &[(String, u64, u64)], copy: &Path) {
    use std::io::Write;
    let mut res = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(unpadded(DEAL)));
    let mut file = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(copy).unwrap());
    let mut commp = CommP::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        commp.update(&chunk);
        file.write_all(&chunk).unwrap();
    }
    file.into_inner().unwrap().sync_all().unwrap();
    let info = commp.finish().unwrap();
    assert_eq!(info.payload_size, unpadded(DEAL), "the whole aggregate");
    assert_eq!(info.padded_size, DEAL);
    assert_eq!(
        PieceCid::v2(&info).to_string(),
        aggregate,
        "the download's commP is the aggregate's piece CID"
    );
    // Each CAR where its index entry says (spot-checked: the first, a middle one, the last):
    // the bytes at its offset have its commP.
    let mut whole = std::fs::File::open(copy).unwrap();
    for (cid, offset, size) in [&placed[0], &placed[placed.len() / 2], &placed[placed.len() - 1]] {
        use std::io::{Read, Seek, SeekFrom};
        let mut car = vec![0u8; *size as usize];
        whole.seek(SeekFrom::Start(unpadded(*offset))).unwrap();
        whole.read_exact(&mut car).unwrap();
        let mut c = CommP::new();
        c.update(&car);
        assert_eq!(PieceCid::v2(&c.finish().unwrap()).to_string(), *cid, "{cid} at its offset");
    }
}

fn row(name: &str, runs: &[Run]) -> Run {
    let best = *runs.iter().min_by(|a, b| a.secs.total_cmp(&b.secs)).unwrap();
    let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.mb_s())).collect();
    let growth = runs.iter().map(Run::growth_mib).fold(0.0, f64::max);
    let cpu = runs.iter().map(|r| r.cpu).sum::<f64>() / runs.len() as f64;
    eprintln!(
        "BENCH {name}: best {:.3} s = {:.0} MB/s (runs: {} MB/s); {} B; RSS before {:.1} MiB, \
         largest growth {growth:.1} MiB (sampled peak {:.1} MiB, VmHWM {:.1} MiB); \
         process CPU {cpu:.2} s per download",
        best.secs,
        best.mb_s(),
        all.join(", "),
        best.bytes,
        best.rss_before as f64 / 1024.0,
        best.rss_peak as f64 / 1024.0,
        best.hwm as f64 / 1024.0,
    );
    best
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark"]
async fn bench_aggregate_1gib_from_cars_vs_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("db"))).await.unwrap();
    let cars_dir = dir.path().join("cars");
    let file_dir = dir.path().join("file");
    std::fs::create_dir_all(&file_dir).unwrap();
    let started = Instant::now();
    let (aggregate, placed) = bucket(&store, &cars_dir).await;
    let car_bytes: u64 = placed.iter().map(|p| p.2).sum();
    eprintln!(
        "setup: {PIECES} CARs, {car_bytes} B ({:.1} MiB) in a {} MiB deal ({} B served), {:.1} s",
        car_bytes as f64 / 1048576.0,
        DEAL >> 20,
        unpadded(DEAL),
        started.elapsed().as_secs_f64()
    );
    let shutdown = CancellationToken::new();
    let from_cars = api(&store, dir.path(), &cars_dir, &shutdown).await;
    let from_file = api(&store, dir.path(), &file_dir, &shutdown).await;
    let agg_url = format!("{from_cars}/piece/{aggregate}");
    let file_url = format!("{from_file}/piece/{aggregate}");
    let copy = file_dir.join(format!("{aggregate}.car"));
    // The server's first aggregate download: its allocations are new (curl when it is
    // installed, so the figure is the server's alone).
    let curl = has_curl();
    let first = if curl {
        measure(curl_get(&agg_url)).await
    } else {
        measure(reqwest_get(&reqwest::Client::new(), &agg_url)).await
    };
    assert_eq!(first.bytes, unpadded(DEAL));
    row(&format!("first aggregate download ({})", if curl { "curl" } else { "reqwest" }), &[first]);
    let started = Instant::now();
    check_and_copy(&agg_url, &aggregate, &placed, &copy).await;
    eprintln!(
        "checked: commP of the download = {aggregate} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), unpadded(DEAL));

    let bare_url = serve_file(&copy, 256 << 10, &format!("/piece/{aggregate}"), &shutdown).await;
    let client = reqwest::Client::new();
    // Warm both paths (page cache, connections, allocator) before timing.
    reqwest_get(&client, &agg_url).await;
    reqwest_get(&client, &file_url).await;
    reqwest_get(&client, &bare_url).await;
    let (mut agg, mut file, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        agg.push(measure(reqwest_get(&client, &agg_url)).await);
        file.push(measure(reqwest_get(&client, &file_url)).await);
        bare.push(measure(reqwest_get(&client, &bare_url)).await);
    }
    for r in agg.iter().chain(&file).chain(&bare) {
        assert_eq!(r.bytes, unpadded(DEAL));
    }
    let best_agg = row("reqwest aggregate (assembled from 63 CARs)", &agg);
    let best_file = row("reqwest plain file (ServeFile), same bytes", &file);
    row("reqwest plain file, bare ServeFile with 256 KiB reads (diagnostic)", &bare);
    eprintln!("BENCH reqwest aggregate ÷ file: {:.2}×", best_agg.mb_s() / best_file.mb_s());
    if curl {
        let (mut agg, mut file, mut bare) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            agg.push(measure(curl_get(&agg_url)).await);
            file.push(measure(curl_get(&file_url)).await);
            bare.push(measure(curl_get(&bare_url)).await);
        }
        for r in agg.iter().chain(&file).chain(&bare) {
            assert_eq!(r.bytes, unpadded(DEAL));
        }
        let best_agg = row("curl aggregate (assembled from 63 CARs)", &agg);
        let best_file = row("curl plain file (ServeFile), same bytes", &file);
        row("curl plain file, bare ServeFile with 256 KiB reads (diagnostic)", &bare);
        eprintln!("BENCH curl aggregate ÷ file: {:.2}×", best_agg.mb_s() / best_file.mb_s());
    } else {
        eprintln!("BENCH curl: not installed, skipped");
    }
    shutdown.cancel();
}
