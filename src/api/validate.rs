//! The checks weir runs on a pool spec itself. They repeat the schema bounds (a file source has
//! no API server to enforce them) and add the rules that span fields. The bounds are the
//! constants the schemars attributes read; `every_schema_bound_is_checked` compares them with
//! the generated CRD.

use super::{
    BLACKOUT_SECONDS, Bounds, CLASS_NAME_LEN, CONNECT_MILLIS, DECAY_SECONDS, ERROR_PENALTY_PERCENT,
    EXPIRY_SECONDS, HASH_KEY_LEN, IDLE_SECONDS, LoadBalancerPoolSpec, MAX_BACKENDS, MAX_ROUTES,
    MAX_WEIGHT, PATH_PREFIX_LEN, REQUEST_SECONDS, ROUTE_HOST_LEN, SERVICE_LEN,
    UPDATE_PERIOD_MILLIS, WINDOW_SECONDS,
};
use crate::api::affinity::{COOKIE_DOMAIN_LEN, COOKIE_NAME_LEN, COOKIE_PATH_LEN, TTL_SECONDS};
use crate::api::health::{
    ATTEMPTS, CHECK_HOST_LEN, CHECK_PATH_LEN, CONSECUTIVE_FAILURES, EJECTION_SECONDS,
    EXPECTED_STATUSES, INTERVAL_SECONDS, MAX_EJECTED_PERCENT, ON_STATUS, THRESHOLD,
    TIMEOUT_SECONDS,
};
use crate::api::tls::{HSTS_MAX_AGE, SECRET_NAME_LEN};
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

/// Adds an error for each `(field, value, bounds)` whose value is out of range.
fn check_ranges(errors: &mut Vec<ValidationError>, ranges: &[(&str, u32, Bounds)]) {
    for &(field, value, Bounds { min, max }) in ranges {
        if !(min..=max).contains(&value) {
            errors.push(err(field, format!("{value} is outside {min} to {max}")));
        }
    }
}

/// Why a string's length is outside `bounds`. Counted in characters, as the schema's
/// `minLength` and `maxLength` are.
fn length_problem(value: &str, bounds: Bounds) -> Option<String> {
    let len = value.chars().count();
    if len < bounds.min as usize {
        Some(if bounds.min == 1 {
            "must not be empty".into()
        } else {
            format!("shorter than {} characters", bounds.min)
        })
    } else if len > bounds.max as usize {
        Some(format!("longer than {} characters", bounds.max))
    } else {
        None
    }
}

/// Adds an error if the string's length is outside `bounds`; says whether it was inside.
fn check_length(
    errors: &mut Vec<ValidationError>,
    field: impl Into<String>,
    value: &str,
    bounds: Bounds,
) -> bool {
    let problem = length_problem(value, bounds);
    let ok = problem.is_none();
    if let Some(problem) = problem {
        errors.push(err(field, problem));
    }
    ok
}

/// Adds an error if a list of `what` has fewer or more items than `bounds` allow.
fn check_count(
    errors: &mut Vec<ValidationError>,
    field: &str,
    count: usize,
    bounds: Bounds,
    what: &str,
) {
    if count < bounds.min as usize {
        errors.push(err(
            field,
            if bounds.min == 1 {
                "must not be empty".into()
            } else {
                format!("at least {} {what}", bounds.min)
            },
        ));
    } else if count > bounds.max as usize {
        errors.push(err(field, format!("at most {} {what}", bounds.max)));
    }
}

/// Every problem of the spec, in field order. Empty means valid.
pub fn validate_spec(spec: &LoadBalancerPoolSpec) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    if let Some(class) = &spec.class_name {
        check_length(&mut errors, "spec.className", class, CLASS_NAME_LEN);
    }
    check_routes(&mut errors, spec);
    check_backends(&mut errors, spec);
    check_balancing(&mut errors, spec);
    check_health(&mut errors, spec);
    check_affinity(&mut errors, spec);
    check_tls(&mut errors, spec);
    check_retries_and_timeouts(&mut errors, spec);
    errors
}

