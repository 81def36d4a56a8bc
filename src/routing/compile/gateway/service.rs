//! Service mode in compile: Gateways exposed by a Service of their own. Compile gives each
//! (Gateway, listener port) a pod port (`rules::assign_pod_ports`), says what each Gateway's
//! Service should hold ([`ServicePlan`], which the leader turns into the Service), and reads
//! back the Service weir made (from the store, as the watchers keep it) for the Gateway's
//! `status.addresses`.

use super::GatewayReport;
use crate::api::gateway::{
    Gateway, GatewayClass, GatewayStatusAddress, ParametersReference, service_name,
};
use crate::routing::gateway::PodPorts;
use crate::store::{GatewayService, ObjectKey, ServiceIngress, Store};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a Gateway's Service should hold, as far as compile knows: the leader adds its
/// namespace, the pod selector and the type (from the class's parameters, else weir's flag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    /// Listener port → pod port, for every port where a listener serves.
    pub ports: BTreeMap<u16, u16>,
    /// `spec.infrastructure.labels` and `annotations`, which the spec says go on the
    /// resources made for the Gateway.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The GatewayClass's `parametersRef`, as written.
    pub parameters: Option<ParametersReference>,
}

impl ServicePlan {
    pub fn new(gateway: &Gateway, class: Option<&GatewayClass>, ports: BTreeMap<u16, u16>) -> Self {
        let infrastructure = gateway.spec.infrastructure.as_ref();
        ServicePlan {
            ports,
            labels: infrastructure.map(|i| i.labels.clone()).unwrap_or_default(),
            annotations: infrastructure
                .map(|i| i.annotations.clone())
                .unwrap_or_default(),
            parameters: class.and_then(|c| c.spec.parameters_ref.clone()),
        }
    }
}

/// The Services weir made for Gateways, found in `namespace`, by Gateway.
pub(super) fn services<'s>(
    store: &'s Store,
    namespace: &str,
) -> BTreeMap<ObjectKey, &'s GatewayService> {
    store
        .services
        .iter()
        .filter(|(key, _)| key.namespace == namespace)
        .filter_map(|(_, s)| s.gateway.as_deref())
        .map(|g| (g.gateway.clone(), g))
        .collect()
}

/// The pod ports the Services hold: what the leader gave, which every replica keeps.
pub(super) fn held_ports(services: &BTreeMap<ObjectKey, &GatewayService>) -> PodPorts {
    services
        .iter()
        .map(|(key, s)| (key.clone(), s.ports.clone()))
        .collect()
}

/// The Gateway's `status.addresses` from its Service, and its `Programmed` condition: the
/// load balancer's addresses once it has them; a ClusterIP or NodePort Service's cluster IPs;
/// none while a LoadBalancer waits for one (or the Service is not made yet), and then, as the
/// spec has it, `Programmed=False` reason `AddressNotAssigned` (the listeners stay
/// programmed: their sockets are bound, and the Service reaches them by its cluster IP).
pub(super) fn report_addresses(
    report: &mut GatewayReport,
    key: &ObjectKey,
    namespace: &str,
    service: Option<&GatewayService>,
) {
    let addresses = service.map(addresses_of).unwrap_or_default();
    let listening = report
        .conditions
        .iter()
        .any(|c| c.type_ == "Programmed" && c.is_true());
    if addresses.is_empty() && listening {
        let name = service_name(&key.namespace, &key.name);
        let message = match service {
            None => format!("waiting for its Service {namespace}/{name}"),
            Some(_) => format!("its Service {namespace}/{name} has no load-balancer address yet"),
        };
        for c in &mut report.conditions {
            if c.type_ == "Programmed" {
                c.status = "False".to_string();
                c.reason = "AddressNotAssigned".to_string();
                c.message = message.clone();
            }
        }
    }
    report.addresses = addresses;
}

