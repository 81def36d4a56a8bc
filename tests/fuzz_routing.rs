//! Fuzzing host and path matching: routing tables compiled from random pools (exact hosts,
//! `*.x.y` wildcards, any-host routes, overlapping path prefixes, routes contested between
//! pools), looked up with random hosts (upper case, ports, trailing dots, IPv6 literals,
//! garbage, very long strings) and paths.
//!
//! Every lookup is checked against a model written here from the documented rules: exact host,
//! then the wildcard of the host's parent domain (one label), then any-host routes; within
//! each, the longest prefix matching segment by segment; the oldest pool (by key, for a file)
//! holds a contested route. Case and port never change the answer.
//!
//! `WEIR_FUZZ_CASES=20000 cargo test --release --test fuzz_routing -- --nocapture`, or
//! `WEIR_FUZZ_SECONDS=600` for a timed run (see `fuzz_common.rs`).

#[path = "fuzz_common.rs"]
mod fuzz_common;

use fuzz_common::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use weir::routing::{RoutingTable, compile, normalize_host};
use weir::store::ObjectKey;

const LABELS: &[&str] = &["a", "b", "shop", "api", "x", "xn--p1ai", "a-1", "0"];

fn label() -> impl Strategy<Value = String> {
    prop::sample::select(LABELS).prop_map(str::to_string)
}

fn domain(max_labels: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..=max_labels).prop_map(|l| l.join("."))
}

/// A route host: empty (any host), exact, or a one-label wildcard.
fn route_host() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        3 => domain(3),
        2 => domain(2).prop_map(|d| format!("*.{d}")),
    ]
}

/// A path prefix as a user writes it: `/`, `/api`, `/api/`, `/a//b/`...
fn route_prefix() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(&["a", "api", "v1", "b", ""][..]), 0..3),
        any::<bool>(),
    )
        .prop_map(|(segments, trailing)| {
            let mut p = format!("/{}", segments.join("/"));
            if trailing && !p.ends_with('/') {
                p.push('/');
            }
            p
        })
}

#[derive(Debug, Clone)]
struct PoolSpec {
    namespace: &'static str,
    routes: Vec<(String, String)>,
}

fn pools() -> impl Strategy<Value = Vec<PoolSpec>> {
    prop::collection::vec(
        (
            prop::sample::select(&["fuzz", "other"][..]),
            prop::collection::vec((route_host(), route_prefix()), 0..5),
        )
            .prop_map(|(namespace, mut routes)| {
                // A pool repeating a route is refused whole; keep the first of each.
                let mut seen = std::collections::HashSet::new();
                routes.retain(|r| seen.insert(r.clone()));
                PoolSpec { namespace, routes }
            }),
        1..6,
    )
}

/// The base of a request's host; `Structured` ones have a known normalized form.
#[derive(Debug, Clone)]
enum HostKind {
    /// The host of the table's route number `n` (mod the count); a wildcard's `*` replaced by
    /// the label given, and optionally one more label in front (no longer a one-label match).
    FromRoute {
        n: usize,
        label: String,
        extra: Option<String>,
    },
    /// Made of the same labels as route hosts, so it hits them often.
    Random(String),
    /// An IPv6 literal, bracketed as in a Host header.
    Ipv6(String),
    /// Anything at all: normalized by weir's own rules before comparing with the model.
    Garbage(String),
}

#[derive(Debug, Clone)]
struct Request {
    host: HostKind,
    /// Which ASCII letters to send in upper case (bit i: the i-th byte, cyclically).
    upper: u64,
    trailing_dot: bool,
    port: Option<String>,
    path: String,
}

