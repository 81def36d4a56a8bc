//! `weir run` against the test cluster's upstream API server (tests/cluster): the CRD,
//! watches, status, leader election. One test function runs the scenarios in order, since
//! they share one API server; each is a named step (an `async fn` over the shared [`Scene`]),
//! and a step that fails says which it was.

mod common;

use common::cluster::Cluster;
use common::*;
use http::StatusCode;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use weir::api::LoadBalancerPool;
use weir::testkit::{backend_slice, pool, tls_secret};

type WeirProcess = process::Run;

fn start_weir(kubeconfig: &Path, identity: &str) -> WeirProcess {
    process::run(
        kubeconfig,
        identity,
        &["--lease-duration", "4s", "--lease-namespace", "default"],
        "weir=debug",
        Stdio::null(),
    )
}

fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
    serde_json::from_value(value).expect("object")
}

/// Slice `name` of Service `service` in `shop`: one "pod" at `addr`, ready or not.
fn slice(name: &str, service: &str, addr: std::net::SocketAddr, ready: bool) -> EndpointSlice {
    backend_slice(
        "shop",
        service,
        name,
        &endpoint(addr, EndpointState::ready_if(ready)),
    )
}

/// A pool `shop/name` on these routes to Service `web`, port `http`.
fn shop_pool(name: &str, routes: serde_json::Value) -> LoadBalancerPool {
    pool(
        "shop",
        name,
        json!({ "routes": routes, "backends": [{ "service": "web", "port": "http" }] }),
    )
}

async fn status_of(
    api: &Api<LoadBalancerPool>,
    name: &str,
) -> Option<weir::api::LoadBalancerPoolStatus> {
    api.get(name).await.ok()?.status
}

/// What the steps share: the cluster, its clients, the two "pods", and the weir replicas
/// (dropped in this order: the replicas first, the cluster last).
struct Scene {
    first: Option<WeirProcess>,
    second: Option<WeirProcess>,
    /// The "pods" `a` and `b`, once started.
    pods: Vec<Backend>,
    http: HttpClient,
    pools: Api<LoadBalancerPool>,
    slices: Api<EndpointSlice>,
    client: kube::Client,
    server: Cluster,
}

impl Scene {
    fn b(&self) -> &Backend {
        self.pods.get(1).expect("the pods were started")
    }

    /// The first replica's HTTP listener.
    fn first_url(&self) -> String {
        format!(
            "http://{}/",
            self.first.as_ref().expect("the first replica").http
        )
    }

    /// The second replica (the leader once the first is gone).
    fn second(&self) -> &WeirProcess {
        self.second.as_ref().expect("the second replica")
    }

    fn second_url(&self) -> String {
        format!("http://{}/", self.second().http)
    }

    fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.second().admin)
    }

    /// Sets the one endpoint of slice `web-b` ready or not.
    async fn set_b_ready(&self, ready: bool) {
        let mut s = self.slices.get("web-b").await.unwrap();
        s.endpoints = slice("web-b", "web", self.b().addr, ready).endpoints;
        self.slices
            .replace("web-b", &PostParams::default(), &s)
            .await
            .unwrap();
    }
}

/// Runs one step; if it panics, says which step it was.
async fn step<T>(name: &str, f: impl Future<Output = T>) -> T {
    struct Failing<'a>(&'a str);
    impl Drop for Failing<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("e2e_controller: step `{}` FAILED", self.0);
            }
        }
    }
    eprintln!("e2e_controller: step `{name}`");
    let _failing = Failing(name);
    f.await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_run_against_a_real_api_server() {
    let server = Cluster::control_plane_only();
    let client = server.client().await;
    let mut scene = Scene {
        pools: Api::namespaced(client.clone(), "shop"),
        slices: Api::namespaced(client.clone(), "shop"),
        http: http1_client(),
        server,
        client,
        pods: Vec::new(),
        first: None,
        second: None,
    };
    step("the CRD installs", the_crd_installs(&scene)).await;
    step("bad pools are refused", bad_pools_are_refused(&scene)).await;
    step(
        "a pool routes to both pods",
        a_pool_routes_to_both_pods(&mut scene),
    )
    .await;
    step("the leader writes status", the_leader_writes_status(&scene)).await;
    step(
        "traffic leaves an unready pod",
        traffic_leaves_an_unready_pod(&scene),
    )
    .await;
    step(
        "the second replica takes over",
        the_second_replica_takes_over(&mut scene),
    )
    .await;
    step(
        "a route conflict is reported",
        a_route_conflict_is_reported(&scene),
    )
    .await;
    step(
        "the API server goes away and comes back",
        the_api_server_goes_away_and_comes_back(&scene),
    )
    .await;
    step(
        "kubectl applies and shows pools",
        kubectl_applies_pools(&scene),
    )
    .await;
    step(
        "a burst of slices gives few rebuilds",
        a_burst_of_slices_gives_few_rebuilds(&scene),
    )
    .await;
    step(
        "a TLS Secret gives its pool a certificate",
        a_tls_secret_gives_its_pool_a_certificate(&scene),
    )
    .await;
}

