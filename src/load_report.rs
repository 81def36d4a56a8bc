//! ORCA load reports: how loaded a pod says it is, parsed from its response headers or
//! trailers.
//!
//! Pods send them in any form Envoy reads: `endpoint-load-metrics: TEXT k=v,…` (`=` or `:`
//! within a pair), `JSON {…}` (the `OrcaLoadReport` fields), `BIN <base64 OrcaLoadReport>`,
//! or the base64 protobuf alone in `endpoint-load-metrics-bin` (padded or not). Pure: bytes in,
//! a report or the reason it is refused out. A refused report is the pod's fault, never the
//! request's: callers count it and go on as if none came.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, HeaderName};

/// The header (or trailer) of the text, JSON and prefixed binary forms.
pub const HEADER: HeaderName = HeaderName::from_static("endpoint-load-metrics");
/// The header (or trailer) of the bare base64 protobuf form, as gRPC sends it.
pub const HEADER_BIN: HeaderName = HeaderName::from_static("endpoint-load-metrics-bin");

/// Longest report read; a longer one is refused unread.
pub const MAX_LEN: usize = 4096;
/// Most entries over the three named maps.
pub const MAX_ENTRIES: usize = 64;
/// Longest metric name in a named map.
pub const MAX_NAME_LEN: usize = 128;
/// Largest value taken: no utilization, rate or metric of a real pod comes near it, so a bigger
/// one is a bug or an attack, and it would swamp every weight computed from it.
pub const MAX_VALUE: f64 = 1e9;

/// One report, as the `OrcaLoadReport` message has it (fields not sent are 0 or empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub cpu_utilization: f64,
    pub mem_utilization: f64,
    pub application_utilization: f64,
    /// Requests per second the pod serves.
    pub rps_fractional: f64,
    /// Errors per second the pod serves.
    pub eps: f64,
    pub named_metrics: Vec<(String, f64)>,
    pub request_cost: Vec<(String, f64)>,
    pub utilization: Vec<(String, f64)>,
}

