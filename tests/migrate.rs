//! `weir migrate`, round trip over real sockets: Ingresses served by weir as Ingress, and the
//! same Ingresses converted by `weir::migrate` and served by weir as Gateway API, answer the
//! same requests alike (status, Location, the backend that answers). Also: the comments name
//! what is not carried, and the binary prints YAML that parses.

mod common;

use base64::Engine;
use common::{Backend, Config, Weir, eventually, http1_client};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use weir::testkit::{gateway_class, to_document};

const NGINX: &str = "nginx.ingress.kubernetes.io/";
const GATEWAY_IP: &str = "127.0.0.31";

fn ingress(name: &str, annotations: &[(&str, &str)], spec: Value) -> Value {
    let mut spec = spec;
    spec["ingressClassName"] = json!("weir");
    let annotations: BTreeMap<String, &str> = annotations
        .iter()
        .map(|(k, v)| (format!("{NGINX}{k}"), *v))
        .collect();
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": "test", "annotations": annotations },
        "spec": spec,
    })
}

fn rule(host: &str, paths: &[(&str, &str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(path, kind, service)| {
            json!({ "path": path, "pathType": kind,
                    "backend": { "service": { "name": service, "port": { "number": 80 } } } })
        })
        .collect();
    json!({ "host": host, "http": { "paths": paths } })
}

/// The Ingresses of the round trip.
fn ingresses() -> Vec<Value> {
    vec![
        ingress(
            "shop",
            &[],
            json!({
                "defaultBackend": { "service": { "name": "c", "port": { "number": 80 } } },
                "rules": [rule("shop.test", &[("/cart", "Exact", "a"), ("/api", "Prefix", "b")])],
            }),
        ),
        ingress(
            "shop-canary",
            &[("canary", "true"), ("canary-by-header", "X-Canary")],
            json!({ "rules": [rule("shop.test", &[("/api", "Prefix", "c")])] }),
        ),
        ingress(
            "rewrite",
            &[("rewrite-target", "/count")],
            json!({ "rules": [rule("rw.test", &[("/old", "Prefix", "a")])] }),
        ),
        ingress(
            "moved",
            &[("permanent-redirect", "https://example.com/new")],
            json!({ "rules": [rule("moved.test", &[("/", "Prefix", "a")])] }),
        ),
        ingress(
            "root",
            &[("app-root", "/app")],
            json!({ "rules": [rule("root.test", &[("/", "Prefix", "b")])] }),
        ),
        ingress(
            "secure",
            &[],
            json!({
                "tls": [{ "hosts": ["secure.test"], "secretName": "secure-tls" }],
                "rules": [rule("secure.test", &[("/", "Prefix", "b")])],
            }),
        ),
    ]
}

fn secret() -> String {
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["secure.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("a certificate");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: secure-tls, namespace: test }}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&cert.pem()),
        b64(&key.serialize_pem())
    )
}

fn free_port_on(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Status, Location (with `http://HOST:PORT` of the socket itself taken off, so a redirect
/// to the same server compares alike on both sockets) and body.
async fn send(
    socket: SocketAddr,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut req = http::Request::get(format!("http://{socket}{target}")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("a request");
    let resp = tokio::time::timeout(Duration::from_secs(10), http1_client().request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = resp.status();
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let own = format!("http://{host}:{}", socket.port());
    let location = location
        .strip_prefix(&own)
        .map_or(location.clone(), str::to_string);
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Host, target and headers of one request.
type Request<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

#[tokio::test]
async fn migrated_ingresses_answer_as_the_ingresses_do() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let services = Config::default()
        .service("a", &[a.addr])
        .service("b", &[b.addr])
        .service("c", &[c.addr])
        .document(secret());

    // (a) as Ingress, on weir's own listener.
    let mut as_ingress = services.clone();
    for i in ingresses() {
        as_ingress = as_ingress.document(to_document(&i));
    }
    let ingress_weir = Weir::start(&as_ingress).await;

    // (b) migrated, on the Gateway's socket.
    let ip: IpAddr = GATEWAY_IP.parse().expect("an IP");
    let (http_port, https_port) = (free_port_on(ip), free_port_on(ip));
    let parsed: Vec<Ingress> = ingresses()
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("an Ingress"))
        .collect();
    let options = weir::migrate::Options {
        gateway_address: Some(GATEWAY_IP.into()),
        http_port,
        https_port,
        ..Default::default()
    };
    let yaml = weir::migrate::to_yaml(&weir::migrate::migrate(&parsed, &options));
    let as_gateway = services
        .document(to_document(&gateway_class()))
        .document(yaml.clone());
    let gateway_weir = Weir::start(&as_gateway).await;
    let socket = SocketAddr::new(ip, http_port);
    eventually(
        "the Gateway socket listens",
        Duration::from_secs(10),
        async || tokio::net::TcpStream::connect(socket).await.ok(),
    )
    .await;

    let requests: &[Request<'_>] = &[
        ("shop.test", "/cart", &[]),
        ("shop.test", "/cart/more", &[]),
        ("shop.test", "/api", &[]),
        ("shop.test", "/api/v1", &[]),
        ("shop.test", "/apix", &[]),
        ("shop.test", "/api/v1", &[("X-Canary", "always")]),
        ("shop.test", "/api/v1", &[("X-Canary", "never")]),
        ("shop.test", "/", &[]),
        ("elsewhere.test", "/anything", &[]),
        ("rw.test", "/old/page", &[]),
        ("rw.test", "/other", &[]),
        ("moved.test", "/where", &[]),
        ("root.test", "/", &[]),
        ("root.test", "/page", &[]),
        ("secure.test", "/cart?id=7", &[]),
        ("secure.test", "/", &[]),
    ];
    let mut differences = Vec::new();
    for (host, target, headers) in requests {
        let want = send(ingress_weir.running.http_addr, target, host, headers).await;
        let got = send(socket, target, host, headers).await;
        if want != got {
            differences.push(format!(
                "{host}{target} {headers:?}: Ingress {want:?}, Gateway {got:?}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{}\n\nmigrated:\n{yaml}",
        differences.join("\n")
    );
    // Not a vacuous comparison: the answers are the ones the Ingresses ask for.
    let s = ingress_weir.running.http_addr;
    assert_eq!(
        send(s, "/api", "shop.test", &[("X-Canary", "always")])
            .await
            .2,
        "c"
    );
    assert_eq!(
        send(s, "/old/x", "rw.test", &[]).await.2,
        "0",
        "rewritten to /count"
    );
    let (status, location, _) = send(s, "/x", "moved.test", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::MOVED_PERMANENTLY, "https://example.com/new")
    );
    let (status, location, _) = send(s, "/", "secure.test", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::PERMANENT_REDIRECT, "https://secure.test/")
    );
    ingress_weir.running.shutdown().await;
    gateway_weir.running.shutdown().await;
}

#[test]
fn the_comments_name_what_is_not_carried() {
    let i: Ingress = serde_json::from_value(ingress(
        "limits",
        &[
            ("whitelist-source-range", "10.0.0.0/8"),
            ("proxy-body-size", "8m"),
            ("enable-cors", "true"),
            ("configuration-snippet", "more_set_headers x: y;"),
            ("rewrite-target", "/$1"),
        ],
        json!({ "rules": [rule("limits.test", &[("/(.*)", "Prefix", "a")])] }),
    ))
    .expect("an Ingress");
    let docs = weir::migrate::migrate([&i], &weir::migrate::Options::default());
    let route = docs
        .iter()
        .find(|d| d.object["kind"] == "HTTPRoute")
        .expect("a route");
    let comments = route.comments.join("\n");
    for name in [
        "whitelist-source-range",
        "proxy-body-size",
        "enable-cors",
        "configuration-snippet",
        "rewrite-target",
    ] {
        assert!(comments.contains(name), "{name} in:\n{comments}");
    }
    let yaml = weir::migrate::to_yaml(&docs);
    assert!(
        yaml.contains("# not carried: nginx.ingress.kubernetes.io/enable-cors"),
        "{yaml}"
    );
    weir::source::file::parse("m.yaml", &yaml).expect("the output parses");
}

#[test]
fn the_binary_prints_yaml_that_parses_and_a_bad_file_is_one_error_line() {
    let dir = std::env::temp_dir().join(format!("weir-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a dir");
    let file = dir.join("ingresses.yaml");
    let text: Vec<String> = ingresses().iter().map(to_document).collect();
    std::fs::write(&file, text.join("---\n")).expect("written");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["migrate", "--file"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("utf-8");
    let store = weir::source::file::parse("out.yaml", &yaml).expect("the output parses");
    assert_eq!(store.gateways.len(), 1);
    assert!(store.http_routes.len() >= 6, "{yaml}");

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "kind: Ingress\nmetadata: [not, a, map]\n").expect("written");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["migrate", "--file"])
        .arg(&bad)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
