//! `compile`: the object store in, a routing table and one status per pool out. Pure.

mod gateway;
mod ingress;

pub use gateway::{
    DEFAULT_GATEWAY_ADDRESS, GatewayReport, GatewayStatuses, ListenerReport, ObjectReport,
    ParentReport, ServicePlan,
};
pub use ingress::{DEFAULT_BODY_SIZE, IngressReport, IngressWarning, IngressWarningReason};

use super::gateway::GatewayAddresses;
use super::host::normalize_prefix;
use super::host_policy::HostPolicy;
use super::pool::{BackendSet, Pool};
use super::pool::{Policy, PoolTls};
use super::table::{PathRoutes, RoutingTable};
use crate::api::{
    Algorithm, Backend, Condition, ConditionType, EndpointCounts, LoadBalancerPool,
    LoadBalancerPoolSpec, LoadBalancerPoolStatus, Reason, ServicePort, validate_spec,
};
use crate::balance::{self, Balance};
use crate::certificate::{self, Certificate, Staple, TLS_OCSP_STAPLE};
use crate::endpoint::Endpoint;
use crate::store::{ObjectKey, ServicePorts, Slice, Store, TlsSecret};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `compile` produces.
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: RoutingTable,
    /// One status per pool in the store, whether it serves or not.
    pub statuses: BTreeMap<ObjectKey, LoadBalancerPoolStatus>,
    /// What the Gateway API step says of each GatewayClass, Gateway and HTTPRoute of weir's.
    pub gateway: GatewayStatuses,
    /// What the Ingress step says of each Ingress of weir's class.
    pub ingresses: BTreeMap<ObjectKey, IngressReport>,
}

/// Builds the routing table and every pool's status from the store.
///
/// `previous` is the table in service now: endpoints that stay keep their `Arc<Endpoint>` (and
/// with it their live counters). A problem in one pool shows in that pool's status and never
/// keeps another pool from serving.
pub fn compile(store: &Store, previous: Option<&RoutingTable>) -> Compiled {
    compile_with(store, previous, &HostPolicy::open())
}

/// What compile is told besides the objects.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Which namespace may claim which hosts.
    pub host_policy: HostPolicy,
    /// Where Gateways that name no address listen.
    pub gateway_addresses: GatewayAddresses,
    /// Which Ingresses are weir's.
    pub ingress_class: crate::api::ingress::IngressClassChoice,
}

/// [`compile`], with a policy that says which namespace may claim which hosts: a route the
/// policy refuses is not claimed, and its pool says so in `Accepted`.
pub fn compile_with(
    store: &Store,
    previous: Option<&RoutingTable>,
    host_policy: &HostPolicy,
) -> Compiled {
    compile_with_options(
        store,
        previous,
        &CompileOptions {
            host_policy: host_policy.clone(),
            gateway_addresses: GatewayAddresses::default(),
            ingress_class: crate::api::ingress::IngressClassChoice::default(),
        },
    )
}

