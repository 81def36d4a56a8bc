//! The commands, one module each, and what they share: the listener flags, the runtime, the
//! signals and the affinity key file.

pub mod check;
pub mod crd;
pub mod demo;
pub mod inspect;
pub mod logging;
pub mod migrate;
pub mod run;
pub mod serve;

mod affinity_key;
mod listen;
mod runtime;

use std::time::Duration;

/// `30s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 30s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: the unit must be ms, s or m")),
    }
}
