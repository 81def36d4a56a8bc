//! Kubernetes Ingress in file mode, over real sockets: weir's class only, hosts and paths as
//! ingress-nginx merges them, the default backend, and the ingress-nginx annotations people
//! migrate with (rewrite-target with captures, redirects, app-root, source ranges, body size,
//! canary by weight, header and cookie, cookie affinity, ssl-redirect with the Ingress's TLS
//! Secret); what weir does not do is reported, and the rest of the Ingress serves.

mod common;

use base64::Engine;
use common::{AnyCert, Backend, Config, Weir, http1_client};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use weir::routing::IngressWarningReason;
use weir::store::ObjectKey;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// An Ingress `test/name` of class `class` (`None`: no class) with these annotations (short
/// names, under ingress-nginx's prefix) and spec.
fn ingress(name: &str, class: Option<&str>, annotations: &[(&str, &str)], spec: Value) -> String {
    let annotations: BTreeMap<String, &str> = annotations
        .iter()
        .map(|(k, v)| (format!("{NGINX}{k}"), *v))
        .collect();
    let mut spec = spec;
    if let Some(c) = class {
        spec["ingressClassName"] = json!(c);
    }
    let object = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name, "namespace": "test", "annotations": annotations },
        "spec": spec,
    });
    weir::testkit::to_document(&object)
}

