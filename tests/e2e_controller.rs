//! `weir run` against the test cluster's upstream API server (tests/cluster): the CRD,
//! watches, status, leader election. One test function runs the scenarios in order, since
//! they share one API server.

mod common;

use common::cluster::Cluster;
use common::*;
use http::StatusCode;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir::api::LoadBalancerPool;

struct WeirProcess {
    child: Child,
    http: String,
    https: String,
    admin: String,
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_weir(kubeconfig: &Path, identity: &str) -> WeirProcess {
    let (http, admin, https) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("run")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--http-addr",
            &http,
            "--admin-addr",
            &admin,
            "--https-addr",
            &https,
        ])
        .args(["--lease-duration", "4s", "--lease-namespace", "default"])
        .env("POD_NAME", identity)
        .env("RUST_LOG", "weir=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    WeirProcess {
        child,
        http,
        https,
        admin,
    }
}

fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
    serde_json::from_value(value).expect("object")
}

fn slice(name: &str, service: &str, addr: std::net::SocketAddr, ready: bool) -> EndpointSlice {
    from_yaml(&format!(
        "metadata:\n  name: {name}\n  namespace: shop\n  labels: {{ kubernetes.io/service-name: {service} }}\naddressType: IPv4\nports: [{{ name: http, port: {} }}]\nendpoints:\n  - addresses: [\"{}\"]\n    conditions: {{ ready: {ready} }}\n",
        addr.port(),
        addr.ip()
    ))
}

