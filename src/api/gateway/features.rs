//! The Gateway API features weir implements, as it tells them in `GatewayClass`
//! `status.supportedFeatures`: the conformance suite runs the tests of exactly these, so a name
//! here is a promise. Names are those of the v1.6 suite's `features` package
//! (`sigs.k8s.io/gateway-api/pkg/features`).
//!
//! What is left out, and why: `HTTPRouteCORS`, `HTTPRouteBackendRequestHeaderModification` (filters on a
//! single backendRef), `HTTPRouteRetry*` (the route's `retry` is not read; pools retry on
//! their own terms), `GatewayStaticAddresses` and `GatewayAddressEmpty` (an unusable address
//! is not yet reported as the suite expects), `GatewayInfrastructure`, `ListenerSet`,
//! `BackendTLSPolicy*`, client certificates, `HTTPRouteDestinationPortMatching`,
//! `GatewayHTTPSListenerDetectMisdirectedRequests`.

/// Sorted by name, as the CRD asks (`supportedFeatures` MUST be in ascending order).
pub const SUPPORTED_FEATURES: &[&str] = &[
    // Core: the kinds weir serves.
    "GRPCRoute",
    "Gateway",
    // A request is seen by the routes of the most specific listener for its host only.
    "GatewayHTTPListenerIsolation",
    // A listener on 8080: a Gateway's sockets are its own address's, not weir's --listen.
    "GatewayPort8080",
    "HTTPRoute",
    // RequestRedirect `statusCode` beyond 301/302 (routing/gateway/filter.rs:
    // REDIRECT_STATUSES, every one tested).
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    // Backends spoken to in h2c (appProtocol kubernetes.io/h2c), WebSocket upgrades passed on.
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    // `timeouts.backendRequest`: each attempt, to the millisecond.
    "HTTPRouteBackendTimeout",
    // URLRewrite `hostname` (filter.rs: Rewrite).
    "HTTPRouteHostRewrite",
    // `matches[].method` (routing/gateway/matching.rs).
    "HTTPRouteMethodMatching",
    // Rules with a `name` (weir serves them as any rule).
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
    // RequestMirror (proxy/mirror.rs): one mirror, several per rule, percent and fraction.
    // The suite sees the copies in the mirror pods' logs (the pod runner's kubelet-logs).
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    // `timeouts.request`: the whole request, retries included (504).
    "HTTPRouteRequestTimeout",
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
