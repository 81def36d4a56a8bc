//! The Kubernetes Ingress step of compile: weir's Ingresses (by class) become rules for
//! weir's own listeners, in the table's [`RoutingTable::ingress`] rule set, with one pool per
//! (Ingress, backend Service port) among the table's pools, `NAMESPACE/ingress/NAME/SERVICE:PORT`.
//!
//! What ingress-nginx users expect, and what weir does:
//! - Paths of one host from every Ingress are merged: `Exact` before prefixes, longer paths
//!   first, the older Ingress first on a tie (it keeps a contested path).
//! - `Prefix` and `ImplementationSpecific` match whole path segments (`/a` takes `/a/b`, not
//!   `/ab`); with `use-regex` (or `rewrite-target`, which implies it, as in ingress-nginx) a
//!   path is a case-insensitive expression matched from the path's start.
//! - `spec.defaultBackend` takes what no path of the Ingress's hosts takes, and any host.
//! - A backend that does not resolve answers 503, as nginx's empty upstream does.
//! - A canary Ingress (`canary: "true"`) adds its backend to the main Ingress's rule of the
//!   same host and path; its other annotations are not used (as in ingress-nginx).

use super::gateway::service_pool_spec;
use super::{Backend, Reuse, SecretCache, SliceIndex, backend_set, policy};
use crate::api::gateway::{HTTPPathMatch, HTTPRouteMatch, PathMatchType};
use crate::api::ingress::{
    AnnotationWarning, BackendProtocol, IngressAnnotations, IngressClassChoice, WarningKind,
    parse_annotations,
};
use crate::api::{LoadBalancerPoolSpec, Retries, ServicePort, SessionAffinity};
use crate::routing::gateway::{
    GatewayPort, RequestMatch, RouteRule, RuleBackends, RuleFilters, RuleMatch,
};
use crate::routing::ingress::{Canary, IngressRule, RegexRewrite};
use crate::routing::pool::Pool;
use crate::routing::table::RoutingTable;
use crate::store::{ObjectKey, Store};
use http::{HeaderName, HeaderValue, StatusCode};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What compile says of one Ingress of weir's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressReport {
    /// Every annotation not carried out as written, and every problem with the spec (a
    /// backend or Secret that does not resolve, a path that does not compile).
    pub warnings: Vec<IngressWarning>,
    /// The hosts it serves (`*` for any host), for status and `weir check`.
    pub hosts: Vec<String>,
}

/// One thing an Ingress asks that weir does not do as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressWarning {
    pub reason: IngressWarningReason,
    pub message: String,
}

/// Why, as a type (events and metrics carry it as their reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressWarningReason {
    Annotation(WarningKind),
    BackendNotFound,
    SecretProblem,
    BadPath,
    NoMainIngress,
}

impl IngressWarningReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IngressWarningReason::Annotation(WarningKind::Unknown) => "UnknownAnnotation",
            IngressWarningReason::Annotation(WarningKind::BadValue) => "InvalidAnnotation",
            IngressWarningReason::Annotation(WarningKind::Unsupported) => "UnsupportedAnnotation",
            IngressWarningReason::Annotation(WarningKind::Snippet) => "SnippetNotExecuted",
            IngressWarningReason::BackendNotFound => "BackendNotFound",
            IngressWarningReason::SecretProblem => "InvalidSecret",
            IngressWarningReason::BadPath => "InvalidPath",
            IngressWarningReason::NoMainIngress => "CanaryWithoutMain",
        }
    }
}

impl From<AnnotationWarning> for IngressWarning {
    fn from(w: AnnotationWarning) -> Self {
        IngressWarning {
            reason: IngressWarningReason::Annotation(w.kind),
            message: w.to_string(),
        }
    }
}

impl IngressWarning {
    fn new(reason: IngressWarningReason, message: impl Into<String>) -> Self {
        IngressWarning {
            reason,
            message: message.into(),
        }
    }
}

