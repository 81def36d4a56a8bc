//! Gateway API (`gateway.networking.k8s.io`, v1.6 standard channel) as weir reads it:
//! GatewayClass, Gateway, HTTPRoute, GRPCRoute and ReferenceGrant.
//!
//! Written here from the upstream Go types rather than taken from the `gateway-api` crate:
//! that crate follows Gateway API v1.5 and builds on kube 4 / k8s-openapi 0.28, a second copy
//! of the client beside weir's kube 5. The CRDs themselves stay upstream's (the cluster owner
//! installs the v1.6.3 standard bundle), so these types carry no schema.
//!
//! Closed sets the CRDs enforce (match types, filter types, `from`) are enums; open ones
//! (protocols, groups, kinds, which may be domain-prefixed) stay strings, so an object weir does
//! not support still parses and gets a status that names what it does not support.

mod duration;
mod features;
mod gateway_class;
mod reference_grant;
mod route;

pub use duration::{DurationError, parse_duration};
pub use features::SUPPORTED_FEATURES;
pub use gateway_class::*;
pub use reference_grant::*;
pub use route::*;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::{Deserialize, Serialize};

/// The API group of every kind here.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The `controllerName` of GatewayClasses weir implements.
pub const CONTROLLER_NAME: &str = "weir.dev/gateway-controller";

/// The Services weir makes for Gateways (service mode) carry this label with value
/// [`MANAGED_BY`]: how weir finds its own (to read their address, and to delete those whose
/// Gateway is gone: an ownerReference cannot cross namespaces).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "weir";
/// The Gateway a Service of weir's is for, as `NAMESPACE/NAME` (an annotation: a Gateway's
/// name may be longer than a label value may).
pub const GATEWAY_ANNOTATION: &str = "gateway.weir.dev/gateway";
/// Labels naming the Gateway, for people and selectors (GEP-1762 names the first); left out
/// when a value does not fit in a label.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
pub const GATEWAY_NAMESPACE_LABEL: &str = "gateway.weir.dev/gateway-namespace";

/// The name of the Service weir makes for Gateway `namespace/name`: `weir-gw-`, the Gateway's
/// name (dots as dashes, cut to fit), and a hash of `namespace/name`, so Gateways of the same
/// name in two namespaces, or two long names cut the same, never share one. At most 63
/// characters, a DNS label as Service names must be.
pub fn service_name(namespace: &str, name: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(format!("{namespace}/{name}").as_bytes());
    let cut: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63 - "weir-gw-".len() - "-".len() - 8)
        .collect();
    format!("weir-gw-{}-{:08x}", cut.trim_end_matches('-'), hash as u32)
}

/// A reference from a route to its parent (a Gateway, or a listener of one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// Defaults to `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Defaults to `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Defaults to the route's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// A listener's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A reference to a backend: a Service unless `group`/`kind` say otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendObjectReference {
    /// Defaults to `""` (the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Defaults to `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A reference to a Secret (or another kind holding a certificate).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// Defaults to `""` (the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Defaults to `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to an object in the same namespace, by group and kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// A reference to an object by group, kind and name, possibly in another namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A backend with its share of the rule's traffic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    #[serde(flatten)]
    pub object: BackendObjectReference,
    /// Defaults to 1; 0 takes no traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// Keeping a client on one backend, by cookie or header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_timeout: Option<String>,
    /// `Cookie` (the default) or `Header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    /// `Session` (the default) or `Permanent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_type: Option<String>,
}

/// What one controller says of a route's attachment to one parent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    pub controller_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A route's status: one entry per parent per controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

#[cfg(test)]
mod tests;
