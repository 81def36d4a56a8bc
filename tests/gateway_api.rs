//! Gateway API in file mode, over real sockets: each Gateway listens on its own address and
//! ports, HTTPRoute rules pick backends by path, header, query and method, filters edit
//! requests and answers, and Gateways come and go without a restart.

mod common;

use common::{Backend, Config, Weir, eventually, get, http1_client};
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use weir::testkit::{gateway, gateway_class, http_listener, http_route, to_document};

/// A port free on `ip` now (bound, then released).
fn free_port_on(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

/// Backends `a` and `b` as Services in namespace `test`, the class, and these objects.
fn config(a: &Backend, b: &Backend, objects: &[String]) -> Config {
    let mut config = Config::default()
        .service("a", &[a.addr])
        .service("b", &[b.addr])
        .document(to_document(&gateway_class()));
    for o in objects {
        config = config.document(o.clone());
    }
    config
}

fn gateway_doc(name: &str, address: &str, listeners: serde_json::Value) -> String {
    to_document(&gateway("test", name, Some(address), listeners))
}

fn route_doc(name: &str, spec: serde_json::Value) -> String {
    to_document(&http_route("test", name, spec))
}

/// Waits until `socket` takes connections (weir binds Gateway sockets after a table swap).
async fn listening(socket: SocketAddr, what: &str) {
    eventually(what, Duration::from_secs(10), async || {
        tokio::net::TcpStream::connect(socket).await.ok()
    })
    .await;
}

/// A request to `socket` with this method, target, Host and headers: status, headers, body.
async fn send(
    socket: SocketAddr,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{socket}{target}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("a request");
    let resp = tokio::time::timeout(Duration::from_secs(10), http1_client().request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Backends `a` and `b` (Services `a` and `b`), a Gateway `gw` with one HTTP listener `web`
/// on a free port of `address`, and one route `name` with this spec: weir started, the
/// Gateway's socket listening.
struct OneGateway {
    b: Backend,
    socket: SocketAddr,
    weir: Weir,
    _a: Backend,
}

async fn one_gateway(address: &str, name: &str, route: serde_json::Value) -> OneGateway {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port_on(ip(address));
    let socket = SocketAddr::new(ip(address), port);
    let objects = [
        gateway_doc("gw", address, json!([http_listener("web", port, None)])),
        route_doc(name, route),
    ];
    let weir = Weir::start(&config(&a, &b, &objects)).await;
    listening(socket, "the Gateway socket listens").await;
    OneGateway {
        b,
        socket,
        weir,
        _a: a,
    }
}

#[tokio::test]
async fn rules_pick_backends_by_path_header_query_and_method_on_the_gateways_own_socket() {
    let body = |r: (StatusCode, http::HeaderMap, String)| (r.0, r.2);
    let ok = |name: &str| (StatusCode::OK, name.to_string());
    let OneGateway { socket, weir, .. } = one_gateway(
        "127.0.0.21",
        "shop",
        json!({
            "parentRefs": [{ "name": "gw" }],
            "hostnames": ["shop.test"],
            "rules": [
                { "backendRefs": [{ "name": "a", "port": 80 }] },
                { "matches": [{ "path": { "type": "Exact", "value": "/exact" } }],
                  "backendRefs": [{ "name": "b", "port": 80 }] },
                { "matches": [{ "headers": [{ "name": "x-canary", "value": "yes" }] }],
                  "backendRefs": [{ "name": "b", "port": 80 }] },
                { "matches": [{ "queryParams": [{ "name": "v", "value": "2" }] }],
                  "backendRefs": [{ "name": "b", "port": 80 }] },
                { "matches": [{ "path": { "value": "/api" }, "method": "POST" }],
                  "backendRefs": [{ "name": "b", "port": 80 }] },
                { "matches": [{ "path": { "value": "/broken" } }],
                  "backendRefs": [{ "name": "no-such-service", "port": 80 }] },
            ],
        }),
    )
    .await;
    assert_eq!(
        body(send(socket, "GET", "/", "shop.test", &[]).await),
        ok("a")
    );
    assert_eq!(
        body(send(socket, "GET", "/exact", "shop.test", &[]).await),
        ok("b")
    );
    assert_eq!(
        body(send(socket, "GET", "/exact/x", "shop.test", &[]).await),
        ok("a")
    );
    assert_eq!(
        body(send(socket, "GET", "/", "shop.test", &[("X-Canary", "yes")]).await),
        ok("b")
    );
    assert_eq!(
        body(send(socket, "GET", "/?v=2", "shop.test", &[]).await),
        ok("b")
    );
    assert_eq!(
        body(send(socket, "GET", "/?v=3", "shop.test", &[]).await),
        ok("a")
    );
    assert_eq!(
        body(send(socket, "POST", "/api/x", "shop.test", &[]).await),
        ok("b")
    );
    assert_eq!(
        body(send(socket, "GET", "/api/x", "shop.test", &[]).await),
        ok("a")
    );
    let (status, _, _) = send(socket, "GET", "/broken", "shop.test", &[]).await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a backend that does not resolve"
    );
    let (status, _, _) = send(socket, "GET", "/", "elsewhere.test", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a host no route names");
    // weir's own listener routes LoadBalancerPools only: the route is not there.
    let (status, _) = get(&http1_client(), &weir.url("/"), "shop.test")
        .await
        .expect("an answer");
    assert_eq!(status, StatusCode::NOT_FOUND);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn filters_edit_headers_redirect_and_rewrite() {
    let OneGateway { b, socket, weir, .. } = one_gateway(
        "127.0.0.22",
        "filters",
        json!({
                    "parentRefs": [{ "name": "gw" }],
                    "rules": [
                        { "matches": [{ "path": { "value": "/headers" } }],
                          "filters": [
                            { "type": "RequestHeaderModifier",
                              "requestHeaderModifier": { "set": [{ "name": "x-set", "value": "by-weir" }],
                                                         "add": [{ "name": "x-added", "value": "1" }],
                                                         "remove": ["x-drop"] } },
                            { "type": "ResponseHeaderModifier",
                              "responseHeaderModifier": { "add": [{ "name": "x-answer", "value": "edited" }] } },
                          ],
                          "backendRefs": [{ "name": "a", "port": 80 }] },
                        { "matches": [{ "path": { "value": "/old" } }],
                          "filters": [{ "type": "RequestRedirect",
                                        "requestRedirect": { "hostname": "new.test", "statusCode": 301 } }] },
                        { "matches": [{ "path": { "value": "/v1" } }],
                          "filters": [{ "type": "URLRewrite",
                                        "urlRewrite": { "hostname": "inner.test",
                                                        "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/headers" } } }],
                          "backendRefs": [{ "name": "b", "port": 80 }] },
                    ],
                }),
    )
    .await;
    let (status, headers, body) = send(
        socket,
        "GET",
        "/headers",
        "f.test",
        &[("x-drop", "x"), ("x-set", "client")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("x-set: by-weir\n"), "{body}");
    assert!(!body.contains("x-set: client"), "{body}");
    assert!(body.contains("x-added: 1\n"), "{body}");
    assert!(!body.contains("x-drop"), "{body}");
    assert_eq!(
        headers.get("x-answer").map(|v| v.as_bytes()),
        Some(&b"edited"[..])
    );

    let (status, headers, _) = send(socket, "GET", "/old/page?q=1", "f.test", &[]).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    let location = headers.get("location").and_then(|v| v.to_str().ok());
    assert_eq!(
        location,
        Some(format!("http://new.test:{}/old/page?q=1", socket.port()).as_str()),
        "the listener's port is kept when the scheme is"
    );

    // /v1 → /headers on b, with the Host rewritten: b echoes what it got.
    let (status, _, body) = send(socket, "GET", "/v1", "f.test", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("host: inner.test\n"), "{body}");
    assert_eq!(b.hits(), 1);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn gateways_come_and_go_without_a_restart_and_never_share_routes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (first_ip, second_ip) = (ip("127.0.0.23"), ip("127.0.0.24"));
    let port = free_port_on(first_ip);
    let first = SocketAddr::new(first_ip, port);
    let second = SocketAddr::new(second_ip, port);
    let to = |gw: &str, backend: &str| {
        route_doc(
            &format!("to-{backend}"),
            json!({ "parentRefs": [{ "name": gw }],
                    "rules": [{ "backendRefs": [{ "name": backend, "port": 80 }] }] }),
        )
    };
    let one = config(
        &a,
        &b,
        &[
            gateway_doc(
                "one",
                "127.0.0.23",
                json!([http_listener("web", port, None)]),
            ),
            to("one", "a"),
        ],
    );
    let weir = Weir::start(&one).await;
    listening(first, "the first Gateway listens").await;
    assert!(tokio::net::TcpStream::connect(second).await.is_err());

    // A second Gateway on the same port of another address, with its own route.
    let two = config(
        &a,
        &b,
        &[
            gateway_doc(
                "one",
                "127.0.0.23",
                json!([http_listener("web", port, None)]),
            ),
            gateway_doc(
                "two",
                "127.0.0.24",
                json!([http_listener("web", port, None)]),
            ),
            to("one", "a"),
            to("two", "b"),
        ],
    );
    weir.feed.send(Arc::new(two.store())).expect("weir follows");
    listening(second, "the second Gateway listens").await;
    let body = |r: (StatusCode, http::HeaderMap, String)| r.2;
    assert_eq!(body(send(first, "GET", "/", "x.test", &[]).await), "a");
    assert_eq!(body(send(second, "GET", "/", "x.test", &[]).await), "b");

    // The first goes; its socket closes, the second keeps serving.
    let only_two = config(
        &a,
        &b,
        &[
            gateway_doc(
                "two",
                "127.0.0.24",
                json!([http_listener("web", port, None)]),
            ),
            to("two", "b"),
        ],
    );
    weir.feed
        .send(Arc::new(only_two.store()))
        .expect("weir follows");
    eventually(
        "the first Gateway's socket closes",
        Duration::from_secs(10),
        async || tokio::net::TcpStream::connect(first).await.err(),
    )
    .await;
    assert_eq!(body(send(second, "GET", "/", "x.test", &[]).await), "b");
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_listener_whose_port_is_taken_leaves_the_others_serving_and_binds_once_free() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let address = ip("127.0.0.25");
    let taken = std::net::TcpListener::bind((address, 0)).expect("a socket to hold");
    let taken_port = taken.local_addr().expect("its address").port();
    let free = free_port_on(address);
    let config = config(
        &a,
        &b,
        &[
            gateway_doc(
                "gw",
                "127.0.0.25",
                json!([
                    http_listener("busy", taken_port, None),
                    http_listener("web", free, None)
                ]),
            ),
            route_doc(
                "all",
                json!({ "parentRefs": [{ "name": "gw" }],
                        "rules": [{ "backendRefs": [{ "name": "a", "port": 80 }] }] }),
            ),
        ],
    );
    let weir = Weir::start(&config).await;
    let serving = SocketAddr::new(address, free);
    listening(serving, "the free listener serves").await;
    assert_eq!(send(serving, "GET", "/", "x.test", &[]).await.2, "a");
    drop(taken);
    let busy = SocketAddr::new(address, taken_port);
    let answer = eventually(
        "the freed port is bound",
        Duration::from_secs(10),
        async || {
            tokio::net::TcpStream::connect(busy).await.ok()?;
            Some(send(busy, "GET", "/", "x.test", &[]).await.2)
        },
    )
    .await;
    assert_eq!(answer, "a");
    weir.running.shutdown().await;
}

/// A self-signed certificate for `host`: (PEM chain, PEM key, DER of the leaf).
fn certificate(host: &str) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec![host.to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("a certificate");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// A TLS handshake to `socket` naming `sni`, offering `alpn`.
async fn tls_connect(
    socket: SocketAddr,
    sni: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(common::AnyCert))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(socket)
        .await
        .expect("a connection");
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("a name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("a handshake")
}

#[tokio::test]
async fn https_listeners_terminate_tls_with_their_own_certificates_by_sni() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let address = ip("127.0.0.26");
    let port = free_port_on(address);
    let socket = SocketAddr::new(address, port);
    let (a_pem, a_key, a_der) = certificate("a.test");
    let (b_pem, b_key, b_der) = certificate("b.test");
    let listener = |name: &str, host: &str, secret: &str| {
        json!({ "name": name, "port": port, "protocol": "HTTPS", "hostname": host,
                "tls": { "certificateRefs": [{ "name": secret }] } })
    };
    let config = config(
        &a,
        &b,
        &[
            to_document(&weir::testkit::tls_secret("test", "a-tls", &a_pem, &a_key)),
            to_document(&weir::testkit::tls_secret("test", "b-tls", &b_pem, &b_key)),
            gateway_doc(
                "tls",
                "127.0.0.26",
                json!([
                    listener("a", "a.test", "a-tls"),
                    listener("b", "b.test", "b-tls")
                ]),
            ),
            route_doc(
                "to-a",
                json!({ "parentRefs": [{ "name": "tls", "sectionName": "a" }],
                        "rules": [{ "backendRefs": [{ "name": "a", "port": 80 }] }] }),
            ),
            route_doc(
                "to-b",
                json!({ "parentRefs": [{ "name": "tls", "sectionName": "b" }],
                        "rules": [{ "backendRefs": [{ "name": "b", "port": 80 }] }] }),
            ),
        ],
    );
    // No HTTPS listener of weir's own: the Gateway socket makes the default certificate itself.
    let weir = Weir::start_with(&config, |o| o.https_addr = None).await;
    listening(socket, "the HTTPS socket listens").await;
    for (host, der, backend) in [("a.test", &a_der, "a"), ("b.test", &b_der, "b")] {
        // HTTP/1.1
        let tls = tls_connect(socket, host, b"http/1.1").await;
        let leaf = tls.get_ref().1.peer_certificates().expect("a chain")[0].to_vec();
        assert_eq!(&leaf, der, "{host}: its listener's certificate");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("HTTP/1.1");
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let resp = sender.send_request(req).await.expect("an answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.expect("a body").to_bytes();
        assert_eq!(&body[..], backend.as_bytes());
        // HTTP/2, the host in the :authority.
        let tls = tls_connect(socket, host, b"h2").await;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .expect("HTTP/2");
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{host}/"))
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let resp = sender.send_request(req).await.expect("an answer");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.expect("a body").to_bytes();
        assert_eq!(&body[..], backend.as_bytes(), "{host} over h2");
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn gateways_without_an_address_take_one_each_from_the_range_weir_was_given() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port_on(ip("127.0.31.1"));
    let to = |gw: &str, backend: &str| {
        route_doc(
            &format!("to-{backend}"),
            json!({ "parentRefs": [{ "name": gw }],
                    "rules": [{ "backendRefs": [{ "name": backend, "port": 80 }] }] }),
        )
    };
    let nameless = |name: &str| {
        to_document(&gateway(
            "test",
            name,
            None,
            json!([http_listener("web", port, None)]),
        ))
    };
    let config = config(
        &a,
        &b,
        &[
            nameless("first"),
            nameless("second"),
            to("first", "a"),
            to("second", "b"),
        ],
    );
    let weir = Weir::start_with(&config, |o| {
        o.gateway_addresses = weir::routing::gateway::GatewayAddresses::Range(
            "127.0.31.0/30".parse().expect("a range"),
        );
    })
    .await;
    let (first, second) = (
        SocketAddr::new(ip("127.0.31.1"), port),
        SocketAddr::new(ip("127.0.31.2"), port),
    );
    for socket in [first, second] {
        listening(socket, "the Gateway listens").await;
    }
    assert_eq!(send(first, "GET", "/", "x.test", &[]).await.2, "a");
    assert_eq!(send(second, "GET", "/", "x.test", &[]).await.2, "b");
    weir.running.shutdown().await;
}

/// An HTTP/2-only (h2c) backend answering as gRPC does: a body naming it and the path it was
/// called on, then `grpc-status: 0` in trailers.
async fn grpc_backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                move |req: http::Request<hyper::body::Incoming>| async move {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let frames = vec![
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(
                            format!("{name} {}", req.uri().path()),
                        ))),
                        Ok(hyper::body::Frame::trailers(trailers)),
                    ];
                    let mut resp = http::Response::new(http_body_util::StreamBody::new(
                        futures_util::stream::iter(frames),
                    ));
                    resp.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                },
            );
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A Service `name` whose one endpoint speaks h2c (`appProtocol: kubernetes.io/h2c`).
fn h2c_service(name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {name}, namespace: test }}\nspec:\n  ports: [{{ name: grpc, port: 50051 }}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: test\n  labels: {{ kubernetes.io/service-name: {name} }}\naddressType: IPv4\nports: [{{ name: grpc, port: {}, appProtocol: kubernetes.io/h2c }}]\nendpoints:\n  - addresses: [\"127.0.0.1\"]\n",
        addr.port()
    )
}

#[tokio::test]
async fn grpc_routes_match_service_and_method_over_h2c() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (one, two) = (grpc_backend("one").await, grpc_backend("two").await);
    let address = ip("127.0.0.27");
    let port = free_port_on(address);
    let socket = SocketAddr::new(address, port);
    let route = to_document(&weir::testkit::grpc_route(
        "test",
        "echo",
        json!({
            "parentRefs": [{ "name": "gw" }],
            "rules": [
                { "matches": [{ "method": { "service": "echo.Echo", "method": "Say" } }],
                  "backendRefs": [{ "name": "one", "port": 50051 }] },
                { "matches": [{ "method": { "service": "echo.Echo" } }],
                  "backendRefs": [{ "name": "two", "port": 50051 }] },
            ],
        }),
    ));
    let config = config(
        &a,
        &b,
        &[
            h2c_service("one", one),
            h2c_service("two", two),
            gateway_doc(
                "gw",
                "127.0.0.27",
                json!([http_listener("grpc", port, None)]),
            ),
            route,
        ],
    );
    let weir = Weir::start(&config).await;
    listening(socket, "the Gateway socket listens").await;
    let tcp = tokio::net::TcpStream::connect(socket)
        .await
        .expect("a connection");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 prior knowledge");
    tokio::spawn(conn);
    for (path, want) in [
        ("/echo.Echo/Say", Some("one /echo.Echo/Say")),
        ("/echo.Echo/Shout", Some("two /echo.Echo/Shout")),
        ("/other.Other/Say", None),
    ] {
        let req = http::Request::post(format!("http://grpc.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .expect("a request");
        let resp = sender.send_request(req).await.expect("an answer");
        let status = resp.status();
        let collected = resp.into_body().collect().await.expect("a body");
        let trailers = collected.trailers().cloned();
        let body = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
        match want {
            Some(want) => {
                assert_eq!((status, body.as_str()), (StatusCode::OK, want));
                let trailers = trailers.expect("trailers");
                assert_eq!(
                    trailers.get("grpc-status").map(|v| v.as_bytes()),
                    Some(&b"0"[..])
                );
            }
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}"),
        }
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn session_persistence_keeps_a_client_on_one_endpoint_with_a_cookie() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let address = ip("127.0.0.28");
    let port = free_port_on(address);
    let socket = SocketAddr::new(address, port);
    let config = Config::default()
        .service("both", &[a.addr, b.addr])
        .document(to_document(&gateway_class()))
        .document(gateway_doc(
            "gw",
            "127.0.0.28",
            json!([http_listener("web", port, None)]),
        ))
        .document(route_doc(
            "sticky",
            json!({ "parentRefs": [{ "name": "gw" }],
                    "rules": [{ "backendRefs": [{ "name": "both", "port": 80 }],
                                "sessionPersistence": { "sessionName": "shop-session",
                                                        "absoluteTimeout": "1h",
                                                        "cookieConfig": { "lifetimeType": "Permanent" } } }] }),
        ));
    let weir = Weir::start(&config).await;
    listening(socket, "the Gateway socket listens").await;
    let (status, headers, first) = send(socket, "GET", "/", "s.test", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("an affinity cookie")
        .to_string();
    assert!(set_cookie.starts_with("shop-session="), "{set_cookie}");
    assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie}");
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    for _ in 0..10 {
        let (_, _, body) = send(socket, "GET", "/", "s.test", &[("cookie", &cookie)]).await;
        assert_eq!(body, first, "the cookie keeps the client on {first}");
    }
    // Without the cookie, round robin reaches the other endpoint too.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(send(socket, "GET", "/", "s.test", &[]).await.2);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    weir.running.shutdown().await;
}

#[tokio::test]
async fn rule_timeouts_answer_504_to_the_millisecond_and_0s_turns_them_off() {
    let rule = |case: &str, timeouts: serde_json::Value| {
        json!({ "matches": [{ "path": { "value": "/slow" },
                              "headers": [{ "name": "x-case", "value": case }] }],
                "backendRefs": [{ "name": "a", "port": 80 }],
                "timeouts": timeouts })
    };
    let OneGateway { socket, weir, .. } = one_gateway(
        "127.0.0.29",
        "timeouts",
        json!({ "parentRefs": [{ "name": "gw" }],
                "rules": [
                    rule("request", json!({ "request": "300ms" })),
                    rule("backend", json!({ "backendRequest": "300ms" })),
                    rule("off", json!({ "request": "0s" })),
                ] }),
    )
    .await;
    // The backend's /slow?ms=N waits N ms; x-case picks the rule.
    let status = |case: &'static str, ms: u32| async move {
        let target = format!("/slow?ms={ms}");
        send(socket, "GET", &target, "t.test", &[("x-case", case)])
            .await
            .0
    };
    assert_eq!(status("request", 10).await, StatusCode::OK);
    assert_eq!(status("request", 1000).await, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(status("backend", 10).await, StatusCode::OK);
    assert_eq!(status("backend", 1000).await, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(status("off", 1000).await, StatusCode::OK);
    weir.running.shutdown().await;
}

// RequestMirror.

/// What a mirror backend got: method, target, headers (one `name: value` a line, sorted) and
/// body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

fn header_lines(headers: &http::HeaderMap) -> Vec<String> {
    let mut lines: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    lines.sort();
    lines
}

/// A backend that records every request whole, and answers each with its name (the main
/// backend) or never (`hang`: it keeps the connection and says nothing).
struct Recorder {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(name: &'static str, hang: bool) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recorder");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec());
                            let seen = Seen {
                                method: parts.method.to_string(),
                                target: parts.uri.to_string(),
                                headers: header_lines(&parts.headers),
                                // A body that broke off is recorded as such, not as what arrived.
                                body: body.unwrap_or_else(|_| b"<broken>".to_vec()),
                            };
                            record.lock().expect("the record").push(seen);
                            if hang {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(name),
                            )))
                        }
                    });
                connections.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Recorder {
            addr,
            seen,
            _task: task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("the record").clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("the record").len()
    }

    /// Waits until `n` requests arrived; returns them.
    async fn wait_for(&self, n: usize) -> Vec<Seen> {
        eventually(
            &format!("{n} requests reach the recorder"),
            Duration::from_secs(10),
            async || (self.count() >= n).then(|| self.seen()),
        )
        .await
    }
}

