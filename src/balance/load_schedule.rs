//! The order in which `WeightedByLoad` hands out picks: one period laid out from real-valued
//! weights at each recompute, read lock-free.
//!
//! A pick is what a round robin pick is (one atomic increment and an index), so weighing by
//! load costs the request path nothing more. The period has a fixed length per balancer (64
//! slots per item, at most 65 536, at least one per item), allocated once as atomics and
//! rewritten in place at each recompute: a pick during a rewrite reads an old or a new slot,
//! either a valid item, and needs no pointer swap. Each item gets slots in proportion to its
//! weight (at least one), spread evenly over the period (item `i`'s `k`-th slot sits at
//! `(k + ½) / count_i`), so a heavy item's turns interleave with the others' instead of coming
//! in a run. Weights are first held within 10× of their mean both ways, as gRPC's weighted
//! round robin does, so one wild report cannot starve or flood an endpoint.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Longest period kept (with more items than this, each item has one slot).
const MAX_PERIOD: usize = 1 << 16;
/// Slots per item in a period, before the cap: enough that shares follow weights to ~2%.
const SLOTS_PER_ITEM: usize = 64;
/// Weights are kept within this factor of their mean, both ways.
const MAX_RATIO: f64 = 10.0;

#[derive(Debug)]
pub struct LoadSchedule {
    order: Box<[AtomicU32]>,
    items: usize,
    cursor: AtomicUsize,
    weighted: AtomicBool,
}

impl LoadSchedule {
    /// A schedule over `items` items, taking turns until [`LoadSchedule::set_weights`].
    pub fn new(items: usize) -> Self {
        let period = (items * SLOTS_PER_ITEM).clamp(items, MAX_PERIOD.max(items));
        let schedule = LoadSchedule {
            order: (0..period).map(|_| AtomicU32::new(0)).collect(),
            items,
            cursor: AtomicUsize::new(0),
            weighted: AtomicBool::new(false),
        };
        schedule.lay_out(&vec![1.0; items]);
        schedule
    }

    /// Lays the period out anew for these weights (one per item); an item of weight 0 (or not
    /// finite) takes the mean of the others. With fewer than two positive weights there is
    /// nothing to weigh: items take turns. Returns whether the schedule is weighted.
    pub fn set_weights(&self, weights: &[f64]) -> bool {
        debug_assert_eq!(weights.len(), self.items);
        let positive: Vec<f64> = weights
            .iter()
            .copied()
            .filter(|w| w.is_finite() && *w > 0.0)
            .collect();
        let weighted = positive.len() >= 2;
        if weighted {
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
            self.lay_out(&clamped);
        } else if self.weighted.load(Ordering::Relaxed) {
            self.lay_out(&vec![1.0; self.items]);
        }
        self.weighted.store(weighted, Ordering::Relaxed);
        weighted
    }

    /// Writes the period for positive, finite weights.
    fn lay_out(&self, weights: &[f64]) {
        if self.items == 0 {
            return;
        }
        let counts = apportion(weights, self.order.len());
        let mut slots: Vec<(f64, u32)> = Vec::with_capacity(self.order.len());
        for (item, &count) in counts.iter().enumerate() {
            for k in 0..count {
                slots.push(((k as f64 + 0.5) / count as f64, item as u32));
            }
        }
        slots.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (slot, (_, item)) in self.order.iter().zip(slots) {
            slot.store(item, Ordering::Relaxed);
        }
    }

    /// The next item's index; `None` with no items.
    pub fn next(&self) -> Option<usize> {
        if self.order.is_empty() {
            return None;
        }
        let k = self.cursor.fetch_add(1, Ordering::Relaxed);
        Some(self.order[k % self.order.len()].load(Ordering::Relaxed) as usize)
    }

    /// Whether the last weights set were weighed (else items take turns).
    pub fn is_weighted(&self) -> bool {
        self.weighted.load(Ordering::Relaxed)
    }

    pub fn items(&self) -> usize {
        self.items
    }