fn garbage_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        3 => "[a-zA-Z0-9.:\\[\\]*%@ _/\\-]{0,40}",
        1 => (label(), 1usize..400).prop_map(|(l, n)| vec![l; n].join(".")),
        1 => (0usize..70_000).prop_map(|n| "a".repeat(n)),
        1 => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let host = prop_oneof![
        4 => (any::<usize>(), label(), prop::option::weighted(0.2, label()))
            .prop_map(|(n, label, extra)| HostKind::FromRoute { n, label, extra }),
        3 => domain(4).prop_map(HostKind::Random),
        1 => prop::sample::select(&["::1", "2001:db8::1", "fe80::1%25eth0", "::ffff:127.0.0.1", ""][..])
            .prop_map(|s| HostKind::Ipv6(s.to_string())),
        2 => garbage_text().prop_map(HostKind::Garbage),
    ];
    let path = prop_oneof![
        6 => (
            prop::collection::vec(
                prop::sample::select(&["a", "api", "v1", "b", "", "API", "apiv1", "a%2f", ".."][..]),
                0..5,
            ),
            any::<bool>(),
        )
            .prop_map(|(s, trailing)| {
                let mut p = format!("/{}", s.join("/"));
                if trailing {
                    p.push('/');
                }
                p
            }),
        2 => garbage_text(),
        1 => Just("*".to_string()),
    ];
    let port = prop::option::of(prop_oneof![
        Just(String::new()),
        (0u32..100_000).prop_map(|p| p.to_string()),
        Just("0000000000000000000080".to_string()),
    ]);
    (host, any::<u64>(), any::<bool>(), port, path).prop_map(
        |(host, upper, trailing_dot, port, path)| Request {
            host,
            upper,
            trailing_dot,
            port,
            path,
        },
    )
}

/// Segment-wise prefix matching, as documented: `/api` takes `/api`, `/api/`, `/api/v1`.
fn takes(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn normalized_prefix(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() { "/".into() } else { t.into() }
}

/// Which pool holds each (host, normalized prefix): the first pool in key order to claim it
/// (file pools have no creation time).
fn holders(specs: &[(ObjectKey, PoolSpec)]) -> Vec<(String, String, ObjectKey)> {
    let mut sorted: Vec<&(ObjectKey, PoolSpec)> = specs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut held: Vec<(String, String, ObjectKey)> = Vec::new();
    for (key, spec) in sorted {
        for (host, prefix) in &spec.routes {
            let prefix = normalized_prefix(prefix);
            if !held.iter().any(|(h, p, _)| h == host && *p == prefix) {
                held.push((host.clone(), prefix, key.clone()));
            }
        }
    }
    held
}

/// The pool the documented rules pick for a normalized host.
fn model<'a>(
    held: &'a [(String, String, ObjectKey)],
    host: &str,
    path: &str,
) -> Option<&'a ObjectKey> {
    // A wildcard takes one whole DNS label (letters, digits, `-`, `_`) in front of its domain.
    let parent = host
        .split_once('.')
        .filter(|(label, _)| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(|(_, parent)| parent);
    let tiers: [&dyn Fn(&str) -> bool; 3] = [
        &|h: &str| !h.is_empty() && !h.starts_with("*.") && h == host,
        &|h: &str| h.strip_prefix("*.").is_some_and(|p| Some(p) == parent),
        &|h: &str| h.is_empty(),
    ];
    for tier in tiers {
        let best = held
            .iter()
            .filter(|(h, p, _)| tier(h) && takes(p, path))
            .max_by_key(|(_, p, _)| p.len());
        if let Some((_, _, key)) = best {
            return Some(key);
        }
    }
    None
}

