//! The Gateway API step of compile: GatewayClasses, Gateways and HTTPRoutes from the store
//! into the table's Gateway sockets (`GatewayPort`), and the status of each, as the spec
//! words it.
//!
//! It runs after the LoadBalancerPools are compiled, so a route's backendRef of kind
//! `weir.dev/LoadBalancerPool` finds its pool (and with it the pool's algorithm, health checks,
//! outlier detection, affinity, slow start and retries). A backendRef to a Service gets a pool
//! of its own rule, balanced round robin with weir's defaults.

mod service;

pub use service::ServicePlan;

use super::{Resolved, Reuse, SecretCache, SliceIndex, backend_set, policy};
use crate::api::gateway::FilterType;
use crate::api::gateway::{
    BackendObjectReference, CONTROLLER_NAME, GROUP, Gateway, GatewayStatusAddress, HTTPBackendRef,
    HTTPRequestMirrorFilter, HTTPRoute, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule,
    ReferenceGrant, RouteGroupKind, parse_duration,
};
use crate::api::{
    Algorithm, Backend, Condition, LoadBalancerPoolSpec, Retries, ServicePort, Timeouts,
};
use crate::routing::gateway::{
    self as rules, AddressError, GatewayAddresses, GatewayPort, HeaderEdit, Intersection,
    ListenerRef, Mirror, PortRange, Protocol, Redirect, RequestMatch, Rewrite, RouteKind,
    RouteRule, RuleBackends, RuleFilters, RuleKey, RuleMatch, Sample, Side,
};
use crate::routing::pool::Pool;
use crate::routing::table::RoutingTable;
use crate::store::{ObjectKey, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Where a Gateway listens when it names no address and weir was given no range: loopback,
/// so a file tried on a laptop is not exposed to the network.
pub const DEFAULT_GATEWAY_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The group of weir's own kinds, for backendRefs to a LoadBalancerPool.
const WEIR_GROUP: &str = "weir.dev";

/// What the Gateway API step says of each object, for status writing and `weir check`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GatewayStatuses {
    /// GatewayClasses of weir's controllerName, by name.
    pub classes: BTreeMap<String, ObjectReport>,
    /// Gateways of those classes.
    pub gateways: BTreeMap<ObjectKey, GatewayReport>,
    /// HTTPRoutes with a parentRef to one of those Gateways: one entry per such parentRef.
    pub http_routes: BTreeMap<ObjectKey, Vec<ParentReport>>,
    /// GRPCRoutes, the same way.
    pub grpc_routes: BTreeMap<ObjectKey, Vec<ParentReport>>,
    /// Service mode: what the Service of each Gateway that serves should hold.
    pub services: BTreeMap<ObjectKey, ServicePlan>,
}

/// Conditions of an object, with the generation they describe.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReport {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    /// The address its listeners are bound to (`0.0.0.0` in service mode).
    pub address: Option<IpAddr>,
    /// Its `status.addresses`: `address`, or in service mode its Service's.
    pub addresses: Vec<GatewayStatusAddress>,
    pub listeners: Vec<ListenerReport>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerReport {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached_routes: i32,
    pub conditions: Vec<Condition>,
}

/// One parentRef of a route, and what weir says of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReport {
    pub parent_ref: crate::api::gateway::ParentReference,
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
}

/// A Gateway API condition: the type and reason are the spec's words.
fn condition(
    type_: &'static str,
    ok: bool,
    reason: &'static str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: generation,
    }
}

/// A Gateway of ours, as far as routes need it.
struct Accepted<'s> {
    key: ObjectKey,
    gateway: &'s Gateway,
    /// Per listener: whether routes attach, and where they are served.
    usable: Vec<ListenerUse>,
}

/// What one listener does with routes. A listener whose certificate does not resolve still
/// takes routes (they count in `attachedRoutes`, as the spec wants) but serves none; a
/// conflicted or unsupported one takes none.
#[derive(Debug, Clone, Copy, Default)]
struct ListenerUse {
    attachable: bool,
    socket: Option<SocketAddr>,
}

