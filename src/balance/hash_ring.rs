//! Consistent hashing on a ring of virtual nodes (Ketama style).
//!
//! Each endpoint owns points on a 64-bit ring, placed by hashing its stable identity; a key
//! goes to the owner of the first point at or after its hash. Chosen over Maglev because it
//! gives the exact stability users ask for: removing an endpoint moves only that endpoint's
//! keys, adding one moves keys only to the new one, and the ring depends only on the set of
//! endpoints, so every replica of weir builds the same ring. Lookup is a binary search.

use super::{Balance, Pick, WeightedSequence};
use crate::endpoint::Endpoint;
use std::sync::Arc;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Points per unit of weight: enough for an even spread on small pools, fewer on huge ones so
/// a rebuild stays in milliseconds.
fn points_per_weight(total_weight: u64) -> u64 {
    (65_536 / total_weight.max(1)).clamp(16, 256)
}

/// The hash of a request key (a header value, a cookie, an address). Stable across processes
/// and versions of weir.
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// A consistent-hash ring over items (endpoints or backends) named by stable identities.
#[derive(Debug)]
pub struct HashRing {
    /// (point, item index), sorted by point.
    points: Vec<(u64, u32)>,
}

impl HashRing {
    /// A ring over items with these names and weights (weight 0: no points). `None` when no
    /// item has weight.
    pub fn new<S: AsRef<str>>(names: &[S], weights: &[u32]) -> Option<Self> {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let per = points_per_weight(total);
        let mut points = Vec::with_capacity((total * per) as usize);
        for (i, (name, &w)) in names.iter().zip(weights).enumerate() {
            let name = name.as_ref().as_bytes();
            for replica in 0..u64::from(w) * per {
                points.push((xxh3_64_with_seed(name, replica), i as u32));
            }
        }
        points.sort_unstable();
        Some(HashRing { points })
    }

    /// The item for `key`, walking the ring past items `accept` refuses.
    pub fn lookup(&self, key: u64, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        let start = self.first_at_or_after(key);
        let mut refused: Option<u32> = None;
        for k in 0..n {
            let item = self.points[(start + k) % n].1;
            // Consecutive points often belong to the refused item: skip them cheaply.
            if refused == Some(item) {
                continue;
            }
            if accept(item as usize) {
                return Some(item as usize);
            }
            refused = Some(item);
        }
        None
    }

