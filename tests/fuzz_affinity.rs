//! Fuzzing the affinity cookie: arbitrary bytes and mutated genuine cookies, through
//! `Affinity::pinned` (the table's index, and the scan it falls back on right after a table
//! swap, before and after a key rotation), and end to end through weir's `Cookie` header
//! parsing into a real proxy.
//!
//! Invariants: nothing panics; a value is accepted only if it is exactly a value weir issued
//! for that pool (and then it pins the endpoint it was issued for); a mutated value, another
//! pool's value, or a rotated-out key's value past its grace is refused; over HTTP a refused
//! cookie gets a fresh `Set-Cookie`, an accepted one reaches its endpoint, and the affinity
//! cookie never reaches a pod.
//!
//! `WEIR_FUZZ_CASES=50000 cargo test --release --test fuzz_affinity -- --nocapture`, or
//! `WEIR_FUZZ_SECONDS=600` for a timed run (see `fuzz_common.rs`).

mod common;
#[path = "fuzz_common.rs"]
mod fuzz_common;

use common::*;
use fuzz_common::fuzz;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir::affinity::Affinity;
use weir::routing::{Pool, RoutingTable, compile};
use weir::store::ObjectKey;

const KEY: &[u8] = b"the first key, sixteen bytes or more";
const NEXT_KEY: &[u8] = b"the second key, also long enough";
/// The key `Weir::start` (tests/common) gives the in-process proxy.
const TEST_KEY: &[u8] = b"a test key of at least sixteen bytes";

/// Three pods behind a Service; pools `a` and `b` both pin to them (a cookie of one must not
/// work on the other), `c` over slices that name no pod (identity: the address).
fn store() -> weir::store::Store {
    use weir::testkit::{EndpointState::*, StoreBuilder, pool, route_spec};
    let affine = |name: &str, host: &str, service: &str, cookie: serde_json::Value| {
        let mut spec = route_spec(host, "/", service);
        spec["sessionAffinity"] = serde_json::json!({ "cookie": cookie });
        pool("fz", name, spec)
    };
    let pod = |ip: &str, state, name: &str| endpoint(ip, state).pod(name);
    StoreBuilder::default()
        .service(weir::testkit::service("fz", "web", &[("http", 80)]))
        .slice(weir::testkit::slice(
            "fz",
            "web",
            "web-1",
            &[("http", 8080)],
            &[
                pod("10.0.0.1", Ready, "web-1"),
                pod("10.0.0.2", Ready, "web-2"),
                pod("10.0.0.3", TerminatingServing, "web-3"),
            ],
        ))
        .service(weir::testkit::service("fz", "raw", &[("http", 80)]))
        .slice(weir::testkit::slice(
            "fz",
            "raw",
            "raw-1",
            &[("http", 9090)],
            &[endpoint("fd00::1", Ready), endpoint("fd00::2", Ready)],
        ))
        .pool(affine("a", "a.test", "web", serde_json::json!({})))
        .pool(affine(
            "b",
            "b.test",
            "web",
            serde_json::json!({ "name": "other" }),
        ))
        .pool(affine("c", "c.test", "raw", serde_json::json!({})))
        .build()
}