/// Runs the Gateway API step into `table`.
pub(super) fn compile_gateways(
    store: &Store,
    slices: &SliceIndex<'_>,
    secrets: &mut SecretCache<'_>,
    previous: Option<&RoutingTable>,
    default_addresses: &GatewayAddresses,
    table: &mut RoutingTable,
) -> GatewayStatuses {
    let mut statuses = GatewayStatuses::default();
    for (name, class) in &store.gateway_classes {
        if class.spec.controller_name == CONTROLLER_NAME {
            let generation = class.metadata.generation;
            statuses.classes.insert(
                name.clone(),
                ObjectReport {
                    observed_generation: generation,
                    conditions: vec![condition(
                        "Accepted",
                        true,
                        "Accepted",
                        "weir serves Gateways of this class",
                        generation,
                    )],
                },
            );
        }
    }
    let grants: Vec<&ReferenceGrant> = store.reference_grants.values().map(|g| &**g).collect();
    let mut gateways: Vec<(&ObjectKey, &Arc<Gateway>)> = store
        .gateways
        .iter()
        .filter(|(_, g)| statuses.classes.contains_key(&g.spec.gateway_class_name))
        .collect();
    gateways.sort_by_key(|(key, g)| (created(&g.metadata), *key));
    let held: BTreeMap<ObjectKey, IpAddr> = previous
        .into_iter()
        .flat_map(|t| t.gateway_ports())
        .flat_map(|p| p.listeners.iter().map(|l| (l.gateway.clone(), p.addr.ip())))
        .collect();
    let addresses = rules::assign(
        gateways.iter().map(|(k, g)| (*k, &***g)),
        &held,
        default_addresses,
    );
    // Service mode: a pod port per (Gateway, listener port), kept as the Services (then the
    // table in service) have it.
    let service_mode = match default_addresses {
        GatewayAddresses::Services { ports, namespace } => {
            let services = service::services(store, namespace);
            let from_services = service::held_ports(&services);
            let from_table = previous
                .map(|t| t.gateway_pod_ports.clone())
                .unwrap_or_default();
            let wanting = gateways
                .iter()
                .filter(|(key, _)| matches!(addresses.get(*key), Some(Ok(_))))
                .map(|(key, g)| (*key, listener_ports(g)));
            Some(ServiceMode {
                namespace,
                pod_ports: rules::assign_pod_ports(wanting, &[&from_services, &from_table], *ports),
                services,
                range: *ports,
            })
        }
        _ => None,
    };
    let mut accepted = Vec::new();
    for (key, gateway) in gateways {
        let address = addresses
            .get(key)
            .cloned()
            .unwrap_or(Ok(DEFAULT_GATEWAY_ADDRESS));
        let pod_ports = service_mode.as_ref().map(|m| {
            let given = m.pod_ports.get(key).cloned().unwrap_or_default();
            (given, m.range)
        });
        let (mut report, usable) = compile_gateway(
            key,
            gateway,
            address,
            pod_ports.as_ref().map(|(given, range)| (given, *range)),
            secrets,
            &grants,
            table,
        );
        if let Some(mode) = &service_mode {
            // The Service takes the listener ports whose listeners serve.
            let ports: BTreeMap<u16, u16> = gateway
                .spec
                .listeners
                .iter()
                .zip(&usable)
                .filter_map(|(l, u)| Some((u16::try_from(l.port).ok()?, u.socket?.port())))
                .collect();
            if !ports.is_empty() {
                let class = store.gateway_classes.get(&gateway.spec.gateway_class_name);
                statuses.services.insert(
                    key.clone(),
                    ServicePlan::new(gateway, class.map(|c| &**c), ports),
                );
                let own = mode.services.get(key).copied();
                service::report_addresses(&mut report, key, mode.namespace, own);
            } else {
                // No listener serves: no Service, so no address (0.0.0.0 is no one's).
                report.addresses.clear();
            }
        }
        statuses.gateways.insert(key.clone(), report);
        accepted.push(Accepted {
            key: key.clone(),
            gateway,
            usable,
        });
    }
    if let Some(mode) = service_mode {
        table.gateway_pod_ports = mode.pod_ports;
    }

    // Per socket: (listener hostname, route hostname, precedence, match).
    type Pending = Vec<(Option<String>, Option<String>, RuleKey, RuleMatch)>;
    let mut pending: BTreeMap<SocketAddr, Pending> = BTreeMap::new();
    // GRPCRoutes are served as the HTTPRoutes they amount to, with their own kind.
    let grpc: Vec<(&ObjectKey, HTTPRoute)> = store
        .grpc_routes
        .iter()
        .map(|(k, r)| (k, rules::as_http_route(r)))
        .collect();
    let mut routes: Vec<(RouteKind, &ObjectKey, &HTTPRoute)> = store
        .http_routes
        .iter()
        .map(|(k, r)| (RouteKind::Http, k, &**r))
        .chain(grpc.iter().map(|(k, r)| (RouteKind::Grpc, *k, r)))
        .collect();
    routes.sort_by_key(|(kind, key, r)| (created(&r.metadata), *kind, *key));
    for (kind, key, route) in routes {
        let ours: Vec<_> = route
            .spec
            .parent_refs
            .iter()
            .filter_map(|p| {
                let g = accepted
                    .iter()
                    .find(|g| rules::names_gateway(p, &key.namespace, g.gateway))?;
                Some((p, g))
            })
            .collect();
        if ours.is_empty() {
            continue;
        }
        let generation = route.metadata.generation;
        let compiled = compile_route(kind, key, route, store, slices, &grants, previous, table);
        let mut parents = Vec::new();
        for (parent, gateway) in ours {
            let mut conditions = Vec::new();
            let attached = match &compiled {
                Err(problem) => {
                    conditions.push(condition(
                        "Accepted",
                        false,
                        "UnsupportedValue",
                        problem.clone(),
                        generation,
                    ));
                    None
                }
                Ok(_) => {
                    let route_view = rules::Route {
                        kind,
                        namespace: &key.namespace,
                        hostnames: &route.spec.hostnames,
                    };
                    let labels = |ns: &str| store.namespace_labels.get(ns).map(|l| &**l);
                    match rules::attach(
                        route_view,
                        parent,
                        gateway.gateway,
                        |i| gateway.usable.get(i).is_some_and(|u| u.attachable),
                        labels,
                    ) {
                        Ok(listeners) => {
                            conditions.push(condition(
                                "Accepted", true, "Accepted", "attached", generation,
                            ));
                            Some(listeners)
                        }
                        Err(refusal) => {
                            conditions.push(condition(
                                "Accepted",
                                false,
                                refusal.reason(),
                                refusal.to_string(),
                                generation,
                            ));
                            None
                        }
                    }
                }
            };
            let refs = match &compiled {
                Ok(c) => c.resolved_refs.clone(),
                Err(_) => ("ResolvedRefs", "all references resolved".to_string()),
            };
            conditions.push(condition(
                "ResolvedRefs",
                refs.0 == "ResolvedRefs",
                refs.0,
                refs.1,
                generation,
            ));
            if let (Some(listeners), Ok(compiled)) = (attached, &compiled) {
                let mut report = statuses.gateways.get_mut(&gateway.key);
                for (index, hosts) in listeners {
                    if let Some(r) = report.as_mut().and_then(|r| r.listeners.get_mut(index)) {
                        r.attached_routes += 1;
                    }
                    let Some(ListenerUse {
                        socket: Some(addr), ..
                    }) = gateway.usable.get(index)
                    else {
                        continue;
                    };
                    let hosts: Vec<Option<String>> = match hosts {
                        Intersection::Listener(h) => vec![h],
                        Intersection::Hosts(hs) => hs.into_iter().map(Some).collect(),
                        Intersection::None => Vec::new(),
                    };
                    let list = pending.entry(*addr).or_default();
                    let listener_host = gateway.gateway.spec.listeners[index]
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty());
                    for host in hosts {
                        for (order, matcher, rule) in &compiled.matches {
                            list.push((
                                listener_host.clone(),
                                host.clone(),
                                order.clone(),
                                RuleMatch {
                                    matcher: matcher.clone(),
                                    rule: rule.clone(),
                                },
                            ));
                        }
                    }
                }
            }
            parents.push(ParentReport {
                parent_ref: parent.clone(),
                observed_generation: generation,
                conditions,
            });
        }
        match kind {
            RouteKind::Http => statuses.http_routes.insert(key.clone(), parents),
            RouteKind::Grpc => statuses.grpc_routes.insert(key.clone(), parents),
        };
    }
    for (addr, mut list) in pending {
        list.sort_by(|a, b| a.2.cmp(&b.2));
        if let Some(port) = table.gateway_ports.get_mut(&addr) {
            for (listener, host, _, entry) in list {
                port.insert_match(listener.as_deref(), host.as_deref(), entry);
            }
        }
    }
    statuses
}

