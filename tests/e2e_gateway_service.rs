//! Gateway API service mode against the test cluster (tests/cluster): `weir run` without
//! `--gateway-addresses`, as a process on the host, makes a Service per Gateway in its own
//! namespace and binds a pod port of `--gateway-ports` per listener port on 0.0.0.0 (reached
//! here on loopback, as the Service's targetPort). One test, in order: the Service appears
//! (type, ports, selector, labels) and its targetPorts serve the route; a parameters ConfigMap
//! on the GatewayClass makes it ClusterIP and the cluster IP becomes the Gateway's address;
//! new listeners change the Service's ports without a restart; deleting the Gateway deletes
//! the Service. weir watches `shop` and `infra` only: its Services in its own namespace come
//! to it by a watcher of their own.

mod common;

use common::cluster::{Cluster, ok};
use common::{eventually, get, http1_client, process};
use http::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use weir::api::gateway::{
    GATEWAY_ANNOTATION, GATEWAY_NAME_LABEL, GATEWAY_NAMESPACE_LABEL, MANAGED_BY_LABEL, service_name,
};

/// Pods start, weir lists, the leader is elected, routes compile: each within this.
const STARTUP: Duration = Duration::from_secs(90);
/// A change reaches the Service or the Gateway's status within this.
const CHANGE: Duration = Duration::from_secs(30);

/// Namespaces `shop` (an echo Deployment of one pod and its Service `echo`), `infra` (the
/// Gateway's) and `weir` (weir's own, where the Gateway's Service goes).
const OBJECTS: &str = r#"apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: v1
kind: Namespace
metadata: { name: infra }
---
apiVersion: v1
kind: Namespace
metadata: { name: weir }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: echo, namespace: shop }
spec:
  replicas: 1
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
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo, namespace: shop }
spec:
  parentRefs: [{ name: edge, namespace: infra }]
  hostnames: [gw.test]
  rules:
    - backendRefs: [{ name: echo, port: 80 }]
"#;

/// Gateway `infra/edge` with HTTP listeners on `ports`, taking routes from every namespace,
/// with an infrastructure label for its Service.
fn gateway(ports: &[u16]) -> String {
    let listeners: Vec<Value> = ports
        .iter()
        .map(|p| {
            json!({ "name": format!("l{p}"), "protocol": "HTTP", "port": p,
                    "allowedRoutes": { "namespaces": { "from": "All" } } })
        })
        .collect();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": { "name": "edge", "namespace": "infra" },
        "spec": {
            "gatewayClassName": "weir",
            "infrastructure": { "labels": { "team": "edge" } },
            "listeners": listeners,
        },
    })
    .to_string()
}

/// `n` consecutive ports free on 0.0.0.0 (weir's --gateway-ports): the first and the last.
fn free_range(n: u16) -> (u16, u16) {
    for _ in 0..100 {
        let first = common::free_port();
        let Some(last) = first.checked_add(n - 1) else {
            continue;
        };
        let all_free = (first..=last).all(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok());
        if all_free {
            return (first, last);
        }
    }
    panic!("no {n} consecutive free ports");
}

