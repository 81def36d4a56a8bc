use super::*;
use crate::testkit::{orca_protobuf, orca_text};
use proptest::prelude::*;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sample() -> LoadReport {
    LoadReport {
        cpu_utilization: 0.7,
        mem_utilization: 0.9,
        application_utilization: 0.8,
        rps_fractional: 1000.0,
        eps: 2.0,
        named_metrics: vec![("foo".into(), 123.0)],
        ..LoadReport::default()
    }
}

#[test]
fn reads_the_text_form_as_envoy_documents_it() {
    let r = parse(b"TEXT cpu_utilization=0.7,application_utilization=0.8,mem_utilization=0.9,rps_fractional=1000,eps=2,named_metrics.foo=123").unwrap();
    assert_eq!(r, sample());
    // `:` within a pair, spaces around the parts.
    let r = parse(b"TEXT cpu_utilization: 0.3, eps :1").unwrap();
    assert_eq!((r.cpu_utilization, r.eps), (0.3, 1.0));
}

#[test]
fn reads_the_json_form_in_either_naming() {
    let snake = br#"JSON {"cpu_utilization": 0.7, "mem_utilization": 0.9, "application_utilization": 0.8, "rps_fractional": 1000, "eps": 2, "named_metrics": {"foo": 123}}"#;
    assert_eq!(parse(snake).unwrap(), sample());
    let camel = br#"JSON {"cpuUtilization": 0.7, "memUtilization": 0.9, "applicationUtilization": 0.8, "rpsFractional": 1000, "eps": 2, "namedMetrics": {"foo": 123}}"#;
    assert_eq!(parse(camel).unwrap(), sample());
}

#[test]
fn reads_the_binary_form_padded_or_not_with_or_without_prefix() {
    let bytes = orca_protobuf(&sample());
    let padded = b64(&bytes);
    let unpadded = padded.trim_end_matches('=');
    assert_eq!(parse_bin(padded.as_bytes()).unwrap(), sample());
    assert_eq!(parse_bin(unpadded.as_bytes()).unwrap(), sample());
    assert_eq!(parse(format!("BIN {padded}").as_bytes()).unwrap(), sample());
    // The example of the xDS ORCA spec: cpu 0.1, mem 2, named foo 0.1 and bar 0.2.
    let r =
        parse(b"BIN CZqZmZmZmbk/MQAAAAAAAABAQg4KA2ZvbxGamZmZmZm5P0IOCgNiYXIRmpmZmZmZyT8=").unwrap();
    assert_eq!(r.cpu_utilization, 0.1);
    assert_eq!(
        r.named_metrics,
        vec![("foo".to_string(), 0.1), ("bar".to_string(), 0.2)]
    );
}

#[test]
fn the_utilization_that_weighs_is_the_applications_else_the_cpus() {
    assert_eq!(sample().utilization(), 0.8);
    let cpu_only = LoadReport {
        cpu_utilization: 0.4,
        ..LoadReport::default()
    };
    assert_eq!(cpu_only.utilization(), 0.4);
}

