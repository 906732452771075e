//! FRC-0058 aggregates of many sub-pieces: time to build (index + tree), to produce every
//! inclusion proof and to verify them, and memory.
//! `cargo bench -p estuary-piece --bench aggregate [-- N...]` (default N = 10,000 and 100,000).
//!
//! Each N runs in a process of its own (this binary again, with `--child N`), so the peak RSS
//! (`VmHWM`) it reports is that aggregate's alone. Sub-pieces are pseudo-random commPs (the
//! benchmark measures aggregation, not commP) with heights drawn uniformly from ten heights,
//! placed in the order drawn, in a 32 GiB deal (262,144 index entries): 8 KiB–4 MiB padded for
//! up to 10,000 pieces, 1 KiB–512 KiB beyond, so that 10,000 or 100,000 fill about 40 % of it.
//! All N proofs are kept in memory between proving and verifying, as a caller reporting them
//! would; the aggregate's own bytes are the RSS growth across `Aggregate::build`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use estuary_piece::aggregate::{Aggregate, InclusionProof, verify};
use estuary_piece::commp::Node;

const DEAL_SIZE: u64 = 32 << 30;

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn node(&mut self) -> Node {
        let mut n = [0u8; 32];
        for chunk in n.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        n[31] &= 0x3f; // a commP is an Fr32 element: the top two bits are zero
        n
    }
}

/// Tree heights of the sub-pieces (32 B × 2^h padded).
fn heights(n: usize) -> std::ops::RangeInclusive<u8> {
    if n <= 10_000 { 8..=17 } else { 5..=14 }
}

fn pieces(n: usize) -> Vec<(Node, u8)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    let range = heights(n);
    let span = u64::from(range.end() - range.start() + 1);
    (0..n).map(|_| (rng.node(), range.start() + (rng.next() % span) as u8)).collect()
}

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// One aggregate of `n` sub-pieces; prints one table row.
fn child(n: usize) {
    let pieces = pieces(n);
    let rss_before = status_bytes("VmRSS:");

    let start = Instant::now();
    let agg = Aggregate::build(&pieces, DEAL_SIZE).unwrap();
    let build = start.elapsed();
    let rss_built = status_bytes("VmRSS:");

    let start = Instant::now();
    let proofs: Vec<InclusionProof> = (0..n).map(|i| agg.proof(i).unwrap()).collect();
    let prove = start.elapsed();
    let rss_proved = status_bytes("VmRSS:");

    let start = Instant::now();
    for (i, (proof, (commp, height))) in proofs.iter().zip(&pieces).enumerate() {
        let segment = verify(proof, commp, *height, &agg.root, agg.height).unwrap();
        assert_eq!(segment, agg.segments[i]);
    }
    let check = start.elapsed();
    let peak = status_bytes("VmHWM:");

    let range = heights(n);
    let end = agg.segments.iter().map(|s| s.offset + s.size).max().unwrap_or(0);
    println!(
        "| {n} | {} | {}–{} | {:.0} % | {} | {} | {} | {} | {} B | {} B |",
        size(DEAL_SIZE),
        size(32 << range.start()),
        size(32 << range.end()),
        end as f64 * 100.0 / DEAL_SIZE as f64,
        secs(build),
        secs(prove),
        secs(check),
        mib(peak),
        rss_built.saturating_sub(rss_before) / n as u64,
        rss_proved.saturating_sub(rss_built) / n as u64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        child(args[at + 1].parse().unwrap());
        return;
    }
    let mut ns: Vec<usize> = args.iter().filter_map(|a| a.replace('_', "").parse().ok()).collect();
    if ns.is_empty() {
        ns = vec![10_000, 100_000];
    }
    println!(
        "| N | deal | sub-pieces (padded) | deal filled | build | N proofs | verify N | peak RSS | aggregate bytes / sub-piece | proof bytes / sub-piece |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().unwrap();
    for n in ns {
        let status = Command::new(&exe).arg("--child").arg(n.to_string()).status().unwrap();
        assert!(status.success(), "N = {n}: {status}");
    }
}