/// What compile knows in service mode.
struct ServiceMode<'s> {
    /// weir's namespace, where the Gateways' Services are.
    namespace: &'s str,
    /// Those Services, by Gateway.
    services: BTreeMap<ObjectKey, &'s crate::store::GatewayService>,
    pod_ports: rules::PodPorts,
    range: PortRange,
}

/// A Gateway's listener ports (those that are TCP ports at all).
fn listener_ports(gateway: &Gateway) -> std::collections::BTreeSet<u16> {
    gateway
        .spec
        .listeners
        .iter()
        .filter_map(|l| u16::try_from(l.port).ok().filter(|p| *p > 0))
        .collect()
}

/// A creation time for ordering: oldest first, objects without one (from a file) first too,
/// then by key.
fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.creation_timestamp
        .as_ref()
        .map_or(i64::MIN, |t| t.0.as_second())
}

/// One Gateway: its address, each listener judged, certificates loaded, sockets claimed.
fn compile_gateway(
    key: &ObjectKey,
    gateway: &Gateway,
    address: Result<IpAddr, AddressError>,
    pod_ports: Option<(&BTreeMap<u16, u16>, PortRange)>,
    secrets: &mut SecretCache<'_>,
    grants: &[&ReferenceGrant],
    table: &mut RoutingTable,
) -> (GatewayReport, Vec<ListenerUse>) {
    let generation = gateway.metadata.generation;
    let mut report = GatewayReport {
        observed_generation: generation,
        ..Default::default()
    };
    let address = match address {
        Ok(address) => address,
        Err(problem) => {
            let message = problem.to_string();
            report.conditions = vec![
                condition(
                    "Accepted",
                    false,
                    "UnsupportedAddress",
                    message.clone(),
                    generation,
                ),
                condition(
                    "Programmed",
                    false,
                    "AddressNotAssigned",
                    message,
                    generation,
                ),
            ];
            report.listeners = gateway
                .spec
                .listeners
                .iter()
                .map(|l| ListenerReport {
                    name: l.name.clone(),
                    supported_kinds: supported_kinds(l),
                    attached_routes: 0,
                    conditions: vec![condition(
                        "Programmed",
                        false,
                        "Invalid",
                        "the Gateway has no address",
                        generation,
                    )],
                })
                .collect();
            let none = vec![ListenerUse::default(); gateway.spec.listeners.len()];
            return (report, none);
        }
    };
    report.address = Some(address);
    report.addresses = vec![GatewayStatusAddress {
        r#type: Some("IPAddress".to_string()),
        value: address.to_string(),
    }];
    let problems = rules::judge_listeners(gateway);
    let mut usable = Vec::new();
    let mut accepted_listeners = 0;
    for (listener, problems) in gateway.spec.listeners.iter().zip(problems) {
        let mut conditions = Vec::new();
        let protocol = Protocol::of(listener);
        let mut blocked = problems.iter().any(|p| p.blocks_routes());
        let (mut accepted, mut conflicted, mut refs) = (None, None, None);
        for problem in &problems {
            let (kind, reason) = problem.condition();
            let text = problem.to_string();
            match kind {
                "Accepted" => accepted = Some((reason, text)),
                "Conflicted" => conflicted = Some((reason, text)),
                _ => refs = Some((reason, text)),
            }
        }
        let port = u16::try_from(listener.port).ok().filter(|p| *p > 0);
        if port.is_none() && accepted.is_none() {
            accepted = Some((
                "PortUnavailable",
                format!("port {} is not a TCP port", listener.port),
            ));
            blocked = true;
        }
        // In service mode the socket is the pod port the listener port was given.
        let socket_port = match (port, pod_ports) {
            (Some(p), Some((given, range))) => {
                let pod = given.get(&p).copied();
                if pod.is_none() && accepted.is_none() {
                    accepted = Some((
                        "PortUnavailable",
                        format!("no free pod port for port {p} in --gateway-ports {range}"),
                    ));
                    blocked = true;
                }
                pod
            }
            (port, _) => port,
        };
        let addr = socket_port.map(|p| SocketAddr::new(address, p));
        let attachable = !blocked;
        let mut certificate = None;
        if protocol == Protocol::Https && !blocked {
            match listener_certificate(key, listener, secrets, grants) {
                Ok(c) => certificate = Some(c),
                Err((reason, message)) => {
                    refs = Some((reason, message));
                    blocked = true;
                }
            }
        }
        if let (Some(addr), false) = (addr, blocked) {
            match table.gateway_ports.get(&addr) {
                Some(other) if other.listeners.iter().any(|l| &l.gateway != key) => {
                    let holder = &other.listeners[0].gateway;
                    accepted = Some((
                        "PortUnavailable",
                        format!("{addr} is served by Gateway {holder}"),
                    ));
                    blocked = true;
                }
                Some(other) if other.tls != (protocol == Protocol::Https) => blocked = true,
                _ => {}
            }
        }
        let serving = match (addr, blocked) {
            (Some(addr), false) => {
                let port = table.gateway_ports.entry(addr).or_insert_with(|| {
                    GatewayPort::new(addr, protocol == Protocol::Https, port.unwrap_or_default())
                });
                port.listeners.push(ListenerRef {
                    gateway: key.clone(),
                    listener: listener.name.clone(),
                });
                port.insert_listener(listener.hostname.as_deref().filter(|h| !h.is_empty()));
                if let Some(c) = certificate {
                    port.insert_certificate(listener.hostname.as_deref(), c);
                }
                Some(addr)
            }
            _ => None,
        };
        let (reason, message) = accepted
            .clone()
            .unwrap_or(("Accepted", "listener accepted".to_string()));
        conditions.push(condition(
            "Accepted",
            accepted.is_none(),
            reason,
            message,
            generation,
        ));
        let (reason, message) = conflicted
            .clone()
            .unwrap_or(("NoConflicts", "no conflicts".to_string()));
        conditions.push(condition(
            "Conflicted",
            conflicted.is_some(),
            reason,
            message,
            generation,
        ));
        let (reason, message) = refs
            .clone()
            .unwrap_or(("ResolvedRefs", "all references resolved".to_string()));
        conditions.push(condition(
            "ResolvedRefs",
            refs.is_none(),
            reason,
            message,
            generation,
        ));
        conditions.push(match serving {
            Some(addr) => condition(
                "Programmed",
                true,
                "Programmed",
                format!("served on {addr}"),
                generation,
            ),
            None => condition(
                "Programmed",
                false,
                "Invalid",
                "the listener takes no traffic",
                generation,
            ),
        });
        let listener_accepted = accepted.is_none();
        report.listeners.push(ListenerReport {
            name: listener.name.clone(),
            supported_kinds: supported_kinds(listener),
            attached_routes: 0,
            conditions,
        });
        usable.push(ListenerUse {
            attachable,
            socket: serving,
        });
        accepted_listeners += usize::from(listener_accepted);
    }
    let listening = usable.iter().filter(|u| u.socket.is_some()).count();
    let all = gateway.spec.listeners.len();
    // The spec: a Gateway is Accepted when at least one listener is; ListenersNotValid says
    // that some (or all) are not.
    let accepted = match accepted_listeners {
        n if n == all => condition("Accepted", true, "Accepted", "Gateway accepted", generation),
        0 => condition(
            "Accepted",
            false,
            "ListenersNotValid",
            "no listener is accepted",
            generation,
        ),
        n => condition(
            "Accepted",
            true,
            "ListenersNotValid",
            format!("{n} of {all} listeners accepted"),
            generation,
        ),
    };
    report.conditions = vec![
        accepted,
        if listening > 0 {
            condition(
                "Programmed",
                true,
                "Programmed",
                format!("{listening} listener(s) on {address}"),
                generation,
            )
        } else {
            condition(
                "Programmed",
                false,
                "Invalid",
                "no listener can take traffic",
                generation,
            )
        },
    ];
    (report, usable)
}

