//! Real-socket tests of the echo on 127.0.0.1 with free ports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::*;

fn config(env: &[(&str, &str)]) -> EchoConfig {
    let mut map: HashMap<String, String> = [
        ("POD_IP", "127.0.0.1"),
        ("POD_NAME", "echo-pod"),
        ("NAMESPACE", "echo-ns"),
        ("HTTP_PORT", "0"),
        ("H2C_PORT", "0"),
        ("HTTPS_PORT", "0"),
        ("TCP_PORT", "0"),
        ("TLS_PORT", "0"),
        ("UDP_PORT", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in env {
        map.insert(k.to_string(), v.to_string());
    }
    EchoConfig::from_env(|k| map.get(k).cloned(), &[]).unwrap()
}

fn addr(bound: &[(Listener, SocketAddr)], kind: Listener) -> SocketAddr {
    bound.iter().find(|(k, _)| *k == kind).unwrap().1
}

async fn http1(
    addr: SocketAddr,
    req: ::http::Request<Empty<Bytes>>,
) -> (::http::response::Parts, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

fn get(uri: &str, host: &str) -> ::http::Request<Empty<Bytes>> {
    ::http::Request::get(uri)
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}

#[test]
fn config_from_env() {
    let c = config(&[
        ("WEIR_ECHO_PORTS", "8080, 9090"),
        ("TLS_SERVER_CERT", "/c"),
        ("TLS_SERVER_PRIVKEY", "/k"),
        ("HTTP_PORT", "3000"),
        ("HTTPS_PORT", "8443"),
    ]);
    assert_eq!(c.mode, Mode::Http);
    assert_eq!(c.main_port, 3000);
    assert_eq!(c.http_port_text, "3000");
    assert_eq!(
        c.extra_ports.iter().copied().collect::<Vec<_>>(),
        [8080, 9090]
    );
    assert_eq!(c.tls.as_ref().unwrap().key, std::path::PathBuf::from("/k"));
    // gRPC mode reads the other spelling of the key variable.
    let g = config(&[
        ("GRPC_ECHO_SERVER", "1"),
        ("TLS_SERVER_CERT", "/c"),
        ("TLS_SERVER_PRIVKEY", "/k"),
    ]);
    assert_eq!(g.mode, Mode::Grpc);
    assert!(g.tls.is_none());
    let map: HashMap<&str, &str> = [("POD_IP", "10.0.0.1")].into();
    let adv = EchoConfig::from_env(
        |k| map.get(k).map(|v| v.to_string()),
        &[
            "--tcp=9090".into(),
            "--port=8080".into(),
            "--port=8443".into(),
            "--tls=8443".into(),
        ],
    )
    .unwrap();
    assert_eq!(adv.main_port, 3000);
    assert_eq!(adv.extra_ports.iter().copied().collect::<Vec<_>>(), [8080]);
    assert_eq!(adv.bind_ip.to_string(), "10.0.0.1");
}

#[tokio::test]
async fn http1_and_h2c_echo() {
    let c = config(&[("WEIR_ECHO_PORTS", "0")]);
    let bound = start(&c).await.unwrap();
    let main = addr(&bound, Listener::Http);

    let req = ::http::Request::get("/some/path?x=1")
        .header("host", "example.com")
        .header("x-echo-set-header", "X-Foo: bar, X-Foo: baz")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .body(Empty::new())
        .unwrap();
    let (parts, body) = http1(main, req).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "application/json");
    assert_eq!(parts.headers["x-foo"], "bar,baz");
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["path"], "/some/path?x=1");
    assert_eq!(json["host"], "example.com");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["proto"], "HTTP/1.1");
    assert_eq!(json["namespace"], "echo-ns");
    assert_eq!(json["pod"], "echo-pod");
    assert_eq!(json["ingress"], "");
    assert_eq!(json["service"], "");
    assert_eq!(json["httpPort"], "0");
    assert_eq!(json["headers"]["X-Multi"], serde_json::json!(["a", "b"]));
    assert!(json["headers"].get("Host").is_none());
    assert!(json.get("tls").is_none());
    // Go's MarshalIndent with a one-space indent.
    assert!(String::from_utf8_lossy(&body).starts_with("{\n \"path\""));

    // h2c with prior knowledge on the main port.
    let stream = TcpStream::connect(main).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = ::http::Request::get("http://h2.example/h2?y=2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["proto"], "HTTP/2.0");
    assert_eq!(json["host"], "h2.example");
    assert_eq!(json["path"], "/h2?y=2");

    // The H2C port turns HTTP/1.1 away, as echo-basic's does.
    let (parts, body) = http1(addr(&bound, Listener::H2c), get("/", "x")).await;
    assert_eq!(parts.status, 400);
    assert_eq!(&body[..], b"Expected h2c request");
}

#[tokio::test]
async fn routes_status_health_retry_delay() {
    let c = config(&[]);
    let bound = start(&c).await.unwrap();
    let main = addr(&bound, Listener::Http);
    assert_eq!(http1(main, get("/status/503", "x")).await.0.status, 503);
    assert_eq!(http1(main, get("/status/503?x", "x")).await.0.status, 400);
    assert_eq!(http1(main, get("/status/abc", "x")).await.0.status, 400);
    let (parts, body) = http1(main, get("/health", "x")).await;
    assert_eq!((parts.status.as_u16(), &body[..]), (200, &b"OK"[..]));
    let (parts, _) = http1(main, get("/a/../b", "x")).await;
    assert_eq!(parts.status, 301);
    assert_eq!(parts.headers["location"], "/b");
    // "//" is collapsed before routing, as echo-basic's preserveSlashes does.
    let (parts, body) = http1(main, get("//foo", "x")).await;
    assert_eq!(parts.status, 200);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["path"], "//foo");

    let retry = "/retry/?uuid=u1&succeedAfter=2&responseCode=503";
    assert_eq!(http1(main, get(retry, "x")).await.0.status, 503);
    assert_eq!(http1(main, get(retry, "x")).await.0.status, 503);
    assert_eq!(http1(main, get(retry, "x")).await.0.status, 200);
    // Without responseCode the failing attempt is a connection reset.
    let stream = TcpStream::connect(main).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert!(
        sender
            .send_request(get("/retry/?uuid=u2&succeedAfter=1", "x"))
            .await
            .is_err()
    );
    assert_eq!(
        http1(main, get("/retry/?uuid=u2&succeedAfter=1", "x"))
            .await
            .0
            .status,
        200
    );

    let started = std::time::Instant::now();
    assert_eq!(http1(main, get("/?delay=300ms", "x")).await.0.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(http1(main, get("/?delay=bogus", "x")).await.0.status, 500);
}

#[test]
fn go_duration_and_paths() {
    use super::http::{canonical_header, clean_path, parse_go_duration};
    use std::time::Duration;
    assert_eq!(
        parse_go_duration("1.5s").unwrap(),
        Duration::from_millis(1500)
    );
    assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert_eq!(
        parse_go_duration("100ms").unwrap(),
        Duration::from_millis(100)
    );
    assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
    assert!(parse_go_duration("10").is_err());
    assert!(parse_go_duration("x").is_err());
    assert_eq!(clean_path("/a/./b/../c/"), "/a/c/");
    assert_eq!(clean_path("/"), "/");
    assert_eq!(canonical_header("x-forwarded-for"), "X-Forwarded-For");
    assert_eq!(canonical_header("user-agent"), "User-Agent");
}

fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["tls.example.com".into()]).unwrap();
    let crt = dir.join("crt");
    let key = dir.join("key");
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    (crt, key, cert.cert.der().to_vec())
}

