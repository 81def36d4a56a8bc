//! Stores generated to a [`Shape`], for the benches and the scale examples: `n` pools, each over
//! its own Service with one slice of ready endpoints. Built from the testkit's objects, not
//! parsed from YAML, so a 10 000-pool store takes a fraction of a second and is never part of
//! what is measured.

use super::{EndpointState, StoreBuilder, backend_slice, endpoint, service, slice};
use crate::api::LoadBalancerPool;
use crate::store::{ObjectKey, Store};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// The namespace every generated object lives in.
pub const NS: &str = "bench";

/// How the generated pools route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    /// Pool `i` takes `p{i}.bench.test`, every path.
    Exact,
    /// Pool `i` takes `*.w{i}.bench.test`, every path.
    Wildcard,
    /// Pool `i` takes `p{i}.bench.test` on four prefixes: `/`, `/api`, `/api/v1`, `/static`.
    Prefixes,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    pub pools: usize,
    pub endpoints_per_pool: usize,
    pub hosts: Hosts,
    /// Give every pool cookie session affinity.
    pub affinity: bool,
    /// Extra spec fields merged into every pool's spec (e.g. `{"algorithm": "LeastConnections"}`).
    pub extra_spec: Value,
    /// Added to every endpoint's last address octets, so two stores can differ in endpoints.
    pub address_salt: u32,
    /// Give pools a creation time (as the API server does; pools from a file have none).
    pub created: bool,
}

impl Shape {
    pub fn new(pools: usize, endpoints_per_pool: usize) -> Self {
        Shape {
            pools,
            endpoints_per_pool,
            hosts: Hosts::Exact,
            affinity: false,
            extra_spec: json!({}),
            address_salt: 0,
            created: false,
        }
    }

    pub fn hosts(mut self, hosts: Hosts) -> Self {
        self.hosts = hosts;
        self
    }

    pub fn affinity(mut self, on: bool) -> Self {
        self.affinity = on;
        self
    }
}

/// The exact host of pool `i`.
pub fn host(i: usize) -> String {
    format!("p{i}.bench.test")
}

/// A host that the wildcard of pool `i` takes.
pub fn wildcard_member(i: usize) -> String {
    format!("api.w{i}.bench.test")
}

/// The name of pool `i` (and of its Service).
pub fn pool_name(i: usize) -> String {
    format!("pool-{i}")
}

/// The key of pool `i`.
pub fn pool_key(i: usize) -> ObjectKey {
    ObjectKey::new(NS, pool_name(i))
}

/// A distinct private IPv4 address per (pool, endpoint), for up to 16M endpoints.
fn address(n: u32) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

/// Slice `name` of Service `service` on `port` (named `http`), these addresses ready; each
/// endpoint names a pod, as in a cluster.
fn ready_slice(
    name: &str,
    service: &str,
    port: u16,
    addresses: &[String],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let endpoints: Vec<_> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| endpoint(a.as_str(), EndpointState::Ready).pod(format!("{service}-{i}")))
        .collect();
    slice(NS, service, name, &[("http", port.into())], &endpoints)
}

/// A pool over Service `service` (port `http`) with these routes `(host, prefix)`.
pub fn pool(
    name: &str,
    service: &str,
    routes: &[(String, &str)],
    shape: &Shape,
) -> LoadBalancerPool {
    let routes: Vec<Value> = routes
        .iter()
        .map(|(h, p)| json!({ "host": h, "pathPrefix": p }))
        .collect();
    let mut spec = json!({
        "routes": routes,
        "backends": [{ "service": service, "port": "http" }]
    });
    if shape.affinity {
        spec["sessionAffinity"] = json!({ "cookie": { "name": "weir-affinity" } });
    }
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), shape.extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    let pool = super::pool(NS, name, spec);
    if !shape.created {
        return pool;
    }
    // Distinct times, one second apart, in the order of the pool numbers.
    let n: u64 = name
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let (d, h, m, s) = (1 + n / 86_400, (n / 3600) % 24, (n / 60) % 60, n % 60);
    super::created(pool, &format!("2026-01-{d:02}T{h:02}:{m:02}:{s:02}Z"))
}