/// A path of an Ingress, as the rule set orders it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Order {
    /// 0: Exact; 1: prefix or expression; 2: a defaultBackend.
    rank: u8,
    /// Longer first.
    length: std::cmp::Reverse<usize>,
    created: i64,
    ingress: ObjectKey,
    index: usize,
}

/// Where a path's requests may go in a canary's eyes: host (`None`: any) and path as written.
type PathKey = (Option<String>, String);

pub(super) fn compile_ingresses(
    store: &Store,
    choice: &IngressClassChoice,
    slices: &SliceIndex<'_>,
    secrets: &mut SecretCache<'_>,
    previous: Option<&RoutingTable>,
    table: &mut RoutingTable,
) -> BTreeMap<ObjectKey, IngressReport> {
    let mut reports = BTreeMap::new();
    let ours: Vec<(&ObjectKey, &Ingress)> = store
        .ingresses
        .iter()
        .filter(|(_, i)| choice.takes(i, &store.ingress_classes))
        .map(|(k, i)| (k, i.as_ref()))
        .collect();
    if ours.is_empty() {
        return reports;
    }
    let mut port = GatewayPort::for_ingresses();
    // Canaries first: the main rules take them in as they are built.
    let mut canaries: HashMap<PathKey, (ObjectKey, Canary)> = HashMap::new();
    let mut parsed = Vec::new();
    for (key, ingress) in &ours {
        let (annotations, warnings) = parse_annotations(ingress.metadata.annotations.as_ref());
        let mut report = IngressReport {
            warnings: warnings.into_iter().map(IngressWarning::from).collect(),
            hosts: hosts(ingress),
        };
        let Some(spec) = ingress.spec.as_ref() else {
            reports.insert((*key).clone(), report);
            continue;
        };
        let mut builder = PoolBuilder {
            ingress: key,
            annotations: &annotations,
            slices,
            previous,
            table,
            built: BTreeMap::new(),
            warnings: &mut report.warnings,
        };
        if let Some(rules) = &annotations.canary {
            for (host, path, backend) in paths(spec) {
                let pool = builder.pool(backend);
                let canary = Canary {
                    pool,
                    weight: rules.weight,
                    total: rules.weight_total,
                    header: rules
                        .by_header
                        .as_deref()
                        .and_then(|h| HeaderName::try_from(h).ok()),
                    header_value: rules
                        .by_header_value
                        .as_deref()
                        .and_then(|v| HeaderValue::from_str(v).ok()),
                    cookie: rules.by_cookie.as_deref().map(Into::into),
                };
                canaries.insert(
                    (host.map(str::to_string), path.to_string()),
                    ((*key).clone(), canary),
                );
            }
            reports.insert((*key).clone(), report);
            continue;
        }
        parsed.push((*key, *ingress, annotations, report));
    }
    let mut entries: Vec<(Order, Option<String>, RuleMatch)> = Vec::new();
    for (key, ingress, annotations, mut report) in parsed {
        let Some(spec) = ingress.spec.as_ref() else {
            continue;
        };
        // Without a creation time (from a file) an Ingress counts as the newest.
        let created = ingress
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(i64::MAX, |t| t.0.as_second());
        let tls_hosts = load_tls(key, spec, secrets, table, &mut report.warnings);
        let mut builder = PoolBuilder {
            ingress: key,
            annotations: &annotations,
            slices,
            previous,
            table,
            built: BTreeMap::new(),
            warnings: &mut report.warnings,
        };
        let regex = annotations.use_regex || annotations.rewrite_target.is_some();
        let mut index = 0;
        let mut add = |rank: u8,
                       host: Option<&str>,
                       path: &str,
                       exact: bool,
                       backend: &IngressBackend,
                       builder: &mut PoolBuilder<'_, '_>|
         -> Result<(), String> {
            let pool = builder.pool(backend);
            let path_type = match (exact, regex) {
                (true, _) => PathMatchType::Exact,
                (false, true) => PathMatchType::RegularExpression,
                (false, false) => PathMatchType::PathPrefix,
            };
            let value = match path_type {
                // Matched from the start, whatever follows; case-insensitive (`location ~*`).
                PathMatchType::RegularExpression => format!("(?i)(?:{path}).*"),
                _ => path.to_string(),
            };
            let matcher = RequestMatch::compile(&HTTPRouteMatch {
                path: Some(HTTPPathMatch {
                    r#type: Some(path_type),
                    value: Some(value),
                }),
                ..HTTPRouteMatch::default()
            })
            .map_err(|e| e.to_string())?;
            let rewrite = match &annotations.rewrite_target {
                Some(target) if rank < 2 => Some(
                    RegexRewrite::compile(&regex_of(path, exact), target)
                        .map_err(|e| format!("path {path:?} with rewrite-target: {e}"))?,
                ),
                _ => None,
            };
            let canary = canaries
                .remove(&(host.map(str::to_string), path.to_string()))
                .map(|(_, c)| c);
            let has_tls = host.is_some_and(|h| tls_hosts.contains(h));
            let rule = IngressRule {
                ssl_redirect: annotations.force_ssl_redirect
                    || (has_tls && annotations.ssl_redirect.unwrap_or(true)),
                redirect: annotations.redirect.as_ref().and_then(|r| {
                    Some((
                        StatusCode::from_u16(r.status).ok()?,
                        HeaderValue::from_str(&r.location).ok()?,
                    ))
                }),
                app_root: annotations
                    .app_root
                    .as_deref()
                    .and_then(|p| HeaderValue::from_str(p).ok()),
                allow: annotations.allow_source.clone().map(Vec::into_boxed_slice),
                deny: annotations.deny_source.clone().into_boxed_slice(),
                canary,
                rewrite,
            };
            let route_rule = Arc::new(RouteRule {
                route: key.clone(),
                index,
                filters: RuleFilters::default(),
                backends: RuleBackends::new(vec![(1, Some(pool))]),
                mirrors: Box::default(),
                request_timeout: None,
                ingress: Some(Box::new(rule)),
            });
            let order = Order {
                rank,
                length: std::cmp::Reverse(path.len()),
                created,
                ingress: key.clone(),
                index,
            };
            index += 1;
            entries.push((
                order,
                host.map(str::to_string),
                RuleMatch {
                    matcher,
                    rule: route_rule,
                },
            ));
            Ok(())
        };
        for (host, path, backend) in paths(spec) {
            let exact = is_exact(spec, host, path);
            if let Err(e) = add(
                if exact { 0 } else { 1 },
                host,
                path,
                exact,
                backend,
                &mut builder,
            ) {
                builder
                    .warnings
                    .push(IngressWarning::new(IngressWarningReason::BadPath, e));
            }
        }
        if let Some(default) = &spec.default_backend {
            let mut hosts: BTreeSet<Option<&str>> = spec
                .rules
                .iter()
                .flatten()
                .map(|r| r.host.as_deref().filter(|h| !h.is_empty()))
                .collect();
            hosts.insert(None);
            for host in hosts {
                if let Err(e) = add(2, host, "/", false, default, &mut builder) {
                    builder
                        .warnings
                        .push(IngressWarning::new(IngressWarningReason::BadPath, e));
                }
            }
        }
        reports.insert(key.clone(), report);
    }
    for ((host, path), (canary_key, _)) in canaries {
        if let Some(report) = reports.get_mut(&canary_key) {
            report.warnings.push(IngressWarning::new(
                IngressWarningReason::NoMainIngress,
                format!(
                    "canary path {} {path}: no Ingress of weir's serves this host and path",
                    host.as_deref().unwrap_or("*")
                ),
            ));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    port.insert_listener(None);
    for (_, host, entry) in entries {
        port.insert_match(None, host.as_deref(), entry);
    }
    table.ingress = Some(port);
    reports
}

/// The hosts an Ingress names (`*` for a rule without one, or a defaultBackend).
fn hosts(ingress: &Ingress) -> Vec<String> {
    let Some(spec) = &ingress.spec else {
        return Vec::new();
    };
    let mut out: BTreeSet<String> = spec
        .rules
        .iter()
        .flatten()
        .map(|r| {
            r.host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "*".into())
        })
        .collect();
    if spec.default_backend.is_some() {
        out.insert("*".into());
    }
    out.into_iter().collect()
}

/// Every (host, path, backend) of an Ingress's rules, in order.
fn paths(spec: &IngressSpec) -> impl Iterator<Item = (Option<&str>, &str, &IngressBackend)> {
    spec.rules.iter().flatten().flat_map(|rule| {
        let host = rule.host.as_deref().filter(|h| !h.is_empty());
        rule.http
            .iter()
            .flat_map(|h| h.paths.iter())
            .map(move |p| (host, p.path.as_deref().unwrap_or("/"), &p.backend))
    })
}

/// Whether the path (first of that host and path) is `pathType: Exact`.
fn is_exact(spec: &IngressSpec, host: Option<&str>, path: &str) -> bool {
    spec.rules
        .iter()
        .flatten()
        .filter(|r| r.host.as_deref().filter(|h| !h.is_empty()) == host)
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .find(|p| p.path.as_deref().unwrap_or("/") == path)
        .is_some_and(|p| p.path_type == "Exact")
}

/// The expression `rewrite-target` applies to a path: the path as written when it is an
/// expression, else the literal path (an `Exact` one to its end).
fn regex_of(path: &str, exact: bool) -> String {
    if exact {
        format!("{}$", regex::escape(path))
    } else {
        path.to_string()
    }
}

/// Loads the Ingress's TLS Secrets into the table's certificates (an older pool or Ingress
/// keeps a host it holds); the hosts with TLS.
fn load_tls(
    key: &ObjectKey,
    spec: &IngressSpec,
    secrets: &mut SecretCache<'_>,
    table: &mut RoutingTable,
    warnings: &mut Vec<IngressWarning>,
) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for tls in spec.tls.iter().flatten() {
        let names: Vec<&str> = tls.hosts.iter().flatten().map(String::as_str).collect();
        hosts.extend(names.iter().map(|h| h.to_string()));
        let Some(secret) = &tls.secret_name else {
            // No Secret: the default certificate serves these hosts.
            continue;
        };
        let secret_key = ObjectKey::new(key.namespace.clone(), secret.clone());
        match secrets.load(&secret_key) {
            Ok(cert) => {
                for host in names {
                    table.insert_certificate(host, &cert.key);
                }
            }
            Err(problem) => warnings.push(IngressWarning::new(
                IngressWarningReason::SecretProblem,
                format!(
                    "tls Secret {secret_key} {problem}; the default certificate serves its hosts"
                ),
            )),
        }
    }
    hosts
}

