//! An endpoint (one pod address of one pool) and its live state.
//!
//! The routing table is rebuilt on every change, but an endpoint that stays keeps the same
//! `Arc<Endpoint>`, so its counters and its health survive rebuilds. Everything that
//! changes per request is an atomic: the request path never locks.

mod latency;
mod load;

pub use latency::LatencyWindow;
pub use load::{EndpointLoad, LoadSnapshot};

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// One pod address of one pool.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made on the first request: every request names it, and an
    /// endpoint that never serves one does not pay for it.
    authority: OnceLock<http::uri::Authority>,
    /// State a higher floor keeps with the endpoint (the proxy's keep-alive connections to the
    /// pod), made on first use. Opaque here: this floor does not know the proxy's types.
    attached: Attached,
    /// A stable name for logs, hashing and status: the pod (`namespace/name`) when the slice
    /// names it, else the address.
    pub identity: String,
    /// The pod speaks HTTP/2 without TLS (the slice port's `appProtocol` is `kubernetes.io/h2c`).
    pub h2c: bool,
    /// When this endpoint joined its pool, for slow start. `None` for endpoints that were there
    /// when the pool first appeared (or when weir started): they are not new to the service.
    pub added_at: Option<Instant>,
    in_flight: AtomicU64,
    requests: AtomicU64,
    /// Requests that failed (5xx, connect errors, timeouts), for weir's own error rate.
    failures: AtomicU64,
    /// Peak-sensitive latency EWMA, in nanoseconds, as `f64` bits; 0 until the first response.
    latency_ewma: AtomicU64,
    /// When `latency_ewma` was last updated, in nanoseconds since [`epoch`].
    latency_stamp: AtomicU64,
    /// Recent response times, for the dashboard's p99; made on the first response, so an
    /// endpoint that never answers costs a pointer.
    latency_window: OnceLock<Box<LatencyWindow>>,
    /// Load reports and the weight made from them; made on the first report or weight
    /// recompute, so an endpoint of a pool that has neither costs a pointer.
    load: OnceLock<Box<EndpointLoad>>,
    /// The active checks' verdict, an [`ActiveHealth`].
    active: AtomicU8,
    /// The last check: when (nanoseconds since [`epoch`], 0 for never) and whether it passed.
    last_check: AtomicU64,
    last_check_passed: AtomicU8,
    /// Failed requests in a row (5xx or connect errors), for outlier detection.
    consecutive_failures: AtomicU32,
    /// Ejected until this time (nanoseconds since [`epoch`]); 0 when never ejected.
    ejected_until: AtomicU64,
    /// How many ejection lengths the next ejection lasts; grows with ejections, shrinks with
    /// good behaviour.
    ejection_multiplier: AtomicU32,
}

/// The slot for [`Endpoint::attached`].
#[derive(Default)]
struct Attached(OnceLock<Box<dyn Any + Send + Sync>>);

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Attached(..)"
        } else {
            "Attached(none)"
        })
    }
}

/// What active health checks say of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ActiveHealth {
    /// Not checked (no checks configured, or none finished yet): Kubernetes readiness is trusted.
    Unknown = 0,
    Healthy = 1,
    Unhealthy = 2,
}

/// The fixed instant that atomically stored timestamps count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

impl Endpoint {
    /// An endpoint that has served its pool from the start.
    pub fn new(addr: SocketAddr, identity: impl Into<String>) -> Self {
        Self::joined(addr, identity, None)
    }

    /// An endpoint that joined its pool at `added_at` (`None`: from the start).
    pub fn joined(
        addr: SocketAddr,
        identity: impl Into<String>,
        added_at: Option<Instant>,
    ) -> Self {
        epoch();
        Endpoint {
            addr,
            authority: OnceLock::new(),
            attached: Attached::default(),
            identity: identity.into(),
            h2c: false,
            added_at,
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency_ewma: AtomicU64::new(0f64.to_bits()),
            latency_stamp: AtomicU64::new(0),
            latency_window: OnceLock::new(),
            load: OnceLock::new(),
            active: AtomicU8::new(ActiveHealth::Unknown as u8),
            last_check: AtomicU64::new(0),
            last_check_passed: AtomicU8::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejection_multiplier: AtomicU32::new(0),
        }
    }

    /// The endpoint's address as a URI authority.
    pub fn authority(&self) -> &http::uri::Authority {
        self.authority.get_or_init(|| {
            // A socket address always prints as a valid authority (`[v6]:port` included).
            http::uri::Authority::try_from(self.addr.to_string().as_str())
                .unwrap_or_else(|_| http::uri::Authority::from_static("invalid.endpoint"))
        })
    }

