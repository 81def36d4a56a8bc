//! The order in which `WeightedByLoad` hands out picks: one period laid out in advance from
//! real-valued weights, rebuilt at each recompute, read lock-free.
//!
//! A pick is what a round robin pick is (one atomic increment and an index), so weighing by
//! load costs the request path nothing more. Each item gets a count of slots in proportion to
//! its weight (at least one), in a period of 64 slots per item, capped at 65 536 slots; the
//! slots of each item are spread evenly over the period (item `i`'s `k`-th slot sits at
//! `(k + ½) / count_i`), so a heavy item's turns interleave with the others' instead of coming
//! in a run. Weights are first held within 10× of their mean both ways, as gRPC's weighted
//! round robin does, so one wild report cannot starve or flood an endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest period kept (with more items than this, each item has one slot).
const MAX_PERIOD: usize = 1 << 16;
/// Slots per item in a period, before the cap: enough that counts follow weights to ~1%.
const SLOTS_PER_ITEM: usize = 64;
/// Weights are kept within this factor of their mean, both ways.
const MAX_RATIO: f64 = 10.0;

#[derive(Debug)]
pub struct LoadSchedule {
    order: Vec<u32>,
    items: usize,
    cursor: AtomicUsize,
}

impl LoadSchedule {
    /// A schedule over items of these weights; an item of weight 0 (or not finite) takes the
    /// mean of the others. `None` with fewer than two positive weights: there is nothing to
    /// weigh, and the caller takes turns instead. `start` is where picks begin (the previous
    /// schedule's cursor, so a rebuild does not send the next picks to item 0 again).
    pub fn new(weights: &[f64], start: usize) -> Option<Self> {
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
        let total: f64 = clamped.iter().sum();
        let period = (weights.len() * SLOTS_PER_ITEM).min(MAX_PERIOD);
        let counts: Vec<usize> = clamped
            .iter()
            .map(|w| ((w / total * period as f64).round() as usize).max(1))
            .collect();
        let mut slots: Vec<(f64, u32)> = Vec::with_capacity(counts.iter().sum());
        for (item, &count) in counts.iter().enumerate() {
            for k in 0..count {
                slots.push(((k as f64 + 0.5) / count as f64, item as u32));
            }
        }
        slots.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Some(LoadSchedule {
            order: slots.into_iter().map(|(_, item)| item).collect(),
            items: weights.len(),
            cursor: AtomicUsize::new(start),
        })
    }

    /// The next item's index.
    pub fn next(&self) -> usize {
        let k = self.cursor.fetch_add(1, Ordering::Relaxed);
        self.order[k % self.order.len()] as usize
    }

    /// Where the next pick starts, for a rebuilt schedule to go on from.
    pub fn cursor(&self) -> usize {
        self.cursor.load(Ordering::Relaxed)
    }

    /// The items scheduled (the weights given).
    pub fn items(&self) -> usize {
        self.items
    }

    /// Slots in one period: every `period()` consecutive picks follow the weights as laid out.
    pub fn period(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(schedule: &LoadSchedule, picks: usize) -> Vec<f64> {
        let mut c = vec![0usize; schedule.items()];
        for _ in 0..picks {
            c[schedule.next()] += 1;
        }
        c.iter().map(|&x| x as f64 / picks as f64).collect()
    }

    #[test]
    fn shares_follow_the_weights_over_every_period() {
        let s = LoadSchedule::new(&[5.0, 2.0, 1.0], 0).unwrap();
        assert_eq!(s.period(), 192);
        // Exact over any window of one period, aligned or not.
        s.next();
        let got = shares(&s, 192);
        assert_eq!(got, [120.0 / 192.0, 48.0 / 192.0, 24.0 / 192.0]);
    }

    #[test]
    fn heavy_items_interleave_and_equal_ones_take_turns() {
        let s = LoadSchedule::new(&[3.0, 1.0], 0).unwrap();
        let first: Vec<usize> = (0..8).map(|_| s.next()).collect();
        // Never more than three of the heavy one in a row.
        assert!(first.windows(4).all(|w| w.contains(&1)), "{first:?}");
        let s = LoadSchedule::new(&[3.0, 3.0, 3.0], 0).unwrap();
        let picks: Vec<usize> = (0..6).map(|_| s.next()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn items_without_a_weight_take_the_mean_and_extremes_are_clamped() {
        // 0 takes the mean of 1 and 3 (2): shares 1 : 2 : 3.
        let s = LoadSchedule::new(&[1.0, 0.0, 3.0], 0).unwrap();
        let got = shares(&s, s.period());
        for (g, want) in got.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((g - want).abs() < 0.01, "{got:?}");
        }
        // A weight a million times the others is held to 10× their mean.
        let s = LoadSchedule::new(&[1e6, 1.0, 1.0, f64::NAN], 0).unwrap();
        let got = shares(&s, s.period());
        assert!(got[1] > 0.001 && got[3] > 0.001, "{got:?}");
    }

    #[test]
    fn large_lists_keep_every_item_within_the_cap() {
        let weights: Vec<f64> = (0..10_000).map(|i| 1.0 + (i % 9) as f64).collect();
        let s = LoadSchedule::new(&weights, 0).unwrap();
        assert!(s.period() <= MAX_PERIOD + weights.len());
        let mut seen = vec![false; weights.len()];
        for _ in 0..s.period() {
            seen[s.next()] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn fewer_than_two_weights_is_no_schedule() {
        assert!(LoadSchedule::new(&[], 0).is_none());
        assert!(LoadSchedule::new(&[4.0], 0).is_none());
        assert!(LoadSchedule::new(&[4.0, 0.0, f64::INFINITY], 0).is_none());
    }
}
