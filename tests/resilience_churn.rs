//! The table moving under load: a rolling update (pods replaced one by one, the old ones
//! terminating while still serving, then gone), and config churn (100 table swaps a second for
//! 10 s). No request may fail, and nothing may be left behind.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The runtime's live tasks and weir's open client connections.
fn leftovers(weir: &Weir) -> (usize, i64) {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let open = weir
        .running
        .admin
        .metrics
        .connections_open
        .get(&weir::metrics::ListenerLabels { listener: "http" })
        .map_or(0, |g| g.get());
    (tasks, open)
}

/// Waits for the client connections to close and the task count to settle at or under
/// `tasks`; returns what it settled at.
async fn settle(weir: &Weir, tasks: usize) -> (usize, i64) {
    let mut now = leftovers(weir);
    for _ in 0..100 {
        if now.0 <= tasks && now.1 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = leftovers(weir);
    }
    now
}

/// A service over these endpoints and a pool over it, with idle upstream connections kept 1 s
/// so the test can see them go.
fn rolling_config(endpoints: &[Endpoint]) -> Config {
    Config::default()
        .service_endpoints("app", endpoints)
        .pool_with(
            "web",
            "a.test",
            &[("app", 1)],
            "  timeouts: { idleSeconds: 1 }\n",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_under_load_fails_no_request() {
    let old = Backend::start_many(3).await;
    let new: Vec<Backend> = futures_util::future::join_all(
        (0..3).map(|i| async move { Backend::start(&format!("n{i}")).await }),
    )
    .await;
    use EndpointState::{Ready, TerminatingServing};
    let all = |o: &[(usize, EndpointState)], n: usize| -> Vec<Endpoint> {
        // Old pods in their states; new pods 0..n ready.
        let mut eps: Vec<_> = o
            .iter()
            .map(|&(i, state)| endpoint(old[i].addr, state))
            .collect();
        eps.extend(new[..n].iter().map(|b| endpoint(b.addr, Ready)));
        eps
    };
    let weir = Weir::start(&rolling_config(&all(
        &[(0, Ready), (1, Ready), (2, Ready)],
        0,
    )))
    .await;
    let baseline_tasks = leftovers(&weir).0;
    let load = Load::start(weir.url("/"), "a.test", 8, 100_000);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // As a Deployment rolls: a new pod becomes ready, an old one turns terminating (still
    // serving in-flight work), then leaves the slice, then its process exits.
    let mut remaining: Vec<usize> = vec![0, 1, 2];
    for step in 0..3 {
        let ready: Vec<(usize, EndpointState)> = remaining.iter().map(|&i| (i, Ready)).collect();
        let publish = |eps: Vec<_>| {
            weir.feed
                .send(Arc::new(rolling_config(&eps).store()))
                .expect("feed open")
        };
        publish(all(&ready, step + 1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let leaving = remaining.remove(0);
        let mut states: Vec<(usize, EndpointState)> =
            remaining.iter().map(|&i| (i, Ready)).collect();
        states.insert(0, (leaving, TerminatingServing));
        publish(all(&states, step + 1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let gone: Vec<(usize, EndpointState)> = remaining.iter().map(|&i| (i, Ready)).collect();
        publish(all(&gone, step + 1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        old[leaving].stop();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.finish().await;
    let old_hits: usize = old.iter().map(|b| b.hits()).sum();
    let new_hits: Vec<usize> = new.iter().map(|b| b.hits()).collect();
    eprintln!(
        "rolling update: {ok} answered, {failed} failed; old pods {old_hits}, new {new_hits:?}"
    );
    assert_eq!(failed, 0);
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert!(
        new_hits.iter().all(|&h| h > 0),
        "a new pod got no traffic: {new_hits:?}"
    );

    // The clients are gone and idle pod connections expire after 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (tasks, open) = settle(&weir, baseline_tasks).await;
    eprintln!("tasks {baseline_tasks} before the load, {tasks} after; client connections {open}");
    assert_eq!(open, 0);
    assert!(
        tasks <= baseline_tasks,
        "{tasks} tasks left, {baseline_tasks} before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_a_second_for_ten_seconds_fail_no_request() {
    let backends = Backend::start_many(4).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let config = |i: usize| {
        // Each swap changes the endpoint set and the weights, as a busy cluster would.
        let n = 2 + i % 3;
        Config::default()
            .service("app", &addrs[..n])
            .service("canary", &addrs[3..])
            .pool_with(
                "web",
                "a.test",
                &[("app", 90 + (i % 10) as u32), ("canary", 10)],
                "  timeouts: { idleSeconds: 1 }\n",
            )
            .pool("other", &format!("other{}.test", i % 7), &[("app", 1)])
    };
    let stores: Vec<_> = (0..30).map(|i| Arc::new(config(i).store())).collect();
    let weir = Weir::start(&config(0)).await;
    let baseline_tasks = leftovers(&weir).0;
    let rebuilds_before = weir.running.admin.metrics.table_rebuilds.get();
    let load = Load::start(weir.url("/"), "a.test", 8, 1_000_000);

    let started = Instant::now();
    let mut swaps = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while started.elapsed() < Duration::from_secs(10) {
        tick.tick().await;
        weir.feed
            .send(stores[swaps % stores.len()].clone())
            .expect("feed open");
        swaps += 1;
    }
    let (ok, failed) = load.finish().await;
    let rebuilds = weir.running.admin.metrics.table_rebuilds.get() - rebuilds_before;
    eprintln!(
        "churn: {swaps} stores sent, {rebuilds} tables built; {ok} answered, {failed} failed"
    );
    assert_eq!(failed, 0);
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert!(rebuilds > 0);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (tasks, open) = settle(&weir, baseline_tasks).await;
    eprintln!("tasks {baseline_tasks} before the churn, {tasks} after; client connections {open}");
    assert_eq!(open, 0);
    assert!(
        tasks <= baseline_tasks,
        "{tasks} tasks left, {baseline_tasks} before"
    );
    // The health checker follows the table, and this config has no checks.
    assert_eq!(weir.running.admin.metrics.health_checks.get(), 0);

    // The last store sent is the one in service (a watch channel keeps only the newest, so
    // some stores in between may never be compiled, but the last one always is).
    let last = format!("other{}.test", ((swaps - 1) % stores.len()) % 7);
    let mut live = false;
    for _ in 0..100 {
        if let Ok((http::StatusCode::OK, _)) = get(&http1_client(), &weir.url("/"), &last).await {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(live, "the last store sent never took effect ({last})");
}
