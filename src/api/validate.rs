//! The checks weir runs on a pool spec itself. They repeat the schema bounds (a file source has
//! no API server to enforce them) and add the rules that span fields.

use super::{LoadBalancerPoolSpec, MAX_BACKENDS, MAX_ROUTES, MAX_WEIGHT};
use std::collections::HashSet;

/// One thing wrong with a spec: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

/// Adds an error for each `(field, value, min, max)` whose value is out of range.
fn check_ranges(errors: &mut Vec<ValidationError>, ranges: &[(&str, u32, u32, u32)]) {
    for &(field, value, min, max) in ranges {
        if !(min..=max).contains(&value) {
            errors.push(err(field, format!("{value} is outside {min} to {max}")));
        }
    }
}

/// Every problem of the spec, in field order. Empty means valid.
pub fn validate_spec(spec: &LoadBalancerPoolSpec) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    if spec.routes.len() > MAX_ROUTES {
        errors.push(err("spec.routes", format!("at most {MAX_ROUTES} routes")));
    }
    let mut seen = HashSet::new();
    for (i, route) in spec.routes.iter().enumerate() {
        if let Some(problem) = host_problem(&route.host) {
            errors.push(err(format!("spec.routes[{i}].host"), problem));
        }
        if !route.path_prefix.starts_with('/') {
            errors.push(err(
                format!("spec.routes[{i}].pathPrefix"),
                "must start with /",
            ));
        }
        if !seen.insert((&route.host, &route.path_prefix)) {
            errors.push(err(
                format!("spec.routes[{i}]"),
                format!(
                    "repeats host {:?} and pathPrefix {:?}",
                    route.host, route.path_prefix
                ),
            ));
        }
    }
    if spec.backends.is_empty() {
        errors.push(err("spec.backends", "must list at least one backend"));
    }
    if spec.backends.len() > MAX_BACKENDS {
        errors.push(err(
            "spec.backends",
            format!("at most {MAX_BACKENDS} backends"),
        ));
    }
    for (i, backend) in spec.backends.iter().enumerate() {
        if backend.service.is_empty() {
            errors.push(err(
                format!("spec.backends[{i}].service"),
                "must not be empty",
            ));
        }
        if backend.weight > MAX_WEIGHT {
            errors.push(err(
                format!("spec.backends[{i}].weight"),
                format!("{} is above the maximum {MAX_WEIGHT}", backend.weight),
            ));
        }
        match &backend.port {
            super::ServicePort::Number(0) => errors.push(err(
                format!("spec.backends[{i}].port"),
                "must be 1 to 65535",
            )),
            super::ServicePort::Name(name) if name.is_empty() => {
                errors.push(err(format!("spec.backends[{i}].port"), "must not be empty"))
            }
            _ => {}
        }
    }
    if !spec.backends.is_empty() && spec.backends.iter().all(|b| b.weight == 0) {
        errors.push(err(
            "spec.backends",
            "at least one backend needs a weight above 0",
        ));
    }
    match (&spec.algorithm, &spec.hash_on) {
        (super::Algorithm::ConsistentHash, None) => {
            errors.push(err("spec.hashOn", "algorithm ConsistentHash needs hashOn"))
        }
        (super::Algorithm::ConsistentHash, Some(on)) => {
            let set = [
                on.header.is_some(),
                on.cookie.is_some(),
                on.source_ip == Some(true),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                errors.push(err(
                    "spec.hashOn",
                    "needs exactly one of header, cookie or sourceIP: true",
                ));
            }
            if on.header.as_deref() == Some("") || on.cookie.as_deref() == Some("") {
                errors.push(err(
                    "spec.hashOn",
                    "header and cookie names must not be empty",
                ));
            }
        }
        (_, Some(_)) => errors.push(err(
            "spec.hashOn",
            "hashOn is only for algorithm ConsistentHash",
        )),
        _ => {}
    }
    if let Some(p) = &spec.peak_ewma {
        check_ranges(
            &mut errors,
            &[("spec.peakEwma.decaySeconds", p.decay_seconds, 1, 600)],
        );
    }
    if let Some(w) = &spec.slow_start {
        check_ranges(
            &mut errors,
            &[("spec.slowStart.windowSeconds", w.window_seconds, 1, 3600)],
        );
    }
    if let Some(h) = &spec.health_check {
        match (&h.http, &h.tcp) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push(err("spec.healthCheck", "needs exactly one of http or tcp"))
            }
            _ => {}
        }
        if let Some(http) = &h.http {
            if !http.path.starts_with('/') {
                errors.push(err("spec.healthCheck.http.path", "must start with /"));
            }
            if http.expected_statuses.is_empty() {
                errors.push(err(
                    "spec.healthCheck.http.expectedStatuses",
                    "must not be empty",
                ));
            }
            for (i, s) in http.expected_statuses.iter().enumerate() {
                if super::parse_status_range(s).is_none() {
                    errors.push(err(
                        format!("spec.healthCheck.http.expectedStatuses[{i}]"),
                        format!("{s:?} is not a status like \"200\" or a range like \"200-399\""),
                    ));
                }
            }
        }
        check_ranges(
            &mut errors,
            &[
                (
                    "spec.healthCheck.intervalSeconds",
                    h.interval_seconds,
                    1,
                    300,
                ),
                ("spec.healthCheck.timeoutSeconds", h.timeout_seconds, 1, 60),
                (
                    "spec.healthCheck.healthyThreshold",
                    h.healthy_threshold,
                    1,
                    20,
                ),
                (
                    "spec.healthCheck.unhealthyThreshold",
                    h.unhealthy_threshold,
                    1,
                    20,
                ),
            ],
        );
    }
    if let Some(o) = &spec.outlier_detection {
        check_ranges(
            &mut errors,
            &[
                (
                    "spec.outlierDetection.consecutiveFailures",
                    o.consecutive_failures,
                    1,
                    1000,
                ),
                (
                    "spec.outlierDetection.ejectionSeconds",
                    o.ejection_seconds,
                    1,
                    3600,
                ),
                (
                    "spec.outlierDetection.maxEjectedPercent",
                    o.max_ejected_percent,
                    0,
                    100,
                ),
            ],
        );
    }
    if let Some(a) = &spec.session_affinity {
        let c = &a.cookie;
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
        };
        if !token(&c.name) {
            errors.push(err(
                "spec.sessionAffinity.cookie.name",
                format!(
                    "{:?} is not a cookie name (letters, digits and !#$%&'*+.^_`|~-)",
                    c.name
                ),
            ));
        }
        if !c.path.starts_with('/')
            || c.path
                .bytes()
                .any(|b| b == b';' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            errors.push(err(
                "spec.sessionAffinity.cookie.path",
                "must start with / and hold no ; or spaces",
            ));
        }
        if let Some(d) = &c.domain
            && (d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            errors.push(err(
                "spec.sessionAffinity.cookie.domain",
                format!("{d:?} is not a domain"),
            ));
        }
        if c.same_site == super::SameSite::None && c.secure == Some(false) {
            errors.push(err(
                "spec.sessionAffinity.cookie.secure",
                "sameSite None needs secure",
            ));
        }
    }
    if let Some(tls) = &spec.tls {
        if tls.secret_name.is_empty() {
            errors.push(err("spec.tls.secretName", "must not be empty"));
        }
        if let Some(h) = tls.hsts
            && h.max_age_seconds > 63_072_000
        {
            errors.push(err(
                "spec.tls.hsts.maxAgeSeconds",
                "at most two years (63072000)",
            ));
        }
    }
    if spec.retries.attempts > 5 {
        errors.push(err(
            "spec.retries.attempts",
            format!("{} is above the maximum 5", spec.retries.attempts),
        ));
    }
    for (i, s) in spec.retries.on_status.iter().enumerate() {
        if ![502, 503, 504].contains(s) {
            errors.push(err(
                format!("spec.retries.onStatus[{i}]"),
                format!("{s} is not one of 502, 503, 504"),
            ));
        }
    }
    let t = &spec.timeouts;
    check_ranges(
        &mut errors,
        &[
            ("spec.timeouts.connectMillis", t.connect_millis, 1, 60_000),
            ("spec.timeouts.requestSeconds", t.request_seconds, 1, 3600),
            ("spec.timeouts.idleSeconds", t.idle_seconds, 1, 86_400),
        ],
    );
    errors
}