/// [`compile`], told what [`CompileOptions`] say.
pub fn compile_with_options(
    store: &Store,
    previous: Option<&RoutingTable>,
    options: &CompileOptions,
) -> Compiled {
    let host_policy = &options.host_policy;
    let slices = SliceIndex::new(store);
    let mut secrets = SecretCache {
        secrets: &store.secrets,
        loaded: HashMap::new(),
    };
    let mut compiled = Compiled::default();
    // The older pool keeps a contested route: creation time, then namespace/name. A pool
    // without a creation time (from a file) counts as the newest.
    let mut order: Vec<&LoadBalancerPool> = store.pools.values().map(|p| p.as_ref()).collect();
    order.sort_by(|a, b| {
        let created = |p: &LoadBalancerPool| p.metadata.creation_timestamp.clone().map(|t| t.0);
        match (created(a), created(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then_with(|| ObjectKey::of(&a.metadata).cmp(&ObjectKey::of(&b.metadata)))
    });
    // (host, normalized prefix) → the pool holding it.
    let mut holders: HashMap<(String, String), ObjectKey> = HashMap::new();
    for resource in order {
        let key = ObjectKey::of(&resource.metadata);
        let previous_pool = previous.and_then(|t| t.pool(&key));
        let (pool, status) = compile_pool(
            &key,
            resource,
            &slices,
            &mut secrets,
            previous_pool,
            &mut holders,
            host_policy,
        );
        if let Some((pool, routes)) = pool {
            let pool = Arc::new(pool);
            for (host, prefix) in routes {
                if let Some(cert) = pool.tls.as_ref().and_then(|t| t.certificate.as_ref()) {
                    compiled.table.insert_certificate(&host, &cert.key);
                }
                compiled.table.insert_route(&host, &prefix, pool.clone());
            }
            compiled.table.pools.insert(key.clone(), pool);
        }
        compiled.statuses.insert(key, status);
    }
    compiled.gateway = gateway::compile_gateways(
        store,
        &slices,
        &mut secrets,
        previous,
        &options.gateway_addresses,
        &mut compiled.table,
    );
    compiled.ingresses = ingress::compile_ingresses(
        store,
        &options.ingress_class,
        &slices,
        &mut secrets,
        previous,
        &mut compiled.table,
    );
    compiled
}

impl RoutingTable {
    /// The first (oldest) pool to claim a host gives its certificate.
    fn insert_certificate(&mut self, host: &str, key: &Arc<rustls::sign::CertifiedKey>) {
        if host.is_empty() {
            return;
        }
        let map = match host.strip_prefix("*.") {
            Some(parent) => self.wildcard_certificates.entry(parent.into()),
            None => self.certificates.entry(host.into()),
        };
        map.or_insert_with(|| key.clone());
    }

    fn insert_route(&mut self, host: &str, prefix: &str, pool: Arc<Pool>) {
        let routes: &mut PathRoutes = if host.is_empty() {
            &mut self.any_host
        } else if let Some(parent) = host.strip_prefix("*.") {
            self.wildcard.entry(parent.into()).or_default()
        } else {
            self.exact.entry(host.into()).or_default()
        };
        routes.insert(prefix, pool);
    }
}

type Routes = Vec<(String, String)>;

/// One pool, in four steps: validate the spec, claim its routes, resolve its backends and its
/// certificate, then say in conditions how each went.
fn compile_pool(
    key: &ObjectKey,
    resource: &LoadBalancerPool,
    slices: &SliceIndex<'_>,
    secrets: &mut SecretCache<'_>,
    previous: Option<&Arc<Pool>>,
    holders: &mut HashMap<(String, String), ObjectKey>,
    host_policy: &HostPolicy,
) -> (Option<(Pool, Routes)>, LoadBalancerPoolStatus) {
    let spec = &resource.spec;
    let mut status = LoadBalancerPoolStatus {
        observed_generation: resource.metadata.generation,
        hosts: Some(hosts_column(resource)),
        ..Default::default()
    };
    let errors = validate_spec(spec);
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        status.conditions = vec![
            Condition::new(ConditionType::Accepted, false, Reason::Invalid, message),
            Condition::new(
                ConditionType::ResolvedRefs,
                false,
                Reason::Invalid,
                "the spec is invalid",
            ),
            Condition::new(
                ConditionType::Ready,
                false,
                Reason::Invalid,
                "the spec is invalid",
            ),
        ];
        return (None, status);
    }

    let (routes, accepted) = claim_routes(key, spec, holders, host_policy);
    let mut refs = resolve_backends(key, spec, slices, previous);
    let (tls, certificate_condition) = match &spec.tls {
        None => (None, None),
        Some(t) => {
            let (tls, condition) = resolve_tls(key, t, secrets, previous, &mut refs);
            (Some(tls), condition)
        }
    };
    let resolved_refs = if refs.missing.is_empty() {
        Condition::new(
            ConditionType::ResolvedRefs,
            true,
            Reason::ResolvedRefs,
            "all references resolved",
        )
    } else {
        Condition::new(
            ConditionType::ResolvedRefs,
            false,
            refs.reason,
            refs.missing.join("; "),
        )
    };
    let counts = count(&refs.backends);
    status.endpoints = counts;
    let ready = ready_condition(counts, &refs);
    status.conditions = vec![accepted, resolved_refs, ready];
    status.conditions.extend(certificate_condition);

    let mut pool = Pool::new(key.clone(), policy(spec), refs.backends);
    pool.tls = tls;
    pool.routes = routes.clone();
    (Some((pool, routes)), status)
}

/// Claims each of the pool's routes that the host policy allows and no older pool holds;
/// `Accepted` says which were refused and which were held elsewhere.
fn claim_routes(
    key: &ObjectKey,
    spec: &LoadBalancerPoolSpec,
    holders: &mut HashMap<(String, String), ObjectKey>,
    host_policy: &HostPolicy,
) -> (Routes, Condition) {
    let mut routes = Vec::new();
    let mut conflicts = Vec::new();
    let mut refused = Vec::new();
    for route in &spec.routes {
        let claim = (
            route.host.clone(),
            normalize_prefix(&route.path_prefix).to_string(),
        );
        if !host_policy.allows(&key.namespace, &claim.0) {
            refused.push(format!(
                "host {} is not allowed for namespace {} (--allow-hosts)",
                display_host(&claim.0),
                key.namespace
            ));
            continue;
        }
        match holders.get(&claim) {
            Some(holder) if holder != key => conflicts.push(format!(
                "route {}{} is held by pool {holder}",
                display_host(&claim.0),
                claim.1
            )),
            Some(_) => {} // the same route twice in one pool
            None => {
                holders.insert(claim.clone(), key.clone());
                routes.push(claim);
            }
        }
    }
    let accepted = if !refused.is_empty() {
        refused.extend(conflicts);
        Condition::new(
            ConditionType::Accepted,
            false,
            Reason::HostNotAllowed,
            refused.join("; "),
        )
    } else if !conflicts.is_empty() {
        Condition::new(
            ConditionType::Accepted,
            false,
            Reason::RouteConflict,
            conflicts.join("; "),
        )
    } else {
        Condition::new(
            ConditionType::Accepted,
            true,
            Reason::Accepted,
            format!("{} route(s)", routes.len()),
        )
    };
    (routes, accepted)
}

/// What resolving a pool's references gave: its backends, and what could not be resolved.
struct References {
    backends: Vec<BackendSet>,
    /// One plain sentence per reference that did not resolve.
    missing: Vec<String>,
    /// The `ResolvedRefs` reason when `missing` is not empty.
    reason: Reason,
    /// Backends that resolved but list no endpoints (for the `Ready` message).
    empty: Vec<String>,
}

/// Resolves each backend's Service port to slice endpoints, keeping the live state of endpoints
/// the previous table had.
fn resolve_backends(
    key: &ObjectKey,
    spec: &LoadBalancerPoolSpec,
    slices: &SliceIndex<'_>,
    previous: Option<&Arc<Pool>>,
) -> References {
    let reuse = Reuse::of(previous);
    let mut refs = References {
        backends: Vec::new(),
        missing: Vec::new(),
        // The worst problem found decides the reason (a missing Service over a missing port).
        reason: Reason::PortNotFound,
        empty: Vec::new(),
    };
    for backend in &spec.backends {
        let service_key = ObjectKey::new(key.namespace.clone(), backend.service.clone());
        match slices.resolve(&service_key, backend) {
            Err(problem) => {
                if problem.reason() == Reason::BackendNotFound {
                    refs.reason = Reason::BackendNotFound;
                }
                refs.missing.push(problem.to_string());
            }
            Ok(resolved) => {
                if resolved.is_empty() {
                    refs.empty.push(format!(
                        "Service {service_key} lists no endpoints for port {}",
                        backend.port
                    ));
                }
                refs.backends
                    .push(backend_set(service_key, backend, resolved, spec, &reuse));
            }
        }
    }
    refs
}

/// The pool's TLS settings and certificate. A Secret that gives none is a missing reference;
/// the previous certificate, if any, keeps serving.
fn resolve_tls(
    key: &ObjectKey,
    t: &crate::api::Tls,
    secrets: &mut SecretCache<'_>,
    previous: Option<&Arc<Pool>>,
    refs: &mut References,
) -> (PoolTls, Option<Condition>) {
    let secret_key = ObjectKey::new(key.namespace.clone(), t.secret_name.clone());
    let previous_cert = previous.and_then(|p| p.tls.as_ref()?.certificate.clone());
    let (certificate, condition) = match secrets.load(&secret_key) {
        Ok(cert) => {
            let condition = certificate_condition(&secret_key, &cert);
            (Some(cert), Some(condition))
        }
        Err(problem) => {
            if refs.missing.is_empty() {
                refs.reason = problem.reason();
            }
            let keeps = if previous_cert.is_some() {
                "; the previous certificate keeps serving"
            } else {
                ""
            };
            refs.missing
                .push(format!("Secret {secret_key} {problem}{keeps}"));
            (previous_cert, None)
        }
    };
    let hsts = t.hsts.and_then(|h| {
        let mut v = format!("max-age={}", h.max_age_seconds);
        if h.include_sub_domains {
            v.push_str("; includeSubDomains");
        }
        http::HeaderValue::from_str(&v).ok()
    });
    let tls = PoolTls {
        certificate,
        redirect_http: t.redirect_http,
        hsts,
    };
    (tls, condition)
}

/// `Ready` as compile sees it (health checks refine it later): whether any endpoint is healthy,
/// and if none is, why.
fn ready_condition(counts: EndpointCounts, refs: &References) -> Condition {
    if counts.healthy > 0 {
        return Condition::new(
            ConditionType::Ready,
            true,
            Reason::HealthyEndpoints,
            format!("{} of {} endpoints healthy", counts.healthy, counts.total),
        );
    }
    let mut why = vec![format!(
        "0 of {} endpoints healthy ({} not ready, {} terminating)",
        counts.total,
        refs.backends.iter().map(|b| b.not_ready).sum::<u32>(),
        refs.backends.iter().map(|b| b.fenced.len()).sum::<usize>(),
    )];
    why.extend(refs.empty.iter().cloned());
    Condition::new(
        ConditionType::Ready,
        false,
        Reason::NoHealthyEndpoints,
        why.join("; "),
    )
}

fn count(backends: &[BackendSet]) -> EndpointCounts {
    let ready: usize = backends.iter().map(|b| b.endpoints.len()).sum();
    let fenced: usize = backends.iter().map(|b| b.fenced.len()).sum();
    let not_ready: u32 = backends.iter().map(|b| b.not_ready).sum();
    EndpointCounts {
        total: (ready + fenced) as u32 + not_ready,
        ready: ready as u32,
        healthy: ready as u32,
    }
}

/// Latency EWMAs decay over this unless `peakEwma.decaySeconds` says otherwise.
const DEFAULT_LATENCY_DECAY: Duration = Duration::from_secs(10);

fn policy(spec: &LoadBalancerPoolSpec) -> Policy {
    Policy {
        algorithm: spec.algorithm,
        hash_on: spec.hash_on.clone(),
        latency_decay: spec.peak_ewma.map_or(DEFAULT_LATENCY_DECAY, |p| {
            Duration::from_secs(p.decay_seconds.into())
        }),
        timeouts: spec.timeouts,
        attempt_timeout: Duration::from_secs(spec.timeouts.request_seconds.into()),
        health_check: spec.health_check.clone(),
        outlier_detection: spec.outlier_detection,
        retries: spec.retries.clone(),
        session_affinity: spec.session_affinity.clone(),
        keep_load_reports: spec.load_reports.is_some_and(|r| r.keep),
        max_request_body: None,
    }
}

fn balancer(spec: &LoadBalancerPoolSpec, endpoints: &[Arc<Endpoint>]) -> Box<dyn Balance> {
    let slow_start = spec.slow_start.map(|s| balance::SlowStart {
        window: Duration::from_secs(s.window_seconds.into()),
    });
    match spec.algorithm {
        Algorithm::RoundRobin => Box::new(balance::RoundRobin::new(endpoints.len(), slow_start)),
        Algorithm::LeastConnections => Box::new(balance::LeastConnections::new(slow_start)),
        Algorithm::PeakEwma => Box::new(balance::PeakEwma::new(
            policy(spec).latency_decay,
            slow_start,
        )),
        Algorithm::Random => Box::new(balance::Random),
        Algorithm::ConsistentHash => Box::new(balance::ConsistentHash::new(endpoints)),
        Algorithm::WeightedByLoad => {
            let w = spec.weighted_by_load.unwrap_or_default();
            let weighting = balance::LoadWeighting {
                blackout: Duration::from_secs(w.blackout_seconds.into()),
                expiry: Duration::from_secs(w.expiry_seconds.into()),
                period: Duration::from_millis(w.update_period_millis.into()),
                error_penalty: f64::from(w.error_penalty_percent) / 100.0,
            };
            Box::new(balance::WeightedByLoad::new(
                endpoints,
                weighting,
                slow_start,
                Instant::now(),
            ))
        }
    }
}

/// What a pool's next build keeps of its previous one: the endpoints by address (with their
/// live state), and when endpoints new to it joined.
struct Reuse<'p> {
    endpoints: HashMap<SocketAddr, &'p Arc<Endpoint>>,
    /// Endpoints that arrive in a pool already serving are new, for slow start; those of a
    /// pool seen for the first time (or at weir's start) are not.
    joined_at: Option<Instant>,
}

