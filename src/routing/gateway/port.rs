//! What one Gateway address and port serves: the compiled HTTPRoute rules of every listener on
//! it, by host, in the spec's precedence, and the certificates of its HTTPS listeners.
//!
//! Built by compile, read by the proxy for each request that arrives on that socket; immutable
//! once built, like the rest of the table.

use super::filter::{HeaderEdit, Redirect, Rewrite};
use super::matching::RequestMatch;
use super::mirror::Mirror;
use crate::routing::host::normalize_host;
use crate::routing::pool::Pool;
use crate::store::ObjectKey;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// One listening socket of the Gateways: plain HTTP or HTTPS, with its rules.
#[derive(Debug)]
pub struct GatewayPort {
    /// The socket: the Gateway's address and the listener port, or in service mode
    /// `0.0.0.0` and the pod port the listener port was given.
    pub addr: SocketAddr,
    pub tls: bool,
    /// The listeners' `port`, where clients reach them (redirects name it).
    pub listener_port: u16,
    /// The listeners served here (one Gateway's; listeners of one port differ by hostname).
    pub listeners: Vec<ListenerRef>,
    /// Each listener's rules, by the listener's hostname: a request belongs to the most
    /// specific listener that takes its host, and only that listener's routes see it
    /// (listener isolation).
    rules: ByHost<ListenerRules>,
    certificates: HostCertificates,
    /// A `*.` wildcard takes one label only (`*.a.test` takes `x.a.test`, not `x.y.a.test`),
    /// as Kubernetes Ingress has it; Gateway API's take any number.
    one_label_wildcards: bool,
}

/// A listener of a Gateway, by the Gateway's key and the listener's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerRef {
    pub gateway: ObjectKey,
    pub listener: String,
}

/// What a matched rule does with a request.
#[derive(Debug)]
pub struct RouteRule {
    /// The HTTPRoute, and the rule's index in it (for logs and the dashboard).
    pub route: ObjectKey,
    pub index: usize,
    pub filters: RuleFilters,
    pub backends: RuleBackends,
    /// `RequestMirror` filters whose backend resolved, in the rule's order; empty for most
    /// rules (a boxed empty slice allocates nothing).
    pub mirrors: Box<[Mirror]>,
    /// `timeouts.request`: the whole request, retries included, gets this long to its
    /// response headers (504 after); `None`: no such limit.
    pub request_timeout: Option<std::time::Duration>,
    /// A rule compiled from a Kubernetes Ingress: what its annotations add (`None` for
    /// Gateway API rules).
    pub ingress: Option<Box<crate::routing::ingress::IngressRule>>,
}

/// A rule's filters, compiled. A redirect answers at once; the others edit what passes.
#[derive(Debug, Default)]
pub struct RuleFilters {
    pub request_headers: Option<HeaderEdit>,
    pub response_headers: Option<HeaderEdit>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
}

/// Where a rule's requests go: a choice by weight among pools, where a share whose backend
/// did not resolve answers 500 (as the spec says), and no pool at all means every request does.
#[derive(Debug)]
pub struct RuleBackends {
    choices: Box<[(u32, Option<Arc<Pool>>)]>,
    total: u32,
}

impl RuleBackends {
    /// `choices`: each weight with its pool, `None` for a backend that did not resolve.
    /// Zero weights take nothing.
    pub fn new(choices: Vec<(u32, Option<Arc<Pool>>)>) -> Self {
        let choices: Box<[_]> = choices.into_iter().filter(|(w, _)| *w > 0).collect();
        let total = choices.iter().map(|(w, _)| *w).sum();
        RuleBackends { choices, total }
    }

    /// The pool for the next request; `None`: answer 500.
    pub fn pick(&self) -> Option<&Arc<Pool>> {
        match &*self.choices {
            [] => None,
            [(_, only)] => only.as_ref(),
            many => {
                let mut ticket = fastrand::u32(0..self.total);
                for (weight, pool) in many {
                    if ticket < *weight {
                        return pool.as_ref();
                    }
                    ticket -= weight;
                }
                None
            }
        }
    }

    /// Every pool a request may go to.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.choices.iter().filter_map(|(_, p)| p.as_ref())
    }
}

/// One HTTPRoute match on a host, and the rule it belongs to.
#[derive(Debug)]
pub struct RuleMatch {
    pub matcher: RequestMatch,
    pub rule: Arc<RouteRule>,
}

/// Values by host pattern (exact, `*.` wildcard, or any host), found by the most specific
/// pattern that takes a host: exact, then the longest wildcard domain, then any.
#[derive(Debug)]
struct ByHost<T> {
    exact: HashMap<Box<str>, T>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<Box<str>, T>,
    any: Option<T>,
}

