//! Pods' load reports (ORCA) and the `WeightedByLoad` algorithm, over real sockets: pods that
//! report their load in response headers, trailers or health-check answers, and weir in
//! process balancing by it.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A pod that answers its name and reports its load as told.
struct Pod {
    name: String,
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// The `endpoint-load-metrics` value sent; `None`: no report.
    report: Arc<Mutex<Option<String>>>,
    /// Report only on `/healthz`, never on traffic.
    health_only: Arc<AtomicBool>,
    /// Report in an `endpoint-load-metrics-bin` trailer instead of a header (the answer then
    /// has a trailer block, as gRPC's do).
    in_trailers: Arc<AtomicBool>,
}

impl Pod {
    async fn start(name: &str, report: Option<String>) -> Pod {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pod = Pod {
            name: name.to_string(),
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            report: Arc::new(Mutex::new(report)),
            health_only: Arc::default(),
            in_trailers: Arc::default(),
        };
        let (name, hits, report, health_only, in_trailers) = (
            pod.name.clone(),
            pod.hits.clone(),
            pod.report.clone(),
            pod.health_only.clone(),
            pod.in_trailers.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (name, hits, report, health_only, in_trailers) = (
                    name.clone(),
                    hits.clone(),
                    report.clone(),
                    health_only.clone(),
                    in_trailers.clone(),
                );
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let health = req.uri().path() == "/healthz";
                    if !health {
                        hits.fetch_add(1, Ordering::SeqCst);
                    }
                    let report = report.lock().unwrap().clone();
                    let report = report.filter(|_| health || !health_only.load(Ordering::SeqCst));
                    let trailers = in_trailers.load(Ordering::SeqCst);
                    let name = name.clone();
                    async move { Ok::<_, Infallible>(answer(name, report, trailers)) }
                });
                tokio::spawn(
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned(),
                );
            }
        });
        pod
    }

    fn report(&self, value: Option<String>) {
        *self.report.lock().unwrap() = value;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn answer(name: String, report: Option<String>, trailers: bool) -> Response<Body> {
    match (report, trailers) {
        (Some(report), true) => {
            // The trailer holds the binary form of the same report.
            let parsed = weir::load_report::parse(report.as_bytes()).expect("a good report");
            let bin = base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(weir::testkit::orca_protobuf(&parsed));
            let mut block = http::HeaderMap::new();
            block.insert(
                weir::load_report::HEADER_BIN,
                http::HeaderValue::from_str(&bin).unwrap(),
            );
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(Bytes::from(name))),
                Ok(Frame::trailers(block)),
            ];
            Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                frames,
            ))))
        }
        (report, _) => {
            let mut r = Response::new(Full::new(Bytes::from(name)).boxed());
            if let Some(report) = report {
                r.headers_mut().insert(
                    weir::load_report::HEADER,
                    http::HeaderValue::from_str(&report).unwrap(),
                );
            }
            r
        }
    }
}

fn cpu(utilization: f64) -> Option<String> {
    Some(format!(
        "TEXT cpu_utilization={utilization},rps_fractional=100"
    ))
}

/// A config of one Service over `pods` and one WeightedByLoad pool with these settings.
fn config(pods: &[&Pod], settings: &str, extra: &str) -> Config {
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    Config::default().service("web", &addrs).pool_with(
        "web",
        "",
        &[("web", 1)],
        &format!("  algorithm: WeightedByLoad\n  weightedByLoad: {{ {settings} }}\n{extra}"),
    )
}

/// `n` GETs in a row; each pod's share of them, by name.
async fn shares(weir: &Weir, n: usize) -> HashMap<String, f64> {
    let client = http1_client();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..n {
        let (status, name) = get(&client, &weir.url("/"), "x").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        *counts.entry(name).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, v)| (k, v as f64 / n as f64))
        .collect()
}

fn assert_share(shares: &HashMap<String, f64>, pod: &str, want: f64, tolerance: f64) {
    let got = shares.get(pod).copied().unwrap_or(0.0);
    assert!(
        (got - want).abs() <= tolerance,
        "{pod}: share {got:.3}, want {want:.3} ± {tolerance} (all: {shares:?})"
    );
}

/// Each endpoint's `load` in `/pools`, by address.
async fn loads(weir: &Weir) -> HashMap<String, serde_json::Value> {
    let (_, body) = get(&http1_client(), &weir.admin_url("/pools"), "admin")
        .await
        .unwrap();
    let pools: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = HashMap::new();
    for pool in pools["pools"].as_array().unwrap() {
        for b in pool["backends"].as_array().unwrap() {
            for e in b["endpoints"].as_array().unwrap() {
                out.insert(
                    e["address"].as_str().unwrap().to_string(),
                    e["load"].clone(),
                );
            }
        }
    }
    out
}

async fn weight(weir: &Weir, pod: &Pod) -> Option<f64> {
    loads(weir).await.get(&pod.addr.to_string())?["weight"].as_f64()
}

