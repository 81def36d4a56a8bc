//! Cookie session affinity over real sockets.

mod common;

use common::*;
use http::StatusCode;
use http_body_util::BodyExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const AFFINITY: &str = "  sessionAffinity:\n    cookie: { name: sticky }\n";

struct Answer {
    status: StatusCode,
    body: String,
    set_cookie: Option<String>,
}

impl Answer {
    /// The cookie value weir set, if it set one.
    fn value(&self) -> Option<String> {
        let sc = self.set_cookie.as_ref()?;
        let first = sc.split(';').next()?;
        Some(first.split_once('=')?.1.to_string())
    }
}

async fn request(client: &HttpClient, url: &str, host: &str, cookie: Option<&[u8]>) -> Answer {
    let mut req = http::Request::get(url).header("host", host);
    if let Some(c) = cookie {
        req = req.header(
            "cookie",
            http::HeaderValue::from_bytes(c).expect("cookie header"),
        );
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("response");
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
    }
}

/// weir with one pool (any host) over `addrs`, with cookie affinity.
async fn start_affine(addrs: &[std::net::SocketAddr]) -> Weir {
    let config =
        Config::default()
            .service("web", addrs)
            .pool_with("web", "", &[("web", 1)], AFFINITY);
    Weir::start(&config).await
}

fn sticky(value: &str) -> Vec<u8> {
    format!("theme=dark; sticky={value}").into_bytes()
}

