//! The dashboard's feed and history over tables compiled from a store, as weir builds them.

use super::history::{History, SAMPLES};
use super::{Page, ProcessState};
use crate::api::LoadBalancerPool;
use crate::metrics::Metrics;
use crate::routing::{RoutingTable, compile};
use crate::store::{ObjectKey, SERVICE_NAME_LABEL, ServicePorts, Slice, Store};
use arc_swap::ArcSwap;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `pools` pools `ns/p{i}`, each over its own Service with `endpoints` ready endpoints.
fn store(pools: usize, endpoints: usize) -> Store {
    let mut store = Store::default();
    for i in 0..pools {
        let name = format!("p{i}");
        let pool: LoadBalancerPool = serde_json::from_value(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "LoadBalancerPool",
            "metadata": {"name": name, "namespace": "ns", "generation": 1},
            "spec": {"routes": [{"host": format!("{name}.example.com")}],
                     "backends": [{"service": name, "port": "http"}]},
        }))
        .expect("pool");
        store
            .pools
            .insert(ObjectKey::of(&pool.metadata), Arc::new(pool));
        let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }))
        .expect("service");
        store.services.insert(
            ObjectKey::of(&service.metadata),
            Arc::new(ServicePorts::from_service(&service)),
        );
        let addresses: Vec<_> = (0..endpoints)
            .map(|e| {
                json!({"addresses": [format!("10.{}.{}.{}", i / 250, i % 250, e + 1)],
                       "conditions": {"ready": true, "serving": true, "terminating": false}})
            })
            .collect();
        let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-a"), "namespace": "ns",
                         "labels": {SERVICE_NAME_LABEL: name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": addresses,
        }))
        .expect("slice");
        store.slices.insert(
            ObjectKey::of(&slice.metadata),
            Arc::new(Slice::from_slice(&slice)),
        );
    }
    store
}

fn state(store: &Store) -> ProcessState {
    let compiled = compile(store, None);
    ProcessState {
        table: Arc::new(ArcSwap::from_pointee(compiled.table)),
        statuses: ArcSwap::from_pointee(compiled.statuses),
        ..Default::default()
    }
}

/// Counts `n` answers with `status` on pool `ns/p{i}` of `table`, as the proxy does.
fn answer(table: &RoutingTable, metrics: &Metrics, i: usize, status: u16, n: usize) {
    let pool = table
        .pool(&ObjectKey::new("ns", format!("p{i}")))
        .expect("pool");
    for _ in 0..n {
        pool.metrics(metrics).request(
            metrics,
            &http::Method::GET,
            status,
            Duration::from_millis(1),
        );
    }
}

#[test]
fn history_keeps_the_last_samples_exactly_in_bounded_memory() {
    let s = state(&store(3, 1));
    let table = s.table.load_full();
    let history = History::default();
    history.sample(&table, &s.metrics);
    let mut footprints = Vec::new();
    for tick in 1..=500u32 {
        answer(&table, &s.metrics, 0, 200, (tick % 7) as usize);
        answer(&table, &s.metrics, 0, 503, (tick % 3) as usize);
        history.sample(&table, &s.metrics);
        if tick % 100 == 0 {
            footprints.push(history.footprint());
        }
    }
    let series = history.series(&ObjectKey::new("ns", "p0")).expect("p0");
    let ticks = 441..=500u32;
    assert_eq!(
        series.answers,
        ticks.clone().map(|t| t % 7 + t % 3).collect::<Vec<_>>()
    );
    assert_eq!(series.errors, ticks.map(|t| t % 3).collect::<Vec<_>>());
    let quiet = history.series(&ObjectKey::new("ns", "p1")).expect("p1");
    assert_eq!(quiet.answers, vec![0; SAMPLES]);
    // The memory does not grow with samples: a fixed ring per pool.
    assert!(
        footprints.windows(2).all(|w| w[0] == w[1]),
        "{footprints:?}"
    );
    let per_pool = footprints[0] / 3;
    assert!(per_pool < 1024, "{per_pool} bytes a pool");
    // A pool that leaves the table leaves the history.
    history.sample(&RoutingTable::default(), &s.metrics);
    assert_eq!((history.pools(), history.footprint()), (0, 0));
}

