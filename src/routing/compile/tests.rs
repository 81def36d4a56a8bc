use super::*;
use crate::store::SERVICE_NAME_LABEL;
use crate::testkit::{self, EndpointState, EndpointState::*, StoreBuilder, endpoint, route_spec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

/// A pool at generation 3 (so `observedGeneration` is seen to be copied), created at `created`
/// when given (the older pool wins a conflict).
fn pool(ns: &str, name: &str, created: Option<&str>, spec: serde_json::Value) -> LoadBalancerPool {
    let mut p = testkit::pool(ns, name, spec);
    p.metadata.generation = Some(3);
    match created {
        Some(time) => testkit::created(p, time),
        None => p,
    }
}

/// An endpoint in `state` that is pod `pod-{ip}`.
fn ep(ip: &str, state: EndpointState) -> testkit::Endpoint {
    endpoint(ip, state).pod(format!("pod-{ip}"))
}

fn ready(ip: &str) -> testkit::Endpoint {
    ep(ip, Ready)
}

/// Any endpoint of the pool, as a request without affinity or key would get.
fn pick_any(pool: &Pool) -> Option<&Arc<Endpoint>> {
    pool.pick(&crate::balance::Pick::new(&|_| true))
}

fn routed(c: &Compiled, host: &str, path: &str) -> Option<String> {
    c.table.route(host, path).map(|p| p.name.to_string())
}

fn condition<'a>(c: &'a Compiled, ns: &str, name: &str, type_: &str) -> &'a Condition {
    c.statuses[&ObjectKey::new(ns, name)]
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition present")
}

#[test]
fn routes_by_host_then_longest_prefix() {
    let c = StoreBuilder::default()
        .web("shop", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "shop",
            "root",
            None,
            route_spec("shop.example.com", "/", "web"),
        ))
        .pool(pool(
            "shop",
            "api",
            None,
            route_spec("shop.example.com", "/api", "web"),
        ))
        .pool(pool(
            "shop",
            "v2",
            None,
            route_spec("shop.example.com", "/api/v2/", "web"),
        ))
        .compile();
    assert_eq!(
        routed(&c, "shop.example.com", "/").as_deref(),
        Some("shop/root")
    );
    assert_eq!(
        routed(&c, "shop.example.com", "/apix").as_deref(),
        Some("shop/root")
    );
    assert_eq!(
        routed(&c, "shop.example.com", "/api").as_deref(),
        Some("shop/api")
    );
    assert_eq!(
        routed(&c, "SHOP.example.com:8080", "/api/v1").as_deref(),
        Some("shop/api")
    );
    assert_eq!(
        routed(&c, "shop.example.com", "/api/v2/x").as_deref(),
        Some("shop/v2")
    );
    assert_eq!(routed(&c, "other.example.com", "/"), None);
}

#[test]
fn exact_host_beats_wildcard_beats_any_host() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "ns",
            "exact",
            None,
            route_spec("a.example.com", "/", "web"),
        ))
        .pool(pool(
            "ns",
            "wild",
            None,
            route_spec("*.example.com", "/", "web"),
        ))
        .pool(pool("ns", "any", None, route_spec("", "/", "web")))
        .compile();
    assert_eq!(
        routed(&c, "a.example.com", "/").as_deref(),
        Some("ns/exact")
    );
    assert_eq!(routed(&c, "b.example.com", "/").as_deref(), Some("ns/wild"));
    // A wildcard covers one label only, as in Ingress and TLS certificates.
    assert_eq!(
        routed(&c, "x.b.example.com", "/").as_deref(),
        Some("ns/any")
    );
    assert_eq!(routed(&c, "example.com", "/").as_deref(), Some("ns/any"));
    assert_eq!(routed(&c, "elsewhere.org", "/").as_deref(), Some("ns/any"));
}