/// The routes pool `i` gets for a shape.
pub fn routes(i: usize, hosts: Hosts) -> Vec<(String, &'static str)> {
    match hosts {
        Hosts::Exact => vec![(host(i), "/")],
        Hosts::Wildcard => vec![(format!("*.w{i}.bench.test"), "/")],
        Hosts::Prefixes => ["/", "/api", "/api/v1", "/static"]
            .into_iter()
            .map(|p| (host(i), p))
            .collect(),
    }
}

/// `shape.pools` pools, each over its own Service with one slice of
/// `shape.endpoints_per_pool` ready endpoints (port 8080).
pub fn store(shape: &Shape) -> Store {
    let mut store = StoreBuilder::default();
    for i in 0..shape.pools {
        let name = pool_name(i);
        let addresses: Vec<String> = (0..shape.endpoints_per_pool)
            .map(|e| address((i * shape.endpoints_per_pool + e) as u32 + 1 + shape.address_salt))
            .collect();
        store = store
            .service(service(NS, &name, &[("http", 80)]))
            .slice(ready_slice(&format!("{name}-0"), &name, 8080, &addresses))
            .pool(pool(&name, &name, &routes(i, shape.hosts), shape));
    }
    store.build()
}

/// Replaces pool `i`'s backend Service with one whose single slice holds `addrs` (each with
/// its own port, one slice per address, as real test backends have).
pub fn point_pool_at(store: &mut Store, i: usize, addrs: &[SocketAddr], shape: &Shape) {
    let name = pool_name(i);
    store
        .slices
        .retain(|k, _| !(k.namespace == NS && k.name.starts_with(&format!("{name}-"))));
    let mut builder = StoreBuilder(std::mem::take(store));
    for (n, a) in addrs.iter().enumerate() {
        let slice_name = format!("{name}-{n}");
        let pod = endpoint(*a, EndpointState::Ready).pod(slice_name.clone());
        builder = builder.slice(backend_slice(NS, &name, &slice_name, &pod));
    }
    *store = builder
        .pool(pool(&name, &name, &routes(i, shape.hosts), shape))
        .build();
}

/// The socket of the Gateway in [`http_routes`].
pub const GATEWAY_SOCKET: &str = "127.0.0.1:8081";

/// One Gateway (class `weir`, an HTTP listener on 127.0.0.1:8081 taking routes from every
/// namespace) and `routes` HTTPRoutes: route `i` takes host [`host`]`(i)` with three rules over
/// its own Service (`endpoints_per_route` ready endpoints): a `/` prefix, a header match
/// (`x-variant: b`) and a query match (`variant=b`).
pub fn http_routes(routes: usize, endpoints_per_route: usize) -> Store {
    let mut store = StoreBuilder::default()
        .gateway_class(super::gateway_class())
        .gateway(super::gateway(
            NS,
            "gw",
            None,
            json!([super::http_listener("web", 8081, None)]),
        ));
    for i in 0..routes {
        let name = pool_name(i);
        let addresses: Vec<String> = (0..endpoints_per_route)
            .map(|e| address((i * endpoints_per_route + e) as u32 + 1))
            .collect();
        let to = json!([{ "name": name, "port": 80 }]);
        store = store
            .service(service(NS, &name, &[("http", 80)]))
            .slice(ready_slice(&format!("{name}-0"), &name, 8080, &addresses))
            .http_route(super::http_route(
                NS,
                &name,
                json!({
                    "parentRefs": [{ "name": "gw" }],
                    "hostnames": [host(i)],
                    "rules": [
                        { "backendRefs": to },
                        { "matches": [{ "headers": [{ "name": "x-variant", "value": "b" }] }],
                          "backendRefs": to },
                        { "matches": [{ "queryParams": [{ "name": "variant", "value": "b" }] }],
                          "backendRefs": to },
                    ],
                }),
            ));
    }
    store.build()
}