impl LoadReport {
    /// The utilization that weighs the endpoint (gRFC A58): the application's own when it
    /// reports one, else the CPU's.
    pub fn utilization(&self) -> f64 {
        if self.application_utilization > 0.0 {
            self.application_utilization
        } else {
            self.cpu_utilization
        }
    }
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the report is {0} bytes, over the {MAX_LEN}-byte limit")]
    TooLong(usize),
    #[error("the report is not text")]
    NotText,
    #[error("the report does not start with TEXT, JSON or BIN")]
    UnknownFormat,
    #[error("{0:?} is not a name=value pair")]
    NotAPair(String),
    #[error("{0} has an empty name")]
    EmptyName(&'static str),
    #[error("a metric name is over {MAX_NAME_LEN} bytes")]
    NameTooLong,
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    #[error("{0} is not a number")]
    NotANumber(String),
    #[error("{0} is not finite")]
    NotFinite(String),
    #[error("{0} is negative")]
    Negative(String),
    #[error("{0} is over {MAX_VALUE}")]
    TooLarge(String),
    #[error("{0} appears twice")]
    Duplicate(String),
    #[error("more than {MAX_ENTRIES} named metrics")]
    TooManyEntries,
    #[error("the base64 is not valid")]
    Base64,
    #[error("the protobuf is not valid: {0}")]
    Protobuf(&'static str),
    #[error("the JSON is not valid: {0}")]
    Json(String),
}

/// The report in `headers` (a response's headers or trailers), if the pod sent one:
/// `endpoint-load-metrics-bin` first, as gRPC prefers it, then `endpoint-load-metrics`.
pub fn from_headers(headers: &HeaderMap) -> Option<Result<LoadReport, ReportError>> {
    if !has_report(headers) {
        return None;
    }
    if let Some(v) = headers.get(HEADER_BIN) {
        return Some(parse_bin(v.as_bytes()));
    }
    headers.get(HEADER).map(|v| parse(v.as_bytes()))
}

/// Whether `headers` may hold a report. Every answer is asked, and most have none: a look at
/// the few names an answer has is cheaper than hashing the two report names to look them up.
fn has_report(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with(HEADER.as_str()))
}

/// Takes the report headers out of `headers`; whether there were any.
pub fn strip(headers: &mut HeaderMap) -> bool {
    let bin = headers.remove(HEADER_BIN).is_some();
    headers.remove(HEADER).is_some() || bin
}

/// An `endpoint-load-metrics` value: `TEXT …`, `JSON …` or `BIN …`.
pub fn parse(value: &[u8]) -> Result<LoadReport, ReportError> {
    if value.len() > MAX_LEN {
        return Err(ReportError::TooLong(value.len()));
    }
    if let Some(rest) = value.strip_prefix(b"BIN ") {
        return parse_bin(rest);
    }
    let text = std::str::from_utf8(value).map_err(|_| ReportError::NotText)?;
    if let Some(rest) = text.strip_prefix("TEXT ") {
        parse_text(rest)
    } else if let Some(rest) = text.strip_prefix("JSON ") {
        parse_json(rest)
    } else {
        Err(ReportError::UnknownFormat)
    }
}

/// An `endpoint-load-metrics-bin` value (or what follows `BIN `): base64 of the protobuf.
pub fn parse_bin(value: &[u8]) -> Result<LoadReport, ReportError> {
    if value.len() > MAX_LEN {
        return Err(ReportError::TooLong(value.len()));
    }
    const BASE64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = BASE64
        .decode(value.trim_ascii())
        .map_err(|_| ReportError::Base64)?;
    protobuf::parse(&bytes)
}

fn parse_text(text: &str) -> Result<LoadReport, ReportError> {
    let mut report = Builder::default();
    for pair in text.split(',') {
        let split = pair
            .find(['=', ':'])
            .ok_or_else(|| ReportError::NotAPair(pair.trim().to_string()))?;
        let (name, value) = (pair[..split].trim(), pair[split + 1..].trim());
        let number = value
            .parse::<f64>()
            .map_err(|_| ReportError::NotANumber(name.to_string()))?;
        report.set(Field::from_text(name)?, number)?;
    }
    Ok(report.done())
}

fn parse_json(text: &str) -> Result<LoadReport, ReportError> {
    let value: json::Value =
        serde_json::from_str(text).map_err(|e| ReportError::Json(e.to_string()))?;
    let json::Value::Object(entries) = value else {
        return Err(ReportError::Json("not an object".into()));
    };
    let mut report = Builder::default();
    let mut maps_seen = Vec::new();
    for (name, value) in &entries {
        // The proto3 JSON mapping names fields in lowerCamelCase; parsers take the proto's
        // own names too.
        let map = match name.as_str() {
            "named_metrics" | "namedMetrics" => Some(Map::Named),
            "request_cost" | "requestCost" => Some(Map::Cost),
            "utilization" => Some(Map::Utilization),
            _ => None,
        };
        match (map, value) {
            (Some(map), json::Value::Object(inner)) => {
                if maps_seen.contains(&map) {
                    return Err(ReportError::Duplicate(map.prefix().to_string()));
                }
                maps_seen.push(map);
                for (key, value) in inner {
                    report.set(Field::Entry(map, key), value.number(key)?)?;
                }
            }
            (Some(_), _) => return Err(ReportError::Json(format!("{name} is not an object"))),
            (None, value) => {
                let field = Field::from_json(name)?;
                report.set(field, value.number(name)?)?;
            }
        }
    }
    Ok(report.done())
}

/// The named maps of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    Named,
    Cost,
    Utilization,
}

impl Map {
    fn prefix(self) -> &'static str {
        match self {
            Map::Named => "named_metrics",
            Map::Cost => "request_cost",
            Map::Utilization => "utilization",
        }
    }
}

/// One field of a report, as a name refers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field<'a> {
    Cpu,
    Mem,
    Application,
    Rps,
    Eps,
    Entry(Map, &'a str),
}

impl<'a> Field<'a> {
    fn from_text(name: &'a str) -> Result<Self, ReportError> {
        for map in [Map::Named, Map::Cost, Map::Utilization] {
            if let Some(key) = name
                .strip_prefix(map.prefix())
                .and_then(|n| n.strip_prefix('.'))
            {
                return Ok(Field::Entry(map, key));
            }
        }
        Field::core(name).ok_or_else(|| ReportError::UnknownMetric(name.to_string()))
    }

    fn from_json(name: &'a str) -> Result<Self, ReportError> {
        let core = match name {
            "cpuUtilization" => Some(Field::Cpu),
            "memUtilization" => Some(Field::Mem),
            "applicationUtilization" => Some(Field::Application),
            "rpsFractional" => Some(Field::Rps),
            other => Field::core(other),
        };
        core.ok_or_else(|| ReportError::UnknownMetric(name.to_string()))
    }

