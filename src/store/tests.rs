use super::*;
use crate::testkit::EndpointState::{self, *};
use serde_json::json;

fn slice(v: serde_json::Value) -> Slice {
    let s: EndpointSlice = serde_json::from_value(v).expect("test slice");
    Slice::from_slice(&s)
}

/// What the store keeps of an endpoint at `ip` in `state`, naming no pod.
fn endpoint(ip: &str, state: EndpointState) -> SliceEndpoint {
    let (ready, serving, terminating) = state.conditions();
    SliceEndpoint {
        ip: ip.parse().expect("test address"),
        ready,
        serving,
        terminating,
        pod: None,
    }
}

#[test]
fn keeps_the_service_and_applies_the_condition_defaults() {
    let s = slice(json!({
        "metadata": {"name": "web-1", "namespace": "shop",
                     "labels": {SERVICE_NAME_LABEL: "web", "other": "x"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": ["10.0.0.1"]},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.0.0.4"], "conditions": {"serving": false}},
        ],
    }));
    assert_eq!(s.service.as_deref(), Some("web"));
    assert_eq!(
        s.endpoints.to_vec(),
        vec![
            endpoint("10.0.0.1", Ready),
            endpoint("10.0.0.2", NotReady),
            endpoint("10.0.0.3", TerminatingServing),
            // Ready but not serving: no state names it (the API says it cannot happen).
            SliceEndpoint {
                serving: false,
                ..endpoint("10.0.0.4", Ready)
            },
        ]
    );
}

#[test]
fn a_slice_without_the_label_belongs_to_no_service() {
    let s = slice(json!({
        "metadata": {"name": "stray", "namespace": "shop"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
    }));
    assert_eq!(s.service, None);
    assert_eq!(s.endpoints.len(), 1);
}

#[test]
fn names_the_pod_in_the_slice_namespace_unless_the_reference_says_otherwise() {
    let s = slice(json!({
        "metadata": {"name": "web-1", "namespace": "shop",
                     "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "web-a"}},
            {"addresses": ["10.0.0.2"], "targetRef": {"kind": "Pod", "name": "web-b", "namespace": "other"}},
            {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Node", "name": "node-1"}},
            {"addresses": ["10.0.0.4"], "targetRef": {"kind": "Pod"}},
            {"addresses": ["10.0.0.5"]},
        ],
    }));
    let pods: Vec<Option<&str>> = s.endpoints.iter().map(|e| e.pod.as_deref()).collect();
    assert_eq!(
        pods,
        vec![
            Some("shop/web-a"),
            Some("other/web-b"),
            None,
            Some("shop/"),
            None
        ]
    );
    // No namespace at all: the pod is in `default`, as the slice's key is.
    let s = slice(json!({
        "metadata": {"name": "web-1"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "web-a"}}],
    }));
    assert_eq!(s.endpoints[0].pod.as_deref(), Some("default/web-a"));
}

#[test]
fn uses_the_first_address_and_drops_endpoints_without_an_ip_there() {
    let s = slice(json!({
        "metadata": {"name": "web-1", "namespace": "shop"},
        "addressType": "IPv6",
        "endpoints": [
            {"addresses": ["fd00::1", "fd00::2"]},
            {"addresses": ["not-an-ip", "fd00::3"]},
            {"addresses": []},
            {"addresses": ["10.0.0.1"]},
        ],
    }));
    let ips: Vec<String> = s.endpoints.iter().map(|e| e.ip.to_string()).collect();
    assert_eq!(ips, vec!["fd00::1", "10.0.0.1"]);
}

#[test]
fn keeps_tcp_ports_only_with_their_numbers_if_valid() {
    let s = slice(json!({
        "metadata": {"name": "web-1", "namespace": "shop"},
        "addressType": "IPv4",
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "http", "port": 8080},
            {"port": 9000, "protocol": "TCP"},
            {"name": "grpc", "port": 50051, "appProtocol": "kubernetes.io/h2c"},
            {"name": "plain-h2c", "port": 50052, "appProtocol": "H2C"},
            {"name": "big", "port": 70000},
            {"name": "none"},
        ],
    }));
    let ports: Vec<(&str, Option<u16>, bool)> =
        s.ports.iter().map(|p| (&*p.name, p.port, p.h2c)).collect();
    assert_eq!(
        ports,
        vec![
            ("http", Some(8080), false),
            ("", Some(9000), false),
            ("grpc", Some(50051), true),
            ("plain-h2c", Some(50052), true),
            ("big", None, false),
            ("none", None, false),
        ]
    );
    assert!(s.port("dns").is_none());
    assert_eq!(s.port("").and_then(|p| p.port), Some(9000));
}