#[test]
fn refuses_what_a_report_must_not_say() {
    let refused = |v: &str| parse(v.as_bytes()).unwrap_err();
    assert!(matches!(
        refused("TEXT cpu_utilization=NaN"),
        ReportError::NotFinite(_)
    ));
    assert!(matches!(
        refused("TEXT cpu_utilization=inf"),
        ReportError::NotFinite(_)
    ));
    assert!(matches!(refused("TEXT eps=-1"), ReportError::Negative(_)));
    assert!(matches!(
        refused("TEXT rps_fractional=1e10"),
        ReportError::TooLarge(_)
    ));
    assert!(matches!(
        refused("TEXT cpu_utilization=0.1,cpu_utilization=0.2"),
        ReportError::Duplicate(_)
    ));
    assert!(matches!(
        refused("TEXT named_metrics.a=1,named_metrics.a=2"),
        ReportError::Duplicate(_)
    ));
    assert!(matches!(
        refused(r#"JSON {"cpu_utilization": 0.1, "cpuUtilization": 0.2}"#),
        ReportError::Duplicate(_)
    ));
    assert!(matches!(
        refused(r#"JSON {"eps": 1, "eps": 1}"#),
        ReportError::Duplicate(_)
    ));
    assert!(matches!(
        refused("TEXT gpu=1"),
        ReportError::UnknownMetric(_)
    ));
    assert!(matches!(
        refused("TEXT cpu_utilization"),
        ReportError::NotAPair(_)
    ));
    assert!(matches!(
        refused("TEXT cpu_utilization=x"),
        ReportError::NotANumber(_)
    ));
    assert!(matches!(
        refused("TEXT named_metrics.=1"),
        ReportError::EmptyName(_)
    ));
    assert!(matches!(
        refused("cpu_utilization=0.5"),
        ReportError::UnknownFormat
    ));
    assert!(matches!(
        refused(r#"JSON {"eps": "1"}"#),
        ReportError::NotANumber(_)
    ));
    assert!(matches!(refused("JSON [1]"), ReportError::Json(_)));
    assert!(matches!(refused("BIN !!!"), ReportError::Base64));
    let long = format!("TEXT {}", "eps=1,".repeat(1000));
    assert!(matches!(refused(&long), ReportError::TooLong(_)));
    let many: Vec<String> = (0..=MAX_ENTRIES)
        .map(|i| format!("named_metrics.m{i}=1"))
        .collect();
    assert!(matches!(
        refused(&format!("TEXT {}", many.join(","))),
        ReportError::TooManyEntries
    ));
    // A NaN in the binary form too.
    let nan = orca_protobuf(&LoadReport {
        cpu_utilization: f64::NAN,
        ..LoadReport::default()
    });
    assert!(matches!(
        parse_bin(b64(&nan).as_bytes()),
        Err(ReportError::NotFinite(_))
    ));
    // Truncated protobuf.
    let bytes = orca_protobuf(&sample());
    assert!(matches!(
        parse_bin(b64(&bytes[..bytes.len() - 3]).as_bytes()),
        Err(ReportError::Protobuf(_))
    ));
}

#[test]
fn unknown_protobuf_fields_are_skipped_and_integer_rps_is_a_fallback() {
    let mut bytes = orca_protobuf(&LoadReport {
        cpu_utilization: 0.5,
        ..LoadReport::default()
    });
    // Field 3 (deprecated `rps`, varint 42), then an unknown field 15 (varint).
    bytes.extend_from_slice(&[3 << 3, 42, 15 << 3, 1]);
    let r = parse_bin(b64(&bytes).as_bytes()).unwrap();
    assert_eq!((r.cpu_utilization, r.rps_fractional), (0.5, 42.0));
}

#[test]
fn headers_are_found_and_stripped() {
    let mut headers = HeaderMap::new();
    assert!(from_headers(&headers).is_none());
    headers.insert(HEADER, http::HeaderValue::from_static("TEXT eps=3"));
    assert_eq!(from_headers(&headers).unwrap().unwrap().eps, 3.0);
    let bin = b64(&orca_protobuf(&LoadReport {
        eps: 4.0,
        ..LoadReport::default()
    }));
    headers.insert(HEADER_BIN, http::HeaderValue::from_str(&bin).unwrap());
    // The binary header wins when both are there.
    assert_eq!(from_headers(&headers).unwrap().unwrap().eps, 4.0);
    assert!(strip(&mut headers));
    assert!(headers.is_empty());
    assert!(!strip(&mut headers));
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0..1.5f64, 0.0..1e6f64]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,11}"
}

prop_compose! {
    fn report()(
        cpu in value(), mem in value(), app in value(), rps in value(), eps in value(),
        named in proptest::collection::btree_map(name(), value(), 0..4),
        cost in proptest::collection::btree_map(name(), value(), 0..3),
        util in proptest::collection::btree_map(name(), value(), 0..3),
    ) -> LoadReport {
        LoadReport {
            cpu_utilization: cpu,
            mem_utilization: mem,
            application_utilization: app,
            rps_fractional: rps,
            eps,
            named_metrics: named.into_iter().collect(),
            request_cost: cost.into_iter().collect(),
            utilization: util.into_iter().collect(),
        }
    }
}

proptest! {
    #[test]
    fn every_form_reads_back_what_was_written(r in report()) {
        prop_assert_eq!(parse(orca_text(&r).as_bytes()).unwrap(), r.clone());
        let bin = b64(&orca_protobuf(&r));
        prop_assert_eq!(parse_bin(bin.as_bytes()).unwrap(), r.clone());
        prop_assert_eq!(parse(format!("BIN {bin}").as_bytes()).unwrap(), r);
    }

    #[test]
    fn any_bytes_give_a_report_or_an_error_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        prefix in prop_oneof![Just(""), Just("TEXT "), Just("JSON "), Just("BIN ")],
    ) {
        let mut value = prefix.as_bytes().to_vec();
        value.extend_from_slice(&bytes);
        let _ = parse(&value);
        let _ = parse_bin(&bytes);
        let _ = parse_bin(b64(&bytes).as_bytes());
    }

    #[test]
    fn accepted_reports_hold_only_finite_bounded_values(
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        if let Ok(r) = parse_bin(b64(&bytes).as_bytes()) {
            let all = [r.cpu_utilization, r.mem_utilization, r.application_utilization, r.rps_fractional, r.eps];
            let entries = r.named_metrics.iter().chain(&r.request_cost).chain(&r.utilization).map(|(_, v)| *v);
            for v in all.into_iter().chain(entries) {
                prop_assert!(v.is_finite() && (0.0..=MAX_VALUE).contains(&v));
            }
        }
    }
}