    /// The index of the first point at or after `key` (`len` when none is). Points are
    /// uniform hashes, so the key's share of the hash space predicts the index within about
    /// √n: search outward from that guess, touching a few cache lines instead of log n.
    fn first_at_or_after(&self, key: u64) -> usize {
        let points = &self.points;
        let n = points.len();
        let guess = ((u128::from(key) * n as u128) >> 64) as usize;
        let (mut lo, mut hi) = (guess, guess + 1);
        let mut step = 16;
        // Widen [lo, hi) until the answer is inside: points[lo-1] < key <= points[hi-1].
        while lo > 0 && points[lo - 1].0 >= key {
            lo = lo.saturating_sub(step);
            step *= 2;
        }
        step = 16;
        while hi <= n && points[hi - 1].0 < key {
            hi = (hi + step).min(n + 1);
            if hi == n + 1 {
                break;
            }
            step *= 2;
        }
        let hi = hi.min(n);
        lo + points[lo..hi].partition_point(|&(p, _)| p < key)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Consistent hashing over a backend's endpoints; requests without a key go round robin.
#[derive(Debug)]
pub struct ConsistentHash {
    ring: Option<HashRing>,
    fallback: Option<WeightedSequence>,
}

impl ConsistentHash {
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        let names: Vec<&str> = endpoints.iter().map(|e| e.identity.as_str()).collect();
        let weights = vec![1; endpoints.len()];
        ConsistentHash {
            ring: HashRing::new(&names, &weights),
            fallback: WeightedSequence::new(&weights),
        }
    }
}

/// The second level of hashing (endpoint within a backend) must not reuse the first level's
/// bits, or every key of a backend would land in one arc of its endpoints' ring.
fn remix(key: u64) -> u64 {
    // splitmix64's finalizer.
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Balance for ConsistentHash {
    fn pick(&self, endpoints: &[Arc<Endpoint>], pick: &Pick<'_>) -> Option<usize> {
        match (pick.key, &self.ring) {
            (Some(key), Some(ring)) => ring.lookup(remix(key), |i| {
                endpoints.get(i).is_some_and(|e| (pick.accept)(e))
            }),
            _ => {
                let seq = self.fallback.as_ref()?;
                (0..seq.period())
                    .map(|_| seq.next())
                    .find(|&i| endpoints.get(i).is_some_and(|e| (pick.accept)(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::endpoints;
    use super::*;
    use std::collections::HashMap;

    fn assign(eps: &[Arc<Endpoint>], keys: u64) -> HashMap<u64, String> {
        let ch = ConsistentHash::new(eps);
        let accept = |_: &Endpoint| true;
        (0..keys)
            .map(|k| {
                let key = key_hash(format!("user-{k}").as_bytes());
                let pick = Pick {
                    now: std::time::Instant::now(),
                    key: Some(key),
                    accept: &accept,
                };
                let i = ch.pick(eps, &pick).unwrap();
                (k, eps[i].identity.clone())
            })
            .collect()
    }

    #[test]
    fn the_same_key_keeps_its_endpoint_across_rebuilds() {
        let eps = endpoints(10);
        let first = assign(&eps, 10_000);
        // A rebuild with the same endpoints in another order.
        let mut shuffled = eps.clone();
        shuffled.reverse();
        assert_eq!(assign(&shuffled, 10_000), first);
    }

    #[test]
    fn removing_one_of_n_moves_only_its_keys() {
        for n in [5usize, 10, 50] {
            let eps = endpoints(n);
            let before = assign(&eps, 20_000);
            let gone = eps[n / 2].identity.clone();
            let fewer: Vec<_> = eps.iter().filter(|e| e.identity != gone).cloned().collect();
            let after = assign(&fewer, 20_000);
            let moved: Vec<_> = (0..20_000).filter(|k| before[k] != after[k]).collect();
            // Keys of the other endpoints never move.
            assert!(moved.iter().all(|k| before[k] == gone), "n={n}");
            let share = moved.len() as f64 / 20_000.0;
            let ideal = 1.0 / n as f64;
            assert!(share <= ideal * 1.3, "n={n}: {share} moved, ideal {ideal}");
        }
    }

    #[test]
    fn adding_one_moves_keys_only_to_it() {
        let n = 10;
        let eps = endpoints(n + 1);
        let before = assign(&eps[..n], 20_000);
        let after = assign(&eps, 20_000);
        let newcomer = &eps[n].identity;
        let moved: Vec<_> = (0..20_000).filter(|k| before[k] != after[k]).collect();
        assert!(moved.iter().all(|k| &after[k] == newcomer));
        let share = moved.len() as f64 / 20_000.0;
        let ideal = 1.0 / (n + 1) as f64;
        assert!(share <= ideal * 1.3, "{share} moved, ideal {ideal}");
    }

    #[test]
    fn keys_spread_evenly() {
        let eps = endpoints(10);
        let mut per: HashMap<String, usize> = HashMap::new();
        for id in assign(&eps, 50_000).into_values() {
            *per.entry(id).or_default() += 1;
        }
        for (id, n) in per {
            // 5 000 expected.
            assert!((3_750..=6_250).contains(&n), "{id}: {n}");
        }
    }

    #[test]
    fn a_refused_endpoint_sends_its_keys_elsewhere_and_only_those() {
        let eps = endpoints(6);
        let ch = ConsistentHash::new(&eps);
        let banned = eps[2].addr;
        for k in 0..2_000u64 {
            let key = key_hash(&k.to_le_bytes());
            let all = |_: &Endpoint| true;
            let some = |e: &Endpoint| e.addr != banned;
            let now = std::time::Instant::now();
            let a = ch
                .pick(
                    &eps,
                    &Pick {
                        now,
                        key: Some(key),
                        accept: &all,
                    },
                )
                .unwrap();
            let b = ch
                .pick(
                    &eps,
                    &Pick {
                        now,
                        key: Some(key),
                        accept: &some,
                    },
                )
                .unwrap();
            if a != 2 {
                assert_eq!(a, b);
            } else {
                assert_ne!(b, 2);
            }
        }
    }

    #[test]
    fn the_guessed_search_finds_what_binary_search_finds() {
        let names: Vec<String> = (0..37).map(|i| format!("e{i}")).collect();
        let ring = HashRing::new(&names, &[1; 37]).unwrap();
        let mut keys: Vec<u64> = (0..20_000u64).map(remix).collect();
        keys.extend([0, 1, u64::MAX, u64::MAX - 1]);
        keys.extend(ring.points.iter().map(|p| p.0));
        keys.extend(ring.points.iter().map(|p| p.0.wrapping_add(1)));
        for key in keys {
            let expected = ring.points.partition_point(|&(p, _)| p < key);
            assert_eq!(ring.first_at_or_after(key), expected, "key {key}");
        }
    }

    #[test]
    fn weighted_rings_follow_weights() {
        let ring = HashRing::new(&["a", "b"], &[9, 1]).unwrap();
        let mut b = 0;
        for k in 0..100_000u64 {
            if ring.lookup(remix(k), |_| true) == Some(1) {
                b += 1;
            }
        }
        assert!((8_000..=12_000).contains(&b), "{b}");
    }
}
