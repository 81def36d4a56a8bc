//! TLS termination with real handshakes and certificates made in the test.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate for `hosts`: (PEM chain, PEM key, DER of the leaf).
struct Cert {
    pem: String,
    key: String,
    der: Vec<u8>,
}

fn cert(hosts: &[&str]) -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    let c = params.self_signed(&key).unwrap();
    Cert {
        pem: c.pem(),
        key: key.serialize_pem(),
        der: c.der().to_vec(),
    }
}

fn secret_yaml(name: &str, crt: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: test }}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(crt),
        b64(key)
    )
}

/// The pool YAML (as `Config` writes it) with a `tls:` block.
fn tls_pool(config: Config, pool: &str, host: &str, secret: &str, extra: &str) -> Config {
    config.pool_with(
        pool,
        host,
        &[("web", 1)],
        &format!("  tls: {{ secretName: {secret}{extra} }}\n"),
    )
}

fn store_of(config: &Config, secrets: &[String]) -> weir::store::Store {
    let mut yaml = config.yaml();
    for s in secrets {
        yaml.push_str("---\n");
        yaml.push_str(s);
    }
    weir::source::file::parse("test.yaml", &yaml).expect("parses")
}

/// weir with one pool on a.test over `b`, its certificate `a`.
async fn start_a_test(b: &Backend, a: &Cert) -> Weir {
    let config = tls_pool(
        Config::default().service("web", &[b.addr]),
        "a",
        "a.test",
        "a-tls",
        "",
    );
    start(&config, &[secret_yaml("a-tls", &a.pem, &a.key)]).await
}

async fn start(config: &Config, secrets: &[String]) -> Weir {
    let weir = Weir::start(&Config::default()).await;
    weir.feed.send(Arc::new(store_of(config, secrets))).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    weir
}