impl<'p> Reuse<'p> {
    fn of(previous: Option<&'p Arc<Pool>>) -> Self {
        Reuse {
            endpoints: previous
                .map(|p| p.all_endpoints().map(|e| (e.addr, e)).collect())
                .unwrap_or_default(),
            joined_at: previous.map(|_| Instant::now()),
        }
    }
}

fn backend_set(
    service: ObjectKey,
    backend: &Backend,
    resolved: Vec<Resolved<'_>>,
    spec: &LoadBalancerPoolSpec,
    reuse: &Reuse<'_>,
) -> BackendSet {
    let mut endpoints = Vec::new();
    let mut fenced = Vec::new();
    let mut not_ready = 0;
    let mut seen = HashSet::new();
    for e in resolved {
        // The same address in two slices (during a slice split) is one endpoint.
        if !seen.insert(e.addr) {
            continue;
        }
        let endpoint = || match reuse.endpoints.get(&e.addr) {
            Some(existing) if existing.h2c == e.h2c => Arc::clone(existing),
            _ => Arc::new(Endpoint::joined(e.addr, e.identity(), reuse.joined_at).with_h2c(e.h2c)),
        };
        if e.ready {
            endpoints.push(endpoint());
        } else if e.serving && e.terminating {
            fenced.push(endpoint());
        } else {
            not_ready += 1;
        }
    }
    BackendSet {
        service,
        weight: backend.weight,
        balancer: balancer(spec, &endpoints),
        endpoints,
        fenced,
        not_ready,
    }
}