/// The generated CRD is accepted, and becomes established; namespace `shop` is created.
async fn the_crd_installs(scene: &Scene) {
    let crds: Api<CustomResourceDefinition> = Api::all(scene.client.clone());
    let crd: CustomResourceDefinition = from_yaml(include_str!("../crds/loadbalancerpool.yaml"));
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("the CRD installs");
    eventually("CRD established", Duration::from_secs(20), async || {
        let crd = crds.get("loadbalancerpools.weir.dev").await.ok()?;
        let established = crd
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(scene.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from_yaml("metadata: { name: shop }"),
        )
        .await
        .unwrap();
}

/// The schema and CEL rules refuse bad pools with a clear message.
async fn bad_pools_are_refused(scene: &Scene) {
    let pools = &scene.pools;
    let invalid = [
        ("spec: { backends: [] }", "backends"),
        (
            "spec: { backends: [{ service: web, port: http, weight: 5000 }] }",
            "weight",
        ),
        (
            "spec: { backends: [{ service: web, port: http, weight: 0 }] }",
            "at least one backend needs a weight above 0",
        ),
        (
            "spec: { algorithm: ConsistentHash, backends: [{ service: web, port: http }] }",
            "ConsistentHash needs hashOn",
        ),
        (
            "spec: { routes: [{ host: 'Bad Host' }], backends: [{ service: web, port: http }] }",
            "host",
        ),
    ];
    let mut refused = 0;
    let eventually_crd_served = Instant::now();
    for (i, (spec, why)) in invalid.iter().enumerate() {
        let pool: LoadBalancerPool = from_yaml(&format!(
            "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{ name: bad-{i}, namespace: shop }}\n{spec}\n"
        ));
        loop {
            match pools.create(&PostParams::default(), &pool).await {
                Err(kube::Error::Api(e)) if e.code == 422 => {
                    assert!(e.message.contains(why), "pool {i}: {}", e.message);
                    refused += 1;
                    break;
                }
                // The CRD's endpoint may take a moment to appear after Established.
                Err(kube::Error::Api(e))
                    if e.code == 404
                        && eventually_crd_served.elapsed() < Duration::from_secs(10) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!("pool {i} was not refused: {other:?}"),
            }
        }
    }
    assert_eq!(refused, invalid.len());
}

/// A Service with two "pods" (test backends on the cluster's host address: EndpointSlices take
/// no loopback address) and a pool; the first replica starts and sends traffic to both.
async fn a_pool_routes_to_both_pods(scene: &mut Scene) {
    let a = Backend::start_on(scene.server.host_ip, "a").await;
    let b = Backend::start_on(scene.server.host_ip, "b").await;
    let services: Api<Service> = Api::namespaced(scene.client.clone(), "shop");
    services
        .create(
            &PostParams::default(),
            &weir::testkit::service("shop", "web", &[("http", 80)]),
        )
        .await
        .unwrap();
    let slices = &scene.slices;
    slices
        .create(&PostParams::default(), &slice("web-a", "web", a.addr, true))
        .await
        .unwrap();
    slices
        .create(&PostParams::default(), &slice("web-b", "web", b.addr, true))
        .await
        .unwrap();
    let pool = shop_pool("web", json!([{ "host": "shop.test" }]));
    scene
        .pools
        .create(&PostParams::default(), &pool)
        .await
        .unwrap();
    scene.pods = vec![a, b];

    let first = start_weir(&scene.server.kubeconfig, "weir-one");
    let http = &scene.http;
    let readyz = format!("http://{}/readyz", first.admin);
    eventually("weir ready", Duration::from_secs(20), async || {
        matches!(get(http, &readyz, "a").await, Ok((StatusCode::OK, _))).then_some(())
    })
    .await;
    scene.first = Some(first);
    let url = scene.first_url();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (status, body) = get(&scene.http, &url, "shop.test").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "both pods take traffic");
}

/// Status: written by the leader, with the generation it describes.
async fn the_leader_writes_status(scene: &Scene) {
    let pools = &scene.pools;
    let generation = pools.get("web").await.unwrap().metadata.generation;
    let status = eventually("status written", Duration::from_secs(15), async || {
        let s = status_of(pools, "web").await?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True" && s.observed_generation == generation).then_some(s)
    })
    .await;
    assert_eq!(status.endpoints.ready, 2);
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.last_transition_time.is_some())
    );
    assert_eq!(status.hosts.as_deref(), Some("shop.test"));
}

