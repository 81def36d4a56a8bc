use super::*;
use crate::testkit::{
    EndpointState, StoreBuilder, endpoint, gateway, gateway_class, http_listener, http_route, pool,
    reference_grant, route_spec, service, slice,
};
use serde_json::json;

const GW: &str = "127.0.0.1:8081";

fn addr() -> SocketAddr {
    GW.parse().expect("an address")
}

/// The store every test starts from: class `weir`, Gateway `infra/gw` with one HTTP listener
/// `web` on 8081 taking routes from all namespaces, and Service `apps/web` with two endpoints.
fn base() -> StoreBuilder {
    StoreBuilder::default()
        .gateway_class(gateway_class())
        .gateway(gateway(
            "infra",
            "gw",
            None,
            json!([http_listener("web", 8081, None)]),
        ))
        .web(
            "apps",
            "web",
            &[
                endpoint("10.0.0.1", EndpointState::Ready),
                endpoint("10.0.0.2", EndpointState::Ready),
            ],
        )
}

fn parent() -> serde_json::Value {
    json!([{ "name": "gw", "namespace": "infra" }])
}

/// The (route, rule index) a request takes on the Gateway socket.
fn lookup(
    compiled: &crate::routing::Compiled,
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Option<(String, usize)> {
    let port = compiled.table.gateway_port(&addr())?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
            http::HeaderValue::from_str(v).expect("a header value"),
        );
    }
    let method = http::Method::from_bytes(method.as_bytes()).expect("a method");
    let facts = RequestFacts {
        host,
        method: &method,
        path,
        query,
        headers: &map,
    };
    port.route(&facts)
        .map(|m| (m.rule.route.name.clone(), m.rule.index))
}

fn conditions_of(report: &ParentReport) -> Vec<(String, String, String)> {
    report
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn route_conditions(
    compiled: &crate::routing::Compiled,
    ns: &str,
    name: &str,
) -> Vec<(String, String, String)> {
    let reports = compiled
        .gateway
        .http_routes
        .get(&ObjectKey::new(ns, name))
        .expect("the route has a status");
    conditions_of(&reports[0])
}

fn triple(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.to_string(), s.to_string(), r.to_string())
}

use crate::routing::gateway::RequestFacts;