#[test]
fn an_exact_host_without_the_path_falls_back_to_wider_hosts() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "ns",
            "api",
            None,
            route_spec("a.example.com", "/api", "web"),
        ))
        .pool(pool(
            "ns",
            "wild",
            None,
            route_spec("*.example.com", "/", "web"),
        ))
        .compile();
    assert_eq!(
        routed(&c, "a.example.com", "/api/x").as_deref(),
        Some("ns/api")
    );
    assert_eq!(
        routed(&c, "a.example.com", "/other").as_deref(),
        Some("ns/wild")
    );
}

#[test]
fn the_older_pool_keeps_a_contested_route() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "ns",
            "newer",
            Some("2026-02-01T00:00:00Z"),
            json!({"routes": [{"host": "a.example.com", "pathPrefix": "/"},
                              {"host": "b.example.com"}],
                   "backends": [{"service": "web", "port": "http"}]}),
        ))
        .pool(pool(
            "ns",
            "older",
            Some("2026-01-01T00:00:00Z"),
            route_spec("a.example.com", "/", "web"),
        ))
        .compile();
    assert_eq!(
        routed(&c, "a.example.com", "/").as_deref(),
        Some("ns/older")
    );
    // The loser keeps the routes nobody contests.
    assert_eq!(
        routed(&c, "b.example.com", "/").as_deref(),
        Some("ns/newer")
    );
    let accepted = condition(&c, "ns", "newer", "Accepted");
    assert!(!accepted.is_true());
    assert_eq!(accepted.reason, "RouteConflict");
    assert!(
        accepted.message.contains("ns/older"),
        "{}",
        accepted.message
    );
    assert!(condition(&c, "ns", "older", "Accepted").is_true());
}

#[test]
fn same_age_conflicts_go_by_name_and_trailing_slashes_do_not_dodge_them() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "ns",
            "b",
            None,
            route_spec("a.example.com", "/api/", "web"),
        ))
        .pool(pool(
            "ns",
            "a",
            None,
            route_spec("a.example.com", "/api", "web"),
        ))
        .compile();
    assert_eq!(routed(&c, "a.example.com", "/api").as_deref(), Some("ns/a"));
    assert_eq!(condition(&c, "ns", "b", "Accepted").reason, "RouteConflict");
}

#[test]
fn missing_service_and_port_are_named() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "ns",
            "nosvc",
            None,
            route_spec("a.test", "/", "ghost"),
        ))
        .pool(pool(
            "ns",
            "noport",
            None,
            json!({"routes": [{"host": "b.test"}],
                   "backends": [{"service": "web", "port": "grpc"}]}),
        ))
        .pool(pool(
            "ns",
            "nonumber",
            None,
            json!({"routes": [{"host": "c.test"}],
                   "backends": [{"service": "web", "port": 8443}]}),
        ))
        .compile();
    let nosvc = condition(&c, "ns", "nosvc", "ResolvedRefs");
    assert_eq!(
        (nosvc.is_true(), nosvc.reason.as_str()),
        (false, "BackendNotFound")
    );
    assert!(nosvc.message.contains("ns/ghost"), "{}", nosvc.message);
    let noport = condition(&c, "ns", "noport", "ResolvedRefs");
    assert_eq!(noport.reason, "PortNotFound");
    assert!(noport.message.contains("grpc"), "{}", noport.message);
    assert!(
        condition(&c, "ns", "nonumber", "ResolvedRefs")
            .message
            .contains("8443")
    );
    // They keep their routes and answer 503 (no endpoints), not 404.
    let p = c.table.route("a.test", "/").expect("route kept");
    assert!(pick_any(p).is_none());
}

