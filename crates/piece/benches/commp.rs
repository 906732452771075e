//! commP throughput in memory: one core (64 KiB updates) and all cores (one 64 MiB update).
//! `cargo bench -p estuary-piece --bench commp`; `ESTUARY_PIECE_KERNEL=sha-ni|avx512|portable`
//! to compare the tree's kernels (the one used is printed first).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use estuary_piece::CommP;

fn commp(c: &mut Criterion) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..64 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    eprintln!("piece tree kernel: {}", estuary_piece::tree_kernel());
    let mut group = c.benchmark_group("commp");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("one core (64 KiB updates)", |b| {
        b.iter(|| {
            let mut p = CommP::new();
            for piece in data.chunks(64 << 10) {
                p.update(piece);
            }
            p.finish().unwrap()
        });
    });
    group.bench_function("all cores (one 64 MiB update)", |b| {
        b.iter(|| {
            let mut p = CommP::new();
            p.update(&data);
            p.finish().unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, commp);
criterion_main!(benches);