fn hosts_column(resource: &LoadBalancerPool) -> String {
    let mut hosts: Vec<&str> = resource
        .spec
        .routes
        .iter()
        .map(|r| display_host(&r.host))
        .collect();
    hosts.dedup();
    hosts.join(",")
}

fn display_host(host: &str) -> &str {
    if host.is_empty() { "*" } else { host }
}

/// Certificates expiring within this many days get a warning condition.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// `CertificateValid`: whether the pool's certificate is within its validity, and whether its
/// OCSP response is stapled. A refused staple leaves the status and reason as the validity
/// says: the certificate serves either way, and expiry is the more urgent news.
fn certificate_condition(secret: &ObjectKey, cert: &Certificate) -> Condition {
    let mut condition = validity_condition(secret, cert);
    match &cert.staple {
        Staple::Absent => {}
        Staple::Stapled => condition.message.push_str("; OCSP response stapled"),
        Staple::Refused(e) => condition.message.push_str(&format!(
            "; {TLS_OCSP_STAPLE} {e}, so handshakes go without an OCSP staple"
        )),
    }
    condition
}

fn validity_condition(secret: &ObjectKey, cert: &Certificate) -> Condition {
    let Some(not_after) = cert.not_after else {
        return Condition::new(
            ConditionType::CertificateValid,
            true,
            Reason::Valid,
            format!("certificate of Secret {secret} loaded (expiry unreadable)"),
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let days = (not_after - now).div_euclid(86_400);
    if not_after <= now {
        Condition::new(
            ConditionType::CertificateValid,
            false,
            Reason::Expired,
            format!("certificate of Secret {secret} expired {} days ago", -days),
        )
    } else if days < EXPIRY_WARNING_DAYS {
        Condition::new(
            ConditionType::CertificateValid,
            true,
            Reason::ExpiringSoon,
            format!("certificate of Secret {secret} expires in {days} days"),
        )
    } else {
        Condition::new(
            ConditionType::CertificateValid,
            true,
            Reason::Valid,
            format!("certificate of Secret {secret} expires in {days} days"),
        )
    }
}

/// Secrets parsed at most once per compile, however many pools use them.
struct SecretCache<'a> {
    secrets: &'a BTreeMap<ObjectKey, Arc<TlsSecret>>,
    loaded: HashMap<ObjectKey, Result<Certificate, SecretProblem>>,
}

impl SecretCache<'_> {
    fn load(&mut self, key: &ObjectKey) -> Result<Certificate, SecretProblem> {
        let secrets = self.secrets;
        self.loaded
            .entry(key.clone())
            .or_insert_with(|| match secrets.get(key) {
                None => Err(SecretProblem::NotFound),
                Some(s) => {
                    certificate::load(s.crt.as_deref(), s.key.as_deref(), s.ocsp_staple.as_deref())
                        .map_err(SecretProblem::Invalid)
                }
            })
            .clone()
    }
}

