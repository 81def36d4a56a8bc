//! The `LoadBalancerPool` custom resource (`weir.dev/v1alpha1`): its types, defaults, bounds and
//! the validation weir runs itself (the API server runs the same bounds from the generated schema).

mod affinity;
mod condition;
pub mod gateway;
mod health;
pub mod ingress;
mod tls;
mod validate;

pub use affinity::{AffinityCookie, SameSite, SessionAffinity, is_cookie_name};
pub use condition::{Condition, ConditionType, Reason};
pub use health::{HealthCheck, HttpCheck, OutlierDetection, Retries, TcpCheck, parse_status_range};
pub use tls::{Hsts, Tls};

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use validate::{ValidationError, validate_spec};

/// Upper bounds that also keep the CEL rules of the CRD within the API server's cost budget.
pub const MAX_ROUTES: usize = 64;
pub const MAX_BACKENDS: usize = 32;
pub const MAX_WEIGHT: u32 = 1000;

/// An inclusive bound of the schema: a length in characters, a number of items, or a value.
/// The `#[schemars(...)]` attributes and `validate_spec` read the same constants, so the CRD
/// (which the API server enforces) and the file source (which only weir checks) agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub min: u32,
    pub max: u32,
}

impl Bounds {
    pub(crate) const fn new(min: u32, max: u32) -> Self {
        Bounds { min, max }
    }
}

pub(crate) const CLASS_NAME_LEN: Bounds = Bounds::new(1, 63);
pub(crate) const ROUTE_HOST_LEN: Bounds = Bounds::new(0, 253);
pub(crate) const PATH_PREFIX_LEN: Bounds = Bounds::new(1, 1024);
pub(crate) const SERVICE_LEN: Bounds = Bounds::new(1, 63);
pub(crate) const HASH_KEY_LEN: Bounds = Bounds::new(1, 256);
pub(crate) const DECAY_SECONDS: Bounds = Bounds::new(1, 600);
pub(crate) const WINDOW_SECONDS: Bounds = Bounds::new(1, 3600);
pub(crate) const BLACKOUT_SECONDS: Bounds = Bounds::new(0, 600);
pub(crate) const EXPIRY_SECONDS: Bounds = Bounds::new(1, 3600);
pub(crate) const UPDATE_PERIOD_MILLIS: Bounds = Bounds::new(100, 60_000);
pub(crate) const ERROR_PENALTY_PERCENT: Bounds = Bounds::new(0, 1000);
pub(crate) const CONNECT_MILLIS: Bounds = Bounds::new(1, 60_000);
pub(crate) const REQUEST_SECONDS: Bounds = Bounds::new(1, 3600);
pub(crate) const IDLE_SECONDS: Bounds = Bounds::new(1, 86_400);

/// A pool of pods that takes a share of ingress traffic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "LoadBalancerPool",
    plural = "loadbalancerpools",
    shortname = "lbp",
    namespaced,
    status = "LoadBalancerPoolStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".status.hosts"}"#,
    printcolumn = r#"{"name":"Algorithm","type":"string","jsonPath":".spec.algorithm"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.endpoints.ready"}"#,
    printcolumn = r#"{"name":"Healthy","type":"integer","jsonPath":".status.endpoints.healthy"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.backends.exists(b, b.weight > 0)").message("at least one backend needs a weight above 0"))]
#[x_kube(validation = Rule::new("self.routes.all(r, self.routes.exists_one(s, s.host == r.host && s.pathPrefix == r.pathPrefix))").message("routes must not repeat the same host and pathPrefix"))]
#[x_kube(validation = Rule::new("self.algorithm != 'ConsistentHash' || has(self.hashOn)").message("algorithm ConsistentHash needs hashOn"))]
#[x_kube(validation = Rule::new("!has(self.hashOn) || self.algorithm == 'ConsistentHash'").message("hashOn is only for algorithm ConsistentHash"))]
#[x_kube(validation = Rule::new("!has(self.weightedByLoad) || self.algorithm == 'WeightedByLoad'").message("weightedByLoad is only for algorithm WeightedByLoad"))]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPoolSpec {
    /// Which weir installation serves this pool (`--controller-class`); none: the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = CLASS_NAME_LEN.min, max = CLASS_NAME_LEN.max))]
    pub class_name: Option<String>,
    /// Which ingress traffic this pool takes. No routes: the pool takes nothing.
    #[serde(default)]
    #[schemars(length(max = MAX_ROUTES))]
    pub routes: Vec<Route>,
    /// Services whose ready pod addresses serve the pool.
    #[schemars(length(min = 1, max = MAX_BACKENDS))]
    pub backends: Vec<Backend>,
    /// How a request picks an endpoint.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// What a request is hashed on, for `ConsistentHash` (required there, refused elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
    /// Settings of the `PeakEwma` algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_ewma: Option<PeakEwma>,
    /// Settings of the `WeightedByLoad` algorithm (defaults when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_by_load: Option<WeightedByLoad>,
    /// What happens to the load reports pods send (ORCA `endpoint-load-metrics` headers and
    /// trailers). weir reads them with every algorithm, for `/pools` and the metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_reports: Option<LoadReports>,
    /// New endpoints take a growing share of traffic over a window, instead of a full share at
    /// once (RoundRobin, LeastConnections, PeakEwma and WeightedByLoad).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStart>,
    /// Active health checks, on top of Kubernetes readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive checks: eject endpoints that fail live requests in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS termination with a certificate from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Keep each client on one endpoint with a cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// Retries on another endpoint (default: one retry, on connect failures).
    #[serde(default)]
    pub retries: Retries,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// One host and path prefix the pool answers for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// An exact host (`shop.example.com`), a wildcard for one DNS label (`*.example.com`), or
    /// empty for any host.
    #[serde(default)]
    #[schemars(
        length(max = ROUTE_HOST_LEN.max),
        regex(
            pattern = r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$|^$"
        )
    )]
    pub host: String,
    /// A path prefix, matched segment by segment (`/api` takes `/api` and `/api/x`, not
    /// `/apix`). The longest matching prefix wins.
    #[serde(default = "default_path_prefix")]
    #[schemars(
        length(min = PATH_PREFIX_LEN.min, max = PATH_PREFIX_LEN.max),
        regex(pattern = r"^/")
    )]
    pub path_prefix: String,
}

