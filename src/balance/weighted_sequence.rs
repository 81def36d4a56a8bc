//! Smooth weighted round robin (nginx's algorithm), precomputed.
//!
//! nginx walks "current weights" under a lock on every pick. The order it produces is periodic
//! with period `sum(weights) / gcd(weights)`, so we compute one period once, at build time, and a
//! pick is one atomic increment and an index: exact proportions over every window of one
//! period, with no lock on the request path.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest period kept. Above it, weights are scaled down (proportions stay within ~0.1%).
const MAX_PERIOD: u64 = 1 << 16;

#[derive(Debug)]
pub struct WeightedSequence {
    order: Vec<u32>,
    cursor: AtomicUsize,
}

impl WeightedSequence {
    /// A sequence over items with these weights. Items of weight 0 never appear. `None` when
    /// every weight is 0.
    pub fn new(weights: &[u32]) -> Option<Self> {
        let weights = period_weights(weights)?;
        // Equal weights (every endpoint list) need no schedule: the order is the items in turn.
        // Building it the general way costs period × items, far too much for large pools.
        if weights.iter().all(|&w| w <= 1) {
            let order: Vec<u32> = (0..weights.len() as u32)
                .filter(|&i| weights[i as usize] == 1)
                .collect();
            return Some(WeightedSequence {
                order,
                cursor: AtomicUsize::new(0),
            });
        }
        let total: i64 = weights.iter().map(|&w| w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += w as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            order.push(best as u32);
        }
        Some(WeightedSequence {
            order,
            cursor: AtomicUsize::new(0),
        })
    }

    /// The next item's index.
    pub fn next(&self) -> usize {
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        self.order[n % self.order.len()] as usize
    }

    /// The length of one period: every `period()` consecutive picks follow the weights exactly.
    pub fn period(&self) -> usize {
        self.order.len()
    }
}

/// The smallest weights in the same proportions, capped so one period stays short.
fn period_weights(weights: &[u32]) -> Option<Vec<u32>> {
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w));
    if g == 0 {
        return None;
    }
    let mut reduced: Vec<u32> = weights.iter().map(|&w| w / g).collect();
    let total: u64 = reduced.iter().map(|&w| w as u64).sum();
    if total > MAX_PERIOD {
        // Only huge endpoint counts get here; keep every non-zero weight at least 1.
        let scale = MAX_PERIOD as f64 / total as f64;
        for w in &mut reduced {
            if *w > 0 {
                *w = ((*w as f64 * scale).round() as u32).max(1);
            }
        }
    }
    Some(reduced)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(seq: &WeightedSequence, items: usize, picks: usize) -> Vec<usize> {
        let mut c = vec![0; items];
        for _ in 0..picks {
            c[seq.next()] += 1;
        }
        c
    }

    #[test]
    fn ninety_ten_is_exact_over_any_hundred() {
        let seq = WeightedSequence::new(&[90, 10]).unwrap();
        assert_eq!(seq.period(), 10);
        for _ in 0..7 {
            assert_eq!(counts(&seq, 2, 100), [90, 10]);
        }
        // Any window, not only windows aligned to the start.
        seq.next();
        assert_eq!(counts(&seq, 2, 100), [90, 10]);
    }

    #[test]
    fn smooth_order_interleaves() {
        // nginx's example: weights 5,1,1 give a a b a c a a, not a a a a a b c.
        let seq = WeightedSequence::new(&[5, 1, 1]).unwrap();
        let order: Vec<usize> = (0..7).map(|_| seq.next()).collect();
        assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_take_turns_even_for_huge_lists() {
        let seq = WeightedSequence::new(&vec![1; 100_000]).unwrap();
        assert_eq!(seq.period(), 100_000);
        assert_eq!(
            (0..5).map(|_| seq.next()).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let seq = WeightedSequence::new(&[7, 0, 7]).unwrap();
        assert_eq!((0..4).map(|_| seq.next()).collect::<Vec<_>>(), [0, 2, 0, 2]);
    }

    #[test]
    fn zero_weights_never_appear() {
        let seq = WeightedSequence::new(&[0, 3, 0, 1]).unwrap();
        assert_eq!(counts(&seq, 4, 400), [0, 300, 0, 100]);
        assert!(WeightedSequence::new(&[0, 0]).is_none());
        assert!(WeightedSequence::new(&[]).is_none());
    }

    #[test]
    fn huge_periods_are_capped_and_keep_everyone() {
        let mut weights = vec![1000; 100];
        weights.push(1);
        let seq = WeightedSequence::new(&weights).unwrap();
        assert!(seq.period() as u64 <= MAX_PERIOD + 101);
        let c = counts(&seq, 101, seq.period());
        assert!(c[100] >= 1);
    }
}