/// The kinds a listener takes, for its status: none for a protocol weir does not serve.
fn supported_kinds(listener: &crate::api::gateway::Listener) -> Vec<RouteGroupKind> {
    if !matches!(Protocol::of(listener), Protocol::Http | Protocol::Https) {
        return Vec::new();
    }
    rules::allowed_kinds(listener)
        .into_iter()
        .map(|k| RouteGroupKind {
            group: Some(GROUP.to_string()),
            kind: k.as_str().to_string(),
        })
        .collect()
}

/// The first certificate of an HTTPS listener's `certificateRefs` that is permitted and loads;
/// else the reason and message of `ResolvedRefs=False`.
fn listener_certificate(
    key: &ObjectKey,
    listener: &crate::api::gateway::Listener,
    secrets: &mut SecretCache<'_>,
    grants: &[&ReferenceGrant],
) -> Result<Arc<rustls::sign::CertifiedKey>, (&'static str, String)> {
    let refs = listener
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or_default();
    let mut problem = (
        "InvalidCertificateRef",
        "an HTTPS listener needs tls.certificateRefs".to_string(),
    );
    for r in refs {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        let namespace = r.namespace.as_deref().unwrap_or(&key.namespace);
        if !group.is_empty() || kind != "Secret" {
            problem = (
                "InvalidCertificateRef",
                format!("certificateRef of kind {group}/{kind}: only core Secrets are supported"),
            );
            continue;
        }
        let from = Side {
            group: GROUP,
            kind: "Gateway",
            namespace: &key.namespace,
        };
        let to = Side {
            group: "",
            kind: "Secret",
            namespace,
        };
        if !rules::permits(grants.iter().copied(), from, to, &r.name) {
            problem = (
                "RefNotPermitted",
                format!(
                    "Secret {namespace}/{} is in another namespace and no ReferenceGrant allows it",
                    r.name
                ),
            );
            continue;
        }
        match secrets.load(&ObjectKey::new(namespace, r.name.clone())) {
            Ok(certificate) => return Ok(certificate.key),
            Err(e) => {
                problem = (
                    "InvalidCertificateRef",
                    format!("Secret {namespace}/{}: {e}", r.name),
                );
            }
        }
    }
    Err(problem)
}

