//! A panic under the health checker's lock must not stop it following the routing table.

use std::sync::Arc;
use weir::health::Checker;
use weir::routing::{RoutingTable, compile};

/// One pool with TCP health checks over one endpoint.
fn checked_table() -> RoutingTable {
    use weir::testkit::{EndpointState, endpoint, pool, route_spec, service, slice, to_document};
    let mut spec = route_spec("", "/", "web");
    spec["healthCheck"] = serde_json::json!({ "tcp": {}, "intervalSeconds": 300 });
    let pod = endpoint("127.0.0.1", EndpointState::Ready).pod("web-1");
    let yaml = [
        to_document(&service("test", "web", &[("http", 80)])),
        to_document(&slice("test", "web", "web-1", &[("http", 8000)], &[pod])),
        to_document(&pool("test", "web", spec)),
    ]
    .join("---\n");
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