/// The file of these pools (each to Service `web`, port `http`), as `weir::testkit` writes it.
fn yaml(specs: &[(ObjectKey, PoolSpec)]) -> String {
    specs
        .iter()
        .map(|(key, spec)| {
            let routes: Vec<serde_json::Value> = spec
                .routes
                .iter()
                .map(|(h, p)| serde_json::json!({ "host": h, "pathPrefix": p }))
                .collect();
            let spec = serde_json::json!({
                "routes": routes,
                "backends": [{ "service": "web", "port": "http" }],
            });
            weir::testkit::to_document(&weir::testkit::pool(&key.namespace, &key.name, spec))
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn decorate(base: &str, r: &Request) -> String {
    let mut host: String = base
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            if r.upper >> (i % 64) & 1 == 1 {
                b.to_ascii_uppercase() as char
            } else {
                b as char
            }
        })
        .collect();
    if r.trailing_dot {
        host.push('.');
    }
    if let Some(port) = &r.port {
        host.push(':');
        host.push_str(port);
    }
    host
}

fn key_of(table: &RoutingTable, host: &str, path: &str) -> Option<ObjectKey> {
    table.route(host, path).map(|p| p.key.clone())
}

fn check(pools: Vec<PoolSpec>, requests: Vec<Request>) -> Result<(), TestCaseError> {
    let specs: Vec<(ObjectKey, PoolSpec)> = pools
        .into_iter()
        .enumerate()
        .map(|(i, s)| (ObjectKey::new(s.namespace, format!("p{i}")), s))
        .collect();
    let store = weir::source::file::parse("fuzz.yaml", &yaml(&specs))
        .map_err(|e| TestCaseError::fail(format!("a valid file was refused: {e}")))?;
    let compiled = compile(&store, None);
    let table = &compiled.table;
    let held = holders(&specs);

    // compile: a status for every pool, each pool holds exactly the routes the model says,
    // and a pool that lost a route says so.
    let keys: Vec<&ObjectKey> = compiled.statuses.keys().collect();
    let mut expected_keys: Vec<&ObjectKey> = specs.iter().map(|(k, _)| k).collect();
    expected_keys.sort();
    prop_assert_eq!(keys, expected_keys);
    for (key, spec) in &specs {
        let pool = table
            .pool(key)
            .ok_or_else(|| TestCaseError::fail(format!("pool {key} missing from the table")))?;
        let mine: Vec<(String, String)> = held
            .iter()
            .filter(|(_, _, k)| k == key)
            .map(|(h, p, _)| (h.clone(), p.clone()))
            .collect();
        let mut theirs = pool.routes.clone();
        theirs.sort();
        let mut mine_sorted = mine.clone();
        mine_sorted.sort();
        prop_assert_eq!(theirs, mine_sorted, "routes held by {}", key);
        let lost = spec.routes.iter().any(|(h, p)| {
            let p = normalized_prefix(p);
            held.iter()
                .any(|(hh, pp, k)| hh == h && *pp == p && k != key)
        });
        let accepted = compiled.statuses[key]
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .ok_or_else(|| TestCaseError::fail("no Accepted condition"))?;
        prop_assert_eq!(
            accepted.is_true(),
            !lost,
            "Accepted of {}: {:?}",
            key,
            accepted
        );
    }

    let route_hosts: Vec<&str> = held.iter().map(|(h, _, _)| h.as_str()).collect();
    for r in &requests {
        let path = r.path.as_str();
        let base = match &r.host {
            HostKind::FromRoute { n, label, extra } => {
                let host = route_hosts
                    .get(n % route_hosts.len().max(1))
                    .copied()
                    .unwrap_or("");
                let host = match host.strip_prefix("*.") {
                    Some(parent) => format!("{label}.{parent}"),
                    None => host.to_string(),
                };
                let host = match extra {
                    Some(e) if !host.is_empty() => format!("{e}.{host}"),
                    _ => host,
                };
                Some(host)
            }
            HostKind::Random(d) => Some(d.clone()),
            HostKind::Ipv6(ip) => {
                // A bracketed literal: the port is outside the brackets, never a trailing dot.
                let sent = match &r.port {
                    Some(port) => format!("[{ip}]:{port}"),
                    None => format!("[{ip}]"),
                };
                let got = key_of(table, &sent, path);
                prop_assert_eq!(
                    got.as_ref(),
                    model(&held, ip, path),
                    "host {:?} path {:?}",
                    sent,
                    path
                );
                let _ = table.certificate(&sent);
                None
            }
            HostKind::Garbage(text) => {
                // No known normal form: weir's own normalization, then the model; and case
                // and an added port never change the answer.
                let got = key_of(table, text, path);
                let normal = normalize_host(text);
                prop_assert_eq!(
                    got.as_ref(),
                    model(&held, &normal, path),
                    "host {:?} (normalized {:?}) path {:?}",
                    text,
                    normal,
                    path
                );
                prop_assert_eq!(
                    key_of(table, &text.to_ascii_uppercase(), path),
                    got.clone(),
                    "upper case of {:?}",
                    text
                );
                if !text.contains(':') && !text.starts_with('[') {
                    prop_assert_eq!(
                        key_of(table, &format!("{text}:443"), path),
                        got.clone(),
                        "{:?} with a port",
                        text
                    );
                }
                let _ = table.certificate(text);
                None
            }
        };
        if let Some(base) = base {
            let sent = decorate(&base, r);
            let got = key_of(table, &sent, path);
            let want = model(&held, &base, path);
            prop_assert_eq!(
                got.as_ref(),
                want,
                "host {:?} (as {:?}) path {:?}",
                base,
                sent,
                path
            );
            if let Some(key) = &got {
                // The pool that answers owns a matching route (exact, wildcard or any-host).
                let pool = table.route(&sent, path).expect("routed above");
                let owned = pool.routes.iter().any(|(h, p)| {
                    let host_ok = h.is_empty()
                        || *h == base
                        || h.strip_prefix("*.").is_some_and(|parent| {
                            base.split_once('.').is_some_and(|(first, rest)| {
                                !first.is_empty() && !first.contains('.') && rest == parent
                            })
                        });
                    host_ok && takes(p, path)
                });
                prop_assert!(
                    owned,
                    "pool {} owns no route for {:?} {:?}",
                    key,
                    base,
                    path
                );
            }
            let _ = table.certificate(&sent);
        }
    }
    Ok(())
}

#[test]
fn fuzz_route_lookup() {
    fuzz(
        "fuzz_routing::route_lookup",
        400,
        (pools(), prop::collection::vec(request(), 1..40)),
        |(pools, requests)| check(pools, requests),
    );
}

/// The cases that matter most, by hand: precedence, one-label wildcards, case and ports.
#[test]
fn precedence_by_example() {
    let specs = vec![
        (
            ObjectKey::new("t", "exact"),
            PoolSpec {
                namespace: "t",
                routes: vec![("a.shop".into(), "/".into())],
            },
        ),
        (
            ObjectKey::new("t", "wild"),
            PoolSpec {
                namespace: "t",
                routes: vec![
                    ("*.shop".into(), "/".into()),
                    ("*.shop".into(), "/api".into()),
                ],
            },
        ),
        (
            ObjectKey::new("t", "any"),
            PoolSpec {
                namespace: "t",
                routes: vec![("".into(), "/".into())],
            },
        ),
    ];
    let store = weir::source::file::parse("t.yaml", &yaml(&specs)).expect("parses");
    let table = compile(&store, None).table;
    let name = |host: &str, path: &str| table.route(host, path).map(|p| p.key.name.clone());
    assert_eq!(name("A.SHOP:8080", "/x").as_deref(), Some("exact"));
    assert_eq!(name("a.shop.", "/api").as_deref(), Some("exact"));
    assert_eq!(name("b.shop", "/api/v1").as_deref(), Some("wild"));
    assert_eq!(name("B.Shop:1", "/").as_deref(), Some("wild"));
    // One label only: deeper names and the bare parent fall through to any host.
    assert_eq!(name("c.b.shop", "/").as_deref(), Some("any"));
    assert_eq!(name("shop", "/").as_deref(), Some("any"));
    assert_eq!(name("[::1]:80", "/").as_deref(), Some("any"));
}

/// `.shop` is no name under `shop`: an empty first label must not take a wildcard route.
/// (`RoutingTable::route` takes `split_once('.')` of the host as its parent domain without
/// checking that the first label is not empty, so a `Host: .shop` request reaches the pool
/// of `*.shop`.)
#[test]
fn an_empty_first_label_is_not_a_wildcard_match() {
    let specs = vec![(
        ObjectKey::new("t", "wild"),
        PoolSpec {
            namespace: "t",
            routes: vec![("*.shop".into(), "/".into())],
        },
    )];
    let store = weir::source::file::parse("t.yaml", &yaml(&specs)).expect("parses");
    let table = compile(&store, None).table;
    assert!(
        table.route(".shop", "/").is_none(),
        "\".shop\" took the *.shop route"
    );
    assert!(
        table.route(".shop:80", "/").is_none(),
        "\".shop:80\" took the *.shop route"
    );
}
