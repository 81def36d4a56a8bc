//! GRPCRoute as the HTTPRoute it amounts to: a gRPC call is an HTTP/2 POST to
//! `/{service}/{method}`, so a service/method match is a path match, and the rest (headers,
//! the header filters, backends) is the same. Compile serves a GRPCRoute through this, with
//! the kind kept for attachment and status.

use crate::api::gateway::{
    GRPCMethodMatch, GRPCRoute, GRPCRouteFilter, GRPCRouteMatch, GRPCRouteRule, HTTPBackendRef,
    HTTPPathMatch, HTTPRoute, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec,
    PathMatchType, ValueMatchType,
};

/// The HTTPRoute that serves what `route` asks for.
pub fn as_http_route(route: &GRPCRoute) -> HTTPRoute {
    let spec = HTTPRouteSpec {
        parent_refs: route.spec.parent_refs.clone(),
        use_default_gateways: route.spec.use_default_gateways.clone(),
        hostnames: route.spec.hostnames.clone(),
        rules: route.spec.rules.iter().map(rule).collect(),
    };
    let mut http = HTTPRoute::new(route.metadata.name.as_deref().unwrap_or_default(), spec);
    http.metadata = route.metadata.clone();
    http
}

fn rule(r: &GRPCRouteRule) -> HTTPRouteRule {
    HTTPRouteRule {
        name: r.name.clone(),
        matches: r.matches.iter().map(route_match).collect(),
        filters: r.filters.iter().map(filter).collect(),
        backend_refs: r
            .backend_refs
            .iter()
            .map(|b| HTTPBackendRef {
                backend: b.backend.clone(),
                filters: b.filters.iter().map(filter).collect(),
            })
            .collect(),
        timeouts: None,
        retry: None,
        session_persistence: r.session_persistence.clone(),
    }
}

fn route_match(m: &GRPCRouteMatch) -> HTTPRouteMatch {
    HTTPRouteMatch {
        path: m.method.as_ref().map(path),
        headers: m.headers.clone(),
        query_params: Vec::new(),
        method: None,
    }
}

/// The path match of a service/method match. Exact: both → the exact path; a service alone
/// → its prefix; a method alone → any service with that method. RegularExpression: each side
/// a pattern for its path segment, an absent side any segment.
fn path(m: &GRPCMethodMatch) -> HTTPPathMatch {
    let regex = m.r#type == Some(ValueMatchType::RegularExpression);
    let (kind, value) = match (regex, m.service.as_deref(), m.method.as_deref()) {
        (false, Some(s), Some(me)) => (PathMatchType::Exact, format!("/{s}/{me}")),
        (false, Some(s), None) => (PathMatchType::PathPrefix, format!("/{s}")),
        (false, None, Some(me)) => (
            PathMatchType::RegularExpression,
            format!("/[^/]+/{}", regex::escape(me)),
        ),
        (true, s, me) => (
            PathMatchType::RegularExpression,
            format!(
                "/(?:{})/(?:{})",
                s.unwrap_or("[^/]+"),
                me.unwrap_or("[^/]+")
            ),
        ),
        (false, None, None) => (PathMatchType::PathPrefix, "/".to_string()),
    };
    HTTPPathMatch {
        r#type: Some(kind),
        value: Some(value),
    }
}

fn filter(f: &GRPCRouteFilter) -> HTTPRouteFilter {
    HTTPRouteFilter {
        r#type: f.r#type,
        request_header_modifier: f.request_header_modifier.clone(),
        response_header_modifier: f.response_header_modifier.clone(),
        request_mirror: f.request_mirror.clone(),
        extension_ref: f.extension_ref.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::gateway::RequestMatch;
    use serde_json::json;

    fn matches(method: serde_json::Value, path: &str) -> bool {
        let m: GRPCRouteMatch =
            serde_json::from_value(json!({ "method": method })).expect("a match");
        let compiled = RequestMatch::compile(&route_match(&m)).expect("compiles");
        compiled.matches(&http::Method::POST, path, None, &http::HeaderMap::new())
    }

    #[test]
    fn service_and_method_become_paths() {
        let svc = "grpc.health.v1.Health";
        assert!(matches(
            json!({ "service": svc, "method": "Check" }),
            "/grpc.health.v1.Health/Check"
        ));
        assert!(!matches(
            json!({ "service": svc, "method": "Check" }),
            "/grpc.health.v1.Health/Watch"
        ));
        assert!(matches(
            json!({ "service": svc }),
            "/grpc.health.v1.Health/Watch"
        ));
        assert!(!matches(
            json!({ "service": svc }),
            "/grpc.health.v1.HealthX/Watch"
        ));
        assert!(matches(json!({ "method": "Check" }), "/any.Service/Check"));
        assert!(!matches(
            json!({ "method": "Check" }),
            "/any.Service/CheckAll"
        ));
        let re = json!({ "type": "RegularExpression", "service": "grpc\\.health\\..*", "method": "Ch.*" });
        assert!(matches(re.clone(), "/grpc.health.v1.Health/Check"));
        assert!(!matches(re, "/other.Health/Check"));
    }
}