/// Makes (once per backend) the pools of one Ingress.
struct PoolBuilder<'a, 's> {
    ingress: &'a ObjectKey,
    annotations: &'a IngressAnnotations,
    slices: &'a SliceIndex<'s>,
    previous: Option<&'a RoutingTable>,
    table: &'a mut RoutingTable,
    built: BTreeMap<String, Arc<Pool>>,
    warnings: &'a mut Vec<IngressWarning>,
}

impl PoolBuilder<'_, '_> {
    /// The pool of a backend: its Service port's endpoints with the Ingress's policy; no
    /// endpoints (503) when it does not resolve.
    fn pool(&mut self, backend: &IngressBackend) -> Arc<Pool> {
        let (service, port) = match &backend.service {
            Some(s) => {
                let port = s.port.as_ref();
                let port = match (
                    port.and_then(|p| p.number),
                    port.and_then(|p| p.name.clone()),
                ) {
                    (Some(n), _) => u16::try_from(n).ok().map(ServicePort::Number),
                    (None, Some(name)) => Some(ServicePort::Name(name)),
                    (None, None) => None,
                };
                (s.name.clone(), port)
            }
            None => (String::new(), None),
        };
        let shown_port = match &port {
            Some(ServicePort::Number(n)) => n.to_string(),
            Some(ServicePort::Name(n)) => n.clone(),
            None => "-".into(),
        };
        let name = format!("ingress/{}/{service}:{shown_port}", self.ingress.name);
        if let Some(pool) = self.built.get(&name) {
            return pool.clone();
        }
        let pool_key = ObjectKey::new(self.ingress.namespace.clone(), name.clone());
        let spec = pool_spec(self.annotations);
        let reuse = Reuse::of(self.previous.and_then(|t| t.pool(&pool_key)));
        let mut sets = Vec::new();
        match (backend.resource.as_ref(), port) {
            (Some(r), _) => self.warnings.push(IngressWarning::new(
                IngressWarningReason::BackendNotFound,
                format!(
                    "backend resource {} {}: weir routes to Services only",
                    r.kind, r.name
                ),
            )),
            (None, None) => self.warnings.push(IngressWarning::new(
                IngressWarningReason::BackendNotFound,
                format!("backend Service {service:?} needs a port"),
            )),
            (None, Some(port)) => {
                let service_key = ObjectKey::new(self.ingress.namespace.clone(), service.clone());
                let backend = Backend {
                    service: service.clone(),
                    port,
                    weight: 1,
                };
                match self.slices.resolve(&service_key, &backend) {
                    Ok(mut resolved) => {
                        if self.annotations.backend_protocol == BackendProtocol::H2c {
                            for r in &mut resolved {
                                r.h2c = true;
                            }
                        }
                        sets.push(backend_set(service_key, &backend, resolved, &spec, &reuse));
                    }
                    Err(problem) => self.warnings.push(IngressWarning::new(
                        IngressWarningReason::BackendNotFound,
                        format!("{problem}; its paths answer 503"),
                    )),
                }
            }
        }
        let mut policy = policy(&spec);
        policy.max_request_body = match self.annotations.body_size {
            None => Some(DEFAULT_BODY_SIZE),
            Some(limit) => limit,
        };
        let pool = Arc::new(Pool::new(pool_key.clone(), policy, sets));
        self.table.pools.insert(pool_key, pool.clone());
        self.built.insert(name, pool.clone());
        pool
    }
}