fn client_config(ca_der: &[u8], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn tls_connect(
    addr: SocketAddr,
    ca_der: &[u8],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_der, alpn)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("tls.example.com").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn https_echo_reports_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key, der) = certificate(dir.path());
    let c = config(&[
        ("TLS_SERVER_CERT", crt.to_str().unwrap()),
        ("TLS_SERVER_PRIVKEY", key.to_str().unwrap()),
    ]);
    let bound = start(&c).await.unwrap();
    let https = addr(&bound, Listener::Https);

    let tls = tls_connect(https, &der, &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(get("/secure", "tls.example.com"))
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["tls"]["version"], "TLSv1.3");
    assert_eq!(json["tls"]["serverName"], "tls.example.com");
    assert_eq!(json["tls"]["negotiatedProtocol"], "http/1.1");
    assert!(
        json["tls"]["cipherSuite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_")
    );
    assert!(json["tls"].get("peerCertificates").is_none());

    let tls = tls_connect(https, &der, &[b"h2", b"http/1.1"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = ::http::Request::get("https://tls.example.com/h2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let body = sender
        .send_request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["proto"], "HTTP/2.0");
    assert_eq!(json["tls"]["negotiatedProtocol"], "h2");
}

#[tokio::test]
async fn tcp_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key, der) = certificate(dir.path());
    let c = config(&[
        ("TCP_ECHO_SERVER", "1"),
        ("SERVICE_NAME", "tcp-svc"),
        ("TLS_SERVER_CERT", crt.to_str().unwrap()),
        ("TLS_SERVER_PRIV_KEY", key.to_str().unwrap()),
    ]);
    let bound = start(&c).await.unwrap();
    let stream = TcpStream::connect(addr(&bound, Listener::Tcp))
        .await
        .unwrap();
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "Gateway API Test TCP Server"
    );
    write.write_all(b"PING\nIS_TLS\nTEST\n").await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "PONG");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "false");
    let json: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(json["service"], "tcp-svc");
    assert_eq!(json["isTLS"], false);
    assert_eq!(json["tcpport"], "0");

    let tls = tls_connect(addr(&bound, Listener::TcpTls), &der, &[]).await;
    let (read, mut write) = tokio::io::split(tls);
    let mut lines = BufReader::new(read).lines();
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "Gateway API Test TCP Server"
    );
    write.write_all(b"TEST\n").await.unwrap();
    let json: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(json["isTLS"], true);
    assert_eq!(json["tls"]["version"], "TLS 1.3");
    assert_eq!(json["tls"]["serverName"], "tls.example.com");
}

