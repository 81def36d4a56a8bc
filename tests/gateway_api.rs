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
