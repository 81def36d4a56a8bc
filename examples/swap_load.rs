//! "A swap under load drops no request": weir in this process with a 10 000-pool store
//! (10 endpoints each; pool 0 points at two local backends), a client loop on pool 0 over
//! keep-alive connections, and modified 10 000-pool stores swapped in while it runs.
//!
//! `cargo run --release --example swap_load -- [POOLS] [SWAPS] [CLIENTS]` (defaults 10000 5 16)
//!
//! Each swap changes pool 0's algorithm (so pool 0 itself is a new compiled `Pool`) and moves
//! the endpoints of every other pool to new addresses. Prints requests sent, failed (transport
//! errors) and non-200 answers, and each rebuild's time from the store sent to the table
//! swapped. All traffic is on 127.0.0.1. Nothing is asserted.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use weir::store::Store;
use weir::testkit::generated::{self, Shape};

/// A backend answering `ok` to everything.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(support::serve_ok(listener));
    addr
}

fn store(pools: usize, generation: u32, backends: &[SocketAddr]) -> Store {
    let algorithm = if generation.is_multiple_of(2) {
        "RoundRobin"
    } else {
        "LeastConnections"
    };
    let mut shape = Shape::new(pools, 10);
    shape.extra_spec = json!({ "algorithm": algorithm });
    shape.address_salt = generation * 7;
    let mut store = generated::store(&shape);
    generated::point_pool_at(&mut store, 0, backends, &shape);
    store
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    non_200: AtomicU64,
    failed: AtomicU64,
}

fn main() {
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: POOLS SWAPS CLIENTS"))
        .collect();
    let pools = nums.first().copied().unwrap_or(10_000).max(1);
    let swaps = nums.get(1).copied().unwrap_or(5);
    let clients = nums.get(2).copied().unwrap_or(16).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(pools, swaps, clients));
}

async fn run(pools: usize, swaps: usize, clients: usize) {
    let backends = vec![backend().await, backend().await];
    // weir serves `first` at once; the swaps go through the feed.
    let first = Arc::new(store(pools, 0, &backends));
    let (feed, rx) = watch::channel(first.clone());
    let options = weir::app::Options {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        https_addr: None,
        default_certificate: None,
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        shutdown_grace: Duration::from_secs(5),
        affinity_key: Some(b"a swap key of at least sixteen bytes".to_vec()),
        ..Default::default()
    };
    let running = weir::app::start(options, Some(first), rx)
        .await
        .expect("weir starts");
    let started = Instant::now();
    while !running.admin.synced.load(Ordering::Relaxed) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no table after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "swap_load: {pools} pools x 10 endpoints, first table after {:.0} ms; {clients} keep-alive clients on pool 0, {swaps} swaps",
        started.elapsed().as_secs_f64() * 1000.0
    );

    let url = format!("http://{}/", running.http_addr);
    let host = generated::host(0);
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let (url, host, counts, stop) = (url.clone(), host.clone(), counts.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get(&url)
                    .header("host", &host)
                    .body(Full::new(Bytes::new()))
                    .expect("a request");
                counts.sent.fetch_add(1, Ordering::Relaxed);
                let result = tokio::time::timeout(Duration::from_secs(10), async {
                    let resp = client.request(req).await?;
                    let status = resp.status();
                    let _ = resp.into_body().collect().await;
                    Ok::<_, hyper_util::client::legacy::Error>(status)
                })
                .await;
                match result {
                    Ok(Ok(StatusCode::OK)) => counts.ok.fetch_add(1, Ordering::Relaxed),
                    Ok(Ok(_)) => counts.non_200.fetch_add(1, Ordering::Relaxed),
                    _ => counts.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    // Load before any swap, as a baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = counts.ok.load(Ordering::Relaxed);
    println!("  before the swaps: {before} requests answered 200 in 2 s");
    for generation in 1..=swaps as u32 {
        let next = Arc::new(store(pools, generation, &backends));
        let previous = running.table.load_full();
        let sent_at = Instant::now();
        feed.send(next).expect("weir follows the feed");
        while Arc::ptr_eq(&previous, &running.table.load_full()) {
            assert!(
                sent_at.elapsed() < Duration::from_secs(60),
                "no swap after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let swapped = sent_at.elapsed();
        drop(previous);
        let ok = counts.ok.load(Ordering::Relaxed);
        println!(
            "  swap {generation}: table swapped {:.0} ms after the store was sent; {} answered so far, {} non-200, {} failed",
            swapped.as_secs_f64() * 1000.0,
            ok,
            counts.non_200.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let c = &counts;
    println!(
        "result: {} sent, {} answered 200, {} non-200, {} failed (transport or 10 s timeout)",
        c.sent.load(Ordering::Relaxed),
        c.ok.load(Ordering::Relaxed),
        c.non_200.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed)
    );
    running.shutdown().await;
}
