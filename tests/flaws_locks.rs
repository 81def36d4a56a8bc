//! A panic under the health checker's lock must not stop it following the routing table.

use std::sync::Arc;
use weir::health::Checker;
use weir::routing::{RoutingTable, compile};

/// One pool with TCP health checks over one endpoint.
fn checked_table() -> RoutingTable {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: { name: web, namespace: test }
spec:
  ports: [{ name: http, port: 80, targetPort: 8000 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: test
  labels: { kubernetes.io/service-name: web }
addressType: IPv4
ports: [{ name: http, port: 8000 }]
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: { ready: true }
    targetRef: { kind: Pod, namespace: test, name: web-1 }
---
apiVersion: weir.dev/v1alpha1
kind: LoadBalancerPool
metadata: { name: web, namespace: test }
spec:
  routes: [{ host: "", pathPrefix: / }]
  backends: [{ service: web, port: http }]
  healthCheck:
    tcp: {}
    intervalSeconds: 300
"#;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("pools.yaml");
    std::fs::write(&path, yaml).expect("write the test file");
    let store = weir::source::file::load(&path).expect("the test file parses");
    compile(&store, None).table
}

#[test]
fn checks_follow_the_table_after_a_panic_under_the_lock() {
    let table = checked_table();
    let checker = Arc::new(Checker::default());
    // Outside a runtime, starting a check panics while `sync` holds its lock: the lock is
    // poisoned by a real panic under it, not by a test-only hook.
    let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checker.sync(&table)));
    assert!(poisoned.is_err(), "sync outside a runtime should panic");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        checker.sync(&table);
        assert_eq!(checker.running(), 1, "the check did not start");
        checker.sync(&RoutingTable::default());
        assert_eq!(checker.running(), 0, "the check did not stop");
    });
}