async fn status_of(
    api: &Api<LoadBalancerPool>,
    name: &str,
) -> Option<weir::api::LoadBalancerPoolStatus> {
    api.get(name).await.ok()?.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_run_against_a_real_api_server() {
    let server = Cluster::control_plane_only();
    let client = server.client().await;

    // The generated CRD is accepted, and becomes established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
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
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from_yaml("metadata: { name: shop }"),
        )
        .await
        .unwrap();
    let pools: Api<LoadBalancerPool> = Api::namespaced(client.clone(), "shop");

    // The schema and CEL rules refuse bad pools with a clear message.
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

    // A Service with two "pods" (test backends on the cluster's host address: EndpointSlices
    // take no loopback address) and a pool.
    let a = Backend::start_on(server.host_ip, "a").await;
    let b = Backend::start_on(server.host_ip, "b").await;
    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    services
        .create(&PostParams::default(), &from_yaml("metadata: { name: web, namespace: shop }\nspec: { ports: [{ name: http, port: 80 }] }"))
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
    slices
        .create(&PostParams::default(), &slice("web-a", "web", a.addr, true))
        .await
        .unwrap();
    slices
        .create(&PostParams::default(), &slice("web-b", "web", b.addr, true))
        .await
        .unwrap();
    let pool: LoadBalancerPool = from_yaml(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: web, namespace: shop }\nspec:\n  routes: [{ host: shop.test }]\n  backends: [{ service: web, port: http }]\n",
    );
    pools.create(&PostParams::default(), &pool).await.unwrap();

    let first = start_weir(&server.kubeconfig, "weir-one");
    let http = http1_client();
    let readyz = format!("http://{}/readyz", first.admin);
    eventually("weir ready", Duration::from_secs(20), async || {
        matches!(get(&http, &readyz, "a").await, Ok((StatusCode::OK, _))).then_some(())
    })
    .await;
    let url = format!("http://{}/", first.http);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (status, body) = get(&http, &url, "shop.test").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "both pods take traffic");

    // Status: written by the leader, with the generation it describes.
    let generation = pools.get("web").await.unwrap().metadata.generation;
    let status = eventually("status written", Duration::from_secs(15), async || {
        let s = status_of(&pools, "web").await?;
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

    // A pod stops being ready: traffic follows within a second.
    slices
        .replace("web-b", &PostParams::default(), &{
            let mut s = slices.get("web-b").await.unwrap();
            s.endpoints = slice("web-b", "web", b.addr, false).endpoints;
            s
        })
        .await
        .unwrap();
    let changed = Instant::now();
    eventually(
        "traffic leaves the unready pod",
        Duration::from_secs(2),
        async || {
            let mut only_a = true;
            for _ in 0..6 {
                only_a &= get(&http, &url, "shop.test").await.ok()?.1 == "a";
            }
            only_a.then_some(())
        },
    )
    .await;
    eprintln!("traffic followed the slice in {:?}", changed.elapsed());
    eventually(
        "status shows one ready",
        Duration::from_secs(10),
        async || (status_of(&pools, "web").await?.endpoints.ready == 1).then_some(()),
    )
    .await;

    // A second replica: one leader at a time; when the leader dies, the other takes over.
    let second = start_weir(&server.kubeconfig, "weir-two");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    let leader = eventually("a lease holder", Duration::from_secs(10), async || {
        holder(leases.get("weir-leader").await.ok()?)
    })
    .await;
    assert_eq!(leader, "weir-one", "the first replica leads");
    drop(first);
    let killed = Instant::now();
    eventually(
        "the second replica takes over",
        Duration::from_secs(12),
        async || (holder(leases.get("weir-leader").await.ok()?)? == "weir-two").then_some(()),
    )
    .await;
    eprintln!("takeover after {:?} (lease 4s)", killed.elapsed());
    // The new leader writes status: a spec change shows up as a new observedGeneration.
    let patch =
        serde_json::json!({"spec": {"routes": [{"host": "shop.test"}, {"host": "www.shop.test"}]}});
    pools
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let generation = pools.get("web").await.unwrap().metadata.generation;
    eventually(
        "the new leader writes status",
        Duration::from_secs(10),
        async || {
            let s = status_of(&pools, "web").await?;
            (s.observed_generation == generation
                && s.hosts.as_deref() == Some("shop.test,www.shop.test"))
            .then_some(())
        },
    )
    .await;
    let url2 = format!("http://{}/", second.http);
    assert_eq!(
        get(&http, &url2, "www.shop.test").await.unwrap().0,
        StatusCode::OK
    );

    // A pool claiming a taken route: a RouteConflict condition and a Warning event.
    let late: LoadBalancerPool = from_yaml(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: late, namespace: shop }\nspec:\n  routes: [{ host: shop.test }]\n  backends: [{ service: web, port: http }]\n",
    );
    pools.create(&PostParams::default(), &late).await.unwrap();
    let conflict = eventually(
        "RouteConflict in status",
        Duration::from_secs(10),
        async || {
            let s = status_of(&pools, "late").await?;
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
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "shop");
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

    // The API server goes away under load: traffic keeps flowing on the last table, /readyz
    // stays ready, and a metric says the view is stale.
    let load = Load::start(url2.clone(), "www.shop.test", 2, 100_000);
    server.pause();
    let metrics_url = format!("http://{}/metrics", second.admin);
    eventually("stale flag", Duration::from_secs(15), async || {
        let text = get(&http, &metrics_url, "a").await.ok()?.1;
        text.lines()
            .any(|l| l == "weir_source_stale 1")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        get(&http, &format!("http://{}/readyz", second.admin), "a")
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );
    // Back, with its data: weir reconnects and catches up with changes made since.
    server.resume();
    let (ok, failed) = load.finish().await;
    eprintln!("while the API server was down and back: {ok} ok, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 100);
    slices
        .replace("web-b", &PostParams::default(), &{
            let mut s = slices.get("web-b").await.unwrap();
            s.endpoints = slice("web-b", "web", b.addr, true).endpoints;
            s
        })
        .await
        .unwrap();
    let back = Instant::now();
    eventually(
        "weir catches up after the restart",
        Duration::from_secs(40),
        async || {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..6 {
                seen.insert(get(&http, &url2, "shop.test").await.ok()?.1);
            }
            (seen.len() == 2).then_some(())
        },
    )
    .await;
    eprintln!("caught up {:?} after the restart", back.elapsed());
    eventually("stale flag cleared", Duration::from_secs(10), async || {
        let text = get(&http, &metrics_url, "a").await.ok()?.1;
        text.lines()
            .any(|l| l == "weir_source_stale 0")
            .then_some(())
    })
    .await;

    // The real kubectl: apply a pool, read it with the printer columns, and see a bad one refused.
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
            &http,
            &format!("http://{}/v1/x", second.http),
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

    // A rolling update's worth of slice changes in a burst gives a handful of rebuilds.
    let rebuilds = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("weir_table_rebuilds_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = rebuilds(&get(&http, &metrics_url, "a").await.unwrap().1);
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let slices = slices.clone();
            let addr = std::net::SocketAddr::new(server.host_ip, 9000 + i);
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
    let after = rebuilds(&get(&http, &metrics_url, "a").await.unwrap().1);
    eprintln!("60 slice changes gave {} rebuilds", after - before);
    assert!(
        after > before && after - before <= 15,
        "{} rebuilds",
        after - before
    );

    // A TLS Secret (watched through the type field selector) gives its pool a certificate.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["secure.shop.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "secure-tls", "namespace": "shop"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let secure: LoadBalancerPool = from_yaml(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: secure, namespace: shop }\nspec:\n  routes: [{ host: secure.shop.test }]\n  backends: [{ service: web, port: http }]\n  tls: { secretName: secure-tls }\n",
    );
    pools.create(&PostParams::default(), &secure).await.unwrap();
    let https: std::net::SocketAddr = second.https.parse().unwrap();
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
            let s = status_of(&pools, "secure").await?;
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "CertificateValid")
        },
    )
    .await;
    assert_eq!(secure_status.status, "True", "{}", secure_status.message);
}
