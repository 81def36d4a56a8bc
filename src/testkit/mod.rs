//! The fixtures every test, bench and example builds from: Services, EndpointSlices (with
//! endpoints in a named [`EndpointState`]), pools, TLS Secrets, and stores of them.
//!
//! Compiled only for the lib's own unit tests (`cfg(test)`) and with the `testkit` feature,
//! which the crate's self dev-dependency turns on for `tests/`, `benches/` and `examples/`;
//! `cargo build --bin weir` never has it.
//!
//! Objects are the real API types, built from JSON as the API server would send them, so a
//! fixture goes through the same deserializers (and, put in a [`StoreBuilder`], the same
//! `ServicePorts::from_service` and `Slice::from_slice`) as the sources use. To get a file a user
//! would write, serialize them: JSON is YAML too ([`to_document`]).
//!
//! ```ignore
//! use weir::testkit::{EndpointState::*, StoreBuilder, endpoint, pool, route_spec};
//! let compiled = StoreBuilder::default()
//!     .web("shop", "web", &[endpoint("10.0.0.1", Ready), endpoint("10.0.0.2", Terminating)])
//!     .pool(pool("shop", "web", route_spec("shop.test", "/", "web")))
//!     .compile();
//! ```

pub mod generated;

use crate::api::LoadBalancerPool;
use crate::api::gateway::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use crate::routing::{Compiled, compile};
use crate::store::{ObjectKey, SERVICE_NAME_LABEL, ServicePorts, Slice, Store};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Where an endpoint of a slice stands, as its EndpointSlice conditions say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointState {
    /// `ready: true, serving: true, terminating: false`: takes new traffic.
    Ready,
    /// `ready: false, serving: false, terminating: false`: not started, or failing its probe.
    NotReady,
    /// `ready: false, serving: false, terminating: true`: on its way out, serving nothing.
    Terminating,
    /// `ready: false, serving: true, terminating: true`: on its way out but still serving
    /// (weir fences it: no new traffic, kept for pinned and in-flight work).
    TerminatingServing,
}

impl EndpointState {
    /// The slice conditions, `(ready, serving, terminating)`.
    pub fn conditions(self) -> (bool, bool, bool) {
        match self {
            EndpointState::Ready => (true, true, false),
            EndpointState::NotReady => (false, false, false),
            EndpointState::Terminating => (false, false, true),
            EndpointState::TerminatingServing => (false, true, true),
        }
    }

    /// The state these conditions name; `None` for a combination no state has (such as
    /// ready but not serving).
    pub fn from_conditions(ready: bool, serving: bool, terminating: bool) -> Option<Self> {
        [
            EndpointState::Ready,
            EndpointState::NotReady,
            EndpointState::Terminating,
            EndpointState::TerminatingServing,
        ]
        .into_iter()
        .find(|s| s.conditions() == (ready, serving, terminating))
    }

    /// Ready, or not ready (and not terminating).
    pub fn ready_if(ready: bool) -> Self {
        if ready {
            EndpointState::Ready
        } else {
            EndpointState::NotReady
        }
    }
}

/// One endpoint of a slice: an address, its state, and the pod it is (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// The port, when the endpoint was given as a `SocketAddr`: a test backend's own port, for
    /// [`backend_slice`].
    pub port: Option<u16>,
    pub state: EndpointState,
    /// The pod's name, in the slice's namespace; none: the endpoint names no pod.
    pub pod: Option<String>,
}

/// An address an endpoint can be given as: `"10.0.0.1"`, an `IpAddr` or a `SocketAddr` (whose
/// port [`backend_slice`] uses; [`slice`] has its own ports).
pub trait Address {
    fn ip(&self) -> IpAddr;
    fn port(&self) -> Option<u16> {
        None
    }
}

impl Address for &str {
    fn ip(&self) -> IpAddr {
        self.parse().expect("a test address")
    }
}

impl Address for String {
    fn ip(&self) -> IpAddr {
        self.as_str().ip()
    }
}

impl Address for IpAddr {
    fn ip(&self) -> IpAddr {
        *self
    }
}

impl Address for SocketAddr {
    fn ip(&self) -> IpAddr {
        SocketAddr::ip(self)
    }
    fn port(&self) -> Option<u16> {
        Some(SocketAddr::port(self))
    }
}