#[test]
fn ports_resolve_by_name_and_by_number() {
    let w = StoreBuilder::default()
        .service(testkit::service(
            "ns",
            "multi",
            &[("http", 80), ("admin", 9000)],
        ))
        .slice(testkit::slice(
            "ns",
            "multi",
            "multi-1",
            &[("http", 8080), ("admin", 9090)],
            &[ready("10.0.0.1")],
        ))
        .service(testkit::service("ns", "unnamed", &[("", 80)]))
        .slice(testkit::slice(
            "ns",
            "unnamed",
            "unnamed-1",
            &[("", 3000)],
            &[ready("10.0.0.2")],
        ));
    let by = |port: serde_json::Value, svc: &str| {
        let c = StoreBuilder(w.0.clone())
            .pool(pool(
                "ns",
                "p",
                None,
                json!({"routes": [{"host": "a.test"}],
                       "backends": [{"service": svc, "port": port}]}),
            ))
            .compile();
        let p = c.table.route("a.test", "/").expect("routed").clone();
        pick_any(&p).map(|e| e.addr.to_string())
    };
    assert_eq!(
        by(json!("admin"), "multi").as_deref(),
        Some("10.0.0.1:9090")
    );
    assert_eq!(by(json!(80), "multi").as_deref(), Some("10.0.0.1:8080"));
    assert_eq!(by(json!(9000), "multi").as_deref(), Some("10.0.0.1:9090"));
    assert_eq!(by(json!(80), "unnamed").as_deref(), Some("10.0.0.2:3000"));
}

#[test]
fn unready_endpoints_take_no_traffic_and_terminating_serving_ones_are_fenced() {
    let c = StoreBuilder::default()
        .web(
            "ns",
            "web",
            &[
                ready("10.0.0.1"),
                ep("10.0.0.2", NotReady),
                ep("10.0.0.3", TerminatingServing),
                ready("10.0.0.4"),
            ],
        )
        .pool(pool("ns", "p", None, route_spec("a.test", "/", "web")))
        .compile();
    let p = c.table.route("a.test", "/").expect("routed");
    let picked: HashSet<String> = (0..20)
        .filter_map(|_| pick_any(p))
        .map(|e| e.addr.ip().to_string())
        .collect();
    assert_eq!(
        picked,
        HashSet::from(["10.0.0.1".into(), "10.0.0.4".into()])
    );
    assert_eq!(p.backends[0].fenced[0].addr.to_string(), "10.0.0.3:8080");
    assert_eq!(p.backends[0].fenced[0].identity, "ns/pod-10.0.0.3");
    let status = &c.statuses[&ObjectKey::new("ns", "p")];
    assert_eq!(
        status.endpoints,
        EndpointCounts {
            total: 4,
            ready: 2,
            healthy: 2
        }
    );
    assert_eq!(status.observed_generation, Some(3));
    assert!(condition(&c, "ns", "p", "Ready").message.contains("2 of 4"));
}

#[test]
fn no_ready_endpoints_says_why() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ep("10.0.0.2", NotReady)])
        .pool(pool("ns", "p", None, route_spec("a.test", "/", "web")))
        .compile();
    let r = condition(&c, "ns", "p", "Ready");
    assert_eq!(
        (r.is_true(), r.reason.as_str()),
        (false, "NoHealthyEndpoints")
    );
    assert!(r.message.contains("1 not ready"), "{}", r.message);
}

#[test]
fn backend_weights_split_traffic() {
    let w = StoreBuilder::default()
        .web("ns", "v1", &[ready("10.0.1.1"), ready("10.0.1.2")])
        .web("ns", "v2", &[ready("10.0.2.1")])
        .pool(pool(
            "ns",
            "canary",
            None,
            json!({"routes": [{"host": "a.test"}],
                   "backends": [{"service": "v1", "port": "http", "weight": 90},
                                {"service": "v2", "port": "http", "weight": 10}]}),
        ));
    let c = w.compile();
    let p = c.table.route("a.test", "/").expect("routed");
    let mut v2 = 0;
    for _ in 0..1000 {
        let e = pick_any(p).expect("an endpoint");
        if e.addr.ip().to_string().starts_with("10.0.2.") {
            v2 += 1;
        }
    }
    assert_eq!(v2, 100);
}

#[test]
fn a_backend_without_endpoints_gives_its_share_to_the_others() {
    let c = StoreBuilder::default()
        .web("ns", "v1", &[ready("10.0.1.1")])
        .web("ns", "v2", &[])
        .pool(pool(
            "ns",
            "p",
            None,
            json!({"routes": [{"host": "a.test"}],
                   "backends": [{"service": "v1", "port": "http", "weight": 1},
                                {"service": "v2", "port": "http", "weight": 9}]}),
        ))
        .compile();
    let p = c.table.route("a.test", "/").expect("routed");
    assert!((0..50).all(|_| pick_any(p).is_some()));
}

