//! Bad configuration: every field of the `LoadBalancerPool` API given a wrong type, and every
//! bounded one a value out of its range, in the file source. Each is refused with an error
//! that names the field; then, end to end against the `weir` binary, each bad file is refused
//! while the last good table keeps serving and `weir_config_errors_total` counts it, as does
//! 1 MB of random bytes; a good file afterwards is served.
//!
//! The cases are checked for coverage against the CRD's schema: a field the API gains
//! without a case here fails `every_field_of_the_crd_has_cases`.

mod common;

use common::process::{Process, WEIR, metric, wait_ready};
use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use weir::source::file::parse;

/// What a case tests: a value of the wrong type, or of the right type outside its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    WrongType,
    OutOfRange,
}

/// One bad value.
#[derive(Debug, Clone)]
struct Case {
    kind: Kind,
    /// Where the value goes, e.g. `spec.backends[0].weight`.
    at: &'static str,
    value: Value,
    /// Values set first (at these paths), e.g. the algorithm a field needs.
    setup: Vec<(&'static str, Value)>,
    /// The field the error must name; `at` unless a rule spans fields.
    names: &'static str,
    /// A former gap: the file source accepted this (see `known_gaps_are_refused`).
    gap: bool,
}

fn case(kind: Kind, at: &'static str, value: Value) -> Case {
    Case {
        kind,
        at,
        value,
        setup: Vec::new(),
        names: at,
        gap: false,
    }
}

fn wrong(at: &'static str, value: Value) -> Case {
    case(Kind::WrongType, at, value)
}

fn out(at: &'static str, value: Value) -> Case {
    case(Kind::OutOfRange, at, value)
}

impl Case {
    fn with(mut self, at: &'static str, value: Value) -> Self {
        self.setup.push((at, value));
        self
    }

    /// Once accepted: a bound only the CRD schema stated, or a shape serde takes.
    fn gap(mut self) -> Self {
        self.gap = true;
        self
    }

    fn naming(mut self, field: &'static str) -> Self {
        self.names = field;
        self
    }

    /// The field as the CRD schema spells it: `spec.backends[].weight`.
    fn schema_field(&self) -> String {
        schema_path(self.at)
    }

    fn describe(&self) -> String {
        format!("{:?} {} = {}", self.kind, self.at, short(&self.value))
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}... ({} chars)", &s[..40], s.len())
    } else {
        s
    }
}