    /// The attached state of type `T`, made with `T::default()` on first use. `None` only when
    /// a value of another type was attached first (there is one user: the proxy's upstream
    /// connections).
    pub fn attached<T: Any + Send + Sync + Default>(&self) -> Option<&T> {
        self.attached
            .0
            .get_or_init(|| Box::<T>::default())
            .downcast_ref()
    }

    /// The attached state of type `T`, if any was made.
    pub fn attached_if_any<T: Any>(&self) -> Option<&T> {
        self.attached.0.get()?.downcast_ref()
    }

    /// The same endpoint, spoken to with HTTP/2 cleartext when `h2c`.
    pub fn with_h2c(mut self, h2c: bool) -> Self {
        self.h2c = h2c;
        self
    }

    /// Whether the endpoint may take new requests: not failing active checks, not ejected.
    pub fn is_available(&self, now: Instant) -> bool {
        self.active_health() != ActiveHealth::Unhealthy && !self.is_ejected(now)
    }

    pub fn active_health(&self) -> ActiveHealth {
        match self.active.load(Ordering::Relaxed) {
            1 => ActiveHealth::Healthy,
            2 => ActiveHealth::Unhealthy,
            _ => ActiveHealth::Unknown,
        }
    }

    pub fn set_active_health(&self, health: ActiveHealth) {
        self.active.store(health as u8, Ordering::Relaxed);
    }

    /// Records a finished active check.
    pub fn record_check(&self, passed: bool, now: Instant) {
        self.last_check_passed
            .store(passed as u8, Ordering::Relaxed);
        self.last_check
            .store(nanos_since_epoch(now).max(1), Ordering::Relaxed);
    }

