//! Peak-EWMA with the power of two choices (Finagle, linkerd): of two random endpoints, the
//! one with the lower latency EWMA × (in flight + 1). Slow endpoints get less traffic, and a
//! burst of in-flight requests on one counts against it at once.

use super::slow_start::factor;
use super::{Balance, Pick, SlowStart};
use crate::endpoint::Endpoint;
use std::sync::Arc;
use std::time::Duration;

/// The latency assumed for an endpoint with no response yet: new endpoints are neither
/// flooded (as 0 would) nor starved.
const DEFAULT_LATENCY_NANOS: f64 = 5_000_000.0;

#[derive(Debug)]
pub struct PeakEwma {
    pub decay: Duration,
    slow_start: Option<SlowStart>,
}

impl PeakEwma {
    pub fn new(decay: Duration, slow_start: Option<SlowStart>) -> Self {
        PeakEwma { decay, slow_start }
    }

    fn cost(&self, e: &Endpoint, pick: &Pick<'_>) -> f64 {
        let latency = match e.latency_ewma_at(pick.now, self.decay) {
            0.0 => DEFAULT_LATENCY_NANOS,
            l => l,
        };
        latency * (e.in_flight() + 1) as f64 / factor(self.slow_start, e, pick.now)
    }
}

impl Balance for PeakEwma {
    fn pick(&self, endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize> {
        let n = endpoints.len();
        match n {
            0 => return None,
            1 => return (pick.accept)(&endpoints[0]).then_some(0),
            _ => {}
        }
        for _ in 0..4 {
            // Two distinct random endpoints.
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            let (ea, eb) = (&endpoints[a], &endpoints[b]);
            match ((pick.accept)(ea), (pick.accept)(eb)) {
                (true, true) => {
                    return Some(if self.cost(eb, pick) < self.cost(ea, pick) {
                        b
                    } else {
                        a
                    });
                }
                (true, false) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => {}
            }
        }
        super::scan_from_random(endpoints, pick)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::endpoints;
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_slow_endpoint_gets_little_traffic() {
        fastrand::seed(9);
        let eps = endpoints(4);
        let p = PeakEwma::new(Duration::from_secs(10), None);
        let now = Instant::now();
        for (i, e) in eps.iter().enumerate() {
            let ms = if i == 0 { 50 } else { 1 };
            e.observe_latency(Duration::from_millis(ms), now, p.decay);
        }
        let accept = |_: &Endpoint| true;
        let mut slow = 0;
        for _ in 0..10_000 {
            let pick = Pick {
                now,
                key: None,
                accept: &accept,
            };
            if p.pick(&eps, &pick) == Some(0) {
                slow += 1;
            }
        }
        // It only wins when drawn twice, which distinct draws never do.
        assert_eq!(slow, 0);
    }

    #[test]
    fn in_flight_counts_against_an_endpoint() {
        fastrand::seed(10);
        let eps = endpoints(2);
        let p = PeakEwma::new(Duration::from_secs(10), None);
        let now = Instant::now();
        for e in &eps {
            e.observe_latency(Duration::from_millis(10), now, p.decay);
        }
        let _busy = eps[0].start_request();
        let accept = |_: &Endpoint| true;
        let pick = Pick {
            now,
            key: None,
            accept: &accept,
        };
        assert!((0..100).all(|_| p.pick(&eps, &pick) == Some(1)));
    }
}