/// The object, if it is there (`kubectl get` fails for one that is not).
fn object(cluster: &Cluster, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    let out = cluster.kubectl(&all);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The Service's ports as (name, port, targetPort).
fn ports_of(service: &Value) -> Vec<(String, i64, i64)> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["port"].as_i64().unwrap_or_default(),
                p["targetPort"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

/// The Gateway's condition `type`: (status, reason).
fn condition(gateway: &Value, type_: &str) -> Option<(String, String)> {
    let c = gateway["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

/// The echo pod's name, when `port` on loopback answers `gw.test` with it.
async fn echo_on(port: u16) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/");
    match get(&http1_client(), &url, "gw.test").await {
        Ok((StatusCode::OK, body)) => {
            let v: Value = serde_json::from_str(&body).ok()?;
            Some(v["pod"].as_str()?.to_string())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_get_services_of_their_own() {
    let started = Instant::now();
    let cluster = Cluster::start();
    // weir lists its own kind before it turns ready: its CRD goes in first.
    ok(
        "kubectl apply the weir CRD",
        cluster.kubectl(&["apply", "-f", "crds/loadbalancerpool.yaml"]),
    );
    cluster.install_gateway_api();
    cluster.apply(OBJECTS);
    let (first, last) = free_range(8);
    let range = format!("{first}-{last}");
    let log: PathBuf = cluster.dir().join("weir.log");
    let file = std::fs::File::create(&log).expect("weir's log file");
    let mut weir = process::run(
        &cluster.kubeconfig,
        "gateway-service-e2e",
        &[
            // weir's own namespace is not watched: its Gateway Services are, on their own.
            "--watch-namespaces",
            "shop,infra",
            "--lease-namespace",
            "weir",
            "--namespace",
            "weir",
            "--gateway-ports",
            &range,
            "--gateway-service-selector",
            "app.kubernetes.io/name=weir,app.kubernetes.io/instance=e2e",
        ],
        "weir=debug,info",
        file.into(),
    );
    let weir_log = || std::fs::read_to_string(&log).unwrap_or_default();
    cluster.apply(&gateway(&[80, 8080]));
    let name = service_name("infra", "edge");
    cluster.wait_ready_pods("shop", "app=echo", 1, STARTUP);

    // (a) The Service: LoadBalancer by default, a port per listener port to the pod ports.
    let service = eventually("the Gateway's Service is made", STARTUP, async || {
        object(&cluster, &["-n", "weir", "get", "service", &name])
    })
    .await;
    eprintln!("the Service appeared at {:?}", started.elapsed());
    assert_eq!(service["spec"]["type"], "LoadBalancer", "{service}");
    assert_eq!(
        ports_of(&service),
        vec![
            ("p80".to_string(), 80, i64::from(first)),
            ("p8080".to_string(), 8080, i64::from(first) + 1)
        ]
    );
    assert_eq!(
        service["spec"]["selector"],
        json!({ "app.kubernetes.io/name": "weir", "app.kubernetes.io/instance": "e2e" })
    );
    let labels = &service["metadata"]["labels"];
    assert_eq!(labels[MANAGED_BY_LABEL], "weir");
    assert_eq!(labels[GATEWAY_NAME_LABEL], "edge");
    assert_eq!(labels[GATEWAY_NAMESPACE_LABEL], "infra");
    assert_eq!(labels["team"], "edge", "infrastructure.labels are copied");
    assert_eq!(
        service["metadata"]["annotations"][GATEWAY_ANNOTATION],
        "infra/edge"
    );

    // The targetPorts serve the route (weir binds them on 0.0.0.0, loopback included).
    for port in [first, first + 1] {
        eventually("the route answers on the pod port", CHANGE, async || {
            echo_on(port).await
        })
        .await;
    }
    // No load balancer in the test cluster: no address, as the spec words it.
    let pending = eventually(
        "Programmed=False while the LoadBalancer waits",
        CHANGE,
        async || {
            let gw = object(&cluster, &["-n", "infra", "get", "gateway", "edge"])?;
            (condition(&gw, "Programmed")? == ("False".into(), "AddressNotAssigned".into()))
                .then_some(gw)
        },
    )
    .await;
    assert!(
        pending["status"]["addresses"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{pending}"
    );

    // (b) The class's parameters ask for ClusterIP: the Service follows, and its cluster IP
    // is the Gateway's address.
    cluster.apply(
        r#"apiVersion: v1
kind: ConfigMap
metadata: { name: edge-params, namespace: weir }
data: { serviceType: ClusterIP }
"#,
    );
    ok(
        "kubectl patch the GatewayClass's parametersRef",
        cluster.kubectl(&[
            "patch",
            "gatewayclass",
            "weir",
            "--type=merge",
            "-p",
            r#"{"spec":{"parametersRef":{"group":"","kind":"ConfigMap","name":"edge-params","namespace":"weir"}}}"#,
        ]),
    );
    let cluster_ip = eventually("the Service turns ClusterIP", CHANGE, async || {
        let s = object(&cluster, &["-n", "weir", "get", "service", &name])?;
        (s["spec"]["type"] == "ClusterIP")
            .then(|| s["spec"]["clusterIP"].as_str().map(String::from))?
    })
    .await;
    let gw = eventually(
        "the cluster IP is the Gateway's address",
        CHANGE,
        async || {
            let gw = object(&cluster, &["-n", "infra", "get", "gateway", "edge"])?;
            (gw["status"]["addresses"] == json!([{ "type": "IPAddress", "value": cluster_ip }]))
                .then_some(gw)
        },
    )
    .await;
    assert_eq!(
        condition(&gw, "Programmed"),
        Some(("True".into(), "Programmed".into())),
        "{gw}"
    );
    eprintln!("ClusterIP and its address at {:?}", started.elapsed());

    // (c) New listeners: 8080 goes, 9090 comes and takes its freed pod port; 80 keeps its
    // own. The same process serves it.
    cluster.apply(&gateway(&[80, 9090]));
    eventually(
        "the Service's ports follow the listeners",
        CHANGE,
        async || {
            let s = object(&cluster, &["-n", "weir", "get", "service", &name])?;
            (ports_of(&s)
                == vec![
                    ("p80".to_string(), 80, i64::from(first)),
                    ("p9090".to_string(), 9090, i64::from(first) + 1),
                ])
            .then_some(())
        },
    )
    .await;
    assert!(echo_on(first).await.is_some());
    assert!(echo_on(first + 1).await.is_some());
    assert!(
        weir.process.0.try_wait().ok().flatten().is_none(),
        "weir kept running"
    );

    // (d) The Gateway goes: its Service with it.
    ok(
        "kubectl delete the Gateway",
        cluster.kubectl(&["-n", "infra", "delete", "gateway", "edge"]),
    );
    eventually(
        "the Service is deleted with its Gateway",
        CHANGE,
        async || {
            object(&cluster, &["-n", "weir", "get", "service", &name])
                .is_none()
                .then_some(())
        },
    )
    .await;
    let log = weir_log();
    assert!(log.contains("Gateway Service deleted"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("gateway service e2e took {:?}", started.elapsed());
}