    fn core(name: &str) -> Option<Self> {
        Some(match name {
            "cpu_utilization" => Field::Cpu,
            "mem_utilization" => Field::Mem,
            "application_utilization" => Field::Application,
            "rps_fractional" => Field::Rps,
            "eps" => Field::Eps,
            _ => return None,
        })
    }

    fn name(self) -> String {
        match self {
            Field::Cpu => "cpu_utilization".into(),
            Field::Mem => "mem_utilization".into(),
            Field::Application => "application_utilization".into(),
            Field::Rps => "rps_fractional".into(),
            Field::Eps => "eps".into(),
            Field::Entry(map, key) => format!("{}.{key}", map.prefix()),
        }
    }
}

/// A report under construction: every value checked, every field set at most once.
#[derive(Default)]
struct Builder {
    report: LoadReport,
    /// The core fields set so far, one bit each.
    seen: u8,
    entries: usize,
}

impl Builder {
    fn set(&mut self, field: Field<'_>, value: f64) -> Result<(), ReportError> {
        if !value.is_finite() {
            return Err(ReportError::NotFinite(field.name()));
        }
        if value < 0.0 {
            return Err(ReportError::Negative(field.name()));
        }
        if value > MAX_VALUE {
            return Err(ReportError::TooLarge(field.name()));
        }
        let r = &mut self.report;
        let (bit, slot) = match field {
            Field::Cpu => (0, &mut r.cpu_utilization),
            Field::Mem => (1, &mut r.mem_utilization),
            Field::Application => (2, &mut r.application_utilization),
            Field::Rps => (3, &mut r.rps_fractional),
            Field::Eps => (4, &mut r.eps),
            Field::Entry(map, key) => return self.entry(map, key, value),
        };
        if self.seen & (1 << bit) != 0 {
            return Err(ReportError::Duplicate(field.name()));
        }
        self.seen |= 1 << bit;
        *slot = value;
        Ok(())
    }

    fn entry(&mut self, map: Map, key: &str, value: f64) -> Result<(), ReportError> {
        if key.is_empty() {
            return Err(ReportError::EmptyName(map.prefix()));
        }
        if key.len() > MAX_NAME_LEN {
            return Err(ReportError::NameTooLong);
        }
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(ReportError::TooManyEntries);
        }
        let list = match map {
            Map::Named => &mut self.report.named_metrics,
            Map::Cost => &mut self.report.request_cost,
            Map::Utilization => &mut self.report.utilization,
        };
        if list.iter().any(|(k, _)| k == key) {
            return Err(ReportError::Duplicate(Field::Entry(map, key).name()));
        }
        list.push((key.to_string(), value));
        Ok(())
    }

    fn done(self) -> LoadReport {
        self.report
    }
}

/// Just enough protobuf to read one `xds.data.orca.v3.OrcaLoadReport`.
mod protobuf {
    use super::{Builder, Field, LoadReport, Map, ReportError};

    const VARINT: u64 = 0;
    const FIXED64: u64 = 1;
    const LEN: u64 = 2;
    const FIXED32: u64 = 5;

    pub(super) fn parse(mut bytes: &[u8]) -> Result<LoadReport, ReportError> {
        let mut report = Builder::default();
        // Field 3 is the deprecated integer `rps`; it counts only when `rps_fractional` is
        // absent.
        let mut integer_rps = None;
        while !bytes.is_empty() {
            let (number, wire) = tag(&mut bytes)?;
            let field = match number {
                1 => Some(Field::Cpu),
                2 => Some(Field::Mem),
                6 => Some(Field::Rps),
                7 => Some(Field::Eps),
                9 => Some(Field::Application),
                _ => None,
            };
            let map = match number {
                4 => Some(Map::Cost),
                5 => Some(Map::Utilization),
                8 => Some(Map::Named),
                _ => None,
            };
            match (field, map, number, wire) {
                (Some(field), _, _, FIXED64) => report.set(field, f64_le(&mut bytes)?)?,
                (_, Some(map), _, LEN) => {
                    let entry = length_delimited(&mut bytes)?;
                    let (key, value) = map_entry(entry)?;
                    report.set(Field::Entry(map, &key), value)?;
                }
                (None, None, 3, VARINT) => integer_rps = Some(varint(&mut bytes)?),
                (None, None, 3, _) | (Some(_), _, _, _) | (_, Some(_), _, _) => {
                    return Err(ReportError::Protobuf(
                        "a known field has the wrong wire type",
                    ));
                }
                // Fields this version does not know are skipped, as protobuf readers do.
                (None, None, _, wire) => skip(&mut bytes, wire)?,
            }
        }
        if let Some(rps) = integer_rps
            && report.seen & (1 << 3) == 0
        {
            report.set(Field::Rps, rps as f64)?;
        }
        Ok(report.done())
    }