/// A pod stops being ready: traffic follows within a second.
async fn traffic_leaves_an_unready_pod(scene: &Scene) {
    scene.set_b_ready(false).await;
    let changed = Instant::now();
    let (http, url) = (&scene.http, scene.first_url());
    eventually(
        "traffic leaves the unready pod",
        Duration::from_secs(2),
        async || {
            let mut only_a = true;
            for _ in 0..6 {
                only_a &= get(http, &url, "shop.test").await.ok()?.1 == "a";
            }
            only_a.then_some(())
        },
    )
    .await;
    eprintln!("traffic followed the slice in {:?}", changed.elapsed());
    eventually(
        "status shows one ready",
        Duration::from_secs(10),
        async || (status_of(&scene.pools, "web").await?.endpoints.ready == 1).then_some(()),
    )
    .await;
}

/// A second replica: one leader at a time; when the leader dies, the other takes over, and
/// writes status: a spec change shows up as a new observedGeneration.
async fn the_second_replica_takes_over(scene: &mut Scene) {
    scene.second = Some(start_weir(&scene.server.kubeconfig, "weir-two"));
    let leases: Api<Lease> = Api::namespaced(scene.client.clone(), "default");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    let leader = eventually("a lease holder", Duration::from_secs(10), async || {
        holder(leases.get("weir-leader").await.ok()?)
    })
    .await;
    assert_eq!(leader, "weir-one", "the first replica leads");
    drop(scene.first.take());
    let killed = Instant::now();
    eventually(
        "the second replica takes over",
        Duration::from_secs(12),
        async || (holder(leases.get("weir-leader").await.ok()?)? == "weir-two").then_some(()),
    )
    .await;
    eprintln!("takeover after {:?} (lease 4s)", killed.elapsed());
    let pools = &scene.pools;
    let patch = json!({"spec": {"routes": [{"host": "shop.test"}, {"host": "www.shop.test"}]}});
    pools
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let generation = pools.get("web").await.unwrap().metadata.generation;
    eventually(
        "the new leader writes status",
        Duration::from_secs(10),
        async || {
            let s = status_of(pools, "web").await?;
            (s.observed_generation == generation
                && s.hosts.as_deref() == Some("shop.test,www.shop.test"))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        get(&scene.http, &scene.second_url(), "www.shop.test")
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );
}

/// A pool claiming a taken route: a RouteConflict condition and a Warning event.
async fn a_route_conflict_is_reported(scene: &Scene) {
    let pools = &scene.pools;
    let late = shop_pool("late", json!([{ "host": "shop.test" }]));
    pools.create(&PostParams::default(), &late).await.unwrap();
    let conflict = eventually(
        "RouteConflict in status",
        Duration::from_secs(10),
        async || {
            let s = status_of(pools, "late").await?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "Accepted" && c.reason == "RouteConflict")
        },
    )
    .await;
    assert!(
        conflict.message.contains("shop/web"),
        "{}",
        conflict.message
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(scene.client.clone(), "shop");
    eventually(
        "a RouteConflict event",
        Duration::from_secs(10),
        async || {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("RouteConflict")
                        && e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("late")
                })
                .then_some(())
        },
    )
    .await;
}

