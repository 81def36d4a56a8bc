//! Status conditions: the kinds and reasons weir writes, as types, and the wire shape
//! (`metav1.Condition`) they are written in.

use serde::{Deserialize, Serialize};

/// What a condition is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    /// The pool's spec is valid and its routes are its own.
    Accepted,
    /// Every Service, port and Secret the pool names exists and is usable.
    ResolvedRefs,
    /// At least one endpoint can take traffic.
    Ready,
    /// The pool's certificate is within its validity.
    CertificateValid,
}

impl ConditionType {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionType::Accepted => "Accepted",
            ConditionType::ResolvedRefs => "ResolvedRefs",
            ConditionType::Ready => "Ready",
            ConditionType::CertificateValid => "CertificateValid",
        }
    }
}

/// Why a condition has its status: one CamelCase word, as Kubernetes conditions give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Accepted,
    /// The spec breaks a rule of the API.
    Invalid,
    /// An older pool holds one of the routes.
    RouteConflict,
    /// The host policy does not let the pool's namespace claim one of its hosts.
    HostNotAllowed,
    ResolvedRefs,
    /// A backend's Service does not exist.
    BackendNotFound,
    /// A backend's Service exists but has no such port.
    PortNotFound,
    SecretNotFound,
    /// The Secret exists but holds no usable certificate and key.
    InvalidSecret,
    HealthyEndpoints,
    NoHealthyEndpoints,
    /// The certificate is valid (for a while yet, or its expiry is unreadable).
    Valid,
    /// The certificate expires within the warning window.
    ExpiringSoon,
    Expired,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::Invalid => "Invalid",
            Reason::RouteConflict => "RouteConflict",
            Reason::HostNotAllowed => "HostNotAllowed",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::PortNotFound => "PortNotFound",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::InvalidSecret => "InvalidSecret",
            Reason::HealthyEndpoints => "HealthyEndpoints",
            Reason::NoHealthyEndpoints => "NoHealthyEndpoints",
            Reason::Valid => "Valid",
            Reason::ExpiringSoon => "ExpiringSoon",
            Reason::Expired => "Expired",
        }
    }
}

// Its fields are strings because that is what the API server stores; weir makes them from
// ConditionType and Reason only.
/// A status condition, in the shape of `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted`, `ResolvedRefs`, `Ready` or `CertificateValid`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word saying why.
    pub reason: String,
    /// What is wrong, or what is right, in plain words.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(type_: ConditionType, ok: bool, reason: Reason, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.as_str().to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.as_str().to_string(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }

    /// Whether this condition is of the kind `type_`.
    pub fn is(&self, type_: ConditionType) -> bool {
        self.type_ == type_.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shape_is_metav1_condition() {
        let c = Condition::new(
            ConditionType::Accepted,
            false,
            Reason::RouteConflict,
            "held by ns/old",
        );
        let v = serde_json::to_value(&c).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"type": "Accepted", "status": "False", "reason": "RouteConflict", "message": "held by ns/old"})
        );
        assert!(c.is(ConditionType::Accepted) && !c.is(ConditionType::Ready));
    }
}
