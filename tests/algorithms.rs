//! The balancing algorithms over real sockets.

mod common;

use common::*;
use http::StatusCode;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

async fn get_with(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> String {
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_ewma_sends_little_to_a_slow_endpoint() {
    let slow = Backend::start_with_delay("slow", Duration::from_millis(50)).await;
    let fast = [
        Backend::start("fast-1").await,
        Backend::start("fast-2").await,
    ];
    let config = Config::default()
        .service("web", &[slow.addr, fast[0].addr, fast[1].addr])
        .pool_with("web", "", &[("web", 1)], "  algorithm: PeakEwma\n");
    let weir = Weir::start(&config).await;
    // Four clients, 100 requests each.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = weir.url("/");
        tasks.push(tokio::spawn(async move {
            let client = http1_client();
            for _ in 0..100 {
                assert_eq!(get(&client, &url, "x").await.unwrap().0, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let share = slow.hits() as f64 / 400.0;
    eprintln!("slow endpoint share: {share:.3} ({} of 400)", slow.hits());
    assert!(share < 0.15, "the slow endpoint got {share}");
    // The EWMA is visible per endpoint. Whether the slow one was tried at all depends on the
    // first picks (an endpoint with no answer yet is not preferred), so judge it only if it
    // was; a fast one must show its latency in any case.
    let metrics = get(&http1_client(), &weir.admin_url("/metrics"), "admin")
        .await
        .unwrap()
        .1;
    let ewma = |addr: std::net::SocketAddr| -> f64 {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("weir_endpoint_latency_ewma_seconds") && l.contains(&addr.to_string())
            })
            .unwrap_or_else(|| panic!("no latency gauge for {addr}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    if slow.hits() > 0 {
        assert!(ewma(slow.addr) > 0.02, "slow: {}", ewma(slow.addr));
    }
    let busiest = fast.iter().max_by_key(|b| b.hits()).unwrap();
    let fast_ewma = ewma(busiest.addr);
    assert!(fast_ewma > 0.0, "fast: {fast_ewma}");
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_the_busy_endpoint() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let config = Config::default()
        .service("web", &[a.addr, b.addr])
        .pool_with("web", "", &[("web", 1)], "  algorithm: LeastConnections\n");
    let weir = Weir::start(&config).await;
    let client = http1_client();
    // One long request holds an endpoint.
    let long_url = weir.url("/slow?ms=800");
    let long_client = client.clone();
    let long = tokio::spawn(async move { get(&long_client, &long_url, "x").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let busy = if a.hits() == 1 { "a" } else { "b" };
    for _ in 0..20 {
        let name = get(&client, &weir.url("/"), "x").await.unwrap().1;
        assert_ne!(name, busy, "a request went to the busy endpoint");
    }
    assert_eq!(long.await.unwrap().unwrap().0, StatusCode::OK);
    // Idle again: both take traffic.
    let names: HashSet<String> = {
        let mut s = HashSet::new();
        for _ in 0..10 {
            s.insert(get(&client, &weir.url("/"), "x").await.unwrap().1);
        }
        s
    };
    assert_eq!(names.len(), 2);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn random_spreads_over_every_endpoint() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let config = Config::default().service("web", &addrs).pool_with(
        "web",
        "",
        &[("web", 1)],
        "  algorithm: Random\n",
    );
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for _ in 0..600 {
        get(&client, &weir.url("/"), "x").await.unwrap();
    }
    for b in &backends {
        // 200 expected; the bound is over 6 standard deviations away.
        assert!(
            (130..=270).contains(&b.hits()),
            "{} got {}",
            b.name,
            b.hits()
        );
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn consistent_hash_keeps_keys_on_their_endpoint_across_rebuilds() {
    let backends: Vec<Backend> = Backend::start_many(4).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let spec = "  algorithm: ConsistentHash\n  hashOn: { header: x-user-id }\n";
    let config = Config::default()
        .service("web", &addrs)
        .pool_with("web", "", &[("web", 1)], spec);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let mut owner: HashMap<String, String> = HashMap::new();
    for user in 0..200 {
        let id = format!("user-{user}");
        let first = get_with(&client, &weir.url("/"), &[("x-user-id", &id)]).await;
        for _ in 0..3 {
            assert_eq!(
                get_with(&client, &weir.url("/"), &[("x-user-id", &id)]).await,
                first
            );
        }
        owner.insert(id, first);
    }
    let used: HashSet<&String> = owner.values().collect();
    assert_eq!(used.len(), 4, "keys spread over every endpoint");

    // A rebuild with the same endpoints (an unrelated pool appears) moves no key.
    let other = Backend::start("other").await;
    let rebuilt =
        config
            .clone()
            .service("other", &[other.addr])
            .pool("other", "other.test", &[("other", 1)]);
    weir.feed.send(Arc::new(rebuilt.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (id, name) in &owner {
        assert_eq!(
            &get_with(&client, &weir.url("/"), &[("x-user-id", id)]).await,
            name
        );
    }

    // Removing one endpoint moves only its keys.
    let gone = &backends[1].name;
    let fewer = Config::default()
        .service("web", &[addrs[0], addrs[2], addrs[3]])
        .pool_with("web", "", &[("web", 1)], spec);
    weir.feed.send(Arc::new(fewer.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (id, name) in &owner {
        let now = get_with(&client, &weir.url("/"), &[("x-user-id", id)]).await;
        if name != gone {
            assert_eq!(&now, name, "{id} moved although its endpoint stayed");
        } else {
            assert_ne!(&now, gone);
        }
    }
    // Requests without the key still go somewhere (round robin).
    let url = weir.url("/");
    let names: HashSet<String> =
        futures_util::future::join_all((0..6).map(|_| get_with(&client, &url, &[])))
            .await
            .into_iter()
            .collect();
    assert_eq!(names.len(), 3);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn consistent_hash_on_a_cookie_and_on_the_source_address() {
    let backends: Vec<Backend> = Backend::start_many(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let config = Config::default()
        .service("web", &addrs)
        .pool_with(
            "cookie",
            "cookie.test",
            &[("web", 1)],
            "  algorithm: ConsistentHash\n  hashOn: { cookie: app-session }\n",
        )
        .pool_with(
            "ip",
            "ip.test",
            &[("web", 1)],
            "  algorithm: ConsistentHash\n  hashOn: { sourceIP: true }\n",
        );
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let mut seen = HashSet::new();
    for s in 0..30 {
        let cookie = format!("theme=dark; app-session=s{s}");
        let first = get_with(
            &client,
            &weir.url("/"),
            &[("host", "cookie.test"), ("cookie", &cookie)],
        )
        .await;
        assert_eq!(
            get_with(
                &client,
                &weir.url("/"),
                &[("host", "cookie.test"), ("cookie", &cookie)]
            )
            .await,
            first
        );
        seen.insert(first);
    }
    assert!(seen.len() > 1);
    // Every test client is 127.0.0.1: one endpoint takes them all.
    let url = weir.url("/");
    let ip: HashSet<String> = futures_util::future::join_all(
        (0..12).map(|_| get_with(&client, &url, &[("host", "ip.test")])),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(ip.len(), 1);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn slow_start_gives_a_new_endpoint_a_small_share_first() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let spec = "  slowStart: { windowSeconds: 600 }\n";
    let before =
        Config::default()
            .service("web", &[old.addr])
            .pool_with("web", "", &[("web", 1)], spec);
    let weir = Weir::start(&before).await;
    let client = http1_client();
    get(&client, &weir.url("/"), "x").await.unwrap();
    let after = Config::default()
        .service("web", &[old.addr, new.addr])
        .pool_with("web", "", &[("web", 1)], spec);
    weir.feed.send(Arc::new(after.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let old_before = old.hits();
    for _ in 0..1000 {
        get(&client, &weir.url("/"), "x").await.unwrap();
    }
    let share = new.hits() as f64 / 1000.0;
    eprintln!(
        "new endpoint share in its first second: {share:.3}; old got {}",
        old.hits() - old_before
    );
    // A 10% floor against the old endpoint's full weight: about 0.1 / 1.1 = 9%.
    assert!((0.04..0.16).contains(&share), "share {share}");
    weir.running.shutdown().await;
}