fn schema_path(concrete: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in concrete.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Set as a value: the key is removed instead.
const REMOVE: &str = "<remove this key>";

fn remove() -> Value {
    Value::from(REMOVE)
}

fn long(n: usize) -> Value {
    Value::from("a".repeat(n))
}

fn long_path(n: usize) -> Value {
    Value::from(format!("/{}", "a".repeat(n - 1)))
}

/// Every field of the spec, a wrong type each; several where the field takes several shapes.
fn wrong_types() -> Vec<Case> {
    let hash = |c: Case| {
        c.with("spec.algorithm", json!("ConsistentHash"))
            .with("spec.hashOn", json!({ "header": "x-user" }))
    };
    let ewma = |c: Case| c.with("spec.algorithm", json!("PeakEwma"));
    let by_load = |c: Case| c.with("spec.algorithm", json!("WeightedByLoad"));
    vec![
        wrong("spec", json!("a pool")),
        wrong("spec", json!([1, 2])),
        // serde takes a struct written as the list of its fields, in order.
        wrong(
            "spec",
            json!([null, [], [{ "service": "web", "port": "http" }]]),
        )
        .gap(),
        wrong("spec.timeouts", json!([1000, 60, 300])).gap(),
        wrong("spec.backends[0]", json!(["web", "http", 1])).gap(),
        wrong("spec.tls.hsts", json!([600, true])).gap(),
        // A struct without fields takes an empty list.
        wrong("spec.healthCheck.tcp", json!([]))
            .with("spec.healthCheck", json!({ "tcp": {} }))
            .gap(),
        wrong("spec.className", json!(5)),
        wrong("spec.className", json!(["weir"])),
        wrong("spec.routes", json!("shop.test")),
        wrong("spec.routes", json!({ "host": "shop.test" })),
        wrong("spec.routes[0]", json!("shop.test")),
        wrong("spec.routes[0].host", json!(5)),
        wrong("spec.routes[0].host", json!({ "name": "shop.test" })),
        wrong("spec.routes[0].pathPrefix", json!(["/"])),
        wrong("spec.routes[0].pathPrefix", json!(true)),
        wrong("spec.backends", json!("web")),
        wrong("spec.backends[0]", json!(42)),
        wrong("spec.backends[0].service", json!(5)),
        wrong("spec.backends[0].service", json!({ "name": "web" })),
        wrong("spec.backends[0].port", json!(true)),
        wrong("spec.backends[0].port", json!([80])),
        wrong("spec.backends[0].port", json!(80.5)),
        wrong("spec.backends[0].weight", json!("heavy")),
        wrong("spec.backends[0].weight", json!(2.5)),
        wrong("spec.algorithm", json!(5)),
        wrong("spec.algorithm", json!({ "name": "RoundRobin" })),
        hash(wrong("spec.hashOn", json!("x-user"))),
        hash(wrong("spec.hashOn.header", json!(5))),
        hash(wrong("spec.hashOn.cookie", json!(["sid"])))
            .with("spec.hashOn", json!({ "cookie": "sid" })),
        hash(wrong("spec.hashOn.sourceIP", json!("maybe")))
            .with("spec.hashOn", json!({ "sourceIP": true })),
        ewma(wrong("spec.peakEwma", json!(10))),
        ewma(wrong("spec.peakEwma.decaySeconds", json!("10s"))),
        wrong("spec.slowStart", json!(30)),
        wrong("spec.slowStart.windowSeconds", json!("30s")),
        by_load(wrong("spec.weightedByLoad", json!(10))),
        by_load(wrong("spec.weightedByLoad.blackoutSeconds", json!("10s"))),
        by_load(wrong("spec.weightedByLoad.expirySeconds", json!(-1))),
        by_load(wrong("spec.weightedByLoad.updatePeriodMillis", json!(1.5))),
        by_load(wrong(
            "spec.weightedByLoad.errorPenaltyPercent",
            json!("100%"),
        )),
        wrong("spec.loadReports", json!(true)),
        wrong("spec.loadReports.keep", json!("yes")),
        wrong("spec.healthCheck", json!("/healthz")),
        wrong("spec.healthCheck.http", json!("/healthz")),
        wrong("spec.healthCheck.http.path", json!(5)),
        wrong("spec.healthCheck.http.host", json!(5)),
        wrong("spec.healthCheck.http.expectedStatuses", json!("200")),
        wrong("spec.healthCheck.http.expectedStatuses[0]", json!(200)),
        wrong("spec.healthCheck.tcp", json!(5)).with("spec.healthCheck", json!({ "tcp": {} })),
        wrong("spec.healthCheck.intervalSeconds", json!("5s")),
        wrong("spec.healthCheck.timeoutSeconds", json!("1s")),
        wrong("spec.healthCheck.healthyThreshold", json!(true)),
        wrong("spec.healthCheck.unhealthyThreshold", json!([3])),
        wrong("spec.outlierDetection", json!(true)),
        wrong("spec.outlierDetection.consecutiveFailures", json!("five")),
        wrong("spec.outlierDetection.ejectionSeconds", json!("30s")),
        wrong("spec.outlierDetection.maxEjectedPercent", json!("50%")),
        wrong("spec.tls", json!("shop-tls")),
        wrong("spec.tls.secretName", json!(5)),
        wrong("spec.tls.redirectHttp", json!("maybe")),
        wrong("spec.tls.hsts", json!(31536000)),
        wrong("spec.tls.hsts.maxAgeSeconds", json!("1y")),
        wrong("spec.tls.hsts.includeSubDomains", json!(1)),
        wrong("spec.sessionAffinity", json!("cookie")),
        wrong("spec.sessionAffinity.cookie", json!("sticky")),
        wrong("spec.sessionAffinity.cookie.name", json!(5)),
        wrong("spec.sessionAffinity.cookie.ttlSeconds", json!("1h")),
        wrong("spec.sessionAffinity.cookie.path", json!(5)),
        wrong("spec.sessionAffinity.cookie.domain", json!(["example.com"])),
        wrong("spec.sessionAffinity.cookie.secure", json!("maybe")),
        wrong("spec.sessionAffinity.cookie.httpOnly", json!("no")),
        wrong("spec.sessionAffinity.cookie.sameSite", json!(1)),
        wrong("spec.sessionAffinity.cookie.forwardCookie", json!("true")),
        wrong("spec.retries", json!(2)),
        wrong("spec.retries.attempts", json!("twice")),
        wrong("spec.retries.onStatus", json!(502)),
        wrong("spec.retries.onStatus[0]", json!("502")),
        wrong("spec.timeouts", json!("1s")),
        wrong("spec.timeouts.connectMillis", json!("1s")),
        wrong("spec.timeouts.requestSeconds", json!(1.5)),
        wrong("spec.timeouts.idleSeconds", json!(null)),
        // Outside the spec: what every object has.
        wrong("metadata", json!("web")).naming("metadata.name"),
        wrong("metadata.name", json!(5)),
        wrong("metadata.namespace", json!(5)),
        wrong("metadata.labels", json!("app=web")),
        wrong("spec.unknownField", json!(1)),
    ]
}

/// Every bound of the schema (lengths, ranges, counts, patterns, enums) and the rules that
/// span fields, broken once or more.
fn out_of_range() -> Vec<Case> {
    let hash = |c: Case| {
        c.with("spec.algorithm", json!("ConsistentHash"))
            .with("spec.hashOn", json!({ "header": "x-user" }))
    };
    let cookie = |c: Case| hash(c).with("spec.hashOn", json!({ "cookie": "sid" }));
    let ewma = |c: Case| c.with("spec.algorithm", json!("PeakEwma"));
    let by_load = |c: Case| c.with("spec.algorithm", json!("WeightedByLoad"));
    let route = json!({ "host": "shop.test", "pathPrefix": "/" });
    let backend = json!({ "service": "web", "port": "http" });
    vec![
        out("spec.className", json!("")).gap(),
        out("spec.className", long(64)).gap(),
        out(
            "spec.routes",
            Value::Array(
                (0..65)
                    .map(|i| json!({ "host": format!("h{i}.test") }))
                    .collect(),
            ),
        ),
        out("spec.routes", json!([route, route])).naming("spec.routes[1]"),
        out("spec.routes[0].host", json!("Shop.Test")),
        out("spec.routes[0].host", json!("*.*.test")),
        out("spec.routes[0].host", json!("a..test")),
        out("spec.routes[0].host", json!("-a.test")),
        out("spec.routes[0].host", json!("shop.test:80")),
        out("spec.routes[0].host", long(254)),
        out("spec.routes[0].pathPrefix", json!("")),
        out("spec.routes[0].pathPrefix", json!("api")),
        out("spec.routes[0].pathPrefix", long_path(1025)).gap(),
        out("spec.backends", json!([])),
        out("spec.backends", Value::Array(vec![backend; 33])),
        out("spec.backends[0].service", json!("")),
        out("spec.backends[0].service", long(64)).gap(),
        out("spec.backends[0].port", json!(0)),
        out("spec.backends[0].port", json!(65536)),
        out("spec.backends[0].port", json!(-1)),
        out("spec.backends[0].port", json!("")),
        out("spec.backends[0].weight", json!(1001)),
        out("spec.backends[0].weight", json!(-1)),
        out("spec.backends[0].weight", json!(0)).naming("spec.backends"),
        out("spec.algorithm", json!("Fastest")),
        out("spec.algorithm", json!("roundrobin")),
        out("spec.algorithm", json!("ConsistentHash")).naming("spec.hashOn"),
        out("spec.hashOn", json!({ "header": "x-user" })),
        hash(out("spec.hashOn", json!({}))),
        hash(out("spec.hashOn", json!({ "header": "x", "cookie": "y" }))),
        hash(out("spec.hashOn.header", json!(""))),
        hash(out("spec.hashOn.header", long(257))).gap(),
        cookie(out("spec.hashOn.cookie", json!(""))),
        cookie(out("spec.hashOn.cookie", long(257))).gap(),
        hash(out("spec.hashOn", json!({ "sourceIP": false }))),
        ewma(out("spec.peakEwma.decaySeconds", json!(0))),
        ewma(out("spec.peakEwma.decaySeconds", json!(601))),
        out("spec.slowStart.windowSeconds", json!(0)),
        out("spec.slowStart.windowSeconds", json!(3601)),
        by_load(out("spec.weightedByLoad.blackoutSeconds", json!(601))),
        by_load(out("spec.weightedByLoad.expirySeconds", json!(0))),
        by_load(out("spec.weightedByLoad.expirySeconds", json!(3601))),
        by_load(out("spec.weightedByLoad.updatePeriodMillis", json!(99))),
        by_load(out("spec.weightedByLoad.updatePeriodMillis", json!(60_001))),
        by_load(out("spec.weightedByLoad.errorPenaltyPercent", json!(1001))),
        out("spec.weightedByLoad", json!({})).naming("spec.weightedByLoad"),
        out("spec.slowStart", json!({})).naming("spec.slowStart"),
        out("spec.healthCheck.tcp", json!({})).naming("spec.healthCheck"),
        out("spec.healthCheck.http", remove()).naming("spec.healthCheck"),
        out("spec.healthCheck.http.path", json!("")),
        out("spec.healthCheck.http.path", json!("healthz")),
        out("spec.healthCheck.http.path", long_path(1025)).gap(),
        out("spec.healthCheck.http.host", json!("")).gap(),
        out("spec.healthCheck.http.host", long(254)).gap(),
        out("spec.healthCheck.http.expectedStatuses", json!([])),
        out(
            "spec.healthCheck.http.expectedStatuses",
            Value::Array(vec![json!("200"); 17]),
        )
        .gap(),
        out("spec.healthCheck.http.expectedStatuses[0]", json!("99")),
        out("spec.healthCheck.http.expectedStatuses[0]", json!("600")),
        out(
            "spec.healthCheck.http.expectedStatuses[0]",
            json!("500-400"),
        ),
        out("spec.healthCheck.http.expectedStatuses[0]", json!("ok")),
        out("spec.healthCheck.intervalSeconds", json!(0)),
        out("spec.healthCheck.intervalSeconds", json!(301)),
        out("spec.healthCheck.timeoutSeconds", json!(0)),
        out("spec.healthCheck.timeoutSeconds", json!(61)),
        out("spec.healthCheck.healthyThreshold", json!(0)),
        out("spec.healthCheck.healthyThreshold", json!(21)),
        out("spec.healthCheck.unhealthyThreshold", json!(0)),
        out("spec.healthCheck.unhealthyThreshold", json!(21)),
        out("spec.outlierDetection.consecutiveFailures", json!(0)),
        out("spec.outlierDetection.consecutiveFailures", json!(1001)),
        out("spec.outlierDetection.ejectionSeconds", json!(0)),
        out("spec.outlierDetection.ejectionSeconds", json!(3601)),
        out("spec.outlierDetection.maxEjectedPercent", json!(101)),
        out("spec.outlierDetection.maxEjectedPercent", json!(-1)),
        out("spec.tls.secretName", json!("")),
        out("spec.tls.secretName", long(254)).gap(),
        out("spec.tls.hsts.maxAgeSeconds", json!(63_072_001)),
        out("spec.tls.hsts.maxAgeSeconds", json!(-1)),
        out("spec.sessionAffinity.cookie.name", json!("")),
        out("spec.sessionAffinity.cookie.name", long(65)),
        out("spec.sessionAffinity.cookie.name", json!("a b")),
        out("spec.sessionAffinity.cookie.name", json!("a;b")),
        out("spec.sessionAffinity.cookie.ttlSeconds", json!(31_536_001)).gap(),
        out("spec.sessionAffinity.cookie.ttlSeconds", json!(-1)),
        out("spec.sessionAffinity.cookie.path", json!("")),
        out("spec.sessionAffinity.cookie.path", json!("app")),
        out("spec.sessionAffinity.cookie.path", json!("/a b")),
        out("spec.sessionAffinity.cookie.path", json!("/a;b")),
        out("spec.sessionAffinity.cookie.path", long_path(1025)).gap(),
        out("spec.sessionAffinity.cookie.domain", json!("")),
        out("spec.sessionAffinity.cookie.domain", json!("exa mple.com")),
        out("spec.sessionAffinity.cookie.domain", json!("Example.COM")).gap(),
        out("spec.sessionAffinity.cookie.domain", long(254)).gap(),
        out("spec.sessionAffinity.cookie.sameSite", json!("Loose")),
        out("spec.sessionAffinity.cookie.secure", json!(false))
            .with("spec.sessionAffinity.cookie.sameSite", json!("None")),
        out("spec.retries.attempts", json!(6)),
        out("spec.retries.attempts", json!(-1)),
        out("spec.retries.onStatus", json!([502, 503, 504, 502])).gap(),
        out("spec.retries.onStatus[0]", json!(500)),
        out("spec.retries.onStatus[0]", json!(70000)),
        out("spec.timeouts.connectMillis", json!(0)),
        out("spec.timeouts.connectMillis", json!(60_001)),
        out("spec.timeouts.requestSeconds", json!(0)),
        out("spec.timeouts.requestSeconds", json!(3601)),
        out("spec.timeouts.idleSeconds", json!(0)),
        out("spec.timeouts.idleSeconds", json!(86_401)),
        out("spec.timeouts.idleSeconds", json!(u64::MAX)),
        out("metadata.name", json!("")),
    ]
}

/// A pool that sets every field (bar the algorithm-specific ones), valid as it stands.
fn base_pool() -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "LoadBalancerPool",
        "metadata": { "name": "web", "namespace": "test", "labels": { "app": "web" } },
        "spec": {
            "className": "weir",
            "routes": [{ "host": "shop.test", "pathPrefix": "/" }],
            "backends": [{ "service": "web", "port": "http", "weight": 1 }],
            "algorithm": "RoundRobin",
            "slowStart": { "windowSeconds": 30 },
            "healthCheck": {
                "http": { "path": "/healthz", "host": "shop.test", "expectedStatuses": ["200-399"] },
                "intervalSeconds": 5, "timeoutSeconds": 1,
                "healthyThreshold": 2, "unhealthyThreshold": 3
            },
            "outlierDetection": { "consecutiveFailures": 5, "ejectionSeconds": 30, "maxEjectedPercent": 50 },
            "tls": { "secretName": "shop-tls", "redirectHttp": false,
                     "hsts": { "maxAgeSeconds": 600, "includeSubDomains": false } },
            "sessionAffinity": { "cookie": { "name": "sticky", "ttlSeconds": 60, "path": "/",
                                             "domain": "shop.test", "secure": true, "httpOnly": true,
                                             "sameSite": "Lax", "forwardCookie": false } },
            "retries": { "attempts": 1, "onStatus": [502] },
            "timeouts": { "connectMillis": 1000, "requestSeconds": 30, "idleSeconds": 60 }
        }
    })
}

enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        out.push(Segment::Key(name.to_string()));
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            let n = index.trim_end_matches(']').parse().expect("an index");
            out.push(Segment::Index(n));
        }
    }
    out
}

/// Sets `path` in `doc`, making the maps on the way; `null` removes a map's key.
fn set(doc: &mut Value, path: &str, value: Value) {
    let segs = segments(path);
    let mut node = doc;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match seg {
            Segment::Key(k) => {
                if !node.is_object() {
                    *node = json!({});
                }
                let map = node.as_object_mut().expect("a map");
                if last {
                    if value.as_str() == Some(REMOVE) {
                        map.remove(k);
                    } else {
                        map.insert(k.clone(), value);
                    }
                    return;
                }
                node = map.entry(k.clone()).or_insert(json!({}));
            }
            Segment::Index(n) => {
                let list = node.as_array_mut().expect("a list");
                if last {
                    list[*n] = value;
                    return;
                }
                node = &mut list[*n];
            }
        }
    }
}

fn pool_with(c: &Case) -> Value {
    let mut doc = base_pool();
    for (at, v) in &c.setup {
        set(&mut doc, at, v.clone());
    }
    set(&mut doc, c.at, c.value.clone());
    doc
}

fn yaml(doc: &Value) -> String {
    serde_saphyr::to_string(doc).expect("YAML")
}

