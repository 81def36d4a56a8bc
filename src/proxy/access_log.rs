//! What happens when a response ends: its metrics, and its access-log line.

use crate::metrics::Metrics;
use crate::routing::Pool;
use http::Method;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The access log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLog {
    #[default]
    Off,
    /// One JSON object a line.
    Json,
    /// The Common Log Format, then pool, endpoint, duration in ms and request id; client text
    /// in it escaped as nginx does (`\xHH`).
    Common,
}

/// What forwarding learnt about a request, for the log.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub endpoint: Option<SocketAddr>,
    pub upstream: Option<Duration>,
    pub retries: u32,
    /// `hit` (a valid cookie was honoured), `miss` (a cookie that could not be), `new` (no
    /// cookie: one was issued), or `-` (the pool has no affinity).
    pub affinity: &'static str,
}

/// A request being answered: finished (counted, logged) when its response body ends.
#[derive(Debug)]
pub struct Completion {
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    /// The pool that answered, whose in-flight gauge was raised when the request arrived;
    /// `None` when no pool matched.
    pub pool: Option<Arc<Pool>>,
    pub method: Method,
    pub status: u16,
    pub log: Option<(AccessLog, Box<Entry>)>,
}

/// The request side of an access-log line.
#[derive(Debug)]
pub struct Entry {
    pub request_id: String,
    pub client: IpAddr,
    pub host: String,
    pub target: String,
    pub version: http::Version,
    pub summary: Summary,
}

