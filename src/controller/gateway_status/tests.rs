use super::desired::{self, merge_parents};
use super::*;
use crate::api::gateway::{CONTROLLER_NAME, ParentReference, SUPPORTED_FEATURES};
use crate::testkit::{StoreBuilder, gateway, gateway_class, http_listener, http_route};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Records the calls, and keeps routes' `status.parents` as an API server would.
#[derive(Default)]
struct Recorded {
    classes: RefCell<Vec<(String, GatewayClassStatus)>>,
    gateways: RefCell<Vec<(ObjectKey, GatewayStatus)>>,
    route_writes: RefCell<Vec<(ObjectKey, Vec<RouteParentStatus>)>>,
    /// Each route's `status.parents` on the "server".
    server_routes: RefCell<BTreeMap<ObjectKey, Vec<RouteParentStatus>>>,
    failing: Cell<bool>,
}

impl Recorded {
    fn writes(&self) -> usize {
        self.classes.borrow().len()
            + self.gateways.borrow().len()
            + self.route_writes.borrow().len()
    }
}

impl Sink for &Recorded {
    type Error = &'static str;
    async fn write_class(
        &self,
        name: &str,
        status: &GatewayClassStatus,
    ) -> Result<(), &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        self.classes
            .borrow_mut()
            .push((name.into(), status.clone()));
        Ok(())
    }
    async fn write_gateway(
        &self,
        key: &ObjectKey,
        status: &GatewayStatus,
    ) -> Result<(), &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        self.gateways
            .borrow_mut()
            .push((key.clone(), status.clone()));
        Ok(())
    }
    async fn write_route(
        &self,
        _kind: RouteKind,
        key: &ObjectKey,
        ours: &[RouteParentStatus],
    ) -> Result<(), &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        self.route_writes
            .borrow_mut()
            .push((key.clone(), ours.to_vec()));
        let mut server = self.server_routes.borrow_mut();
        let current = server.remove(key).unwrap_or_default();
        server.insert(key.clone(), merge_parents(&current, ours));
        Ok(())
    }
    async fn our_route_entries(
        &self,
        kind: RouteKind,
    ) -> Result<BTreeMap<ObjectKey, Vec<RouteParentStatus>>, &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        // The tests' routes are all HTTPRoutes.
        if kind == RouteKind::Grpc {
            return Ok(BTreeMap::new());
        }
        Ok(self
            .server_routes
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), desired::ours(v)))
            .filter(|(_, v)| !v.is_empty())
            .collect())
    }
}

/// The class `weir`, Gateway `ns/gw` (generation 3) on 127.0.0.9:8080, and routes `ns/web`
/// (generation 2) attached to it and `ns/other` of another controller's Gateway only.
fn statuses() -> GatewayStatuses {
    let mut gw = gateway(
        "ns",
        "gw",
        Some("127.0.0.9"),
        json!([http_listener("http", 8080, None)]),
    );
    gw.metadata.generation = Some(3);
    let mut web = http_route(
        "ns",
        "web",
        json!({ "parentRefs": [{ "name": "gw" }],
                "rules": [{ "backendRefs": [{ "name": "web", "port": 80 }] }] }),
    );
    web.metadata.generation = Some(2);
    let mut class = gateway_class();
    class.metadata.generation = Some(1);
    StoreBuilder::default()
        .gateway_class(class)
        .gateway(gw)
        .http_route(web)
        .http_route(http_route(
            "ns",
            "other",
            json!({ "parentRefs": [{ "name": "theirs" }] }),
        ))
        .web("ns", "web", &[])
        .compile()
        .gateway
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("ns", name)
}

fn theirs() -> RouteParentStatus {
    RouteParentStatus {
        parent_ref: ParentReference {
            name: "theirs".into(),
            ..Default::default()
        },
        controller_name: "example.com/other".into(),
        conditions: vec![MetaCondition {
            type_: "Accepted".into(),
            status: "True".into(),
            reason: "Accepted".into(),
            message: "theirs".into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }],
    }
}

fn reasons(conditions: &[MetaCondition]) -> Vec<(&str, &str, &str)> {
    conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect()
}

