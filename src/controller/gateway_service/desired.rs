//! What a Gateway's Service should be: compile's [`ServicePlan`] with weir's namespace, its
//! pods' selector and the Service type, as the object weir applies. Pure.

use crate::api::gateway::{
    GATEWAY_ANNOTATION, GATEWAY_NAME_LABEL, GATEWAY_NAMESPACE_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
    service_name,
};
use crate::routing::ServicePlan;
use crate::store::ObjectKey;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The ConfigMap key (of a GatewayClass's `parametersRef`) that says the Service type.
pub const SERVICE_TYPE_KEY: &str = "serviceType";

/// The Service types weir makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    ClusterIp,
    NodePort,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a parameters ConfigMap's `serviceType` is not one weir makes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("serviceType {0:?} is not LoadBalancer, ClusterIP or NodePort")]
pub struct UnknownServiceType(pub String);

impl FromStr for ServiceType {
    type Err = UnknownServiceType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "LoadBalancer" => Ok(ServiceType::LoadBalancer),
            "ClusterIP" => Ok(ServiceType::ClusterIp),
            "NodePort" => Ok(ServiceType::NodePort),
            other => Err(UnknownServiceType(other.to_string())),
        }
    }
}

/// The type a parameters ConfigMap's data asks for; `None` when it does not say.
pub fn type_from_parameters(
    data: &BTreeMap<String, String>,
) -> Result<Option<ServiceType>, UnknownServiceType> {
    data.get(SERVICE_TYPE_KEY).map(|t| t.parse()).transpose()
}

/// Where weir's Services go and which pods they send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// weir's own namespace.
    pub namespace: String,
    /// weir's pods' labels.
    pub selector: BTreeMap<String, String>,
    /// The type when the GatewayClass's parameters do not say.
    pub default_type: ServiceType,
}

/// Whether `value` may be a label value (63 characters at most, alphanumeric at both ends,
/// `-`, `_` and `.` between): a Gateway's name may be longer, and then has no label.
fn label_value(value: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && ok_end(value.chars().next())
        && ok_end(value.chars().last())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The Service of Gateway `key`, as weir applies it (server-side apply: the fields weir
/// owns, and nothing the API server fills in, such as the cluster IP or node ports).
pub fn service(
    key: &ObjectKey,
    plan: &ServicePlan,
    config: &ServiceConfig,
    service_type: ServiceType,
) -> Value {
    // The Gateway's infrastructure labels and annotations first: weir's own win a clash,
    // since weir finds its Services by them.
    let mut labels = plan.labels.clone();
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    for (label, value) in [
        (GATEWAY_NAME_LABEL, &key.name),
        (GATEWAY_NAMESPACE_LABEL, &key.namespace),
    ] {
        if label_value(value) {
            labels.insert(label.to_string(), value.clone());
        } else {
            labels.remove(label);
        }
    }
    let mut annotations = plan.annotations.clone();
    annotations.insert(GATEWAY_ANNOTATION.to_string(), key.to_string());
    let ports: Vec<Value> = plan
        .ports
        .iter()
        .map(|(port, target)| {
            json!({ "name": format!("p{port}"), "port": port, "targetPort": target, "protocol": "TCP" })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(&key.namespace, &key.name),
            "namespace": config.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "type": service_type.as_str(),
            "selector": config.selector,
            "ports": ports,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServiceConfig {
        ServiceConfig {
            namespace: "weir-system".into(),
            selector: BTreeMap::from([("app.kubernetes.io/name".into(), "weir".into())]),
            default_type: ServiceType::LoadBalancer,
        }
    }

    #[test]
    fn the_service_names_its_gateway_and_maps_each_listener_port() {
        let key = ObjectKey::new("infra", "edge");
        let plan = ServicePlan {
            ports: BTreeMap::from([(80, 20000), (8080, 20001)]),
            labels: BTreeMap::from([
                ("team".into(), "edge".into()),
                (MANAGED_BY_LABEL.into(), "someone-else".into()),
            ]),
            annotations: BTreeMap::from([("note".into(), "hi".into())]),
            parameters: None,
        };
        let s = service(&key, &plan, &config(), ServiceType::ClusterIp);
        assert_eq!(s["metadata"]["name"], service_name("infra", "edge"));
        assert_eq!(s["metadata"]["namespace"], "weir-system");
        let labels = &s["metadata"]["labels"];
        assert_eq!(labels[MANAGED_BY_LABEL], "weir", "weir's label wins");
        assert_eq!(labels["team"], "edge");
        assert_eq!(labels[GATEWAY_NAME_LABEL], "edge");
        assert_eq!(labels[GATEWAY_NAMESPACE_LABEL], "infra");
        assert_eq!(
            s["metadata"]["annotations"][GATEWAY_ANNOTATION],
            "infra/edge"
        );
        assert_eq!(s["metadata"]["annotations"]["note"], "hi");
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["selector"]["app.kubernetes.io/name"], "weir");
        assert_eq!(
            s["spec"]["ports"],
            json!([
                { "name": "p80", "port": 80, "targetPort": 20000, "protocol": "TCP" },
                { "name": "p8080", "port": 8080, "targetPort": 20001, "protocol": "TCP" },
            ])
        );
    }

    #[test]
    fn a_long_gateway_name_is_in_the_annotation_only() {
        let key = ObjectKey::new("infra", "a".repeat(100));
        let plan = ServicePlan {
            ports: BTreeMap::from([(80, 20000)]),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            parameters: None,
        };
        let s = service(&key, &plan, &config(), ServiceType::LoadBalancer);
        assert!(s["metadata"]["labels"][GATEWAY_NAME_LABEL].is_null());
        assert_eq!(
            s["metadata"]["annotations"][GATEWAY_ANNOTATION],
            format!("infra/{}", "a".repeat(100))
        );
    }

    #[test]
    fn parameters_name_the_type() {
        let data = |t: &str| BTreeMap::from([(SERVICE_TYPE_KEY.to_string(), t.to_string())]);
        assert_eq!(
            type_from_parameters(&data("ClusterIP")),
            Ok(Some(ServiceType::ClusterIp))
        );
        assert_eq!(
            type_from_parameters(&data("NodePort")),
            Ok(Some(ServiceType::NodePort))
        );
        assert_eq!(type_from_parameters(&BTreeMap::new()), Ok(None));
        assert!(type_from_parameters(&data("ExternalName")).is_err());
    }
}
