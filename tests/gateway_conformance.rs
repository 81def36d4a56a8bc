//! The upstream Gateway API conformance suite (v1.6.3, unmodified: tests/conformance), run
//! against weir installed by its chart in the test cluster.
//!
//! weir's pods run in the cluster's network namespace and hand each Gateway an address of the
//! cluster's load-balancer range (`--gateway-addresses`), which the suite, on the host, reaches
//! through the cluster's veth. The suite writes its ConformanceReport; this test prints its
//! summary and fails when a test listed in `docs/conformance/passing.txt` is not among those
//! its log says passed (the list only grows: a test that passes is added to it). With `WEIR_CONFORMANCE_REPORT` set,
//! the report is copied there (how `docs/conformance/` is refreshed).

mod common;

use common::cluster::{Cluster, ROOT, ok, text};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WEIR_NS: &str = "weir-system";
const WEIR_PODS: &str = "app.kubernetes.io/name=weir,app.kubernetes.io/instance=weir";

/// What the report says of a test that did not pass (it names no passed test).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Failed,
    Skipped,
}

/// The tests of each profile that failed or were skipped, from a ConformanceReport.
fn outcomes(report: &serde_json::Value) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for profile in report["profiles"].as_array().into_iter().flatten() {
        for part in ["core", "extended"] {
            let part = &profile[part];
            for (field, outcome) in [
                ("failedTests", Outcome::Failed),
                ("skippedTests", Outcome::Skipped),
            ] {
                for name in part[field].as_array().into_iter().flatten() {
                    if let Some(name) = name.as_str() {
                        out.insert(name.to_string(), outcome.clone());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn upstream_gateway_api_conformance() {
    let started = Instant::now();
    let cluster = Cluster::start();
    cluster.install_gateway_api();
    let k = std::fs::read_to_string(cluster.dir().join("k")).expect("the cluster's index");
    let range = format!("10.244.{}.64/26", k.trim());
    ok(
        "helm install",
        cluster.helm(&[
            "install",
            "weir",
            "charts/weir",
            "--namespace",
            WEIR_NS,
            "--create-namespace",
            "--set",
            "replicaCount=1",
            "--set",
            "preStopSleepSeconds=0",
            "--set",
            "shutdownGraceSeconds=2",
            "--set",
            &format!("extraArgs={{--gateway-addresses={range}}}"),
        ]),
    );
    cluster.wait_ready_pods(WEIR_NS, WEIR_PODS, 1, Duration::from_secs(120));
    cluster.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: { name: weir }\nspec: { controllerName: weir.dev/gateway-controller }\n",
    );
    let report_path = cluster.dir().join("conformance-report.yaml");
    let suite = Command::new("go")
        .args([
            "test",
            // The log names each test that passed (the report only counts them).
            "-v",
            "-count=1",
            "-timeout=60m",
            ".",
            "-run",
            "TestConformance",
            "-args",
        ])
        .args([
            "-gateway-class=weir",
            "-conformance-profiles=GATEWAY-HTTP,GATEWAY-GRPC",
            "-organization=weir",
            "-project=weir",
            "-url=https://github.com/weir-dev/weir",
            "-version=v0.1.0",
            "-contact=https://github.com/weir-dev/weir/issues",
            "-allow-crds-mismatch",
        ])
        .arg(format!("-report-output={}", report_path.display()))
        .current_dir(Path::new(ROOT).join("tests/conformance"))
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .expect("go test runs");
    let log = cluster.dir().join("conformance.log");
    std::fs::write(&log, [&suite.stdout[..], &suite.stderr[..]].concat()).expect("writing a log");
    let report_text = std::fs::read_to_string(&report_path).unwrap_or_else(|e| {
        panic!(
            "no report from the suite ({e}); its output, last lines:\n{}",
            tail(&text(&suite.stdout), 60)
        )
    });
    if let Ok(dir) = std::env::var("WEIR_CONFORMANCE_REPORT") {
        std::fs::copy(&report_path, Path::new(&dir).join("report.yaml")).expect("copying");
        std::fs::copy(&log, Path::new(&dir).join("suite.log")).expect("copying");
    }
    let report: serde_json::Value =
        serde_saphyr::from_str(&report_text).expect("the report is YAML");
    for profile in report["profiles"].as_array().into_iter().flatten() {
        eprintln!(
            "{}: core {} (passed {}, failed {}, skipped {}); extended {} (passed {}, failed {})",
            profile["name"].as_str().unwrap_or("?"),
            profile["core"]["result"].as_str().unwrap_or("?"),
            profile["core"]["statistics"]["Passed"],
            profile["core"]["statistics"]["Failed"],
            profile["core"]["statistics"]["Skipped"],
            profile["extended"]["result"].as_str().unwrap_or("?"),
            profile["extended"]["statistics"]["Passed"],
            profile["extended"]["statistics"]["Failed"],
        );
    }
    let outcomes = outcomes(&report);
    let passed = passed_tests(&text(&suite.stdout));
    eprintln!("passed: {}", passed.join(" "));
    if let Ok(dir) = std::env::var("WEIR_CONFORMANCE_REPORT") {
        std::fs::write(Path::new(&dir).join("passed.txt"), passed.join("\n") + "\n")
            .expect("writing the passed list");
    }
    let expected = std::fs::read_to_string(Path::new(ROOT).join("docs/conformance/passing.txt"))
        .expect("docs/conformance/passing.txt");
    let regressed: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        // Failed, skipped, or not run at all: a listed test must be seen passing.
        .filter(|name| !passed.iter().any(|p| p == name))
        .collect();
    let failed: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| **o == Outcome::Failed)
        .map(|(name, _)| name)
        .collect();
    eprintln!("failed: {failed:?}");
    eprintln!("conformance run took {:?}", started.elapsed());
    assert!(
        regressed.is_empty(),
        "tests that passed before and do not now: {regressed:?}\nsuite output:\n{}",
        tail(&text(&suite.stdout), 80)
    );
}

/// The top-level tests the suite's verbose log says passed (`--- PASS: TestConformance/NAME`).
fn passed_tests(log: &str) -> Vec<String> {
    let mut names: Vec<String> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("--- PASS: TestConformance/"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| !name.contains('/'))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