/// The most retries a pool may have (`spec.retries.attempts`' bound in validation).
const MOST_RETRIES: u32 = 5;

/// ingress-nginx's `proxy-body-size` default: 1 MiB.
pub const DEFAULT_BODY_SIZE: u64 = 1024 * 1024;

/// The pool policy an Ingress's annotations ask for, on weir's defaults.
fn pool_spec(a: &IngressAnnotations) -> LoadBalancerPoolSpec {
    let mut spec = service_pool_spec();
    if let Some(algorithm) = a.algorithm {
        spec.algorithm = algorithm;
    }
    spec.hash_on = a.hash_on.clone();
    spec.session_affinity = a.affinity.clone().map(|cookie| SessionAffinity { cookie });
    if let Some(ms) = a.connect_timeout_millis {
        spec.timeouts.connect_millis = ms;
    }
    // `proxy-read-timeout` is nginx's time between two reads; weir's is the time to the
    // response headers, the wait a slow pod causes (bodies stream without a deadline).
    if let Some(s) = a.read_timeout_seconds {
        spec.timeouts.request_seconds = s;
    }
    if let Some(tries) = a.next_upstream_tries {
        // nginx counts every attempt; weir counts the retries after the first. 0 is nginx's
        // "no limit": weir's most.
        spec.retries = Retries {
            attempts: if tries == 0 {
                MOST_RETRIES
            } else {
                (tries - 1).min(MOST_RETRIES)
            },
            ..Retries::default()
        };
    }
    spec
}
