//! Health and failover over real sockets: active checks, outlier ejection, fenced endpoints,
//! retries.

mod common;

use common::*;
use http::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HTTP_CHECK: &str = "  healthCheck:\n    http: { path: /healthz }\n    intervalSeconds: 1\n    timeoutSeconds: 1\n    healthyThreshold: 2\n    unhealthyThreshold: 2\n";

/// Sends requests until `done` holds for the answers of the last `window` of them, or the
/// deadline passes. Returns how long it took.
async fn until_answers(
    weir: &Weir,
    host: &str,
    window: usize,
    deadline: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Option<Duration> {
    let client = http1_client();
    let start = Instant::now();
    let mut recent: Vec<String> = Vec::new();
    while start.elapsed() < deadline {
        let (_, body) = get(&client, &weir.url("/"), host).await.expect("answer");
        recent.push(body);
        if recent.len() > window {
            recent.remove(0);
        }
        if recent.len() == window && done(&recent) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn until_status(
    weir: &Weir,
    pool: &str,
    deadline: Duration,
    done: impl Fn(&weir::api::LoadBalancerPoolStatus) -> bool,
) -> weir::api::LoadBalancerPoolStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = weir.status(pool)
            && done(&s)
        {
            return s;
        }
        assert!(
            start.elapsed() < deadline,
            "status of {pool} never got there: {:?}",
            weir.status(pool)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ready_message(s: &weir::api::LoadBalancerPoolStatus) -> String {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_takes_an_endpoint_out_and_passing_ones_bring_it_back() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let config = Config::default()
        .service("web", &[a.addr, b.addr])
        .pool_with("web", "", &[("web", 1)], HTTP_CHECK);
    let weir = Weir::start(&config).await;
    a.set_healthy(false);
    // Jitter (< 1 interval) + 2 failed checks: out within about 3 s.
    let out = until_answers(&weir, "x", 10, Duration::from_secs(8), |r| {
        r.iter().all(|n| n == "b")
    })
    .await;
    assert!(out.is_some(), "a never left the rotation");
    let status = until_status(&weir, "web", Duration::from_secs(3), |s| {
        s.endpoints.healthy == 1
    })
    .await;
    assert!(
        ready_message(&status).contains("1 failing health checks"),
        "{}",
        ready_message(&status)
    );
    let hits = a.hits();
    let client = http1_client();
    for _ in 0..20 {
        assert_eq!(
            get(&client, &weir.url("/"), "x").await.unwrap(),
            (StatusCode::OK, "b".into())
        );
    }
    assert_eq!(a.hits(), hits);

    a.set_healthy(true);
    let back = until_answers(&weir, "x", 4, Duration::from_secs(8), |r| {
        r.iter().any(|n| n == "a")
    })
    .await;
    eprintln!("out after {out:?}, back after {back:?}");
    assert!(back.is_some(), "a never came back");
    until_status(&weir, "web", Duration::from_secs(3), |s| {
        s.endpoints.healthy == 2
    })
    .await;
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_check_follows_the_listener() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let check = "  healthCheck:\n    tcp: {}\n    intervalSeconds: 1\n    unhealthyThreshold: 2\n";
    let config = Config::default()
        .service("web", &[a.addr, b.addr])
        .pool_with("web", "", &[("web", 1)], check);
    let weir = Weir::start(&config).await;
    a.stop();
    let status = until_status(&weir, "web", Duration::from_secs(8), |s| {
        s.endpoints.healthy == 1
    })
    .await;
    assert!(ready_message(&status).contains("failing health checks"));
    // Meanwhile and after, requests succeed (retries cover the gap before the checks).
    let client = http1_client();
    for _ in 0..20 {
        assert_eq!(
            get(&client, &weir.url("/"), "x").await.unwrap(),
            (StatusCode::OK, "b".into())
        );
    }
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_never_answers_times_out() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let config = Config::default()
        .service("web", &[a.addr, b.addr])
        .pool_with("web", "", &[("web", 1)], HTTP_CHECK);
    let weir = Weir::start(&config).await;
    a.hang_health(true);
    // Two checks of 1 s timeout each, plus jitter.
    until_status(&weir, "web", Duration::from_secs(8), |s| {
        s.endpoints.healthy == 1
    })
    .await;
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_ejection_after_failures_in_a_row_expires_and_respects_the_cap() {
    let backends: Vec<Backend> = Backend::start_many(4).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let spec = "  outlierDetection: { consecutiveFailures: 3, ejectionSeconds: 1, maxEjectedPercent: 50 }\n  retries: { attempts: 0 }\n";
    let config = Config::default()
        .service("web", &addrs)
        .pool_with("web", "", &[("web", 1)], spec);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    backends[0].set_failing(true);
    // Round robin: e0 gets every 4th request; its third 500 ejects it.
    let mut failures = 0;
    for _ in 0..12 {
        if get(&client, &weir.url("/"), "x").await.unwrap().0 == StatusCode::INTERNAL_SERVER_ERROR {
            failures += 1;
        }
    }
    assert_eq!(failures, 3);
    let hits = backends[0].hits();
    for _ in 0..30 {
        assert_eq!(
            get(&client, &weir.url("/"), "x").await.unwrap().0,
            StatusCode::OK
        );
    }
    assert_eq!(backends[0].hits(), hits, "an ejected endpoint got traffic");
    assert_eq!(pool_count(&weir.running.admin.metrics.ejections, "web"), 1);
    // The ejection (1 s) expires and e0 is tried again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    backends[0].set_failing(false);
    let mut back = false;
    for _ in 0..8 {
        if get(&client, &weir.url("/"), "x").await.unwrap().1 == "e0" {
            back = true;
        }
    }
    assert!(back, "e0 never came back after its ejection");

    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_ejected_percent_at_once() {
    let backends: Vec<Backend> = Backend::start_many(4).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let spec = "  outlierDetection: { consecutiveFailures: 3, ejectionSeconds: 60, maxEjectedPercent: 50 }\n  retries: { attempts: 0 }\n";
    let config = Config::default()
        .service("web", &addrs)
        .pool_with("web", "", &[("web", 1)], spec);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for b in &backends[..3] {
        b.set_failing(true);
    }
    for _ in 0..60 {
        let _ = get(&client, &weir.url("/"), "x").await.unwrap();
    }
    assert_eq!(pool_count(&weir.running.admin.metrics.ejections, "web"), 2);
    let status = until_status(&weir, "web", Duration::from_secs(3), |s| {
        ready_message(s).contains("2 ejected")
    })
    .await;
    assert_eq!(status.endpoints.healthy, 2);
    // The third failing endpoint keeps its share: ejecting it would pass the cap.
    let mut errors = 0;
    for _ in 0..40 {
        if get(&client, &weir.url("/"), "x").await.unwrap().0 == StatusCode::INTERNAL_SERVER_ERROR {
            errors += 1;
        }
    }
    assert_eq!(
        errors, 20,
        "half the requests go to the failing endpoint that stays"
    );
    assert_eq!(pool_count(&weir.running.admin.metrics.ejections, "web"), 2);
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_fails_no_get() {
    let backends: Vec<Backend> = Backend::start_many(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let config =
        Config::default()
            .service("web", &addrs)
            .pool_with("web", "", &[("web", 1)], HTTP_CHECK);
    let weir = Weir::start(&config).await;
    let load = Load::start(weir.url("/"), "x", 4, 20_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    backends[1].stop();
    let killed_at = backends[1].hits();
    // The checks exclude it: Ready counts two.
    until_status(&weir, "web", Duration::from_secs(8), |s| {
        s.endpoints.healthy == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.finish().await;
    let retries = pool_count(&weir.running.admin.metrics.retries, "web");
    eprintln!(
        "{ok} ok, {failed} failed, {retries} retried; the killed backend had {killed_at} hits"
    );
    assert_eq!(failed, 0);
    assert!(ok > 500, "only {ok} requests");
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_terminating_but_serving_endpoint_gets_no_new_clients() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let config = Config::default()
        .service_endpoints(
            "web",
            &[
                endpoint(old.addr, EndpointState::TerminatingServing),
                endpoint(new.addr, EndpointState::Ready),
            ],
        )
        .pool("web", "", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for _ in 0..30 {
        assert_eq!(get(&client, &weir.url("/"), "x").await.unwrap().1, "new");
    }
    assert_eq!(old.hits(), 0);
    let status = until_status(&weir, "web", Duration::from_secs(3), |_| true).await;
    assert!(
        ready_message(&status).contains("1 terminating"),
        "{}",
        ready_message(&status)
    );
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilds_keep_health_and_checks_follow_the_table() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let config = Config::default()
        .service("web", &[a.addr, b.addr])
        .pool_with("web", "", &[("web", 1)], HTTP_CHECK);
    let weir = Weir::start(&config).await;
    assert_eq!(weir.running.admin.metrics.health_checks.get(), 2);
    a.set_healthy(false);
    until_status(&weir, "web", Duration::from_secs(8), |s| {
        s.endpoints.healthy == 1
    })
    .await;
    // An unrelated change rebuilds the table: a stays out at once, without new checks.
    let other = Backend::start("other").await;
    let bigger =
        config
            .clone()
            .service("other", &[other.addr])
            .pool("other", "other.test", &[("other", 1)]);
    weir.feed.send(Arc::new(bigger.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = http1_client();
    for _ in 0..10 {
        assert_eq!(get(&client, &weir.url("/"), "x").await.unwrap().1, "b");
    }
    assert_eq!(weir.running.admin.metrics.health_checks.get(), 2);
    // a leaves the Service: its check stops; dropping the check config stops them all.
    let fewer =
        Config::default()
            .service("web", &[b.addr])
            .pool_with("web", "", &[("web", 1)], HTTP_CHECK);
    weir.feed.send(Arc::new(fewer.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(weir.running.admin.metrics.health_checks.get(), 1);
    let unchecked = Config::default()
        .service("web", &[b.addr])
        .pool("web", "", &[("web", 1)]);
    weir.feed.send(Arc::new(unchecked.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(weir.running.admin.metrics.health_checks.get(), 0);
    weir.running.shutdown().await;
}

async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: &'static [u8],
) -> (StatusCode, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
        .unwrap();
    let resp = client.request(req).await.expect("response");
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_post_that_could_not_connect_is_retried_with_its_body() {
    let up = Backend::start("up").await;
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = Config::default()
        .service("web", &[dead, up.addr])
        .pool("web", "", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for _ in 0..10 {
        // Round robin sends every other request to the dead address first.
        assert_eq!(
            send(&client, "POST", &weir.url("/count"), b"twelve bytes").await,
            (StatusCode::OK, "12".into())
        );
    }
    // Round robin meets the dead address first on every request (each retry moves the
    // rotation on by one too), so every request was retried.
    assert_eq!(pool_count(&weir.running.admin.metrics.retries, "web"), 10);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn idempotent_requests_retry_on_listed_statuses_and_others_do_not() {
    let bad = Backend::start("bad").await;
    let good = Backend::start("good").await;
    bad.fail_with(503);
    let config = Config::default()
        .service("web", &[bad.addr, good.addr])
        .pool_with(
            "web",
            "",
            &[("web", 1)],
            "  retries: { attempts: 1, onStatus: [503] }\n",
        );
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for _ in 0..10 {
        assert_eq!(
            send(&client, "GET", &weir.url("/"), b"").await,
            (StatusCode::OK, "good".into())
        );
    }
    let mut unavailable = 0;
    for _ in 0..10 {
        if send(&client, "POST", &weir.url("/"), b"x").await.0 == StatusCode::SERVICE_UNAVAILABLE {
            unavailable += 1;
        }
    }
    assert_eq!(unavailable, 5, "a POST is never replayed on a status");
    weir.running.shutdown().await;
}