#[tokio::test]
async fn writes_each_object_once_and_an_unchanged_status_not_again() {
    let sink = Recorded::default();
    let mut writer = Writer::new(&sink);
    let current = statuses();
    let synced = writer.sync(&current).await;
    assert_eq!(
        synced,
        Synced {
            written: 3,
            failed: vec![]
        }
    );

    let classes = sink.classes.borrow().clone();
    let (name, class) = &classes[0];
    assert_eq!(name, "weir");
    assert_eq!(
        reasons(&class.conditions),
        [("Accepted", "True", "Accepted")]
    );
    assert_eq!(class.conditions[0].observed_generation, Some(1));
    let features: Vec<&str> = class
        .supported_features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(features, SUPPORTED_FEATURES);

    let gateways = sink.gateways.borrow().clone();
    let (gw_key, gw) = &gateways[0];
    assert_eq!(gw_key, &key("gw"));
    let wire = serde_json::to_value(gw).expect("serializes");
    assert_eq!(
        wire["addresses"],
        json!([{ "type": "IPAddress", "value": "127.0.0.9" }])
    );
    assert_eq!(
        reasons(&gw.conditions),
        [
            ("Accepted", "True", "Accepted"),
            ("Programmed", "True", "Programmed")
        ]
    );
    assert!(
        gw.conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );
    let listener = &gw.listeners[0];
    assert_eq!(
        (listener.name.as_str(), listener.attached_routes),
        ("http", 1)
    );
    // The kinds are compile's word (routing::compile::gateway::supported_kinds).
    assert_eq!(
        wire["listeners"][0]["supportedKinds"][0],
        json!({ "group": "gateway.networking.k8s.io", "kind": "HTTPRoute" })
    );
    assert!(
        listener
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );
    assert_eq!(
        wire["conditions"][0]["lastTransitionTime"]
            .as_str()
            .map(str::len),
        Some(20),
        "RFC 3339 to the second: {wire}"
    );

    let routes = sink.route_writes.borrow().clone();
    assert_eq!(routes.len(), 1, "only the route with a parentRef of ours");
    let (route_key, parents) = &routes[0];
    assert_eq!(route_key, &key("web"));
    assert_eq!(parents[0].controller_name, CONTROLLER_NAME);
    assert_eq!(parents[0].parent_ref.name, "gw");
    assert_eq!(
        reasons(&parents[0].conditions),
        [
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
    assert!(
        parents[0]
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );

    assert_eq!(
        writer.sync(&current).await,
        Synced::default(),
        "nothing changed"
    );
    assert_eq!(sink.writes(), 3);
}

#[test]
fn transition_times_move_only_when_a_condition_flips() {
    let t1 = Timestamp::from_second(1_000).expect("a time");
    let t2 = Timestamp::from_second(2_000).expect("a time");
    let mut report = statuses().gateways[&key("gw")].clone();
    let first = desired::gateway_status(&report, None, t1);
    assert!(
        first
            .conditions
            .iter()
            .all(|c| c.last_transition_time.0 == t1)
    );

    // A new message, the same status: the times stay.
    report.conditions[1].message = "1 listener(s), again".into();
    report.listeners[0].conditions[3].message = "still served".into();
    let same = desired::gateway_status(&report, Some(&first), t2);
    assert_ne!(same, first, "the message changed: written again");
    assert!(
        same.conditions
            .iter()
            .all(|c| c.last_transition_time.0 == t1)
    );
    assert!(
        same.listeners[0]
            .conditions
            .iter()
            .all(|c| c.last_transition_time.0 == t1)
    );

    // Programmed flips: its time moves, the others' do not.
    report.conditions[1].status = "False".into();
    report.conditions[1].reason = "AddressNotUsable".into();
    report.listeners[0].conditions[3].status = "False".into();
    let flipped = desired::gateway_status(&report, Some(&same), t2);
    assert_eq!(flipped.conditions[0].last_transition_time.0, t1);
    assert_eq!(flipped.conditions[1].last_transition_time.0, t2);
    let listener = &flipped.listeners[0].conditions;
    assert_eq!(listener[0].last_transition_time.0, t1);
    assert_eq!(listener[3].last_transition_time.0, t2);

    // A route parent's conditions keep theirs by parentRef.
    let parents = &statuses().http_routes[&key("web")];
    let written = desired::route_parents(parents, None, t1);
    let again = desired::route_parents(parents, Some(&written), t2);
    assert_eq!(again, written);
}

#[test]
fn merging_keeps_every_other_controllers_entry_in_place() {
    let ours = desired::route_parents(
        &statuses().http_routes[&key("web")],
        None,
        Timestamp::UNIX_EPOCH,
    );
    let mut stale = ours[0].clone();
    stale.parent_ref.name = "gone".into();
    let current = vec![stale, theirs()];
    assert_eq!(merge_parents(&current, &ours), [theirs(), ours[0].clone()]);
    assert_eq!(merge_parents(&current, &[]), [theirs()]);
}

#[tokio::test]
async fn other_controllers_entries_stay_and_ours_go_with_our_parent_ref() {
    let sink = Recorded::default();
    sink.server_routes
        .borrow_mut()
        .insert(key("web"), vec![theirs()]);
    let mut writer = Writer::new(&sink);
    let mut current = statuses();
    writer.sync(&current).await;
    let on_server = sink.server_routes.borrow()[&key("web")].clone();
    assert_eq!(on_server.len(), 2);
    assert_eq!(on_server[0], theirs());
    assert_eq!(on_server[1].controller_name, CONTROLLER_NAME);

    // The route's parentRef of ours is gone (the route left compile's statuses).
    current.http_routes.remove(&key("web"));
    let synced = writer.sync(&current).await;
    assert_eq!(synced.written, 1);
    assert_eq!(sink.server_routes.borrow()[&key("web")], [theirs()]);
    assert_eq!(
        sink.route_writes
            .borrow()
            .last()
            .map(|(_, ours)| ours.len()),
        Some(0)
    );
    // Removed once; not again.
    assert_eq!(writer.sync(&current).await, Synced::default());
}

#[tokio::test]
async fn a_new_term_takes_away_entries_an_earlier_leader_left() {
    let sink = Recorded::default();
    let ours = desired::route_parents(
        &statuses().http_routes[&key("web")],
        None,
        Timestamp::UNIX_EPOCH,
    );
    sink.server_routes
        .borrow_mut()
        .insert(key("old"), vec![theirs(), ours[0].clone()]);
    let mut writer = Writer::new(&sink);
    let synced = writer.sync(&statuses()).await;
    assert_eq!(
        synced.written, 4,
        "class, Gateway, ns/web, and ns/old's removal"
    );
    assert_eq!(sink.server_routes.borrow()[&key("old")], [theirs()]);

    // The next term reads again and finds nothing stale. It writes the class and the Gateway
    // once; ns/web's entry on the server is already what it would write (times included).
    writer.new_term();
    assert_eq!(writer.sync(&statuses()).await.written, 2);
    assert_eq!(writer.sync(&statuses()).await.written, 0);
}

#[tokio::test]
async fn a_failed_write_is_tried_again() {
    let sink = Recorded::default();
    sink.failing.set(true);
    let mut writer = Writer::new(&sink);
    let synced = writer.sync(&statuses()).await;
    assert_eq!(synced.written, 0);
    assert_eq!(
        synced.failed.len(),
        4,
        "the read of the term and three writes"
    );
    sink.failing.set(false);
    assert_eq!(writer.sync(&statuses()).await.written, 3);
}

#[tokio::test(start_paused = true)]
async fn only_a_leader_with_a_table_in_service_writes() {
    let sink = Recorded::default();
    let admin = ProcessState::default();
    let leader = AtomicBool::new(false);
    admin.gateway_statuses.store(Arc::new(statuses()));
    let every = Duration::from_secs(1);
    tokio::select! {
        _ = follow(Writer::new(&sink), &admin, &leader, every) => unreachable!("never ends"),
        _ = async {
            tokio::time::sleep(every * 3 + every / 2).await;
            assert_eq!(sink.writes(), 0, "a follower wrote");
            leader.store(true, Ordering::Relaxed);
            tokio::time::sleep(every * 2).await;
            assert_eq!(sink.writes(), 0, "written before the first table was in service");
            admin.synced.store(true, Ordering::Relaxed);
            tokio::time::sleep(every * 3).await;
        } => {}
    }
    assert_eq!(sink.writes(), 3, "each object once");
}