/// An endpoint at `addr` in `state`, naming no pod.
pub fn endpoint(addr: impl Address, state: EndpointState) -> Endpoint {
    Endpoint {
        ip: addr.ip(),
        port: addr.port(),
        state,
        pod: None,
    }
}

impl Endpoint {
    /// The endpoint is pod `name` (in the slice's namespace).
    pub fn pod(mut self, name: impl Into<String>) -> Self {
        self.pod = Some(name.into());
        self
    }
}

/// Ports as `(name, number)`; an empty name is a port without one.
fn ports(ports: &[(&str, i32)]) -> Value {
    ports
        .iter()
        .map(|&(name, port)| {
            if name.is_empty() {
                json!({ "port": port })
            } else {
                json!({ "name": name, "port": port })
            }
        })
        .collect()
}

/// A Service `namespace/name` with these ports `(name, port)`.
pub fn service(namespace: &str, name: &str, service_ports: &[(&str, i32)]) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "ports": ports(service_ports) },
    }))
    .expect("a valid Service")
}

/// An EndpointSlice `namespace/name` of Service `service`, with these ports `(name, port)`
/// and endpoints; its address type is the first endpoint's family (IPv4 when it has none).
pub fn slice(
    namespace: &str,
    service: &str,
    name: &str,
    slice_ports: &[(&str, i32)],
    endpoints: &[Endpoint],
) -> EndpointSlice {
    let family = match endpoints.first() {
        Some(e) if e.ip.is_ipv6() => "IPv6",
        _ => "IPv4",
    };
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            let (ready, serving, terminating) = e.state.conditions();
            let mut v = json!({
                "addresses": [e.ip.to_string()],
                "conditions": { "ready": ready, "serving": serving, "terminating": terminating },
            });
            if let Some(pod) = &e.pod {
                v["targetRef"] = json!({ "kind": "Pod", "namespace": namespace, "name": pod });
            }
            v
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": namespace,
                      "labels": { SERVICE_NAME_LABEL: service } },
        "addressType": family,
        "ports": ports(slice_ports),
        "endpoints": endpoints,
    }))
    .expect("a valid EndpointSlice")
}

/// A slice `name` of Service `service` holding one endpoint on its own port (named `http`), as
/// each test backend listens on a port of its own; the endpoint must have been given as a
/// `SocketAddr`.
pub fn backend_slice(
    namespace: &str,
    service: &str,
    name: &str,
    endpoint: &Endpoint,
) -> EndpointSlice {
    let port = endpoint
        .port
        .expect("a backend slice's endpoint given as a SocketAddr");
    slice(
        namespace,
        service,
        name,
        &[("http", port.into())],
        std::slice::from_ref(endpoint),
    )
}

/// A pool `namespace/name` with this spec (see [`route_spec`] for the usual one).
pub fn pool(namespace: &str, name: &str, spec: Value) -> LoadBalancerPool {
    serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "LoadBalancerPool",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    }))
    .expect("a valid LoadBalancerPool")
}

/// `pool` as the API server would have created it at `time` (RFC 3339); pools from a file have
/// no creation time.
pub fn created(mut pool: LoadBalancerPool, time: &str) -> LoadBalancerPool {
    pool.metadata.creation_timestamp =
        Some(serde_json::from_value(json!(time)).expect("an RFC 3339 time"));
    pool
}

/// The spec of a pool with one route `(host, path prefix)` to Service `service`, port `http`.
pub fn route_spec(host: &str, prefix: &str, service: &str) -> Value {
    json!({
        "routes": [{ "host": host, "pathPrefix": prefix }],
        "backends": [{ "service": service, "port": "http" }],
    })
}

/// A `kubernetes.io/tls` Secret `namespace/name` holding this chain and key (PEM, or any
/// bytes: the fuzz targets give it damaged ones).
pub fn tls_secret(
    namespace: &str,
    name: &str,
    crt_pem: impl AsRef<[u8]>,
    key_pem: impl AsRef<[u8]>,
) -> Secret {
    use base64::Engine;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "namespace": namespace },
        "type": "kubernetes.io/tls",
        "data": { "tls.crt": b64(crt_pem.as_ref()), "tls.key": b64(key_pem.as_ref()) },
    }))
    .expect("a valid Secret")
}