/// The A58 weights of 100 rps at these utilizations, as shares.
fn a58_shares(utilizations: &[f64]) -> Vec<f64> {
    let weights: Vec<f64> = utilizations.iter().map(|u| 100.0 / u).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

// The shares are checked within ±0.04 over 3000 requests: the schedule itself is exact to
// well under 1%, the rest covers the warm-up requests that go round robin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_the_utilization_pods_report_and_the_header_is_removed() {
    let pods = [
        Pod::start("low", cpu(0.2)).await,
        Pod::start("mid", cpu(0.5)).await,
        Pod::start("high", cpu(0.9)).await,
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let weir = Weir::start(&config(
        &refs,
        "blackoutSeconds: 0, updatePeriodMillis: 100",
        "",
    ))
    .await;
    // Each pod reports once, then a recompute weighs them.
    let client = http1_client();
    let resp = client
        .request(
            Request::get(weir.url("/"))
                .header("host", "x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        resp.headers().get("endpoint-load-metrics").is_none(),
        "the report reached the client: {:?}",
        resp.headers()
    );
    shares(&weir, 30).await;
    eventually("every pod weighed", Duration::from_secs(5), async || {
        for p in &pods {
            weight(&weir, p).await?;
        }
        Some(())
    })
    .await;
    let got = shares(&weir, 3000).await;
    for (pod, want) in pods.iter().zip(a58_shares(&[0.2, 0.5, 0.9])) {
        assert_share(&got, &pod.name, want, 0.04);
    }
    // Visible: the weight and utilization in /pools and the metrics.
    assert_eq!(weight(&weir, &pods[0]).await, Some(500.0));
    let loads = loads(&weir).await;
    assert_eq!(
        loads[&pods[2].addr.to_string()]["utilization"].as_f64(),
        Some(0.9)
    );
    let (_, metrics) = get(&client, &weir.admin_url("/metrics"), "admin")
        .await
        .unwrap();
    let gauge = |name: &str, pod: &Pod| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&pod.addr.to_string()))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(gauge("weir_endpoint_utilization{", &pods[1]), Some(0.5));
    assert_eq!(gauge("weir_endpoint_load_weight{", &pods[1]), Some(200.0));
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_load_rises_loses_share_and_one_that_goes_quiet_takes_the_mean() {
    let pods = [
        Pod::start("a", cpu(0.2)).await,
        Pod::start("b", cpu(0.2)).await,
        Pod::start("c", cpu(0.2)).await,
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let weir = Weir::start(&config(
        &refs,
        "blackoutSeconds: 0, updatePeriodMillis: 100, expirySeconds: 1",
        "",
    ))
    .await;
    shares(&weir, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let even = shares(&weir, 600).await;
    for p in &pods {
        assert_share(&even, &p.name, 1.0 / 3.0, 0.05);
    }
    // a's load rises: within a few recompute periods its share falls to 111 / 1111.
    pods[0].report(cpu(0.9));
    shares(&weir, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = shares(&weir, 1200).await;
    assert_share(&after, "a", a58_shares(&[0.9, 0.2, 0.2])[0], 0.04);
    // c stops reporting: after the 1 s expiry it takes the mean of a's and b's weights.
    pods[2].report(None);
    eventually("c's weight expires", Duration::from_secs(5), async || {
        shares(&weir, 10).await;
        weight(&weir, &pods[2]).await.is_none().then_some(())
    })
    .await;
    let mean = (100.0 / 0.9 + 100.0 / 0.2) / 2.0;
    let total = 100.0 / 0.9 + 100.0 / 0.2 + mean;
    let quiet = shares(&weir, 1200).await;
    assert_share(&quiet, "c", mean / total, 0.04);
    assert_share(&quiet, "a", 100.0 / 0.9 / total, 0.04);
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_health_checks_alone_set_the_weights() {
    let pods = [
        Pod::start("low", cpu(0.2)).await,
        Pod::start("high", cpu(0.8)).await,
    ];
    for p in &pods {
        p.health_only.store(true, Ordering::SeqCst);
    }
    let refs: Vec<&Pod> = pods.iter().collect();
    let weir = Weir::start(&config(
        &refs,
        "blackoutSeconds: 0, updatePeriodMillis: 100",
        "  healthCheck: { http: { path: /healthz }, intervalSeconds: 1 }\n",
    ))
    .await;
    // No traffic at all: the checks' answers carry the reports.
    let (low, high) = eventually("weights from checks", Duration::from_secs(6), async || {
        Some((
            weight(&weir, &pods[0]).await?,
            weight(&weir, &pods[1]).await?,
        ))
    })
    .await;
    assert_eq!((low, high), (500.0, 125.0));
    assert_eq!(pods[0].hits() + pods[1].hits(), 0);
    let got = shares(&weir, 1000).await;
    assert_share(&got, "low", 0.8, 0.04);
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_sending_garbage_is_balanced_as_if_it_sent_nothing_and_counted() {
    let pods = [
        Pod::start("low", cpu(0.2)).await,
        Pod::start("mid", cpu(0.5)).await,
        Pod::start("garbage", Some("TEXT cpu_utilization=NaN".into())).await,
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let weir = Weir::start(&config(
        &refs,
        "blackoutSeconds: 0, updatePeriodMillis: 100",
        "",
    ))
    .await;
    shares(&weir, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = shares(&weir, 3000).await;
    // low 500, mid 200, garbage the mean of those: 350.
    assert_share(&got, "low", 500.0 / 1050.0, 0.04);
    assert_share(&got, "garbage", 350.0 / 1050.0, 0.04);
    let garbage = &loads(&weir).await[&pods[2].addr.to_string()];
    assert_eq!(garbage["reports"].as_u64(), Some(0));
    assert!(garbage["rejected"].as_u64().unwrap() >= 300, "{garbage}");
    assert!(garbage["weight"].is_null());
    let (_, metrics) = get(&http1_client(), &weir.admin_url("/metrics"), "admin")
        .await
        .unwrap();
    let rejected: u64 = metrics
        .lines()
        .find(|l| l.starts_with("weir_load_reports_rejected_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("a rejected-reports counter");
    assert!(rejected >= 300, "{rejected}");
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_may_keep_reports_for_its_clients() {
    let pod = Pod::start("a", cpu(0.3)).await;
    // Any algorithm reads reports; only WeightedByLoad balances by them.
    let config = Config::default().service("web", &[pod.addr]).pool_with(
        "web",
        "",
        &[("web", 1)],
        "  loadReports: { keep: true }\n",
    );
    let weir = Weir::start(&config).await;
    let resp = http1_client()
        .request(
            Request::get(weir.url("/"))
                .header("host", "x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("endpoint-load-metrics")
            .and_then(|v| v.to_str().ok()),
        cpu(0.3).as_deref()
    );
    let load = &loads(&weir).await[&pod.addr.to_string()];
    assert_eq!(load["utilization"].as_f64(), Some(0.3));
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_in_h2c_trailers_are_read_and_removed() {
    let pod = Pod::start("grpc", cpu(0.4)).await;
    pod.in_trailers.store(true, Ordering::SeqCst);
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: grpc, namespace: test }}\nspec:\n  ports: [{{ name: grpc, port: 50051 }}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: grpc-1\n  namespace: test\n  labels: {{ kubernetes.io/service-name: grpc }}\naddressType: IPv4\nports: [{{ name: grpc, port: {}, appProtocol: kubernetes.io/h2c }}]\nendpoints:\n  - addresses: [\"127.0.0.1\"]\n---\napiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{ name: grpc, namespace: test }}\nspec:\n  routes: [{{ host: \"\" }}]\n  backends: [{{ service: grpc, port: grpc }}]\n  algorithm: WeightedByLoad\n",
        pod.addr.port()
    );
    let weir = Weir::start(&Config::default().document(yaml)).await;
    let resp = http2_client()
        .request(
            Request::get(weir.url("/"))
                .header("host", "x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert!(
        trailers.get("endpoint-load-metrics-bin").is_none(),
        "the trailer reached the client: {trailers:?}"
    );
    assert_eq!(collected.to_bytes(), "grpc");
    let load = &loads(&weir).await[&pod.addr.to_string()];
    assert_eq!(load["utilization"].as_f64(), Some(0.4), "{load}");
    assert_eq!(load["reports"].as_u64(), Some(1));
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_composes_with_backend_weights_health_and_affinity() {
    let web = [
        Pod::start("web-low", cpu(0.2)).await,
        Pod::start("web-high", cpu(0.8)).await,
    ];
    let canary = Pod::start("canary", cpu(0.5)).await;
    let dead = Backend::start("dead").await;
    dead.stop();
    let config = Config::default()
        .service("web", &[web[0].addr, web[1].addr, dead.addr])
        .service("canary", &[canary.addr])
        .pool_with(
            "web",
            "",
            &[("web", 3), ("canary", 1)],
            "  algorithm: WeightedByLoad\n  weightedByLoad: { blackoutSeconds: 0, updatePeriodMillis: 100 }\n  outlierDetection: { consecutiveFailures: 1, ejectionSeconds: 60 }\n  retries: { attempts: 2 }\n",
        );
    let weir = Weir::start(&config).await;
    shares(&weir, 40).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = shares(&weir, 2000).await;
    // The backend split first (3 : 1), then the load weights within web (500 : 125), and the
    // dead pod (ejected after its first failure, its requests retried) never answers.
    assert_share(&got, "canary", 0.25, 0.04);
    assert_share(&got, "web-low", 0.75 * 0.8, 0.04);
    assert!(!got.contains_key("dead"));
    weir.running.shutdown().await;
}