/// `routes`: hosts, path prefixes, no route twice.
fn check_routes(errors: &mut Vec<ValidationError>, spec: &LoadBalancerPoolSpec) {
    if spec.routes.len() > MAX_ROUTES {
        errors.push(err("spec.routes", format!("at most {MAX_ROUTES} routes")));
    }
    let mut seen = HashSet::new();
    for (i, route) in spec.routes.iter().enumerate() {
        if let Some(problem) = host_problem(&route.host) {
            errors.push(err(format!("spec.routes[{i}].host"), problem));
        }
        let field = format!("spec.routes[{i}].pathPrefix");
        if check_length(errors, &field, &route.path_prefix, PATH_PREFIX_LEN)
            && !route.path_prefix.starts_with('/')
        {
            errors.push(err(field, "must start with /"));
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
}

/// `backends`: at least one, with a Service, a port and a weight, one of them above 0.
fn check_backends(errors: &mut Vec<ValidationError>, spec: &LoadBalancerPoolSpec) {
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
        check_length(
            errors,
            format!("spec.backends[{i}].service"),
            &backend.service,
            SERVICE_LEN,
        );
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
}

/// `algorithm` with `hashOn`, `peakEwma` and `slowStart`.
fn check_balancing(errors: &mut Vec<ValidationError>, spec: &LoadBalancerPoolSpec) {
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
            if let Some(header) = &on.header {
                check_length(errors, "spec.hashOn.header", header, HASH_KEY_LEN);
            }
            if let Some(cookie) = &on.cookie {
                check_length(errors, "spec.hashOn.cookie", cookie, HASH_KEY_LEN);
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
            errors,
            &[("spec.peakEwma.decaySeconds", p.decay_seconds, DECAY_SECONDS)],
        );
    }
    match (&spec.algorithm, &spec.weighted_by_load) {
        (super::Algorithm::WeightedByLoad, Some(w)) => check_ranges(
            errors,
            &[
                (
                    "spec.weightedByLoad.blackoutSeconds",
                    w.blackout_seconds,
                    BLACKOUT_SECONDS,
                ),
                (
                    "spec.weightedByLoad.expirySeconds",
                    w.expiry_seconds,
                    EXPIRY_SECONDS,
                ),
                (
                    "spec.weightedByLoad.updatePeriodMillis",
                    w.update_period_millis,
                    UPDATE_PERIOD_MILLIS,
                ),
                (
                    "spec.weightedByLoad.errorPenaltyPercent",
                    w.error_penalty_percent,
                    ERROR_PENALTY_PERCENT,
                ),
            ],
        ),
        (_, Some(_)) => errors.push(err(
            "spec.weightedByLoad",
            "weightedByLoad is only for algorithm WeightedByLoad",
        )),
        _ => {}
    }
    if let Some(w) = &spec.slow_start {
        check_ranges(
            errors,
            &[(
                "spec.slowStart.windowSeconds",
                w.window_seconds,
                WINDOW_SECONDS,
            )],
        );
    }
}

/// `healthCheck` and `outlierDetection`.
fn check_health(errors: &mut Vec<ValidationError>, spec: &LoadBalancerPoolSpec) {
    if let Some(h) = &spec.health_check {
        match (&h.http, &h.tcp) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push(err("spec.healthCheck", "needs exactly one of http or tcp"))
            }
            _ => {}
        }
        if let Some(http) = &h.http {
            let field = "spec.healthCheck.http.path";
            if check_length(errors, field, &http.path, CHECK_PATH_LEN)
                && !http.path.starts_with('/')
            {
                errors.push(err(field, "must start with /"));
            }
            if let Some(host) = &http.host {
                check_length(errors, "spec.healthCheck.http.host", host, CHECK_HOST_LEN);
            }
            check_count(
                errors,
                "spec.healthCheck.http.expectedStatuses",
                http.expected_statuses.len(),
                EXPECTED_STATUSES,
                "statuses",
            );
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
            errors,
            &[
                (
                    "spec.healthCheck.intervalSeconds",
                    h.interval_seconds,
                    INTERVAL_SECONDS,
                ),
                (
                    "spec.healthCheck.timeoutSeconds",
                    h.timeout_seconds,
                    TIMEOUT_SECONDS,
                ),
                (
                    "spec.healthCheck.healthyThreshold",
                    h.healthy_threshold,
                    THRESHOLD,
                ),
                (
                    "spec.healthCheck.unhealthyThreshold",
                    h.unhealthy_threshold,
                    THRESHOLD,
                ),
            ],
        );
    }
    if let Some(o) = &spec.outlier_detection {
        check_ranges(
            errors,
            &[
                (
                    "spec.outlierDetection.consecutiveFailures",
                    o.consecutive_failures,
                    CONSECUTIVE_FAILURES,
                ),
                (
                    "spec.outlierDetection.ejectionSeconds",
                    o.ejection_seconds,
                    EJECTION_SECONDS,
                ),
                (
                    "spec.outlierDetection.maxEjectedPercent",
                    o.max_ejected_percent,
                    MAX_EJECTED_PERCENT,
                ),
            ],
        );
    }
}