/// weir with a Gateway `gw` on a free port of `address`, Services `main`, `m1`, `m2` on the
/// recorders given (a missing one has no Service), and one route `name` with this spec.
async fn mirrored(
    address: &str,
    services: &[(&str, SocketAddr)],
    route: serde_json::Value,
) -> (SocketAddr, Weir) {
    let port = free_port_on(ip(address));
    let socket = SocketAddr::new(ip(address), port);
    let mut config = Config::default().document(to_document(&gateway_class()));
    for (name, addr) in services {
        config = config.service(name, &[*addr]);
    }
    config = config
        .document(gateway_doc(
            "gw",
            address,
            json!([http_listener("web", port, None)]),
        ))
        .document(route_doc("mirrored", route));
    let weir = Weir::start(&config).await;
    listening(socket, "the Gateway socket listens").await;
    (socket, weir)
}

/// A request with a body to `socket`: status and answer text.
async fn send_body(
    socket: SocketAddr,
    method: &str,
    target: &str,
    body: impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + Sync + 'static,
) -> (StatusCode, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>(
    );
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{socket}{target}"))
        .header("host", "m.test")
        .body(body.boxed())
        .expect("a request");
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of `weir_mirror_requests_total` for this pool and outcome (0 before any).
async fn mirror_count(weir: &Weir, pool: &str, outcome: &str) -> u64 {
    let (_, text) = get(&http1_client(), &weir.admin_url("/metrics"), "admin")
        .await
        .expect("the metrics");
    let want = format!("weir_mirror_requests_total{{pool=\"{pool}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn mirror_to(service: &str, share: serde_json::Value) -> serde_json::Value {
    let mut filter = json!({ "backendRef": { "name": service, "port": 80 } });
    if let (Some(f), Some(share)) = (filter.as_object_mut(), share.as_object()) {
        f.extend(share.clone());
    }
    json!({ "type": "RequestMirror", "requestMirror": filter })
}

#[tokio::test]
async fn a_mirror_gets_the_request_as_the_backend_does_headers_and_body_included() {
    let main = Recorder::start("main", false).await;
    let m1 = Recorder::start("m1", false).await;
    let m2 = Recorder::start("m2", false).await;
    let (socket, weir) = mirrored(
        "127.0.0.41",
        &[("main", main.addr), ("m1", m1.addr), ("m2", m2.addr)],
        json!({ "parentRefs": [{ "name": "gw" }],
                "rules": [{ "filters": [
                    mirror_to("m1", json!({})),
                    { "type": "RequestHeaderModifier",
                      "requestHeaderModifier": { "set": [{ "name": "x-edited", "value": "yes" }],
                                                 "remove": ["x-drop"] } },
                    { "type": "URLRewrite",
                      "urlRewrite": { "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2" } } },
                    mirror_to("m2", json!({ "percent": 100 })),
                  ],
                  "matches": [{ "path": { "value": "/api" } }],
                  "backendRefs": [{ "name": "main", "port": 80 }] }] }),
    )
    .await;

    let (status, _, text) = send(
        socket,
        "GET",
        "/api/items?q=1",
        "shop.test",
        &[("x-client", "c1"), ("x-drop", "gone")],
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "main"));
    let backend = main.wait_for(1).await.remove(0);
    assert_eq!(backend.target, "/v2/items?q=1");
    assert!(backend.headers.contains(&"x-edited: yes".to_string()));
    assert!(backend.headers.contains(&"host: shop.test".to_string()));
    assert!(!backend.headers.iter().any(|h| h.starts_with("x-drop")));
    // Each mirror got what the backend got: after the rule's filters, with weir's forwarding
    // headers and the request's own Host.
    for mirror in [&m1, &m2] {
        assert_eq!(mirror.wait_for(1).await, vec![backend.clone()]);
    }

    // A small body (read in full for retries) and a larger one with a length (streamed, teed),
    // and one without a length (chunked), each whole at the backend and at both mirrors.
    let small = Bytes::from(vec![b's'; 10 * 1024]);
    let large = Bytes::from(
        (0..300 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let chunks: Vec<Bytes> = (0..40)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; 5000]))
        .collect();
    let chunked = {
        let chunks = chunks.clone();
        http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(hyper::body::Frame::data(c))),
        ))
    };
    assert_eq!(
        send_body(socket, "POST", "/api/small", Full::new(small.clone()))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send_body(socket, "PUT", "/api/large", Full::new(large.clone()))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send_body(socket, "POST", "/api/chunked", chunked).await.0,
        StatusCode::OK
    );
    let whole: Vec<u8> = chunks.concat();
    let backend = main.wait_for(4).await;
    assert_eq!(backend[1].body, small);
    assert_eq!(backend[2].body, large);
    assert_eq!(backend[3].body, whole);
    for mirror in [&m1, &m2] {
        let seen = mirror.wait_for(4).await;
        for (at_mirror, at_backend) in seen.iter().zip(&backend).skip(1) {
            assert_eq!(at_mirror.method, at_backend.method);
            assert_eq!(at_mirror.target, at_backend.target);
            assert_eq!(at_mirror.headers, at_backend.headers);
            assert!(
                at_mirror.body == at_backend.body,
                "{}: the body differs",
                at_mirror.target
            );
        }
    }
    let pool = "test/httproute/mirrored/rule-0/mirror-0";
    eventually(
        "four answered mirrors counted",
        Duration::from_secs(10),
        async || (mirror_count(&weir, pool, "answered").await == 4).then_some(()),
    )
    .await;

    // A streamed body past the mirrors' bound reaches the backend whole; the mirrors are given
    // up and counted, never sent a cut body.
    let huge = Bytes::from(vec![b'h'; 3 * 1024 * 1024]);
    assert_eq!(
        send_body(socket, "POST", "/api/huge", Full::new(huge.clone()))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(main.wait_for(5).await[4].body, huge);
    eventually(
        "the mirror given up is counted",
        Duration::from_secs(10),
        async || (mirror_count(&weir, pool, "abandoned").await == 1).then_some(()),
    )
    .await;
    assert!(m1.seen().iter().all(|s| s.target != "/v2/huge"));
    // Without a length, the copy is given up on the way, once past the bound: it ends in an
    // error, so the mirror never takes what it got for the whole body.
    let long: Vec<Bytes> = (0..24)
        .map(|_| Bytes::from(vec![b'l'; 64 * 1024]))
        .collect();
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(
        long.clone()
            .into_iter()
            .map(|c| Ok(hyper::body::Frame::data(c))),
    ));
    assert_eq!(
        send_body(socket, "POST", "/api/long", stream).await.0,
        StatusCode::OK
    );
    assert_eq!(main.wait_for(6).await[5].body, long.concat());
    eventually(
        "the copy given up on the way is counted",
        Duration::from_secs(10),
        async || (mirror_count(&weir, pool, "abandoned").await == 2).then_some(()),
    )
    .await;
    for s in m1.seen().iter().filter(|s| s.target == "/v2/long") {
        assert_eq!(s.body, b"<broken>", "a cut body taken for a whole one");
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_mirror_that_hangs_or_is_down_never_holds_up_the_client() {
    let main = Recorder::start("main", false).await;
    let hangs = Recorder::start("hangs", true).await;
    // A port nothing listens on: the mirror is down.
    let down = SocketAddr::new(ip("127.0.0.1"), free_port_on(ip("127.0.0.1")));
    let (socket, weir) = mirrored(
        "127.0.0.42",
        &[("main", main.addr), ("m1", hangs.addr), ("m2", down)],
        json!({ "parentRefs": [{ "name": "gw" }],
                "rules": [{ "filters": [mirror_to("m1", json!({})), mirror_to("m2", json!({}))],
                            "backendRefs": [{ "name": "main", "port": 80 }] }] }),
    )
    .await;
    let streamed = Bytes::from(vec![b'b'; 200 * 1024]);
    for i in 0..5 {
        let (status, _, text) = send(socket, "GET", &format!("/get/{i}"), "m.test", &[]).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "main"));
        let (status, text) = send_body(socket, "POST", "/post", Full::new(streamed.clone())).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "main"));
    }
    // Every answer came while the hanging mirror held its copies unanswered.
    let held = hangs.wait_for(10).await;
    assert!(
        held.iter()
            .filter(|s| s.target == "/post")
            .all(|s| s.body == streamed)
    );
    assert_eq!(main.count(), 10);
    eventually(
        "the down mirror's failures are counted",
        Duration::from_secs(10),
        async || {
            (mirror_count(&weir, "test/httproute/mirrored/rule-0/mirror-1", "failed").await == 10)
                .then_some(())
        },
    )
    .await;
    weir.running.shutdown().await;
}

