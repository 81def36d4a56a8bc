//! weir as users run it: `helm install` into the test cluster (tests/cluster), its pods started
//! by the pod runner with their own ServiceAccount's token, so every API call goes through the
//! real RBAC and Node authorizers; echo backends as a Deployment, whose EndpointSlices the
//! controller-manager builds. Each test has a cluster of its own.

mod common;

use common::cluster::{Cluster, ok, text};
use common::{Load, eventually, get, http1_client};
use http::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const WEIR_NS: &str = "weir-system";
/// The chart's ServiceAccount, as the API server names it.
const WEIR_USER: &str = "system:serviceaccount:weir-system:weir";
const WEIR_PODS: &str = "app.kubernetes.io/name=weir,app.kubernetes.io/instance=weir";
const STARTUP: Duration = Duration::from_secs(120);

/// An echo Deployment (the pod runner's echo backend) and its Service `echo` (port `http`), and
/// a pool `echo` for host echo.test in front of it, in `namespace`.
fn echo_app(namespace: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{ name: {namespace} }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{ name: echo, namespace: {namespace} }}
spec:
  replicas: {replicas}
  selector: {{ matchLabels: {{ app: echo }} }}
  strategy: {{ rollingUpdate: {{ maxSurge: 1, maxUnavailable: 0 }} }}
  template:
    metadata: {{ labels: {{ app: echo }} }}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: echo
          image: weir.dev/test/echo:1
          env:
            - {{ name: POD_NAME, valueFrom: {{ fieldRef: {{ fieldPath: metadata.name }} }} }}
            - {{ name: NAMESPACE, valueFrom: {{ fieldRef: {{ fieldPath: metadata.namespace }} }} }}
          ports: [{{ name: http, containerPort: 3000 }}]
          readinessProbe: {{ httpGet: {{ path: /, port: http }}, periodSeconds: 1 }}
          # Endpoints drop a terminating pod; it serves on while weir hears of it.
          lifecycle: {{ preStop: {{ sleep: {{ seconds: 2 }} }} }}
---
apiVersion: v1
kind: Service
metadata: {{ name: echo, namespace: {namespace} }}
spec:
  selector: {{ app: echo }}
  ports: [{{ name: http, port: 80, targetPort: http }}]
---
apiVersion: weir.dev/v1alpha1
kind: LoadBalancerPool
metadata: {{ name: echo, namespace: {namespace} }}
spec:
  routes: [{{ host: {namespace}.echo.test }}]
  backends: [{{ service: echo, port: http }}]
"#
    )
}

fn helm_install(cluster: &Cluster, extra: &[&str]) {
    let mut args = vec![
        "install",
        "weir",
        "charts/weir",
        "--namespace",
        WEIR_NS,
        "--create-namespace",
        // Short drains keep the tests short; the chart's defaults are for production.
        "--set",
        "preStopSleepSeconds=1",
        "--set",
        "shutdownGraceSeconds=2",
        "--set",
        "logLevel=weir=debug\\,info",
    ];
    args.extend_from_slice(extra);
    ok("helm install", cluster.helm(&args));
}

/// One audit line: what the API server decided about one request.
#[derive(Debug, PartialEq)]
struct Audited {
    verb: String,
    uri: String,
    code: u64,
    decision: String,
}

