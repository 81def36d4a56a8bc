//! Gateway API durations (GEP-2257): one to four `<number><unit>` parts, each number of up
//! to five digits, units `h`, `m`, `s`, `ms`: `1h`, `10s`, `1m30s`, `500ms`, `0s`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Gateway API duration (like 10s, 1m30s or 500ms)")]
pub struct DurationError(pub String);

pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_string());
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total += unit * n as u32;
        parts += 1;
        if parts > 4 {
            return Err(bad());
        }
    }
    if parts == 0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gep_examples() {
        let ok = [
            ("0s", 0),
            ("1h", 3_600_000),
            ("10s", 10_000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1h2m3s4ms", 3_723_004),
            ("99999s", 99_999_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in [
            "",
            "1",
            "s",
            "1d",
            "1.5s",
            "-1s",
            "100000s",
            "1h1m1s1ms1h",
            "1 s",
            "1S",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
