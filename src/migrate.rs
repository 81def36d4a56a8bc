//! `weir migrate`: Kubernetes Ingresses (with their ingress-nginx annotations, as
//! [`crate::api::ingress::parse_annotations`] reads them) turned into Gateway API objects weir
//! serves the same way: a Gateway per namespace, HTTPRoutes per Ingress and host, and a
//! LoadBalancerPool where an Ingress asks for a balancing policy a route cannot carry.
//!
//! Pure: Ingresses in, [`Document`]s out (each an object and the comments that say what of
//! its Ingress was not carried over, and why). [`to_yaml`] prints them as one multi-document
//! YAML file that `weir serve --config` reads.
//!
//! The mapping follows what compile's Ingress step does (`routing/compile/ingress.rs`): the
//! same path semantics (Exact, segment prefix, `use-regex`/`rewrite-target` as
//! case-insensitive expressions anchored at the start), the default backend as a last
//! `PathPrefix /` rule of each of the Ingress's hosts and a route of any host, canaries added
//! to the main Ingress's rule of the same host and path.

use crate::api::gateway::PathMatchType;
use crate::api::ingress::{BackendProtocol, CanaryRules, IngressAnnotations, parse_annotations};
use crate::api::{
    AffinityCookie, LoadBalancerPoolSpec, Retries, SameSite, ServicePort, SessionAffinity, Timeouts,
};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressSpec};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Where the Gateways listen.
#[derive(Debug, Clone)]
pub struct Options {
    /// `spec.addresses` of each Gateway (`None`: none, the cluster's choice).
    pub gateway_address: Option<String>,
    pub http_port: u16,
    pub https_port: u16,
    /// The Gateways' `gatewayClassName`, and their name.
    pub gateway_class: String,
    pub gateway_name: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gateway_address: None,
            http_port: 80,
            https_port: 443,
            gateway_class: "weir".into(),
            gateway_name: "weir".into(),
        }
    }
}

/// One object of the output and the `#` comment lines printed above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub comments: Vec<String>,
    pub object: Value,
}