fn default_path_prefix() -> String {
    "/".to_string()
}

/// A Service whose ready endpoints serve the pool, and its share of the traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Name of a Service in the pool's namespace.
    #[schemars(length(min = SERVICE_LEN.min, max = SERVICE_LEN.max))]
    pub service: String,
    /// The Service port, by name or number.
    pub port: ServicePort,
    /// Relative share of the pool's traffic, 0 to 1000. 0 takes no new traffic.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = MAX_WEIGHT))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A Service port, by number or by name, as in Ingress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum ServicePort {
    Number(u16),
    Name(String),
}

impl std::fmt::Display for ServicePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServicePort::Number(n) => write!(f, "{n}"),
            ServicePort::Name(s) => f.write_str(s),
        }
    }
}

impl schemars::JsonSchema for ServicePort {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ServicePort".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // The Kubernetes int-or-string form, as Service targetPort uses it.
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "The Service port, by name or number."
        })
    }
}

/// How a request picks one endpoint among the eligible ones. Every algorithm first picks a
/// backend by weight, then an endpoint of that backend.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Algorithm {
    /// Smooth weighted round robin, as nginx does it.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest requests in flight.
    LeastConnections,
    /// The better of two random endpoints by peak-sensitive latency EWMA × (in flight + 1).
    PeakEwma,
    /// Uniformly random.
    Random,
    /// A hash of `hashOn` picks the endpoint (Maglev): the same key keeps its endpoint, and
    /// endpoint changes move few keys. Requests without the key go round robin.
    ConsistentHash,
    /// Weighted round robin by the load pods report (ORCA load reports, weighed as gRPC's
    /// `weighted_round_robin` does): requests per second over utilization, less for errors.
    /// Endpoints without a fresh report take the mean weight; with fewer than two weighted
    /// endpoints it is round robin.
    WeightedByLoad,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "RoundRobin",
            Algorithm::LeastConnections => "LeastConnections",
            Algorithm::PeakEwma => "PeakEwma",
            Algorithm::Random => "Random",
            Algorithm::ConsistentHash => "ConsistentHash",
            Algorithm::WeightedByLoad => "WeightedByLoad",
        }
    }
}

/// The request property `ConsistentHash` hashes: exactly one of `header`, `cookie`, `sourceIP`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.header), has(self.cookie), has(self.sourceIP) && self.sourceIP].filter(x, x).size() == 1").message("hashOn needs exactly one of header, cookie or sourceIP: true"))]
pub struct HashOn {
    /// A request header, e.g. `x-user-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = HASH_KEY_LEN.min, max = HASH_KEY_LEN.max))]
    pub header: Option<String>,
    /// A cookie, e.g. the application's own session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = HASH_KEY_LEN.min, max = HASH_KEY_LEN.max))]
    pub cookie: Option<String>,
    /// The client's IP address.
    #[serde(default, rename = "sourceIP", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

/// Settings of the `PeakEwma` algorithm.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeakEwma {
    /// How fast old latency observations fade, in seconds: the EWMA's time constant.
    #[serde(default = "default_decay_seconds")]
    #[schemars(range(min = DECAY_SECONDS.min, max = DECAY_SECONDS.max))]
    pub decay_seconds: u32,
}

fn default_decay_seconds() -> u32 {
    10
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma {
            decay_seconds: default_decay_seconds(),
        }
    }
}

