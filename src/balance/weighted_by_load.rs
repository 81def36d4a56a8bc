//! `WeightedByLoad`: round robin weighted by the load each pod reports (gRFC A58's weights).
//!
//! An endpoint's weight is `qps / (utilization + eps / qps × penalty)`: how many requests it
//! serves per unit of utilization, less for the errors it returns. Weights are recomputed on a
//! period by [`Balance::refresh`], off the request path, into a [`LoadSchedule`] that picks
//! read lock-free, at the cost of a round robin pick. Endpoints without a weight (no report yet, still in the blackout after their
//! first, or their reports expired) take the mean; with fewer than two weighted endpoints the
//! schedule is plain round robin.

use super::{Balance, LoadSchedule, Pick, SlowStart};
use crate::endpoint::{Endpoint, LoadSnapshot};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How weights are made from reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadWeighting {
    /// A new run of reports counts only after this long.
    pub blackout: Duration,
    /// A report counts for this long.
    pub expiry: Duration,
    /// How often the weights are recomputed.
    pub period: Duration,
    /// gRPC's `error_utilization_penalty`.
    pub error_penalty: f64,
}

impl LoadWeighting {
    /// The weight of an endpoint with these inputs; `None` when it has none of its own.
    pub fn weight(&self, load: &LoadSnapshot) -> Option<f64> {
        let reporting_for = load.reporting_for?;
        if reporting_for < self.blackout || load.rps <= 0.0 || load.utilization <= 0.0 {
            return None;
        }
        let penalty = load.eps / load.rps * self.error_penalty;
        let weight = load.rps / (load.utilization + penalty);
        weight.is_finite().then_some(weight)
    }
}

#[derive(Debug)]
pub struct WeightedByLoad {
    weighting: LoadWeighting,
    slow_start: Option<SlowStart>,
    schedule: LoadSchedule,
    /// When the weights were last recomputed (nanoseconds from `made`).
    refreshed: AtomicU64,
    made: Instant,
}

impl WeightedByLoad {
    /// The balancer over `endpoints`, weighed at once from what they have reported so far (so
    /// a table rebuild keeps the weights instead of starting over at round robin).
    pub fn new(
        endpoints: &[Arc<Endpoint>],
        weighting: LoadWeighting,
        slow_start: Option<SlowStart>,
        now: Instant,
    ) -> Self {
        let balancer = WeightedByLoad {
            weighting,
            slow_start,
            schedule: LoadSchedule::new(endpoints.len()),
            refreshed: AtomicU64::new(0),
            made: now,
        };
        balancer.reweigh(endpoints, now);
        balancer
    }

    /// Recomputes every weight now.
    fn reweigh(&self, endpoints: &[Arc<Endpoint>], now: Instant) {
        let weights: Vec<f64> = endpoints
            .iter()
            .map(|e| {
                let load = e.load();
                let weight = self
                    .weighting
                    .weight(&load.snapshot(now, self.weighting.expiry));
                load.set_weight(weight);
                weight.unwrap_or(0.0)
            })
            .collect();
        self.schedule.set_weights(&weights);
    }

    /// Whether a schedule is in use (two or more endpoints have weights).
    pub fn is_weighted(&self) -> bool {
        self.schedule.is_weighted()
    }
}