/// A route's rules, compiled once for every parent it attaches to.
struct CompiledRoute {
    /// Each match of each rule, with its precedence.
    matches: Vec<(RuleKey, RequestMatch, Arc<RouteRule>)>,
    /// `ResolvedRefs`: its reason and message.
    resolved_refs: (&'static str, String),
}

/// Compiles every rule of `route`; an `Err` is a rule weir cannot serve as written (a filter
/// it does not support, a match it cannot compile): the whole route is refused, with why.
#[allow(clippy::too_many_arguments)]
fn compile_route(
    kind: RouteKind,
    key: &ObjectKey,
    route: &HTTPRoute,
    store: &Store,
    slices: &SliceIndex<'_>,
    grants: &[&ReferenceGrant],
    previous: Option<&RoutingTable>,
    table: &mut RoutingTable,
) -> Result<CompiledRoute, String> {
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second());
    let default_rule = [HTTPRouteRule::default()];
    let rule_list: &[HTTPRouteRule] = if route.spec.rules.is_empty() {
        &default_rule
    } else {
        &route.spec.rules
    };
    let mut out = CompiledRoute {
        matches: Vec::new(),
        resolved_refs: ("ResolvedRefs", "all references resolved".to_string()),
    };
    let mut refs_problems: Vec<String> = Vec::new();
    let mut refs_reason = None;
    for (index, rule) in rule_list.iter().enumerate() {
        let here = |what: String| format!("rules[{index}]: {what}");
        let (filters, mirror_filters) = compile_filters(&rule.filters).map_err(here)?;
        if filters.redirect.is_some() && filters.rewrite.is_some() {
            return Err(here(
                "RequestRedirect and URLRewrite cannot both be set".to_string(),
            ));
        }
        if replaces_prefix(&rule.filters) && !every_match_is_one_prefix(&rule.matches) {
            return Err(here(
                "ReplacePrefixMatch needs every match of the rule to be a PathPrefix".to_string(),
            ));
        }
        if let Some(f) = rule.backend_refs.iter().find(|b| !b.filters.is_empty()) {
            return Err(here(format!(
                "backendRef {} has filters; weir supports filters on rules only",
                f.backend.object.name
            )));
        }
        let pool_key = ObjectKey::new(
            key.namespace.clone(),
            format!("{}/{}/rule-{index}", kind.as_str().to_lowercase(), key.name),
        );
        let previous_pool = previous.and_then(|t| t.pool(&pool_key));
        let spec = rule_pool_spec(rule).map_err(here)?;
        let timeouts = rule_timeouts(rule).map_err(here)?;
        let backends = compile_backends(
            kind,
            key,
            &pool_key,
            &rule.backend_refs,
            store,
            slices,
            grants,
            previous_pool,
            spec,
            timeouts.attempt,
            table,
            &mut refs_problems,
            &mut refs_reason,
        );
        let mirrors = compile_mirrors(
            kind,
            key,
            &pool_key,
            &mirror_filters,
            store,
            slices,
            grants,
            previous,
            table,
            &mut refs_problems,
            &mut refs_reason,
        );
        let rule_arc = Arc::new(RouteRule {
            route: key.clone(),
            index,
            filters,
            backends,
            mirrors,
            request_timeout: timeouts.request,
            ingress: None,
        });
        let default_match = [HTTPRouteMatch::default()];
        let matches: &[HTTPRouteMatch] = if rule.matches.is_empty() {
            &default_match
        } else {
            &rule.matches
        };
        for (m, api_match) in matches.iter().enumerate() {
            let matcher =
                RequestMatch::compile(api_match).map_err(|e| here(format!("matches[{m}]: {e}")))?;
            let order = rules::rule_key(api_match, created, (&key.namespace, &key.name), index, m);
            out.matches.push((order, matcher, rule_arc.clone()));
        }
    }
    if let Some(reason) = refs_reason {
        out.resolved_refs = (reason, refs_problems.join("; "));
    }
    Ok(out)
}

