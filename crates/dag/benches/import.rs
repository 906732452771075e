//! Import + CAR throughput of the engine in memory, per profile (no file I/O).
//! `cargo bench -p estuary-dag --bench import`
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use estuary_dag::{FileBuilder, Profile, car};

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn import(c: &mut Criterion) {
    let input = data(64 << 20);
    let mut group = c.benchmark_group("import+car");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    for profile in Profile::ALL {
        group.bench_with_input(BenchmarkId::from_parameter(profile.name()), &input, |b, input| {
            b.iter(|| {
                let mut writer = car::CarWriter::new();
                let mut out = Vec::with_capacity(1 << 21);
                let mut builder = FileBuilder::new(profile.options()).unwrap();
                for piece in input.chunks(1 << 20) {
                    builder.push(piece, &mut |block| {
                        writer.section(&block, &mut out);
                        out.clear();
                    });
                }
                builder.finish(&mut |block| {
                    writer.section(&block, &mut out);
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