/// The API server goes away under load: traffic keeps flowing on the last table, /readyz stays
/// ready, and a metric says the view is stale. Back, with its data: weir reconnects and catches
/// up with changes made since.
async fn the_api_server_goes_away_and_comes_back(scene: &Scene) {
    let (http, url2, metrics_url) = (&scene.http, scene.second_url(), scene.metrics_url());
    let load = Load::start(url2.clone(), "www.shop.test", 2, 100_000);
    scene.server.pause();
    eventually("stale flag", Duration::from_secs(15), async || {
        let text = get(http, &metrics_url, "a").await.ok()?.1;
        text.lines()
            .any(|l| l == "weir_source_stale 1")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        get(
            http,
            &format!("http://{}/readyz", scene.second().admin),
            "a"
        )
        .await
        .unwrap()
        .0,
        StatusCode::OK
    );
    scene.server.resume();
    let (ok, failed) = load.finish().await;
    eprintln!("while the API server was down and back: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100);
    scene.set_b_ready(true).await;
    let back = Instant::now();
    eventually(
        "weir catches up after the restart",
        Duration::from_secs(40),
        async || {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..6 {
                seen.insert(get(http, &url2, "shop.test").await.ok()?.1);
            }
            (seen.len() == 2).then_some(())
        },
    )
    .await;
    eprintln!("caught up {:?} after the restart", back.elapsed());
    eventually("stale flag cleared", Duration::from_secs(10), async || {
        let text = get(http, &metrics_url, "a").await.ok()?.1;
        text.lines()
            .any(|l| l == "weir_source_stale 0")
            .then_some(())
    })
    .await;
}

/// The real kubectl: apply a pool, read it with the printer columns, and see a bad one refused.
async fn kubectl_applies_pools(scene: &Scene) {
    let server = &scene.server;
    let apply = |yaml: &str| server.kubectl_stdin(&["apply", "-f", "-"], yaml);
    let out = apply(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: api, namespace: shop }\nspec:\n  routes: [{ host: api.shop.test, pathPrefix: /v1 }]\n  backends: [{ service: web, port: 80 }]\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = eventually(
        "kubectl get lbp shows the status",
        Duration::from_secs(15),
        async || {
            let out = server.kubectl(&["get", "lbp", "-n", "shop"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .any(|l| {
                    l.starts_with("api ") && l.contains("api.shop.test") && l.contains("RoundRobin")
                })
                .then_some(text)
        },
    )
    .await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "HOSTS", "ALGORITHM", "READY", "HEALTHY", "AGE"],
        "{table}"
    );
    assert_eq!(
        get(
            &scene.http,
            &format!("http://{}/v1/x", scene.second().http),
            "api.shop.test"
        )
        .await
        .unwrap()
        .0,
        StatusCode::OK
    );
    let out = apply(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: zero, namespace: shop }\nspec:\n  backends: [{ service: web, port: 80, weight: 0 }]\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at least one backend needs a weight above 0"),
        "{err}"
    );
}

/// A rolling update's worth of slice changes in a burst gives a handful of rebuilds.
async fn a_burst_of_slices_gives_few_rebuilds(scene: &Scene) {
    let rebuilds = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("weir_table_rebuilds_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = rebuilds(&get(&scene.http, &scene.metrics_url(), "a").await.unwrap().1);
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let slices = scene.slices.clone();
            let addr = std::net::SocketAddr::new(scene.server.host_ip, 9000 + i);
            async move {
                slices
                    .create(
                        &PostParams::default(),
                        &slice(&format!("web-burst-{i}"), "web", addr, false),
                    )
                    .await
            }
        })
        .collect();
    for r in futures_util::future::join_all(burst).await {
        r.expect("slice created");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rebuilds(&get(&scene.http, &scene.metrics_url(), "a").await.unwrap().1);
    eprintln!("60 slice changes gave {} rebuilds", after - before);
    assert!(
        after > before && after - before <= 15,
        "{} rebuilds",
        after - before
    );
}

/// A TLS Secret (watched through the type field selector) gives its pool a certificate.
async fn a_tls_secret_gives_its_pool_a_certificate(scene: &Scene) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["secure.shop.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let secret = tls_secret("shop", "secure-tls", cert.pem(), key.serialize_pem());
    Api::<Secret>::namespaced(scene.client.clone(), "shop")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let secure = pool(
        "shop",
        "secure",
        json!({
            "routes": [{ "host": "secure.shop.test" }],
            "backends": [{ "service": "web", "port": "http" }],
            "tls": { "secretName": "secure-tls" },
        }),
    );
    scene
        .pools
        .create(&PostParams::default(), &secure)
        .await
        .unwrap();
    let https: std::net::SocketAddr = scene.second().https.parse().unwrap();
    let want = cert.der().to_vec();
    eventually(
        "the Secret's certificate is served",
        Duration::from_secs(10),
        async || {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .dangerous()
                .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert))
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(https).await.ok()?;
            let name = rustls::pki_types::ServerName::try_from("secure.shop.test").ok()?;
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .ok()?;
            let got = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
            (got == want).then_some(())
        },
    )
    .await;
    let secure_status = eventually(
        "the secure pool's certificate condition",
        Duration::from_secs(10),
        async || {
            let s = status_of(&scene.pools, "secure").await?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "CertificateValid")
        },
    )
    .await;
    assert_eq!(secure_status.status, "True", "{}", secure_status.message);
}
