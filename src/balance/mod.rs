//! Load-balancing policy: which endpoint of a set takes the next request.
//!
//! Pure policy over `Endpoint`s: no sockets, no tables. Each algorithm sits behind
//! [`Balance`]; the caller passes an *accept* predicate so endpoints that may not take new
//! traffic are skipped without rebuilding anything.

mod hash_ring;
mod least_connections;
mod load_schedule;
mod peak_ewma;
mod random;
mod round_robin;
mod slow_start;
mod weighted_by_load;
mod weighted_sequence;

pub use hash_ring::{ConsistentHash, HashRing, key_hash};
pub use least_connections::LeastConnections;
pub use load_schedule::LoadSchedule;
pub use peak_ewma::PeakEwma;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use slow_start::SlowStart;
pub use weighted_by_load::{LoadWeighting, WeightedByLoad};
pub use weighted_sequence::WeightedSequence;

use crate::endpoint::Endpoint;
use std::sync::Arc;
use std::time::Instant;

/// What one pick knows about the request.
pub struct Pick<'a> {
    /// The time of the pick (slow start and latency decay read it).
    pub now: Instant,
    /// The request's hash key, for consistent hashing; `None` when the request has none.
    pub key: Option<u64>,
    /// Whether an endpoint may take this request.
    pub accept: &'a dyn Fn(&Endpoint) -> bool,
}

impl<'a> Pick<'a> {
    pub fn new(accept: &'a dyn Fn(&Endpoint) -> bool) -> Self {
        Pick {
            now: Instant::now(),
            key: None,
            accept,
        }
    }
}

/// A balancing algorithm over a fixed list of endpoints (the list changes only by rebuilding).
pub trait Balance: Send + Sync + std::fmt::Debug {
    /// The index of the endpoint to use, among those `pick.accept` takes; `None` when it
    /// takes none.
    fn pick(&self, endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize>;

    /// Brings state kept from live measures up to date, off the request path: called every
    /// tick with the same endpoints `pick` gets; the balancer decides whether it is due. Only
    /// `WeightedByLoad` keeps such state.
    fn refresh(&self, _endpoints: &[Arc<Endpoint>], _now: Instant) {}

    /// Whether [`Balance::refresh`] does anything, so the caller can skip the pools that need
    /// none.
    fn needs_refresh(&self) -> bool {
        false
    }
}

/// The first endpoint `next` offers that `pick.accept` takes, in at most `tries` offers; then
/// any accepted endpoint. A warming endpoint takes its turn with probability equal to its
/// slow-start factor, so its share follows the ramp. The turn-taking algorithms (RoundRobin,
/// WeightedByLoad) differ only in where `next` comes from.
fn take_turn(
    endpoints: &[Arc<Endpoint>],
    pick: &Pick<'_>,
    slow_start: Option<SlowStart>,
    tries: usize,
    mut next: impl FnMut() -> Option<usize>,
) -> Option<usize> {
    for _ in 0..tries {
        let i = next()?;
        let Some(e) = endpoints.get(i) else { continue };
        if !(pick.accept)(e) {
            continue;
        }
        let f = slow_start::factor(slow_start, e, pick.now);
        if f >= 1.0 || fastrand::f64() < f {
            return Some(i);
        }
    }
    scan_from_random(endpoints, pick)
}

/// Any accepted endpoint, scanning from a random place: the fallback when sampling keeps
/// hitting refused endpoints.
fn scan_from_random(endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    let start = fastrand::usize(..n);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| (pick.accept)(&endpoints[i]))
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                let addr = format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap();
                Arc::new(Endpoint::new(addr, format!("ns/pod-{i}")))
            })
            .collect()
    }

    pub fn counts(b: &dyn Balance, eps: &[Arc<Endpoint>], picks: usize) -> Vec<usize> {
        let mut c = vec![0; eps.len()];
        let accept = |_: &Endpoint| true;
        for _ in 0..picks {
            let pick = Pick::new(&accept);
            c[b.pick(eps, &pick).expect("a pick")] += 1;
        }
        c
    }
}