/// `sessionAffinity`: the cookie's name, lifetime, path, domain and SameSite.
fn check_affinity(errors: &mut Vec<ValidationError>, spec: &LoadBalancerPoolSpec) {
    if let Some(a) = &spec.session_affinity {
        let c = &a.cookie;
        if !super::affinity::is_cookie_name(&c.name) {
            errors.push(err(
                "spec.sessionAffinity.cookie.name",
                format!(
                    "{:?} is not a cookie name (1 to {} letters, digits and !#$%&'*+.^_`|~-)",
                    c.name, COOKIE_NAME_LEN.max
                ),
            ));
        }
        check_ranges(
            errors,
            &[(
                "spec.sessionAffinity.cookie.ttlSeconds",
                c.ttl_seconds,
                TTL_SECONDS,
            )],
        );
        let field = "spec.sessionAffinity.cookie.path";
        if check_length(errors, field, &c.path, COOKIE_PATH_LEN)
            && (!c.path.starts_with('/')
                || c.path
                    .bytes()
                    .any(|b| b == b';' || b.is_ascii_whitespace() || b.is_ascii_control()))
        {
            errors.push(err(field, "must start with / and hold no ; or spaces"));
        }
        let field = "spec.sessionAffinity.cookie.domain";
        if let Some(d) = &c.domain
            && check_length(errors, field, d, COOKIE_DOMAIN_LEN)
            && !is_cookie_domain(d)
        {
            errors.push(err(
                field,
                format!("{d:?} is not a lowercase domain like example.com or .example.com"),
            ));
        }
        if c.same_site == super::SameSite::None && c.secure == Some(false) {
            errors.push(err(
                "spec.sessionAffinity.cookie.secure",
                "sameSite None needs secure",
            ));
        }
    }
}

/// `tls`: the Secret's name and HSTS.
fn check_tls(errors: &mut Vec<ValidationError>, spec: &LoadBalancerPoolSpec) {
    if let Some(tls) = &spec.tls {
        check_length(
            errors,
            "spec.tls.secretName",
            &tls.secret_name,
            SECRET_NAME_LEN,
        );
        if let Some(h) = tls.hsts {
            check_ranges(
                errors,
                &[(
                    "spec.tls.hsts.maxAgeSeconds",
                    h.max_age_seconds,
                    HSTS_MAX_AGE,
                )],
            );
        }
    }
}

/// `retries` and `timeouts`.
fn check_retries_and_timeouts(errors: &mut Vec<ValidationError>, spec: &LoadBalancerPoolSpec) {
    check_ranges(
        errors,
        &[("spec.retries.attempts", spec.retries.attempts, ATTEMPTS)],
    );
    check_count(
        errors,
        "spec.retries.onStatus",
        spec.retries.on_status.len(),
        ON_STATUS,
        "statuses",
    );
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
        errors,
        &[
            (
                "spec.timeouts.connectMillis",
                t.connect_millis,
                CONNECT_MILLIS,
            ),
            (
                "spec.timeouts.requestSeconds",
                t.request_seconds,
                REQUEST_SECONDS,
            ),
            ("spec.timeouts.idleSeconds", t.idle_seconds, IDLE_SECONDS),
        ],
    );
}

