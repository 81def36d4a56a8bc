use super::*;

fn ingress(yaml: &str) -> Ingress {
    serde_saphyr::from_str(yaml).expect("an Ingress")
}

fn objects(docs: &[Document], kind: &str) -> Vec<Value> {
    docs.iter()
        .filter(|d| d.object["kind"] == kind)
        .map(|d| d.object.clone())
        .collect()
}

const BASIC: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: test
  annotations:
    nginx.ingress.kubernetes.io/proxy-read-timeout: "30"
    nginx.ingress.kubernetes.io/enable-cors: "true"
spec:
  rules:
  - host: shop.test
    http:
      paths:
      - { path: /cart, pathType: Exact, backend: { service: { name: a, port: { number: 80 } } } }
      - { path: /, pathType: Prefix, backend: { service: { name: b, port: { number: 8080 } } } }
"#;

#[test]
fn paths_become_matches_of_one_route_per_host() {
    let docs = migrate([&ingress(BASIC)], &Options::default());
    let gateways = objects(&docs, "Gateway");
    assert_eq!(gateways.len(), 1);
    assert_eq!(gateways[0]["spec"]["listeners"][0]["port"], 80);
    let routes = objects(&docs, "HTTPRoute");
    assert_eq!(routes.len(), 1);
    let spec = &routes[0]["spec"];
    assert_eq!(spec["hostnames"], json!(["shop.test"]));
    assert_eq!(
        spec["rules"][0]["matches"][0]["path"],
        json!({"type": "Exact", "value": "/cart"})
    );
    assert_eq!(
        spec["rules"][1]["matches"][0]["path"],
        json!({"type": "PathPrefix", "value": "/"})
    );
    assert_eq!(
        spec["rules"][1]["backendRefs"],
        json!([{"name": "b", "port": 8080}])
    );
    assert_eq!(
        spec["rules"][0]["timeouts"],
        json!({"backendRequest": "30s"})
    );
    let comments = docs
        .iter()
        .find(|d| d.object["kind"] == "HTTPRoute")
        .map(|d| d.comments.join("\n"));
    assert!(comments.unwrap_or_default().contains("enable-cors"));
}

#[test]
fn the_yaml_parses_back_with_the_file_parser() {
    let docs = migrate([&ingress(BASIC)], &Options::default());
    let yaml = to_yaml(&docs);
    let store = crate::source::file::parse("migrated.yaml", &yaml).expect("parses");
    assert_eq!(store.http_routes.len(), 1);
    assert_eq!(store.gateways.len(), 1);
}

#[test]
fn a_policy_goes_through_a_pool_and_regex_paths_are_anchored() {
    let text = BASIC
        .replace(
            "nginx.ingress.kubernetes.io/enable-cors: \"true\"",
            "nginx.ingress.kubernetes.io/load-balance: least_conn\n    nginx.ingress.kubernetes.io/use-regex: \"true\"",
        );
    let docs = migrate([&ingress(&text)], &Options::default());
    let pools = objects(&docs, "LoadBalancerPool");
    assert_eq!(pools.len(), 2, "{pools:?}");
    assert_eq!(pools[0]["spec"]["algorithm"], "LeastConnections");
    let route = &objects(&docs, "HTTPRoute")[0];
    assert_eq!(
        route["spec"]["rules"][1]["matches"][0]["path"],
        json!({"type": "RegularExpression", "value": "(?i)(?:/).*"})
    );
    assert_eq!(
        route["spec"]["rules"][1]["backendRefs"][0]["kind"],
        "LoadBalancerPool"
    );
    let store = crate::source::file::parse("m.yaml", &to_yaml(&docs)).expect("parses");
    assert_eq!(store.pools.len(), 2);
}
