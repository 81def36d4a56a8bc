use super::*;

const GOOD: &str = r#"
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  ports: [{ name: http, port: 80 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: { kubernetes.io/service-name: web }
addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: { ready: true }
---
apiVersion: weir.dev/v1alpha1
kind: LoadBalancerPool
metadata: { name: web, namespace: shop }
spec:
  routes: [{ host: shop.example.com }]
  backends: [{ service: web, port: http, weight: 3 }]
"#;

fn error_of(text: &str) -> String {
    parse("pools.yaml", text).expect_err("refused").to_string()
}

#[test]
fn reads_every_kind_weir_uses() {
    let store = parse("pools.yaml", GOOD).expect("parses");
    assert_eq!(
        (store.services.len(), store.slices.len(), store.pools.len()),
        (1, 1, 1)
    );
    let pool = &store.pools[&ObjectKey::new("shop", "web")];
    assert_eq!(pool.spec.backends[0].weight, 3);
    assert_eq!(pool.spec.routes[0].path_prefix, "/");
}

#[test]
fn reads_a_kubectl_list() {
    let list = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: { name: a }
    spec: { ports: [{ port: 80 }] }
  - apiVersion: v1
    kind: ConfigMap
    metadata: { name: ignored }
"#;
    let store = parse("x.yaml", list).expect("parses");
    assert!(store.services.contains_key(&ObjectKey::new("default", "a")));
    assert_eq!(store.len(), 1);
}

#[test]
fn invalid_yaml_is_refused() {
    let e = error_of("kind: [unclosed\n");
    assert!(e.starts_with("pools.yaml: not valid YAML"), "{e}");
}

#[test]
fn a_negative_weight_names_document_and_field() {
    let e = error_of(&GOOD.replace("weight: 3", "weight: -5"));
    assert!(
        e.starts_with(
            "pools.yaml: document 3 (LoadBalancerPool shop/web): spec.backends[0].weight: "
        ),
        "{e}"
    );
}

#[test]
fn an_unknown_algorithm_names_the_field() {
    let e = error_of(&GOOD.replace("routes:", "algorithm: Fastest\n  routes:"));
    assert!(
        e.contains("document 3 (LoadBalancerPool shop/web): spec.algorithm: "),
        "{e}"
    );
    assert!(e.contains("Fastest"), "{e}");
}

#[test]
fn empty_backends_are_refused() {
    let e = error_of(&GOOD.replace(
        "backends: [{ service: web, port: http, weight: 3 }]",
        "backends: []",
    ));
    assert!(
        e.contains("spec.backends: must list at least one backend"),
        "{e}"
    );
}

#[test]
fn unknown_fields_are_refused() {
    let e = error_of(&GOOD.replace("weight: 3", "wieght: 3"));
    assert!(e.contains("spec.backends[0].wieght: unknown field"), "{e}");
}

#[test]
fn unknown_kinds_are_skipped_and_duplicates_refused() {
    let extra =
        format!("{GOOD}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: x }}\n");
    assert!(parse("x", &extra).is_ok());
    let twice = format!(
        "{GOOD}\n---\n{}",
        GOOD.split("---").next().unwrap_or_default()
    );
    let e = error_of(&twice);
    assert!(e.contains("the same object as document 1"), "{e}");
}

#[test]
fn garbage_is_refused_without_panicking() {
    for text in [
        "\u{0}\u{1}\u{2}",
        "- 1\n- 2\n",
        "42",
        "apiVersion: v1\n",
        ": : :",
    ] {
        let _ = parse("x", text);
    }
    assert!(parse("x", "- 1\n- 2\n").is_err());
    assert!(parse("x", "").is_ok_and(|s| s.is_empty()));
}