fn connector(
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to weir; `sni` None connects by IP, which sends no SNI.
async fn handshake(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = match sni {
        Some(h) => ServerName::try_from(h.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    connector(alpn, &[&rustls::version::TLS13, &rustls::version::TLS12])
        .connect(name, tcp)
        .await
}

fn leaf(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

/// One HTTP/1.1 GET over a TLS stream.
async fn get_over(tls: TlsStream<TcpStream>, host: &str, path: &str) -> (StatusCode, String) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default() {
    let b = Backend::start("b").await;
    let (a, bb, w) = (cert(&["a.test"]), cert(&["b.test"]), cert(&["*.wild.test"]));
    let config = Config::default().service("web", &[b.addr]);
    let config = tls_pool(config, "a", "a.test", "a-tls", "");
    let config = tls_pool(config, "b", "b.test", "b-tls", "");
    let config = tls_pool(config, "w", "*.wild.test", "w-tls", "");
    let secrets = [
        secret_yaml("a-tls", &a.pem, &a.key),
        secret_yaml("b-tls", &bb.pem, &bb.key),
        secret_yaml("w-tls", &w.pem, &w.key),
    ];
    let weir = start(&config, &secrets).await;
    let https = weir.running.https_addr.expect("https listener");
    let alpn: &[&[u8]] = &[b"http/1.1"];
    assert_eq!(
        leaf(&handshake(https, Some("a.test"), alpn).await.unwrap()),
        a.der
    );
    assert_eq!(
        leaf(&handshake(https, Some("b.test"), alpn).await.unwrap()),
        bb.der
    );
    assert_eq!(
        leaf(&handshake(https, Some("x.wild.test"), alpn).await.unwrap()),
        w.der
    );
    assert_eq!(
        leaf(&handshake(https, Some("A.Test"), alpn).await.unwrap()),
        a.der
    );
    for sni in [None, Some("unknown.test"), Some("y.x.wild.test")] {
        let got = leaf(&handshake(https, sni, alpn).await.unwrap());
        assert!(
            got != a.der && got != bb.der && got != w.der,
            "{sni:?} got a pool's certificate"
        );
    }
    // And the request is served, with X-Forwarded-Proto https.
    let tls = handshake(https, Some("a.test"), alpn).await.unwrap();
    let (status, headers) = get_over(tls, "a.test", "/headers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers.lines().any(|l| l == "x-forwarded-proto: https"),
        "{headers}"
    );
    weir.running.shutdown().await;
}

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let b = Backend::start("b").await;
    let a = cert(&["a.test"]);
    let weir = start_a_test(&b, &a).await;
    let https = weir.running.https_addr.unwrap();

    let tls = handshake(https, Some("a.test"), &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://a.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(
        (resp.status(), resp.version()),
        (StatusCode::OK, http::Version::HTTP_2)
    );

    let tls = handshake(https, Some("a.test"), &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        get_over(tls, "a.test", "/").await,
        (StatusCode::OK, "b".into())
    );
    // No ALPN at all: HTTP/1.1.
    let tls = handshake(https, Some("a.test"), &[]).await.unwrap();
    assert_eq!(
        get_over(tls, "a.test", "/").await,
        (StatusCode::OK, "b".into())
    );
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_serves_new_handshakes_without_dropping_anything() {
    let b = Backend::start("b").await;
    let (old, new) = (cert(&["a.test"]), cert(&["a.test"]));
    let config = tls_pool(
        Config::default().service("web", &[b.addr]),
        "a",
        "a.test",
        "a-tls",
        "",
    );
    let weir = start(&config, &[secret_yaml("a-tls", &old.pem, &old.key)]).await;
    let https = weir.running.https_addr.unwrap();
    // An HTTP/2 connection opened before the rotation.
    let tls = handshake(https, Some("a.test"), &[b"h2"]).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, saw_new) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let new_der = new.der.clone();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, ok, failed, saw_new, new_der) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            saw_new.clone(),
            new_der.clone(),
        );
        clients.push(tokio::spawn(async move {
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A new handshake every request.
                match handshake(https, Some("a.test"), &[b"http/1.1"]).await {
                    Ok(tls) => {
                        if leaf(&tls) == new_der {
                            saw_new.store(true, Ordering::Relaxed);
                        }
                        match get_over(tls, "a.test", "/").await {
                            (StatusCode::OK, _) => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    weir.feed
        .send(Arc::new(store_of(
            &config,
            &[secret_yaml("a-tls", &new.pem, &new.key)],
        )))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    eprintln!(
        "{} ok, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        saw_new.load(Ordering::Relaxed),
        "no handshake saw the new certificate"
    );
    assert_eq!(
        leaf(&handshake(https, Some("a.test"), &[]).await.unwrap()),
        new.der
    );
    // The HTTP/2 connection from before still works.
    let req = http::Request::get("https://a.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), StatusCode::OK);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_bad_secret_says_why_and_the_old_certificate_keeps_serving() {
    let b = Backend::start("b").await;
    let good = cert(&["a.test"]);
    let other = cert(&["a.test"]);
    let config = tls_pool(
        Config::default().service("web", &[b.addr]),
        "a",
        "a.test",
        "a-tls",
        "",
    );
    let weir = start(&config, &[secret_yaml("a-tls", &good.pem, &good.key)]).await;
    let https = weir.running.https_addr.unwrap();
    let bad = [
        (secret_yaml("a-tls", "garbage", &good.key), "no certificate"),
        (
            secret_yaml("a-tls", &good.pem, &other.key),
            "does not match",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: { name: a-tls, namespace: test }\ndata: {}\n"
                .to_string(),
            "no tls.crt",
        ),
    ];
    for (secret, why) in bad {
        weir.feed
            .send(Arc::new(store_of(&config, &[secret])))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let status = weir.status("a").expect("status");
        let refs = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .unwrap();
        assert_eq!(
            (refs.status.as_str(), refs.reason.as_str()),
            ("False", "InvalidSecret")
        );
        assert!(
            refs.message.contains(why) && refs.message.contains("test/a-tls"),
            "{}",
            refs.message
        );
        assert!(
            refs.message.contains("previous certificate keeps serving"),
            "{}",
            refs.message
        );
        assert_eq!(
            leaf(&handshake(https, Some("a.test"), &[]).await.unwrap()),
            good.der
        );
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn redirect_http_answers_308_and_https_gets_hsts() {
    let b = Backend::start("b").await;
    let a = cert(&["a.test"]);
    let config = tls_pool(
        Config::default().service("web", &[b.addr]),
        "a",
        "a.test",
        "a-tls",
        ", redirectHttp: true, hsts: { maxAgeSeconds: 600, includeSubDomains: true }",
    );
    let weir = start(&config, &[secret_yaml("a-tls", &a.pem, &a.key)]).await;
    let client = http1_client();
    let req = http::Request::get(weir.url("/cart?item=1&q=%20x"))
        .header("host", "a.test:8080")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        resp.headers()["location"],
        "https://a.test/cart?item=1&q=%20x"
    );
    assert_eq!(b.hits(), 0);
    let tls = handshake(weir.running.https_addr.unwrap(), Some("a.test"), &[])
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "a.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=600; includeSubDomains"
    );
    weir.running.shutdown().await;
}

#[tokio::test]
async fn grpc_style_h2c_upstream_with_trailers_through_tls_h2() {
    // An HTTP/2-only backend that answers with a body and trailers, as gRPC does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let te = req
                        .headers()
                        .get("te")
                        .map(|v| v.to_str().unwrap_or("").to_string());
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    trailers.insert(
                        "grpc-message",
                        format!("te={}", te.unwrap_or_default()).parse().unwrap(),
                    );
                    let frames = vec![
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(
                            [b"echo:".as_slice(), &body].concat(),
                        ))),
                        Ok(hyper::body::Frame::trailers(trailers)),
                    ];
                    let mut resp = http::Response::new(http_body_util::StreamBody::new(
                        futures_util::stream::iter(frames),
                    ));
                    resp.headers_mut()
                        .insert("content-type", "application/grpc".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(resp)
                },
            );
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let a = cert(&["grpc.test"]);
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: grpc, namespace: test }}\nspec:\n  ports: [{{ name: grpc, port: 50051 }}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: grpc-1\n  namespace: test\n  labels: {{ kubernetes.io/service-name: grpc }}\naddressType: IPv4\nports: [{{ name: grpc, port: {}, appProtocol: kubernetes.io/h2c }}]\nendpoints:\n  - addresses: [\"127.0.0.1\"]\n---\napiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{ name: grpc, namespace: test }}\nspec:\n  routes: [{{ host: grpc.test }}]\n  backends: [{{ service: grpc, port: grpc }}]\n  tls: {{ secretName: grpc-tls }}\n---\n{}",
        addr.port(),
        secret_yaml("grpc-tls", &a.pem, &a.key)
    );
    let weir = Weir::start(&Config::default()).await;
    weir.feed
        .send(Arc::new(
            weir::source::file::parse("grpc.yaml", &yaml).unwrap(),
        ))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tls = handshake(
        weir.running.https_addr.unwrap(),
        Some("grpc.test"),
        &[b"h2"],
    )
    .await
    .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..5 {
        let req = http::Request::post("https://grpc.test/echo.Echo/Say")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(format!("hello {i}"))))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected
            .trailers()
            .cloned()
            .expect("trailers passed through");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "te=trailers");
        assert_eq!(collected.to_bytes(), format!("echo:hello {i}"));
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn tls_12_works_and_tls_11_and_older_are_refused() {
    let b = Backend::start("b").await;
    let a = cert(&["a.test"]);
    let weir = start_a_test(&b, &a).await;
    let https = weir.running.https_addr.unwrap();
    let tcp = TcpStream::connect(https).await.unwrap();
    let tls12 = connector(&[], &[&rustls::version::TLS12])
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .expect("TLS 1.2 handshake");
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    for version in [[3u8, 2u8], [3, 1]] {
        // A ClientHello that offers only TLS 1.1 (or 1.0): no supported_versions extension.
        let mut hello = vec![version[0], version[1]];
        hello.extend([7u8; 32]); // random
        hello.push(0); // session id
        hello.extend([0, 4, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
        hello.extend([1, 0]); // no compression
        let mut handshake_msg = vec![1u8, 0, (hello.len() >> 8) as u8, hello.len() as u8];
        handshake_msg.extend(&hello);
        let mut record = vec![
            0x16,
            3,
            1,
            (handshake_msg.len() >> 8) as u8,
            handshake_msg.len() as u8,
        ];
        record.extend(&handshake_msg);
        let mut tcp = TcpStream::connect(https).await.unwrap();
        tcp.write_all(&record).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        // A fatal alert record, and the connection closed: no ServerHello.
        assert!(answer.len() >= 7, "answer {answer:?}");
        assert_eq!(answer[0], 0x15, "an alert, not a handshake: {answer:?}");
        assert_eq!(answer[5], 2, "a fatal alert");
        assert!(
            [70u8, 40].contains(&answer[6]),
            "protocol_version or handshake_failure: {answer:?}"
        );
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn the_server_order_picks_the_cipher_suite() {
    let b = Backend::start("b").await;
    let a = cert(&["a.test"]);
    let weir = start_a_test(&b, &a).await;
    let https = weir.running.https_addr.unwrap();
    // A client that lists ChaCha20 first: weir's own order (AES-GCM before ChaCha20) decides.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ];
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let tcp = TcpStream::connect(https).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .expect("a handshake");
    let suite = tls.get_ref().1.negotiated_cipher_suite().expect("a suite");
    assert_eq!(
        suite.suite(),
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
        "the client's first choice won"
    );
    weir.running.shutdown().await;
}
