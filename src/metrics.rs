//! Prometheus metrics, served by the admin server as OpenMetrics text.
//!
//! Names follow Prometheus conventions (`weir_` prefix, `_total` counters, base units). Labels
//! are bounded: requests carry pool, method class and status class; endpoint labels appear
//! only on per-endpoint gauges read at scrape time (see `admin::EndpointCollector`), never on
//! histograms.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name`, or empty when no pool matched.
    pub pool: Arc<String>,
    /// GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, or other.
    pub method: &'static str,
    /// 1xx to 5xx.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: Arc<String>,
}

/// The label set of per-pool metrics.
pub fn pool_labels(name: &Arc<String>) -> PoolLabels {
    PoolLabels { pool: name.clone() }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    /// The mirror's pool.
    pub pool: Arc<String>,
    /// `answered`, `failed`, `timed_out`, `no_endpoint`, `overloaded` (its endpoint had too
    /// many requests in flight) or `abandoned` (the body could not be copied whole).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub pool: Arc<String>,
    /// `pass` or `fail`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `http` or `https`.
    pub listener: &'static str,
}

/// Request duration buckets, in seconds: 1 ms to 60 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Every metric weir keeps, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<PoolLabels, Histogram>,
    pub in_flight: Family<PoolLabels, Gauge>,
    pub connect_errors: Family<PoolLabels, Counter>,
    pub timeouts: Family<PoolLabels, Counter>,
    pub retries: Family<PoolLabels, Counter>,
    pub ejections: Family<PoolLabels, Counter>,
    /// Copies sent by `RequestMirror` filters, by the mirror's pool and outcome.
    pub mirror_requests: Family<MirrorLabels, Counter>,
    pub health_check_results: Family<CheckLabels, Counter>,
    pub health_checks: Gauge,
    pub table_rebuilds: Counter,
    pub table_rebuild_duration: Histogram,
    pub config_errors: Counter,
    pub pools: Gauge,
    pub endpoints: Gauge,
    pub tls_handshakes: Family<ResultLabels, Counter>,
    pub connections_open: Family<ListenerLabels, Gauge>,
    /// Clients turned away at `--max-connections`.
    pub connections_refused: Family<ListenerLabels, Counter>,
    /// 1 while a Kubernetes watch is failing (weir serves its last view).
    pub source_stale: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Vec::new())
    }
}

impl Metrics {
    /// The registry, with `collectors` that read live state at each scrape.
    pub fn new(collectors: Vec<Box<dyn Collector>>) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let r = root.sub_registry_with_prefix("weir");
        r.register_collector(Box::new(RuntimeCollector));
        for c in collectors {
            r.register_collector(c);
        }
        let requests = Family::default();
        r.register(
            "requests",
            "Requests answered, by pool, method and status class",
            Family::clone(&requests),
        );
        let request_duration = Family::<PoolLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(DURATION_BUCKETS)) as fn() -> Histogram,
        );
        let request_duration = Family::clone(&request_duration);
        r.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its response, by pool",
            request_duration.clone(),
        );
        let in_flight = Family::default();
        r.register(
            "requests_in_flight",
            "Requests being answered, by pool",
            Family::clone(&in_flight),
        );
        let connect_errors = Family::default();
        r.register(
            "upstream_connect_errors",
            "Connections to pods that failed, by pool",
            Family::clone(&connect_errors),
        );
        let timeouts = Family::default();
        r.register(
            "upstream_timeouts",
            "Upstream attempts that got no response headers in time, by pool",
            Family::clone(&timeouts),
        );
        let retries = Family::default();
        r.register(
            "retries",
            "Requests sent again to another endpoint, by pool",
            Family::clone(&retries),
        );
        let ejections = Family::default();
        r.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection, by pool",
            Family::clone(&ejections),
        );
        let mirror_requests = Family::default();
        r.register(
            "mirror_requests",
            "Request copies sent by RequestMirror filters, by mirror pool and outcome",
            Family::clone(&mirror_requests),
        );
        let health_check_results = Family::default();
        r.register(
            "health_checks",
            "Active health checks finished, by pool and result",
            Family::clone(&health_check_results),
        );
        let health_checks = Gauge::default();
        r.register(
            "health_checks_running",
            "Active health check tasks running (one per checked endpoint)",
            health_checks.clone(),
        );
        let table_rebuilds = Counter::default();
        r.register(
            "table_rebuilds",
            "Routing tables compiled and swapped in",
            table_rebuilds.clone(),
        );
        let table_rebuild_duration =
            Histogram::new([0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]);
        r.register(
            "table_rebuild_duration_seconds",
            "Time to compile a routing table",
            table_rebuild_duration.clone(),
        );
        let config_errors = Counter::default();
        r.register(
            "config_errors",
            "Configuration loads refused (the last good state kept serving)",
            config_errors.clone(),
        );
        let pools = Gauge::default();
        r.register("table_pools", "Pools in the routing table", pools.clone());
        let endpoints = Gauge::default();
        r.register(
            "table_endpoints",
            "Endpoints taking new traffic in the routing table",
            endpoints.clone(),
        );
        let tls_handshakes = Family::default();
        r.register(
            "tls_handshakes",
            "TLS handshakes, by result",
            Family::clone(&tls_handshakes),
        );
        let connections_open = Family::default();
        r.register(
            "client_connections_open",
            "Client connections open, by listener",
            Family::clone(&connections_open),
        );
        let connections_refused = Family::default();
        r.register(
            "client_connections_refused",
            "Client connections refused at the connection limit, by listener",
            Family::clone(&connections_refused),
        );
        let source_stale = Gauge::default();
        r.register(
            "source_stale",
            "1 while a watch of the API server is failing and weir serves its last view",
            source_stale.clone(),
        );
        Metrics {
            registry: root,
            source_stale,
            requests,
            request_duration,
            in_flight,
            connect_errors,
            timeouts,
            retries,
            ejections,
            mirror_requests,
            health_check_results,
            health_checks,
            table_rebuilds,
            table_rebuild_duration,
            config_errors,
            pools,
            endpoints,
            tls_handshakes,
            connections_open,
            connections_refused,
        }
    }

    /// Counts one answered request and its duration.
    pub fn request(&self, pool: &Arc<String>, method: &http::Method, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                pool: pool.clone(),
                method: method_class(method),
                status: status_class(status),
            })
            .inc();
        self.request_duration
            .get_or_create(&PoolLabels { pool: pool.clone() })
            .observe(took.as_secs_f64());
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Method classes and status classes, in the order [`PoolHandles`] indexes them.
const METHOD_CLASSES: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One pool's request metrics, looked up once instead of per request: a family lookup hashes
/// the labels and takes a read lock, which the request path should not pay every time.
/// Request counters are made on first use, so a pool shows only the classes it has served.
#[derive(Debug)]
pub struct PoolHandles {
    pool: Arc<String>,
    pub in_flight: Gauge,
    duration: Histogram,
    requests: [std::sync::OnceLock<Counter>; REQUEST_SLOTS],
}