    /// The last active check: when, and whether it passed.
    pub fn last_check(&self) -> Option<(Instant, bool)> {
        match self.last_check.load(Ordering::Relaxed) {
            0 => None,
            n => Some((
                epoch() + Duration::from_nanos(n),
                self.last_check_passed.load(Ordering::Relaxed) == 1,
            )),
        }
    }

    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && nanos_since_epoch(now) < until
    }

    /// How much longer outlier detection keeps the endpoint out; `None` when not ejected.
    pub fn ejected_for(&self, now: Instant) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let now = nanos_since_epoch(now);
        (until != 0 && now < until).then(|| Duration::from_nanos(until - now))
    }

    /// Counts a failed request; returns the failures in a row.
    pub fn note_failure(&self) -> u32 {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a good request: the run of failures ends.
    pub fn note_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Ejects the endpoint for `base` × the ejection multiplier (which this raises, up to
    /// `max_multiplier`); returns the length of this ejection.
    pub fn eject(&self, now: Instant, base: Duration, max_multiplier: u32) -> Duration {
        let m = (self.ejection_multiplier.load(Ordering::Relaxed) + 1).min(max_multiplier);
        self.ejection_multiplier.store(m, Ordering::Relaxed);
        let length = base * m;
        self.ejected_until
            .store(nanos_since_epoch(now + length), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        length
    }

    /// The ejection multiplier steps down once an ejection is over by more than `base`: an
    /// endpoint that behaves earns shorter ejections again.
    pub fn forgive(&self, now: Instant, base: Duration) {
        let m = self.ejection_multiplier.load(Ordering::Relaxed);
        if m == 0 {
            return;
        }
        let until = epoch() + Duration::from_nanos(self.ejected_until.load(Ordering::Relaxed));
        if now > until + base * m {
            self.ejection_multiplier.store(m - 1, Ordering::Relaxed);
        }
    }

    /// Marks a request as started; the guard marks it finished when dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint: self.clone(),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Counts a failed request (whether or not outlier detection is on).
    pub fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The endpoint's load state, made on first use.
    pub fn load(&self) -> &EndpointLoad {
        self.load.get_or_init(Box::default)
    }

    /// The endpoint's load state, if a report or a recompute made it.
    pub fn load_if_any(&self) -> Option<&EndpointLoad> {
        self.load.get().map(|l| &**l)
    }

    /// Takes in what the pod said of its load in one response's headers or trailers (or a
    /// health check's): a good report is recorded, a bad one counted and ignored.
    pub fn observe_load_report(
        &self,
        report: Result<crate::load_report::LoadReport, crate::load_report::ReportError>,
        now: Instant,
    ) {
        match report {
            Ok(report) => self.load().record(&report, now),
            Err(why) => {
                let load = self.load();
                load.reject();
                // A pod that sends garbage sends it on every answer: say so once.
                if load.rejected() == 1 {
                    tracing::warn!(endpoint = %self.addr, error = %why, "ignoring a bad load report");
                }
            }
        }
    }

    /// Folds one response time into the latency EWMA. Peak-sensitive: a slower response
    /// replaces the average at once; faster ones pull it down with time constant `decay`.
    ///
    /// Two responses finishing at the same instant may race and one sample be lost; the
    /// average tolerates that, and the request path stays lock-free.
    pub fn observe_latency(&self, rtt: Duration, now: Instant, decay: Duration) {
        self.latency_window.get_or_init(Box::default).record(rtt);
        let rtt = rtt.as_nanos() as f64;
        let current = f64::from_bits(self.latency_ewma.load(Ordering::Relaxed));
        let next = if rtt > current || current == 0.0 {
            rtt
        } else {
            let elapsed = now.saturating_duration_since(self.stamp()).as_secs_f64();
            let w = (-elapsed / decay.as_secs_f64()).exp();
            current * w + rtt * (1.0 - w)
        };
        self.latency_ewma.store(next.to_bits(), Ordering::Relaxed);
        self.latency_stamp
            .store(nanos_since_epoch(now), Ordering::Relaxed);
    }

    /// Recent response times, if the endpoint has answered at all.
    pub fn latency_window(&self) -> Option<&LatencyWindow> {
        self.latency_window.get().map(|w| &**w)
    }

    /// The latency EWMA in nanoseconds as of `now` (0 before any response). Without new
    /// responses it fades toward 0 with time constant `decay`, so an endpoint that was slow
    /// once and then avoided gets tried again.
    pub fn latency_ewma_at(&self, now: Instant, decay: Duration) -> f64 {
        let value = f64::from_bits(self.latency_ewma.load(Ordering::Relaxed));
        if value == 0.0 {
            return 0.0;
        }
        let idle = now.saturating_duration_since(self.stamp()).as_secs_f64();
        value * (-idle / decay.as_secs_f64()).exp()
    }

    fn stamp(&self) -> Instant {
        epoch() + Duration::from_nanos(self.latency_stamp.load(Ordering::Relaxed))
    }
}

/// A request in flight on an endpoint; it lives as long as the response body streams.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
}

impl InFlight {
    /// The endpoint the request is on.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_state_is_made_once_and_typed() {
        let e = Endpoint::new("127.0.0.1:80".parse().unwrap(), "pod");
        assert!(
            e.attached_if_any::<std::sync::atomic::AtomicU32>()
                .is_none()
        );
        let made = e.attached::<std::sync::atomic::AtomicU32>().expect("made");
        made.store(7, Ordering::Relaxed);
        let again = e.attached::<std::sync::atomic::AtomicU32>().expect("kept");
        assert_eq!(again.load(Ordering::Relaxed), 7);
        // Another type finds the slot taken instead of replacing what is there.
        assert!(e.attached::<String>().is_none());
        assert!(
            e.attached_if_any::<std::sync::atomic::AtomicU32>()
                .is_some()
        );
    }

    fn endpoint() -> Arc<Endpoint> {
        Arc::new(Endpoint::new("127.0.0.1:1".parse().unwrap(), "a"))
    }

    #[test]
    fn in_flight_follows_guards() {
        let e = endpoint();
        let g1 = e.start_request();
        let g2 = e.start_request();
        assert_eq!(e.in_flight(), 2);
        drop(g1);
        assert_eq!(e.in_flight(), 1);
        drop(g2);
        assert_eq!((e.in_flight(), e.requests()), (0, 2));
    }

    #[test]
    fn latency_ewma_is_peak_sensitive_and_decays() {
        let e = endpoint();
        let decay = Duration::from_secs(10);
        let t0 = Instant::now();
        assert_eq!(e.latency_ewma_at(t0, decay), 0.0);
        e.observe_latency(Duration::from_millis(10), t0, decay);
        assert_eq!(e.latency_ewma_at(t0, decay), 10e6);
        // A peak replaces the average at once.
        e.observe_latency(Duration::from_millis(50), t0, decay);
        assert_eq!(e.latency_ewma_at(t0, decay), 50e6);
        // A fast response one time constant later pulls it most of the way down.
        let t1 = t0 + decay;
        e.observe_latency(Duration::from_millis(1), t1, decay);
        let v = e.latency_ewma_at(t1, decay);
        let expected = 50e6 * (-1f64).exp() + 1e6 * (1.0 - (-1f64).exp());
        assert!((v - expected).abs() < 1e3, "{v} vs {expected}");
        // With no traffic it fades.
        assert!(e.latency_ewma_at(t1 + decay * 5, decay) < v / 100.0);
    }
}
