//! A compiled pool: its endpoints grouped by backend, and how it picks one.

use crate::api::{
    Algorithm, HashOn, HealthCheck, OutlierDetection, Retries, SessionAffinity, Timeouts,
};
use crate::balance::{Balance, HashRing, Pick, WeightedSequence};
use crate::certificate::Certificate;
use crate::endpoint::Endpoint;
use crate::metrics::{Metrics, PoolHandles};
use crate::store::ObjectKey;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A pool as the proxy sees it.
#[derive(Debug)]
pub struct Pool {
    pub key: ObjectKey,
    /// `namespace/name`, shared by logs and metric labels without re-formatting.
    pub name: Arc<String>,
    /// How the pool balances, checks and retries.
    pub policy: Policy,
    /// TLS for the pool's hosts, when it asks for it.
    pub tls: Option<PoolTls>,
    /// The routes this pool holds, as (host, path prefix); empty host: any host.
    pub routes: Vec<(String, String)>,
    pub backends: Vec<BackendSet>,
    /// Backend picks, by backend weight, over the backends that have endpoints.
    backend_order: Option<WeightedSequence>,
    /// Backend picks for requests with a hash key (ConsistentHash only).
    backend_ring: Option<HashRing>,
    /// The pool's request metrics, looked up on its first request (boxed: most pools of a
    /// large table may never serve one, and an empty slot costs one pointer).
    metrics: OnceLock<Box<PoolHandles>>,
}

/// A pool's TLS settings, compiled.
#[derive(Debug, Clone)]
pub struct PoolTls {
    /// The certificate in service: this Secret's, or the last good one while it is broken.
    /// `None` when the Secret never loaded.
    pub certificate: Option<Certificate>,
    pub redirect_http: bool,
    /// The `Strict-Transport-Security` value for HTTPS answers.
    pub hsts: Option<http::HeaderValue>,
}

/// The endpoints of one backend Service of a pool.
#[derive(Debug)]
pub struct BackendSet {
    /// The Service.
    pub service: ObjectKey,
    pub weight: u32,
    /// Ready endpoints: the ones that take new traffic.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Terminating but still serving: no new traffic; kept for clients pinned to them.
    pub fenced: Vec<Arc<Endpoint>>,
    /// Endpoints the slices list as neither ready nor serving.
    pub not_ready: u32,
    pub balancer: Box<dyn Balance>,
}

/// How a pool balances, from its spec.
#[derive(Debug, Clone)]
pub struct Policy {
    pub algorithm: Algorithm,
    pub hash_on: Option<HashOn>,
    pub latency_decay: Duration,
    pub timeouts: Timeouts,
    /// One attempt's time from sending upstream to the response headers: `timeouts`'
    /// `requestSeconds` for a pool; a Gateway API rule gives its own, to the millisecond.
    pub attempt_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    pub outlier_detection: Option<OutlierDetection>,
    pub retries: Retries,
    pub session_affinity: Option<SessionAffinity>,
    /// Pass pods' load reports on to clients instead of removing them.
    pub keep_load_reports: bool,
    /// Larger request bodies get 413 (an Ingress's `proxy-body-size`); `None`: no limit.
    pub max_request_body: Option<u64>,
}

impl Pool {
    pub fn new(key: ObjectKey, policy: Policy, backends: Vec<BackendSet>) -> Self {
        let weights: Vec<u32> = backends
            .iter()
            .map(|b| if b.endpoints.is_empty() { 0 } else { b.weight })
            .collect();
        let backend_ring = match policy.algorithm {
            Algorithm::ConsistentHash => {
                let names: Vec<String> = backends.iter().map(|b| b.service.to_string()).collect();
                HashRing::new(&names, &weights)
            }
            _ => None,
        };
        Pool {
            name: Arc::new(key.to_string()),
            key,
            policy,
            tls: None,
            routes: Vec::new(),
            backend_order: WeightedSequence::new(&weights),
            backend_ring,
            backends,
            metrics: OnceLock::new(),
        }
    }

    /// The pool's request metrics in `metrics`.
    pub fn metrics(&self, metrics: &Metrics) -> &PoolHandles {
        self.metrics
            .get_or_init(|| Box::new(PoolHandles::new(metrics, &self.name)))
    }

    /// The pool's request metrics, if it has served a request (never makes them).
    pub fn metrics_if_any(&self) -> Option<&PoolHandles> {
        self.metrics.get().map(|h| h.as_ref())
    }

    /// The endpoint for the next request: a backend by weight (by hash when the request has
    /// a key), then an endpoint of it by the pool's algorithm, among endpoints `pick.accept`
    /// takes. When the chosen backend has none, the others are tried in order, so a split
    /// never fails while any backend can serve.
    pub fn pick(&self, pick: &Pick<'_>) -> Option<&Arc<Endpoint>> {
        let first = match (&self.backend_ring, pick.key) {
            (Some(ring), Some(key)) => ring.lookup(key, |_| true)?,
            _ => self.backend_order.as_ref()?.next(),
        };
        let n = self.backends.len();
        (0..n).find_map(|step| {
            let backend = &self.backends[(first + step) % n];
            if step > 0 && backend.weight == 0 {
                return None;
            }
            let i = backend.balancer.pick(&backend.endpoints, pick)?;
            backend.endpoints.get(i)
        })
    }

    /// Every endpoint that takes new traffic (ready, not fenced), over all backends. Health and
    /// ejection are live flags on each; filter with `Endpoint::is_available`.
    pub fn ready_endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.backends.iter().flat_map(|b| b.endpoints.iter())
    }

    /// Every endpoint the pool knows (ready and fenced), for reuse across rebuilds.
    pub fn all_endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.backends
            .iter()
            .flat_map(|b| b.endpoints.iter().chain(b.fenced.iter()))
    }
}