/// Every request `user` made that the audit log recorded.
fn requests_by(cluster: &Cluster, user: &str) -> Vec<Audited> {
    cluster
        .audit()
        .into_iter()
        .filter(|e| e["user"]["username"] == user)
        .map(|e| Audited {
            verb: e["verb"].as_str().unwrap_or_default().to_string(),
            uri: e["requestURI"].as_str().unwrap_or_default().to_string(),
            code: e["responseStatus"]["code"].as_u64().unwrap_or(0),
            decision: e["annotations"]["authorization.k8s.io/decision"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .collect()
}

/// The requests of `user` that RBAC did not allow.
fn denied(requests: &[Audited]) -> Vec<&Audited> {
    requests
        .iter()
        .filter(|r| r.code == 403 || (!r.decision.is_empty() && r.decision != "allow"))
        .collect()
}

/// Lines of weir's logs (every pod of the release) that report a refusal by the API server.
fn logged_refusals(cluster: &Cluster) -> Vec<String> {
    let pods = cluster.json(&["-n", WEIR_NS, "get", "pods", "-l", WEIR_PODS]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .flat_map(|name| {
            cluster
                .pod_log(WEIR_NS, name, "weir")
                .lines()
                // A refusal reads "code: 403 ... is forbidden" (kube-rs's error); timestamps
                // may hold "403" too.
                .filter(|l| l.contains("code: 403") || l.to_lowercase().contains("forbidden"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `pod` field of the echo backend's JSON answer.
fn echo_pod(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    Some(v["pod"].as_str()?.to_string())
}

/// The pods that answer through `weir` (ip:port) for `host`, over `n` requests; panics on an
/// answer other than 200.
async fn echo_pods_seen(weir: &str, host: &str, n: usize) -> HashSet<String> {
    let http = http1_client();
    let mut seen = HashSet::new();
    for _ in 0..n {
        let (status, body) = get(&http, &format!("http://{weir}/"), host)
            .await
            .expect("weir answers");
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.insert(echo_pod(&body).unwrap_or_else(|| panic!("not an echo answer: {body}")));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_install_serves_echo_pods_under_its_own_rbac() {
    let cluster = Cluster::start();
    helm_install(&cluster, &[]);
    cluster.apply(&echo_app("shop", 2));
    let weirs = cluster.wait_ready_pods(WEIR_NS, WEIR_PODS, 2, STARTUP);
    let echoes: HashSet<String> = cluster
        .wait_ready_pods("shop", "app=echo", 2, STARTUP)
        .into_iter()
        .map(|(name, _)| name)
        .collect();

    // Through either weir pod's own address, both echo pods answer.
    for (name, ip) in &weirs {
        let weir = format!("{ip}:8080");
        let seen = eventually("both echo pods answer", STARTUP, async || {
            let http = http1_client();
            let mut seen = HashSet::new();
            for _ in 0..10 {
                let (status, body) = get(&http, &format!("http://{weir}/"), "shop.echo.test")
                    .await
                    .ok()?;
                if status != StatusCode::OK {
                    return None;
                }
                seen.insert(echo_pod(&body)?);
            }
            (seen.len() == 2).then_some(seen)
        })
        .await;
        assert_eq!(seen, echoes, "through {name}");
    }

    // The leader writes the pool's status, through the status subresource its role allows.
    eventually("the pool's status says Ready", STARTUP, async || {
        let pool = cluster.json(&["-n", "shop", "get", "lbp", "echo"]);
        let ready = pool["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && pool["status"]["endpoints"]["ready"] == 2).then_some(())
    })
    .await;

    // RBAC for real: weir made its calls as its ServiceAccount, and every one was allowed.
    let requests = requests_by(&cluster, WEIR_USER);
    for (verb, what) in [
        ("list", "/apis/weir.dev/v1alpha1/loadbalancerpools"),
        ("watch", "/apis/discovery.k8s.io/v1/endpointslices"),
        ("list", "/api/v1/services"),
        ("patch", "/status"),
        ("create", "/leases"),
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.verb == verb && r.uri.contains(what)),
            "no {verb} of {what} by {WEIR_USER} in the audit log ({} requests)",
            requests.len()
        );
    }
    assert_eq!(
        denied(&requests),
        Vec::<&Audited>::new(),
        "refused requests"
    );
    assert_eq!(logged_refusals(&cluster), Vec::<String>::new());
    eprintln!("{} requests by weir, all allowed", requests.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_namespaces_serves_its_namespaces_and_ignores_the_rest() {
    let cluster = Cluster::start();
    // The namespaces exist before the install makes its Roles in them.
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: { name: shop }\n");
    helm_install(&cluster, &["--set", "watchNamespaces={shop}"]);
    cluster.apply(&echo_app("shop", 1));
    cluster.apply(&echo_app("other", 1));
    let weirs = cluster.wait_ready_pods(WEIR_NS, WEIR_PODS, 2, STARTUP);
    cluster.wait_ready_pods("shop", "app=echo", 1, STARTUP);
    cluster.wait_ready_pods("other", "app=echo", 1, STARTUP);
    let weir = format!("{}:8080", weirs[0].1);

    eventually("the watched namespace's pool serves", STARTUP, async || {
        let (status, body) = get(
            &http1_client(),
            &format!("http://{weir}/"),
            "shop.echo.test",
        )
        .await
        .ok()?;
        (status == StatusCode::OK && echo_pod(&body).is_some()).then_some(())
    })
    .await;
    // The other namespace's pool is not weir's: no route, and nobody writes its status.
    let (status, _) = get(
        &http1_client(),
        &format!("http://{weir}/"),
        "other.echo.test",
    )
    .await
    .expect("weir answers");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = cluster.json(&["-n", "other", "get", "lbp", "echo"]);
    assert!(other["status"].is_null(), "{}", other["status"]);
    let shop = cluster.json(&["-n", "shop", "get", "lbp", "echo"]);
    assert!(!shop["status"].is_null());

    // Namespaced Roles only, and they were enough.
    assert!(
        !cluster
            .kubectl(&["get", "clusterrole", "weir"])
            .status
            .success()
    );
    let requests = requests_by(&cluster, WEIR_USER);
    assert!(
        requests.iter().any(|r| r
            .uri
            .starts_with("/apis/weir.dev/v1alpha1/namespaces/shop/")),
        "weir read its namespace's pools"
    );
    assert_eq!(
        denied(&requests),
        Vec::<&Audited>::new(),
        "refused requests"
    );
    assert_eq!(logged_refusals(&cluster), Vec::<String>::new());
}

/// The RBAC checks above can fail: with one verb gone from the chart's ClusterRole, both the
/// audit log and weir's log show the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verb_missing_from_the_cluster_role_is_caught() {
    let cluster = Cluster::start();
    helm_install(&cluster, &["--set", "replicaCount=1"]);
    let (first, _) = cluster.wait_ready_pods(WEIR_NS, WEIR_PODS, 1, STARTUP)[0].clone();
    assert_eq!(
        denied(&requests_by(&cluster, WEIR_USER)),
        Vec::<&Audited>::new()
    );
    let mut role = cluster.json(&["get", "clusterrole", "weir"]);
    let rules = role["rules"].as_array_mut().expect("rules");
    let slices = rules
        .iter_mut()
        .find(|r| r["resources"][0] == "endpointslices")
        .expect("an endpointslices rule");
    let verbs = slices["verbs"].as_array_mut().expect("verbs");
    verbs.retain(|v| v != "watch");
    ok(
        "kubectl replace clusterrole/weir",
        cluster.kubectl_stdin(&["replace", "-f", "-"], &role.to_string()),
    );
    // A new pod lists and watches afresh (a watch already open would not be asked again).
    ok(
        "delete the weir pod",
        cluster.kubectl(&["-n", WEIR_NS, "delete", "pod", &first, "--wait=false"]),
    );

    let refused = eventually("a refused watch in the audit log", STARTUP, async || {
        let requests = requests_by(&cluster, WEIR_USER);
        let refused: Vec<String> = denied(&requests)
            .iter()
            .map(|r| format!("{} {} {}", r.verb, r.uri, r.code))
            .collect();
        (!refused.is_empty()).then_some(refused)
    })
    .await;
    assert!(
        refused
            .iter()
            .all(|r| r.starts_with("watch ") && r.contains("endpointslices")),
        "{refused:?}"
    );
    let logged = eventually("weir logs the refusal", STARTUP, async || {
        let lines = logged_refusals(&cluster);
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    eprintln!("caught: {refused:?}\nweir logged: {}", logged[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_update_of_the_backends_under_load_fails_no_request() {
    let cluster = Cluster::start();
    helm_install(&cluster, &["--set", "replicaCount=1"]);
    cluster.apply(&echo_app("shop", 3));
    let weir = cluster.wait_ready_pods(WEIR_NS, WEIR_PODS, 1, STARTUP)[0]
        .1
        .clone();
    let weir = format!("{weir}:8080");
    let old: HashSet<String> = cluster
        .wait_ready_pods("shop", "app=echo", 3, STARTUP)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    eventually("all three pods answer", STARTUP, async || {
        (echo_pods_seen(&weir, "shop.echo.test", 12).await == old).then_some(())
    })
    .await;

    let load = Load::start(format!("http://{weir}/"), "shop.echo.test", 4, 1_000_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rolled = Instant::now();
    ok(
        "a new template",
        cluster.kubectl(&["-n", "shop", "set", "env", "deployment/echo", "ROLL=1"]),
    );
    // This test's runtime is multi-threaded (weir's own is not, hence the lint): the load keeps
    // running on the other workers while kubectl waits.
    #[allow(clippy::disallowed_methods)]
    let status = tokio::task::block_in_place(|| {
        cluster.kubectl(&[
            "-n",
            "shop",
            "rollout",
            "status",
            "deployment/echo",
            "--timeout=180s",
        ])
    });
    ok("rollout status", status);
    // The last old pod's drain (preStop sleep, then TERM) happens after the rollout is done.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60)
        && text(
            &cluster
                .kubectl(&["-n", "shop", "get", "pods", "-o", "name"])
                .stdout,
        )
        .lines()
        .count()
            > 3
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (answered, failed) = load.finish().await;
    eprintln!(
        "rolling update of 3 pods in {:?}: {answered} answered, {failed} failed",
        rolled.elapsed()
    );
    assert_eq!(failed, 0);
    assert!(answered > 100, "{answered}");

    let new: HashSet<String> = cluster
        .ready_pods("shop", "app=echo")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(new.len(), 3);
    assert!(new.is_disjoint(&old), "every pod was replaced");
    assert_eq!(echo_pods_seen(&weir, "shop.echo.test", 12).await, new);
}

/// Bad Pods get a failed status that says what is wrong; the pod runner goes on running the
/// good ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pod_runner_fails_bad_pods_with_a_plain_message() {
    let cluster = Cluster::start();
    cluster.apply(
        r#"apiVersion: v1
kind: Pod
metadata: { name: unknown-image, namespace: default }
spec:
  containers: [{ name: app, image: "registry.example/nothing-like-it:1" }]
---
apiVersion: v1
kind: Pod
metadata: { name: no-ports, namespace: default }
spec:
  containers: [{ name: dns, image: "registry.k8s.io/coredns/coredns:v1.12.2" }]
"#,
    );
    let failed = |name: &str| {
        let pod = cluster.json(&["get", "pod", name]);
        (pod["status"]["phase"] == "Failed").then_some(pod)
    };
    let unknown = eventually("the unknown image's pod fails", STARTUP, async || {
        failed("unknown-image")
    })
    .await;
    let state = &unknown["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(state["reason"], "UnknownImage", "{unknown}");
    let message = unknown["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("registry.example/nothing-like-it")
            && message.contains("weir.dev/test/echo"),
        "the message names the image and what can run: {message}"
    );
    // A stand-in that declares no ports (as the conformance suite's coredns) runs and turns
    // Ready, saying that it serves nothing.
    let portless = eventually("the port-less pod is ready", STARTUP, async || {
        let pod = cluster.json(&["get", "pod", "no-ports"]);
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(pod)
    })
    .await;
    assert!(
        portless["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("declares no ports")),
        "{portless}"
    );

    // The runner is still there for the next pod.
    cluster.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: { name: fine, namespace: default, labels: { app: fine } }\nspec:\n  containers: [{ name: echo, image: weir.dev/test/echo, ports: [{ containerPort: 3000 }] }]\n",
    );
    let (_, ip) = cluster.wait_ready_pods("default", "app=fine", 1, STARTUP)[0].clone();
    let (status, body) = get(&http1_client(), &format!("http://{ip}:3000/x"), "fine")
        .await
        .expect("the echo pod answers");
    assert_eq!(status, StatusCode::OK);
    let echoed: Value = serde_json::from_str(&body).expect("the echo's JSON");
    assert_eq!(echoed["path"], "/x", "{body}");
}