#[test]
fn history_counts_across_a_rebuild_and_a_new_pool_starts_from_its_baseline() {
    let st = store(1, 2);
    let s = state(&st);
    let old = s.table.load_full();
    // Served before the sampler first saw the pool: the baseline, not a sample.
    answer(&old, &s.metrics, 0, 200, 4);
    let history = History::default();
    history.sample(&old, &s.metrics);
    let key = ObjectKey::new("ns", "p0");
    assert_eq!(history.series(&key).expect("p0").answers, Vec::<u32>::new());
    answer(&old, &s.metrics, 0, 500, 2);
    // A rebuild makes new pools (new metric handles, same counters).
    let new = compile(&st, Some(&old)).table;
    answer(&new, &s.metrics, 0, 200, 3);
    history.sample(&new, &s.metrics);
    answer(&new, &s.metrics, 0, 500, 1);
    history.sample(&new, &s.metrics);
    let series = history.series(&key).expect("p0");
    assert_eq!((series.answers, series.errors), (vec![5, 1], vec![2, 1]));
}

#[test]
fn the_page_query_parses_and_bounds_what_it_asks() {
    assert_eq!(Page::from_query(None), Page::default());
    let p = Page::from_query(Some("q=Shop%20Web+x&offset=20&limit=5000&other=1"));
    assert_eq!(
        p,
        Page {
            q: "shop web x".into(),
            offset: 20,
            limit: super::dashboard::MAX_LIMIT
        }
    );
    let p = Page::from_query(Some("q=100%&limit=0&offset=-3"));
    assert_eq!(
        p,
        Page {
            q: "100%".into(),
            offset: 0,
            limit: 1
        }
    );
}

#[test]
fn the_feed_stays_small_and_quick_at_10000_pools() {
    let s = state(&store(10_000, 2));
    let table = s.table.load_full();
    for i in (0..10_000).step_by(10) {
        answer(&table, &s.metrics, i, 200, 1);
    }
    let started = Instant::now();
    s.history.sample(&table, &s.metrics);
    let first = started.elapsed();
    let started = Instant::now();
    s.history.sample(&table, &s.metrics);
    let sample = started.elapsed();

    let started = Instant::now();
    let page = s.dashboard_json(&Page::default()).to_string();
    let page_took = started.elapsed();
    let started = Instant::now();
    let search = s
        .dashboard_json(&Page {
            q: "p9999.example".into(),
            ..Page::default()
        })
        .to_string();
    let search_took = started.elapsed();
    let started = Instant::now();
    let most = s
        .dashboard_json(&Page {
            limit: super::dashboard::MAX_LIMIT,
            ..Page::default()
        })
        .to_string();
    let most_took = started.elapsed();
    let feed: serde_json::Value = serde_json::from_str(&page).expect("JSON");
    assert_eq!(feed["matched"], 10_000);
    assert_eq!(feed["pools"].as_array().map(|p| p.len()), Some(50));
    let found: serde_json::Value = serde_json::from_str(&search).expect("JSON");
    assert_eq!(found["matched"], 1);
    eprintln!(
        "10000 pools × 2 endpoints: first sample {first:?}, then {sample:?} per sample, history {} bytes; \
         feed page of 50: {} bytes in {page_took:?}; search: {} bytes in {search_took:?}; page of 1000: {} bytes in {most_took:?}",
        s.history.footprint(),
        page.len(),
        search.len(),
        most.len(),
    );
    // Bounds with room for a debug build on a busy machine.
    assert!(page.len() < 200_000, "{} bytes", page.len());
    assert!(s.history.footprint() < 10_000 * 1024);
    assert!(sample < Duration::from_secs(1), "{sample:?}");
}

#[test]
fn a_pool_started_with_its_table_counts_its_first_answers() {
    let st = store(1, 1);
    let s = state(&st);
    let table = s.table.load_full();
    // A previous life of the pool: counted before, not part of this history.
    answer(&table, &s.metrics, 0, 200, 9);
    let history = History::default();
    history.start(&table, &s.metrics);
    answer(&table, &s.metrics, 0, 200, 2);
    answer(&table, &s.metrics, 0, 502, 1);
    history.sample(&table, &s.metrics);
    let series = history.series(&ObjectKey::new("ns", "p0")).expect("p0");
    assert_eq!((series.answers, series.errors), (vec![3], vec![1]));
}

#[test]
fn a_ring_started_for_the_next_table_outlives_one_sample_of_the_old() {
    let st = store(1, 1);
    let s = state(&st);
    let next = s.table.load_full();
    let history = History::default();
    history.start(&next, &s.metrics);
    answer(&next, &s.metrics, 0, 200, 2);
    // The sampler still sees the table before it.
    history.sample(&RoutingTable::default(), &s.metrics);
    history.sample(&next, &s.metrics);
    let key = ObjectKey::new("ns", "p0");
    assert_eq!(history.series(&key).expect("p0").answers, vec![2]);
    // A table that never comes: its ring goes after the sample it was expected at.
    history.sample(&RoutingTable::default(), &s.metrics);
    assert_eq!(history.pools(), 0);
}