    /// Slots in one period: every `period()` consecutive picks follow the weights as laid out.
    pub fn period(&self) -> usize {
        self.order.len()
    }
}

/// `period` slots over items in proportion to `weights`: one each, the rest by largest
/// remainder, so the counts add up to the period exactly.
fn apportion(weights: &[f64], period: usize) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    let spare = period - weights.len();
    let exact: Vec<f64> = weights.iter().map(|w| w / total * spare as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| 1 + x.floor() as usize).collect();
    let left = period - counts.iter().sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..weights.len()).collect();
    by_remainder.sort_unstable_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in by_remainder.iter().take(left) {
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(schedule: &LoadSchedule, picks: usize) -> Vec<f64> {
        let mut c = vec![0usize; schedule.items()];
        for _ in 0..picks {
            c[schedule.next().unwrap()] += 1;
        }
        c.iter().map(|&x| x as f64 / picks as f64).collect()
    }

    #[test]
    fn shares_follow_the_weights_over_every_period() {
        let s = LoadSchedule::new(3);
        assert!(s.set_weights(&[5.0, 2.0, 1.0]));
        assert_eq!(s.period(), 192);
        // The same over any window of one period, aligned or not.
        s.next();
        let got = shares(&s, 192);
        s.next();
        assert_eq!(shares(&s, 192), got);
        for (g, want) in got.iter().zip([5.0 / 8.0, 2.0 / 8.0, 1.0 / 8.0]) {
            assert!((g - want).abs() < 0.01, "{got:?}");
        }
    }

    #[test]
    fn heavy_items_interleave_and_unweighted_ones_take_turns() {
        let s = LoadSchedule::new(2);
        s.set_weights(&[3.0, 1.0]);
        let first: Vec<usize> = (0..16).map(|_| s.next().unwrap()).collect();
        // Never more than three of the heavy one in a row.
        assert!(first.windows(4).all(|w| w.contains(&1)), "{first:?}");
        let s = LoadSchedule::new(3);
        assert!(!s.is_weighted());
        let picks: Vec<usize> = (0..6).map(|_| s.next().unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        // Weighted, then no longer: turns again.
        assert!(s.set_weights(&[3.0, 1.0, 1.0]));
        assert!(!s.set_weights(&[3.0, 0.0, 0.0]));
        assert_eq!(shares(&s, s.period()), [1.0 / 3.0; 3]);
    }

    #[test]
    fn items_without_a_weight_take_the_mean_and_extremes_are_clamped() {
        // 0 takes the mean of 1 and 3 (2): shares 1 : 2 : 3.
        let s = LoadSchedule::new(3);
        s.set_weights(&[1.0, 0.0, 3.0]);
        let got = shares(&s, s.period());
        for (g, want) in got.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((g - want).abs() < 0.01, "{got:?}");
        }
        // A weight a million times the others is held to 10× their mean.
        let s = LoadSchedule::new(4);
        s.set_weights(&[1e6, 1.0, 1.0, f64::NAN]);
        let got = shares(&s, s.period());
        assert!(got[1] > 0.001 && got[3] > 0.001, "{got:?}");
    }

    #[test]
    fn large_lists_keep_every_item_within_the_cap() {
        let weights: Vec<f64> = (0..10_000).map(|i| 1.0 + (i % 9) as f64).collect();
        let s = LoadSchedule::new(weights.len());
        s.set_weights(&weights);
        assert_eq!(s.period(), MAX_PERIOD);
        let mut seen = vec![false; weights.len()];
        for _ in 0..s.period() {
            seen[s.next().unwrap()] = true;
        }
        assert!(seen.iter().all(|s| *s));
        // More items than the cap: one slot each.
        assert_eq!(LoadSchedule::new(70_000).period(), 70_000);
    }

    #[test]
    fn no_items_no_picks_and_fewer_than_two_weights_is_turns() {
        assert_eq!(LoadSchedule::new(0).next(), None);
        let s = LoadSchedule::new(2);
        assert!(!s.set_weights(&[4.0, 0.0]));
        assert!(!s.set_weights(&[4.0, f64::INFINITY]));
    }
}