impl PoolHandles {
    pub fn new(metrics: &Metrics, pool: &Arc<String>) -> Self {
        PoolHandles {
            pool: pool.clone(),
            in_flight: metrics.in_flight.get_or_create(&pool_labels(pool)).clone(),
            duration: metrics
                .request_duration
                .get_or_create(&pool_labels(pool))
                .clone(),
            requests: std::array::from_fn(|_| std::sync::OnceLock::new()),
        }
    }

    /// Counts one answered request and its duration.
    pub fn request(&self, metrics: &Metrics, method: &http::Method, status: u16, took: Duration) {
        let (m, s) = (method_index(method), status_index(status));
        self.requests[m * STATUS_CLASSES.len() + s]
            .get_or_init(|| {
                metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        pool: self.pool.clone(),
                        method: METHOD_CLASSES[m],
                        status: STATUS_CLASSES[s],
                    })
                    .clone()
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }
}

/// How many (method class, status class) request counters a pool can have.
pub const REQUEST_SLOTS: usize = METHOD_CLASSES.len() * STATUS_CLASSES.len();

/// The labels of request counter `slot` of `pool` (slots as [`PoolHandles`] indexes them).
pub fn request_slot_labels(pool: &Arc<String>, slot: usize) -> RequestLabels {
    let slot = slot % REQUEST_SLOTS;
    RequestLabels {
        pool: pool.clone(),
        method: METHOD_CLASSES[slot / STATUS_CLASSES.len()],
        status: STATUS_CLASSES[slot % STATUS_CLASSES.len()],
    }
}

/// Whether request counter `slot` counts 5xx answers.
pub fn request_slot_is_5xx(slot: usize) -> bool {
    slot % STATUS_CLASSES.len() == STATUS_CLASSES.len() - 1
}

impl PoolHandles {
    /// Request counter `slot`, if this pool's handles have made it (a class served since the
    /// pool was compiled). The same counter as the family's: it outlives the handles.
    pub fn request_counter(&self, slot: usize) -> Option<&Counter> {
        self.requests.get(slot)?.get()
    }
}

fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::PATCH => 5,
        http::Method::OPTIONS => 6,
        _ => 7,
    }
}

fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

fn method_class(m: &http::Method) -> &'static str {
    METHOD_CLASSES[method_index(m)]
}

fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_index(status)]
}

/// The async runtime's live task count: a leak of connections or upstream calls shows here.
#[derive(Debug)]
struct RuntimeCollector;

impl Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let m = encoder.encode_descriptor(
            "runtime_tasks",
            "Tasks alive in the async runtime",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(runtime.metrics().num_alive_tasks() as i64).encode(m)?;
        Ok(())
    }
}

/// The standard process metrics, read from /proc at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Kernel clock ticks per second: 100 on every Linux architecture weir builds for.
        const TICKS: f64 = 100.0;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15: 11 and 12 after the command.
        let cpu = (ticks(11) + ticks(12)) / TICKS;
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(cpu).encode(m)?;
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        let m = encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(rss).encode(m)?;
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as i64)
            .unwrap_or(0);
        let m = encoder.encode_descriptor(
            "process_open_fds",
            "Open file descriptors",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(fds).encode(m)?;
        Ok(())
    }
}
