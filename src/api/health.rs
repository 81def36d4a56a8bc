//! Health-related parts of a pool spec: active checks, outlier detection, retries.

use super::Bounds;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

pub(crate) const INTERVAL_SECONDS: Bounds = Bounds::new(1, 300);
pub(crate) const TIMEOUT_SECONDS: Bounds = Bounds::new(1, 60);
/// `healthyThreshold` and `unhealthyThreshold`.
pub(crate) const THRESHOLD: Bounds = Bounds::new(1, 20);
pub(crate) const CHECK_PATH_LEN: Bounds = Bounds::new(1, 1024);
pub(crate) const CHECK_HOST_LEN: Bounds = Bounds::new(1, 253);
pub(crate) const EXPECTED_STATUSES: Bounds = Bounds::new(1, 16);
pub(crate) const CONSECUTIVE_FAILURES: Bounds = Bounds::new(1, 1000);
pub(crate) const EJECTION_SECONDS: Bounds = Bounds::new(1, 3600);
pub(crate) const MAX_EJECTED_PERCENT: Bounds = Bounds::new(0, 100);
pub(crate) const ATTEMPTS: Bounds = Bounds::new(0, 5);
pub(crate) const ON_STATUS: Bounds = Bounds::new(0, 3);

/// Active health checks, on top of Kubernetes readiness. An endpoint Kubernetes reports
/// ready is trusted at once; `unhealthyThreshold` failed checks in a row take it out of
/// rotation, `healthyThreshold` passing checks in a row bring it back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.http) != has(self.tcp)").message("healthCheck needs exactly one of http or tcp"))]
pub struct HealthCheck {
    /// An HTTP GET whose status must be among `expectedStatuses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// A TCP connect (a heartbeat): the endpoint is healthy when it accepts connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// Time between two checks of one endpoint.
    #[serde(default = "default_interval")]
    #[schemars(range(min = INTERVAL_SECONDS.min, max = INTERVAL_SECONDS.max))]
    pub interval_seconds: u32,
    /// Time a check may take before it counts as failed.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = TIMEOUT_SECONDS.min, max = TIMEOUT_SECONDS.max))]
    pub timeout_seconds: u32,
    /// Passing checks in a row that bring an unhealthy endpoint back.
    #[serde(default = "default_healthy")]
    #[schemars(range(min = THRESHOLD.min, max = THRESHOLD.max))]
    pub healthy_threshold: u32,
    /// Failed checks in a row that take an endpoint out.
    #[serde(default = "default_unhealthy")]
    #[schemars(range(min = THRESHOLD.min, max = THRESHOLD.max))]
    pub unhealthy_threshold: u32,
}

fn default_interval() -> u32 {
    5
}
fn default_timeout() -> u32 {
    1
}
fn default_healthy() -> u32 {
    2
}
fn default_unhealthy() -> u32 {
    3
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// The path to GET.
    #[serde(default = "default_check_path")]
    #[schemars(
        length(min = CHECK_PATH_LEN.min, max = CHECK_PATH_LEN.max),
        regex(pattern = r"^/")
    )]
    pub path: String,
    /// The Host header to send (default: the endpoint's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = CHECK_HOST_LEN.min, max = CHECK_HOST_LEN.max))]
    pub host: Option<String>,
    /// Statuses that pass: codes (`"204"`) or ranges (`"200-399"`).
    #[serde(default = "default_expected")]
    #[schemars(length(min = EXPECTED_STATUSES.min, max = EXPECTED_STATUSES.max))]
    pub expected_statuses: Vec<String>,
}

fn default_check_path() -> String {
    "/healthz".into()
}
fn default_expected() -> Vec<String> {
    vec!["200-399".into()]
}

/// A TCP connect check; it has no settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TcpCheck {}

/// Passive checks from live traffic: endpoints that fail requests in a row are ejected for a
/// while.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// 5xx answers or connect errors in a row that eject an endpoint.
    #[serde(default = "default_consecutive")]
    #[schemars(range(min = CONSECUTIVE_FAILURES.min, max = CONSECUTIVE_FAILURES.max))]
    pub consecutive_failures: u32,
    /// Length of the first ejection; each ejection in a row lasts one more of these (up to 10).
    #[serde(default = "default_ejection")]
    #[schemars(range(min = EJECTION_SECONDS.min, max = EJECTION_SECONDS.max))]
    pub ejection_seconds: u32,
    /// Never eject more than this share of the pool's endpoints at once (at least one).
    #[serde(default = "default_max_ejected")]
    #[schemars(range(min = MAX_EJECTED_PERCENT.min, max = MAX_EJECTED_PERCENT.max))]
    pub max_ejected_percent: u32,
}

fn default_consecutive() -> u32 {
    5
}
fn default_ejection() -> u32 {
    30
}
fn default_max_ejected() -> u32 {
    50
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: default_consecutive(),
            ejection_seconds: default_ejection(),
            max_ejected_percent: default_max_ejected(),
        }
    }
}

/// Retries on another endpoint. A request is retried when it never reached a pod (connect
/// failure), or — for idempotent methods with a body weir still holds — when the connection
/// broke before any response byte, no response came within `timeouts.requestSeconds`, or the
/// answer's status is in `onStatus`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Retries per request (each on an endpoint not tried yet); 0 turns retries off.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = ATTEMPTS.min, max = ATTEMPTS.max))]
    pub attempts: u32,
    /// Statuses that an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) is retried on:
    /// any of 502, 503, 504.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = ON_STATUS.max))]
    pub on_status: Vec<u16>,
}

fn default_attempts() -> u32 {
    1
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: default_attempts(),
            on_status: Vec::new(),
        }
    }
}

/// A parsed `expectedStatuses` entry.
pub fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v = s.trim().parse().ok()?;
            (v, v)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}