fn addresses_of(service: &GatewayService) -> Vec<GatewayStatusAddress> {
    let address = |kind: &str, value: String| GatewayStatusAddress {
        r#type: Some(kind.to_string()),
        value,
    };
    if !service.ingress.is_empty() {
        return service
            .ingress
            .iter()
            .map(|i| match i {
                ServiceIngress::Ip(ip) => address("IPAddress", ip.to_string()),
                ServiceIngress::Hostname(h) => address("Hostname", h.to_string()),
            })
            .collect();
    }
    if &*service.service_type == "LoadBalancer" {
        return Vec::new();
    }
    service
        .cluster_ips
        .iter()
        .map(|ip| address("IPAddress", ip.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::api::gateway::GatewayStatusAddress;
    use crate::routing::compile::{CompileOptions, Compiled, compile_with_options};
    use crate::routing::gateway::{GatewayAddresses, PortRange};
    use crate::store::ObjectKey;
    use crate::testkit::{StoreBuilder, gateway, gateway_class, gateway_service, http_listener};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    fn options() -> CompileOptions {
        CompileOptions {
            gateway_addresses: GatewayAddresses::Services {
                ports: PortRange {
                    first: 20000,
                    last: 20009,
                },
                namespace: "weir".into(),
            },
            ..Default::default()
        }
    }

    /// Class `weir`, Gateway `infra/edge` with HTTP listeners on 80 (two hostnames) and 8080.
    fn base() -> StoreBuilder {
        StoreBuilder::default()
            .gateway_class(gateway_class())
            .gateway(gateway(
                "infra",
                "edge",
                None,
                json!([
                    http_listener("a", 80, Some("a.test")),
                    http_listener("b", 80, Some("b.test")),
                    http_listener("alt", 8080, None),
                ]),
            ))
    }

    fn programmed(compiled: &Compiled) -> (String, String) {
        let report = &compiled.gateway.gateways[&ObjectKey::new("infra", "edge")];
        let c = report
            .conditions
            .iter()
            .find(|c| c.type_ == "Programmed")
            .expect("Programmed");
        (c.status.clone(), c.reason.clone())
    }

    fn ip(value: &str) -> GatewayStatusAddress {
        GatewayStatusAddress {
            r#type: Some("IPAddress".into()),
            value: value.into(),
        }
    }

    #[test]
    fn each_listener_port_gets_a_pod_socket_and_a_service_port() {
        let compiled = compile_with_options(base().store(), None, &options());
        let key = ObjectKey::new("infra", "edge");
        let socket: SocketAddr = "0.0.0.0:20000".parse().expect("a socket");
        let port = compiled
            .table
            .gateway_port(&socket)
            .expect("port 80's socket");
        assert_eq!(port.listener_port, 80);
        assert_eq!(
            port.listeners.len(),
            2,
            "both listeners of port 80 share it"
        );
        let plan = &compiled.gateway.services[&key];
        assert_eq!(plan.ports, BTreeMap::from([(80, 20000), (8080, 20001)]));
        assert_eq!(
            compiled.table.gateway_pod_ports()[&key],
            BTreeMap::from([(80, 20000), (8080, 20001)])
        );
        // No Service yet: no address, which the spec's AddressNotAssigned says.
        assert_eq!(
            programmed(&compiled),
            ("False".into(), "AddressNotAssigned".into())
        );
        assert!(compiled.gateway.gateways[&key].addresses.is_empty());
        // The next compile keeps the ports, and a new listener port takes the next free one.
        let more = base().gateway(gateway(
            "infra",
            "edge",
            None,
            json!([
                http_listener("alt", 8080, None),
                http_listener("new", 9090, None)
            ]),
        ));
        let next = compile_with_options(more.store(), Some(&compiled.table), &options());
        assert_eq!(
            next.gateway.services[&key].ports,
            BTreeMap::from([(8080, 20001), (9090, 20000)])
        );
    }

    #[test]
    fn the_service_gives_the_ports_and_the_address() {
        let cluster_ip = base().service(gateway_service(
            "weir",
            ("infra", "edge"),
            "ClusterIP",
            &[(80, 20005), (8080, 20006)],
            "10.96.0.5",
            json!([]),
        ));
        let compiled = compile_with_options(cluster_ip.store(), None, &options());
        let key = ObjectKey::new("infra", "edge");
        assert_eq!(
            compiled.gateway.services[&key].ports,
            BTreeMap::from([(80, 20005), (8080, 20006)]),
            "every replica takes the ports the Service holds"
        );
        assert_eq!(
            compiled.gateway.gateways[&key].addresses,
            vec![ip("10.96.0.5")]
        );
        assert_eq!(programmed(&compiled), ("True".into(), "Programmed".into()));

        let pending = base().service(gateway_service(
            "weir",
            ("infra", "edge"),
            "LoadBalancer",
            &[(80, 20000)],
            "10.96.0.5",
            json!([]),
        ));
        let compiled = compile_with_options(pending.store(), None, &options());
        assert!(compiled.gateway.gateways[&key].addresses.is_empty());
        assert_eq!(
            programmed(&compiled),
            ("False".into(), "AddressNotAssigned".into())
        );

        let given = base().service(gateway_service(
            "weir",
            ("infra", "edge"),
            "LoadBalancer",
            &[(80, 20000)],
            "10.96.0.5",
            json!([{ "ip": "192.0.2.10" }, { "hostname": "lb.example.com" }]),
        ));
        let compiled = compile_with_options(given.store(), None, &options());
        assert_eq!(
            compiled.gateway.gateways[&key].addresses,
            vec![
                ip("192.0.2.10"),
                GatewayStatusAddress {
                    r#type: Some("Hostname".into()),
                    value: "lb.example.com".into()
                }
            ]
        );
        assert_eq!(programmed(&compiled), ("True".into(), "Programmed".into()));

        // A Service of weir's in another namespace is not this weir's.
        let elsewhere = base().service(gateway_service(
            "other",
            ("infra", "edge"),
            "ClusterIP",
            &[(80, 20007)],
            "10.96.0.9",
            json!([]),
        ));
        let compiled = compile_with_options(elsewhere.store(), None, &options());
        assert_eq!(compiled.gateway.services[&key].ports[&80], 20000);
    }

    #[test]
    fn static_addresses_are_refused_in_service_mode() {
        let store = StoreBuilder::default()
            .gateway_class(gateway_class())
            .gateway(gateway(
                "infra",
                "edge",
                Some("192.0.2.7"),
                json!([http_listener("a", 80, None)]),
            ));
        let compiled = compile_with_options(store.store(), None, &options());
        let report = &compiled.gateway.gateways[&ObjectKey::new("infra", "edge")];
        assert_eq!(report.conditions[0].reason, "UnsupportedAddress");
        assert!(report.addresses.is_empty());
        assert!(compiled.gateway.services.is_empty());
        assert_eq!(compiled.table.gateway_ports().count(), 0);
    }

    #[test]
    fn a_gateway_that_serves_nothing_has_no_service_and_no_address() {
        let store = StoreBuilder::default()
            .gateway_class(gateway_class())
            .gateway(gateway(
                "infra",
                "edge",
                None,
                json!([{ "name": "tcp", "protocol": "TCP", "port": 5432 }]),
            ));
        let compiled = compile_with_options(store.store(), None, &options());
        let report = &compiled.gateway.gateways[&ObjectKey::new("infra", "edge")];
        assert!(report.addresses.is_empty(), "{:?}", report.addresses);
        assert!(compiled.gateway.services.is_empty());
    }
}