/// Why a route host is not an exact DNS name, a one-label wildcard, or empty.
fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        return None;
    }
    if host.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Some(format!(
                "{host:?} is not a lowercase DNS name or a wildcard like *.example.com"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Backend, Route, ServicePort, Timeouts};

    fn spec() -> LoadBalancerPoolSpec {
        LoadBalancerPoolSpec {
            class_name: None,
            routes: vec![Route {
                host: "shop.example.com".into(),
                path_prefix: "/".into(),
            }],
            backends: vec![Backend {
                service: "web".into(),
                port: ServicePort::Name("http".into()),
                weight: 1,
            }],
            algorithm: Default::default(),
            hash_on: None,
            peak_ewma: None,
            slow_start: None,
            health_check: None,
            outlier_detection: None,
            retries: Default::default(),
            session_affinity: None,
            tls: None,
            timeouts: Timeouts::default(),
        }
    }

    #[test]
    fn a_good_spec_passes() {
        assert!(validate_spec(&spec()).is_empty());
    }

    #[test]
    fn empty_backends_are_named() {
        let mut s = spec();
        s.backends.clear();
        let errors = validate_spec(&s);
        assert_eq!(errors[0].field, "spec.backends");
    }

    #[test]
    fn bad_hosts_and_paths_are_named() {
        let mut s = spec();
        s.routes[0].host = "Shop..example".into();
        s.routes.push(Route {
            host: "*.example.com".into(),
            path_prefix: "api".into(),
        });
        let fields: Vec<_> = validate_spec(&s).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["spec.routes[0].host", "spec.routes[1].pathPrefix"]);
    }

    #[test]
    fn weights_and_timeouts_are_bounded() {
        let mut s = spec();
        s.backends[0].weight = 1001;
        s.timeouts.connect_millis = 0;
        let fields: Vec<_> = validate_spec(&s).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["spec.backends[0].weight", "spec.timeouts.connectMillis"]
        );
        s.backends[0].weight = 0;
        s.timeouts.connect_millis = 5;
        let fields: Vec<_> = validate_spec(&s).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["spec.backends"]);
    }

    #[test]
    fn hash_on_goes_with_consistent_hash_only() {
        use crate::api::{Algorithm, HashOn};
        let mut s = spec();
        s.algorithm = Algorithm::ConsistentHash;
        assert_eq!(
            validate_spec(&s)[0].message,
            "algorithm ConsistentHash needs hashOn"
        );
        s.hash_on = Some(HashOn {
            header: Some("x-user".into()),
            cookie: Some("sid".into()),
            source_ip: None,
        });
        assert!(validate_spec(&s)[0].message.contains("exactly one"));
        s.hash_on = Some(HashOn {
            source_ip: Some(true),
            ..Default::default()
        });
        assert!(validate_spec(&s).is_empty());
        s.algorithm = Algorithm::Random;
        assert_eq!(validate_spec(&s)[0].field, "spec.hashOn");
    }

    #[test]
    fn repeated_routes_are_refused() {
        let mut s = spec();
        s.routes.push(s.routes[0].clone());
        assert_eq!(validate_spec(&s)[0].field, "spec.routes[1]");
    }
}
