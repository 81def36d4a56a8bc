//! A lock-free schedule over real-valued weights, rebuilt whenever the weights change.
//!
//! [`super::WeightedSequence`] lays out one whole period, which costs `sum(weights)` entries
//! and is too big to rebuild each second over weights that are arbitrary reals. Here each item
//! keeps a 16-bit weight instead; pick number `k` looks at item `k mod n` in round `k / n` and
//! takes it when `w × round + offset` wraps past the 16-bit range, which happens in a fraction
//! `w / 65535` of its rounds. The heaviest item is scaled to the full range (taken every round),
//! and weights are clamped to within 10× of their mean either way, so a pick looks at a few
//! items at most (the heaviest / the mean ≤ 10) and never locks. The offsets spread the items'
//! wraps apart, so equal weights take turns instead of bunching.
//!
//! The idea is gRPC's static stride scheduler (gRFC A58); this is weir's own code of it.

use std::sync::atomic::{AtomicU64, Ordering};

const MAX_WEIGHT: u64 = u16::MAX as u64;
/// Weights are kept within this factor of their mean, both ways.
const MAX_RATIO: f64 = 10.0;

#[derive(Debug)]
pub struct StrideSchedule {
    weights: Vec<u16>,
    cursor: AtomicU64,
}

impl StrideSchedule {
    /// A schedule over items of these weights; an item of weight 0 (or not finite) takes the
    /// mean of the others. `None` with fewer than two positive weights: there is nothing to
    /// weigh, and the caller takes turns instead.
    pub fn new(weights: &[f64], start: u64) -> Option<Self> {
        let positive: Vec<f64> = weights
            .iter()
            .copied()
            .filter(|w| w.is_finite() && *w > 0.0)
            .collect();
        if positive.len() < 2 {
            return None;
        }
        let mean = positive.iter().sum::<f64>() / positive.len() as f64;
        let (low, high) = (mean / MAX_RATIO, mean * MAX_RATIO);
        let clamped: Vec<f64> = weights
            .iter()
            .map(|&w| {
                if w.is_finite() && w > 0.0 {
                    w.clamp(low, high)
                } else {
                    mean
                }
            })
            .collect();
        let max = clamped.iter().copied().fold(0.0, f64::max);
        let scaled = clamped
            .iter()
            .map(|w| ((w / max * MAX_WEIGHT as f64).round() as u16).max(1))
            .collect();
        Some(StrideSchedule {
            weights: scaled,
            cursor: AtomicU64::new(start),
        })
    }

    /// The next item's index.
    pub fn next(&self) -> usize {
        let n = self.weights.len() as u64;
        loop {
            let k = self.cursor.fetch_add(1, Ordering::Relaxed);
            let (item, round) = (k % n, k / n);
            let w = u64::from(self.weights[item as usize]);
            let offset = MAX_WEIGHT / 2 * item;
            if (w * round + offset) % MAX_WEIGHT >= MAX_WEIGHT - w {
                return item as usize;
            }
        }
    }

    /// Where the next pick starts, for a rebuilt schedule to go on from.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Items in the schedule.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(schedule: &StrideSchedule, picks: usize) -> Vec<f64> {
        let mut c = vec![0usize; schedule.len()];
        for _ in 0..picks {
            c[schedule.next()] += 1;
        }
        c.iter().map(|&x| x as f64 / picks as f64).collect()
    }

    #[test]
    fn shares_follow_the_weights() {
        let s = StrideSchedule::new(&[5.0, 2.0, 1.0], 0).unwrap();
        let got = shares(&s, 80_000);
        for (g, want) in got.iter().zip([5.0 / 8.0, 2.0 / 8.0, 1.0 / 8.0]) {
            assert!((g - want).abs() < 0.005, "{got:?}");
        }
    }

    #[test]
    fn equal_weights_take_turns() {
        let s = StrideSchedule::new(&[3.0, 3.0, 3.0], 0).unwrap();
        let picks: Vec<usize> = (0..9).map(|_| s.next()).collect();
        let mut sorted = picks[..3].to_vec();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2], "{picks:?}");
        assert!(
            shares(&s, 30_000)
                .iter()
                .all(|x| (x - 1.0 / 3.0).abs() < 0.001)
        );
    }

    #[test]
    fn items_without_a_weight_take_the_mean_and_extremes_are_clamped() {
        // 0 takes the mean of 1 and 3 (2): shares 1 : 2 : 3.
        let s = StrideSchedule::new(&[1.0, 0.0, 3.0], 0).unwrap();
        let got = shares(&s, 60_000);
        for (g, want) in got.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((g - want).abs() < 0.005, "{got:?}");
        }
        // A weight a million times the others is held to 10× the mean.
        let s = StrideSchedule::new(&[1e6, 1.0, 1.0, f64::NAN], 0).unwrap();
        let got = shares(&s, 60_000);
        assert!(got[1] > 0.001 && got[3] > 0.001, "{got:?}");
    }

    #[test]
    fn fewer_than_two_weights_is_no_schedule() {
        assert!(StrideSchedule::new(&[], 0).is_none());
        assert!(StrideSchedule::new(&[4.0], 0).is_none());
        assert!(StrideSchedule::new(&[4.0, 0.0, f64::INFINITY], 0).is_none());
    }
}
