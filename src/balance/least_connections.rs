//! Least connections: the endpoint with the fewest requests in flight.

use super::slow_start::factor;
use super::{Balance, Pick, SlowStart};
use crate::endpoint::Endpoint;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Up to this many endpoints a pick scans them all (exact); above, it compares a few random
/// ones, as Envoy does, so a pick stays O(1) on huge pools.
const EXACT_UP_TO: usize = 64;
/// Random candidates compared above [`EXACT_UP_TO`].
const SAMPLES: usize = 4;

#[derive(Debug)]
pub struct LeastConnections {
    /// Where the next scan starts: ties go round robin instead of always to the first.
    cursor: AtomicUsize,
    slow_start: Option<SlowStart>,
}

impl LeastConnections {
    pub fn new(slow_start: Option<SlowStart>) -> Self {
        LeastConnections {
            cursor: AtomicUsize::new(0),
            slow_start,
        }
    }

    /// In-flight load as the pick sees it: a warming endpoint counts as more loaded.
    fn load(&self, e: &Endpoint, pick: &Pick<'_>) -> f64 {
        let in_flight = (e.in_flight() + 1) as f64;
        match self.slow_start {
            None => in_flight,
            Some(_) => in_flight / factor(self.slow_start, e, pick.now),
        }
    }

    fn best<I: Iterator<Item = usize>>(
        &self,
        endpoints: &[Arc<Endpoint>],
        pick: &Pick<'_>,
        candidates: I,
    ) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for i in candidates {
            let e = &endpoints[i];
            if !(pick.accept)(e) {
                continue;
            }
            let load = self.load(e, pick);
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }
}

impl Balance for LeastConnections {
    fn pick(&self, endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        if n <= EXACT_UP_TO {
            let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            return self.best(endpoints, pick, (0..n).map(|k| (start + k) % n));
        }
        let sampled = self.best(endpoints, pick, (0..SAMPLES).map(|_| fastrand::usize(..n)));
        sampled.or_else(|| super::scan_from_random(endpoints, pick))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, endpoints};
    use super::*;

    #[test]
    fn never_picks_a_busier_endpoint() {
        fastrand::seed(3);
        let eps = endpoints(8);
        let lc = LeastConnections::new(None);
        let accept = |_: &Endpoint| true;
        let mut guards = Vec::new();
        // Random work arrives and finishes; every pick must be a least-loaded endpoint.
        for step in 0..5_000 {
            let i = lc.pick(&eps, &Pick::new(&accept)).unwrap();
            let min = eps.iter().map(|e| e.in_flight()).min().unwrap();
            assert_eq!(eps[i].in_flight(), min, "step {step}");
            guards.push(eps[i].start_request());
            if fastrand::u8(..) < 120 && !guards.is_empty() {
                let k = fastrand::usize(..guards.len());
                guards.swap_remove(k);
            }
        }
    }

    #[test]
    fn ties_rotate_instead_of_favouring_the_first() {
        let eps = endpoints(5);
        let c = counts(&LeastConnections::new(None), &eps, 1000);
        assert_eq!(c, [200; 5]);
    }

    #[test]
    fn large_pools_sample_and_still_prefer_idle_endpoints() {
        fastrand::seed(5);
        let eps = endpoints(1000);
        // Half the endpoints are busy.
        let _busy: Vec<_> = eps.iter().step_by(2).map(|e| e.start_request()).collect();
        let lc = LeastConnections::new(None);
        let accept = |_: &Endpoint| true;
        let idle_picks = (0..10_000)
            .filter(|_| eps[lc.pick(&eps, &Pick::new(&accept)).unwrap()].in_flight() == 0)
            .count();
        // Four samples all busy: 1/16 of picks.
        assert!(idle_picks > 9_200, "{idle_picks}");
    }
}