#[tokio::test]
async fn percent_and_fraction_mirror_their_share() {
    let main = Recorder::start("main", false).await;
    let all = Recorder::start("all", false).await;
    let none = Recorder::start("none", false).await;
    let half = Recorder::start("half", false).await;
    let (socket, weir) = mirrored(
        "127.0.0.43",
        &[("main", main.addr), ("all", all.addr), ("none", none.addr), ("half", half.addr)],
        json!({ "parentRefs": [{ "name": "gw" }],
                "rules": [{ "filters": [
                                mirror_to("none", json!({ "percent": 0 })),
                                mirror_to("half", json!({ "fraction": { "numerator": 1, "denominator": 2 } })),
                                mirror_to("all", json!({})),
                            ],
                            "backendRefs": [{ "name": "main", "port": 80 }] }] }),
    )
    .await;
    let n = 400;
    for i in 0..n {
        assert_eq!(
            send(socket, "GET", &format!("/{i}"), "m.test", &[]).await.0,
            StatusCode::OK
        );
    }
    all.wait_for(n).await;
    // Every copy is sent as its request is handled, so once all of the mirror-all's arrived,
    // the others are in too (a moment's grace for the last ones in flight).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(none.count(), 0, "percent 0 mirrored");
    let halved = half.count();
    assert!(
        (130..=270).contains(&halved),
        "1/2 mirrored {halved} of {n}"
    );
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_mirror_backend_that_does_not_resolve_is_dropped_and_the_route_still_serves() {
    let main = Recorder::start("main", false).await;
    let (socket, weir) = mirrored(
        "127.0.0.44",
        &[("main", main.addr)],
        json!({ "parentRefs": [{ "name": "gw" }],
                "rules": [{ "filters": [mirror_to("no-such-service", json!({}))],
                            "backendRefs": [{ "name": "main", "port": 80 }] }] }),
    )
    .await;
    let (status, _, text) = send(socket, "GET", "/", "m.test", &[]).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "main"));
    let statuses = weir.running.admin.gateway_statuses.load();
    let parents = statuses
        .http_routes
        .get(&weir::store::ObjectKey::new("test", "mirrored"))
        .expect("the route's status");
    let conditions: Vec<(&str, &str, &str)> = parents[0]
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "False", "BackendNotFound")
        ]
    );
    assert!(parents[0].conditions[1].message.contains("no-such-service"));
    weir.running.shutdown().await;
}

