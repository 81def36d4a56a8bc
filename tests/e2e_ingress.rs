//! Kubernetes Ingress end to end on the test cluster (tests/cluster): `weir run` as a process on
//! the host (the admin's kubeconfig, as tests/e2e_gateway_api.rs runs it) with
//! `--publish-address`, an IngressClass `weir`, echo pods started by the pod runner behind real
//! Services, and Ingresses written as people write them for ingress-nginx: a main Ingress and a
//! canary (weight and header), rewrite-target with regex captures, cookie affinity, TLS with
//! ssl-redirect, a source allow-list, a body size limit, and an annotation weir does not do
//! (a Warning event; the rest of that Ingress serves). The leader writes every Ingress's
//! `status.loadBalancer.ingress`.
//!
//! One test whose named steps run in order against one cluster; a failing step prints its name.

mod common;

use base64::Engine;
use common::cluster::{Cluster, ok};
use common::{AnyCert, HttpClient, eventually, http1_client, process};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use kube::api::Api;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Pods start, weir lists, routes compile: each within this.
const STARTUP: Duration = Duration::from_secs(120);

/// The address weir is told to publish.
const PUBLISHED: &str = "203.0.113.7";

/// `weir run` against the cluster, and the file its log goes to (kept with the cluster's logs
/// when the test fails).
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
        "ingress-e2e",
        &[
            "--lease-namespace",
            "default",
            "--lease-duration",
            "4s",
            "--publish-address",
            PUBLISHED,
        ],
        "weir=debug,info",
        file.into(),
    );
    WeirProcess { run, log }
}

/// Namespace `shop`; echo Deployments `web` (two pods) and `canary` (one), each behind a
/// Service of its name on port 80; the IngressClass `weir`.
const BACKENDS: &str = r#"apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: { name: weir }
spec: { controller: weir.dev/ingress-controller }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
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
metadata: { name: web, namespace: shop }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: canary, namespace: shop }
spec:
  replicas: 1
  selector: { matchLabels: { app: canary } }
  template:
    metadata: { labels: { app: canary } }
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
metadata: { name: canary, namespace: shop }
spec:
  selector: { app: canary }
  ports: [{ name: http, port: 80, targetPort: http }]
"#;

/// An Ingress `shop/NAME` of class weir with these ingress-nginx annotations, one rule of
/// `host` with one path to `service` port 80, and TLS for the host from `tls_secret`.
fn ingress(
    name: &str,
    annotations: &[(&str, &str)],
    host: &str,
    path: (&str, &str),
    service: &str,
    tls_secret: Option<&str>,
) -> String {
    let annotations: BTreeMap<String, &str> = annotations
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), *v))
        .collect();
    let mut spec = serde_json::json!({
        "ingressClassName": "weir",
        "rules": [{ "host": host, "http": { "paths": [{
            "path": path.0, "pathType": path.1,
            "backend": { "service": { "name": service, "port": { "number": 80 } } },
        }] } }],
    });
    if let Some(secret) = tls_secret {
        spec["tls"] = serde_json::json!([{ "hosts": [host], "secretName": secret }]);
    }
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": "shop", "annotations": annotations },
        "spec": spec,
    })
    .to_string()
}

const ROOT: (&str, &str) = ("/", "Prefix");