/// One way to damage a cookie value.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Replace {
        at: usize,
        byte: u8,
    },
    ReplaceBase64 {
        at: usize,
        index: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
    },
    Truncate {
        len: usize,
    },
    Swap {
        a: usize,
        b: usize,
    },
    Upper {
        at: usize,
    },
    Pad(&'static str),
    Wrap(&'static str, &'static str),
    Double,
    /// Standard base64 instead of URL-safe (`-` → `+`, `_` → `/`).
    Standard,
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0usize..64;
    prop_oneof![
        (at.clone(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (at.clone(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
        (at.clone(), 0u8..64).prop_map(|(at, index)| Mutation::ReplaceBase64 { at, index }),
        (at.clone(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        at.clone().prop_map(|at| Mutation::Delete { at }),
        (0usize..30).prop_map(|len| Mutation::Truncate { len }),
        (at.clone(), at.clone()).prop_map(|(a, b)| Mutation::Swap { a, b }),
        at.prop_map(|at| Mutation::Upper { at }),
        prop::sample::select(&["=", "==", "A", "AA", "\0", " ", "%3D"][..]).prop_map(Mutation::Pad),
        prop::sample::select(&[("\"", "\""), ("", ";"), ("=", ""), ("", "\n")][..])
            .prop_map(|(a, b)| Mutation::Wrap(a, b)),
        Just(Mutation::Double),
        Just(Mutation::Standard),
    ]
}

fn apply(value: &mut Vec<u8>, m: &Mutation) {
    let n = value.len();
    match *m {
        Mutation::FlipBit { at, bit } if n > 0 => value[at % n] ^= 1 << bit,
        Mutation::Replace { at, byte } if n > 0 => value[at % n] = byte,
        Mutation::ReplaceBase64 { at, index } if n > 0 => value[at % n] = B64[index as usize],
        Mutation::Insert { at, byte } => value.insert(at % (n + 1), byte),
        Mutation::Delete { at } if n > 0 => {
            value.remove(at % n);
        }
        Mutation::Truncate { len } => value.truncate(len),
        Mutation::Swap { a, b } if n > 0 => value.swap(a % n, b % n),
        Mutation::Upper { at } if n > 0 => value[at % n] = value[at % n].to_ascii_uppercase(),
        Mutation::Pad(p) => value.extend_from_slice(p.as_bytes()),
        Mutation::Wrap(a, b) => {
            let mut out = a.as_bytes().to_vec();
            out.append(value);
            out.extend_from_slice(b.as_bytes());
            *value = out;
        }
        Mutation::Double => {
            let copy = value.clone();
            value.extend_from_slice(&copy);
        }
        Mutation::Standard => {
            for b in value.iter_mut() {
                *b = match *b {
                    b'-' => b'+',
                    b'_' => b'/',
                    other => other,
                }
            }
        }
        _ => {}
    }
}

/// A cookie value to present: bytes from nowhere, or a genuine value damaged.
#[derive(Debug, Clone)]
enum Value {
    Bytes(Vec<u8>),
    /// The genuine value number `n` (mod the count), then the mutations in order.
    Mutated {
        n: usize,
        mutations: Vec<Mutation>,
    },
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
        2 => "[A-Za-z0-9_-]{22}".prop_map(|s| Value::Bytes(s.into_bytes())),
        6 => (any::<usize>(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(n, mutations)| Value::Mutated { n, mutations }),
    ]
}

/// What each genuine value pins: (pool, value) → endpoint identity, for one key.
fn genuine(affinity: &Affinity, table: &RoutingTable) -> HashMap<(String, Vec<u8>), String> {
    let mut out = HashMap::new();
    for pool in table.pools() {
        for e in pool.all_endpoints() {
            let v = affinity.value(pool, e).into_bytes();
            out.insert((pool.name.to_string(), v), e.identity.clone());
        }
    }
    out
}

struct Fixture {
    /// Synced: lookups go through the index.
    indexed: RoutingTable,
    /// Compiled after the sync: lookups scan.
    unindexed: RoutingTable,
    plain: Affinity,
    rotated: Affinity,
    /// Genuine under `KEY` and under `NEXT_KEY`.
    old_values: HashMap<(String, Vec<u8>), String>,
    new_values: HashMap<(String, Vec<u8>), String>,
    all_values: Vec<Vec<u8>>,
}

const GRACE: Duration = Duration::from_secs(3600);

fn fixture() -> Fixture {
    let store = store();
    let indexed = compile(&store, None).table;
    let unindexed = compile(&store, Some(&indexed)).table;
    assert_eq!(indexed.pools().count(), 3);
    let plain = Affinity::new(KEY);
    plain.sync(&indexed);
    let rotated = Affinity::new(KEY);
    rotated.rotate(NEXT_KEY, GRACE, &indexed);
    let old_values = genuine(&plain, &indexed);
    let new_values = genuine(&rotated, &indexed);
    // Every endpoint (fenced ones too) of every pool has its own value.
    assert_eq!(old_values.len(), 3 + 3 + 2);
    let mut all_values: Vec<Vec<u8>> = old_values.keys().map(|(_, v)| v.clone()).collect();
    all_values.extend(new_values.keys().map(|(_, v)| v.clone()));
    all_values.sort();
    Fixture {
        indexed,
        unindexed,
        plain,
        rotated,
        old_values,
        new_values,
        all_values,
    }
}

fn materialize(f: &Fixture, v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        Value::Mutated { n, mutations } => {
            let mut value = f.all_values[n % f.all_values.len()].clone();
            for m in mutations {
                apply(&mut value, m);
            }
            value
        }
    }
}

fn check_pinned(
    affinity: &Affinity,
    pool: &Arc<Pool>,
    value: &[u8],
    now: Instant,
    current: &HashMap<(String, Vec<u8>), String>,
    previous: Option<&HashMap<(String, Vec<u8>), String>>,
) -> Result<(), TestCaseError> {
    let key = (pool.name.to_string(), value.to_vec());
    let want = match (current.get(&key), previous.and_then(|p| p.get(&key))) {
        (Some(id), _) => Some((id.clone(), false)),
        (None, Some(id)) => Some((id.clone(), true)),
        (None, None) => None,
    };
    let got = affinity
        .pinned(pool, value, now)
        .map(|p| (p.endpoint.identity.clone(), p.stale_key));
    prop_assert_eq!(
        got,
        want,
        "pool {} value {:?}",
        pool.name,
        String::from_utf8_lossy(value)
    );
    Ok(())
}

fn check_library(f: &Fixture, value: &[u8]) -> Result<(), TestCaseError> {
    let now = Instant::now();
    let later = now + GRACE + Duration::from_secs(1);
    for table in [&f.indexed, &f.unindexed] {
        for pool in table.pools() {
            check_pinned(&f.plain, pool, value, now, &f.old_values, None)?;
            check_pinned(
                &f.rotated,
                pool,
                value,
                now,
                &f.new_values,
                Some(&f.old_values),
            )?;
            // Past the grace, the old key's values are refused.
            check_pinned(&f.rotated, pool, value, later, &f.new_values, None)?;
        }
    }
    Ok(())
}

#[test]
fn fuzz_pinned_refuses_all_but_genuine_values() {
    let f = fixture();
    // Sanity: each genuine value pins its endpoint, on its own pool only.
    for ((pool, v), id) in &f.old_values {
        for p in f.indexed.pools() {
            let got = f.plain.pinned(p, v, Instant::now());
            if *p.name == *pool {
                assert_eq!(got.map(|g| g.endpoint.identity.clone()).as_ref(), Some(id));
            } else {
                assert!(got.is_none(), "{pool}'s value taken by {}", p.name);
            }
        }
    }
    fuzz("fuzz_affinity::pinned", 2000, value(), |v| {
        let bytes = materialize(&f, &v);
        check_library(&f, &bytes)
    });
}

/// The `Cookie` header as a client might send it: other cookies around the affinity one,
/// odd spacing, empty pairs, more than one header.
#[derive(Debug, Clone)]
struct CookieHeaders {
    before: Vec<(String, String)>,
    value: Option<Value>,
    /// Spaces around the name and the value; the separator after the pair.
    spacing: (String, String),
    after: Vec<(String, String)>,
    split_headers: bool,
}

fn cookie_pair() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            3 => "[A-Za-z0-9_-]{0,12}",
            1 => Just("weir-affinity".to_string()),
            1 => Just("Weir-Affinity".to_string()),
            1 => "[ -~]{0,12}",
        ],
        prop_oneof![3 => "[A-Za-z0-9_=-]{0,30}", 1 => "[ -~]{0,30}"],
    )
}

fn cookie_headers() -> impl Strategy<Value = CookieHeaders> {
    (
        prop::collection::vec(cookie_pair(), 0..4),
        prop::option::weighted(0.9, value()),
        ("[ \t]{0,2}", "[ \t]{0,2}"),
        prop::collection::vec(cookie_pair(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(before, value, spacing, after, split_headers)| CookieHeaders {
                before,
                value,
                spacing,
                after,
                split_headers,
            },
        )
}

/// The value of cookie `name` a server reading the headers by RFC 6265 finds: the first pair
/// so named, name and value trimmed. (The oracle; weir's parser is private.)
fn cookie_value(headers: &[Vec<u8>], name: &str) -> Option<Vec<u8>> {
    headers
        .iter()
        .flat_map(|h| h.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes())
                .then(|| pair[eq + 1..].trim_ascii().to_vec())
        })
}

#[test]
fn fuzz_cookie_headers_end_to_end() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (weir, backends, valid) = rt.block_on(async {
        let backends = Backend::start_many(3).await;
        let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
        let config = Config::default().service("web", &addrs).pool_with(
            "sticky",
            "sticky.test",
            &[("web", 1)],
            "  sessionAffinity: { cookie: {} }\n",
        );
        // The values the proxy issues, from the same key, pool and endpoints.
        let table = compile(&config.store(), None).table;
        let affinity = Affinity::new(TEST_KEY);
        let pool = table
            .pool(&ObjectKey::new("test", "sticky"))
            .expect("the pool compiles");
        let valid: HashMap<Vec<u8>, String> = pool
            .all_endpoints()
            .map(|e| {
                let name = backends
                    .iter()
                    .find(|b| b.addr == e.addr)
                    .map(|b| b.name.clone())
                    .expect("an endpoint of a test backend");
                (affinity.value(pool, e).into_bytes(), name)
            })
            .collect();
        assert_eq!(valid.len(), 3);
        (Weir::start(&config).await, backends, valid)
    });
    let genuine: Vec<Vec<u8>> = {
        let mut v: Vec<_> = valid.keys().cloned().collect();
        v.sort();
        v
    };
    let client = http1_client();
    let url = weir.url("/headers");

    let accepted = AtomicU64::new(0);
    let report = fuzz(
        "fuzz_affinity::cookie_headers",
        300,
        cookie_headers(),
        |c| {
            // Build the header(s); bytes a header value may not hold are left out.
            let value = c.value.as_ref().map(|v| match v {
                Value::Bytes(b) => b.clone(),
                Value::Mutated { n, mutations } => {
                    let mut value = genuine[n % genuine.len()].clone();
                    for m in mutations {
                        apply(&mut value, m);
                    }
                    value
                }
            });
            let pairs = |p: &[(String, String)]| -> Vec<String> {
                p.iter().map(|(n, v)| format!("{n}={v}")).collect()
            };
            let mut parts: Vec<Vec<u8>> = pairs(&c.before)
                .into_iter()
                .map(String::into_bytes)
                .collect();
            if let Some(v) = &value {
                let mut pair = format!(
                    "{}weir-affinity{}={}",
                    c.spacing.0, c.spacing.1, c.spacing.1
                )
                .into_bytes();
                pair.extend_from_slice(v);
                pair.extend_from_slice(c.spacing.0.as_bytes());
                parts.push(pair);
            }
            parts.extend(pairs(&c.after).into_iter().map(String::into_bytes));
            let clean = |b: Vec<u8>| -> Vec<u8> {
                b.into_iter()
                    .filter(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
                    .collect()
            };
            let headers: Vec<Vec<u8>> = if c.split_headers {
                parts
                    .into_iter()
                    .map(clean)
                    .filter(|h| !h.is_empty())
                    .collect()
            } else {
                let joined = clean(parts.join(&b"; "[..]));
                if joined.is_empty() {
                    vec![]
                } else {
                    vec![joined]
                }
            };
            let sent = cookie_value(&headers, "weir-affinity");
            let pinned_to = sent.as_ref().and_then(|v| valid.get(v));

            let hits_before: Vec<usize> = backends
                .iter()
                .map(|b| b.hits.load(Ordering::SeqCst))
                .collect();
            let (status, set_cookie, body) = rt.block_on(async {
                let mut req = Request::get(&url).header("host", "sticky.test");
                for h in &headers {
                    req = req.header("cookie", h.as_slice());
                }
                let req = req.body(Full::new(bytes::Bytes::new())).expect("a request");
                let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
                    .await
                    .expect("weir answers")
                    .expect("the request goes through");
                let status = resp.status();
                let set_cookie: Vec<String> = resp
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .map(|v| v.to_str().expect("ASCII Set-Cookie").to_string())
                    .collect();
                let body = resp.into_body().collect().await.expect("a body").to_bytes();
                (
                    status,
                    set_cookie,
                    String::from_utf8_lossy(&body).into_owned(),
                )
            });
            prop_assert_eq!(status, StatusCode::OK, "{}", body);
            let served: Vec<&str> = backends
                .iter()
                .zip(&hits_before)
                .filter(|(b, before)| b.hits.load(Ordering::SeqCst) > **before)
                .map(|(b, _)| b.name.as_str())
                .collect();
            prop_assert_eq!(served.len(), 1, "one backend answers");
            match pinned_to {
                Some(name) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    prop_assert_eq!(served[0], name.as_str(), "a genuine cookie reaches its pod");
                    prop_assert!(
                        set_cookie.is_empty(),
                        "re-issued a genuine cookie: {:?}",
                        set_cookie
                    );
                }
                None => {
                    // Refused (or absent): a fresh cookie pinning the pod that answered.
                    prop_assert_eq!(set_cookie.len(), 1, "{:?}", set_cookie);
                    let fresh = set_cookie[0]
                        .strip_prefix("weir-affinity=")
                        .and_then(|s| s.split(';').next())
                        .unwrap_or_default();
                    prop_assert_eq!(
                        valid.get(fresh.as_bytes()).map(String::as_str),
                        Some(served[0]),
                        "Set-Cookie {:?}",
                        set_cookie
                    );
                }
            }
            // The pod never sees the affinity cookie.
            let forwarded: Vec<Vec<u8>> = body
                .lines()
                .filter_map(|l| l.strip_prefix("cookie: "))
                .map(|v| v.as_bytes().to_vec())
                .collect();
            prop_assert_eq!(
                cookie_value(&forwarded, "weir-affinity"),
                None,
                "forwarded {:?}",
                forwarded
            );
            Ok(())
        },
    );
    println!(
        "fuzz_affinity::cookie_headers: {} of {} requests carried a genuine cookie",
        accepted.load(Ordering::Relaxed),
        report.executions
    );
}
