//! Round robin over endpoints, skipping those the caller does not accept.

use super::{Balance, Pick, SlowStart, WeightedSequence};
use crate::endpoint::Endpoint;
use std::sync::Arc;

#[derive(Debug)]
pub struct RoundRobin {
    sequence: Option<WeightedSequence>,
    slow_start: Option<SlowStart>,
}

impl RoundRobin {
    /// Round robin over `n` endpoints of equal weight.
    pub fn new(n: usize, slow_start: Option<SlowStart>) -> Self {
        RoundRobin {
            sequence: WeightedSequence::new(&vec![1; n]),
            slow_start,
        }
    }
}

impl Balance for RoundRobin {
    fn pick(&self, endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize> {
        let sequence = self.sequence.as_ref()?;
        // Bounded: after a few rounds, any accepted one will do.
        let tries = sequence.period().saturating_mul(4).max(16);
        super::take_turn(endpoints, pick, self.slow_start, tries, || {
            Some(sequence.next())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, endpoints};
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn cycles_through_every_endpoint() {
        let eps = endpoints(3);
        let rr = RoundRobin::new(3, None);
        let accept = |_: &Endpoint| true;
        let picks: Vec<_> = (0..6)
            .map(|_| rr.pick(&eps, &Pick::new(&accept)).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_endpoints_not_accepted() {
        let eps = endpoints(3);
        let rr = RoundRobin::new(3, None);
        let banned = eps[1].addr;
        let accept = |e: &Endpoint| e.addr != banned;
        for _ in 0..10 {
            assert_ne!(rr.pick(&eps, &Pick::new(&accept)), Some(1));
        }
        let none = |_: &Endpoint| false;
        assert_eq!(rr.pick(&eps, &Pick::new(&none)), None);
    }

    #[test]
    fn a_warming_endpoint_gets_its_ramped_share() {
        fastrand::seed(7);
        let mut eps = endpoints(3);
        let window = Duration::from_secs(100);
        // The third endpoint joined 50 s ago: factor 0.55.
        let joined = Instant::now().checked_sub(Duration::from_secs(50));
        eps[2] = Arc::new(Endpoint::joined(eps[2].addr, "new", joined));
        let rr = RoundRobin::new(3, Some(SlowStart { window }));
        let c = counts(&rr, &eps, 100_000);
        let share = c[2] as f64 / 100_000.0;
        // Weights 1 : 1 : 0.55 give 0.55 / 2.55 = 0.216.
        assert!((share - 0.216).abs() < 0.01, "share {share}, counts {c:?}");
    }
}
