//! Fuzzing the ORCA load-report parser (`weir::load_report`): arbitrary bytes behind each
//! format prefix, and real reports in every form, mutated.
//!
//! Invariants: nothing panics; an accepted report holds only finite values within
//! `0..=MAX_VALUE` and at most `MAX_ENTRIES` named metrics; an endpoint fed the result counts
//! every report exactly once, as accepted or rejected, and a rejected one leaves its
//! utilization as it was.
//!
//! `WEIR_FUZZ_CASES=100000 cargo test --release --test fuzz_load_report -- --nocapture`, or
//! `WEIR_FUZZ_SECONDS=600` for a timed run (see `fuzz_common.rs`).

#[path = "fuzz_common.rs"]
mod fuzz_common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fuzz_common::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::time::Instant;
use weir::endpoint::Endpoint;
use weir::load_report::{self, LoadReport, MAX_ENTRIES, MAX_VALUE};
use weir::testkit::{orca_protobuf, orca_text};

fn check(report: &LoadReport) -> Result<(), TestCaseError> {
    let core = [
        report.cpu_utilization,
        report.mem_utilization,
        report.application_utilization,
        report.rps_fractional,
        report.eps,
    ];
    let maps = [
        &report.named_metrics,
        &report.request_cost,
        &report.utilization,
    ];
    prop_assert!(maps.iter().map(|m| m.len()).sum::<usize>() <= MAX_ENTRIES);
    let entries = maps.iter().flat_map(|m| m.iter().map(|(_, v)| *v));
    for v in core.into_iter().chain(entries) {
        prop_assert!(v.is_finite() && (0.0..=MAX_VALUE).contains(&v), "{v}");
    }
    Ok(())
}

/// Parses `value` as the `endpoint-load-metrics` header and `bin` as the `-bin` one, and
/// feeds both to an endpoint: checks the invariants above.
fn parse_and_feed(value: &[u8], bin: &[u8]) -> Result<(), TestCaseError> {
    let endpoint = Endpoint::new("127.0.0.1:1".parse().expect("addr"), "fuzz");
    for parsed in [load_report::parse(value), load_report::parse_bin(bin)] {
        let accepted = parsed.is_ok();
        if let Ok(r) = &parsed {
            check(r)?;
        }
        let utilization = endpoint.load().utilization();
        endpoint.observe_load_report(parsed, Instant::now());
        if !accepted {
            prop_assert_eq!(endpoint.load().utilization(), utilization);
        }
    }
    let load = endpoint.load();
    prop_assert_eq!(load.accepted() + load.rejected(), 2);
    Ok(())
}

#[test]
fn arbitrary_bytes() {
    fuzz(
        "fuzz_load_report::arbitrary",
        2000,
        (
            prop_oneof![Just(""), Just("TEXT "), Just("JSON "), Just("BIN ")],
            prop::collection::vec(any::<u8>(), 0..512),
        ),
        |(prefix, bytes)| {
            let mut value = prefix.as_bytes().to_vec();
            value.extend_from_slice(&bytes);
            parse_and_feed(&value, STANDARD.encode(&bytes).as_bytes())
        },
    );
}

/// A real report's encodings, with bytes flipped, cut or inserted.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Cut { at: usize },
    Insert { at: usize, byte: u8 },
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match *m {
        Mutation::Flip { at, xor } => {
            let i = at % bytes.len();
            bytes[i] ^= xor;
        }
        Mutation::Cut { at } => bytes.truncate(at % bytes.len()),
        Mutation::Insert { at, byte } => {
            let i = at % bytes.len();
            bytes.insert(i, byte);
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Cut { at }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0..2.0f64, 0.0..1e5f64]
}

fn report() -> impl Strategy<Value = LoadReport> {
    (
        value(),
        value(),
        value(),
        value(),
        prop::collection::btree_map("[a-z]{1,8}", value(), 0..4),
    )
        .prop_map(|(cpu, app, rps, eps, named)| LoadReport {
            cpu_utilization: cpu,
            application_utilization: app,
            rps_fractional: rps,
            eps,
            named_metrics: named.into_iter().collect(),
            ..LoadReport::default()
        })
}

#[test]
fn mutated_reports() {
    fuzz(
        "fuzz_load_report::mutated",
        2000,
        (
            report(),
            prop::collection::vec(mutation(), 1..4),
            prop::collection::vec(mutation(), 1..4),
        ),
        |(report, text_mutations, bin_mutations)| {
            let mut text = orca_text(&report).into_bytes();
            for m in &text_mutations {
                apply(&mut text, m);
            }
            // The protobuf is mutated under its base64, so the parser sees damaged messages.
            let mut proto = orca_protobuf(&report);
            for m in &bin_mutations {
                apply(&mut proto, m);
            }
            parse_and_feed(&text, STANDARD.encode(&proto).as_bytes())
        },
    );
}
