//! The proxy over real loopback sockets: routing, balancing, errors, protocols.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use std::collections::HashMap;
use std::time::Duration;

async fn names(client: &HttpClient, weir: &Weir, host: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, body) = get(client, &weir.url("/"), host).await.expect("request");
        assert_eq!(status, StatusCode::OK, "{body}");
        out.push(body);
    }
    out
}

#[tokio::test]
async fn round_robin_visits_each_endpoint_in_turn() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let config = Config::default()
        .service("web", &addrs)
        .pool("web", "shop.test", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let seen = names(&client, &weir, "shop.test", 300).await;
    // Exactly even, and in a fixed rotation.
    for b in &backends {
        assert_eq!(b.hits(), 100, "{} got {}", b.name, b.hits());
    }
    for window in seen.chunks(3) {
        let mut w = window.to_vec();
        w.sort();
        assert_eq!(w, ["a", "b", "c"]);
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_ninety_ten_split_is_exact_over_every_hundred_requests() {
    let stable = [Backend::start("v1-a").await, Backend::start("v1-b").await];
    let canary = Backend::start("v2").await;
    let config = Config::default()
        .service("v1", &[stable[0].addr, stable[1].addr])
        .service("v2", &[canary.addr])
        .pool("web", "shop.test", &[("v1", 90), ("v2", 10)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for _ in 0..5 {
        let seen = names(&client, &weir, "shop.test", 100).await;
        let v2 = seen.iter().filter(|n| *n == "v2").count();
        assert_eq!(v2, 10, "one hundred requests sent {v2} to v2");
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn errors_are_short_plain_answers_with_the_right_status() {
    let up = Backend::start("up").await;
    let slow = Backend::start("slow").await;
    let closed: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = Config::default()
        .service("up", &[up.addr])
        .service("down", &[closed])
        .service_endpoints("unready", &[endpoint(up.addr, EndpointState::NotReady)])
        .service("slow", &[slow.addr])
        .pool("up", "up.test", &[("up", 1)])
        .pool("down", "down.test", &[("down", 1)])
        .pool("unready", "unready.test", &[("unready", 1)])
        .pool_with(
            "slow",
            "slow.test",
            &[("slow", 1)],
            "  timeouts: { requestSeconds: 1 }\n",
        );
    let weir = Weir::start(&config).await;
    let client = http1_client();

    let (status, body) = get(&client, &weir.url("/"), "nowhere.test").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no route for this host and path\n");

    let (status, body) = get(&client, &weir.url("/"), "unready.test").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "no healthy endpoints in pool test/unready\n");

    let (status, body) = get(&client, &weir.url("/"), "down.test").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("cannot connect"), "{body}");

    let (status, body) = get(&client, &weir.url("/slow?ms=3000"), "slow.test")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("did not answer"), "{body}");

    // The healthy pool is untouched by its neighbours.
    assert_eq!(
        get(&client, &weir.url("/"), "up.test").await.unwrap(),
        (StatusCode::OK, "up".into())
    );
    let metrics = get(&client, &weir.admin_url("/metrics"), "admin")
        .await
        .unwrap()
        .1;
    for line in [
        r#"weir_requests_total{pool="",method="GET",status="4xx"} 1"#,
        r#"weir_requests_total{pool="test/unready",method="GET",status="5xx"} 1"#,
        r#"weir_requests_total{pool="test/down",method="GET",status="5xx"} 1"#,
        r#"weir_requests_total{pool="test/slow",method="GET",status="5xx"} 1"#,
        r#"weir_requests_total{pool="test/up",method="GET",status="2xx"} 1"#,
        r#"weir_upstream_connect_errors_total{pool="test/down"} 1"#,
        r#"weir_upstream_timeouts_total{pool="test/slow"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_ones_dropped() {
    let b = Backend::start("b").await;
    let config =
        Config::default()
            .service("web", &[b.addr])
            .pool("web", "shop.test", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let req = http::Request::get(weir.url("/headers"))
        .header("host", "Shop.test:8080")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-app", "kept")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("response");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: HashMap<String, String> = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "Shop.test:8080");
    assert_eq!(seen["host"], "Shop.test:8080");
    assert_eq!(seen["x-app"], "kept");
    assert!(!seen.contains_key("x-private"));
    assert!(!seen.contains_key("proxy-authorization"));
    weir.running.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let b = Backend::start("h2-backend").await;
    let config = Config::default()
        .service("web", &[b.addr])
        .pool("web", "", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    let client = http2_client();
    let req = http::Request::get(weir.url("/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("h2 response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"h2-backend");
    // Many streams on the one connection.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, url) = (client.clone(), weir.url("/"));
        tasks.push(tokio::spawn(async move { get(&client, &url, "").await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().0, StatusCode::OK);
    }
    assert_eq!(b.hits(), 51);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn websockets_pass_through() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    let config = Config::default()
        .service("ws", &[ws_addr])
        .pool("ws", "ws.test", &[("ws", 1)]);
    let weir = Weir::start(&config).await;
    let stream = tokio::net::TcpStream::connect(weir.running.http_addr)
        .await
        .unwrap();
    let request = http::Request::get("ws://ws.test/chat")
        .header("host", "ws.test")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("websocket handshake through weir");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..20 {
        let text = format!("message {i}");
        ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
            .await
            .unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("no error");
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
    weir.running.shutdown().await;
}

/// A bare HTTP/1.1 pod: answers `ok` to each request head, keeps the connection open for
/// `per_connection` answers and then closes it without notice (as a pod whose keep-alive
/// timeout ran out). Counts connections accepted, and connections weir closed.
struct CountingPod {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    closed_by_weir: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingPod {
    async fn start(per_connection: usize) -> CountingPod {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed_by_weir = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed_by_weir.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut answered = 0;
                    while answered < per_connection {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => {
                                c.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            answered += 1;
                        }
                    }
                });
            }
        });
        CountingPod {
            addr,
            accepted,
            closed_by_weir,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn closed_by_weir(&self) -> usize {
        self.closed_by_weir
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn upstream_connections_are_reused_then_closed_after_the_idle_timeout() {
    let pod = CountingPod::start(usize::MAX).await;
    let config = Config::default().service("web", &[pod.addr]).pool_with(
        "web",
        "shop.test",
        &[("web", 1)],
        "  timeouts: { idleSeconds: 1 }\n",
    );
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let seen = names(&client, &weir, "shop.test", 50).await;
    assert!(seen.iter().all(|body| body == "ok"), "{seen:?}");
    assert_eq!(
        pod.accepted(),
        1,
        "50 requests in a row share one connection"
    );
    assert_eq!(pod.closed_by_weir(), 0);
    // Idle for a second, the connection goes (the sweep runs every second).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pod.closed_by_weir() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pod.closed_by_weir(), 1, "the idle connection was closed");
    let (status, _) = get(&client, &weir.url("/"), "shop.test")
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        pod.accepted(),
        2,
        "a new connection after the idle one closed"
    );
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_connection_the_pod_closed_while_idle_is_not_an_error() {
    // One answer per connection, then a silent close: each kept connection goes stale.
    let pod = CountingPod::start(1).await;
    let config = Config::default().service("web", &[pod.addr]).pool_with(
        "web",
        "shop.test",
        &[("web", 1)],
        "  retries: { attempts: 0 }\n",
    );
    let weir = Weir::start(&config).await;
    let client = http1_client();
    for _ in 0..20 {
        assert_eq!(names(&client, &weir, "shop.test", 1).await, ["ok"]);
        // Let the pod's close arrive, as it would between two requests minutes apart.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pod.accepted(), 20);
    weir.running.shutdown().await;
}