    /// A map entry message: key (field 1, a string) and value (field 2, a double).
    fn map_entry(mut bytes: &[u8]) -> Result<(String, f64), ReportError> {
        let (mut key, mut value) = (None, 0.0);
        while !bytes.is_empty() {
            match tag(&mut bytes)? {
                (1, LEN) => {
                    let raw = length_delimited(&mut bytes)?;
                    let text = std::str::from_utf8(raw)
                        .map_err(|_| ReportError::Protobuf("a metric name is not UTF-8"))?;
                    key = Some(text.to_string());
                }
                (2, FIXED64) => value = f64_le(&mut bytes)?,
                (1 | 2, _) => {
                    return Err(ReportError::Protobuf("a map entry has a wrong wire type"));
                }
                (_, wire) => skip(&mut bytes, wire)?,
            }
        }
        Ok((key.unwrap_or_default(), value))
    }

    fn tag(bytes: &mut &[u8]) -> Result<(u64, u64), ReportError> {
        let key = varint(bytes)?;
        if key >> 3 == 0 {
            return Err(ReportError::Protobuf("field number 0"));
        }
        Ok((key >> 3, key & 7))
    }

    fn varint(bytes: &mut &[u8]) -> Result<u64, ReportError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes
                .split_first()
                .ok_or(ReportError::Protobuf("truncated varint"))?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ReportError::Protobuf("varint over 10 bytes"))
    }

    fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Result<&'b [u8], ReportError> {
        if bytes.len() < n {
            return Err(ReportError::Protobuf("truncated field"));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }

    fn f64_le(bytes: &mut &[u8]) -> Result<f64, ReportError> {
        let raw = take(bytes, 8)?;
        let mut eight = [0u8; 8];
        eight.copy_from_slice(raw);
        Ok(f64::from_le_bytes(eight))
    }

    fn length_delimited<'b>(bytes: &mut &'b [u8]) -> Result<&'b [u8], ReportError> {
        let n = varint(bytes)?;
        let n = usize::try_from(n).map_err(|_| ReportError::Protobuf("length overflows"))?;
        take(bytes, n)
    }

    fn skip(bytes: &mut &[u8], wire: u64) -> Result<(), ReportError> {
        match wire {
            VARINT => varint(bytes).map(drop),
            FIXED64 => take(bytes, 8).map(drop),
            LEN => length_delimited(bytes).map(drop),
            FIXED32 => take(bytes, 4).map(drop),
            _ => Err(ReportError::Protobuf("unsupported wire type")),
        }
    }
}

/// A JSON value that keeps an object's entries as sent, duplicates included (serde_json's own
/// `Value` keeps the last of each name, and a report must not say two things at once).
mod json {
    use super::ReportError;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use std::fmt;

    pub(super) enum Value {
        Number(f64),
        Object(Vec<(String, Value)>),
        Other,
    }

    impl Value {
        pub(super) fn number(&self, name: &str) -> Result<f64, ReportError> {
            match self {
                Value::Number(n) => Ok(*n),
                _ => Err(ReportError::NotANumber(name.to_string())),
            }
        }
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ValueVisitor)
        }
    }

    struct ValueVisitor;

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::Number(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v as f64))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v as f64))
        }
        fn visit_str<E>(self, _: &str) -> Result<Value, E> {
            Ok(Value::Other)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
            Ok(Value::Other)
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Other)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(Value::Other)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut entries = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                if entries.len() >= super::MAX_ENTRIES * 2 {
                    return Err(serde::de::Error::custom("too many entries"));
                }
                entries.push((k, v));
            }
            Ok(Value::Object(entries))
        }
    }
}

#[cfg(test)]
mod tests;