/// One rule of `host` (empty: any) with these (path, pathType, Service) paths, port 80.
fn rule(host: &str, paths: &[(&str, &str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(path, kind, service)| {
            json!({ "path": path, "pathType": kind,
                    "backend": { "service": { "name": service, "port": { "number": 80 } } } })
        })
        .collect();
    let mut r = json!({ "http": { "paths": paths } });
    if !host.is_empty() {
        r["host"] = json!(host);
    }
    r
}

fn service_backend(service: &str) -> Value {
    json!({ "service": { "name": service, "port": { "number": 80 } } })
}

/// A request to weir's plain listener: status, headers, body.
async fn send(
    weir: &Weir,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(weir.url(target))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.unwrap_or_else(|| Full::new(Bytes::new())))
        .expect("a request");
    let resp = tokio::time::timeout(Duration::from_secs(10), http1_client().request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn get(weir: &Weir, target: &str, host: &str) -> (StatusCode, String) {
    let (status, _, body) = send(weir, "GET", target, host, &[], None).await;
    (status, body)
}

fn ok(name: &str) -> (StatusCode, String) {
    (StatusCode::OK, name.to_string())
}

fn location(headers: &http::HeaderMap) -> &str {
    headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// The warnings compile has for Ingress `test/name`, as (reason, message).
fn warnings(weir: &Weir, name: &str) -> Vec<(IngressWarningReason, String)> {
    weir.running
        .admin
        .ingress_reports
        .load()
        .get(&ObjectKey::new("test", name))
        .map(|r| {
            r.warnings
                .iter()
                .map(|w| (w.reason, w.message.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn hosts_paths_and_the_default_backend_as_ingress_nginx_merges_them() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let config = Config::default()
        .service("a", &[a.addr])
        .service("b", &[b.addr])
        .service("c", &[c.addr])
        .document(ingress(
            "shop",
            Some("weir"),
            &[],
            json!({
                "defaultBackend": service_backend("c"),
                "rules": [
                    rule("shop.test", &[("/api", "Prefix", "a"), ("/exact", "Exact", "b")]),
                    rule("*.wild.test", &[("/", "ImplementationSpecific", "b")]),
                ],
            }),
        ))
        // A second Ingress of the same host: its longer path wins over `/api`.
        .document(ingress(
            "shop-v2",
            Some("weir"),
            &[],
            json!({ "rules": [rule("shop.test", &[("/api/v2", "Prefix", "b")])] }),
        ))
        // Another controller's: not weir's to serve.
        .document(ingress(
            "theirs",
            Some("nginx"),
            &[],
            json!({ "rules": [rule("theirs.test", &[("/", "Prefix", "a")])] }),
        ))
        // No class: weir's only when its class is the default (or in `weir serve`, below).
        .document(ingress(
            "unclassed",
            None,
            &[],
            json!({ "rules": [rule("unclassed.test", &[("/", "Prefix", "b")])] }),
        ));
    let weir = Weir::start(&config).await;
    assert_eq!(get(&weir, "/api", "shop.test").await, ok("a"));
    assert_eq!(get(&weir, "/api/x", "SHOP.test:8080").await, ok("a"));
    assert_eq!(
        get(&weir, "/api/v2/x", "shop.test").await,
        ok("b"),
        "longer path"
    );
    assert_eq!(
        get(&weir, "/apix", "shop.test").await,
        ok("c"),
        "whole segments"
    );
    assert_eq!(get(&weir, "/exact", "shop.test").await, ok("b"));
    assert_eq!(
        get(&weir, "/exact/x", "shop.test").await,
        ok("c"),
        "Exact is exact"
    );
    assert_eq!(get(&weir, "/", "x.wild.test").await, ok("b"));
    assert_eq!(get(&weir, "/", "x.y.wild.test").await, ok("c"), "one label");
    assert_eq!(
        get(&weir, "/", "elsewhere.test").await,
        ok("c"),
        "default backend"
    );
    assert_eq!(
        get(&weir, "/", "theirs.test").await,
        ok("c"),
        "not weir's class"
    );
    assert_eq!(get(&weir, "/", "unclassed.test").await, ok("c"));
    weir.running.shutdown().await;

    // `weir serve` takes a file's unclassed Ingresses as weir's.
    let weir = Weir::start_with(&config, |o| o.ingress_class.unclassed = true).await;
    assert_eq!(get(&weir, "/", "unclassed.test").await, ok("b"));
    assert_eq!(get(&weir, "/", "theirs.test").await, ok("c"));
    weir.running.shutdown().await;
}

#[tokio::test]
async fn annotations_rewrite_redirect_refuse_and_limit() {
    let a = Backend::start("a").await;
    let doc = |name: &str, host: &str, path: &str, kind: &str, annotations: &[(&str, &str)]| {
        ingress(
            name,
            Some("weir"),
            annotations,
            json!({ "rules": [rule(host, &[(path, kind, "a")])] }),
        )
    };
    let config = Config::default()
        .service("a", &[a.addr])
        .document(doc(
            "rewrite",
            "rw.test",
            "/api(/|$)(.*)",
            "ImplementationSpecific",
            &[("use-regex", "true"), ("rewrite-target", "/$2")],
        ))
        .document(doc(
            "moved",
            "moved.test",
            "/",
            "Prefix",
            &[
                ("permanent-redirect", "https://example.com/new"),
                ("permanent-redirect-code", "308"),
            ],
        ))
        .document(doc(
            "root",
            "root.test",
            "/",
            "Prefix",
            &[("app-root", "/app")],
        ))
        .document(doc(
            "office",
            "office.test",
            "/",
            "Prefix",
            &[("whitelist-source-range", "10.0.0.0/8, 192.168.0.0/16")],
        ))
        .document(doc(
            "local",
            "local.test",
            "/",
            "Prefix",
            &[("whitelist-source-range", "127.0.0.0/8")],
        ))
        .document(doc(
            "blocked",
            "blocked.test",
            "/",
            "Prefix",
            &[("denylist-source-range", "127.0.0.1")],
        ))
        .document(doc(
            "upload",
            "upload.test",
            "/",
            "Prefix",
            &[("proxy-body-size", "1k")],
        ))
        .document(doc(
            "partial",
            "partial.test",
            "/",
            "Prefix",
            &[
                ("enable-cors", "true"),
                (
                    "configuration-snippet",
                    "more_set_headers \"X-Snippet: 1\";",
                ),
                ("load-balance", "fastest"),
                ("proxy-read-timeout", "30"),
            ],
        ));
    let weir = Weir::start(&config).await;

    // rewrite-target: the pod sees the capture (`/headers` echoes the request's headers).
    let (status, seen) = get(&weir, "/api/headers", "rw.test").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        seen.contains("host: rw.test"),
        "rewritten to /headers: {seen}"
    );
    let (_, seen) = get(&weir, "/API/headers", "rw.test").await;
    assert!(
        seen.contains("host: rw.test"),
        "case-insensitive, as `location ~*`"
    );
    assert_eq!(get(&weir, "/api", "rw.test").await, ok("a"), "to /");

    let (status, headers, _) = send(&weir, "GET", "/old?x=1", "moved.test", &[], None).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&headers), "https://example.com/new");

    let (status, headers, _) = send(&weir, "GET", "/", "root.test", &[], None).await;
    assert_eq!((status, location(&headers)), (StatusCode::FOUND, "/app"));
    assert_eq!(get(&weir, "/app", "root.test").await, ok("a"));

    assert_eq!(
        get(&weir, "/", "office.test").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get(&weir, "/", "local.test").await, ok("a"));
    assert_eq!(
        get(&weir, "/", "blocked.test").await.0,
        StatusCode::FORBIDDEN
    );

    let post = |n: usize| Some(Full::new(Bytes::from(vec![b'x'; n])));
    let (status, _, body) = send(&weir, "POST", "/count", "upload.test", &[], post(512)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "512"));
    let (status, _, _) = send(&weir, "POST", "/count", "upload.test", &[], post(2048)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Without a Content-Length (chunked), counted as it arrives.
    let chunked = http_body_util::StreamBody::new(futures_util::stream::iter((0..4).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![b'y'; 512])))
    })));
    let req = http::Request::post(weir.url("/count"))
        .header("host", "upload.test")
        .body(chunked)
        .expect("a request");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("in time")
        .expect("an answer");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // ingress-nginx's default limit is 1 MiB.
    let (status, _, _) = send(&weir, "POST", "/count", "root.test", &[], post(1_100_000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // What weir does not do is reported; the Ingress serves all the same.
    assert_eq!(get(&weir, "/", "partial.test").await, ok("a"));
    let reported = warnings(&weir, "partial");
    let reasons: Vec<&str> = reported.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "SnippetNotExecuted",
            "UnsupportedAnnotation",
            "InvalidAnnotation"
        ],
        "{reported:?}"
    );
    assert!(
        reported
            .iter()
            .any(|(_, m)| m.contains("load-balance") && m.contains("fastest"))
    );
    assert!(warnings(&weir, "rewrite").is_empty());
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_canary_takes_its_weight_and_whom_its_header_or_cookie_names() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let spec = |service: &str| json!({ "rules": [rule("app.test", &[("/", "Prefix", service)])] });
    let config = Config::default()
        .service("main", &[a.addr])
        .service("canary", &[b.addr])
        .document(ingress("app", Some("weir"), &[], spec("main")))
        .document(ingress(
            "app-canary",
            Some("weir"),
            &[
                ("canary", "true"),
                ("canary-weight", "10"),
                ("canary-by-header", "x-canary"),
                ("canary-by-cookie", "canary"),
            ],
            spec("canary"),
        ));
    let weir = Weir::start(&config).await;
    let mut to_canary = 0;
    for _ in 0..400 {
        if get(&weir, "/", "app.test").await == ok("b") {
            to_canary += 1;
        }
    }
    // 10% of 400 is 40; the bounds are many standard deviations (6) wide.
    assert!(
        (10..=80).contains(&to_canary),
        "{to_canary} of 400 went to the canary"
    );
    let with = |headers: &'static [(&'static str, &'static str)]| {
        let weir = &weir;
        async move {
            let mut names = std::collections::BTreeSet::new();
            for _ in 0..20 {
                names.insert(send(weir, "GET", "/", "app.test", headers, None).await.2);
            }
            names.into_iter().collect::<Vec<_>>()
        }
    };
    assert_eq!(with(&[("x-canary", "always")]).await, ["b"]);
    assert_eq!(with(&[("x-canary", "never")]).await, ["a"]);
    assert_eq!(with(&[("cookie", "canary=always")]).await, ["b"]);
    assert_eq!(with(&[("cookie", "other=1; canary=never")]).await, ["a"]);
    assert_eq!(
        with(&[("x-canary", "never"), ("cookie", "canary=always")]).await,
        ["a"],
        "the header decides before the cookie"
    );
    assert!(warnings(&weir, "app-canary").is_empty());
    weir.running.shutdown().await;
}

