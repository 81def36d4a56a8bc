//! What a pod last reported of its load, and what weir measured of it: the inputs of the
//! `WeightedByLoad` weights, kept as atomics so the response path records a report without a
//! lock, and the weight recompute reads them off that path.

use super::{epoch, nanos_since_epoch};
use crate::load_report::LoadReport;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One endpoint's load, made on its first report or first weight recompute.
#[derive(Debug, Default)]
pub struct EndpointLoad {
    /// From the latest report, as `f64` bits.
    utilization: AtomicU64,
    rps: AtomicU64,
    eps: AtomicU64,
    /// Since when reports with a utilization have come without a gap longer than the expiry
    /// (nanoseconds since the epoch; 0: not now). gRPC calls it `non_empty_since`; the blackout
    /// counts from it.
    reporting_since: AtomicU64,
    /// When the latest report with a utilization came (nanoseconds since the epoch; 0: never).
    last_report: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    /// weir's own rates (requests and failures per second), measured over the last recompute
    /// period, as `f64` bits; and the counts and time they were measured from.
    own_rps: AtomicU64,
    own_eps: AtomicU64,
    counted_requests: AtomicU64,
    counted_failures: AtomicU64,
    counted_at: AtomicU64,
    /// The weight of the latest recompute, as `f64` bits; 0 when it had none of its own.
    weight: AtomicU64,
}

/// A copy of an endpoint's load inputs at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadSnapshot {
    pub utilization: f64,
    /// Requests per second: the report's, else weir's own measure.
    pub rps: f64,
    /// Errors per second, from the same source as `rps`.
    pub eps: f64,
    /// How long reports have come without a gap, and how old the latest is; `None` when none
    /// has come (or the last one expired).
    pub reporting_for: Option<Duration>,
    pub report_age: Option<Duration>,
}

