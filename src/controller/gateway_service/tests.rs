use super::*;
use crate::api::gateway::{GATEWAY_ANNOTATION, ParametersReference};
use std::cell::{Cell, RefCell};

/// Records the calls, and keeps the Services as an API server would.
#[derive(Default)]
struct Recorded {
    calls: RefCell<Vec<String>>,
    /// Name → the applied object.
    services: RefCell<BTreeMap<String, serde_json::Value>>,
    configmaps: RefCell<BTreeMap<ObjectKey, BTreeMap<String, String>>>,
    failing: Cell<bool>,
}

impl Sink for &Recorded {
    type Error = &'static str;
    async fn apply(&self, name: &str, service: &serde_json::Value) -> Result<(), &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        self.calls.borrow_mut().push(format!("apply {name}"));
        self.services
            .borrow_mut()
            .insert(name.to_string(), service.clone());
        Ok(())
    }
    async fn delete(&self, name: &str) -> Result<(), &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        self.calls.borrow_mut().push(format!("delete {name}"));
        self.services.borrow_mut().remove(name);
        Ok(())
    }
    async fn ours(&self) -> Result<Vec<(String, ObjectKey)>, &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        self.calls.borrow_mut().push("list".to_string());
        Ok(self
            .services
            .borrow()
            .iter()
            .filter_map(|(name, s)| {
                let g = s["metadata"]["annotations"][GATEWAY_ANNOTATION].as_str()?;
                let (ns, n) = g.split_once('/')?;
                Some((name.clone(), ObjectKey::new(ns, n)))
            })
            .collect())
    }
    async fn parameters(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<BTreeMap<String, String>>, &'static str> {
        if self.failing.get() {
            return Err("connection refused");
        }
        self.calls.borrow_mut().push(format!("get {key}"));
        Ok(self.configmaps.borrow().get(key).cloned())
    }
}

fn config() -> ServiceConfig {
    ServiceConfig {
        namespace: "weir".into(),
        selector: BTreeMap::from([("app".into(), "weir".into())]),
        default_type: ServiceType::LoadBalancer,
    }
}

fn plan(ports: &[(u16, u16)], parameters: Option<ParametersReference>) -> ServicePlan {
    ServicePlan {
        ports: ports.iter().copied().collect(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        parameters,
    }
}

fn take(recorded: &Recorded) -> Vec<String> {
    std::mem::take(&mut *recorded.calls.borrow_mut())
}

#[tokio::test]
async fn services_follow_the_plans_and_orphans_go() {
    let recorded = Recorded::default();
    let edge = ObjectKey::new("infra", "edge");
    let edge_name = service_name("infra", "edge");
    // An earlier leader's Service for a Gateway that is gone.
    let old_name = service_name("infra", "old");
    recorded.services.borrow_mut().insert(
        old_name.clone(),
        serde_json::json!({ "metadata": { "annotations": { GATEWAY_ANNOTATION: "infra/old" } } }),
    );
    let mut reconciler = Reconciler::new(&recorded, config());
    let t0 = Instant::now();
    let plans = BTreeMap::from([(edge.clone(), plan(&[(80, 20000)], None))]);
    let synced = reconciler.sync(&plans, t0).await;
    assert_eq!(synced.applied, 1);
    assert_eq!(
        take(&recorded),
        vec![
            format!("apply {edge_name}"),
            "list".to_string(),
            format!("delete {old_name}")
        ]
    );
    assert_eq!(
        recorded.services.borrow()[&edge_name]["spec"]["type"],
        "LoadBalancer"
    );

    // Unchanged: no call. A new port: applied again.
    reconciler.sync(&plans, t0 + Duration::from_secs(1)).await;
    assert!(take(&recorded).is_empty());
    let more = BTreeMap::from([(edge.clone(), plan(&[(80, 20000), (8080, 20001)], None))]);
    reconciler.sync(&more, t0 + Duration::from_secs(2)).await;
    assert_eq!(take(&recorded), vec![format!("apply {edge_name}")]);
    assert_eq!(
        recorded.services.borrow()[&edge_name]["spec"]["ports"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // The API server fails: tried again at the next tick.
    recorded.failing.set(true);
    let synced = reconciler
        .sync(&BTreeMap::new(), t0 + Duration::from_secs(3))
        .await;
    assert_eq!(synced.failed, 1);
    recorded.failing.set(false);
    // The Gateway goes: its Service with it.
    reconciler
        .sync(&BTreeMap::new(), t0 + Duration::from_secs(4))
        .await;
    assert_eq!(take(&recorded), vec![format!("delete {edge_name}")]);
    assert!(recorded.services.borrow().is_empty());

    // After RESYNC everything is applied again, and the list looked at.
    reconciler.sync(&plans, t0 + Duration::from_secs(5)).await;
    take(&recorded);
    reconciler
        .sync(&plans, t0 + RESYNC + Duration::from_secs(1))
        .await;
    assert_eq!(
        take(&recorded),
        vec![format!("apply {edge_name}"), "list".to_string()]
    );
}

#[tokio::test]
async fn the_class_parameters_say_the_type() {
    let recorded = Recorded::default();
    let params = ObjectKey::new("weir", "edge-params");
    recorded.configmaps.borrow_mut().insert(
        params.clone(),
        BTreeMap::from([(SERVICE_TYPE_KEY.to_string(), "ClusterIP".to_string())]),
    );
    let reference = ParametersReference {
        group: String::new(),
        kind: "ConfigMap".into(),
        name: "edge-params".into(),
        namespace: None,
    };
    let edge = ObjectKey::new("infra", "edge");
    let name = service_name("infra", "edge");
    let plans = BTreeMap::from([(edge.clone(), plan(&[(80, 20000)], Some(reference.clone())))]);
    let mut reconciler = Reconciler::new(&recorded, config());
    let t0 = Instant::now();
    reconciler.sync(&plans, t0).await;
    assert_eq!(
        recorded.services.borrow()[&name]["spec"]["type"],
        "ClusterIP"
    );
    assert!(take(&recorded).contains(&format!("get {params}")));

    // Read again only after PARAMETERS_TTL; while the API server fails, the last answer holds.
    reconciler.sync(&plans, t0 + Duration::from_secs(1)).await;
    assert!(take(&recorded).is_empty());
    recorded.configmaps.borrow_mut().insert(
        params.clone(),
        BTreeMap::from([(SERVICE_TYPE_KEY.to_string(), "NodePort".to_string())]),
    );
    reconciler
        .sync(&plans, t0 + PARAMETERS_TTL + Duration::from_secs(1))
        .await;
    assert_eq!(
        recorded.services.borrow()[&name]["spec"]["type"],
        "NodePort"
    );

    // A ConfigMap that is not there, or says nothing weir knows: the default type.
    recorded.configmaps.borrow_mut().clear();
    reconciler
        .sync(&plans, t0 + 2 * PARAMETERS_TTL + Duration::from_secs(2))
        .await;
    assert_eq!(
        recorded.services.borrow()[&name]["spec"]["type"],
        "LoadBalancer"
    );
    // Another kind of parameters is not read at all.
    let other = ParametersReference {
        group: "example.com".into(),
        kind: "Params".into(),
        ..reference
    };
    let plans = BTreeMap::from([(edge, plan(&[(80, 20000)], Some(other)))]);
    take(&recorded);
    reconciler
        .sync(&plans, t0 + 3 * PARAMETERS_TTL + Duration::from_secs(3))
        .await;
    assert!(!take(&recorded).iter().any(|c| c.starts_with("get ")));
}
