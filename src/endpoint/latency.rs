//! An endpoint's recent response times as a coarse histogram, for its p99 on the dashboard.
//!
//! Power-of-two buckets of microseconds (bucket k holds [2^k, 2^(k+1)) µs, the last one
//! everything from about 8 s up): one atomic add per response, no lock, no allocation after
//! the first. Two windows: responses land in `current`; the dashboard's sampler rotates it into
//! `previous` once a minute, so the p99 covers the last one to two minutes. 192 bytes per
//! endpoint that has answered at least once (made on its first response).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const BUCKETS: usize = 24;

#[derive(Debug, Default)]
pub struct LatencyWindow {
    current: [AtomicU32; BUCKETS],
    previous: [AtomicU32; BUCKETS],
}

impl LatencyWindow {
    /// Counts one response time.
    pub fn record(&self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let bucket = (63 - micros.leading_zeros() as usize).min(BUCKETS - 1);
        self.current[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Starts a new window: what was current becomes the previous one.
    pub fn rotate(&self) {
        for (current, previous) in self.current.iter().zip(&self.previous) {
            previous.store(current.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The 99th percentile over both windows, as the upper bound of its bucket (so within a
    /// factor of two above the true value); `None` when neither window has a response.
    pub fn p99(&self) -> Option<Duration> {
        let counts: Vec<u64> = self
            .current
            .iter()
            .zip(&self.previous)
            .map(|(c, p)| {
                u64::from(c.load(Ordering::Relaxed)) + u64::from(p.load(Ordering::Relaxed))
            })
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // The smallest bucket with at least 99% of the responses at or below it.
        let rank = total - total / 100;
        let mut seen = 0;
        let bucket = counts.iter().position(|c| {
            seen += c;
            seen >= rank
        })?;
        Some(Duration::from_micros(1u64 << (bucket + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_is_the_bucket_of_the_slowest_percent() {
        let w = LatencyWindow::default();
        assert_eq!(w.p99(), None);
        for _ in 0..990 {
            w.record(Duration::from_micros(700)); // bucket 9: [512, 1024) µs
        }
        for _ in 0..10 {
            w.record(Duration::from_millis(40)); // bucket 15: [32.8, 65.5) ms
        }
        assert_eq!(
            w.p99(),
            Some(Duration::from_micros(1024)),
            "99% are under 1 ms"
        );
        for _ in 0..10 {
            w.record(Duration::from_millis(40));
        }
        assert_eq!(
            w.p99(),
            Some(Duration::from_micros(65_536)),
            "2% are slow now"
        );
        // Two rotations forget a window's responses.
        w.rotate();
        assert_eq!(w.p99(), Some(Duration::from_micros(65_536)));
        w.rotate();
        assert_eq!(w.p99(), None);
        // Outliers land in the first and the last bucket, never outside.
        w.record(Duration::ZERO);
        w.record(Duration::from_secs(3600));
        assert_eq!(w.p99(), Some(Duration::from_micros(1 << BUCKETS)));
    }
}
