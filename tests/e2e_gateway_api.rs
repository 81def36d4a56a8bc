//! `weir run` and the Gateway API against the test cluster (tests/cluster): weir as a process
//! on the host (the admin's kubeconfig, as tests/e2e_controller.rs runs it), echo pods started
//! by the pod runner behind a real Service. One test, in order, since each part needs the one
//! before: without the Gateway API's CRDs weir is ready and serves pools as before; once they
//! are installed (no restart), a Gateway and an HTTPRoute serve through the Gateway's own
//! socket; deleting the route stops it.

mod common;

use common::cluster::{Cluster, ok};
use common::{eventually, free_port, get, http1_client, process};
use http::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

/// Pods start, weir lists, routes compile: each within this.
const STARTUP: Duration = Duration::from_secs(120);

/// `weir run` against the cluster, and the file its log (text) goes to, kept with the
/// cluster's logs when the test fails.
struct WeirProcess {
    run: process::Run,
    log: PathBuf,
}

impl WeirProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_weir(kubeconfig: &Path, dir: &Path) -> WeirProcess {
    let log = dir.join("weir.log");
    let file = std::fs::File::create(&log).expect("weir's log file");
    let run = process::run(
        kubeconfig,
        "gateway-e2e",
        // The Gateway's socket on 127.0.0.1 (without an address range, `weir run` would
        // expose Gateways by Services: tests/e2e_gateway_service.rs).
        &[
            "--lease-namespace",
            "default",
            "--gateway-addresses",
            "127.0.0.1/32",
        ],
        "weir=debug,info",
        file.into(),
    );
    WeirProcess { run, log }
}

/// Namespace `shop` (labelled for the Gateway's selector), an echo Deployment of two pods, its
/// Service `echo` (port 80, named http), and a pool for host `pool.test`.
const SHOP: &str = r#"apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { gateway-access: "yes" } }
---
apiVersion: v1
kind: Namespace
metadata: { name: infra }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: echo, namespace: shop }
spec:
  replicas: 2
  selector: { matchLabels: { app: echo } }
  template:
    metadata: { labels: { app: echo } }
    spec:
      containers:
        - name: echo
          image: weir.dev/test/echo:1
          env:
            - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
          ports: [{ name: http, containerPort: 3000 }]
          readinessProbe: { httpGet: { path: /, port: http }, periodSeconds: 1 }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: shop }
spec:
  selector: { app: echo }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: weir.dev/v1alpha1
kind: LoadBalancerPool
metadata: { name: echo, namespace: shop }
spec:
  routes: [{ host: pool.test }]
  backends: [{ service: echo, port: http }]
"#;

/// weir's GatewayClass; a Gateway in `infra` listening on `port` (no addresses: 127.0.0.1 of
/// weir's process) that takes routes from namespaces labelled `gateway-access: "yes"`; and an
/// HTTPRoute in `shop` for host `gw.test` to Service `echo`.
fn gateway_objects(port: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{ name: weir }}
spec: {{ controllerName: weir.dev/gateway-controller }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{ name: edge, namespace: infra }}
spec:
  gatewayClassName: weir
  listeners:
    - name: http
      protocol: HTTP
      port: {port}
      allowedRoutes:
        namespaces:
          from: Selector
          selector: {{ matchLabels: {{ gateway-access: "yes" }} }}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{ name: echo, namespace: shop }}
spec:
  parentRefs: [{{ name: edge, namespace: infra }}]
  hostnames: [gw.test]
  rules:
    - backendRefs: [{{ name: echo, port: 80 }}]
"#
    )
}

/// The `pod` field of the echo backend's JSON answer.
fn echo_pod(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    Some(v["pod"].as_str()?.to_string())
}

/// An echo pod's answer for `host` at `url`, if that is what came back.
async fn echo_answer(url: &str, host: &str) -> Option<String> {
    match get(&http1_client(), url, host).await {
        Ok((StatusCode::OK, body)) => echo_pod(&body),
        _ => None,
    }
}

async fn is_ready(weir: &WeirProcess) -> bool {
    let url = format!("http://{}/readyz", weir.run.admin);
    matches!(
        get(&http1_client(), &url, "admin").await,
        Ok((StatusCode::OK, _))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_is_watched_once_its_crds_are_installed() {
    let started = Instant::now();
    let cluster = Cluster::start();
    ok(
        "kubectl apply the weir CRD",
        cluster.kubectl(&["apply", "-f", "crds/loadbalancerpool.yaml"]),
    );
    ok(
        "the weir CRD is established",
        cluster.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/loadbalancerpools.weir.dev",
        ]),
    );
    cluster.apply(SHOP);
    let weir = start_weir(&cluster.kubeconfig, cluster.dir());
    cluster.wait_ready_pods("shop", "app=echo", 2, STARTUP);

    // (a) No Gateway API: ready, pools served, said once.
    eventually(
        "weir is ready without the Gateway API",
        STARTUP,
        async || is_ready(&weir).await.then_some(()),
    )
    .await;
    let pool_url = format!("http://{}/", weir.run.http);
    eventually("the pool serves the echo pods", STARTUP, async || {
        echo_answer(&pool_url, "pool.test").await
    })
    .await;
    let absent = "Gateway API is not installed";
    assert_eq!(weir.log().matches(absent).count(), 1, "{}", weir.log());
    eprintln!(
        "ready and serving without the Gateway API at {:?}",
        started.elapsed()
    );

    // (b) The CRDs arrive, then the objects: picked up without a restart, on the Gateway's
    // own socket.
    let port = free_port();
    let gateway_url = format!("http://127.0.0.1:{port}/");
    let installed = Instant::now();
    cluster.install_gateway_api();
    cluster.apply(&gateway_objects(port));
    let pod = eventually(
        "the HTTPRoute serves through the Gateway",
        Duration::from_secs(90),
        async || echo_answer(&gateway_url, "gw.test").await,
    )
    .await;
    eprintln!(
        "the route served ({pod}) {:?} after the CRDs were installed",
        installed.elapsed()
    );
    assert!(is_ready(&weir).await, "weir stayed ready");
    assert!(weir.log().contains("Gateway API found"), "{}", weir.log());
    // Routes of a Gateway stay on its socket, and pools on weir's.
    assert_eq!(echo_answer(&pool_url, "gw.test").await, None);
    assert!(echo_answer(&pool_url, "pool.test").await.is_some());
    // A host the route does not name gets no route.
    let other = get(&http1_client(), &gateway_url, "other.test").await;
    assert!(matches!(other, Ok((StatusCode::NOT_FOUND, _))), "{other:?}");

    // (c) Deleting the route stops it; the Gateway's socket answers 404.
    ok(
        "kubectl delete the HTTPRoute",
        cluster.kubectl(&["-n", "shop", "delete", "httproute", "echo"]),
    );
    let deleted = Instant::now();
    eventually(
        "the deleted route stops serving",
        Duration::from_secs(30),
        async || match get(&http1_client(), &gateway_url, "gw.test").await {
            Ok((StatusCode::NOT_FOUND, _)) => Some(()),
            _ => None,
        },
    )
    .await;
    eprintln!("the deleted route stopped within {:?}", deleted.elapsed());
    assert!(echo_answer(&pool_url, "pool.test").await.is_some());
    assert!(!weir.log().contains("watch failed"), "{}", weir.log());
    eprintln!("gateway API e2e took {:?}", started.elapsed());
}