/// The file's error for a case's pool, alone in a file.
fn error_of(c: &Case) -> Result<String, String> {
    match parse("pools.yaml", &yaml(&pool_with(c))) {
        Ok(store) => Err(format!(
            "accepted ({} pools): {}",
            store.pools.len(),
            c.describe()
        )),
        Err(e) => Ok(e.to_string()),
    }
}

/// Whether an error names the file, the object and the field, then says what is wrong:
/// `pools.yaml: document 1 (LoadBalancerPool test/web): FIELD: message`.
fn names_field(error: &str, field: &str) -> bool {
    let Some(rest) = error
        .strip_prefix("pools.yaml: document 1 (LoadBalancerPool")
        .and_then(|rest| rest.split_once("): "))
        .and_then(|(_, rest)| rest.strip_prefix(field))
    else {
        return false;
    };
    // The field itself, or a part of it (`spec[0]` for a spec written as a list).
    let rest = match rest.strip_prefix(": ") {
        Some(message) => message,
        None if rest.starts_with('[') || rest.starts_with('.') => {
            rest.split_once(": ").map_or("", |(_, m)| m)
        }
        None => return false,
    };
    !rest.trim().is_empty()
}

fn check_cases(cases: &[Case]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in cases {
        match error_of(c) {
            Err(accepted) => problems.push(accepted),
            Ok(error) if !names_field(&error, c.names) => problems.push(format!(
                "{}: the error does not name {}: {error}",
                c.describe(),
                c.names
            )),
            Ok(_) => {}
        }
    }
    problems
}

