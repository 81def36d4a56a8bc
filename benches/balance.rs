//! Cost of one pick per algorithm, over 10 to 10 000 endpoints, and of building a hash ring.
//!
//! `cargo bench --bench balance`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::balance::{
    Balance, ConsistentHash, LeastConnections, PeakEwma, Pick, Random, RoundRobin, SlowStart,
    key_hash,
};
use weir::endpoint::Endpoint;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
    let now = Instant::now();
    (0..n)
        .map(|i| {
            let addr = format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256)
                .parse()
                .expect("address");
            let e = Arc::new(Endpoint::new(addr, format!("ns/pod-{i}")));
            e.observe_latency(
                Duration::from_micros(200 + (i % 50) as u64),
                now,
                Duration::from_secs(10),
            );
            e
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n in SIZES {
        let eps = endpoints(n);
        let slow_start = Some(SlowStart {
            window: Duration::from_secs(60),
        });
        let algorithms: Vec<(&str, Box<dyn Balance>)> = vec![
            ("RoundRobin", Box::new(RoundRobin::new(n, None))),
            (
                "RoundRobin+slowStart",
                Box::new(RoundRobin::new(n, slow_start)),
            ),
            ("LeastConnections", Box::new(LeastConnections::new(None))),
            (
                "PeakEwma",
                Box::new(PeakEwma::new(Duration::from_secs(10), None)),
            ),
            ("Random", Box::new(Random)),
            ("ConsistentHash", Box::new(ConsistentHash::new(&eps))),
        ];
        let accept = |_: &Endpoint| true;
        for (name, balancer) in &algorithms {
            let mut k = 0u64;
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                b.iter(|| {
                    k = k.wrapping_add(1);
                    let pick = Pick {
                        now: Instant::now(),
                        key: Some(key_hash(&k.to_le_bytes())),
                        accept: &accept,
                    };
                    black_box(balancer.pick(&eps, &pick))
                })
            });
        }
    }
    group.finish();
}

fn ring_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("consistent_hash_build");
    for n in [100, 1_000, 10_000] {
        let eps = endpoints(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(ConsistentHash::new(&eps)))
        });
    }
    group.finish();
}

criterion_group!(benches, picks, ring_build);
criterion_main!(benches);