/// Whether a filter replaces the matched prefix (redirect or rewrite).
fn replaces_prefix(filters: &[HTTPRouteFilter]) -> bool {
    use crate::api::gateway::PathModifierType::ReplacePrefixMatch;
    filters.iter().any(|f| {
        let redirect = f.request_redirect.as_ref().and_then(|r| r.path.as_ref());
        let rewrite = f.url_rewrite.as_ref().and_then(|r| r.path.as_ref());
        [redirect, rewrite]
            .into_iter()
            .flatten()
            .any(|p| p.r#type == ReplacePrefixMatch)
    })
}

/// Whether each match names its path as a prefix (no match at all is the `/` prefix).
fn every_match_is_one_prefix(matches: &[HTTPRouteMatch]) -> bool {
    use crate::api::gateway::PathMatchType::PathPrefix;
    matches.iter().all(|m| {
        m.path
            .as_ref()
            .is_none_or(|p| p.r#type.unwrap_or(PathPrefix) == PathPrefix)
    })
}

/// The policy of the pool a rule's Services get: weir's defaults, with its `sessionPersistence`
/// as cookie affinity (a `Header` session is not supported).
fn rule_pool_spec(rule: &HTTPRouteRule) -> Result<LoadBalancerPoolSpec, String> {
    let mut spec = service_pool_spec();
    if let Some(session) = &rule.session_persistence {
        spec.session_affinity = Some(session_affinity(session)?);
    }
    Ok(spec)
}

/// `sessionPersistence` of type `Cookie` as weir's affinity cookie: `sessionName` its name,
/// `absoluteTimeout` its lifetime (whole seconds), `cookieConfig.lifetimeType: Session` a
/// session cookie.
fn session_affinity(
    session: &crate::api::gateway::SessionPersistence,
) -> Result<crate::api::SessionAffinity, String> {
    use crate::api::{AffinityCookie, SessionAffinity};
    let kind = session.r#type.as_deref().unwrap_or("Cookie");
    if kind != "Cookie" {
        return Err(format!(
            "sessionPersistence type {kind} is not supported (weir keeps sessions by cookie)"
        ));
    }
    let mut cookie = AffinityCookie::default();
    if let Some(name) = &session.session_name {
        if !crate::api::is_cookie_name(name) {
            return Err(format!(
                "sessionPersistence sessionName {name:?} is not a cookie name"
            ));
        }
        cookie.name = name.clone();
    }
    if let Some(text) = &session.absolute_timeout {
        let d = parse_duration(text).map_err(|e| format!("sessionPersistence: {e}"))?;
        cookie.ttl_seconds = u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
    }
    let lifetime = session
        .cookie_config
        .as_ref()
        .and_then(|c| c.lifetime_type.as_deref());
    if lifetime.unwrap_or("Session") == "Session" {
        cookie.ttl_seconds = 0;
    }
    Ok(SessionAffinity { cookie })
}

/// A rule's `timeouts` (GEP-2257 durations, to the millisecond).
#[derive(Debug, Clone, Copy, Default)]
struct RuleTimeouts {
    /// Each attempt (`backendRequest`, else `request`); `None`: weir's default.
    attempt: Option<Duration>,
    /// The whole request (`request`); `None`: no limit of its own.
    request: Option<Duration>,
}

/// What `0s` means: no timeout. A year stands for it (the timers take no "never").
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

fn rule_timeouts(rule: &HTTPRouteRule) -> Result<RuleTimeouts, String> {
    let Some(t) = &rule.timeouts else {
        return Ok(RuleTimeouts::default());
    };
    let parse = |text: &Option<String>| -> Result<Option<Duration>, String> {
        let Some(text) = text else { return Ok(None) };
        let d = parse_duration(text).map_err(|e| format!("timeouts: {e}"))?;
        Ok(Some(if d.is_zero() { NO_TIMEOUT } else { d }))
    };
    let request = parse(&t.request)?;
    let backend = parse(&t.backend_request)?;
    if let (Some(r), Some(b)) = (request, backend)
        && b > r
    {
        return Err(format!(
            "timeouts: backendRequest ({b:?}) is longer than request ({r:?})"
        ));
    }
    Ok(RuleTimeouts {
        attempt: backend.or(request),
        request,
    })
}

/// A rule's `RequestMirror` filters, each with its share; their backends are resolved by
/// `compile_mirrors`, as that needs the store.
type MirrorFilters<'r> = Vec<(&'r HTTPRequestMirrorFilter, Sample)>;

/// A rule's filters, and its mirrors apart.
fn compile_filters(
    filters: &[HTTPRouteFilter],
) -> Result<(RuleFilters, MirrorFilters<'_>), String> {
    let mut out = RuleFilters::default();
    let mut mirrors = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let missing = || format!("filters[{i}]: type {:?} needs its field", f.r#type);
        let bad = |e: &dyn std::fmt::Display| format!("filters[{i}]: {e}");
        match f.r#type {
            FilterType::RequestHeaderModifier => {
                let spec = f.request_header_modifier.as_ref().ok_or_else(missing)?;
                out.request_headers = Some(HeaderEdit::compile(spec).map_err(|e| bad(&e))?);
            }
            FilterType::ResponseHeaderModifier => {
                let spec = f.response_header_modifier.as_ref().ok_or_else(missing)?;
                out.response_headers = Some(HeaderEdit::compile(spec).map_err(|e| bad(&e))?);
            }
            FilterType::RequestRedirect => {
                let spec = f.request_redirect.as_ref().ok_or_else(missing)?;
                out.redirect = Some(Redirect::compile(spec).map_err(|e| bad(&e))?);
            }
            FilterType::UrlRewrite => {
                let spec = f.url_rewrite.as_ref().ok_or_else(missing)?;
                out.rewrite = Some(Rewrite::compile(spec).map_err(|e| bad(&e))?);
            }
            FilterType::RequestMirror => {
                let spec = f.request_mirror.as_ref().ok_or_else(missing)?;
                mirrors.push((spec, Sample::compile(spec).map_err(|e| bad(&e))?));
            }
            other => {
                return Err(format!(
                    "filters[{i}]: filter {other:?} is not supported by weir yet"
                ));
            }
        }
    }
    Ok((out, mirrors))
}

