//! TLS settings of a pool spec.

use super::Bounds;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

pub(crate) const SECRET_NAME_LEN: Bounds = Bounds::new(1, 253);
/// Two years, in seconds.
pub(crate) const HSTS_MAX_AGE: Bounds = Bounds::new(0, 63_072_000);

/// TLS termination for the pool's hosts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// A `kubernetes.io/tls` Secret in the pool's namespace (`tls.crt`, `tls.key`).
    #[schemars(length(min = SECRET_NAME_LEN.min, max = SECRET_NAME_LEN.max))]
    pub secret_name: String,
    /// Answer plain-HTTP requests for the pool's hosts with a 308 to https.
    #[serde(default)]
    pub redirect_http: bool,
    /// Send `Strict-Transport-Security` on HTTPS answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Hsts {
    #[schemars(range(min = HSTS_MAX_AGE.min, max = HSTS_MAX_AGE.max))]
    pub max_age_seconds: u32,
    #[serde(default)]
    pub include_sub_domains: bool,
}