impl Balance for WeightedByLoad {
    fn pick(&self, endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize> {
        let tries = endpoints.len().saturating_mul(4).max(16);
        super::take_turn(endpoints, pick, self.slow_start, tries, || {
            self.schedule.next()
        })
    }

    fn needs_refresh(&self) -> bool {
        true
    }

    fn refresh(&self, endpoints: &[Arc<Endpoint>], now: Instant) {
        let at = now.saturating_duration_since(self.made).as_nanos() as u64;
        let last = self.refreshed.load(Ordering::Relaxed);
        if at.saturating_sub(last) < self.weighting.period.as_nanos() as u64 {
            return;
        }
        self.refreshed.store(at, Ordering::Relaxed);
        for e in endpoints {
            e.load()
                .measure(e.requests(), e.failures(), now, self.weighting.period);
        }
        self.reweigh(endpoints, now);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, endpoints};
    use super::*;
    use crate::load_report::LoadReport;

    fn weighting() -> LoadWeighting {
        LoadWeighting {
            blackout: Duration::from_secs(10),
            expiry: Duration::from_secs(180),
            period: Duration::from_secs(1),
            error_penalty: 1.0,
        }
    }

    fn report(cpu: f64, rps: f64, eps: f64) -> LoadReport {
        LoadReport {
            cpu_utilization: cpu,
            rps_fractional: rps,
            eps,
            ..LoadReport::default()
        }
    }

    #[test]
    fn weight_is_qps_over_utilization_and_errors() {
        let w = weighting();
        let load = |utilization, rps, eps, secs| LoadSnapshot {
            utilization,
            rps,
            eps,
            reporting_for: Some(Duration::from_secs(secs)),
            report_age: Some(Duration::ZERO),
        };
        assert_eq!(w.weight(&load(0.5, 100.0, 0.0, 60)), Some(200.0));
        // 10% errors at penalty 1 add 0.1 to the utilization.
        let with_errors = w.weight(&load(0.5, 100.0, 10.0, 60)).unwrap();
        assert!((with_errors - 100.0 / 0.6).abs() < 1e-9);
        // In the blackout, without qps or without utilization: no weight of its own.
        assert_eq!(w.weight(&load(0.5, 100.0, 0.0, 5)), None);
        assert_eq!(w.weight(&load(0.5, 0.0, 0.0, 60)), None);
        assert_eq!(w.weight(&load(0.0, 100.0, 0.0, 60)), None);
        assert_eq!(
            w.weight(&LoadSnapshot {
                reporting_for: None,
                ..load(0.5, 100.0, 0.0, 60)
            }),
            None
        );
    }

    #[test]
    fn shares_follow_reported_load_after_the_blackout() {
        let eps = endpoints(3);
        let t0 = Instant::now();
        for (e, cpu) in eps.iter().zip([0.2, 0.5, 0.9]) {
            e.load().record(&report(cpu, 100.0, 0.0), t0);
        }
        let b = WeightedByLoad::new(&eps, weighting(), None, t0);
        // In the blackout: round robin.
        assert!(!b.is_weighted());
        assert_eq!(counts(&b, &eps, 300), [100, 100, 100]);
        // After it (a recompute 11 s later), weights 500 : 200 : 111.
        b.refresh(&eps, t0 + Duration::from_secs(11));
        assert!(b.is_weighted());
        let c = counts(&b, &eps, 81_100);
        let total: f64 = 500.0 + 200.0 + 100.0 / 0.9;
        for (got, w) in c.iter().zip([500.0, 200.0, 100.0 / 0.9]) {
            let share = *got as f64 / 81_100.0;
            assert!((share - w / total).abs() < 0.01, "{c:?}");
        }
        assert_eq!(eps[0].load().weight(), Some(500.0));
    }

    #[test]
    fn refresh_keeps_its_period() {
        let eps = endpoints(2);
        let t0 = Instant::now();
        let b = WeightedByLoad::new(&eps, weighting(), None, t0);
        for (e, cpu) in eps.iter().zip([0.2, 0.8]) {
            e.load().record(&report(cpu, 100.0, 0.0), t0);
        }
        let mut w = weighting();
        w.blackout = Duration::ZERO;
        let b2 = WeightedByLoad::new(&eps, w, None, t0);
        assert!(b2.is_weighted());
        // Within the period a refresh does nothing, even though the blackout has passed.
        b.refresh(&eps, t0 + Duration::from_millis(500));
        assert!(!b.is_weighted());
    }

    #[test]
    fn one_weighted_endpoint_is_round_robin_and_refused_ones_are_skipped() {
        let eps = endpoints(3);
        let t0 = Instant::now();
        eps[0].load().record(&report(0.5, 100.0, 0.0), t0);
        let mut w = weighting();
        w.blackout = Duration::ZERO;
        let b = WeightedByLoad::new(&eps, w, None, t0);
        assert!(!b.is_weighted());
        let banned = eps[1].addr;
        let accept = |e: &Endpoint| e.addr != banned;
        for _ in 0..20 {
            assert_ne!(b.pick(&eps, &Pick::new(&accept)), Some(1));
        }
        let none = |_: &Endpoint| false;
        assert_eq!(b.pick(&eps, &Pick::new(&none)), None);
    }
}