#[tokio::test]
async fn cookie_affinity_keeps_a_client_on_one_pod() {
    let backends = Backend::start_many(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let config = Config::default().service("web", &addrs).document(ingress(
        "sticky",
        Some("weir"),
        &[
            ("affinity", "cookie"),
            ("session-cookie-name", "route"),
            ("session-cookie-max-age", "3600"),
        ],
        json!({ "rules": [rule("sticky.test", &[("/", "Prefix", "web")])] }),
    ));
    let weir = Weir::start(&config).await;
    let (status, headers, first) = send(&weir, "GET", "/", "sticky.test", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie = headers
        .get(http::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("an affinity cookie")
        .to_string();
    assert!(set_cookie.starts_with("route="), "{set_cookie}");
    assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    for _ in 0..20 {
        let (_, _, name) = send(
            &weir,
            "GET",
            "/",
            "sticky.test",
            &[("cookie", &cookie)],
            None,
        )
        .await;
        assert_eq!(name, first, "pinned by {cookie}");
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn tls_hosts_get_the_secrets_certificate_and_plain_http_is_redirected() {
    let a = Backend::start("a").await;
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["secure.test".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("a certificate");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: secure-tls, namespace: test }}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&cert.pem()),
        b64(&key.serialize_pem())
    );
    let tls_spec = |host: &str| {
        json!({
            "tls": [{ "hosts": [host], "secretName": "secure-tls" }],
            "rules": [rule(host, &[("/", "Prefix", "a")])],
        })
    };
    let config = Config::default()
        .service("a", &[a.addr])
        .document(secret)
        .document(ingress(
            "secure",
            Some("weir"),
            &[],
            tls_spec("secure.test"),
        ))
        .document(ingress(
            "both",
            Some("weir"),
            &[("ssl-redirect", "false")],
            tls_spec("both.test"),
        ))
        .document(ingress(
            "forced",
            Some("weir"),
            &[("force-ssl-redirect", "true")],
            json!({ "rules": [rule("forced.test", &[("/", "Prefix", "a")])] }),
        ));
    let weir = Weir::start(&config).await;
    let (status, headers, _) = send(&weir, "GET", "/cart?id=7", "secure.test", &[], None).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&headers), "https://secure.test/cart?id=7");
    assert_eq!(
        get(&weir, "/", "both.test").await,
        ok("a"),
        "ssl-redirect: false"
    );
    let (status, headers, _) = send(&weir, "GET", "/", "forced.test", &[], None).await;
    assert_eq!(
        (status, location(&headers)),
        (StatusCode::PERMANENT_REDIRECT, "https://forced.test/")
    );

    // HTTPS with SNI: the Secret's certificate, and the pod's answer.
    let https = weir.running.https_addr.expect("an HTTPS listener");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let tcp = TcpStream::connect(https).await.expect("connects");
    let name = rustls::pki_types::ServerName::try_from("secure.test").expect("a name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("a handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec();
    assert_eq!(leaf, cert.der().to_vec(), "the Ingress's Secret");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http/1.1");
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "secure.test")
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let resp = sender.send_request(req).await.expect("an answer");
    assert_eq!(resp.status(), StatusCode::OK, "HTTPS is not redirected");
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    assert_eq!(&body[..], b"a");
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_backend_that_does_not_resolve_answers_503_and_says_why() {
    let a = Backend::start("a").await;
    let config = Config::default().service("a", &[a.addr]).document(ingress(
        "half",
        Some("weir"),
        &[],
        json!({ "rules": [rule("half.test", &[("/ok", "Prefix", "a"), ("/gone", "Prefix", "missing")])] }),
    ));
    let weir = Weir::start(&config).await;
    assert_eq!(get(&weir, "/ok", "half.test").await, ok("a"));
    assert_eq!(
        get(&weir, "/gone", "half.test").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let reported = warnings(&weir, "half");
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].0, IngressWarningReason::BackendNotFound);
    assert!(reported[0].1.contains("test/missing"), "{reported:?}");
    weir.running.shutdown().await;
}