/// The GatewayClass `weir`, of weir's controllerName.
pub fn gateway_class() -> GatewayClass {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": { "name": "weir" },
        "spec": { "controllerName": crate::api::gateway::CONTROLLER_NAME },
    }))
    .expect("a valid GatewayClass")
}

/// A Gateway `namespace/name` of class `weir` with these listeners (the API's JSON), on
/// `address` when given.
pub fn gateway(namespace: &str, name: &str, address: Option<&str>, listeners: Value) -> Gateway {
    let mut spec = json!({ "gatewayClassName": "weir", "listeners": listeners });
    if let Some(a) = address {
        spec["addresses"] = json!([{ "type": "IPAddress", "value": a }]);
    }
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    }))
    .expect("a valid Gateway")
}

/// The Service weir makes for Gateway `gateway` (service mode), in `namespace`: type
/// `service_type`, each `(port, targetPort)`, cluster IP `cluster_ip`, and
/// `status.loadBalancer.ingress` (the API's JSON, e.g. `json!([{ "ip": "192.0.2.1" }])`).
pub fn gateway_service(
    namespace: &str,
    gateway: (&str, &str),
    service_type: &str,
    service_ports: &[(u16, u16)],
    cluster_ip: &str,
    ingress: Value,
) -> Service {
    use crate::api::gateway::{GATEWAY_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, service_name};
    let ports: Vec<Value> = service_ports
        .iter()
        .map(|(port, target)| json!({ "name": format!("p{port}"), "port": port, "targetPort": target }))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": service_name(gateway.0, gateway.1), "namespace": namespace,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY },
            "annotations": { GATEWAY_ANNOTATION: format!("{}/{}", gateway.0, gateway.1) },
        },
        "spec": { "type": service_type, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports },
        "status": { "loadBalancer": { "ingress": ingress } },
    }))
    .expect("a valid Service")
}

/// One plain-HTTP listener `name` on `port`, taking routes from every namespace.
pub fn http_listener(name: &str, port: u16, hostname: Option<&str>) -> Value {
    let mut l = json!({ "name": name, "port": port, "protocol": "HTTP",
                        "allowedRoutes": { "namespaces": { "from": "All" } } });
    if let Some(h) = hostname {
        l["hostname"] = json!(h);
    }
    l
}

/// An HTTPRoute `namespace/name` with this spec (the API's JSON).
pub fn http_route(namespace: &str, name: &str, spec: Value) -> HTTPRoute {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    }))
    .expect("a valid HTTPRoute")
}

/// A GRPCRoute `namespace/name` with this spec (the API's JSON).
pub fn grpc_route(namespace: &str, name: &str, spec: Value) -> GRPCRoute {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    }))
    .expect("a valid GRPCRoute")
}

/// A ReferenceGrant in `namespace` letting `from_kind` objects of `from_namespace` refer to
/// every `to_kind` (core group for `Service`/`Secret`) here.
pub fn reference_grant(
    namespace: &str,
    name: &str,
    from_kind: &str,
    from_namespace: &str,
    to_kind: &str,
) -> ReferenceGrant {
    let to_group = if to_kind == "Service" || to_kind == "Secret" {
        ""
    } else {
        "weir.dev"
    };
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "ReferenceGrant",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "from": [{ "group": crate::api::gateway::GROUP, "kind": from_kind, "namespace": from_namespace }],
            "to": [{ "group": to_group, "kind": to_kind }],
        },
    }))
    .expect("a valid ReferenceGrant")
}

/// An object as one document of a file `weir serve` reads (JSON, which is YAML too), ending in
/// a newline.
pub fn to_document(object: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string(object).expect("the object serializes");
    text.push('\n');
    text
}

/// A store built object by object, keeping of each what the sources keep.
#[derive(Debug, Default, Clone)]
pub struct StoreBuilder(pub Store);

impl StoreBuilder {
    pub fn pool(mut self, pool: LoadBalancerPool) -> Self {
        self.0
            .pools
            .insert(ObjectKey::of(&pool.metadata), Arc::new(pool));
        self
    }

    pub fn service(mut self, service: Service) -> Self {
        self.0.services.insert(
            ObjectKey::of(&service.metadata),
            Arc::new(ServicePorts::from_service(&service)),
        );
        self
    }

