//! The download benchmark (ignored; run by hand, figures in `docs/benchmarks.md`): a 1 GiB CAR
//! served on loopback, downloaded by the agent's fetcher with the piece commitment computed
//! as it streams, side by side with a plain download of the same bytes to a file (reqwest,
//! and curl when installed). Each download runs in its own process (this test binary run
//! again), so its peak RSS is its own.
//!
//! `cargo nextest run -p estuary-sp --cargo-profile bench-cli --run-ignored only bench_ --no-capture`
//! (`ESTUARY_BENCH_BYTES` for another size, `ESTUARY_BENCH_DIR` for where the downloads go,
//! `ESTUARY_PIECE_KERNEL` to choose the piece tree's kernel, printed in the last column).

use std::{
    io::Write,
    process::Stdio,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use estuary_piece::{ParallelCommP, PieceCid};
use estuary_sp::{
    domain::ExpectedPiece,
    fetch::{FetchLimits, Fetcher, Guard},
};
use serde_json::{Value, json};

const CHILD: &str = "ESTUARY_TEST_BENCH";

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One download in this process, when `ESTUARY_TEST_BENCH` says which.
#[test]
fn bench_child_entry() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let url = spec["url"].as_str().unwrap().to_owned();
    let out = std::path::PathBuf::from(spec["out"].as_str().unwrap());
    let size = spec["size"].as_u64().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        match spec["mode"].as_str().unwrap() {
            "verified" => {
                let commp: [u8; 32] = alloy::hex::decode(spec["commp"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                let expected = ExpectedPiece {
                    commp,
                    padded_size: spec["padded"].as_u64().unwrap(),
                    car_size: size,
                };
                let limits = FetchLimits {
                    hash_threads: spec["threads"].as_u64().unwrap() as usize,
                    ..FetchLimits::default()
                };
                let fetcher = Fetcher::new(Guard { allow_private: true }, limits).unwrap();
                let done = fetcher
                    .fetch(
                        &[url],
                        &expected,
                        &out,
                        &Arc::new(AtomicU64::new(0)),
                        &Arc::new(AtomicU64::new(0)),
                    )
                    .await
                    .unwrap();
                assert_eq!(done.network_bytes, size);
            }
            "plain" => {
                let mut file = std::io::BufWriter::with_capacity(
                    128 * 1024,
                    std::fs::File::create(&out).unwrap(),
                );
                let mut response = reqwest::get(url).await.unwrap();
                let mut n = 0u64;
                while let Some(chunk) = response.chunk().await.unwrap() {
                    file.write_all(&chunk).unwrap();
                    n += chunk.len() as u64;
                }
                file.flush().unwrap();
                file.get_ref().sync_all().unwrap();
                assert_eq!(n, size);
            }
            other => panic!("mode {other}"),
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&out);
    println!(
        "{}",
        json!({
            "secs": secs,
            "mbps": size as f64 / secs / 1e6,
            "peak_rss_mib": peak_rss_kib() as f64 / 1024.0,
            "kernel": estuary_piece::tree_kernel(),
        })
    );
    std::process::exit(0);
}

fn run_child(spec: &Value, one_core: bool) -> Value {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if one_core && std::process::Command::new("taskset").arg("-V").output().is_ok() {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", "1"]).arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    let out = cmd
        .args(["bench_fetch::bench_child_entry", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, spec.to_string())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.find("{\"").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no result: {text}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run by hand"]
async fn bench_fetch_1gib_verified_and_plain() {
    let size: u64 =
        std::env::var("ESTUARY_BENCH_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or(1 << 30);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = std::env::var("ESTUARY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().to_owned());
    // The CAR-sized payload (noise), its commitment computed while it is written.
    let source = dir.path().join("source.car");
    let mut hasher = ParallelCommP::new();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        let mut left = size;
        let mut seed = 1u64;
        while left > 0 {
            let n = left.min(8 << 20) as usize;
            let chunk = crate::support::noise(n, seed);
            seed += 1;
            hasher.update(&chunk);
            file.write_all(&chunk).unwrap();
            left -= n as u64;
        }
        file.flush().unwrap();
    }
    let info = hasher.finish().unwrap();
    eprintln!("source: {size} bytes, piece {}", PieceCid::v2(&info));
    let app =
        axum::Router::new().route_service("/car", tower_http::services::ServeFile::new(&source));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/car", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let base = json!({
        "url": url, "size": size, "padded": info.padded_size, "commp": alloy::hex::encode(info.commp),
        "out": out_dir.join("download.car").display().to_string(),
    });
    let with = |mode: &str, threads: u64| {
        let mut s = base.clone();
        s["mode"] = mode.into();
        s["threads"] = threads.into();
        s
    };
    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.push(("fetch + streaming commP, one core", run_child(&with("verified", 1), true)));
        rows.push(("fetch + streaming commP, every core", run_child(&with("verified", 0), false)));
        rows.push((
            "plain download (reqwest to a file), one core",
            run_child(&with("plain", 0), true),
        ));
        if let Ok(out) = std::process::Command::new("/usr/bin/time")
            .args(["-f", "%e %M", "curl", "-s", "-o"])
            .arg(out_dir.join("curl.car"))
            .arg(&url)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stderr);
            if let Some((secs, kib)) = text.trim().lines().last().and_then(|l| l.split_once(' ')) {
                let secs: f64 = secs.parse().unwrap_or(f64::NAN);
                let kib: f64 = kib.parse().unwrap_or(f64::NAN);
                rows.push(("curl -o FILE", json!({ "secs": secs, "mbps": size as f64 / secs / 1e6, "peak_rss_mib": kib / 1024.0 })));
            }
            let _ = std::fs::remove_file(out_dir.join("curl.car"));
        }
    }
    println!(
        "| download of {} MiB on loopback | seconds | MB/s | peak RSS (MiB) | tree kernel |",
        size >> 20
    );
    println!("|---|---|---|---|---|");
    for (name, r) in rows {
        println!(
            "| {name} | {:.2} | {:.0} | {:.1} | {} |",
            r["secs"].as_f64().unwrap_or(f64::NAN),
            r["mbps"].as_f64().unwrap_or(f64::NAN),
            r["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
            r["kernel"].as_str().unwrap_or("")
        );
    }
}