#[test]
fn a_route_serves_on_its_gateway_socket_in_precedence_order() {
    let compiled = base()
        .http_route(http_route(
            "apps",
            "web",
            json!({
                "parentRefs": parent(),
                "hostnames": ["shop.example.com"],
                "rules": [
                    { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                      "backendRefs": [{ "name": "web", "port": 80 }] },
                    { "matches": [{ "path": { "type": "Exact", "value": "/cart" } }],
                      "backendRefs": [{ "name": "web", "port": 80 }] },
                    { "matches": [{ "path": { "type": "PathPrefix", "value": "/api" },
                                    "headers": [{ "name": "x-version", "value": "2" }] }],
                      "backendRefs": [{ "name": "web", "port": 80 }] },
                    { "matches": [{ "path": { "type": "PathPrefix", "value": "/api" } }],
                      "backendRefs": [{ "name": "web", "port": 80 }] },
                ],
            }),
        ))
        .compile();
    let on = |target: &str, headers: &[(&str, &str)]| {
        lookup(&compiled, "shop.example.com", "GET", target, headers).map(|(_, i)| i)
    };
    assert_eq!(on("/cart", &[]), Some(1), "exact beats any prefix");
    assert_eq!(on("/cart/x", &[]), Some(0));
    assert_eq!(
        on("/api/v1", &[("X-Version", "2")]),
        Some(2),
        "a header match is more specific"
    );
    assert_eq!(on("/api/v1", &[]), Some(3));
    assert_eq!(on("/apiv1", &[]), Some(0), "prefixes match by segment");
    assert_eq!(
        lookup(&compiled, "other.example.com", "GET", "/", &[]),
        None,
        "the route names its host"
    );
    assert_eq!(
        route_conditions(&compiled, "apps", "web"),
        vec![
            triple("Accepted", "True", "Accepted"),
            triple("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
    let gw = &compiled.gateway.gateways[&ObjectKey::new("infra", "gw")];
    assert_eq!(gw.listeners[0].attached_routes, 1);
    assert_eq!(gw.address, Some(DEFAULT_GATEWAY_ADDRESS));
    // The rule's own pool holds the Service's endpoints, and is in the table beside the pools.
    let pool = compiled
        .table
        .pool(&ObjectKey::new("apps", "httproute/web/rule-0"))
        .expect("the rule's pool");
    assert_eq!(pool.ready_endpoints().count(), 2);
}

#[test]
fn refusals_and_unresolved_backends_say_why_and_leave_other_routes_serving() {
    let compiled = base()
        .gateway(gateway(
            "infra",
            "same-only",
            Some("127.0.0.2"),
            json!([{ "name": "web", "port": 8081, "protocol": "HTTP" }]),
        ))
        .http_route(http_route(
            "apps",
            "no-section",
            json!({ "parentRefs": [{ "name": "gw", "namespace": "infra", "sectionName": "nope" }],
                    "rules": [{ "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        ))
        .http_route(http_route(
            "apps",
            "not-allowed",
            json!({ "parentRefs": [{ "name": "same-only", "namespace": "infra" }],
                    "rules": [{ "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        ))
        .http_route(http_route(
            "apps",
            "missing",
            json!({ "parentRefs": parent(), "hostnames": ["missing.example"],
                    "rules": [{ "backendRefs": [{ "name": "nope", "port": 80 }] }] }),
        ))
        .http_route(http_route(
            "apps",
            "bad-kind",
            json!({ "parentRefs": parent(), "hostnames": ["kind.example"],
                    "rules": [{ "backendRefs": [{ "group": "example.com", "kind": "Thing", "name": "x" }] }] }),
        ))
        .http_route(http_route(
            "other",
            "cross",
            json!({ "parentRefs": parent(), "hostnames": ["cross.example"],
                    "rules": [{ "backendRefs": [{ "name": "web", "namespace": "apps", "port": 80 }] }] }),
        ))
        .http_route(http_route(
            "apps",
            "mirror",
            json!({ "parentRefs": parent(), "hostnames": ["mirror.example"],
                    "rules": [{ "filters": [{ "type": "RequestMirror",
                                              "requestMirror": { "backendRef": { "name": "web", "port": 80 },
                                                                "percent": 150 } }],
                                "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        ))
        .http_route(http_route(
            "apps",
            "good",
            json!({ "parentRefs": parent(), "hostnames": ["good.example"],
                    "rules": [{ "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        ))
        .compile();
    let accepted = |ns: &str, name: &str| route_conditions(&compiled, ns, name)[0].clone();
    let refs = |ns: &str, name: &str| route_conditions(&compiled, ns, name)[1].clone();
    assert_eq!(
        accepted("apps", "no-section"),
        triple("Accepted", "False", "NoMatchingParent")
    );
    assert_eq!(
        accepted("apps", "not-allowed"),
        triple("Accepted", "False", "NotAllowedByListeners")
    );
    assert_eq!(
        accepted("apps", "missing"),
        triple("Accepted", "True", "Accepted")
    );
    assert_eq!(
        refs("apps", "missing"),
        triple("ResolvedRefs", "False", "BackendNotFound")
    );
    assert_eq!(
        refs("apps", "bad-kind"),
        triple("ResolvedRefs", "False", "InvalidKind")
    );
    assert_eq!(
        refs("other", "cross"),
        triple("ResolvedRefs", "False", "RefNotPermitted")
    );
    assert_eq!(
        accepted("apps", "mirror"),
        triple("Accepted", "False", "UnsupportedValue")
    );
    // An unresolved backend still routes (to a 500); an unsupported route does not attach.
    let port = compiled.table.gateway_port(&addr()).expect("the socket");
    let pick = |host: &str| {
        let facts = RequestFacts {
            host,
            method: &http::Method::GET,
            path: "/",
            query: None,
            headers: &http::HeaderMap::new(),
        };
        port.route(&facts).map(|m| m.rule.backends.pick().is_some())
    };
    assert_eq!(pick("missing.example"), Some(false));
    assert_eq!(pick("kind.example"), Some(false));
    assert_eq!(pick("cross.example"), Some(false));
    assert_eq!(pick("mirror.example"), None);
    assert_eq!(pick("good.example"), Some(true));
}

#[test]
fn a_reference_grant_lets_a_route_reach_a_service_in_another_namespace() {
    let compiled = base()
        .reference_grant(reference_grant("apps", "from-other", "HTTPRoute", "other", "Service"))
        .http_route(http_route(
            "other",
            "cross",
            json!({ "parentRefs": parent(),
                    "rules": [{ "backendRefs": [{ "name": "web", "namespace": "apps", "port": 80 }] }] }),
        ))
        .compile();
    assert_eq!(
        route_conditions(&compiled, "other", "cross")[1],
        triple("ResolvedRefs", "True", "ResolvedRefs")
    );
    let port = compiled.table.gateway_port(&addr()).expect("the socket");
    let m = port.matches().next().expect("a match");
    assert!(m.rule.backends.pick().is_some());
}

#[test]
fn mirrors_get_pools_of_their_own_and_a_bad_one_is_dropped_with_the_route_serving() {
    let mirror = |backend: serde_json::Value| json!({ "type": "RequestMirror", "requestMirror": { "backendRef": backend } });
    let route = |name: &str, host: &str, filters: serde_json::Value| {
        http_route(
            "apps",
            name,
            json!({ "parentRefs": parent(), "hostnames": [host],
                    "rules": [{ "filters": filters,
                                "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        )
    };
    let compiled = base()
        .web(
            "apps",
            "shadow",
            &[endpoint("10.0.1.1", EndpointState::Ready)],
        )
        .web(
            "infra",
            "elsewhere",
            &[endpoint("10.0.2.1", EndpointState::Ready)],
        )
        .web(
            "shared",
            "granted",
            &[endpoint("10.0.3.1", EndpointState::Ready)],
        )
        .reference_grant(reference_grant(
            "shared",
            "to-granted",
            "HTTPRoute",
            "apps",
            "Service",
        ))
        .http_route(route(
            "two",
            "two.example",
            json!([mirror(json!({ "name": "shadow", "port": 80 })),
                   { "type": "RequestHeaderModifier",
                     "requestHeaderModifier": { "set": [{ "name": "x-a", "value": "1" }] } },
                   mirror(json!({ "name": "web", "port": 80 }))]),
        ))
        .http_route(route(
            "missing",
            "missing.example",
            json!([mirror(json!({ "name": "nope", "port": 80 }))]),
        ))
        .http_route(route(
            "kind",
            "kind.example",
            json!([mirror(
                json!({ "group": "example.com", "kind": "Thing", "name": "x" })
            )]),
        ))
        .http_route(route(
            "cross",
            "cross.example",
            json!([
                mirror(json!({ "name": "elsewhere", "namespace": "infra", "port": 80 })),
                mirror(json!({ "name": "granted", "namespace": "shared", "port": 80 }))
            ]),
        ))
        .compile();
    let rule = |host: &str| {
        let port = compiled.table.gateway_port(&addr()).expect("the socket");
        let facts = RequestFacts {
            host,
            method: &http::Method::GET,
            path: "/",
            query: None,
            headers: &http::HeaderMap::new(),
        };
        port.route(&facts).expect("a match").rule.clone()
    };
    let names = |host: &str| -> Vec<String> {
        rule(host)
            .mirrors
            .iter()
            .map(|m| m.pool.name.to_string())
            .collect()
    };
    assert_eq!(
        names("two.example"),
        [
            "apps/httproute/two/rule-0/mirror-0",
            "apps/httproute/two/rule-0/mirror-1"
        ]
    );
    let pool = compiled
        .table
        .pool(&ObjectKey::new("apps", "httproute/two/rule-0/mirror-0"))
        .expect("the mirror's pool is in the table");
    let addrs: Vec<String> = pool.ready_endpoints().map(|e| e.addr.to_string()).collect();
    assert_eq!(addrs, ["10.0.1.1:8080"]);
    assert!(rule("two.example").filters.request_headers.is_some());
    assert_eq!(
        route_conditions(&compiled, "apps", "two")[1],
        triple("ResolvedRefs", "True", "ResolvedRefs")
    );
    for (name, host, reason) in [
        ("missing", "missing.example", "BackendNotFound"),
        ("kind", "kind.example", "InvalidKind"),
        ("cross", "cross.example", "RefNotPermitted"),
    ] {
        let conditions = route_conditions(&compiled, "apps", name);
        assert_eq!(
            conditions[0],
            triple("Accepted", "True", "Accepted"),
            "{name}"
        );
        assert_eq!(
            conditions[1],
            triple("ResolvedRefs", "False", reason),
            "{name}"
        );
        assert!(
            rule(host).backends.pick().is_some(),
            "{name}: the rule serves"
        );
    }
    assert!(names("missing.example").is_empty());
    assert!(names("kind.example").is_empty());
    // The granted mirror stays; only the one without a grant is dropped.
    assert_eq!(
        names("cross.example"),
        ["apps/httproute/cross/rule-0/mirror-1"]
    );
}

#[test]
fn a_grpc_route_mirrors_through_the_same_path() {
    let compiled = base()
        .web("apps", "shadow", &[endpoint("10.0.1.1", EndpointState::Ready)])
        .grpc_route(crate::testkit::grpc_route(
            "apps",
            "g",
            json!({ "parentRefs": parent(),
                    "rules": [{ "filters": [{ "type": "RequestMirror",
                                              "requestMirror": { "backendRef": { "name": "shadow", "port": 80 } } }],
                                "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        ))
        .compile();
    let port = compiled.table.gateway_port(&addr()).expect("the socket");
    let m = port.matches().next().expect("a match");
    let names: Vec<&str> = m
        .rule
        .mirrors
        .iter()
        .map(|m| m.pool.name.as_str())
        .collect();
    assert_eq!(names, ["apps/grpcroute/g/rule-0/mirror-0"]);
    assert_eq!(
        m.rule.mirrors[0].sample,
        crate::routing::gateway::Sample::ALL
    );
}

#[test]
fn a_rebuild_keeps_a_mirror_pools_endpoints() {
    let store = || {
        base()
            .web("apps", "shadow", &[endpoint("10.0.1.1", EndpointState::Ready)])
            .http_route(http_route(
                "apps",
                "r",
                json!({ "parentRefs": parent(),
                        "rules": [{ "filters": [{ "type": "RequestMirror",
                                                  "requestMirror": { "backendRef": { "name": "shadow", "port": 80 },
                                                                     "fraction": { "numerator": 1, "denominator": 2 } } }],
                                    "backendRefs": [{ "name": "web", "port": 80 }] }] }),
            ))
    };
    let key = ObjectKey::new("apps", "httproute/r/rule-0/mirror-0");
    let store = store().build();
    let first = crate::routing::compile(&store, None);
    let second = crate::routing::compile(&store, Some(&first.table));
    let endpoint = |c: &crate::routing::Compiled| {
        c.table
            .pool(&key)
            .and_then(|p| p.ready_endpoints().next().cloned())
            .expect("the mirror pool's endpoint")
    };
    assert!(Arc::ptr_eq(&endpoint(&first), &endpoint(&second)));
}

#[test]
fn weights_split_between_services_and_zero_takes_nothing() {
    let compiled = base()
        .web(
            "apps",
            "canary",
            &[endpoint("10.0.1.1", EndpointState::Ready)],
        )
        .http_route(http_route(
            "apps",
            "split",
            json!({ "parentRefs": parent(),
                    "rules": [
                        { "matches": [{ "path": { "type": "Exact", "value": "/zero" } }],
                          "backendRefs": [{ "name": "web", "port": 80, "weight": 0 }] },
                        { "backendRefs": [{ "name": "web", "port": 80, "weight": 3 },
                                          { "name": "canary", "port": 80, "weight": 1 },
                                          { "name": "gone", "port": 80, "weight": 0 }] },
                    ] }),
        ))
        .compile();
    let port = compiled.table.gateway_port(&addr()).expect("the socket");
    let rule = |path: &str| {
        let facts = RequestFacts {
            host: "any.example",
            method: &http::Method::GET,
            path,
            query: None,
            headers: &http::HeaderMap::new(),
        };
        port.route(&facts).expect("a rule").rule.clone()
    };
    assert!(
        rule("/zero").backends.pick().is_none(),
        "weight 0 only: a 500"
    );
    let split = rule("/");
    let pool = split.backends.pick().expect("the rule's pool");
    let mut canary = 0;
    for _ in 0..4000 {
        let any = |_: &crate::endpoint::Endpoint| true;
        let e = pool
            .pick(&crate::balance::Pick::new(&any))
            .expect("an endpoint");
        if e.addr.ip() == std::net::IpAddr::from([10, 0, 1, 1]) {
            canary += 1;
        }
    }
    // 1 in 4, and the 0-weight backend that does not resolve takes no share of 500s.
    assert!(
        (800..1200).contains(&canary),
        "canary took {canary} of 4000"
    );
    assert_eq!(
        route_conditions(&compiled, "apps", "split")[1],
        triple("ResolvedRefs", "False", "BackendNotFound")
    );
}

#[test]
fn a_load_balancer_pool_backend_brings_its_policies() {
    let compiled = base()
        .pool(pool(
            "apps",
            "tuned",
            json!({ "backends": [{ "service": "web", "port": "http" }],
                    "algorithm": "LeastConnections" }),
        ))
        .http_route(http_route(
            "apps",
            "via-pool",
            json!({ "parentRefs": parent(),
                    "rules": [{ "backendRefs": [{ "group": "weir.dev", "kind": "LoadBalancerPool", "name": "tuned" }] }] }),
        ))
        .compile();
    let port = compiled.table.gateway_port(&addr()).expect("the socket");
    let m = port.matches().next().expect("a match");
    let chosen = m.rule.backends.pick().expect("the pool");
    let tuned = compiled
        .table
        .pool(&ObjectKey::new("apps", "tuned"))
        .expect("the pool");
    assert!(Arc::ptr_eq(chosen, tuned), "the route uses the pool itself");
    assert_eq!(chosen.policy.algorithm, Algorithm::LeastConnections);
    let _ = route_spec; // (the pool above has no routes of its own)
}

#[test]
fn gateways_of_other_classes_and_taken_sockets() {
    let mut other = gateway(
        "infra",
        "theirs",
        None,
        json!([http_listener("web", 9000, None)]),
    );
    other.spec.gateway_class_name = "someone-else".into();
    let compiled = base()
        .gateway(other)
        .gateway(gateway(
            "infra",
            "zz-late",
            None,
            json!([http_listener("web", 8081, None)]),
        ))
        .compile();
    assert!(
        !compiled
            .gateway
            .gateways
            .contains_key(&ObjectKey::new("infra", "theirs"))
    );
    assert!(
        compiled
            .table
            .gateway_ports()
            .all(|p| p.addr.port() != 9000)
    );
    let late = &compiled.gateway.gateways[&ObjectKey::new("infra", "zz-late")];
    let accepted = &late.listeners[0].conditions[0];
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "PortUnavailable"),
        "{}",
        accepted.message
    );
}

#[test]
fn an_https_listener_without_its_secret_takes_no_traffic() {
    let compiled = base()
        .gateway(gateway(
            "infra",
            "tls",
            Some("127.0.0.3"),
            json!([{ "name": "https", "port": 8443, "protocol": "HTTPS",
                     "tls": { "certificateRefs": [{ "name": "missing" }] } }]),
        ))
        .service(service("apps", "x", &[("http", 80)]))
        .slice(slice("apps", "x", "x-1", &[("http", 80)], &[]))
        .compile();
    let tls = &compiled.gateway.gateways[&ObjectKey::new("infra", "tls")];
    let by_type = |t: &str| {
        tls.listeners[0]
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(
        by_type("ResolvedRefs"),
        Some(("False".into(), "InvalidCertificateRef".into()))
    );
    assert_eq!(
        by_type("Programmed"),
        Some(("False".into(), "Invalid".into()))
    );
    assert!(
        compiled
            .table
            .gateway_ports()
            .all(|p| p.addr.port() != 8443)
    );
}

#[test]
fn a_gateway_is_accepted_when_some_listener_is_and_an_unresolved_certificate_still_counts_routes() {
    let compiled = base()
        .gateway(gateway(
            "infra",
            "mixed",
            Some("127.0.0.4"),
            json!([http_listener("http", 80, None),
                   { "name": "udp", "port": 53, "protocol": "UDP" },
                   { "name": "tls", "port": 443, "protocol": "HTTPS",
                     "allowedRoutes": { "namespaces": { "from": "All" } },
                     "tls": { "certificateRefs": [{ "name": "does-not-exist" }] } }]),
        ))
        .gateway(gateway(
            "infra",
            "only-udp",
            Some("127.0.0.5"),
            json!([{ "name": "udp", "port": 53, "protocol": "UDP" }]),
        ))
        .http_route(http_route(
            "apps",
            "to-tls",
            json!({ "parentRefs": [{ "name": "mixed", "namespace": "infra", "sectionName": "tls" }],
                    "rules": [{ "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        ))
        .compile();
    let gateway_accepted = |name: &str| {
        let c = &compiled.gateway.gateways[&ObjectKey::new("infra", name)].conditions[0];
        (c.status.clone(), c.reason.clone())
    };
    assert_eq!(
        gateway_accepted("mixed"),
        ("True".into(), "ListenersNotValid".into())
    );
    assert_eq!(
        gateway_accepted("only-udp"),
        ("False".into(), "ListenersNotValid".into())
    );
    let mixed = &compiled.gateway.gateways[&ObjectKey::new("infra", "mixed")];
    assert!(
        mixed.listeners[1].supported_kinds.is_empty(),
        "UDP takes no kind of weir's"
    );
    let tls = &mixed.listeners[2];
    assert_eq!(
        tls.attached_routes, 1,
        "the route attaches though the listener cannot serve"
    );
    let programmed = tls
        .conditions
        .iter()
        .find(|c| c.type_ == "Programmed")
        .expect("Programmed");
    assert_eq!(programmed.status, "False");
    assert!(compiled.table.gateway_ports().all(|p| p.addr.port() != 443));
}

#[test]
fn session_persistence_becomes_the_rule_pools_cookie_and_a_header_session_is_refused() {
    let sticky = |name: &str, session: serde_json::Value| {
        http_route(
            "apps",
            name,
            json!({ "parentRefs": parent(), "hostnames": [format!("{name}.example")],
                    "rules": [{ "backendRefs": [{ "name": "web", "port": 80 }],
                                "sessionPersistence": session }] }),
        )
    };
    let compiled = base()
        .http_route(sticky(
            "cookie",
            json!({ "sessionName": "s", "absoluteTimeout": "10m",
                                               "cookieConfig": { "lifetimeType": "Permanent" } }),
        ))
        .http_route(sticky("session", json!({})))
        .http_route(sticky("header", json!({ "type": "Header" })))
        .compile();
    let cookie = |name: &str| {
        let key = ObjectKey::new("apps", format!("httproute/{name}/rule-0"));
        let pool = compiled.table.pool(&key).expect("the rule's pool");
        let c = &pool
            .policy
            .session_affinity
            .as_ref()
            .expect("affinity")
            .cookie;
        (c.name.clone(), c.ttl_seconds)
    };
    assert_eq!(cookie("cookie"), ("s".to_string(), 600));
    assert_eq!(
        cookie("session"),
        ("weir-affinity".to_string(), 0),
        "a session cookie"
    );
    assert_eq!(
        route_conditions(&compiled, "apps", "header")[0],
        triple("Accepted", "False", "UnsupportedValue")
    );
}

#[test]
fn a_request_belongs_to_the_most_specific_listener_only() {
    let compiled = base()
        .gateway(gateway(
            "infra",
            "isolated",
            Some("127.0.0.6"),
            json!([http_listener("any", 8081, None),
                   http_listener("wild", 8081, Some("*.example.com"))]),
        ))
        .http_route(http_route(
            "apps",
            "on-any",
            json!({ "parentRefs": [{ "name": "isolated", "namespace": "infra", "sectionName": "any" }],
                    "hostnames": ["bar.com", "*.example.com"],
                    "rules": [{ "backendRefs": [{ "name": "web", "port": 80 }] }] }),
        ))
        .compile();
    let port = compiled
        .table
        .gateway_port(&"127.0.0.6:8081".parse().expect("an address"))
        .expect("the socket");
    let on = |host: &str| {
        let facts = RequestFacts {
            host,
            method: &http::Method::GET,
            path: "/",
            query: None,
            headers: &http::HeaderMap::new(),
        };
        port.route(&facts).map(|m| m.rule.route.name.clone())
    };
    assert_eq!(on("bar.com"), Some("on-any".to_string()));
    // foo.example.com is the wildcard listener's, which has no route: not the other's.
    assert_eq!(on("foo.example.com"), None);
}
