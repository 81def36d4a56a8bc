//! Slow start: a new endpoint's share ramps up instead of arriving in full.

use crate::endpoint::Endpoint;
use std::time::{Duration, Instant};

/// The share a brand-new endpoint starts with.
const FLOOR: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
}

impl SlowStart {
    /// The endpoint's share of a full weight at `now`: from 0.1 when it joins, growing
    /// linearly to 1 at the end of the window.
    pub fn factor(&self, endpoint: &Endpoint, now: Instant) -> f64 {
        let Some(added_at) = endpoint.added_at else {
            return 1.0;
        };
        let age = now.saturating_duration_since(added_at);
        if age >= self.window {
            return 1.0;
        }
        FLOOR + (1.0 - FLOOR) * age.as_secs_f64() / self.window.as_secs_f64()
    }
}

/// The factor under an optional slow start (1 without one).
pub(super) fn factor(slow_start: Option<SlowStart>, endpoint: &Endpoint, now: Instant) -> f64 {
    slow_start.map_or(1.0, |s| s.factor(endpoint, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_from_the_floor_to_full() {
        let s = SlowStart {
            window: Duration::from_secs(100),
        };
        let t0 = Instant::now();
        let e = Endpoint::joined("127.0.0.1:1".parse().unwrap(), "a", Some(t0));
        let at = |secs: u64| s.factor(&e, t0 + Duration::from_secs(secs));
        assert!((at(0) - 0.1).abs() < 1e-9);
        assert!((at(25) - 0.325).abs() < 1e-9);
        assert!((at(50) - 0.55).abs() < 1e-9);
        assert!((at(75) - 0.775).abs() < 1e-9);
        assert_eq!(at(100), 1.0);
        assert_eq!(at(1000), 1.0);
        // Monotonic.
        let shape: Vec<f64> = (0..=100).map(at).collect();
        assert!(shape.windows(2).all(|w| w[0] <= w[1]));
        // Endpoints there from the start are warm.
        let warm = Endpoint::new("127.0.0.1:1".parse().unwrap(), "a");
        assert_eq!(s.factor(&warm, t0), 1.0);
    }
}
