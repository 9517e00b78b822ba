//! Criterion benches, cross-process: the ring against pipe, Unix sockets and TCP, producer and
//! consumer in two processes pinned to different cores (the same measurement code as
//! `shm-bench`, driven by criterion's `iter_custom`).
//!
//! Run: `cargo bench --bench transports` (or `-- rtt` / `-- throughput` for one group).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shm_demo::bench::{rtt_samples, throughput, Transport};

const RTT: [Transport; 8] = [
    Transport::ShmSpsc,
    Transport::ShmSpscCopy,
    Transport::ShmSpscBlocking,
    Transport::AtomicFloor,
    Transport::Pipe,
    Transport::UnixStream,
    Transport::UnixSeqPacket,
    Transport::Tcp,
];
const STREAM: [Transport; 7] = [
    Transport::ShmSpsc,
    Transport::ShmSpscCopy,
    Transport::ShmSpscBlocking,
    Transport::Pipe,
    Transport::UnixStream,
    Transport::UnixSeqPacket,
    Transport::Tcp,
];

fn rtt(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtt");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for t in RTT {
        g.bench_function(t.name(), |b| {
            b.iter_custom(|iters| {
                // At least 100 round trips per sample, scaled back to the `iters` asked for.
                let n = iters.max(100);
                let samples = rtt_samples(t, n, false).expect("round trips");
                let total = samples.iter().sum::<u64>() as f64;
                Duration::from_nanos((total * iters as f64 / n as f64) as u64)
            })
        });
    }
    g.finish();
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for size in [8usize, 64, 1024, 65536] {
        g.throughput(Throughput::Bytes(size as u64));
        for t in STREAM {
            g.bench_with_input(BenchmarkId::new(t.name(), size), &size, |b, &size| {
                b.iter_custom(|iters| {
                    let n = iters.max(1000);
                    let rate = throughput(t, size, n).expect("stream");
                    Duration::from_secs_f64(iters as f64 / rate)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, rtt, stream);
criterion_main!(benches);
