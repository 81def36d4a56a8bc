//! Metrics, access logs and the live view of pools.

mod common;

use common::*;
use http::StatusCode;
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn send(client: &HttpClient, method: &str, url: &str, host: &str) -> StatusCode {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("host", host)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("response");
    let status = resp.status();
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    status
}

async fn scrape(weir: &Weir) -> String {
    get(&http1_client(), &weir.admin_url("/metrics"), "admin")
        .await
        .unwrap()
        .1
}

/// The value of the sample line that starts with `series ` exactly.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_known_traffic_exactly_in_valid_openmetrics() {
    let bs = [Backend::start("a").await, Backend::start("b").await];
    let config = Config::default()
        .service("web", &[bs[0].addr, bs[1].addr])
        .pool("web", "web.test", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for (method, n) in [("GET", 3), ("POST", 2), ("HEAD", 1), ("PATCH", 1)] {
        for _ in 0..n {
            assert_eq!(
                send(&client, method, &weir.url("/"), "web.test").await,
                StatusCode::OK
            );
        }
    }
    for _ in 0..2 {
        assert_eq!(
            send(&client, "GET", &weir.url("/"), "nowhere.test").await,
            StatusCode::NOT_FOUND
        );
    }
    // Requests are counted when their response ends; give the last one a moment.
    let expected = [
        (
            r#"weir_requests_total{pool="test/web",method="GET",status="2xx"}"#,
            3.0,
        ),
        (
            r#"weir_requests_total{pool="test/web",method="POST",status="2xx"}"#,
            2.0,
        ),
        (
            r#"weir_requests_total{pool="test/web",method="HEAD",status="2xx"}"#,
            1.0,
        ),
        (
            r#"weir_requests_total{pool="test/web",method="PATCH",status="2xx"}"#,
            1.0,
        ),
        (
            r#"weir_requests_total{pool="",method="GET",status="4xx"}"#,
            2.0,
        ),
        (
            r#"weir_request_duration_seconds_count{pool="test/web"}"#,
            7.0,
        ),
        (r#"weir_requests_in_flight{pool="test/web"}"#, 0.0),
        (r#"weir_table_rebuilds_total"#, 1.0),
        (r#"weir_pool_endpoints_ready{pool="test/web"}"#, 2.0),
        (r#"weir_pool_endpoints_healthy{pool="test/web"}"#, 2.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(3);
    let text = loop {
        let text = scrape(&weir).await;
        if expected.iter().all(|(s, v)| sample(&text, s) == Some(*v)) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (series, value) in expected {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    let per_endpoint: f64 = [bs[0].addr, bs[1].addr]
        .iter()
        .filter_map(|a| {
            sample(
                &text,
                &format!(r#"weir_endpoint_requests_total{{pool="test/web",endpoint="{a}"}}"#),
            )
        })
        .sum();
    assert_eq!(per_endpoint, 7.0);
    for series in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v > 0.0 || series.starts_with("process_cpu")),
            "{series}"
        );
    }
    // A real OpenMetrics parser accepts it, and the label sets are as documented.
    let parsed =
        openmetrics_parser::openmetrics::parse_openmetrics(&text).expect("valid OpenMetrics");
    let labels = |family: &str| -> HashSet<String> {
        let names = parsed
            .families
            .get(family)
            .unwrap_or_else(|| panic!("{family} missing"))
            .get_label_names();
        names.iter().cloned().collect()
    };
    let set = |names: &[&str]| -> HashSet<String> { names.iter().map(|s| s.to_string()).collect() };
    assert_eq!(labels("weir_requests"), set(&["pool", "method", "status"]));
    assert_eq!(labels("weir_request_duration_seconds"), set(&["pool"]));
    assert_eq!(
        labels("weir_endpoint_in_flight"),
        set(&["pool", "endpoint"])
    );
    assert_eq!(labels("weir_table_rebuilds"), set(&[]));
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_thousand_endpoints_do_not_multiply_histogram_series() {
    let b = Backend::start("b").await;
    // A pool of 1000 endpoints that takes no traffic, beside one that does.
    let many: Vec<std::net::SocketAddr> = (0..1000)
        .map(|i| {
            format!("127.1.{}.{}:9", i / 250, i % 250 + 1)
                .parse()
                .unwrap()
        })
        .collect();
    let config = Config::default()
        .service("web", &[b.addr])
        .pool("web", "web.test", &[("web", 1)])
        .service("big", &many)
        .pool("big", "big.test", &[("big", 1)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for _ in 0..20 {
        send(&client, "GET", &weir.url("/"), "web.test").await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = scrape(&weir).await;
    let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    // One pool with traffic: its buckets (14 + Inf) plus _sum and _count.
    assert_eq!(count("weir_request_duration_seconds_bucket"), 15);
    assert_eq!(count("weir_request_duration_seconds_count"), 1);
    // Endpoint labels live on gauges only: one line per endpoint.
    assert_eq!(count("weir_endpoint_in_flight{"), 1001);
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_view_shows_a_health_flip_and_an_ejection_as_they_happen() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let spec = "  healthCheck: { http: { path: /healthz }, intervalSeconds: 1, unhealthyThreshold: 1, healthyThreshold: 1 }\n  outlierDetection: { consecutiveFailures: 2, ejectionSeconds: 60, maxEjectedPercent: 50 }\n  retries: { attempts: 0 }\n";
    let config = Config::default()
        .service("web", &[a.addr, b.addr])
        .pool_with("web", "", &[("web", 1)], spec);
    let weir = Weir::start(&config).await;
    let endpoint = |pools: &serde_json::Value, addr: std::net::SocketAddr| -> serde_json::Value {
        pools["pools"][0]["backends"][0]["endpoints"]
            .as_array()
            .and_then(|eps| {
                eps.iter()
                    .find(|e| e["address"] == addr.to_string())
                    .cloned()
            })
            .expect("endpoint listed")
    };
    let pools = || async { weir.running.admin.pools_json() };
    let p = pools().await;
    assert_eq!(p["pools"][0]["name"], "test/web");
    assert_eq!(p["pools"][0]["algorithm"], "RoundRobin");
    assert_eq!(p["pools"][0]["routes"][0], "*/");
    a.set_healthy(false);
    // The first check after the flip (within one interval, plus start-up jitter) shows it.
    let deadline = Instant::now() + Duration::from_secs(4);
    while endpoint(&pools().await, a.addr)["health"] != "unhealthy" {
        assert!(
            Instant::now() < deadline,
            "the flip never showed: {}",
            pools().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = endpoint(&pools().await, a.addr);
    assert_eq!(
        (e["available"].as_bool(), e["lastCheck"]["passed"].as_bool()),
        (Some(false), Some(false))
    );
    // Two 500s from b eject it at once.
    b.set_failing(true);
    let client = http1_client();
    for _ in 0..2 {
        assert_eq!(
            send(&client, "GET", &weir.url("/"), "x").await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    let e = endpoint(&pools().await, b.addr);
    assert_eq!(e["ejected"], true);
    // Over HTTP too, and as `weir inspect` prints it.
    let over_http = get(&client, &weir.admin_url("/pools"), "admin")
        .await
        .unwrap()
        .1;
    let parsed: serde_json::Value = serde_json::from_str(&over_http).expect("JSON");
    assert_eq!(endpoint(&parsed, b.addr)["ejected"], true);
    let admin = weir.admin_url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["inspect", "--admin", &admin])
            .output()
            .expect("weir inspect runs")
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("POOL test/web  RoundRobin"), "{table}");
    let row_b = table
        .lines()
        .find(|l| l.contains(&b.addr.to_string()))
        .expect("b's row");
    assert!(row_b.contains(" yes "), "{row_b}");
    let row_a = table
        .lines()
        .find(|l| l.contains(&a.addr.to_string()))
        .expect("a's row");
    assert!(
        row_a.contains("unhealthy") && row_a.contains("FAIL"),
        "{row_a}"
    );
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_json_and_the_request_id_goes_upstream() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    std::fs::write(
        &path,
        Config::default()
            .service("web", &[b.addr])
            .pool("web", "web.test", &[("web", 1)])
            .yaml(),
    )
    .unwrap();
    let (http, admin, https) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--config"])
        .arg(&path)
        .args([
            "--http-addr",
            &http,
            "--admin-addr",
            &admin,
            "--https-addr",
            &https,
            "--access-log",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let client = http1_client();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok((StatusCode::OK, _)) = get(&client, &format!("http://{admin}/readyz"), "a").await
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready);
    let req = http::Request::get(format!("http://{http}/headers?x=1"))
        .header("host", "web.test")
        .header("x-request-id", "given-id-123")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let body = http_body_util::BodyExt::collect(client.request(req).await.unwrap().into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("x-request-id: given-id-123"));
    let (_, seen) = get(&client, &format!("http://{http}/headers"), "web.test")
        .await
        .unwrap();
    let generated = seen
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a request id was added")
        .to_string();
    assert_eq!(generated.len(), 32);
    get(&client, &format!("http://{http}/"), "nowhere.test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let readyz_free: Vec<&serde_json::Value> = lines.iter().collect();
    assert_eq!(readyz_free.len(), 3, "{lines:?}");
    let first = lines[0].as_object().expect("an object");
    let fields: HashSet<&str> = first.keys().map(|k| k.as_str()).collect();
    for f in [
        "time",
        "request_id",
        "client",
        "method",
        "host",
        "path",
        "protocol",
        "status",
        "bytes",
        "duration_ms",
        "upstream_ms",
        "pool",
        "endpoint",
        "retries",
        "affinity",
    ] {
        assert!(fields.contains(f), "{f} missing from {first:?}");
    }
    assert_eq!(lines[0]["request_id"], "given-id-123");
    assert_eq!(lines[0]["path"], "/headers?x=1");
    assert_eq!(lines[0]["pool"], "test/web");
    assert_eq!(lines[0]["endpoint"], b.addr.to_string());
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["bytes"].as_u64(), Some(body.len() as u64));
    assert_eq!(lines[1]["request_id"], generated.as_str());
    assert_eq!(lines[2]["status"], 404);
    assert!(lines[2]["pool"].is_null() && lines[2]["endpoint"].is_null());
}
