use super::*;
use kube::Resource;

/// Parses `yaml` as `T`, failing on any field the types do not know: a field dropped here is
/// one weir would silently ignore.
fn strict<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let tree: serde_json::Value = serde_saphyr::from_str(yaml).expect("YAML");
    let mut unknown = Vec::new();
    let value = serde_ignored::deserialize(tree, |path| unknown.push(path.to_string()))
        .unwrap_or_else(|e| panic!("does not parse: {e}\n{yaml}"));
    // The kind is the caller's to check (the root types take it as given).
    unknown.retain(|path| path != "apiVersion" && path != "kind");
    assert!(unknown.is_empty(), "fields the types drop: {unknown:?}");
    value
}

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: infra, generation: 3 }
spec:
  gatewayClassName: weir
  addresses: [{ type: IPAddress, value: 10.244.1.70 }]
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces: { from: Selector, selector: { matchLabels: { team: shop } } }
      kinds: [{ kind: HTTPRoute }, { group: gateway.networking.k8s.io, kind: GRPCRoute }]
  - name: https
    hostname: "*.shop.test"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs: [{ kind: Secret, name: shop-cert, namespace: certs }]
    allowedRoutes: { namespaces: { from: All } }
"#;

#[test]
fn a_gateway_parses_with_every_listener_field() {
    let gw: Gateway = strict(GATEWAY);
    assert_eq!(gw.spec.gateway_class_name, "weir");
    assert_eq!(gw.spec.addresses[0].value, "10.244.1.70");
    let [http, https] = &gw.spec.listeners[..] else {
        panic!("two listeners: {:?}", gw.spec.listeners)
    };
    let allowed = http
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    assert_eq!(allowed.and_then(|n| n.from), Some(FromNamespaces::Selector));
    assert_eq!(http.allowed_routes.as_ref().map(|a| a.kinds.len()), Some(2));
    assert_eq!(https.hostname.as_deref(), Some("*.shop.test"));
    let tls = https.tls.as_ref().expect("tls");
    assert_eq!(tls.certificate_refs[0].namespace.as_deref(), Some("certs"));
    assert_eq!(Gateway::group(&()), GROUP);
    assert_eq!(Gateway::plural(&()), "gateways");
}

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop, namespace: shop }
spec:
  parentRefs: [{ name: edge, namespace: infra, sectionName: https, port: 443 }]
  hostnames: [shop.test, "*.shop.test"]
  rules:
  - matches:
    - path: { type: PathPrefix, value: /cart }
      headers: [{ name: x-canary, value: "yes" }, { type: RegularExpression, name: x-v, value: "v[0-9]+" }]
      queryParams: [{ name: debug, value: "1" }]
      method: POST
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: { set: [{ name: x-a, value: "1" }], add: [{ name: x-b, value: "2" }], remove: [x-c] }
    - type: URLRewrite
      urlRewrite: { hostname: backend.test, path: { type: ReplacePrefixMatch, replacePrefixMatch: /basket } }
    - type: RequestMirror
      requestMirror: { backendRef: { name: shadow, port: 8080 }, fraction: { numerator: 1, denominator: 10 } }
    backendRefs:
    - { name: cart-v1, port: 8080, weight: 90 }
    - name: cart-v2
      port: 8080
      weight: 0
      filters: [{ type: ResponseHeaderModifier, responseHeaderModifier: { set: [{ name: x-v, value: "2" }] } }]
    - { group: weir.dev, kind: LoadBalancerPool, name: cart-pool }
    timeouts: { request: 10s, backendRequest: 500ms }
    sessionPersistence: { sessionName: shop, type: Cookie, cookieConfig: { lifetimeType: Session } }
  - matches: [{ path: { type: Exact, value: /old } }]
    filters:
    - type: RequestRedirect
      requestRedirect: { scheme: https, hostname: new.test, port: 8443, statusCode: 301, path: { type: ReplaceFullPath, replaceFullPath: /new } }
status:
  parents:
  - parentRef: { name: edge, namespace: infra }
    controllerName: weir.dev/gateway-controller
    conditions:
    - { type: Accepted, status: "True", reason: Accepted, message: "", lastTransitionTime: "2026-12-01T00:00:00Z", observedGeneration: 1 }
