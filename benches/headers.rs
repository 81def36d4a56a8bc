//! Header rewriting on the request path: hop-by-hop removal, the affinity cookie read and
//! stripped, `X-Forwarded-*` added, `Via`; and all of it together on a copy of a typical
//! browser request.
//!
//! `cargo bench --bench headers` (about 40 seconds)

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::Version;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;
use weir::proxy::{Forwarding, headers};

const COOKIE: &str = "weir-affinity";

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    m
}

/// What a browser sends over HTTP/1.1: 11 headers, two cookies besides weir's.
fn browser() -> HeaderMap {
    map(&[
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive"),
        (
            "cookie",
            "session=8f14e45fceea167a5a36dedd4bea2543; weir-affinity=q1w2e3r4t5y6u7i8o9p0as; theme=dark",
        ),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("priority", "u=0, i"),
    ])
}

/// An API client behind another proxy: `Connection` names a custom header, XFF has a chain.
fn proxied() -> HeaderMap {
    map(&[
        ("host", "api.example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("connection", "keep-alive, x-hop"),
        ("keep-alive", "timeout=5"),
        ("x-hop", "1"),
        ("te", "trailers"),
        ("x-forwarded-for", "203.0.113.7, 10.0.0.5"),
        ("x-forwarded-proto", "https"),
        ("content-type", "application/json"),
        ("content-length", "42"),
    ])
}

fn rewriting(c: &mut Criterion) {
    let mut group = c.benchmark_group("headers");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    let peer: IpAddr = "198.51.100.23".parse().expect("ip");
    let trusted_peer: IpAddr = "10.0.0.9".parse().expect("ip");
    let plain = Forwarding::default();
    let trusting = Forwarding {
        trusted_proxies: vec!["10.0.0.0/8".parse().expect("cidr")],
        via: true,
        server: None,
    };
    let small = BatchSize::SmallInput;

    // The copy every batched case starts from, for scale.
    group.bench_function("clone_browser_map", |b| {
        let h = browser();
        b.iter(|| black_box(h.clone()))
    });
    group.bench_function("hop_by_hop/browser", |b| {
        b.iter_batched(
            browser,
            |mut h| {
                let up = headers::upgrade_requested(&h);
                headers::remove_hop_by_hop(&mut h, up);
                h
            },
            small,
        )
    });
    group.bench_function("hop_by_hop/proxied", |b| {
        b.iter_batched(
            proxied,
            |mut h| {
                let up = headers::upgrade_requested(&h);
                headers::remove_hop_by_hop(&mut h, up);
                h
            },
            small,
        )
    });
    group.bench_function("cookie_read", |b| {
        let h = browser();
        b.iter(|| black_box(headers::cookie(&h, black_box(COOKIE)).is_some()))
    });
    group.bench_function("cookie_strip/present", |b| {
        b.iter_batched(
            browser,
            |mut h| {
                headers::remove_cookie(&mut h, COOKIE);
                h
            },
            small,
        )
    });
    group.bench_function("cookie_strip/absent", |b| {
        b.iter_batched(
            proxied,
            |mut h| {
                headers::remove_cookie(&mut h, COOKIE);
                h
            },
            small,
        )
    });
    group.bench_function("forwarded/no_prior_xff", |b| {
        b.iter_batched(
            browser,
            |mut h| {
                plain.add_forwarded(&mut h, peer, "http", "shop.example.com");
                h
            },
            small,
        )
    });
    group.bench_function("forwarded/prior_xff_trusted_peer", |b| {
        b.iter_batched(
            proxied,
            |mut h| {
                trusting.add_forwarded(&mut h, trusted_peer, "http", "api.example.com");
                h
            },
            small,
        )
    });
    group.bench_function("client_ip/trusted_chain", |b| {
        let h = proxied();
        b.iter(|| black_box(trusting.client_ip(black_box(trusted_peer), &h)))
    });
    // Everything the proxy does to a request's headers, in its order.
    group.bench_function("request_rewrite/browser", |b| {
        b.iter_batched(
            browser,
            |mut h| {
                let client = plain.client_ip(peer, &h);
                let up = headers::upgrade_requested(&h);
                headers::remove_hop_by_hop(&mut h, up);
                let pinned = headers::cookie(&h, COOKIE).map(<[u8]>::len);
                headers::remove_cookie(&mut h, COOKIE);
                plain.add_forwarded(&mut h, client, "http", "shop.example.com");
                plain.add_via(&mut h, Version::HTTP_11);
                (h, pinned)
            },
            small,
        )
    });
    group.bench_function("request_rewrite/proxied_via", |b| {
        b.iter_batched(
            proxied,
            |mut h| {
                let client = trusting.client_ip(trusted_peer, &h);
                let up = headers::upgrade_requested(&h);
                headers::remove_hop_by_hop(&mut h, up);
                headers::remove_cookie(&mut h, COOKIE);
                trusting.add_forwarded(&mut h, client, "http", "api.example.com");
                trusting.add_via(&mut h, Version::HTTP_11);
                h
            },
            small,
        )
    });
    group.finish();
}

criterion_group!(benches, rewriting);
criterion_main!(benches);