/// Prints the documents as multi-document YAML, each with its comments above it.
pub fn to_yaml(documents: &[Document]) -> String {
    let mut out = String::new();
    for d in documents {
        out.push_str("---\n");
        for c in &d.comments {
            for line in c.lines() {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
        match serde_saphyr::to_string(&d.object) {
            Ok(text) => out.push_str(&text),
            // JSON is YAML too.
            Err(_) => out.push_str(&d.object.to_string()),
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// Converts `ingresses` (weir's: the caller picks them by class). Namespaces, Ingresses and
/// their rules come out in a stable order.
pub fn migrate<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    options: &Options,
) -> Vec<Document> {
    let mut by_namespace: BTreeMap<String, Vec<&Ingress>> = BTreeMap::new();
    for i in ingresses {
        let ns = i
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        by_namespace.entry(ns).or_default().push(i);
    }
    let mut out = Vec::new();
    for (namespace, mut list) in by_namespace {
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out.extend(Namespace::new(&namespace, options).run(&list));
    }
    out
}

/// The conversion of one namespace's Ingresses.
struct Namespace<'o> {
    namespace: String,
    options: &'o Options,
    /// TLS host (`None`: an entry without hosts) → (listener name, Secret).
    tls: BTreeMap<Option<String>, (String, Option<String>)>,
    gateway_comments: Vec<String>,
    pools: BTreeMap<String, Document>,
}

/// A canary Ingress's backend for one host and path.
struct CanaryPath {
    ingress: String,
    rules: CanaryRules,
    backend: Option<Value>,
}

type PathKey = (Option<String>, String);

impl<'o> Namespace<'o> {
    fn new(namespace: &str, options: &'o Options) -> Self {
        Namespace {
            namespace: namespace.to_string(),
            options,
            tls: BTreeMap::new(),
            gateway_comments: Vec::new(),
            pools: BTreeMap::new(),
        }
    }

    fn run(mut self, ingresses: &[&Ingress]) -> Vec<Document> {
        let parsed: Vec<(&Ingress, IngressAnnotations, Vec<String>)> = ingresses
            .iter()
            .map(|i| {
                let (a, warnings) = parse_annotations(i.metadata.annotations.as_ref());
                let comments = warnings
                    .iter()
                    .map(|w| {
                        format!(
                            "not carried: {} ({}): {}",
                            w.annotation,
                            w.kind.as_str(),
                            w.message
                        )
                    })
                    .collect();
                (*i, a, comments)
            })
            .collect();
        // TLS listeners, in host order.
        for (ingress, _, _) in &parsed {
            for tls in spec_of(ingress)
                .and_then(|s| s.tls.as_ref())
                .into_iter()
                .flatten()
            {
                let hosts: Vec<Option<String>> = match tls.hosts.as_deref() {
                    Some(h) if !h.is_empty() => h.iter().cloned().map(Some).collect(),
                    _ => vec![None],
                };
                for host in hosts {
                    let n = self.tls.len();
                    self.tls
                        .entry(host)
                        .or_insert_with(|| (format!("https-{n}"), tls.secret_name.clone()));
                }
            }
        }
        // Canaries: by host and path, as compile takes them.
        let mut canaries: BTreeMap<PathKey, CanaryPath> = BTreeMap::new();
        for (ingress, a, comments) in &parsed {
            let Some(rules) = &a.canary else { continue };
            let name = name_of(ingress);
            for c in comments {
                self.gateway_comments
                    .push(format!("canary Ingress {name}: {c}"));
            }
            if rules.by_cookie.is_some() {
                self.gateway_comments.push(format!(
                    "canary Ingress {name}: not carried: {NGINX}canary-by-cookie: an HTTPRoute matches headers, not cookies; the cookie does not choose the canary"
                ));
            }
            let mut notes = Vec::new();
            for (host, path, backend) in paths(spec_of(ingress)) {
                let backend = self.backend_ref(&name, a, backend, &mut notes);
                canaries.insert(
                    (host.map(str::to_string), path.to_string()),
                    CanaryPath {
                        ingress: name.clone(),
                        rules: rules.clone(),
                        backend,
                    },
                );
            }
            self.gateway_comments.extend(
                notes
                    .into_iter()
                    .map(|n| format!("canary Ingress {name}: {n}")),
            );
        }
        let mut routes = Vec::new();
        for (ingress, a, comments) in &parsed {
            if a.canary.is_some() {
                continue;
            }
            routes.extend(self.ingress_routes(ingress, a, comments, &mut canaries));
        }
        for ((host, path), c) in canaries {
            self.gateway_comments.push(format!(
                "canary Ingress {}: path {} {path} has no main Ingress here; not carried",
                c.ingress,
                host.as_deref().unwrap_or("*")
            ));
        }
        let mut out = vec![self.gateway()];
        out.extend(std::mem::take(&mut self.pools).into_values());
        out.extend(routes);
        out
    }

    fn gateway(&mut self) -> Document {
        let o = self.options;
        let mut listeners = vec![json!({
            "name": "http", "protocol": "HTTP", "port": o.http_port,
            "allowedRoutes": { "namespaces": { "from": "Same" } },
        })];
        let mut comments = vec![
            "From Ingresses by `weir migrate`. Ingress requests had a 1 MiB body limit by default (ingress-nginx's); Gateway routes have none.".to_string(),
        ];
        for (host, (listener, secret)) in &self.tls {
            let mut l = json!({
                "name": listener, "protocol": "HTTPS", "port": o.https_port,
                "allowedRoutes": { "namespaces": { "from": "Same" } },
                "tls": { "mode": "Terminate" },
            });
            if let Some(h) = host {
                l["hostname"] = json!(h);
            }
            match secret {
                Some(s) => {
                    l["tls"]["certificateRefs"] = json!([{ "kind": "Secret", "name": s }]);
                }
                None => comments.push(format!(
                    "listener {listener}: its tls entry names no Secret (weir's default certificate served it); give it certificateRefs"
                )),
            }
            listeners.push(l);
        }
        comments.append(&mut self.gateway_comments);
        let mut spec = json!({ "gatewayClassName": o.gateway_class, "listeners": listeners });
        if let Some(a) = &o.gateway_address {
            spec["addresses"] = json!([{ "type": "IPAddress", "value": a }]);
        }
        Document {
            comments,
            object: json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": { "name": o.gateway_name, "namespace": self.namespace },
                "spec": spec,
            }),
        }
    }

    fn parent(&self, section: &str) -> Value {
        json!({ "name": self.options.gateway_name, "sectionName": section })
    }

    /// The routes of one (non-canary) Ingress: one per host (and one of any host for a
    /// defaultBackend), and for TLS hosts with ssl-redirect one more on the HTTP listener.
    fn ingress_routes(
        &mut self,
        ingress: &Ingress,
        a: &IngressAnnotations,
        warnings: &[String],
        canaries: &mut BTreeMap<PathKey, CanaryPath>,
    ) -> Vec<Document> {
        let name = name_of(ingress);
        let spec = spec_of(ingress);
        let mut comments: Vec<String> = warnings.to_vec();
        self.unsupported(a, &mut comments);
        let regex = a.use_regex || a.rewrite_target.is_some();
        let rewrite = match &a.rewrite_target {
            Some(t) if t.contains('$') => {
                comments.push(format!(
                    "not carried: {NGINX}rewrite-target {t:?}: captures ($N) have no Gateway API equivalent; the path goes upstream unchanged"
                ));
                None
            }
            Some(t) => Some(if t.starts_with('/') {
                t.clone()
            } else {
                format!("/{t}")
            }),
            None => None,
        };
        let tls_hosts: BTreeSet<String> = spec
            .and_then(|s| s.tls.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten().cloned())
            .collect();
        // Hosts in the order the rules name them; `None` is any host.
        let mut hosts: Vec<Option<String>> = Vec::new();
        let mut by_host: BTreeMap<Option<String>, Vec<(String, bool, &IngressBackend)>> =
            BTreeMap::new();
        for (host, path, backend) in paths(spec) {
            let host = host.map(str::to_string);
            if !hosts.contains(&host) {
                hosts.push(host.clone());
            }
            let exact = spec.is_some_and(|s| is_exact(s, host.as_deref(), path));
            by_host
                .entry(host)
                .or_default()
                .push((path.to_string(), exact, backend));
        }
        let default = spec.and_then(|s| s.default_backend.as_ref());
        if default.is_some() && !hosts.contains(&None) {
            hosts.push(None);
        }
        let mut docs = Vec::new();
        let mut notes = Vec::new();
        let default_ref = default.and_then(|d| self.backend_ref(&name, a, d, &mut notes));
        for host in &hosts {
            if let Some(h) = host
                && h.starts_with("*.")
            {
                notes.push(format!(
                    "host {h}: an Ingress wildcard takes one label, a Gateway API wildcard any number"
                ));
            }
            let mut rules = Vec::new();
            let mut takes_root = false;
            for (path, exact, backend) in by_host.get(host).into_iter().flatten() {
                let path_match = path_match(path, *exact, regex);
                takes_root |= matches_root(path, *exact, regex);
                let main = self.backend_ref(&name, a, backend, &mut notes);
                let canary = canaries.remove(&(host.clone(), path.clone()));
                rules.extend(self.rules_for(a, &path_match, main, canary, rewrite.as_deref()));
            }
            if let Some(d) = &default_ref {
                takes_root = true;
                let m = json!({ "path": { "type": "PathPrefix", "value": "/" } });
                rules.extend(self.rules_for(a, &m, Some(d.clone()), None, None));
            }
            if let Some(root) = &a.app_root
                && a.redirect.is_none()
                && takes_root
            {
                // Before the rule that takes `/`: an Exact match wins anyway.
                rules.insert(
                    0,
                    json!({
                        "matches": [{ "path": { "type": "Exact", "value": "/" } }],
                        "filters": [{ "type": "RequestRedirect", "requestRedirect": {
                            "path": { "type": "ReplaceFullPath", "replaceFullPath": root },
                            "statusCode": 302 } }],
                    }),
                );
                notes.push(format!(
                    "{NGINX}app-root: Location is absolute (http(s)://HOST[:PORT]{root}) where the Ingress answered {root}"
                ));
            }
            let has_tls = host.as_ref().is_some_and(|h| tls_hosts.contains(h))
                || (host.is_none() && self.tls.contains_key(&None));
            let listener = host
                .as_ref()
                .and_then(|h| self.tls.get(&Some(h.clone())))
                .or_else(|| self.tls.get(&None))
                .map(|(l, _)| l.clone());
            let ssl_redirect = has_tls && a.ssl_redirect.unwrap_or(true);
            if a.force_ssl_redirect && !has_tls {
                notes.push(format!(
                    "not carried: {NGINX}force-ssl-redirect for host {}: the Ingress has no tls entry for it, so the Gateway has no HTTPS listener to redirect to",
                    host.as_deref().unwrap_or("*")
                ));
            }
            let mut parents = Vec::new();
            if !ssl_redirect {
                parents.push(self.parent("http"));
            }
            if has_tls && let Some(l) = &listener {
                parents.push(self.parent(l));
            }
            let route_name = route_name(&name, host.as_deref());
            let mut route_spec = json!({ "parentRefs": parents, "rules": rules });
            if let Some(h) = host {
                route_spec["hostnames"] = json!([h]);
            }
            if ssl_redirect {
                let matches: Vec<Value> = rules
                    .iter()
                    .flat_map(|r| r["matches"].as_array().cloned().unwrap_or_default())
                    .collect();
                let mut redirect = json!({
                    "parentRefs": [self.parent("http")],
                    "rules": [{
                        "matches": matches,
                        "filters": [{ "type": "RequestRedirect",
                            "requestRedirect": { "scheme": "https", "statusCode": 308 } }],
                    }],
                });
                if let Some(h) = host {
                    redirect["hostnames"] = json!([h]);
                }
                docs.push(Document {
                    comments: vec![format!(
                        "{NGINX}ssl-redirect (default true) of Ingress {name}: plain HTTP to a TLS host redirects to https (308)"
                    )],
                    object: http_route(&self.namespace, &format!("{route_name}-ssl-redirect"), redirect),
                });
            }
            let mut all = comments.clone();
            all.append(&mut notes);
            docs.insert(
                docs.len().saturating_sub(usize::from(ssl_redirect)),
                Document {
                    comments: all,
                    object: http_route(&self.namespace, &route_name, route_spec),
                },
            );
        }
        if hosts.is_empty() {
            self.gateway_comments
                .push(format!("Ingress {name} has no paths and no defaultBackend"));
        }
        docs
    }

    /// The rules of one path: its backends (and a canary's), filters and timeouts; a canary
    /// by header adds rules with a header match.
    fn rules_for(
        &mut self,
        a: &IngressAnnotations,
        path_match: &Value,
        main: Option<Value>,
        canary: Option<CanaryPath>,
        rewrite: Option<&str>,
    ) -> Vec<Value> {
        let mut base = json!({ "matches": [path_match] });
        if let Some(r) = &a.redirect {
            base["filters"] = json!([redirect_filter(&r.location, r.status)]);
            return vec![base];
        }
        if let Some(t) = rewrite {
            base["filters"] = json!([{ "type": "URLRewrite", "urlRewrite": {
                "path": { "type": "ReplaceFullPath", "replaceFullPath": t } } }]);
        }
        if let Some(s) = a.read_timeout_seconds {
            base["timeouts"] = json!({ "backendRequest": format!("{s}s") });
        }
        if let Some(cookie) = &a.affinity
            && !needs_pool(a)
        {
            base["sessionPersistence"] = session_persistence(cookie);
        }
        let with = |backends: Vec<Value>, header: Option<(&str, &str)>| {
            let mut r = base.clone();
            if let Some((name, value)) = header {
                let mut m = path_match.clone();
                m["headers"] = json!([{ "type": "Exact", "name": name, "value": value }]);
                r["matches"] = json!([m]);
            }
            r["backendRefs"] = json!(backends);
            r
        };
        let weighted = |b: &Value, w: u32| {
            let mut b = b.clone();
            b["weight"] = json!(w);
            b
        };
        let main_refs: Vec<Value> = main.iter().cloned().collect();
        let Some(c) = canary.and_then(|c| c.backend.map(|b| (c.rules, b))) else {
            return vec![with(main_refs, None)];
        };
        let (rules, canary_ref) = c;
        let mut out = Vec::new();
        if let Some(h) = &rules.by_header {
            let value = rules.by_header_value.as_deref().unwrap_or("always");
            out.push(with(vec![canary_ref.clone()], Some((h, value))));
            if rules.by_header_value.is_none() && rules.weight > 0 {
                out.push(with(main_refs.clone(), Some((h, "never"))));
            }
        }
        let mut backends = Vec::new();
        if rules.weight > 0 {
            if let Some(m) = &main {
                backends.push(weighted(m, rules.weight_total - rules.weight));
            }
            backends.push(weighted(&canary_ref, rules.weight));
        } else {
            backends = main_refs;
        }
        out.push(with(backends, None));
        out
    }

    /// Notes for what a route cannot carry.
    fn unsupported(&self, a: &IngressAnnotations, comments: &mut Vec<String>) {
        if a.allow_source.is_some() {
            comments.push(format!(
                "not carried: {NGINX}whitelist-source-range (allowlist-source-range): weir's Gateway API routes have no client address filter"
            ));
        }
        if !a.deny_source.is_empty() {
            comments.push(format!(
                "not carried: {NGINX}denylist-source-range: weir's Gateway API routes have no client address filter"
            ));
        }
        if a.body_size.is_some() {
            comments.push(format!(
                "not carried: {NGINX}proxy-body-size: a Gateway route has no request body limit"
            ));
        }
        if a.backend_protocol == BackendProtocol::H2c {
            comments.push(format!(
                "not carried: {NGINX}backend-protocol GRPC/H2C: set appProtocol: kubernetes.io/h2c on the Service port"
            ));
        }
        if let Some(r) = &a.redirect {
            comments.push(format!(
                "{NGINX}permanent-redirect/temporal-redirect: the request's query string is kept in Location (the Ingress answered {} as written)",
                r.location
            ));
        }
        if let Some(cookie) = &a.affinity
            && !needs_pool(a)
        {
            let default = AffinityCookie::default();
            if cookie.path != default.path
                || cookie.same_site != SameSite::default()
                || cookie.secure.is_some()
            {
                comments.push(format!(
                    "not carried: {NGINX}session-cookie-path/-samesite/-secure: sessionPersistence has no such fields"
                ));
            }
        }
    }

    /// The backendRef of an Ingress backend: a Service port by number, or a
    /// LoadBalancerPool when the Ingress asks for a policy (or names the port).
    fn backend_ref(
        &mut self,
        ingress: &str,
        a: &IngressAnnotations,
        backend: &IngressBackend,
        notes: &mut Vec<String>,
    ) -> Option<Value> {
        if let Some(r) = &backend.resource {
            notes.push(format!(
                "not carried: backend resource {} {}: weir routes to Services only",
                r.kind, r.name
            ));
            return None;
        }
        let service = backend.service.as_ref()?;
        let port = service.port.as_ref();
        let port = match (
            port.and_then(|p| p.number),
            port.and_then(|p| p.name.clone()),
        ) {
            (Some(n), _) => ServicePort::Number(u16::try_from(n).ok()?),
            (None, Some(name)) => ServicePort::Name(name),
            (None, None) => {
                notes.push(format!("backend Service {} names no port", service.name));
                return None;
            }
        };
        let named = matches!(port, ServicePort::Name(_));
        if !needs_pool(a) && !named {
            let ServicePort::Number(n) = port else {
                return None;
            };
            return Some(json!({ "name": service.name, "port": n }));
        }
        let shown = match &port {
            ServicePort::Number(n) => n.to_string(),
            ServicePort::Name(n) => n.clone(),
        };
        let pool = dns_name(&format!("{ingress}-{}-{shown}", service.name));
        if named && !needs_pool(a) {
            notes.push(format!(
                "backend Service {} port {shown:?}: a backendRef takes a port number, so it goes through LoadBalancerPool {pool}",
                service.name
            ));
        }
        if !self.pools.contains_key(&pool) {
            let spec = pool_spec(a, &service.name, port);
            let object = json!({
                "apiVersion": "weir.dev/v1alpha1",
                "kind": "LoadBalancerPool",
                "metadata": { "name": pool, "namespace": self.namespace },
                "spec": serde_json::to_value(&spec).unwrap_or(Value::Null),
            });
            self.pools.insert(
                pool.clone(),
                Document {
                    comments: vec![format!(
                        "The policy of Ingress {ingress}'s annotations (load-balance, upstream-hash-by, affinity, proxy-next-upstream-tries, proxy-connect-timeout) for Service {}; no routes of its own",
                        service.name
                    )],
                    object,
                },
            );
        }
        Some(json!({ "group": "weir.dev", "kind": "LoadBalancerPool", "name": pool }))
    }
}

/// Whether the Ingress's policy needs a LoadBalancerPool (a route's backendRef to a Service
/// gets weir's defaults).
fn needs_pool(a: &IngressAnnotations) -> bool {
    a.algorithm.is_some()
        || a.hash_on.is_some()
        || a.next_upstream_tries.is_some()
        || a.connect_timeout_millis.is_some()
}

/// The pool an Ingress's annotations ask for, as compile's `pool_spec` builds it.
fn pool_spec(a: &IngressAnnotations, service: &str, port: ServicePort) -> LoadBalancerPoolSpec {
    let mut timeouts = Timeouts::default();
    if let Some(ms) = a.connect_timeout_millis {
        timeouts.connect_millis = ms;
    }
    let mut retries = Retries::default();
    if let Some(tries) = a.next_upstream_tries {
        retries.attempts = if tries == 0 { 5 } else { (tries - 1).min(5) };
    }
    LoadBalancerPoolSpec {
        class_name: None,
        routes: Vec::new(),
        backends: vec![crate::api::Backend {
            service: service.to_string(),
            port,
            weight: 1,
        }],
        algorithm: a.algorithm.unwrap_or_default(),
        hash_on: a.hash_on.clone(),
        peak_ewma: None,
        weighted_by_load: None,
        load_reports: None,
        slow_start: None,
        health_check: None,
        outlier_detection: None,
        tls: None,
        session_affinity: a.affinity.clone().map(|cookie| SessionAffinity { cookie }),
        retries,
        timeouts,
    }
}

fn session_persistence(cookie: &AffinityCookie) -> Value {
    let mut s = json!({ "type": "Cookie", "sessionName": cookie.name });
    if cookie.ttl_seconds > 0 {
        s["absoluteTimeout"] = json!(format!("{}s", cookie.ttl_seconds));
        s["cookieConfig"] = json!({ "lifetimeType": "Permanent" });
    } else {
        s["cookieConfig"] = json!({ "lifetimeType": "Session" });
    }
    s
}

/// A RequestRedirect to an absolute URL.
fn redirect_filter(location: &str, status: u16) -> Value {
    let mut r = json!({});
    if let Ok(uri) = http::Uri::try_from(location) {
        if let Some(s) = uri.scheme_str() {
            r["scheme"] = json!(s);
        }
        if let Some(h) = uri.host() {
            r["hostname"] = json!(h);
        }
        if let Some(p) = uri.port_u16() {
            r["port"] = json!(p);
        }
        let path = uri.path();
        r["path"] = json!({ "type": "ReplaceFullPath",
            "replaceFullPath": if path.is_empty() { "/" } else { path } });
    }
    // weir's RequestRedirect takes 301, 302, 303, 307 and 308.
    let status = if [301, 302, 303, 307, 308].contains(&status) {
        status
    } else {
        301
    };
    r["statusCode"] = json!(status);
    json!({ "type": "RequestRedirect", "requestRedirect": r })
}

fn path_match(path: &str, exact: bool, regex: bool) -> Value {
    let (kind, value) = match (exact, regex) {
        (true, _) => (PathMatchType::Exact, path.to_string()),
        // As compile has it: case-insensitive, from the start, whatever follows.
        (false, true) => (
            PathMatchType::RegularExpression,
            format!("(?i)(?:{path}).*"),
        ),
        (false, false) => (PathMatchType::PathPrefix, path.to_string()),
    };
    json!({ "path": { "type": kind, "value": value } })
}

/// Whether a path takes the request `/` (for app-root).
fn matches_root(path: &str, exact: bool, regex: bool) -> bool {
    match (exact, regex) {
        (true, _) => path == "/",
        (false, true) => {
            regex::Regex::new(&format!("^(?i)(?:{path})")).is_ok_and(|r| r.is_match("/"))
        }
        (false, false) => path == "/" || path.is_empty(),
    }
}

fn http_route(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    })
}