#[test]
fn one_bad_pool_leaves_the_others_intact() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "ns",
            "good",
            None,
            route_spec("good.test", "/", "web"),
        ))
        .pool(pool(
            "ns",
            "empty",
            None,
            json!({"routes": [{"host": "bad.test"}], "backends": []}),
        ))
        .pool(pool(
            "ns",
            "heavy",
            None,
            json!({"routes": [{"host": "bad2.test"}],
                   "backends": [{"service": "web", "port": "http", "weight": 5000}]}),
        ))
        .pool(pool(
            "ns",
            "ghost",
            None,
            route_spec("ghost.test", "/", "nothing"),
        ))
        .compile();
    assert_eq!(routed(&c, "good.test", "/").as_deref(), Some("ns/good"));
    assert!(pick_any(c.table.route("good.test", "/").unwrap()).is_some());
    assert_eq!(routed(&c, "bad.test", "/"), None);
    let empty = condition(&c, "ns", "empty", "Accepted");
    assert_eq!((empty.is_true(), empty.reason.as_str()), (false, "Invalid"));
    assert!(empty.message.contains("spec.backends"), "{}", empty.message);
    assert!(
        condition(&c, "ns", "heavy", "Accepted")
            .message
            .contains("spec.backends[0].weight")
    );
    assert!(condition(&c, "ns", "good", "Ready").is_true());
    assert_eq!(c.statuses.len(), 4);
}

#[test]
fn endpoints_that_stay_keep_their_state_across_rebuilds() {
    let w = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1"), ready("10.0.0.2")])
        .pool(pool("ns", "p", None, route_spec("a.test", "/", "web")));
    let first = w.compile();
    let e1 = first
        .table
        .pool(&ObjectKey::new("ns", "p"))
        .unwrap()
        .backends[0]
        .endpoints[0]
        .clone();
    let _guard = e1.start_request();
    let w = w.web("ns", "web", &[ready("10.0.0.1"), ready("10.0.0.3")]);
    let second = compile(&w.0, Some(&first.table));
    let p = second.table.pool(&ObjectKey::new("ns", "p")).unwrap();
    let kept = p.ready_endpoints().find(|e| e.addr == e1.addr).unwrap();
    assert!(Arc::ptr_eq(kept, &e1));
    assert_eq!(kept.in_flight(), 1);
    assert!(
        p.ready_endpoints()
            .all(|e| e.addr.ip().to_string() != "10.0.0.2")
    );
}

#[test]
fn duplicate_addresses_across_slices_count_once() {
    let c = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .slice(testkit::slice(
            "ns",
            "web",
            "web-def",
            &[("http", 8080)],
            &[ready("10.0.0.1"), ready("10.0.0.2")],
        ))
        .pool(pool("ns", "p", None, route_spec("a.test", "/", "web")))
        .compile();
    assert_eq!(c.statuses[&ObjectKey::new("ns", "p")].endpoints.total, 2);
}

#[test]
fn an_expired_certificate_gets_a_warning_condition() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let w = StoreBuilder::default()
        .web("ns", "web", &[ready("10.0.0.1")])
        .pool(pool(
            "ns",
            "p",
            None,
            json!({"routes": [{"host": "a.test"}],
                   "backends": [{"service": "web", "port": "http"}],
                   "tls": {"secretName": "tls"}}),
        ))
        .secret(testkit::tls_secret(
            "ns",
            "tls",
            cert.pem(),
            key.serialize_pem(),
        ));
    let c = w.compile();
    let valid = condition(&c, "ns", "p", "CertificateValid");
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("False", "Expired")
    );
    assert!(valid.message.contains("ns/tls"), "{}", valid.message);
    // Expired is still served (clients decide), and the refs resolved.
    assert!(condition(&c, "ns", "p", "ResolvedRefs").is_true());
    assert!(c.table.certificate("a.test").is_some());
}