impl<T> Default for ByHost<T> {
    fn default() -> Self {
        ByHost {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
        }
    }
}

impl<T> ByHost<T> {
    /// The value of the most specific pattern that takes `host` (normalized).
    fn find(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        let mut rest = host;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(v) = self.wildcard.get(parent) {
                return Some(v);
            }
            rest = parent;
        }
        self.any.as_ref()
    }

    /// As [`ByHost::find`], where a wildcard takes one label only.
    fn find_one_label(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        let parent = host.split_once('.').map(|(_, p)| p);
        parent
            .and_then(|p| self.wildcard.get(p))
            .or(self.any.as_ref())
    }

    /// The value of `pattern` (`None`: any host), made with `make` when it has none yet.
    fn entry(&mut self, pattern: Option<&str>, make: impl FnOnce() -> T) -> &mut T {
        match pattern {
            None => self.any.get_or_insert_with(make),
            Some(h) => match h.strip_prefix("*.") {
                Some(parent) => self.wildcard.entry(parent.into()).or_insert_with(make),
                None => self.exact.entry(h.into()).or_insert_with(make),
            },
        }
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(self.any.iter())
    }
}

/// The matches of one listener, by the route hostname they serve, each list in the order it
/// is tried.
type ListenerRules = ByHost<Vec<RuleMatch>>;

#[derive(Debug, Default)]
struct HostCertificates {
    by_host: ByHost<Arc<CertifiedKey>>,
    /// A listener without a hostname's, else the first listener's.
    default: Option<Arc<CertifiedKey>>,
}

/// What a request carries that rules match on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub host: &'a str,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

impl GatewayPort {
    pub fn new(addr: SocketAddr, tls: bool, listener_port: u16) -> Self {
        GatewayPort {
            addr,
            tls,
            listener_port,
            listeners: Vec::new(),
            rules: ByHost::default(),
            certificates: HostCertificates::default(),
            one_label_wildcards: false,
        }
    }

    /// The rule set of weir's Ingresses, for weir's own listeners: wildcards of one label.
    pub fn for_ingresses() -> Self {
        GatewayPort {
            one_label_wildcards: true,
            ..GatewayPort::new(SocketAddr::from(([0, 0, 0, 0], 0)), false, 0)
        }
    }

    /// The match that takes a request: the most specific listener that takes its host, then
    /// among that listener's rules those of the most specific route hostname (exact, then the
    /// longest wildcard domain, then any host), the first in precedence that matches. Neither
    /// step falls through to a less specific one, as the spec has it.
    pub fn route(&self, request: &RequestFacts<'_>) -> Option<&RuleMatch> {
        let host = normalize_host(request.host);
        let rules = if self.one_label_wildcards {
            self.rules.find_one_label(&host)?.find_one_label(&host)?
        } else {
            self.rules.find(&host)?.find(&host)?
        };
        rules.iter().find(|m| {
            m.matcher
                .matches(request.method, request.path, request.query, request.headers)
        })
    }

    /// The certificate for a TLS server name: the listener's whose hostname takes it most
    /// specifically, else the port's default.
    pub fn certificate(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let certificates = &self.certificates;
        server_name
            .map(normalize_host)
            .and_then(|name| certificates.by_host.find(&name))
            .or(certificates.default.as_ref())
    }

    /// Makes a listener with hostname `listener` (`None`: any host) known here, routes or
    /// not: a request for its hosts is its own even when no route of it matches.
    pub(crate) fn insert_listener(&mut self, listener: Option<&str>) {
        self.rules.entry(listener, ListenerRules::default);
    }

    /// Adds a match for route hostname `host` (`None`: any host; `*.` a wildcard) on the
    /// listener with hostname `listener`, after those already there: compile adds them in
    /// precedence order.
    pub(crate) fn insert_match(
        &mut self,
        listener: Option<&str>,
        host: Option<&str>,
        entry: RuleMatch,
    ) {
        self.rules
            .entry(listener, ListenerRules::default)
            .entry(host, Vec::new)
            .push(entry);
    }

    /// The certificate of a listener with hostname `host` (`None`: any).
    pub(crate) fn insert_certificate(&mut self, host: Option<&str>, key: Arc<CertifiedKey>) {
        let certificates = &mut self.certificates;
        match host {
            None => certificates.default = Some(key),
            Some(h) => {
                if certificates.default.is_none() {
                    certificates.default = Some(key.clone());
                }
                certificates.by_host.entry(Some(h), || key);
            }
        }
    }

    /// Every match on the port, in no particular order.
    pub fn matches(&self) -> impl Iterator<Item = &RuleMatch> {
        self.rules
            .values()
            .flat_map(|listener| listener.values())
            .flatten()
    }
}