/// A rule's backends: Services go into one pool of the rule's own (weights per Service, live
/// endpoint state kept across rebuilds); a LoadBalancerPool is used as it is; a backend that
/// does not resolve keeps its share of the weight and answers 500.
#[allow(clippy::too_many_arguments)]
fn compile_backends(
    route_kind: RouteKind,
    route: &ObjectKey,
    pool_key: &ObjectKey,
    refs: &[HTTPBackendRef],
    store: &Store,
    slices: &SliceIndex<'_>,
    grants: &[&ReferenceGrant],
    previous: Option<&Arc<Pool>>,
    spec: LoadBalancerPoolSpec,
    attempt_timeout: Option<Duration>,
    table: &mut RoutingTable,
    problems: &mut Vec<String>,
    reason: &mut Option<&'static str>,
) -> RuleBackends {
    let reuse = Reuse::of(previous);
    let mut sets = Vec::new();
    let mut service_weight = 0u32;
    let mut choices: Vec<(u32, Option<Arc<Pool>>)> = Vec::new();
    let mut fail = |r: &mut Option<&'static str>, why: &'static str, message: String| {
        // The first problem's reason stands for all (the spec wants one).
        r.get_or_insert(why);
        problems.push(message);
    };
    for b in refs {
        let weight = b.backend.weight.unwrap_or(1).clamp(0, 1_000_000) as u32;
        match resolve_ref(
            route_kind,
            route,
            &b.backend.object,
            weight,
            store,
            slices,
            grants,
            table,
        ) {
            Err(Unresolved {
                reason: why,
                message,
            }) => {
                fail(reason, why, message);
                choices.push((weight, None));
            }
            Ok(Target::Pool(pool)) => choices.push((weight, Some(pool))),
            Ok(Target::Service {
                key,
                backend,
                resolved,
            }) => {
                service_weight += weight;
                sets.push(backend_set(key, &backend, resolved, &spec, &reuse));
            }
        }
    }
    if !sets.is_empty() {
        let mut policy = policy(&spec);
        if let Some(d) = attempt_timeout {
            policy.attempt_timeout = d;
        }
        let pool = Arc::new(Pool::new(pool_key.clone(), policy, sets));
        table.pools.insert(pool_key.clone(), pool.clone());
        choices.insert(0, (service_weight, Some(pool)));
    }
    RuleBackends::new(choices)
}

/// A backendRef resolved: a LoadBalancerPool as it is compiled, or a Service port's endpoints.
enum Target<'a> {
    Pool(Arc<Pool>),
    Service {
        key: ObjectKey,
        backend: Backend,
        resolved: Vec<Resolved<'a>>,
    },
}

/// Why a backendRef does not resolve: the spec's `ResolvedRefs` reason, and the detail.
struct Unresolved {
    reason: &'static str,
    message: String,
}

