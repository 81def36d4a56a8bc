//! Hostile and careless clients: slowloris, oversized and too many headers, smuggling
//! attempts, malformed requests, connection floods, HTTP/2 reset and SETTINGS floods, and
//! what a client may (not) make weir believe: X-Forwarded-For, Host, the admin port.

mod common;

use common::*;
use http::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a raw exchange saw: the bytes weir sent, and whether it closed the connection.
struct Exchange {
    text: String,
    closed: bool,
}

impl Exchange {
    fn status(&self) -> Option<u16> {
        self.text.split(' ').nth(1)?.parse().ok()
    }

    fn responses(&self) -> usize {
        self.text.matches("HTTP/1.1 ").count()
    }
}

/// Sends `bytes`, then reads until weir closes or `wait` passes without it.
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.expect("connect to weir");
    stream.write_all(bytes).await.expect("send");
    read_until_closed(&mut stream, wait).await
}

async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Exchange {
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Exchange {
        text: String::from_utf8_lossy(&got).into_owned(),
        closed,
    }
}

async fn one_pool() -> (Backend, Weir) {
    let b = Backend::start("b").await;
    let config = Config::default()
        .service("svc", &[b.addr])
        .pool("web", "a.test", &[("svc", 1)]);
    let weir = Weir::start(&config).await;
    (b, weir)
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn slowloris_is_cut_off_at_the_header_timeout() {
    let b = Backend::start("b").await;
    let config = Config::default()
        .service("svc", &[b.addr])
        .pool("web", "a.test", &[("svc", 1)]);
    let weir = Weir::start_with(&config, |o| {
        o.limits.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(weir.running.http_addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
        .await
        .expect("send");
    // One header byte every 200 ms: each arrives in time, the whole head never does.
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 512];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a client trickling headers kept its connection for 10 s"
    );
    eprintln!("slowloris cut after {:?}", started.elapsed());
    assert_eq!(b.hits(), 0);

    // An idle keep-alive connection is closed by the same clock.
    let mut idle = TcpStream::connect(weir.running.http_addr)
        .await
        .expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("send");
    let seen = read_until_closed(&mut idle, WAIT).await;
    assert_eq!(seen.status(), Some(200));
    assert!(
        seen.closed,
        "an idle keep-alive connection outlived the header timeout"
    );
}

#[tokio::test]
async fn oversized_heads_and_too_many_headers_get_431() {
    let (b, weir) = one_pool().await;
    let addr = weir.running.http_addr;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let seen = exchange(addr, big.as_bytes(), WAIT).await;
    assert_eq!(seen.status(), Some(431), "{}", seen.text);
    assert!(seen.closed);

    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET / HTTP/1.1\r\nHost: a.test\r\n{many}\r\n");
    let seen = exchange(addr, request.as_bytes(), WAIT).await;
    assert_eq!(seen.status(), Some(431), "{}", seen.text);
    assert!(seen.closed);

    // Just under both limits passes.
    let fine: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n{fine}\r\n");
    let seen = exchange(addr, request.as_bytes(), WAIT).await;
    assert_eq!(seen.status(), Some(200), "{}", seen.text);
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn smuggling_attempts_are_refused_or_defused_and_the_connection_closed() {
    let (b, weir) = one_pool().await;
    let addr = weir.running.http_addr;

    // Two different Content-Lengths: which one frames the body is ambiguous.
    let seen = exchange(
        addr,
        b"POST /count HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcdeGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(seen.status(), Some(400), "{}", seen.text);
    assert!(seen.closed);
    assert_eq!(seen.responses(), 1);

    // An obs-folded header line.
    let seen = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Folded: a\r\n b\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(seen.status(), Some(400), "{}", seen.text);
    assert!(seen.closed);

    // A transfer coding that is not chunked cannot be framed.
    let seen = exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\nxyz",
        WAIT,
    )
    .await;
    assert_eq!(seen.status(), Some(400), "{}", seen.text);
    assert!(seen.closed);
    assert_eq!(b.hits(), 0, "a malformed request reached the pod");

    // Content-Length and Transfer-Encoding together: the body is read as chunked (RFC 9112
    // §6.3), Content-Length is dropped, and the connection closes after the answer, so the
    // bytes after the chunked body are never read as a second request.
    let seen = exchange(
        addr,
        b"POST /count HTTP/1.1\r\nHost: a.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(seen.closed, "the connection stayed open: {}", seen.text);
    assert_eq!(seen.responses(), 1, "{}", seen.text);
    assert_eq!(seen.status(), Some(200), "{}", seen.text);
    assert!(seen.text.ends_with("\r\n\r\n3"), "pod read {}", seen.text);
    assert_eq!(b.hits(), 1, "the smuggled request reached the pod");
}

#[tokio::test]
async fn malformed_requests_get_400_and_never_reach_a_pod() {
    let (b, weir) = one_pool().await;
    let addr = weir.running.http_addr;
    let cases: [&[u8]; 8] = [
        b"G(T / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: a.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nBad Header: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nUser-Agent: no-host\r\n\r\n",
    ];
    for case in cases {
        let seen = exchange(addr, case, WAIT).await;
        let status = seen.status();
        assert!(
            matches!(status, Some(400) | Some(505)),
            "{:?} got {status:?}: {}",
            String::from_utf8_lossy(case),
            seen.text
        );
    }
    assert_eq!(b.hits(), 0);
    // weir still serves.
    let (status, _) = get(&http1_client(), &weir.url("/"), "a.test")
        .await
        .expect("a good request after the bad ones");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_connection_limit_refuses_cleanly_and_frees_slots() {
    let b = Backend::start("b").await;
    let config = Config::default()
        .service("svc", &[b.addr])
        .pool("web", "a.test", &[("svc", 1)]);
    let weir = Weir::start_with(&config, |o| o.limits.max_connections = 20).await;
    let addr = weir.running.http_addr;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .expect("send");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.expect("answer");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let seen = exchange(addr, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", WAIT).await;
    assert_eq!(seen.status(), Some(503), "{}", seen.text);
    assert!(seen.text.contains("too many open client connections"));
    assert!(seen.closed);
    let refused = weir
        .running
        .admin
        .metrics
        .connections_refused
        .get(&weir::metrics::ListenerLabels { listener: "http" })
        .map_or(0, |c| c.get());
    assert_eq!(refused, 1);
    assert_eq!(b.hits(), 20);

    // A closed connection gives its slot back.
    held.truncate(10);
    let mut answered = false;
    for _ in 0..100 {
        let seen = exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
            WAIT,
        )
        .await;
        if seen.status() == Some(200) {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "slots never came back");
}

/// HTTP/2 frames written by hand, so the test can misbehave as no client library would.
mod h2_frames {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    pub fn settings() -> Vec<u8> {
        frame(0x4, 0, 0, &[])
    }

    /// A GET / for a.test: HPACK static-table entries and one literal, no dynamic table.
    pub fn get(stream: u32) -> Vec<u8> {
        let mut block = vec![0x82, 0x86, 0x84, 0x01, 6];
        block.extend_from_slice(b"a.test");
        frame(0x1, 0x5, stream, &block)
    }

    pub fn reset(stream: u32) -> Vec<u8> {
        frame(0x3, 0, stream, &8u32.to_be_bytes())
    }

    /// The frame types in `bytes`, and the error code of a GOAWAY if one came.
    pub fn kinds(bytes: &[u8]) -> (Vec<u8>, Option<u32>) {
        let (mut kinds, mut goaway, mut at) = (Vec::new(), None, 0);
        while at + 9 <= bytes.len() {
            let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
            let kind = bytes[at + 3];
            if kind == 0x7 && at + 9 + 8 <= bytes.len() {
                let p = &bytes[at + 9 + 4..at + 9 + 8];
                goaway = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
            }
            kinds.push(kind);
            at += 9 + len;
        }
        (kinds, goaway)
    }
}

/// A GET / for a.test over a fresh HTTP/2 connection, in hand-made frames (so the request is
/// exactly the one the attacks repeat); true when weir answered 200.
async fn h2_get_ok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut out = h2_frames::PREFACE.to_vec();
    out.extend(h2_frames::settings());
    out.extend(h2_frames::get(1));
    if stream.write_all(&out).await.is_err() {
        return false;
    }
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        // HEADERS on stream 1 whose block starts with the static `:status: 200` (0x88).
        let mut at = 0;
        while at + 9 <= got.len() {
            let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
            if got[at + 3] == 0x1 && got[at + 8] == 1 && got.get(at + 9) == Some(&0x88) {
                return true;
            }
            at += 9 + len;
        }
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    false
}

async fn read_for(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test]
async fn http2_rapid_reset_is_cut_off() {
    let (b, weir) = one_pool().await;
    let mut stream = TcpStream::connect(weir.running.http_addr)
        .await
        .expect("connect");
    let mut out = h2_frames::PREFACE.to_vec();
    out.extend(h2_frames::settings());
    // 2000 streams opened and cancelled at once: the 2023 "rapid reset" pattern.
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        out.extend(h2_frames::get(id));
        out.extend(h2_frames::reset(id));
    }
    // The server may close mid-write; that is the expected outcome, not an error.
    let _ = stream.write_all(&out).await;
    let (bytes, closed) = read_for(&mut stream, WAIT).await;
    let (kinds, goaway) = h2_frames::kinds(&bytes);
    assert!(closed, "the connection survived 2000 resets");
    // ENHANCE_YOUR_CALM (0xb): hyper counts resets before they reach weir.
    assert!(
        goaway == Some(0xb),
        "expected a GOAWAY, got frames {kinds:?} goaway {goaway:?}"
    );
    eprintln!(
        "rapid reset: GOAWAY {goaway:?}; {} of 2000 streams reached the pod",
        b.hits()
    );
    assert!(
        b.hits() < 2000,
        "every cancelled stream was still forwarded"
    );
    assert!(
        h2_get_ok(weir.running.http_addr).await,
        "weir stopped serving HTTP/2 after the attack"
    );
    assert!(b.hits() >= 1);
}

#[tokio::test]
async fn http2_settings_flood_stays_bounded() {
    let (_b, weir) = one_pool().await;
    assert!(
        h2_get_ok(weir.running.http_addr).await,
        "hand-made HTTP/2 GET failed"
    );
    let mut stream = TcpStream::connect(weir.running.http_addr)
        .await
        .expect("connect");
    let mut out = h2_frames::PREFACE.to_vec();
    for _ in 0..20_000 {
        out.extend(h2_frames::settings());
    }
    // A client that never reads its ACKs: weir must stop reading rather than queue them all.
    let write = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&out)).await;
    eprintln!(
        "settings flood: write {}",
        match write {
            Ok(Ok(())) => "completed",
            Ok(Err(_)) => "cut by weir",
            Err(_) => "blocked (weir stopped reading)",
        }
    );
    // Others are served meanwhile.
    assert!(
        h2_get_ok(weir.running.http_addr).await,
        "weir stopped serving HTTP/2 during a SETTINGS flood"
    );
    // Every ACK weir sent answers a SETTINGS it read; it never sends more than it was sent.
    let (bytes, _) = read_for(&mut stream, Duration::from_secs(2)).await;
    let (kinds, _) = h2_frames::kinds(&bytes);
    let acks = kinds.iter().filter(|&&k| k == 0x4).count();
    assert!(acks <= 20_001, "{acks} SETTINGS frames");
}

#[tokio::test]
async fn forwarded_for_is_appended_and_believed_only_from_trusted_proxies() {
    let backends = Backend::start_many(4).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let config = Config::default().service("svc", &addrs).pool_with(
        "web",
        "a.test",
        &[("svc", 1)],
        "  algorithm: ConsistentHash\n  hashOn: { sourceIP: true }\n",
    );
    let client = http1_client();
    let send = |url: String, xff: String| {
        let client = client.clone();
        async move {
            let req = http::Request::get(url)
                .header("host", "a.test")
                .header("x-forwarded-for", xff)
                .header("x-forwarded-proto", "https")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request");
            let resp = client.request(req).await.expect("answer");
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        }
    };

    // The pods that 40 claimed clients land on.
    let spread = async |weir: &Weir| {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..40 {
            seen.insert(send(weir.url("/"), format!("198.51.100.{i}")).await);
        }
        seen
    };

    // No trusted proxies: the claimed client is kept in the chain, but not believed.
    let weir = Weir::start(&config).await;
    let headers = send(weir.url("/headers"), "203.0.113.7".into()).await;
    assert!(
        headers.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\n"),
        "{headers}"
    );
    assert!(headers.contains("x-forwarded-proto: http\n"), "{headers}");
    let seen = spread(&weir).await;
    assert_eq!(
        seen.len(),
        1,
        "an untrusted X-Forwarded-For moved the hash: {seen:?}"
    );
    weir.running.shutdown().await;

    // Loopback trusted: the client behind it decides the hash, and its proto is kept.
    let weir = Weir::start_with(&config, |o| {
        o.forwarding.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    let headers = send(weir.url("/headers"), "203.0.113.7".into()).await;
    assert!(
        headers.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\n"),
        "{headers}"
    );
    assert!(headers.contains("x-forwarded-proto: https\n"), "{headers}");
    let seen = spread(&weir).await;
    assert!(
        seen.len() > 1,
        "the trusted X-Forwarded-For was ignored: {seen:?}"
    );
}

#[tokio::test]
async fn the_host_decides_the_pool_and_the_admin_port_is_not_behind_the_ingress() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = Config::default()
        .service("sa", &[a.addr])
        .service("sb", &[b.addr])
        .pool("pa", "a.test", &[("sa", 1)])
        .pool("pb", "b.test", &[("sb", 1)]);
    let weir = Weir::start(&config).await;
    let addr = weir.running.http_addr;
    // An absolute-form target wins over a Host that disagrees, and the pod sees that host.
    let seen = exchange(
        addr,
        b"GET http://b.test/headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(seen.status(), Some(200), "{}", seen.text);
    assert!(seen.text.contains("host: b.test\n"), "{}", seen.text);
    assert!(!seen.text.contains("host: a.test"), "{}", seen.text);
    assert_eq!((a.hits(), b.hits()), (0, 1));

    // Near misses of a pool's host route nowhere.
    for host in [
        "a.test.evil",
        "xa.test",
        "a.test@b.test",
        "b.test/../a.test",
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let seen = exchange(addr, request.as_bytes(), WAIT).await;
        assert!(
            matches!(seen.status(), Some(404) | Some(400)),
            "{host}: {}",
            seen.text
        );
    }
    // Userinfo in the target is refused, not routed by what follows the `@`.
    let seen = exchange(
        addr,
        b"GET http://user@b.test/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(seen.status(), Some(400), "{}", seen.text);
    // Case and port do not matter.
    let seen = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: A.Test:8080\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(seen.status(), Some(200), "{}", seen.text);
    assert_eq!((a.hits(), b.hits()), (1, 1));

    // The admin endpoints answer only on the admin listener.
    let admin = weir.running.admin_addr;
    for path in ["/metrics", "/pools", "/healthz", "/readyz"] {
        for host in [admin.to_string(), "localhost".to_string(), String::new()] {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let seen = exchange(addr, request.as_bytes(), WAIT).await;
            assert_eq!(
                seen.status(),
                Some(404),
                "{path} via Host {host:?}: {}",
                seen.text
            );
        }
    }
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn via_and_server_headers_are_off_by_default_and_configurable() {
    let (_b, weir) = one_pool().await;
    let seen = exchange(
        weir.running.http_addr,
        b"GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let lower = seen.text.to_ascii_lowercase();
    assert!(!lower.contains("via:"), "{}", seen.text);
    assert!(!lower.contains("server: weir"), "{}", seen.text);

    let b = Backend::start("b").await;
    let config = Config::default()
        .service("svc", &[b.addr])
        .pool("web", "a.test", &[("svc", 1)]);
    let weir = Weir::start_with(&config, |o| {
        o.forwarding.via = true;
        o.forwarding.server = Some(http::HeaderValue::from_static("edge"));
    })
    .await;
    let seen = exchange(
        weir.running.http_addr,
        b"GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let lower = seen.text.to_ascii_lowercase();
    assert!(lower.contains("\r\nvia: 1.1 weir\r\n"), "{}", seen.text);
    assert!(lower.contains("\r\nserver: edge\r\n"), "{}", seen.text);
    // The pod saw the request's Via.
    assert!(lower.contains("\nvia: 1.1 weir\n"), "{}", seen.text);
    // weir's own answers carry the Server header too.
    let seen = exchange(
        weir.running.http_addr,
        b"GET / HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(seen.status(), Some(404));
    assert!(
        seen.text
            .to_ascii_lowercase()
            .contains("\r\nserver: edge\r\n")
    );
}