fn route_name(ingress: &str, host: Option<&str>) -> String {
    match host {
        Some(h) => dns_name(&format!("{ingress}-{}", h.replace('*', "wildcard"))),
        None => dns_name(&format!("{ingress}-any-host")),
    }
}

/// Lowercase letters, digits and `-`, at most 63 characters.
fn dns_name(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

fn name_of(i: &Ingress) -> String {
    i.metadata.name.clone().unwrap_or_default()
}

fn spec_of(i: &Ingress) -> Option<&IngressSpec> {
    i.spec.as_ref()
}

/// Every (host, path, backend) of an Ingress's rules, in order (as compile reads them).
fn paths(spec: Option<&IngressSpec>) -> Vec<(Option<&str>, &str, &IngressBackend)> {
    spec.into_iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|rule| {
            let host = rule.host.as_deref().filter(|h| !h.is_empty());
            rule.http
                .iter()
                .flat_map(|h| h.paths.iter())
                .map(move |p| (host, p.path.as_deref().unwrap_or("/"), &p.backend))
        })
        .collect()
}

fn is_exact(spec: &IngressSpec, host: Option<&str>, path: &str) -> bool {
    spec.rules
        .iter()
        .flatten()
        .filter(|r| r.host.as_deref().filter(|h| !h.is_empty()) == host)
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .find(|p| p.path.as_deref().unwrap_or("/") == path)
        .is_some_and(|p| p.path_type == "Exact")
}

#[cfg(test)]
mod tests;
