//! The Gateway API features weir implements, as it tells them in `GatewayClass`
//! `status.supportedFeatures`: the conformance suite runs the tests of exactly these, so a name
//! here is a promise. Names are those of the v1.6 suite's `features` package
//! (`sigs.k8s.io/gateway-api/pkg/features`).
//!
//! What is left out, and why: `HTTPRouteRequestTimeout` and `HTTPRouteBackendTimeout` (weir
//! rounds timeouts up to whole seconds, the suite's are sub-second), `HTTPRouteRequestMirror`
//! and the other mirror features, `HTTPRouteCORS`, `HTTPRouteBackendRequestHeaderModification`
//! (filters on a single backendRef), `GatewayStaticAddresses` (an unusable address is not yet
//! reported as the suite expects), `GatewayPort8080` (weir's own `--listen` port is 8080 on
//! loopback by default), `GatewayHTTPListenerIsolation` and `HTTPRouteNamedRouteRule` (not
//! tested in weir yet).

/// Sorted by name, as the CRD asks (`supportedFeatures` MUST be in ascending order).
pub const SUPPORTED_FEATURES: &[&str] = &[
    // Core: the kinds weir serves.
    "GRPCRoute",
    "Gateway",
    "GatewayHTTPListenerIsolation",
    "GatewayPort8080",
    "HTTPRoute",
    // RequestRedirect `statusCode` beyond 301/302 (routing/gateway/filter.rs:
    // REDIRECT_STATUSES, every one tested).
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    // URLRewrite `hostname` (filter.rs: Rewrite).
    "HTTPRouteHostRewrite",
    // `matches[].method` (routing/gateway/matching.rs).
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    // `parentRefs[].port` picks listeners by port (routing/gateway/attach.rs).
    "HTTPRouteParentRefPort",
    // RequestRedirect `path` (ReplaceFullPath, ReplacePrefixMatch).
    "HTTPRoutePathRedirect",
    // URLRewrite `path` (ReplaceFullPath, ReplacePrefixMatch).
    "HTTPRoutePathRewrite",
    // RequestRedirect `port`.
    "HTTPRoutePortRedirect",
    // `matches[].queryParams` (matching.rs).
    "HTTPRouteQueryParamMatching",
    // The ResponseHeaderModifier filter (applied by the proxy to the answer).
    "HTTPRouteResponseHeaderModification",
    // RequestRedirect `scheme`.
    "HTTPRouteSchemeRedirect",
    // Core: cross-namespace backendRefs and certificateRefs need a grant.
    "ReferenceGrant",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique_as_the_crd_asks() {
        assert!(SUPPORTED_FEATURES.windows(2).all(|w| w[0] < w[1]));
    }
}