impl Completion {
    /// Counts the request and writes its log line; `bytes` is the response body size sent.
    pub fn finish(self, bytes: u64) {
        let took = self.started.elapsed();
        match &self.pool {
            Some(pool) => {
                let handles = pool.metrics(&self.metrics);
                handles.request(&self.metrics, &self.method, self.status, took);
                handles.in_flight.dec();
            }
            None => self
                .metrics
                .request(&no_pool(), &self.method, self.status, took),
        }
        let Some((format, entry)) = &self.log else {
            return;
        };
        let line = match format {
            AccessLog::Off => return,
            AccessLog::Json => json_line(&self, entry, bytes, took),
            AccessLog::Common => common_line(&self, entry, bytes, took),
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn json_line(c: &Completion, e: &Entry, bytes: u64, took: Duration) -> String {
    let line = serde_json::json!({
        "time": rfc3339(SystemTime::now()),
        "request_id": e.request_id,
        "client": e.client.to_string(),
        "method": c.method.as_str(),
        "host": e.host,
        "path": e.target,
        "protocol": format!("{:?}", e.version),
        "status": c.status,
        "bytes": bytes,
        "duration_ms": millis(took),
        "upstream_ms": e.summary.upstream.map(millis),
        "pool": c.pool.as_ref().map(|p| p.name.as_str()),
        "endpoint": e.summary.endpoint.map(|a| a.to_string()),
        "retries": e.summary.retries,
        "affinity": e.summary.affinity,
    });
    format!("{line}\n")
}

fn common_line(c: &Completion, e: &Entry, bytes: u64, took: Duration) -> String {
    let (date, time) = civil(SystemTime::now());
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months[(date.1 as usize).saturating_sub(1).min(11)];
    format!(
        "{} - - [{:02}/{month}/{}:{:02}:{:02}:{:02} +0000] \"{} {} {:?}\" {} {bytes} \"{}\" \"{}\" {:.3} {}\n",
        e.client,
        date.2,
        date.0,
        time.0,
        time.1,
        time.2,
        escape(c.method.as_str(), Field::Quoted),
        escape(&e.target, Field::Quoted),
        e.version,
        c.status,
        escape(pool_name(c), Field::Quoted),
        e.summary
            .endpoint
            .map_or("-".to_string(), |a| a.to_string()),
        millis(took),
        escape(&e.request_id, Field::Bare),
    )
}

/// Where text goes in a Common Log Format line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Between double quotes: a space is part of the field.
    Quoted,
    /// Alone: a space would start another field.
    Bare,
}

/// Text a client chose, escaped for a Common Log Format line the way nginx escapes its log
/// variables: `"`, `\`, control bytes and non-ASCII bytes become `\xHH`, and so does a space in
/// a bare field. A client can then neither end a field early, nor start a line, nor write bytes
/// a terminal acts on, and the escape itself cannot be forged.
fn escape(text: &str, field: Field) -> Cow<'_, str> {
    let plain = |b: u8| {
        (b' '..=b'~').contains(&b)
            && b != b'"'
            && b != b'\\'
            && (b != b' ' || field == Field::Quoted)
    };
    if text.bytes().all(plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for b in text.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// `2026-11-27T21:07:53.123Z`
fn rfc3339(t: SystemTime) -> String {
    let ((y, mo, d), (h, mi, s)) = civil(t);
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// (year, month, day), (hour, minute, second) in UTC.
fn civil(t: SystemTime) -> ((i64, i64, i64), (i64, i64, i64)) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    ((y, m, d), (rem / 3600, rem % 3600 / 60, rem % 60))
}

/// A new request id: 128 random bits as 32 lower-case hex digits.
pub fn new_request_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for digit in id.iter_mut().rev() {
        *digit = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    id
}

/// The `pool` label of requests no pool matched: empty.
fn no_pool() -> Arc<String> {
    static EMPTY: std::sync::OnceLock<Arc<String>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(String::new())).clone()
}

/// The pool's name for a log line: `-` when none matched.
fn pool_name(c: &Completion) -> &str {
    c.pool.as_ref().map_or("-", |p| p.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(
            a.iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    fn completion() -> Completion {
        Completion {
            started: Instant::now(),
            metrics: Arc::default(),
            pool: None,
            method: Method::GET,
            status: 200,
            log: None,
        }
    }

    fn entry(request_id: &str, target: &str) -> Entry {
        Entry {
            request_id: request_id.into(),
            client: IpAddr::from([192, 0, 2, 7]),
            host: "example.com".into(),
            target: target.into(),
            version: http::Version::HTTP_11,
            summary: Summary::default(),
        }
    }

    /// The line's fields: split at spaces outside quotes (an escaped quote does not count).
    fn fields(line: &str) -> Vec<String> {
        let (mut out, mut field, mut quoted, mut escaped) = (vec![], String::new(), false, false);
        for c in line.trim_end_matches('\n').chars() {
            match c {
                ' ' if !quoted => out.push(std::mem::take(&mut field)),
                '"' if !escaped => quoted = !quoted,
                _ => {}
            }
            if c != ' ' || quoted {
                field.push(c);
            }
            escaped = c == '\\' && !escaped;
        }
        out.push(field);
        out
    }

    #[test]
    fn client_text_cannot_add_fields_or_lines_to_a_common_log_line() {
        let took = Duration::from_millis(3);
        let plain = common_line(&completion(), &entry("abc", "/a"), 2, took);
        let hostile = [
            ("abc\" 200 \"x", "/a"),
            ("a b c", "/a"),
            ("abc", "/a\" 200 2 \"pool\" \"-\" 1.0 forged"),
            ("abc\\", "/a\\\" x"),
            ("abc", "/a\nGET /forged"),
            ("abc\t\x7f", "/caf\u{e9}\r"),
        ];
        for (id, target) in hostile {
            let line = common_line(&completion(), &entry(id, target), 2, took);
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert!(line.ends_with('\n'), "{line:?}");
            assert!(
                line.bytes()
                    .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)),
                "{line:?}"
            );
            assert_eq!(line.matches('"').count(), 6, "{line:?}");
            assert_eq!(fields(&line).len(), fields(&plain).len(), "{line:?}");
        }
    }

    #[test]
    fn common_log_escapes_as_nginx_does() {
        let took = Duration::from_millis(3);
        let line = common_line(&completion(), &entry("a\" b", "/x\"\\\u{e9}"), 2, took);
        assert!(
            line.contains(r#""GET /x\x22\x5C\xC3\xA9 HTTP/1.1""#),
            "{line}"
        );
        assert!(line.ends_with(" a\\x22\\x20b\n"), "{line}");
        // weir's own ids and ordinary targets are written as they are.
        let line = common_line(&completion(), &entry("0af3", "/a/b?c=d&e=%22"), 2, took);
        assert!(line.contains(r#""GET /a/b?c=d&e=%22 HTTP/1.1""#), "{line}");
        assert!(line.ends_with(" 0af3\n"), "{line}");
    }

    #[test]
    fn dates_are_civil() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_941_321_600 + 3_723);
        assert_eq!(rfc3339(t), "2031-07-09T01:02:03.000Z");
        assert_eq!(civil(SystemTime::UNIX_EPOCH), ((1970, 1, 1), (0, 0, 0)));
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(19_782 * 86_400);
        assert_eq!(civil(leap).0, (2024, 2, 29));
    }
}
