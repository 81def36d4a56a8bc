//! `Proxy::forward` remembers the endpoints a request has tried in an array on the stack, one
//! slot per attempt, sized from `proxy::MAX_RETRIES`. The cap a pool may ask for lives in the
//! API's bounds (private to `api`), so this holds the two together: if validation ever lets a
//! pool ask for more retries than the array has slots for, later attempts would no longer be
//! kept off endpoints already tried.

use weir::api::{LoadBalancerPoolSpec, validate_spec};
use weir::proxy::MAX_RETRIES;

fn spec_with_retries(attempts: u32) -> LoadBalancerPoolSpec {
    serde_json::from_value(serde_json::json!({
        "routes": [{ "host": "shop.test" }],
        "backends": [{ "service": "web", "port": "http" }],
        "retries": { "attempts": attempts },
    }))
    .expect("a pool spec")
}

fn attempts_errors(attempts: u32) -> Vec<String> {
    validate_spec(&spec_with_retries(attempts))
        .into_iter()
        .filter(|e| e.field == "spec.retries.attempts")
        .map(|e| e.message)
        .collect()
}

#[test]
fn the_tried_array_holds_as_many_retries_as_validation_allows() {
    assert_eq!(
        attempts_errors(MAX_RETRIES),
        Vec::<String>::new(),
        "validation refuses {MAX_RETRIES} retries: lower proxy::MAX_RETRIES to the API's cap"
    );
    assert_ne!(
        attempts_errors(MAX_RETRIES + 1),
        Vec::<String>::new(),
        "validation allows {} retries: raise proxy::MAX_RETRIES to the API's cap",
        MAX_RETRIES + 1
    );
}