/// An h2c backend that records each call's version, path and body, and answers as gRPC does.
async fn grpc_recorder() -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<(http::Version, String, Bytes)>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let (version, path) = (req.version(), req.uri().path().to_string());
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        record.lock().expect("the record").push((
                            version,
                            path,
                            body.unwrap_or_default(),
                        ));
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames =
                            vec![Ok::<_, std::convert::Infallible>(
                                hyper::body::Frame::<Bytes>::trailers(trailers),
                            )];
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::StreamBody::new(futures_util::stream::iter(frames)),
                        ))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, calls)
}

#[tokio::test]
async fn a_grpc_route_mirrors_calls_over_h2c() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let one = grpc_backend("one").await;
    let (shadow, calls) = grpc_recorder().await;
    let address = ip("127.0.0.45");
    let port = free_port_on(address);
    let socket = SocketAddr::new(address, port);
    let route = to_document(&weir::testkit::grpc_route(
        "test",
        "echo",
        json!({
            "parentRefs": [{ "name": "gw" }],
            "rules": [{ "filters": [{ "type": "RequestMirror",
                                      "requestMirror": { "backendRef": { "name": "shadow", "port": 50051 } } }],
                        "backendRefs": [{ "name": "one", "port": 50051 }] }],
        }),
    ));
    let config = config(
        &a,
        &b,
        &[
            h2c_service("one", one),
            h2c_service("shadow", shadow),
            gateway_doc(
                "gw",
                "127.0.0.45",
                json!([http_listener("grpc", port, None)]),
            ),
            route,
        ],
    );
    let weir = Weir::start(&config).await;
    listening(socket, "the Gateway socket listens").await;
    let tcp = tokio::net::TcpStream::connect(socket)
        .await
        .expect("a connection");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 prior knowledge");
    tokio::spawn(conn);
    let message = Bytes::from_static(b"\0\0\0\0\x03abc");
    let req = http::Request::post("http://grpc.test/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(message.clone()))
        .expect("a request");
    let resp = sender.send_request(req).await.expect("an answer");
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    assert_eq!(body, "one /echo.Echo/Say");
    let seen = eventually(
        "the call is mirrored",
        Duration::from_secs(10),
        async || calls.lock().expect("the record").first().cloned(),
    )
    .await;
    assert_eq!(
        seen,
        (http::Version::HTTP_2, "/echo.Echo/Say".to_string(), message)
    );
    weir.running.shutdown().await;
}