"#;

#[test]
fn an_http_route_parses_with_matches_filters_and_weights() {
    let route: HTTPRoute = strict(ROUTE);
    let rule = &route.spec.rules[0];
    let m = &rule.matches[0];
    assert_eq!(
        m.path.as_ref().and_then(|p| p.r#type),
        Some(PathMatchType::PathPrefix)
    );
    assert_eq!(
        m.headers[0].r#type, None,
        "the default (Exact) is the CRD's to fill"
    );
    assert_eq!(m.headers[1].r#type, Some(ValueMatchType::RegularExpression));
    let kinds: Vec<_> = rule.filters.iter().map(|f| f.r#type).collect();
    assert_eq!(
        kinds,
        [
            FilterType::RequestHeaderModifier,
            FilterType::UrlRewrite,
            FilterType::RequestMirror
        ]
    );
    let weights: Vec<_> = rule.backend_refs.iter().map(|b| b.backend.weight).collect();
    assert_eq!(weights, [Some(90), Some(0), None]);
    assert_eq!(
        rule.backend_refs[2].backend.object.kind.as_deref(),
        Some("LoadBalancerPool")
    );
    assert_eq!(
        rule.backend_refs[1].filters[0].r#type,
        FilterType::ResponseHeaderModifier
    );
    let redirect = route.spec.rules[1].filters[0]
        .request_redirect
        .as_ref()
        .expect("redirect");
    assert_eq!(
        (redirect.status_code, redirect.port),
        (Some(301), Some(8443))
    );
    let status = route.status.as_ref().expect("status");
    assert_eq!(status.parents[0].controller_name, CONTROLLER_NAME);
    // What weir writes reads back the same.
    let written = serde_json::to_value(&route).unwrap();
    let again: HTTPRoute = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), written);
    assert_eq!(again.spec, route.spec);
}

#[test]
fn grpc_routes_classes_and_grants_parse() {
    let route: GRPCRoute = strict(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: echo, namespace: shop }
spec:
  parentRefs: [{ name: edge }]
  rules:
  - matches: [{ method: { service: echo.Echo, method: Say }, headers: [{ name: x-a, value: b }] }]
    backendRefs: [{ name: echo, port: 9000 }]
"#,
    );
    let method = route.spec.rules[0].matches[0]
        .method
        .as_ref()
        .expect("method");
    assert_eq!(
        (method.service.as_deref(), method.method.as_deref()),
        (Some("echo.Echo"), Some("Say"))
    );

    let class: GatewayClass = strict(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: { name: weir }\nspec: { controllerName: weir.dev/gateway-controller }\n",
    );
    assert_eq!(class.spec.controller_name, CONTROLLER_NAME);

    let grant: ReferenceGrant = strict(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: { name: certs-for-infra, namespace: certs }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: Gateway, namespace: infra }]
  to: [{ group: "", kind: Secret, name: shop-cert }, { group: "", kind: Service }]
"#,
    );
    assert_eq!(grant.spec.to[1].name, None);
}

#[test]
fn an_unknown_filter_type_is_an_error_not_a_default() {
    let yaml = "type: Frobnicate\n";
    let parsed: Result<HTTPRouteFilter, _> = serde_saphyr::from_str(yaml);
    assert!(parsed.is_err());
}

#[test]
fn service_names_fit_a_dns_label_and_differ_by_namespace() {
    let short = super::service_name("infra", "edge");
    assert!(short.starts_with("weir-gw-edge-"), "{short}");
    assert_eq!(short.len(), "weir-gw-edge-".len() + 8);
    assert_ne!(short, super::service_name("shop", "edge"));
    assert_eq!(short, super::service_name("infra", "edge"), "deterministic");
    let long = super::service_name("infra", &format!("{}.example.com", "a".repeat(240)));
    assert!(long.len() <= 63, "{long}");
    assert!(
        long.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{long}"
    );
    let dotted = super::service_name("infra", "edge.v2");
    assert!(dotted.starts_with("weir-gw-edge-v2-"), "{dotted}");
}
