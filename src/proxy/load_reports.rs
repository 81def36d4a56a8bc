//! Load reports on the response path: read from a pod's response headers and trailers into
//! its endpoint, and removed before the client sees them unless the pool keeps them.

use crate::endpoint::Endpoint;
use crate::load_report;
use http::HeaderMap;
use std::time::Instant;

/// Takes the report out of one header block (headers or trailers), if the pod sent one.
pub(super) fn take(headers: &mut HeaderMap, endpoint: &Endpoint, keep: bool) {
    let Some(report) = load_report::from_headers(headers) else {
        return;
    };
    endpoint.observe_load_report(report, Instant::now());
    if !keep {
        load_report::strip(headers);
    }
}
