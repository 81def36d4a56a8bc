//! Session-affinity cookie checks (`Affinity::pinned`): a valid cookie to its endpoint, a
//! well-formed forged one, a malformed one, and the fallback scan right after a table swap
//! (before `Affinity::sync` has indexed the new pools); and issuing a cookie value.
//!
//! `cargo bench --bench affinity` (about 30 seconds)

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::affinity::Affinity;
use weir::routing::{Pool, compile};
use weir::testkit::generated::{self, Shape};

const KEY: &[u8] = b"a bench key of at least sixteen bytes";

fn checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("affinity");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    for endpoints in [10, 100] {
        let store = generated::store(&Shape::new(1, endpoints).affinity(true));
        let table = compile(&store, None).table;
        let pool: Arc<Pool> = table
            .pool(&generated::pool_key(0))
            .expect("pool 0 compiled")
            .clone();
        let affinity = Affinity::new(KEY);
        affinity.sync(&table);
        let eps: Vec<_> = pool.ready_endpoints().cloned().collect();
        // The last endpoint: no luck from being first in a scan.
        let target = eps.last().expect("endpoints").clone();
        let valid = affinity.value(&pool, &target);
        let forged = "AAAAAAAAAAAAAAAAAAAAAA".to_string();
        let now = Instant::now();

        group.bench_with_input(BenchmarkId::new("valid", endpoints), &endpoints, |b, _| {
            b.iter(|| black_box(affinity.pinned(&pool, black_box(valid.as_bytes()), now)))
        });
        group.bench_with_input(BenchmarkId::new("forged", endpoints), &endpoints, |b, _| {
            b.iter(|| black_box(affinity.pinned(&pool, black_box(forged.as_bytes()), now)))
        });
        group.bench_with_input(
            BenchmarkId::new("malformed", endpoints),
            &endpoints,
            |b, _| b.iter(|| black_box(affinity.pinned(&pool, black_box(b"not-a-cookie"), now))),
        );
        // A new table whose pools the index does not know yet: each check hashes endpoints.
        let swapped = compile(&store, Some(&table)).table;
        let new_pool = swapped
            .pool(&generated::pool_key(0))
            .expect("pool 0 compiled")
            .clone();
        group.bench_with_input(
            BenchmarkId::new("valid_before_sync", endpoints),
            &endpoints,
            |b, _| {
                b.iter(|| black_box(affinity.pinned(&new_pool, black_box(valid.as_bytes()), now)))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("issue_value", endpoints),
            &endpoints,
            |b, _| b.iter(|| black_box(affinity.value(&pool, &target))),
        );
    }
    group.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
