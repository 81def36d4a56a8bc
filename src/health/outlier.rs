//! Passive outlier detection: endpoints that fail live requests in a row are ejected for a
//! while, never more than the pool's `maxEjectedPercent` at once.

use crate::endpoint::Endpoint;
use crate::routing::Pool;
use std::time::{Duration, Instant};

/// Ejections in a row lengthen up to this many ejection lengths.
const MAX_MULTIPLIER: u32 = 10;

/// How one upstream attempt ended, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response, a connect error, a broken connection or a timeout.
    Failure,
}

/// Counts an attempt's outcome on its endpoint, and ejects the endpoint when this failure
/// completes a run of `consecutiveFailures` and the pool may lose one more endpoint. Returns
/// the ejection's length when it ejected.
pub fn record_outcome(
    pool: &Pool,
    endpoint: &Endpoint,
    outcome: Outcome,
    now: Instant,
) -> Option<Duration> {
    let config = pool.policy.outlier_detection.as_ref()?;
    let base = Duration::from_secs(config.ejection_seconds.into());
    match outcome {
        Outcome::Success => {
            endpoint.note_success();
            endpoint.forgive(now, base);
            None
        }
        Outcome::Failure => {
            if endpoint.note_failure() < config.consecutive_failures || endpoint.is_ejected(now) {
                return None;
            }
            let total = pool.ready_endpoints().count();
            let ejected = pool.ready_endpoints().filter(|e| e.is_ejected(now)).count();
            let limit = match config.max_ejected_percent {
                0 => 0,
                pct => (total * pct as usize / 100).max(1),
            };
            if ejected >= limit {
                tracing::debug!(endpoint = %endpoint.addr, ejected, limit, "not ejecting: the pool is at maxEjectedPercent");
                return None;
            }
            let length = endpoint.eject(now, base, MAX_MULTIPLIER);
            tracing::warn!(pool = %pool.name, endpoint = %endpoint.addr, seconds = length.as_secs(), "endpoint ejected after failing requests in a row");
            Some(length)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Algorithm, OutlierDetection, Retries, Timeouts};
    use crate::balance::RoundRobin;
    use crate::routing::{BackendSet, Policy};
    use crate::store::ObjectKey;
    use std::sync::Arc;

    fn pool(n: usize, consecutive: u32, max_pct: u32) -> Pool {
        let endpoints: Vec<Arc<Endpoint>> = (0..n)
            .map(|i| {
                Arc::new(Endpoint::new(
                    format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                    format!("e{i}"),
                ))
            })
            .collect();
        let backend = BackendSet {
            service: ObjectKey::new("ns", "web"),
            weight: 1,
            balancer: Box::new(RoundRobin::new(n, None)),
            endpoints,
            fenced: Vec::new(),
            not_ready: 0,
        };
        let policy = Policy {
            algorithm: Algorithm::RoundRobin,
            hash_on: None,
            latency_decay: Duration::from_secs(10),
            timeouts: Timeouts::default(),
            attempt_timeout: Duration::from_secs(60),
            health_check: None,
            outlier_detection: Some(OutlierDetection {
                consecutive_failures: consecutive,
                ejection_seconds: 10,
                max_ejected_percent: max_pct,
            }),
            retries: Retries::default(),
            session_affinity: None,
            keep_load_reports: false,
            max_request_body: None,
        };
        Pool::new(ObjectKey::new("ns", "p"), policy, vec![backend])
    }

    #[test]
    fn ejects_after_the_run_and_a_success_resets_it() {
        let p = pool(4, 3, 50);
        let e = p.backends[0].endpoints[0].clone();
        let t = Instant::now();
        assert_eq!(record_outcome(&p, &e, Outcome::Failure, t), None);
        assert_eq!(record_outcome(&p, &e, Outcome::Failure, t), None);
        assert_eq!(record_outcome(&p, &e, Outcome::Success, t), None);
        assert_eq!(record_outcome(&p, &e, Outcome::Failure, t), None);
        assert_eq!(record_outcome(&p, &e, Outcome::Failure, t), None);
        assert_eq!(
            record_outcome(&p, &e, Outcome::Failure, t),
            Some(Duration::from_secs(10))
        );
        assert!(e.is_ejected(t + Duration::from_secs(9)));
        assert!(!e.is_ejected(t + Duration::from_secs(10)));
    }

    #[test]
    fn repeated_ejections_grow_and_good_behaviour_shrinks_them() {
        let p = pool(4, 1, 50);
        let e = p.backends[0].endpoints[0].clone();
        let mut t = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..12 {
            let l = record_outcome(&p, &e, Outcome::Failure, t).expect("ejected");
            lengths.push(l.as_secs());
            t += l;
        }
        assert_eq!(lengths, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100, 100]);
        // Long after the last ejection, successes bring the length down again.
        t += Duration::from_secs(3600);
        for _ in 0..10 {
            record_outcome(&p, &e, Outcome::Success, t);
        }
        assert_eq!(
            record_outcome(&p, &e, Outcome::Failure, t),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn the_cap_holds_and_at_least_one_may_go() {
        let p = pool(5, 1, 40);
        let t = Instant::now();
        let ejected: Vec<bool> = p.backends[0]
            .endpoints
            .iter()
            .map(|e| record_outcome(&p, e, Outcome::Failure, t).is_some())
            .collect();
        assert_eq!(ejected, [true, true, false, false, false]);
        let small = pool(2, 1, 10);
        let t = Instant::now();
        let e0 = &small.backends[0].endpoints[0];
        let e1 = &small.backends[0].endpoints[1];
        assert!(record_outcome(&small, e0, Outcome::Failure, t).is_some());
        assert!(record_outcome(&small, e1, Outcome::Failure, t).is_none());
        let none = pool(2, 1, 0);
        let e = &none.backends[0].endpoints[0];
        assert!(record_outcome(&none, e, Outcome::Failure, Instant::now()).is_none());
    }
}
