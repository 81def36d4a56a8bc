//! Cost of one pick per algorithm, over 10 to 10 000 endpoints, of building a hash ring, and
//! of one `WeightedByLoad` recompute.
//!
//! `cargo bench --bench balance`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::balance::{
    Balance, ConsistentHash, LeastConnections, LoadWeighting, PeakEwma, Pick, Random, RoundRobin,
    SlowStart, WeightedByLoad, key_hash,
};
use weir::endpoint::Endpoint;
use weir::load_report::LoadReport;

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
            // Utilizations from 0.1 to 0.9, so WeightedByLoad has real weights to follow.
            e.load().record(
                &LoadReport {
                    cpu_utilization: 0.1 + (i % 9) as f64 / 10.0,
                    rps_fractional: 100.0,
                    ..LoadReport::default()
                },
                now,
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
            (
                "WeightedByLoad",
                Box::new(WeightedByLoad::new(&eps, weighting(), None, Instant::now())),
            ),
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

fn weighting() -> LoadWeighting {
    LoadWeighting {
        blackout: Duration::ZERO,
        expiry: Duration::from_secs(180),
        period: Duration::ZERO,
        error_penalty: 1.0,
    }
}

/// One recompute of the weights (what the refresher runs per pool each period).
fn load_refresh(c: &mut Criterion) {
    let mut group = c.benchmark_group("weighted_by_load_refresh");
    for n in [10, 1_000, 10_000] {
        let eps = endpoints(n);
        let balancer = WeightedByLoad::new(&eps, weighting(), None, Instant::now());
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| balancer.refresh(&eps, Instant::now()))
        });
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

criterion_group!(benches, picks, ring_build, load_refresh);
criterion_main!(benches);