#[test]
fn slices_are_read_as_the_api_defines_them() {
    let raw = |v: serde_json::Value| -> EndpointSlice { serde_json::from_value(v).unwrap() };
    let labels = json!({SERVICE_NAME_LABEL: "web"});
    let c = StoreBuilder::default()
        .service(testkit::service("ns", "web", &[("http", 80)]))
        // A UDP port of the same name comes first; nil conditions mean ready; no pod: the
        // identity is the address; an unparsable first address drops the endpoint.
        .slice(raw(json!({
            "metadata": {"name": "web-a", "namespace": "ns", "labels": labels},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 5353, "protocol": "UDP"},
                      {"name": "http", "port": 8080, "appProtocol": "h2c"}],
            "endpoints": [
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["bogus", "10.0.0.9"]},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "terminating": true}},
                {"addresses": ["10.0.0.3"],
                 "conditions": {"ready": false, "serving": true, "terminating": true},
                 "targetRef": {"kind": "Pod", "name": "p3"}},
            ],
        })))
        // FQDN slices are not connected to.
        .slice(raw(json!({
            "metadata": {"name": "web-b", "namespace": "ns", "labels": labels},
            "addressType": "FQDN",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.5"]}],
        })))
        // The first port of the name has no number: the slice gives nothing.
        .slice(raw(json!({
            "metadata": {"name": "web-c", "namespace": "ns", "labels": labels},
            "addressType": "IPv4",
            "ports": [{"name": "http"}, {"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.6"]}],
        })))
        // No Service label: no one's.
        .slice(raw(json!({
            "metadata": {"name": "stray", "namespace": "ns"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.7"]}],
        })))
        .pool(pool("ns", "p", None, route_spec("a.test", "/", "web")))
        .compile();
    let p = c.table.route("a.test", "/").expect("routed");
    let b = &p.backends[0];
    let shown = |e: &Arc<Endpoint>| (e.addr.to_string(), e.identity.clone(), e.h2c);
    assert_eq!(
        b.endpoints.iter().map(shown).collect::<Vec<_>>(),
        vec![(
            "10.0.0.1:8080".to_string(),
            "10.0.0.1:8080".to_string(),
            true
        )]
    );
    assert_eq!(
        b.fenced.iter().map(shown).collect::<Vec<_>>(),
        vec![("10.0.0.3:8080".to_string(), "ns/p3".to_string(), true)]
    );
    assert_eq!(b.not_ready, 1);
    assert_eq!(
        c.statuses[&ObjectKey::new("ns", "p")].endpoints,
        EndpointCounts {
            total: 3,
            ready: 1,
            healthy: 1
        }
    );
}

#[test]
fn the_host_policy_keeps_a_namespace_off_hosts_it_was_not_given() {
    let world = StoreBuilder::default()
        .web("shop", "web", &[ready("10.0.0.1")])
        .web("squat", "web", &[ready("10.0.0.2")])
        .pool(pool(
            "squat",
            "grab",
            Some("2020-01-01T00:00:00Z"),
            route_spec("shop.example.com", "/", "web"),
        ))
        .pool(pool(
            "shop",
            "web",
            Some("2024-01-01T00:00:00Z"),
            route_spec("shop.example.com", "/", "web"),
        ));
    // Open (the default): the older pool, in the squatting namespace, holds the host.
    let open = world.compile();
    assert_eq!(
        routed(&open, "shop.example.com", "/").as_deref(),
        Some("squat/grab")
    );
    let policy =
        HostPolicy::from_rules(&["shop=shop.example.com,*.shop.example.com"]).expect("rules");
    let c = compile_with(&world.0, None, &policy);
    assert_eq!(
        routed(&c, "shop.example.com", "/").as_deref(),
        Some("shop/web")
    );
    let refused = condition(&c, "squat", "grab", "Accepted");
    assert_eq!(refused.reason, "HostNotAllowed");
    assert!(
        refused.message.contains("shop.example.com") && refused.message.contains("squat"),
        "{}",
        refused.message
    );
    assert!(condition(&c, "shop", "web", "Accepted").is_true());
}