/// A pod that speaks HTTP/2 without TLS only (as gRPC servers do), and answers with the
/// version it was asked in.
async fn h2c_pod() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let answer = format!("{:?}", req.version());
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        answer,
                    ))))
                },
            );
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn backend_protocol_grpc_talks_h2c_to_the_pods() {
    let pod = h2c_pod().await;
    let config = Config::default().service("grpc", &[pod]).document(ingress(
        "grpc",
        Some("weir"),
        &[("backend-protocol", "GRPC")],
        json!({ "rules": [rule("grpc.test", &[("/", "Prefix", "grpc")])] }),
    ));
    let weir = Weir::start(&config).await;
    // An HTTP/1.1 client; weir speaks HTTP/2 to the pod, which knows no other.
    assert_eq!(
        get(&weir, "/helloworld.Greeter/SayHello", "grpc.test").await,
        ok("HTTP/2.0")
    );
    weir.running.shutdown().await;
}

#[tokio::test]
async fn websockets_pass_through_an_ingress_rule() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let pod = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let config = Config::default().service("chat", &[pod]).document(ingress(
        "chat",
        Some("weir"),
        // The common socket.io-style setup: a long read timeout and sticky sessions.
        &[("proxy-read-timeout", "3600"), ("affinity", "cookie")],
        json!({ "rules": [rule("chat.test", &[("/socket", "Prefix", "chat")])] }),
    ));
    let weir = Weir::start(&config).await;
    let stream = TcpStream::connect(weir.running.http_addr)
        .await
        .expect("connects");
    let request = http::Request::get("ws://chat.test/socket/room-1")
        .header("host", "chat.test")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .expect("a request");
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("a WebSocket handshake through the Ingress rule");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..5 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.expect("sent");
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo in time")
            .expect("a message")
            .expect("no error");
        assert_eq!(echo.into_text().expect("text").as_str(), text);
    }
    ws.close(None).await.expect("closed");
    weir.running.shutdown().await;
}