fn load_f64(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

fn store_f64(a: &AtomicU64, v: f64) {
    a.store(v.to_bits(), Ordering::Relaxed);
}

impl EndpointLoad {
    /// Takes a report in. One without a utilization says nothing a weight can use: its numbers
    /// are shown, but it neither starts nor extends the endpoint's reporting.
    pub fn record(&self, report: &LoadReport, now: Instant) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        store_f64(&self.utilization, report.utilization());
        store_f64(&self.rps, report.rps_fractional);
        store_f64(&self.eps, report.eps);
        if report.utilization() > 0.0 {
            let now = nanos_since_epoch(now).max(1);
            // Only the first report of a run sets the start; a race between two loses nothing.
            let _ =
                self.reporting_since
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            self.last_report.store(now, Ordering::Relaxed);
        }
    }

    /// Counts a report that was refused.
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The latest reported utilization (0 when none came).
    pub fn utilization(&self) -> f64 {
        load_f64(&self.utilization)
    }

    /// The weight the latest recompute gave, if it gave one of its own.
    pub fn weight(&self) -> Option<f64> {
        Some(load_f64(&self.weight)).filter(|w| *w > 0.0)
    }

    pub(crate) fn set_weight(&self, weight: Option<f64>) {
        store_f64(&self.weight, weight.unwrap_or(0.0));
    }

    /// Measures weir's own request and failure rates from the endpoint's counters, once `period`
    /// has passed since the last measure (a shorter span would be noise).
    pub(crate) fn measure(&self, requests: u64, failures: u64, now: Instant, period: Duration) {
        let at = self.counted_at.load(Ordering::Relaxed);
        let now_nanos = nanos_since_epoch(now).max(1);
        if at != 0 {
            let elapsed = Duration::from_nanos(now_nanos.saturating_sub(at));
            if elapsed < period {
                return;
            }
            let secs = elapsed.as_secs_f64();
            let requests_then = self.counted_requests.load(Ordering::Relaxed);
            let failures_then = self.counted_failures.load(Ordering::Relaxed);
            store_f64(
                &self.own_rps,
                requests.saturating_sub(requests_then) as f64 / secs,
            );
            store_f64(
                &self.own_eps,
                failures.saturating_sub(failures_then) as f64 / secs,
            );
        }
        self.counted_requests.store(requests, Ordering::Relaxed);
        self.counted_failures.store(failures, Ordering::Relaxed);
        self.counted_at.store(now_nanos, Ordering::Relaxed);
    }

    /// The inputs of a weight at `now`. A report older than `expiry` ends the run of reports,
    /// so the next one starts a new blackout.
    pub fn snapshot(&self, now: Instant, expiry: Duration) -> LoadSnapshot {
        let last = self.last_report.load(Ordering::Relaxed);
        let since = self.reporting_since.load(Ordering::Relaxed);
        let now_nanos = nanos_since_epoch(now);
        let age = (last != 0).then(|| Duration::from_nanos(now_nanos.saturating_sub(last)));
        let fresh = age.is_some_and(|a| a < expiry);
        if !fresh && since != 0 {
            self.reporting_since.store(0, Ordering::Relaxed);
        }
        let reported_rps = load_f64(&self.rps);
        let (rps, eps) = if reported_rps > 0.0 {
            (reported_rps, load_f64(&self.eps))
        } else {
            (load_f64(&self.own_rps), load_f64(&self.own_eps))
        };
        LoadSnapshot {
            utilization: load_f64(&self.utilization),
            rps,
            eps,
            reporting_for: (fresh && since != 0)
                .then(|| Duration::from_nanos(now_nanos.saturating_sub(since))),
            report_age: age.filter(|_| fresh),
        }
    }

    /// When the latest report with a utilization came.
    pub fn last_report(&self) -> Option<Instant> {
        match self.last_report.load(Ordering::Relaxed) {
            0 => None,
            n => Some(epoch() + Duration::from_nanos(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(cpu: f64, rps: f64) -> LoadReport {
        LoadReport {
            cpu_utilization: cpu,
            rps_fractional: rps,
            ..LoadReport::default()
        }
    }

    #[test]
    fn a_run_of_reports_starts_at_the_first_and_ends_on_expiry() {
        let load = EndpointLoad::default();
        let t0 = Instant::now();
        let expiry = Duration::from_secs(180);
        assert_eq!(load.snapshot(t0, expiry).reporting_for, None);
        load.record(&report(0.5, 100.0), t0);
        load.record(&report(0.6, 100.0), t0 + Duration::from_secs(5));
        let s = load.snapshot(t0 + Duration::from_secs(10), expiry);
        assert_eq!(s.reporting_for, Some(Duration::from_secs(10)));
        assert_eq!(s.report_age, Some(Duration::from_secs(5)));
        assert_eq!((s.utilization, s.rps), (0.6, 100.0));
        // Silence past the expiry ends the run; the next report starts a new one.
        let late = t0 + Duration::from_secs(300);
        assert_eq!(load.snapshot(late, expiry).reporting_for, None);
        load.record(&report(0.6, 100.0), late);
        assert_eq!(
            load.snapshot(late + Duration::from_secs(1), expiry)
                .reporting_for,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn reports_without_a_utilization_start_nothing() {
        let load = EndpointLoad::default();
        let t0 = Instant::now();
        load.record(&report(0.0, 100.0), t0);
        assert_eq!(load.accepted(), 1);
        assert_eq!(
            load.snapshot(t0, Duration::from_secs(1)).reporting_for,
            None
        );
    }

    #[test]
    fn own_rates_stand_in_when_the_report_has_no_rps() {
        let load = EndpointLoad::default();
        let t0 = Instant::now();
        let period = Duration::from_secs(1);
        load.measure(0, 0, t0, period);
        // Too soon: no measure yet.
        load.measure(50, 1, t0 + Duration::from_millis(500), period);
        load.measure(200, 4, t0 + Duration::from_secs(2), period);
        load.record(&report(0.5, 0.0), t0 + Duration::from_secs(2));
        let s = load.snapshot(t0 + Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!((s.rps, s.eps), (100.0, 2.0));
        // A report's own rate wins.
        load.record(&report(0.5, 7.0), t0 + Duration::from_secs(2));
        let s = load.snapshot(t0 + Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!((s.rps, s.eps), (7.0, 0.0));
    }
}