#[test]
fn the_base_pool_and_every_setup_are_valid() {
    let doc = base_pool();
    parse("pools.yaml", &yaml(&doc)).expect("the base pool parses");
    for c in wrong_types().into_iter().chain(out_of_range()) {
        let mut doc = base_pool();
        for (at, v) in &c.setup {
            set(&mut doc, at, v.clone());
        }
        if let Err(e) = parse("pools.yaml", &yaml(&doc)) {
            panic!("the setup of {} is refused by itself: {e}", c.describe());
        }
    }
}

#[test]
fn every_field_refuses_a_wrong_type_naming_it() {
    let cases: Vec<Case> = wrong_types().into_iter().filter(|c| !c.gap).collect();
    let problems = check_cases(&cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_bound_refuses_a_value_outside_it_naming_the_field() {
    let cases: Vec<Case> = out_of_range().into_iter().filter(|c| !c.gap).collect();
    let problems = check_cases(&cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The CRD schema's leaf fields and which of them carry bounds.
fn crd_fields() -> (BTreeSet<String>, BTreeSet<String>) {
    let crd: Value =
        serde_saphyr::from_str(&weir::api::crd_yaml().expect("the CRD")).expect("CRD YAML");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut fields = BTreeSet::new();
    let mut bounded = BTreeSet::new();
    fn walk(
        node: &Value,
        path: String,
        fields: &mut BTreeSet<String>,
        bounded: &mut BTreeSet<String>,
    ) {
        fields.insert(path.clone());
        let bounds = [
            "maxLength",
            "minLength",
            "maximum",
            "minimum",
            "maxItems",
            "minItems",
            "pattern",
            "enum",
        ];
        if bounds.iter().any(|b| node.get(b).is_some())
            || node.get("x-kubernetes-int-or-string").is_some()
        {
            bounded.insert(path.clone());
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(v, format!("{path}.{k}"), fields, bounded);
            }
        }
        if let Some(items) = node.get("items") {
            walk(items, format!("{path}[]"), fields, bounded);
        }
    }
    walk(spec, "spec".into(), &mut fields, &mut bounded);
    (fields, bounded)
}

#[test]
fn every_field_of_the_crd_has_cases() {
    let (fields, bounded) = crd_fields();
    let typed: BTreeSet<String> = wrong_types().iter().map(Case::schema_field).collect();
    let ranged: BTreeSet<String> = out_of_range().iter().map(Case::schema_field).collect();
    let no_type_case: Vec<_> = fields.difference(&typed).collect();
    let no_range_case: Vec<_> = bounded.difference(&ranged).collect();
    assert!(
        no_type_case.is_empty(),
        "fields without a wrong-type case: {no_type_case:?}"
    );
    assert!(
        no_range_case.is_empty(),
        "bounded fields without an out-of-range case: {no_range_case:?}"
    );
}

/// The cases marked `gap()`, once accepted by the file source though the API server refuses
/// them: bounds only the CRD schema stated (lengths of className, service, hosts, paths,
/// hashOn names, secretName, cookie path and domain; the cookie domain's lower case;
/// ttlSeconds' maximum; the counts of expectedStatuses and onStatus), now repeated by
/// `validate_spec` from the same constants; and structs written as lists, which serde's derive
/// takes field by field and the file source now refuses where the schema says `type: object`.
#[test]
fn known_gaps_are_refused() {
    let cases: Vec<Case> = wrong_types()
        .into_iter()
        .chain(out_of_range())
        .filter(|c| c.gap)
        .collect();
    assert!(!cases.is_empty());
    let problems = check_cases(&cases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// End to end: `weir serve` on a file rewritten with each bad variant.

/// Writes the file as editors and config management do: a new file renamed over the old.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write the config");
    std::fs::rename(&tmp, path).expect("rename the config");
}

/// `weir serve` with JSON logs to `log`, so each refusal's message can be read.
fn serve_logging(config: &Path, http: &str, admin: &str, log: &Path) -> Process {
    let log = std::fs::File::create(log).expect("a log file");
    let child = Command::new(WEIR)
        .args(["serve", "--log-format", "json", "--config"])
        .arg(config)
        .args([
            "--http-addr",
            http,
            "--admin-addr",
            admin,
            "--reload-interval",
            "100ms",
        ])
        .args(["--https-addr", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "error")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("weir starts");
    Process(child)
}

/// Waits (bounded) until `weir_config_errors_total` reaches `want`.
async fn wait_errors(admin: &str, want: f64) -> f64 {
    let mut seen = 0.0;
    for _ in 0..500 {
        seen = metric(admin, "weir_config_errors_total")
            .await
            .unwrap_or(0.0);
        if seen >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// Waits (bounded) until the log holds `count` refusals; returns the last one.
async fn wait_log(log: &Path, count: usize) -> String {
    let mut last = String::new();
    for _ in 0..250 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let refusals: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("configuration refused"))
            .collect();
        if refusals.len() >= count {
            last = refusals[count - 1].to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

/// The file of the test: the Service over `backends`, and the pool document given.
fn file_with(backends: &[std::net::SocketAddr], pool: &str) -> String {
    let services = Config::default().service("web", backends).yaml();
    format!("{services}---\n{pool}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_while_the_last_good_table_serves() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("pools.yaml");
    let log = dir.path().join("weir.log");
    let good_pool = "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: web, namespace: test }\nspec:\n  routes: [{ host: shop.test }]\n  backends: [{ service: web, port: http }]\n";
    write_atomically(&path, file_with(&[old.addr], good_pool).as_bytes());
    let http = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let _weir = serve_logging(&path, &http, &admin, &log);
    wait_ready(&admin).await;
    let client = http1_client();
    let url = format!("http://{http}/");
    let served = || async { get(&client, &url, "shop.test").await.expect("weir answers") };
    assert_eq!(served().await, (StatusCode::OK, "old".to_string()));
    assert_eq!(metric(&admin, "weir_config_errors_total").await, Some(0.0));

    // One variant per field and kind (the parse-level tests above take every case); the
    // good Service now lists the new backend too, so a file that slipped through would show.
    let mut seen = BTreeSet::new();
    let variants: Vec<Case> = wrong_types()
        .into_iter()
        .chain(out_of_range())
        .filter(|c| !c.gap)
        .filter(|c| seen.insert((c.kind, c.schema_field())))
        .collect();
    let mut refused = 0usize;
    for c in &variants {
        let file = file_with(&[new.addr], &yaml(&pool_with(c)));
        write_atomically(&path, file.as_bytes());
        refused += 1;
        let errors = wait_errors(&admin, refused as f64).await;
        assert_eq!(
            errors,
            refused as f64,
            "{} was not counted as refused",
            c.describe()
        );
        let line = wait_log(&log, refused).await;
        assert!(
            line.contains(&format!("{}: ", c.names)),
            "the log of {} does not name {}: {line}",
            c.describe(),
            c.names
        );
        assert_eq!(
            served().await,
            (StatusCode::OK, "old".to_string()),
            "after {}",
            c.describe()
        );
    }

    // 1 MB of random bytes, then 1 MB of random printable text (not UTF-8 / not YAML).
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let bytes: Vec<u8> = (0..1 << 20).map(|_| rng.u8(..)).collect();
    let text: Vec<u8> = (0..1 << 20)
        .map(|_| {
            let c = rng.u8(0x20..0x7f);
            if rng.u8(..) < 8 { b'\n' } else { c }
        })
        .collect();
    for (what, junk) in [("random bytes", bytes), ("random text", text)] {
        write_atomically(&path, &junk);
        refused += 1;
        assert_eq!(
            wait_errors(&admin, refused as f64).await,
            refused as f64,
            "1 MB of {what} was not counted as refused"
        );
        let line = wait_log(&log, refused).await;
        assert!(line.contains("pools.yaml"), "{what}: {line}");
        assert_eq!(
            served().await,
            (StatusCode::OK, "old".to_string()),
            "after 1 MB of {what}"
        );
    }

    // A good file again: the new table serves.
    write_atomically(&path, file_with(&[new.addr], good_pool).as_bytes());
    let mut body = String::new();
    for _ in 0..250 {
        body = served().await.1;
        if body == "new" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body, "new", "the good file after the bad ones is served");
    assert_eq!(
        metric(&admin, "weir_config_errors_total").await,
        Some(refused as f64),
        "the good file is not an error"
    );
    println!(
        "{} bad files refused ({} field variants, 2 MB of junk); old table served throughout",
        refused,
        variants.len()
    );
}