/// Resolves one backendRef (of a rule's `backendRefs` or a `RequestMirror` filter) of a route
/// of `route_kind` in `route`'s namespace: the kind must be one weir routes to, another
/// namespace needs a ReferenceGrant, a Service needs its port and must exist.
#[allow(clippy::too_many_arguments)]
fn resolve_ref<'a>(
    route_kind: RouteKind,
    route: &ObjectKey,
    object: &BackendObjectReference,
    weight: u32,
    store: &Store,
    slices: &SliceIndex<'a>,
    grants: &[&ReferenceGrant],
    table: &RoutingTable,
) -> Result<Target<'a>, Unresolved> {
    let unresolved = |reason, message| Err(Unresolved { reason, message });
    let group = object.group.as_deref().unwrap_or("");
    let kind = object.kind.as_deref().unwrap_or("Service");
    let namespace = object.namespace.as_deref().unwrap_or(&route.namespace);
    let target = ObjectKey::new(namespace, object.name.clone());
    let from = Side {
        group: GROUP,
        kind: route_kind.as_str(),
        namespace: &route.namespace,
    };
    let to = Side {
        group,
        kind,
        namespace,
    };
    let known = matches!(
        (group, kind),
        ("", "Service") | (WEIR_GROUP, "LoadBalancerPool")
    );
    if !known {
        return unresolved(
            "InvalidKind",
            format!(
                "backendRef {target} of kind {group}/{kind}: weir routes to Services and LoadBalancerPools"
            ),
        );
    }
    if !rules::permits(grants.iter().copied(), from, to, &object.name) {
        return unresolved(
            "RefNotPermitted",
            format!(
                "backendRef {kind} {target} is in another namespace and no ReferenceGrant allows it"
            ),
        );
    }
    if kind == "LoadBalancerPool" {
        return match store
            .pools
            .contains_key(&target)
            .then(|| table.pools.get(&target))
            .flatten()
        {
            Some(pool) => Ok(Target::Pool(pool.clone())),
            None => unresolved(
                "BackendNotFound",
                format!("LoadBalancerPool {target} is not found or does not serve"),
            ),
        };
    }
    let Some(port) = object.port.and_then(|p| u16::try_from(p).ok()) else {
        return unresolved(
            "UnsupportedValue",
            format!("backendRef Service {target} needs a port"),
        );
    };
    let backend = Backend {
        service: object.name.clone(),
        port: ServicePort::Number(port),
        weight,
    };
    match slices.resolve(&target, &backend) {
        Err(problem) => unresolved("BackendNotFound", problem.to_string()),
        Ok(resolved) => Ok(Target::Service {
            key: target,
            backend,
            resolved,
        }),
    }
}

/// A rule's mirrors: a Service gets a pool of its own, `RULE_POOL/mirror-M` (M counts the
/// rule's RequestMirror filters), in the table's pools like the rule's; a LoadBalancerPool is
/// used as it is. A mirror whose backend does not resolve is dropped (the rule serves without
/// it) and makes the route's `ResolvedRefs` False, as a bad backendRef does.
#[allow(clippy::too_many_arguments)]
fn compile_mirrors(
    route_kind: RouteKind,
    route: &ObjectKey,
    rule_pool: &ObjectKey,
    mirrors: &[(&HTTPRequestMirrorFilter, Sample)],
    store: &Store,
    slices: &SliceIndex<'_>,
    grants: &[&ReferenceGrant],
    previous: Option<&RoutingTable>,
    table: &mut RoutingTable,
    problems: &mut Vec<String>,
    reason: &mut Option<&'static str>,
) -> Box<[Mirror]> {
    if mirrors.is_empty() {
        return Box::default();
    }
    let mut out = Vec::with_capacity(mirrors.len());
    for (m, (filter, sample)) in mirrors.iter().enumerate() {
        let pool = match resolve_ref(
            route_kind,
            route,
            &filter.backend_ref,
            1,
            store,
            slices,
            grants,
            table,
        ) {
            Err(Unresolved {
                reason: why,
                message,
            }) => {
                reason.get_or_insert(why);
                problems.push(format!("RequestMirror: {message}"));
                continue;
            }
            Ok(Target::Pool(pool)) => pool,
            Ok(Target::Service {
                key,
                backend,
                resolved,
            }) => {
                let pool_key = ObjectKey::new(
                    rule_pool.namespace.clone(),
                    format!("{}/mirror-{m}", rule_pool.name),
                );
                let reuse = Reuse::of(previous.and_then(|t| t.pool(&pool_key)));
                let spec = service_pool_spec();
                let set = backend_set(key, &backend, resolved, &spec, &reuse);
                let pool = Arc::new(Pool::new(pool_key.clone(), policy(&spec), vec![set]));
                table.pools.insert(pool_key, pool.clone());
                pool
            }
        };
        out.push(Mirror {
            pool,
            sample: *sample,
        });
    }
    out.into_boxed_slice()
}

/// The policy of a rule's own pool: weir's defaults (round robin, no health checks, one retry
/// of a connection that failed before the request was sent).
pub(super) fn service_pool_spec() -> LoadBalancerPoolSpec {
    LoadBalancerPoolSpec {
        class_name: None,
        routes: Vec::new(),
        backends: Vec::new(),
        algorithm: Algorithm::default(),
        hash_on: None,
        peak_ewma: None,
        weighted_by_load: None,
        load_reports: None,
        slow_start: None,
        health_check: None,
        outlier_detection: None,
        tls: None,
        session_affinity: None,
        retries: Retries::default(),
        timeouts: Timeouts::default(),
    }
}

#[cfg(test)]
mod tests;