/// Why a pool's Secret gives no certificate.
#[derive(Debug, Clone, thiserror::Error)]
enum SecretProblem {
    #[error("not found")]
    NotFound,
    /// What is wrong with its contents.
    #[error("{0}")]
    Invalid(String),
}

impl SecretProblem {
    fn reason(&self) -> Reason {
        match self {
            SecretProblem::NotFound => Reason::SecretNotFound,
            SecretProblem::Invalid(_) => Reason::InvalidSecret,
        }
    }
}

/// Why a backend's Service port resolves to nothing.
#[derive(Debug, thiserror::Error)]
enum BackendProblem {
    #[error("Service {0} not found")]
    ServiceNotFound(ObjectKey),
    #[error("Service {0} has no port {1}")]
    NoPortNumbered(ObjectKey, u16),
    #[error("Service {0} has no port named {1}")]
    NoPortNamed(ObjectKey, String),
}

impl BackendProblem {
    fn reason(&self) -> Reason {
        match self {
            BackendProblem::ServiceNotFound(_) => Reason::BackendNotFound,
            BackendProblem::NoPortNumbered(..) | BackendProblem::NoPortNamed(..) => {
                Reason::PortNotFound
            }
        }
    }
}

/// One endpoint of a slice, on the port a backend resolved to.
#[derive(Debug)]
struct Resolved<'a> {
    addr: SocketAddr,
    /// The pod (`namespace/name`), when the slice names one; the identity is the address
    /// otherwise. Made into an owned string only for an endpoint that is not reused.
    pod: Option<&'a str>,
    ready: bool,
    serving: bool,
    terminating: bool,
    h2c: bool,
}

