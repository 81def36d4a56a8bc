//! Prometheus metrics, served by the admin server.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name`, or empty when no pool matched.
    pub pool: Arc<String>,
    pub code: u16,
}

/// Every metric weir keeps, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub table_rebuilds: Counter,
    pub config_errors: Counter,
    pub pools: Gauge,
    pub endpoints: Gauge,
    pub health_checks: Gauge,
    pub ejections: Counter,
    pub retries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Vec::new())
    }
}

impl Metrics {
    /// The registry, with `collectors` that read live state at each scrape.
    pub fn new(collectors: Vec<Box<dyn Collector>>) -> Self {
        let mut registry = Registry::with_prefix("weir");
        for c in collectors {
            registry.register_collector(c);
        }
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by pool and status code",
            requests.clone(),
        );
        let table_rebuilds = Counter::default();
        registry.register(
            "table_rebuilds",
            "Routing tables compiled and swapped in",
            table_rebuilds.clone(),
        );
        let config_errors = Counter::default();
        registry.register(
            "config_errors",
            "Configuration loads refused (the last good state kept serving)",
            config_errors.clone(),
        );
        let pools = Gauge::default();
        registry.register("table_pools", "Pools in the routing table", pools.clone());
        let endpoints = Gauge::default();
        registry.register(
            "table_endpoints",
            "Endpoints taking new traffic in the routing table",
            endpoints.clone(),
        );
        let health_checks = Gauge::default();
        registry.register(
            "health_checks_running",
            "Active health check tasks running (one per checked endpoint)",
            health_checks.clone(),
        );
        let ejections = Counter::default();
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection",
            ejections.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "retries",
            "Requests sent again to another endpoint",
            retries.clone(),
        );
        Metrics {
            registry,
            health_checks,
            ejections,
            retries,
            requests,
            table_rebuilds,
            config_errors,
            pools,
            endpoints,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, pool: &Arc<String>, code: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                pool: pool.clone(),
                code,
            })
            .inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
