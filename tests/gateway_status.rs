//! The Gateway API status writer against the test cluster's API server, with the v1.6.3
//! standard CRDs: what it writes reads back as the spec has it (conditions with
//! observedGeneration and lastTransitionTime, addresses, attachedRoutes, supportedFeatures),
//! an unchanged status is not written again, and a route's parent entry of another controller,
//! written under another field manager, survives our writes and our removals.
//!
//! The objects are made with kubectl and read back into a store, so compile sees the
//! generations the API server gave them; the writer is driven tick by tick (the watchers that
//! will feed `weir run` Gateway objects are not in yet).

mod common;

use common::cluster::Cluster;
use serde_json::{Value, json};
use std::time::Instant;
use weir::api::gateway::{CONTROLLER_NAME, SUPPORTED_FEATURES};
use weir::controller::gateway_status::{StatusWriter, Synced};
use weir::routing::GatewayStatuses;
use weir::testkit::StoreBuilder;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: shop }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: weir }
spec: { controllerName: weir.dev/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: shop }
spec:
  gatewayClassName: weir
  addresses: [{ type: IPAddress, value: 127.0.0.9 }]
  listeners:
    - { name: http, port: 8080, protocol: HTTP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: shop }
spec:
  parentRefs: [{ name: gw }, { name: theirs }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
"#;

/// The parent entry another controller keeps on `shop/web`.
fn theirs() -> Value {
    json!({
        "parentRef": { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs" },
        "controllerName": "example.com/other-controller",
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
            "observedGeneration": 1, "lastTransitionTime": "2020-01-02T03:04:05Z",
        }],
    })
}

/// Compiles what the cluster holds (and a local Service `shop/web` for the backendRef).
fn compile(cluster: &Cluster) -> GatewayStatuses {
    let read = |args: &[&str]| cluster.json(args);
    let class =
        serde_json::from_value(read(&["get", "gatewayclass", "weir"])).expect("a GatewayClass");
    let gateway =
        serde_json::from_value(read(&["-n", "shop", "get", "gateway", "gw"])).expect("a Gateway");
    let route = serde_json::from_value(read(&["-n", "shop", "get", "httproute", "web"]))
        .expect("an HTTPRoute");
    StoreBuilder::default()
        .gateway_class(class)
        .gateway(gateway)
        .http_route(route)
        .web("shop", "web", &[])
        .compile()
        .gateway
}

fn condition<'a>(conditions: &'a Value, type_: &str) -> &'a Value {
    conditions
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions}"))
}

/// Each condition: true, of the object's generation, with an RFC 3339 transition time.
fn assert_true_and_current(conditions: &Value, types: &[&str], generation: &Value) {
    for t in types {
        let c = condition(conditions, t);
        assert_eq!(c["status"], "True", "{c}");
        assert_eq!(&c["observedGeneration"], generation, "{c}");
        let time = c["lastTransitionTime"].as_str().unwrap_or_default();
        assert!(
            time.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && time.ends_with('Z'),
            "lastTransitionTime {time:?}"
        );
    }
}

fn parents(cluster: &Cluster) -> Vec<Value> {
    cluster.json(&["-n", "shop", "get", "httproute", "web"])["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_writes_gateway_api_status_as_the_spec_has_it() {
    let started = Instant::now();
    let cluster = Cluster::control_plane_only();
    cluster.install_gateway_api();
    cluster.apply(OBJECTS);
    // Another controller's entry, under its own field manager.
    common::cluster::ok(
        "kubectl patch the route's status as another controller",
        cluster.kubectl(&[
            "-n",
            "shop",
            "patch",
            "httproute",
            "web",
            "--subresource=status",
            "--type=merge",
            "--field-manager=other-controller",
            "-p",
            &json!({ "status": { "parents": [theirs()] } }).to_string(),
        ]),
    );

    let mut writer = StatusWriter::new(cluster.client().await, Vec::new());
    let statuses = compile(&cluster);
    let synced = writer.sync(&statuses).await;
    assert_eq!(
        synced,
        Synced {
            written: 3,
            failed: vec![]
        }
    );

    // GatewayClass: Accepted, and the features.
    let class = cluster.json(&["get", "gatewayclass", "weir"]);
    assert_true_and_current(
        &class["status"]["conditions"],
        &["Accepted"],
        &class["metadata"]["generation"],
    );
    let features: Vec<&str> = class["status"]["supportedFeatures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(features, SUPPORTED_FEATURES);

    // Gateway: conditions, address, the listener and its attached route.
    let gw = cluster.json(&["-n", "shop", "get", "gateway", "gw"]);
    let generation = &gw["metadata"]["generation"];
    assert_true_and_current(
        &gw["status"]["conditions"],
        &["Accepted", "Programmed"],
        generation,
    );
    assert_eq!(
        gw["status"]["addresses"],
        json!([{ "type": "IPAddress", "value": "127.0.0.9" }])
    );
    let listener = &gw["status"]["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 1);
    assert_eq!(
        listener["supportedKinds"][0],
        json!({ "group": "gateway.networking.k8s.io", "kind": "HTTPRoute" })
    );
    assert_true_and_current(
        &listener["conditions"],
        &["Accepted", "ResolvedRefs", "Programmed"],
        generation,
    );
    assert_eq!(
        condition(&listener["conditions"], "Conflicted")["status"],
        "False"
    );
    let programmed_at =
        condition(&gw["status"]["conditions"], "Programmed")["lastTransitionTime"].clone();

    // HTTPRoute: theirs as it was, ours beside it.
    let route = cluster.json(&["-n", "shop", "get", "httproute", "web"]);
    let on_route = parents(&cluster);
    assert_eq!(on_route.len(), 2, "{on_route:?}");
    assert_eq!(on_route[0], theirs());
    let ours = &on_route[1];
    assert_eq!(ours["controllerName"], CONTROLLER_NAME);
    assert_eq!(ours["parentRef"]["name"], "gw");
    assert_true_and_current(
        &ours["conditions"],
        &["Accepted", "ResolvedRefs"],
        &route["metadata"]["generation"],
    );

    // Unchanged: nothing written, no time moved.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(writer.sync(&compile(&cluster)).await, Synced::default());
    let gw = cluster.json(&["-n", "shop", "get", "gateway", "gw"]);
    assert_eq!(
        condition(&gw["status"]["conditions"], "Programmed")["lastTransitionTime"],
        programmed_at
    );

    // The route drops its parentRef of ours: our entry goes, theirs stays.
    cluster.apply(&OBJECTS.replace("[{ name: gw }, { name: theirs }]", "[{ name: theirs }]"));
    let synced = writer.sync(&compile(&cluster)).await;
    assert_eq!(
        synced,
        Synced {
            written: 2,
            failed: vec![]
        },
        "the route, and the Gateway's attachedRoutes"
    );
    assert_eq!(parents(&cluster), [theirs()]);
    let gw = cluster.json(&["-n", "shop", "get", "gateway", "gw"]);
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 0);

    // Back, then a new leader whose compile no longer has the route: it finds our entry on
    // the API server and takes it away.
    cluster.apply(OBJECTS);
    assert!(writer.sync(&compile(&cluster)).await.failed.is_empty());
    assert_eq!(parents(&cluster).len(), 2);
    let mut next_leader = StatusWriter::new(cluster.client().await, Vec::new());
    let mut without_route = compile(&cluster);
    without_route.http_routes.clear();
    let synced = next_leader.sync(&without_route).await;
    assert!(synced.failed.is_empty(), "{:?}", synced.failed);
    assert_eq!(parents(&cluster), [theirs()]);
    eprintln!("gateway_status: {:?}", started.elapsed());
}