/// Every Ingress of the scenario, and the TLS Secret `secure-tls` with `cert` and `key`.
fn ingresses(cert_pem: &str, key_pem: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": { "name": "secure-tls", "namespace": "shop" },
        "data": { "tls.crt": b64(cert_pem), "tls.key": b64(key_pem) },
    })
    .to_string();
    vec![
        secret,
        ingress("app", &[], "app.test", ROOT, "web", None),
        ingress(
            "app-canary",
            &[
                ("canary", "true"),
                ("canary-weight", "10"),
                ("canary-by-header", "x-canary"),
            ],
            "app.test",
            ROOT,
            "canary",
            None,
        ),
        ingress(
            "api",
            &[("rewrite-target", "/$2"), ("use-regex", "true")],
            "api.test",
            ("/api(/|$)(.*)", "ImplementationSpecific"),
            "web",
            None,
        ),
        ingress(
            "sticky",
            &[
                ("affinity", "cookie"),
                ("session-cookie-name", "route"),
                ("session-cookie-max-age", "3600"),
            ],
            "sticky.test",
            ROOT,
            "web",
            None,
        ),
        ingress(
            "secure",
            &[("ssl-redirect", "true")],
            "secure.test",
            ROOT,
            "web",
            Some("secure-tls"),
        ),
        ingress(
            "internal",
            &[("whitelist-source-range", "10.0.0.0/8")],
            "internal.test",
            ROOT,
            "web",
            None,
        ),
        ingress(
            "upload",
            &[("proxy-body-size", "1k")],
            "upload.test",
            ROOT,
            "web",
            None,
        ),
        ingress(
            "cors",
            &[("enable-cors", "true")],
            "cors.test",
            ROOT,
            "web",
            None,
        ),
    ]
}

/// What the steps share.
struct Scene {
    cluster: Cluster,
    weir: WeirProcess,
    client: kube::Client,
    http: HttpClient,
    /// The Secret's certificate (DER), for the TLS step.
    cert_der: Vec<u8>,
}

/// An answer: status, headers, body.
type Answer = (StatusCode, http::HeaderMap, String);

impl Scene {
    /// A request to weir's plain listener.
    async fn send(
        &self,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{target}", self.weir.run.http))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The echo pod's JSON for a GET, or the whole answer when it is not a 200.
    async fn echo(&self, target: &str, host: &str, headers: &[(&str, &str)]) -> Value {
        match self.send("GET", target, host, headers, Vec::new()).await {
            Ok((StatusCode::OK, _, body)) => serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("GET {host}{target}: not echo JSON ({e}): {body}")),
            other => panic!("GET {host}{target}: {other:?}"),
        }
    }

    /// Which pod answered a GET.
    async fn pod(&self, target: &str, host: &str, headers: &[(&str, &str)]) -> String {
        let v = self.echo(target, host, headers).await;
        v["pod"].as_str().unwrap_or_default().to_string()
    }

    fn ingress(&self, name: &str) -> Value {
        self.cluster.json(&["-n", "shop", "get", "ingress", name])
    }
}

fn header(headers: &http::HeaderMap, name: http::header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// Prints the step's name when it panics.
struct Step(&'static str);

impl Drop for Step {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("step failed: {}", self.0);
        }
    }
}

