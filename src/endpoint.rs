//! An endpoint (one pod address of one pool) and its live state.
//!
//! The routing table is rebuilt on every change, but an endpoint that stays keeps the same
//! `Arc<Endpoint>`, so its counters (and, later, its health) survive rebuilds. Everything that
//! changes per request is an atomic: the request path never locks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// One pod address of one pool.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// A stable name for logs, hashing and status: the pod (`namespace/name`) when the slice
    /// names it, else the address.
    pub identity: String,
    /// When this endpoint joined its pool, for slow start. `None` for endpoints that were there
    /// when the pool first appeared (or when weir started): they are not new to the service.
    pub added_at: Option<Instant>,
    in_flight: AtomicU64,
    requests: AtomicU64,
    /// Peak-sensitive latency EWMA, in nanoseconds, as `f64` bits; 0 until the first response.
    latency_ewma: AtomicU64,
    /// When `latency_ewma` was last updated, in nanoseconds since [`epoch`].
    latency_stamp: AtomicU64,
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
            identity: identity.into(),
            added_at,
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            latency_ewma: AtomicU64::new(0f64.to_bits()),
            latency_stamp: AtomicU64::new(0),
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

    /// Folds one response time into the latency EWMA. Peak-sensitive: a slower response
    /// replaces the average at once; faster ones pull it down with time constant `decay`.
    ///
    /// Two responses finishing at the same instant may race and one sample be lost; the
    /// average tolerates that, and the request path stays lock-free.
    pub fn observe_latency(&self, rtt: Duration, now: Instant, decay: Duration) {
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

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
