//! Store builders shared by the benches and the scale examples (`#[path]`-included by
//! `examples/*.rs`). Objects are built in Rust, not parsed from YAML, so building a
//! 10 000-pool store takes a fraction of a second and is never part of what is measured.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use weir::api::LoadBalancerPool;
use weir::store::{ObjectKey, SERVICE_NAME_LABEL, ServicePorts, Slice, Store};

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

/// A Service `name` with one port `http` (80), as the store keeps it.
pub fn service(name: &str) -> Arc<ServicePorts> {
    let v = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "ports": [{ "name": "http", "port": 80 }] }
    });
    let service: Service = serde_json::from_value(v).expect("a valid Service");
    Arc::new(ServicePorts::from_service(&service))
}

/// One EndpointSlice of Service `service`, on `port`, with these ready addresses; each
/// endpoint names a pod, as in a cluster. What the store keeps of it, as the sources do.
pub fn slice(name: &str, service: &str, port: u16, addresses: &[String]) -> Arc<Slice> {
    let endpoints: Vec<Value> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({
                "addresses": [a],
                "conditions": { "ready": true, "serving": true, "terminating": false },
                "targetRef": { "kind": "Pod", "namespace": NS, "name": format!("{service}-{i}") }
            })
        })
        .collect();
    let v = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": { SERVICE_NAME_LABEL: service }
        },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": port, "protocol": "TCP" }],
        "endpoints": endpoints
    });
    let slice: EndpointSlice = serde_json::from_value(v).expect("a valid EndpointSlice");
    Arc::new(Slice::from_slice(&slice))
}

/// A pool over Service `service` (port `http`) with these routes `(host, prefix)`.
pub fn pool(
    name: &str,
    service: &str,
    routes: &[(String, &str)],
    shape: &Shape,
) -> Arc<LoadBalancerPool> {
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
    let mut metadata = json!({ "name": name, "namespace": NS });
    if shape.created {
        // Distinct times, one second apart, in the order of the pool numbers.
        let n: u64 = name
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let (d, h, m, s) = (1 + n / 86_400, (n / 3600) % 24, (n / 60) % 60, n % 60);
        metadata["creationTimestamp"] = json!(format!("2026-01-{d:02}T{h:02}:{m:02}:{s:02}Z"));
    }
    let v = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "LoadBalancerPool",
        "metadata": metadata,
        "spec": spec
    });
    Arc::new(serde_json::from_value(v).expect("a valid LoadBalancerPool"))
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
    let mut store = Store::default();
    for i in 0..shape.pools {
        let name = pool_name(i);
        let addresses: Vec<String> = (0..shape.endpoints_per_pool)
            .map(|e| address((i * shape.endpoints_per_pool + e) as u32 + 1 + shape.address_salt))
            .collect();
        let key = ObjectKey::new(NS, name.clone());
        store.services.insert(key.clone(), service(&name));
        store.slices.insert(
            ObjectKey::new(NS, format!("{name}-0")),
            slice(&format!("{name}-0"), &name, 8080, &addresses),
        );
        store
            .pools
            .insert(key, pool(&name, &name, &routes(i, shape.hosts), shape));
    }
    store
}

/// Replaces pool `i`'s backend Service with one whose single slice holds `addrs` (each with
/// its own port, one slice per address, as real test backends have).
pub fn point_pool_at(store: &mut Store, i: usize, addrs: &[SocketAddr], shape: &Shape) {
    let name = pool_name(i);
    store
        .slices
        .retain(|k, _| !(k.namespace == NS && k.name.starts_with(&format!("{name}-"))));
    for (n, a) in addrs.iter().enumerate() {
        let slice_name = format!("{name}-{n}");
        store.slices.insert(
            ObjectKey::new(NS, slice_name.clone()),
            slice(&slice_name, &name, a.port(), &[a.ip().to_string()]),
        );
    }
    store.pools.insert(
        pool_key(i),
        pool(&name, &name, &routes(i, shape.hosts), shape),
    );
}

/// Resident set size of this process, from `/proc/self/status` (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_field("/proc/self/status", "VmRSS:")
}

/// A `kB` field of a `/proc/.../status` file, in bytes.
pub fn status_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A minimal upstream for the example programs: answers `ok` to every request on every
/// connection `listener` accepts, forever.
pub async fn serve_ok(listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::body::Incoming;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req: http::Request<Incoming>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