#[test]
fn an_fqdn_slice_keeps_nothing_to_connect_to() {
    let s = slice(json!({
        "metadata": {"name": "ext-1", "namespace": "shop",
                     "labels": {SERVICE_NAME_LABEL: "ext"}},
        "addressType": "FQDN",
        "ports": [{"name": "http", "port": 80}],
        "endpoints": [{"addresses": ["10.0.0.1"]}],
    }));
    assert_eq!(s.service.as_deref(), Some("ext"));
    assert!(s.ports.is_empty());
    assert!(s.endpoints.is_empty());
}

#[test]
fn a_service_keeps_its_ports_named_or_not() {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"a": "b"}},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"port": 9000},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]},
    }))
    .unwrap();
    let svc = ServicePorts::from_service(&service);
    let ports: Vec<(Option<&str>, i32)> = svc
        .ports
        .iter()
        .map(|p| (p.name.as_deref(), p.port))
        .collect();
    assert_eq!(
        ports,
        vec![(Some("http"), 80), (None, 9000), (Some("dns"), 53)]
    );
    let bare: Service = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    assert_eq!(ServicePorts::from_service(&bare), ServicePorts::default());
}

#[test]
fn a_secret_keeps_only_the_certificate_key_and_staple_data_winning() {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tls", "namespace": "shop", "uid": "u", "labels": {"a": "b"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "managedFields": [{"manager": "kubectl"}]},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y3J0", "ca.crt": "Y2E=", "tls.ocsp-staple": "MAA="},
        "stringData": {"tls.key": "key", "tls.crt": "ignored", "password": "p"},
    }))
    .expect("test secret");
    let kept = TlsSecret::from_secret(s);
    assert_eq!(
        kept,
        TlsSecret {
            crt: Some(b"crt".as_slice().into()),
            key: Some(b"key".as_slice().into()),
            ocsp_staple: Some([0x30, 0x00].as_slice().into()),
        }
    );
    // Nothing else survives: what is kept is the three values, byte for byte.
    let size = |v: &Option<Box<[u8]>>| v.as_ref().map_or(0, |b| b.len());
    assert_eq!(
        size(&kept.crt) + size(&kept.key) + size(&kept.ocsp_staple),
        3 + 3 + 2
    );
}

#[test]
fn a_secret_without_a_part_keeps_none_for_it() {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "tls"},
        "data": {"tls.key": "a2V5"},
    }))
    .expect("test secret");
    assert_eq!(
        TlsSecret::from_secret(s),
        TlsSecret {
            key: Some(b"key".as_slice().into()),
            ..Default::default()
        }
    );
    assert_eq!(
        TlsSecret::from_secret(Secret::default()),
        TlsSecret::default()
    );
}

#[test]
fn a_secret_prints_sizes_never_bytes() {
    let kept = TlsSecret {
        crt: Some(b"-----BEGIN CERTIFICATE-----".as_slice().into()),
        key: Some(b"-----BEGIN PRIVATE KEY-----".as_slice().into()),
        ocsp_staple: None,
    };
    let printed = format!("{kept:?}");
    assert!(!printed.contains("BEGIN"), "{printed}");
    assert!(printed.contains("key_bytes: Some(27)"), "{printed}");
}

#[test]
fn a_gateway_service_of_weirs_is_read_and_others_are_not() {
    use crate::api::gateway::{GATEWAY_ANNOTATION, MANAGED_BY_LABEL};
    let service = |labels: serde_json::Value, target: serde_json::Value| -> ServicePorts {
        let s: Service = serde_json::from_value(json!({
            "metadata": { "name": "weir-gw-edge-1", "namespace": "weir", "labels": labels,
                          "annotations": { GATEWAY_ANNOTATION: "infra/edge" } },
            "spec": { "type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7", "fd00::7"],
                      "ports": [{ "name": "p80", "port": 80, "targetPort": target }] },
            "status": { "loadBalancer": { "ingress": [{ "hostname": "lb.test" }, {}] } },
        }))
        .expect("a Service");
        ServicePorts::from_service(&s)
    };
    let ours = service(json!({ MANAGED_BY_LABEL: "weir" }), json!(20000));
    let gateway = ours.gateway.expect("weir's own");
    assert_eq!(gateway.gateway, ObjectKey::new("infra", "edge"));
    assert_eq!(gateway.ports, BTreeMap::from([(80, 20000)]));
    assert_eq!(&*gateway.service_type, "NodePort");
    assert_eq!(gateway.cluster_ips.len(), 2, "both families");
    assert_eq!(
        &*gateway.ingress,
        [ServiceIngress::Hostname("lb.test".into())],
        "an entry with neither is left out"
    );
    // A named targetPort is not one weir wrote: no pod port to keep.
    let named = service(json!({ MANAGED_BY_LABEL: "weir" }), json!("http"));
    assert!(named.gateway.expect("weir's own").ports.is_empty());
    // Someone else's Service is only ports.
    assert!(
        service(json!({ MANAGED_BY_LABEL: "Helm" }), json!(20000))
            .gateway
            .is_none()
    );
    assert!(service(json!({}), json!(20000)).gateway.is_none());
}
