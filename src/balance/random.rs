//! Uniformly random choice.

use super::{Balance, Pick};
use crate::endpoint::Endpoint;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Random;

impl Balance for Random {
    fn pick(&self, endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        for _ in 0..4 {
            let i = fastrand::usize(..n);
            if (pick.accept)(&endpoints[i]) {
                return Some(i);
            }
        }
        super::scan_from_random(endpoints, pick)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{counts, endpoints};
    use super::*;

    #[test]
    fn spreads_evenly() {
        fastrand::seed(11);
        let eps = endpoints(4);
        let c = counts(&Random, &eps, 100_000);
        for n in c {
            // 25 000 expected; ±2% is over 6 standard deviations.
            assert!((24_500..=25_500).contains(&n), "{n}");
        }
    }

    #[test]
    fn only_accepted_ones() {
        let eps = endpoints(4);
        let only = eps[3].addr;
        let accept = |e: &Endpoint| e.addr == only;
        for _ in 0..100 {
            assert_eq!(Random.pick(&eps, &Pick::new(&accept)), Some(3));
        }
    }
}