macro_rules! step {
    ($scene:expr, $f:ident) => {{
        let _step = Step(stringify!($f));
        let started = Instant::now();
        $f($scene).await;
        eprintln!("step {} passed in {:?}", stringify!($f), started.elapsed());
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingresses_as_written_for_ingress_nginx_serve_and_get_status_and_events() {
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
    cluster.apply(BACKENDS);
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["secure.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("a certificate");
    for object in ingresses(&cert.pem(), &key.serialize_pem()) {
        cluster.apply(&object);
    }
    let weir = start_weir(&cluster.kubeconfig, cluster.dir());
    cluster.wait_ready_pods("shop", "app=web", 2, STARTUP);
    cluster.wait_ready_pods("shop", "app=canary", 1, STARTUP);
    let client = cluster.client().await;
    let scene = Scene {
        cluster,
        weir,
        client,
        http: http1_client(),
        cert_der: cert.der().to_vec(),
    };
    step!(&scene, serves_the_main_ingress);
    step!(&scene, canary_by_weight_and_by_header);
    step!(&scene, rewrite_target_with_captures);
    step!(&scene, cookie_affinity_pins_a_pod);
    step!(&scene, tls_and_ssl_redirect);
    step!(&scene, source_allow_list);
    step!(&scene, body_size_limit);
    step!(&scene, unsupported_annotation_warns_and_the_rest_serves);
    step!(&scene, status_has_the_published_address);
    assert!(
        !scene.weir.log().contains("watch failed"),
        "{}",
        scene.weir.log()
    );
    eprintln!("ingress e2e took {:?}", started.elapsed());
}

/// weir lists the Ingresses and serves app.test from both web pods (and, now and then, the
/// canary).
async fn serves_the_main_ingress(scene: &Scene) {
    eventually("app.test serves", STARTUP, async || {
        match scene.send("GET", "/", "app.test", &[], Vec::new()).await {
            Ok((StatusCode::OK, _, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    let mut pods = BTreeSet::new();
    for _ in 0..40 {
        pods.insert(scene.pod("/", "app.test", &[("x-canary", "never")]).await);
    }
    assert_eq!(pods.len(), 2, "both web pods answer: {pods:?}");
    assert!(pods.iter().all(|p| p.starts_with("web-")), "{pods:?}");
}

/// canary-weight 10: about one in ten; canary-by-header x-canary: always and never decide.
async fn canary_by_weight_and_by_header(scene: &Scene) {
    let mut to_canary = 0;
    for _ in 0..400 {
        if scene.pod("/", "app.test", &[]).await.starts_with("canary-") {
            to_canary += 1;
        }
    }
    eprintln!("{to_canary} of 400 went to the canary");
    // 10% of 400 is 40; the bounds are about six standard deviations wide.
    assert!(
        (10..=80).contains(&to_canary),
        "{to_canary} of 400 went to the canary"
    );
    for _ in 0..20 {
        let always = scene.pod("/", "app.test", &[("x-canary", "always")]).await;
        assert!(always.starts_with("canary-"), "x-canary: always → {always}");
        let never = scene.pod("/", "app.test", &[("x-canary", "never")]).await;
        assert!(never.starts_with("web-"), "x-canary: never → {never}");
    }
}

/// rewrite-target /$2 on /api(/|$)(.*): the pod sees the second capture.
async fn rewrite_target_with_captures(scene: &Scene) {
    let v = scene.echo("/api/users/7", "api.test", &[]).await;
    assert_eq!(v["path"], "/users/7", "{v}");
    let v = scene.echo("/api", "api.test", &[]).await;
    assert_eq!(v["path"], "/", "{v}");
}

/// affinity: cookie: the first answer sets the cookie; with it, every request goes to the same
/// pod.
async fn cookie_affinity_pins_a_pod(scene: &Scene) {
    let (status, headers, body) = scene
        .send("GET", "/", "sticky.test", &[], Vec::new())
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::OK, "{body}");
    let set_cookie = header(&headers, http::header::SET_COOKIE).to_string();
    assert!(set_cookie.starts_with("route="), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    let first: Value = serde_json::from_str(&body).expect("echo JSON");
    let first = first["pod"].as_str().unwrap_or_default().to_string();
    for _ in 0..20 {
        let pod = scene
            .pod("/", "sticky.test", &[("cookie", cookie.as_str())])
            .await;
        assert_eq!(pod, first, "pinned by {cookie}");
    }
    // Without the cookie, both pods take requests.
    let mut pods = BTreeSet::new();
    for _ in 0..40 {
        pods.insert(scene.pod("/", "sticky.test", &[]).await);
    }
    assert_eq!(pods.len(), 2, "{pods:?}");
}

/// ssl-redirect with the Ingress's TLS: plain HTTP is a 308 to https; HTTPS with SNI gets the
/// Secret's certificate and the pod's answer.
async fn tls_and_ssl_redirect(scene: &Scene) {
    let (status, headers, _) = scene
        .send("GET", "/cart?id=7", "secure.test", &[], Vec::new())
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        header(&headers, http::header::LOCATION),
        "https://secure.test/cart?id=7"
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let tcp = TcpStream::connect(&scene.weir.run.https)
        .await
        .expect("connects");
    let name = rustls::pki_types::ServerName::try_from("secure.test").expect("a name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("a handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec();
    assert_eq!(leaf, scene.cert_der, "the Ingress's Secret");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http/1.1");
    tokio::spawn(conn);
    let req = http::Request::get("/cart?id=7")
        .header("host", "secure.test")
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let resp = sender.send_request(req).await.expect("an answer");
    assert_eq!(resp.status(), StatusCode::OK, "HTTPS is not redirected");
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("echo JSON");
    assert!(
        v["pod"].as_str().is_some_and(|p| p.starts_with("web-")),
        "{v}"
    );
}

/// whitelist-source-range 10.0.0.0/8: this test's 127.0.0.1 is refused.
async fn source_allow_list(scene: &Scene) {
    let (status, _, body) = scene
        .send("GET", "/", "internal.test", &[], Vec::new())
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

/// proxy-body-size 1k: a 2 KiB body is refused with 413; a small one passes.
async fn body_size_limit(scene: &Scene) {
    let (status, _, body) = scene
        .send("POST", "/", "upload.test", &[], vec![b'x'; 2048])
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _, body) = scene
        .send("POST", "/", "upload.test", &[], vec![b'x'; 512])
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// enable-cors (not built): a Warning event UnsupportedAnnotation on that Ingress, once; the
/// Ingress still serves.
async fn unsupported_annotation_warns_and_the_rest_serves(scene: &Scene) {
    let pod = scene.pod("/", "cors.test", &[]).await;
    assert!(pod.starts_with("web-"), "{pod}");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(scene.client.clone(), "shop");
    let matching = async || -> Vec<k8s_openapi::api::events::v1::Event> {
        let Ok(list) = events.list(&Default::default()).await else {
            return Vec::new();
        };
        list.items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("UnsupportedAnnotation")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("cors")
            })
            .collect()
    };
    let found = eventually(
        "an UnsupportedAnnotation event on Ingress cors",
        Duration::from_secs(30),
        async || {
            let found = matching().await;
            (!found.is_empty()).then_some(found)
        },
    )
    .await;
    let event = &found[0];
    let regarding = event.regarding.as_ref().expect("regarding");
    assert_eq!(regarding.kind.as_deref(), Some("Ingress"));
    assert!(regarding.uid.is_some(), "the event names the Ingress's uid");
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("enable-cors"),
        "{:?}",
        event.note
    );
    // Not written again each loop: one event, not a growing series.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = matching().await;
    assert_eq!(again.len(), 1, "one event object");
    assert!(
        again[0].series.is_none(),
        "the warning was written again: {:?}",
        again[0].series
    );
    // No warnings for the Ingresses weir does as written.
    let others = events.list(&Default::default()).await.expect("events");
    let warned: BTreeSet<String> = others
        .items
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.regarding.as_ref()?.name.clone())
        .collect();
    assert_eq!(
        warned,
        BTreeSet::from(["cors".to_string()]),
        "Warning events on other Ingresses"
    );
}

/// --publish-address: every Ingress of weir's gets it in status.loadBalancer.ingress.
async fn status_has_the_published_address(scene: &Scene) {
    for name in ["app", "api", "secure", "cors"] {
        let ip = eventually(
            &format!("Ingress {name} gets its status"),
            Duration::from_secs(30),
            async || {
                let v = scene.ingress(name);
                v["status"]["loadBalancer"]["ingress"][0]["ip"]
                    .as_str()
                    .map(str::to_string)
            },
        )
        .await;
        assert_eq!(ip, PUBLISHED, "Ingress {name}");
        let v = scene.ingress(name);
        assert_eq!(
            v["status"]["loadBalancer"]["ingress"]
                .as_array()
                .map(Vec::len),
            Some(1),
            "{v}"
        );
    }
}
