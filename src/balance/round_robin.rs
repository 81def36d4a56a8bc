//! Round robin over endpoints, skipping those the caller does not accept.

use super::{Balance, WeightedSequence};
use crate::endpoint::Endpoint;
use std::sync::Arc;

#[derive(Debug)]
pub struct RoundRobin {
    sequence: Option<WeightedSequence>,
}

impl RoundRobin {
    /// Round robin over endpoints with these weights (all 1 for plain round robin).
    pub fn new(weights: &[u32]) -> Self {
        RoundRobin {
            sequence: WeightedSequence::new(weights),
        }
    }
}

impl Balance for RoundRobin {
    fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        accept: &dyn Fn(&Endpoint) -> bool,
    ) -> Option<usize> {
        let sequence = self.sequence.as_ref()?;
        // One period visits every endpoint of non-zero weight, so it is enough to find any
        // accepted one; usually the first try is.
        for _ in 0..sequence.period() {
            let i = sequence.next();
            if endpoints.get(i).is_some_and(|e| accept(e)) {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1000 + i).parse().unwrap();
                Arc::new(Endpoint::new(addr, format!("e{i}")))
            })
            .collect()
    }

    #[test]
    fn cycles_through_every_endpoint() {
        let eps = endpoints(3);
        let rr = RoundRobin::new(&[1, 1, 1]);
        let picks: Vec<_> = (0..6).map(|_| rr.pick(&eps, &|_| true).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_endpoints_not_accepted() {
        let eps = endpoints(3);
        let rr = RoundRobin::new(&[1, 1, 1]);
        let banned = eps[1].addr;
        for _ in 0..10 {
            assert_ne!(rr.pick(&eps, &|e| e.addr != banned), Some(1));
        }
        assert_eq!(rr.pick(&eps, &|_| false), None);
    }
}
