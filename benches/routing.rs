//! Route lookup (`RoutingTable::route`) over tables of 1, 100 and 10 000 hosts: exact hosts,
//! wildcard hosts, longest path prefix, a miss; Gateway API rule lookup (`GatewayPort::route`)
//! by path, by header and by query over 1000 HTTPRoutes; and `compile` of small stores and of
//! 1000 HTTPRoutes.
//!
//! `cargo bench --bench routing` (about 2 minutes)

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use weir::routing::gateway::RequestFacts;
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

/// What a request carries, for a Gateway rule lookup.
struct Request {
    host: String,
    method: http::Method,
    path: &'static str,
    query: Option<&'static str>,
    headers: http::HeaderMap,
}

impl Request {
    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            host: &self.host,
            method: &self.method,
            path: self.path,
            query: self.query,
            headers: &self.headers,
        }
    }
}

fn gateway_lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("gateway_route");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    let n = 1_000;
    let table = compile(&generated::http_routes(n, 1), None).table;
    let socket: std::net::SocketAddr = generated::GATEWAY_SOCKET.parse().expect("an address");
    let port = table.gateway_port(&socket).expect("the Gateway socket");
    let request = |i: usize, query: Option<&'static str>, header: bool| {
        let mut headers = http::HeaderMap::new();
        headers.insert("user-agent", http::HeaderValue::from_static("bench"));
        headers.insert("accept", http::HeaderValue::from_static("*/*"));
        if header {
            headers.insert("x-variant", http::HeaderValue::from_static("b"));
        }
        Request {
            host: generated::host(i),
            method: http::Method::GET,
            path: "/index.html",
            query,
            headers,
        }
    };
    let picks: Vec<usize> = (0..64).map(|k| (k * 7919) % n).collect();
    // Every request tries the header and query rules first (more specific), then the prefix.
    let plain: Vec<Request> = picks.iter().map(|&i| request(i, None, false)).collect();
    let by_header: Vec<Request> = picks.iter().map(|&i| request(i, None, true)).collect();
    let by_query: Vec<Request> = picks
        .iter()
        .map(|&i| request(i, Some("page=2&variant=b"), false))
        .collect();
    for (name, requests, rule) in [
        ("prefix", &plain, 0),
        ("header", &by_header, 1),
        ("query", &by_query, 2),
    ] {
        let mut k = 0usize;
        group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % requests.len();
                let found = port.route(black_box(&requests[k].facts()));
                black_box(found.map(|m| m.rule.index) == Some(rule))
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
    // 1000 HTTPRoutes of three rules, each over a Service of 10 endpoints.
    let store = generated::http_routes(1_000, 10);
    group.bench_function("httproutes_cold/1000", |b| {
        b.iter(|| black_box(compile(&store, None)))
    });
    let previous = compile(&store, None).table;
    group.bench_function("httproutes_with_previous/1000", |b| {
        b.iter(|| black_box(compile(&store, Some(&previous))))
    });
    group.finish();
}

criterion_group!(benches, lookups, gateway_lookups, compiles);
criterion_main!(benches);
