//! Route lookup (`RoutingTable::route`) over tables of 1, 100 and 10 000 hosts: exact hosts,
//! wildcard hosts, longest path prefix, a miss; and `compile` of small stores.
//!
//! `cargo bench --bench routing` (about 1.5 minutes)

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use weir::routing::{RoutingTable, compile};
use weir::testkit::generated::{self, Hosts, Shape};

const SIZES: [usize; 3] = [1, 100, 10_000];

fn table(pools: usize, hosts: Hosts) -> RoutingTable {
    compile(&generated::store(&Shape::new(pools, 1).hosts(hosts)), None).table
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    for n in SIZES {
        // Looked-up hosts are spread over the table so that no single hash bucket is hot.
        let picks: Vec<usize> = (0..64).map(|k| (k * 7919) % n).collect();

        let exact = table(n, Hosts::Exact);
        let hosts: Vec<String> = picks.iter().map(|&i| generated::host(i)).collect();
        let upper: Vec<String> = picks
            .iter()
            .map(|&i| format!("{}:8080", generated::host(i).to_uppercase()))
            .collect();
        let mut k = 0usize;
        group.bench_with_input(BenchmarkId::new("exact", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % hosts.len();
                black_box(exact.route(black_box(&hosts[k]), "/index.html").is_some())
            })
        });
        // The Host header as a client may send it: any case, with a port.
        group.bench_with_input(BenchmarkId::new("exact_uppercase_port", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % upper.len();
                black_box(exact.route(black_box(&upper[k]), "/index.html").is_some())
            })
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &n, |b, _| {
            b.iter(|| black_box(exact.route(black_box("nobody.example.org"), "/").is_none()))
        });
        drop(exact);

        let wildcard = table(n, Hosts::Wildcard);
        let members: Vec<String> = picks
            .iter()
            .map(|&i| generated::wildcard_member(i))
            .collect();
        group.bench_with_input(BenchmarkId::new("wildcard", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % members.len();
                black_box(wildcard.route(black_box(&members[k]), "/").is_some())
            })
        });
        drop(wildcard);

        let prefixes = table(n, Hosts::Prefixes);
        group.bench_with_input(BenchmarkId::new("prefix_longest", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % hosts.len();
                black_box(
                    prefixes
                        .route(black_box(&hosts[k]), black_box("/api/v1/users/42"))
                        .is_some(),
                )
            })
        });
        // Falls through every prefix of the host to `/`.
        group.bench_with_input(BenchmarkId::new("prefix_root", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % hosts.len();
                black_box(
                    prefixes
                        .route(black_box(&hosts[k]), black_box("/checkout/cart"))
                        .is_some(),
                )
            })
        });
    }
    group.finish();
}

fn compiles(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    // 10 endpoints per pool; the 10 000-pool size is `cargo run --release --example scale`.
    for pools in [10, 100, 1_000] {
        let store = generated::store(&Shape::new(pools, 10));
        group.bench_with_input(BenchmarkId::new("cold", pools), &pools, |b, _| {
            b.iter(|| black_box(compile(&store, None)))
        });
        let previous = compile(&store, None).table;
        group.bench_with_input(BenchmarkId::new("with_previous", pools), &pools, |b, _| {
            b.iter(|| black_box(compile(&store, Some(&previous))))
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, compiles);
criterion_main!(benches);