    pub fn slice(mut self, slice: EndpointSlice) -> Self {
        self.0.slices.insert(
            ObjectKey::of(&slice.metadata),
            Arc::new(Slice::from_slice(&slice)),
        );
        self
    }

    pub fn secret(mut self, secret: Secret) -> Self {
        let key = ObjectKey::of(&secret.metadata);
        self.0.secrets.insert(key, Arc::new(secret.into()));
        self
    }

    /// A Service `namespace/name` with port `http` (80), and one slice `{name}-abc` with these
    /// endpoints on 8080.
    pub fn web(self, namespace: &str, name: &str, endpoints: &[Endpoint]) -> Self {
        self.service(service(namespace, name, &[("http", 80)]))
            .slice(slice(
                namespace,
                name,
                &format!("{name}-abc"),
                &[("http", 8080)],
                endpoints,
            ))
    }

    pub fn gateway_class(mut self, class: GatewayClass) -> Self {
        let name = class.metadata.name.clone().unwrap_or_default();
        self.0.gateway_classes.insert(name, Arc::new(class));
        self
    }

    pub fn gateway(mut self, gateway: Gateway) -> Self {
        self.0
            .gateways
            .insert(ObjectKey::of(&gateway.metadata), Arc::new(gateway));
        self
    }

    pub fn http_route(mut self, route: HTTPRoute) -> Self {
        self.0
            .http_routes
            .insert(ObjectKey::of(&route.metadata), Arc::new(route));
        self
    }

    pub fn grpc_route(mut self, route: GRPCRoute) -> Self {
        self.0
            .grpc_routes
            .insert(ObjectKey::of(&route.metadata), Arc::new(route));
        self
    }

    pub fn reference_grant(mut self, grant: ReferenceGrant) -> Self {
        self.0
            .reference_grants
            .insert(ObjectKey::of(&grant.metadata), Arc::new(grant));
        self
    }

    pub fn store(&self) -> &Store {
        &self.0
    }

    pub fn build(self) -> Store {
        self.0
    }

    /// The table and statuses of this store, compiled from scratch.
    pub fn compile(&self) -> Compiled {
        compile(&self.0, None)
    }
}

/// `report` as an `OrcaLoadReport` protobuf, the bytes a pod base64-encodes into
/// `endpoint-load-metrics-bin` (fields at 0 left out, as protobuf writers do).
pub fn orca_protobuf(report: &crate::load_report::LoadReport) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn double(out: &mut Vec<u8>, field: u64, v: f64) {
        if v != 0.0 {
            varint(out, field << 3 | 1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let mut out = Vec::new();
    double(&mut out, 1, report.cpu_utilization);
    double(&mut out, 2, report.mem_utilization);
    for (field, map) in [
        (4, &report.request_cost),
        (5, &report.utilization),
        (8, &report.named_metrics),
    ] {
        for (key, value) in map {
            let mut entry = Vec::new();
            varint(&mut entry, 1 << 3 | 2);
            varint(&mut entry, key.len() as u64);
            entry.extend_from_slice(key.as_bytes());
            varint(&mut entry, 2 << 3 | 1);
            entry.extend_from_slice(&value.to_le_bytes());
            varint(&mut out, field << 3 | 2);
            varint(&mut out, entry.len() as u64);
            out.extend_from_slice(&entry);
        }
    }
    double(&mut out, 6, report.rps_fractional);
    double(&mut out, 7, report.eps);
    double(&mut out, 9, report.application_utilization);
    out
}

/// `report` in the `TEXT` form of `endpoint-load-metrics`.
pub fn orca_text(report: &crate::load_report::LoadReport) -> String {
    let mut pairs = vec![
        format!("cpu_utilization={}", report.cpu_utilization),
        format!("mem_utilization={}", report.mem_utilization),
        format!("application_utilization={}", report.application_utilization),
        format!("rps_fractional={}", report.rps_fractional),
        format!("eps={}", report.eps),
    ];
    for (prefix, map) in [
        ("named_metrics", &report.named_metrics),
        ("request_cost", &report.request_cost),
        ("utilization", &report.utilization),
    ] {
        pairs.extend(map.iter().map(|(k, v)| format!("{prefix}.{k}={v}")));
    }
    format!("TEXT {}", pairs.join(","))
}
