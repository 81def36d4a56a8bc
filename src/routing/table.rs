//! The routing table: immutable once built, swapped whole by the proxy's owner.

use super::gateway::{GatewayPort, PodPorts};
use super::host::{normalize_host, prefix_matches};
use super::pool::Pool;
use crate::store::ObjectKey;
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// Routes of one host, longest prefix first.
#[derive(Debug, Default)]
pub(super) struct PathRoutes {
    routes: Vec<(Box<str>, Arc<Pool>)>,
}

impl PathRoutes {
    pub(super) fn insert(&mut self, prefix: &str, pool: Arc<Pool>) {
        self.routes.push((prefix.into(), pool));
        self.routes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    }

    fn lookup(&self, path: &str) -> Option<&Arc<Pool>> {
        self.routes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, pool)| pool)
    }
}

/// Which pool takes a request, by host then path.
#[derive(Debug, Default)]
pub struct RoutingTable {
    pub(super) exact: HashMap<Box<str>, PathRoutes>,
    /// Keyed by what follows `*.`: `*.example.com` is stored as `example.com`.
    pub(super) wildcard: HashMap<Box<str>, PathRoutes>,
    pub(super) any_host: PathRoutes,
    pub(super) pools: BTreeMap<ObjectKey, Arc<Pool>>,
    /// Certificates by exact host, and by the parent domain of a wildcard.
    pub(super) certificates: HashMap<Box<str>, Arc<CertifiedKey>>,
    pub(super) wildcard_certificates: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Gateway API: what each Gateway socket serves, by the address it listens on.
    pub(super) gateway_ports: BTreeMap<SocketAddr, GatewayPort>,
    /// Service mode: the pod port of each listener port of each Gateway, kept by the next
    /// compile (until the Gateway's Service holds it).
    pub(super) gateway_pod_ports: PodPorts,
    /// Kubernetes Ingress: the rules of weir's Ingresses, for weir's own listeners (a request
    /// no LoadBalancerPool route takes); `None` when weir serves no Ingress.
    pub(super) ingress: Option<GatewayPort>,
}

impl RoutingTable {
    /// The pool for a request's host (as sent, any case, maybe with a port) and path.
    ///
    /// Exact host routes come first, then the wildcard for the host's parent domain, then
    /// routes for any host; within each, the longest matching prefix.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Pool>> {
        let host = normalize_host(host);
        let host = host.as_ref();
        if let Some(pool) = self.exact.get(host).and_then(|r| r.lookup(path)) {
            return Some(pool);
        }
        if let Some(parent) = wildcard_parent(host)
            && let Some(pool) = self.wildcard.get(parent).and_then(|r| r.lookup(path))
        {
            return Some(pool);
        }
        self.any_host.lookup(path)
    }

    /// The certificate for a TLS server name: exact host, then the wildcard of its parent
    /// domain. `None`: the default certificate.
    pub fn certificate(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = normalize_host(server_name);
        let name = name.as_ref();
        if let Some(c) = self.certificates.get(name) {
            return Some(c);
        }
        self.wildcard_certificates.get(wildcard_parent(name)?)
    }

    /// A pool by key, whether or not it holds any route.
    pub fn pool(&self, key: &ObjectKey) -> Option<&Arc<Pool>> {
        self.pools.get(key)
    }

    /// What the Gateway socket bound to `addr` serves.
    pub fn gateway_port(&self, addr: &SocketAddr) -> Option<&GatewayPort> {
        self.gateway_ports.get(addr)
    }

    /// Every Gateway socket the table wants open, in address order.
    pub fn gateway_ports(&self) -> impl Iterator<Item = &GatewayPort> {
        self.gateway_ports.values()
    }

    /// Service mode: each Gateway's listener ports and the pod ports they were given.
    pub fn gateway_pod_ports(&self) -> &PodPorts {
        &self.gateway_pod_ports
    }

    /// The rules of weir's Ingresses, tried on weir's own listeners after the pools' routes.
    pub fn ingress_rules(&self) -> Option<&GatewayPort> {
        self.ingress.as_ref()
    }

    /// Every compiled pool, in key order.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }
}

/// The domain a `*.` wildcard must name to match `host`: what follows its first label, when
/// that label is one DNS label (letters, digits, `-`, `_`; not empty). `.shop`, `a b.shop` or
/// `user@a.shop` match no wildcard.
fn wildcard_parent(host: &str) -> Option<&str> {
    let (label, parent) = host.split_once('.')?;
    let is_label = !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    is_label.then_some(parent)
}