impl Resolved<'_> {
    /// A stable name for the endpoint: its pod, else its address.
    fn identity(&self) -> String {
        match self.pod {
            Some(pod) => pod.to_string(),
            None => self.addr.to_string(),
        }
    }
}

/// Services and their slices, indexed once per compile.
struct SliceIndex<'a> {
    services: &'a BTreeMap<ObjectKey, Arc<ServicePorts>>,
    by_service: HashMap<ObjectKey, Vec<&'a Slice>>,
}

impl<'a> SliceIndex<'a> {
    fn new(store: &'a Store) -> Self {
        let mut by_service: HashMap<ObjectKey, Vec<&Slice>> = HashMap::new();
        for (key, slice) in &store.slices {
            if let Some(service) = &slice.service {
                by_service
                    .entry(ObjectKey::new(key.namespace.clone(), &**service))
                    .or_default()
                    .push(slice);
            }
        }
        SliceIndex {
            services: &store.services,
            by_service,
        }
    }

    /// The endpoints serving a backend's Service port, or what could not be found.
    fn resolve(
        &self,
        service_key: &ObjectKey,
        backend: &Backend,
    ) -> Result<Vec<Resolved<'a>>, BackendProblem> {
        let service = self
            .services
            .get(service_key)
            .ok_or_else(|| BackendProblem::ServiceNotFound(service_key.clone()))?;
        let ports = &service.ports;
        // Slices name their ports after the Service port's name ("" when it has none).
        let port_name = match &backend.port {
            ServicePort::Number(n) => ports
                .iter()
                .find(|p| p.port == i32::from(*n))
                .map(|p| p.name.as_deref().unwrap_or_default())
                .ok_or_else(|| BackendProblem::NoPortNumbered(service_key.clone(), *n))?,
            ServicePort::Name(name) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|_| name.as_str())
                .ok_or_else(|| BackendProblem::NoPortNamed(service_key.clone(), name.clone()))?,
        };
        let mut out = Vec::new();
        for slice in self.by_service.get(service_key).into_iter().flatten() {
            // Only TCP ports are kept (`Slice::from_slice`); the first of that name counts.
            let Some(port) = slice.port(port_name) else {
                continue;
            };
            let (h2c, Some(number)) = (port.h2c, port.port) else {
                continue;
            };
            // Endpoints without an IP address, and FQDN slices, were dropped on arrival.
            out.extend(slice.endpoints.iter().map(|e| Resolved {
                addr: SocketAddr::new(e.ip, number),
                pod: e.pod.as_deref(),
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                h2c,
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