#[tokio::test]
async fn udp_mode() {
    let c = config(&[("UDP_ECHO_SERVER", "1")]);
    let bound = start(&c).await.unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(b"hello", addr(&bound, Listener::Udp))
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).await.unwrap();
    let json: Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(json["request"], "hello");
    assert_eq!(json["pod"], "echo-pod");
}

#[tokio::test]
async fn grpc_mode() {
    let c = config(&[("GRPC_ECHO_SERVER", "1")]);
    let bound = start(&c).await.unwrap();
    let stream = TcpStream::connect(addr(&bound, Listener::Grpc))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let call = |method: &str| {
        ::http::Request::post(format!(
            "http://grpc.example.com/{}/{method}",
            crate::grpc::SERVICE
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-custom", "v")
        .body(Full::new(Bytes::from(crate::grpc::frame(&[]))))
        .unwrap()
    };
    let response = sender.send_request(call("EchoTwo")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/grpc");
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    let body = collected.to_bytes();
    let message = &body[5..];
    let top = crate::grpc::decode_fields(message).unwrap();
    let assertions = crate::grpc::decode_fields(&top[0].1).unwrap();
    let field = |n: u32| -> Vec<Vec<u8>> {
        assertions
            .iter()
            .filter(|(f, _)| *f == n)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(
        field(1)[0],
        format!("/{}/EchoTwo", crate::grpc::SERVICE).into_bytes()
    );
    assert_eq!(field(3)[0], b"grpc.example.com");
    let headers: Vec<(Vec<u8>, Vec<u8>)> = field(2)
        .iter()
        .map(|h| {
            let kv = crate::grpc::decode_fields(h).unwrap();
            (
                kv[0].1.clone(),
                kv.get(1).map(|v| v.1.clone()).unwrap_or_default(),
            )
        })
        .collect();
    assert!(headers.contains(&(b"x-custom".to_vec(), b"v".to_vec())));
    assert!(headers.contains(&(b":authority".to_vec(), b"grpc.example.com".to_vec())));
    assert!(!headers.iter().any(|(k, _)| k == b"te"));
    let context = crate::grpc::decode_fields(&field(4)[0]).unwrap();
    assert!(context.contains(&(1, b"echo-ns".to_vec())));

    let response = sender.send_request(call("EchoThree")).await.unwrap();
    let status = response
        .headers()
        .get("grpc-status")
        .cloned()
        .or_else(|| None);
    let collected = response.into_body().collect().await.unwrap();
    let status = status.or_else(|| {
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status").cloned())
    });
    assert_eq!(status.unwrap(), "12");

    // The gRPC readiness probe works against it.
    assert!(
        crate::probe::attempt(
            &crate::probe::Check::Grpc {
                port: addr(&bound, Listener::Grpc).port(),
                service: String::new()
            },
            "127.0.0.1".parse().unwrap(),
            std::time::Duration::from_secs(2)
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn websocket_echo() {
    let c = config(&[]);
    let bound = start(&c).await.unwrap();
    let mut stream = TcpStream::connect(addr(&bound, Listener::Http))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"));
    assert!(head.contains("s3pplmbitxaq9kygzzhzrbk+xoo="));
    // A masked text frame "hi".
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.unwrap();
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer, [0x81, 2, b'h', b'i']);
}