#[tokio::test]
async fn a_cookie_keeps_its_client_on_one_endpoint_and_clients_without_spread() {
    let bs = Backend::start_many(3).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let weir = start_affine(&addrs).await;
    let client = http1_client();
    let first = request(&client, &weir.url("/"), "x", None).await;
    let value = first.value().expect("the first answer sets the cookie");
    for _ in 0..200 {
        let a = request(&client, &weir.url("/"), "x", Some(&sticky(&value))).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::OK, first.body.as_str())
        );
        assert_eq!(a.set_cookie, None, "a valid cookie is not set again");
    }
    let mut spread = HashSet::new();
    for _ in 0..6 {
        spread.insert(request(&client, &weir.url("/"), "x", None).await.body);
    }
    assert_eq!(spread.len(), 3);
    // An unrelated pool appears: the table is rebuilt, the session stays.
    let other = Backend::start("other").await;
    let bigger = Config::default()
        .service("web", &addrs)
        .pool_with("web", "", &[("web", 1)], AFFINITY)
        .service("other", &[other.addr])
        .pool("other", "other.test", &[("other", 1)]);
    weir.feed.send(Arc::new(bigger.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = request(&client, &weir.url("/"), "x", Some(&sticky(&value))).await;
    assert_eq!((a.body.as_str(), a.set_cookie), (first.body.as_str(), None));
    weir.running.shutdown().await;
}

#[tokio::test]
async fn scaling_up_moves_no_session() {
    let bs = Backend::start_many(6).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let three =
        Config::default()
            .service("web", &addrs[..3])
            .pool_with("web", "", &[("web", 1)], AFFINITY);
    let weir = Weir::start(&three).await;
    let client = http1_client();
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let a = request(&client, &weir.url("/"), "x", None).await;
        sessions.push((a.value().expect("cookie"), a.body));
    }
    let six =
        Config::default()
            .service("web", &addrs)
            .pool_with("web", "", &[("web", 1)], AFFINITY);
    weir.feed.send(Arc::new(six.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (value, endpoint) in &sessions {
        let a = request(&client, &weir.url("/"), "x", Some(&sticky(value))).await;
        assert_eq!(&a.body, endpoint);
        assert_eq!(a.set_cookie, None);
    }
    // New clients do reach the new endpoints.
    let mut seen = HashSet::new();
    for _ in 0..12 {
        seen.insert(request(&client, &weir.url("/"), "x", None).await.body);
    }
    assert_eq!(seen.len(), 6);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_dead_pinned_endpoint_moves_the_session_and_reissues_the_cookie() {
    let bs = Backend::start_many(3).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let weir = start_affine(&addrs).await;
    let client = http1_client();
    let first = request(&client, &weir.url("/"), "x", None).await;
    let old_value = first.value().unwrap();
    let pinned = bs.iter().find(|b| b.name == first.body).unwrap();
    pinned.stop();
    let moved = request(&client, &weir.url("/"), "x", Some(&sticky(&old_value))).await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_ne!(moved.body, first.body);
    let new_value = moved.value().expect("a new cookie for the new endpoint");
    assert_ne!(new_value, old_value);
    for _ in 0..20 {
        let a = request(&client, &weir.url("/"), "x", Some(&sticky(&new_value))).await;
        assert_eq!(a.body, moved.body);
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn tampered_cookies_are_ignored_and_replaced() {
    let bs = Backend::start_many(2).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let config = Config::default()
        .service("web", &addrs)
        .pool_with("web", "web.test", &[("web", 1)], AFFINITY)
        .pool_with("other", "other.test", &[("web", 1)], AFFINITY);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let good = request(&client, &weir.url("/"), "web.test", None)
        .await
        .value()
        .unwrap();
    let other_pool = request(&client, &weir.url("/"), "other.test", None)
        .await
        .value()
        .unwrap();
    let mut flipped = good.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let huge = "A".repeat(10 * 1024);
    let cookies: Vec<Vec<u8>> = vec![
        sticky(&flipped),
        sticky(&other_pool),
        sticky(&huge),
        [b"sticky=".as_slice(), &[0xff, 0xfe, 0x80, 0xc3, 0x28]].concat(),
        b"sticky=".to_vec(),
        b"sticky".to_vec(),
        b"sticky=====; =; ;;".to_vec(),
        sticky(&good[..good.len() - 1]),
    ];
    for (i, c) in cookies.iter().enumerate() {
        let a = request(&client, &weir.url("/"), "web.test", Some(c)).await;
        assert_eq!(a.status, StatusCode::OK, "cookie {i}");
        let fresh = a
            .value()
            .unwrap_or_else(|| panic!("cookie {i}: no fresh cookie"));
        assert_eq!(fresh.len(), good.len());
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn the_cookie_reveals_no_address() {
    let bs = Backend::start_many(3).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let weir = start_affine(&addrs).await;
    let client = http1_client();
    use base64::Engine;
    for _ in 0..3 {
        let a = request(&client, &weir.url("/"), "x", None).await;
        let value = a.value().unwrap();
        let addr = bs.iter().find(|b| b.name == a.body).unwrap().addr;
        let ip = addr.ip().to_string();
        let port = addr.port().to_string();
        let octets = [127u8, 0, 0, 1];
        let port_bytes = addr.port().to_be_bytes();
        let hex_ip = "7f000001";
        let hex_port = format!("{:04x}", addr.port());
        let as_text = addr.to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&as_text);
        let b64_url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&as_text);
        let lower = value.to_ascii_lowercase();
        for needle in [&ip, &port, &as_text, hex_ip, &hex_port, &b64, &b64_url] {
            assert!(
                !lower.contains(&needle.to_ascii_lowercase()),
                "{value} contains {needle}"
            );
        }
        for engine in [
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            if let Ok(raw) = engine.decode(&value) {
                assert!(
                    !raw.windows(4).any(|w| w == octets),
                    "decoded cookie holds the IP"
                );
                let packed = [&octets[..], &port_bytes[..]].concat();
                assert!(
                    !raw.windows(6).any(|w| w == packed),
                    "decoded cookie holds the address"
                );
                let text = String::from_utf8_lossy(&raw);
                assert!(!text.contains(&ip) && !text.contains(&port));
            }
        }
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn set_cookie_attributes_are_exactly_as_configured() {
    let b = Backend::start("b").await;
    let spec = "  sessionAffinity:\n    cookie: { name: route, ttlSeconds: 120, path: /app, domain: example.com, httpOnly: false, sameSite: None }\n";
    let weir = Weir::start(&Config::default().service("web", &[b.addr]).pool_with(
        "web",
        "",
        &[("web", 1)],
        spec,
    ))
    .await;
    let a = request(&http1_client(), &weir.url("/app"), "x", None).await;
    let sc = a.set_cookie.expect("Set-Cookie");
    let mut parts = sc.split("; ");
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    assert_eq!(name, "route");
    assert_eq!(value.len(), 22);
    let attrs: HashMap<String, String> = parts
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => (p.to_ascii_lowercase(), String::new()),
        })
        .collect();
    let expected: HashMap<String, String> = [
        ("path", "/app"),
        ("max-age", "120"),
        ("domain", "example.com"),
        ("secure", ""), // SameSite=None forces Secure, even on plain HTTP.
        ("samesite", "None"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(attrs, expected);
    weir.running.shutdown().await;
}

#[tokio::test]
async fn only_the_affinity_cookie_is_kept_from_the_pods() {
    let b = Backend::start("b").await;
    let forwarding = "  sessionAffinity:\n    cookie: { name: sticky, forwardCookie: true }\n";
    let config = Config::default()
        .service("web", &[b.addr])
        .pool_with("web", "web.test", &[("web", 1)], AFFINITY)
        .pool_with("fwd", "fwd.test", &[("web", 1)], forwarding);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let value = request(&client, &weir.url("/"), "web.test", None)
        .await
        .value()
        .unwrap();
    let seen = request(
        &client,
        &weir.url("/headers"),
        "web.test",
        Some(&sticky(&value)),
    )
    .await
    .body;
    assert!(seen.lines().any(|l| l == "cookie: theme=dark"), "{seen}");
    let value = request(&client, &weir.url("/"), "fwd.test", None)
        .await
        .value()
        .unwrap();
    let seen = request(
        &client,
        &weir.url("/headers"),
        "fwd.test",
        Some(&sticky(&value)),
    )
    .await
    .body;
    assert!(
        seen.lines()
            .any(|l| l == format!("cookie: theme=dark; sticky={value}")),
        "{seen}"
    );
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_fenced_endpoint_keeps_its_pinned_clients_and_gets_no_new_ones() {
    let bs = Backend::start_many(2).await;
    let weir = Weir::start(
        &Config::default()
            .service("web", &[bs[0].addr, bs[1].addr])
            .pool_with("web", "", &[("web", 1)], AFFINITY),
    )
    .await;
    let client = http1_client();
    let first = request(&client, &weir.url("/"), "x", None).await;
    let value = first.value().unwrap();
    let (pinned, other) = if first.body == "e0" {
        (&bs[0], &bs[1])
    } else {
        (&bs[1], &bs[0])
    };
    // The pinned pod starts terminating but still serves.
    let rolling = Config::default()
        .service_endpoints(
            "web",
            &[
                endpoint(pinned.addr, EndpointState::TerminatingServing),
                endpoint(other.addr, EndpointState::Ready),
            ],
        )
        .pool_with("web", "", &[("web", 1)], AFFINITY);
    weir.feed.send(Arc::new(rolling.store())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        let a = request(&client, &weir.url("/"), "x", Some(&sticky(&value))).await;
        assert_eq!(a.body, pinned.name);
        assert_eq!(a.set_cookie, None);
        assert_eq!(
            request(&client, &weir.url("/"), "x", None).await.body,
            other.name
        );
    }
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_still_honours_old_cookies_and_reissues_them() {
    let bs = Backend::start_many(3).await;
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let weir = start_affine(&addrs).await;
    let client = http1_client();
    let first = request(&client, &weir.url("/"), "x", None).await;
    let old = first.value().unwrap();
    weir.running.affinity.rotate(
        b"the next key, sixteen bytes or more",
        Duration::from_secs(60),
        &weir.running.table.load(),
    );
    let a = request(&client, &weir.url("/"), "x", Some(&sticky(&old))).await;
    assert_eq!(a.body, first.body);
    let new = a.value().expect("re-issued under the new key");
    assert_ne!(new, old);
    let b = request(&client, &weir.url("/"), "x", Some(&sticky(&new))).await;
    assert_eq!((b.body.as_str(), b.set_cookie), (first.body.as_str(), None));
    // With no grace left, the old cookie is just ignored.
    weir.running.affinity.rotate(
        b"and a third key, also long enough",
        Duration::ZERO,
        &weir.running.table.load(),
    );
    let c = request(&client, &weir.url("/"), "x", Some(&sticky(&old))).await;
    assert_eq!(c.status, StatusCode::OK);
    assert!(c.value().is_some());
    weir.running.shutdown().await;
}