/// Whether a cookie Domain matches the schema's `^\.?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`.
fn is_cookie_domain(domain: &str) -> bool {
    let name = domain.strip_prefix('.').unwrap_or(domain).as_bytes();
    let end = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: &u8| end(b) || *b == b'-' || *b == b'.';
    match name {
        [] => false,
        [only] => end(only),
        [first, middle @ .., last] => end(first) && end(last) && middle.iter().all(inner),
    }
}

/// Why a route host is not an exact DNS name, a one-label wildcard, or empty.
fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        return None;
    }
    if let Some(problem) = length_problem(host, ROUTE_HOST_LEN) {
        return Some(problem);
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
    use serde_json::Value;
    use std::collections::BTreeMap;

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
            weighted_by_load: None,
            load_reports: None,
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

    /// Every numeric bound of the generated CRD's spec: `(field, keyword) -> value`.
    fn crd_bounds() -> BTreeMap<(String, String), u64> {
        use kube::CustomResourceExt;
        fn walk(node: &Value, path: String, out: &mut BTreeMap<(String, String), u64>) {
            for key in [
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
                "minimum",
                "maximum",
            ] {
                if let Some(v) = node.get(key) {
                    let n = v.as_f64().expect("a number");
                    assert_eq!(n.fract(), 0.0, "{path}.{key} = {n}");
                    out.insert((path.clone(), key.to_string()), n as u64);
                }
            }
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    walk(v, format!("{path}.{k}"), out);
                }
            }
            if let Some(items) = node.get("items") {
                walk(items, format!("{path}[]"), out);
            }
        }
        let crd = serde_json::to_value(crate::api::LoadBalancerPool::crd()).expect("the CRD");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut out = BTreeMap::new();
        walk(spec, "spec".into(), &mut out);
        out
    }

    /// The bounds `validate_spec` checks, by the schema field they repeat.
    fn checked_bounds() -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        let mut add = |field: &str, key: &str, value: u64| {
            out.insert((field.to_string(), key.to_string()), value);
        };
        let lengths: &[(&str, Bounds)] = &[
            ("spec.className", CLASS_NAME_LEN),
            ("spec.routes[].pathPrefix", PATH_PREFIX_LEN),
            ("spec.backends[].service", SERVICE_LEN),
            ("spec.hashOn.header", HASH_KEY_LEN),
            ("spec.hashOn.cookie", HASH_KEY_LEN),
            ("spec.healthCheck.http.path", CHECK_PATH_LEN),
            ("spec.healthCheck.http.host", CHECK_HOST_LEN),
            ("spec.sessionAffinity.cookie.name", COOKIE_NAME_LEN),
            ("spec.sessionAffinity.cookie.path", COOKIE_PATH_LEN),
            ("spec.sessionAffinity.cookie.domain", COOKIE_DOMAIN_LEN),
            ("spec.tls.secretName", SECRET_NAME_LEN),
        ];
        for &(field, b) in lengths {
            add(field, "minLength", b.min.into());
            add(field, "maxLength", b.max.into());
        }
        let values: &[(&str, Bounds)] = &[
            ("spec.backends[].weight", Bounds::new(0, MAX_WEIGHT)),
            ("spec.peakEwma.decaySeconds", DECAY_SECONDS),
            ("spec.slowStart.windowSeconds", WINDOW_SECONDS),
            ("spec.weightedByLoad.blackoutSeconds", BLACKOUT_SECONDS),
            ("spec.weightedByLoad.expirySeconds", EXPIRY_SECONDS),
            (
                "spec.weightedByLoad.updatePeriodMillis",
                UPDATE_PERIOD_MILLIS,
            ),
            (
                "spec.weightedByLoad.errorPenaltyPercent",
                ERROR_PENALTY_PERCENT,
            ),
            ("spec.healthCheck.intervalSeconds", INTERVAL_SECONDS),
            ("spec.healthCheck.timeoutSeconds", TIMEOUT_SECONDS),
            ("spec.healthCheck.healthyThreshold", THRESHOLD),
            ("spec.healthCheck.unhealthyThreshold", THRESHOLD),
            (
                "spec.outlierDetection.consecutiveFailures",
                CONSECUTIVE_FAILURES,
            ),
            ("spec.outlierDetection.ejectionSeconds", EJECTION_SECONDS),
            (
                "spec.outlierDetection.maxEjectedPercent",
                MAX_EJECTED_PERCENT,
            ),
            ("spec.sessionAffinity.cookie.ttlSeconds", TTL_SECONDS),
            ("spec.tls.hsts.maxAgeSeconds", HSTS_MAX_AGE),
            ("spec.retries.attempts", ATTEMPTS),
            ("spec.timeouts.connectMillis", CONNECT_MILLIS),
            ("spec.timeouts.requestSeconds", REQUEST_SECONDS),
            ("spec.timeouts.idleSeconds", IDLE_SECONDS),
            // The type's own range (u16); the list of allowed statuses is narrower.
            ("spec.retries.onStatus[]", Bounds::new(0, u16::MAX.into())),
        ];
        for &(field, b) in values {
            add(field, "minimum", b.min.into());
            add(field, "maximum", b.max.into());
        }
        add("spec.routes", "maxItems", MAX_ROUTES as u64);
        add("spec.routes[].host", "maxLength", ROUTE_HOST_LEN.max.into());
        add("spec.backends", "minItems", 1);
        add("spec.backends", "maxItems", MAX_BACKENDS as u64);
        add(
            "spec.healthCheck.http.expectedStatuses",
            "minItems",
            EXPECTED_STATUSES.min.into(),
        );
        add(
            "spec.healthCheck.http.expectedStatuses",
            "maxItems",
            EXPECTED_STATUSES.max.into(),
        );
        add("spec.retries.onStatus", "maxItems", ON_STATUS.max.into());
        out
    }

    /// The CRD and `validate_spec` state the same bounds: a bound added to (or changed in) the
    /// schema without its check here fails, and so does a check of a bound the schema lacks.
    #[test]
    fn every_schema_bound_is_checked() {
        let crd = crd_bounds();
        let checked = checked_bounds();
        let unchecked: Vec<_> = crd
            .iter()
            .filter(|(k, v)| checked.get(*k) != Some(*v))
            .collect();
        let extra: Vec<_> = checked
            .iter()
            .filter(|(k, v)| crd.get(*k) != Some(*v))
            .collect();
        assert!(
            unchecked.is_empty() && extra.is_empty(),
            "in the CRD but not checked (or checked differently): {unchecked:?}\n\
             checked but not in the CRD: {extra:?}"
        );
    }

    #[test]
    fn lengths_count_characters_and_name_the_field() {
        let mut s = spec();
        s.class_name = Some("é".repeat(63));
        assert!(validate_spec(&s).is_empty());
        s.class_name = Some("a".repeat(64));
        assert_eq!(
            validate_spec(&s),
            [err("spec.className", "longer than 63 characters")]
        );
        s.class_name = Some(String::new());
        assert_eq!(
            validate_spec(&s),
            [err("spec.className", "must not be empty")]
        );
    }

    #[test]
    fn cookie_domains_follow_the_schema_pattern() {
        for good in ["example.com", ".example.com", "a", "x-1.example"] {
            assert!(is_cookie_domain(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "Example.com",
            "-a.com",
            "a.com.",
            "a-",
            "a b",
            "..a",
        ] {
            assert!(!is_cookie_domain(bad), "{bad}");
        }
    }

    #[test]
    fn repeated_routes_are_refused() {
        let mut s = spec();
        s.routes.push(s.routes[0].clone());
        assert_eq!(validate_spec(&s)[0].field, "spec.routes[1]");
    }
}