/// Settings of the `WeightedByLoad` algorithm. An endpoint's weight is
/// `qps / (utilization + eps / qps × errorPenaltyPercent / 100)`, from its latest report
/// (`application_utilization` when set, else `cpu_utilization`; `rps_fractional` and `eps`, or
/// weir's own counts of its requests and failures when the report has no `rps_fractional`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WeightedByLoad {
    /// After an endpoint's first report, how long before its weight counts, in seconds: a
    /// pod that just started reports noise.
    #[serde(default = "default_blackout_seconds")]
    #[schemars(range(min = BLACKOUT_SECONDS.min, max = BLACKOUT_SECONDS.max))]
    pub blackout_seconds: u32,
    /// How long a report counts, in seconds; an endpoint whose reports stop falls back to the
    /// mean weight, and its next report starts a new blackout.
    #[serde(default = "default_expiry_seconds")]
    #[schemars(range(min = EXPIRY_SECONDS.min, max = EXPIRY_SECONDS.max))]
    pub expiry_seconds: u32,
    /// How often the weights are recomputed, in milliseconds (off the request path).
    #[serde(default = "default_update_period_millis")]
    #[schemars(range(min = UPDATE_PERIOD_MILLIS.min, max = UPDATE_PERIOD_MILLIS.max))]
    pub update_period_millis: u32,
    /// How much errors weigh against an endpoint, in percent (gRPC's
    /// `error_utilization_penalty` × 100).
    #[serde(default = "default_error_penalty_percent")]
    #[schemars(range(min = ERROR_PENALTY_PERCENT.min, max = ERROR_PENALTY_PERCENT.max))]
    pub error_penalty_percent: u32,
}

fn default_blackout_seconds() -> u32 {
    10
}
fn default_expiry_seconds() -> u32 {
    180
}
fn default_update_period_millis() -> u32 {
    1000
}
fn default_error_penalty_percent() -> u32 {
    100
}

impl Default for WeightedByLoad {
    fn default() -> Self {
        WeightedByLoad {
            blackout_seconds: default_blackout_seconds(),
            expiry_seconds: default_expiry_seconds(),
            update_period_millis: default_update_period_millis(),
            error_penalty_percent: default_error_penalty_percent(),
        }
    }
}

/// What happens to the load reports pods send.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadReports {
    /// Pass the report headers and trailers on to clients (default: weir removes them, as
    /// they describe the pod, not the answer).
    #[serde(default)]
    pub keep: bool,
}

/// Slow start: a new endpoint's share grows linearly from a small floor to full over the window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SlowStart {
    /// Length of the ramp, in seconds.
    #[schemars(range(min = WINDOW_SECONDS.min, max = WINDOW_SECONDS.max))]
    pub window_seconds: u32,
}

/// Upstream timeouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Time to open a TCP connection to a pod.
    #[serde(default = "default_connect_millis")]
    #[schemars(range(min = CONNECT_MILLIS.min, max = CONNECT_MILLIS.max))]
    pub connect_millis: u32,
    /// Time from sending a request upstream to its response headers. Bodies stream without a
    /// deadline of their own, so downloads and WebSockets are not cut.
    #[serde(default = "default_request_seconds")]
    #[schemars(range(min = REQUEST_SECONDS.min, max = REQUEST_SECONDS.max))]
    pub request_seconds: u32,
    /// How long an idle keep-alive connection to a pod is kept.
    #[serde(default = "default_idle_seconds")]
    #[schemars(range(min = IDLE_SECONDS.min, max = IDLE_SECONDS.max))]
    pub idle_seconds: u32,
}

/// Three seconds: Linux retransmits a lost SYN after one second, so a 1 s timeout failed a
/// connect on a single lost packet; 3 s survives one loss, yet a black-holed pod costs a
/// request at most 3 s before it is retried elsewhere (Envoy's 5 s trades more for that).
fn default_connect_millis() -> u32 {
    3000
}
fn default_request_seconds() -> u32 {
    60
}
fn default_idle_seconds() -> u32 {
    300
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_millis: default_connect_millis(),
            request_seconds: default_request_seconds(),
            idle_seconds: default_idle_seconds(),
        }
    }
}

/// What weir observed of a pool, written by the leader.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPoolStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The hosts the pool serves, comma-separated (`*` for any host), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
    #[serde(default)]
    pub endpoints: EndpointCounts,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Endpoint counts over all backends of a pool.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub struct EndpointCounts {
    /// Endpoints listed in the backends' EndpointSlices.
    pub total: u32,
    /// Endpoints Kubernetes reports ready.
    pub ready: u32,
    /// Ready endpoints that also pass weir's own checks.
    pub healthy: u32,
}

/// The CRD as YAML, exactly as `weir crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(LoadBalancerPool::crd()).unwrap_or_default();
    drop_unknown_formats(&mut crd);
    serde_saphyr::to_string(&crd)
}

/// Removes the `uint16`/`uint32` formats schemars writes for unsigned fields: Kubernetes does
/// not know them and warns on every apply, and the schema's `minimum: 0` already says it.
fn drop_unknown_formats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map
                .get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| f.starts_with("uint"))
            {
                map.remove("format");
            }
            map.values_mut().for_each(drop_unknown_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_unknown_formats),
        _ => {}
    }
}
