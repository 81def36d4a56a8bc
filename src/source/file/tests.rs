use super::*;
use crate::store::ObjectKey;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

/// A `watch` on `path` every 10 ms, with what it publishes and what it reports.
struct Watched {
    stores: watch::Receiver<Arc<Store>>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watched {
    fn start(path: &Path) -> Watched {
        let (tx, stores) = watch::channel(Arc::new(Store::default()));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = errors.clone();
        let task = tokio::spawn(super::watch(
            path.to_path_buf(),
            Duration::from_millis(10),
            tx,
            None,
            move |e| seen.lock().expect("not poisoned").push(e.to_string()),
        ));
        Watched {
            stores,
            errors,
            task,
        }
    }

    /// The next store published, within two seconds.
    async fn next_store(&mut self) -> Option<Arc<Store>> {
        tokio::time::timeout(Duration::from_secs(2), self.stores.changed())
            .await
            .ok()?
            .ok()?;
        Some(self.stores.borrow_and_update().clone())
    }

    /// Waits (two seconds at most) for the `n`th report; returns it.
    async fn report(&self, n: usize) -> Option<String> {
        for _ in 0..200 {
            if let Some(e) = self.errors.lock().expect("not poisoned").get(n - 1) {
                return Some(e.clone());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

#[tokio::test]
async fn a_deleted_file_that_comes_back_empty_is_published() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pools.yaml");
    std::fs::write(&path, GOOD).expect("write");
    let mut w = Watched::start(&path);
    let first = w.next_store().await.expect("the file is published");
    assert_eq!(first.pools.len(), 1);

    std::fs::remove_file(&path).expect("remove");
    let report = w.report(1).await.expect("a missing file is reported");
    assert!(report.contains("missing"), "{report}");

    // Empty is a state someone wrote: no pools. It must replace the last good store.
    std::fs::write(&path, "").expect("write");
    let back = w.next_store().await.expect("the empty file is published");
    assert!(back.is_empty());
    w.task.abort();
}

#[tokio::test]
async fn an_empty_file_that_goes_missing_is_reported_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pools.yaml");
    std::fs::write(&path, "").expect("write");
    let mut w = Watched::start(&path);
    assert!(w.next_store().await.expect("published").is_empty());

    std::fs::remove_file(&path).expect("remove");
    let report = w
        .report(1)
        .await
        .expect("an empty file going missing is reported");
    assert!(report.contains("missing"), "{report}");
    // Once, not every tick.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(w.errors.lock().expect("not poisoned").len(), 1);
    w.task.abort();
}

/// What `kubectl apply` and the API server add to an object, none of which compile reads.
const APPLIED_META: &str = r#"
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"a whole copy": "of the object"}'
    team: web
  managedFields:
    - { manager: kubectl, operation: Apply, apiVersion: v1, fieldsType: FieldsV1, fieldsV1: {} }"#;

#[test]
fn a_stored_secret_keeps_only_its_certificate_key_and_staple() {
    let text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\n  namespace: shop{APPLIED_META}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: Y3J0\n  tls.key: a2V5\n  tls.ocsp-staple: MAA=\n  ca.crt: Y2E=\n  password: aHVudGVyMg==\n"
    );
    let store = parse("t.yaml", &text).expect("parses");
    let secret = &store.secrets[&ObjectKey::new("shop", "tls")];
    assert_eq!(
        **secret,
        crate::store::TlsSecret {
            crt: Some(b"crt".as_slice().into()),
            key: Some(b"key".as_slice().into()),
            ocsp_staple: Some([0x30, 0x00].as_slice().into()),
        }
    );
}

#[test]
fn a_stored_pool_drops_managed_fields_and_the_last_applied_copy() {
    let text = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata:\n  name: web\n  namespace: shop{APPLIED_META}\nspec:\n  backends: [{{ service: web, port: http }}]\n"
    );
    let store = parse("t.yaml", &text).expect("parses");
    let pool = &store.pools[&ObjectKey::new("shop", "web")];
    assert_eq!(pool.metadata.managed_fields, None);
    let annotations = pool.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
}
