//! Each pool's answers and 5xx answers over the last few minutes, for the dashboard's charts: a
//! fixed ring of samples per pool, filled by one task off the request path from the request
//! counters the proxy already keeps.
//!
//! Memory is bounded by the pools in the table: per pool, [`SAMPLES`] × 2 × 4 bytes of ring
//! (480 bytes), a few words of bookkeeping and one handle per (method, status) class the pool
//! has served (at most [`REQUEST_SLOTS`]). A pool that leaves the table leaves the history at
//! the next sample.

use crate::metrics::{Metrics, REQUEST_SLOTS, request_slot_is_5xx, request_slot_labels};
use crate::routing::{Pool, RoutingTable};
use crate::store::ObjectKey;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Every this many samples (a minute), each endpoint's latency window moves on, so the
/// dashboard's p99 covers the last one to two minutes.
const LATENCY_WINDOW_SAMPLES: u64 = 12;
/// Samples kept per pool: five minutes at [`INTERVAL`].
pub const SAMPLES: usize = 60;

/// The rings of every pool in the table.
#[derive(Debug, Default)]
pub struct History {
    // Taken by the sampler once per INTERVAL and by admin requests; never by the proxy.
    rings: Mutex<Rings>,
}

#[derive(Debug, Default)]
struct Rings {
    /// Samples taken; the slot of the newest is `(taken - 1) % SAMPLES`.
    taken: u64,
    pools: HashMap<ObjectKey, Ring>,
}

#[derive(Debug)]
struct Ring {
    /// Answers per interval, by slot.
    answers: [u32; SAMPLES],
    /// 5xx answers per interval, by slot.
    errors: [u32; SAMPLES],
    /// Samples in the ring (at most SAMPLES).
    filled: u32,
    /// The sample that last saw the pool in the table (for a ring just started, the next
    /// one).
    seen: u64,
    /// The counters' sums at the last sample.
    last_answers: u64,
    last_errors: u64,
    /// The request counters followed, and whether each counts 5xx answers.
    counters: Vec<(bool, Counter)>,
    /// Which request slots are in `counters`, one bit each.
    watched: u64,
    /// The address of the pool last sampled: a new one means the table was rebuilt.
    pool: usize,
}

/// One pool's samples, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Series {
    pub answers: Vec<u32>,
    pub errors: Vec<u32>,
}

impl Ring {
    /// A ring for a pool seen for the first time, with the sums of the counters its labels
    /// already have as the baseline.
    fn new(pool: &Arc<Pool>, metrics: &Metrics) -> Ring {
        let mut ring = Ring {
            answers: [0; SAMPLES],
            errors: [0; SAMPLES],
            filled: 0,
            seen: 0,
            last_answers: 0,
            last_errors: 0,
            counters: Vec::new(),
            watched: 0,
            pool: 0,
        };
        ring.look_up(pool, metrics);
        (ring.last_answers, ring.last_errors) = ring.sums();
        ring
    }

    /// Follows every request counter of the pool's labels (up to [`REQUEST_SLOTS`] hashed
    /// look-ups): at first sight, and after a rebuild, since a class first served by the
    /// replaced pool is in no handle of the new one.
    fn look_up(&mut self, pool: &Arc<Pool>, metrics: &Metrics) {
        for slot in 0..REQUEST_SLOTS {
            if self.watched & (1 << slot) != 0 {
                continue;
            }
            if let Some(counter) = metrics.requests.get(&request_slot_labels(&pool.name, slot)) {
                self.watch(slot, counter.clone());
            }
        }
        // An address reused by the next table's pool would hide a rebuild: a class first
        // served in between would then be found on its next answer instead.
        self.pool = Arc::as_ptr(pool) as usize;
    }

    fn watch(&mut self, slot: usize, counter: Counter) {
        self.watched |= 1 << slot;
        self.counters.push((request_slot_is_5xx(slot), counter));
    }

    /// Follows the counters the pool's current handles have made since (a class served for
    /// the first time, or a table rebuilt before serving one).
    fn discover(&mut self, pool: &Pool) {
        let Some(handles) = pool.metrics_if_any() else {
            return;
        };
        for slot in 0..REQUEST_SLOTS {
            if self.watched & (1 << slot) == 0
                && let Some(counter) = handles.request_counter(slot)
            {
                self.watch(slot, counter.clone());
            }
        }
    }

    fn sums(&self) -> (u64, u64) {
        self.counters
            .iter()
            .fold((0, 0), |(all, errors), (is_5xx, c)| {
                let n = c.get();
                (all + n, if *is_5xx { errors + n } else { errors })
            })
    }

    fn record(&mut self, slot: usize) {
        let (answers, errors) = self.sums();
        let delta =
            |now: u64, then: u64| u32::try_from(now.saturating_sub(then)).unwrap_or(u32::MAX);
        self.answers[slot] = delta(answers, self.last_answers);
        self.errors[slot] = delta(errors, self.last_errors);
        (self.last_answers, self.last_errors) = (answers, errors);
        self.filled = (self.filled + 1).min(SAMPLES as u32);
    }
}

impl History {
    /// Takes one sample of every pool in `table`, and forgets pools no longer in it.
    pub fn sample(&self, table: &RoutingTable, metrics: &Metrics) {
        let mut rings = crate::sync::lock(&self.rings);
        rings.taken += 1;
        let taken = rings.taken;
        let slot = ((taken - 1) % SAMPLES as u64) as usize;
        for pool in table.pools() {
            match rings.pools.get_mut(&pool.key) {
                Some(ring) => {
                    if ring.pool != Arc::as_ptr(pool) as usize {
                        ring.look_up(pool, metrics);
                    }
                    ring.discover(pool);
                    ring.record(slot);
                    ring.seen = taken;
                }
                // Not started with its table (a table swapped in some other way): its first
                // sample is only the baseline.
                None => {
                    let mut ring = Ring::new(pool, metrics);
                    ring.seen = taken;
                    rings.pools.insert(pool.key.clone(), ring);
                }
            }
        }
        // Rings started for a table not yet in service are expected at this sample or the
        // next.
        rings.pools.retain(|_, ring| ring.seen >= taken);
        drop(rings);
        if taken.is_multiple_of(LATENCY_WINDOW_SAMPLES) {
            for endpoint in table.pools().flat_map(|p| p.all_endpoints()) {
                if let Some(window) = endpoint.latency_window() {
                    window.rotate();
                }
            }
        }
    }

    /// Starts a ring for each pool of `table` (about to be swapped in) that has none, with
    /// what its counters hold now as the baseline: what it answers from then on counts in
    /// the next sample.
    pub fn start(&self, table: &RoutingTable, metrics: &Metrics) {
        let mut rings = crate::sync::lock(&self.rings);
        // A sample may still see the table in service before this one: the ring waits for
        // the next.
        let expected = rings.taken + 1;
        for pool in table.pools() {
            if !rings.pools.contains_key(&pool.key) {
                let mut ring = Ring::new(pool, metrics);
                ring.seen = expected;
                rings.pools.insert(pool.key.clone(), ring);
            }
        }
    }

    /// A pool's samples, oldest first (fewer than [`SAMPLES`] while the pool is new).
    pub fn series(&self, pool: &ObjectKey) -> Option<Series> {
        let rings = crate::sync::lock(&self.rings);
        let ring = rings.pools.get(pool)?;
        let filled = ring.filled as u64;
        let order = (rings.taken - filled..rings.taken).map(|n| (n % SAMPLES as u64) as usize);
        Some(Series {
            answers: order.clone().map(|i| ring.answers[i]).collect(),
            errors: order.map(|i| ring.errors[i]).collect(),
        })
    }

    /// Pools with a ring.
    pub fn pools(&self) -> usize {
        crate::sync::lock(&self.rings).pools.len()
    }

    /// The bytes the rings hold, keys and counter handles included (hash table overhead
    /// aside).
    pub fn footprint(&self) -> usize {
        let rings = crate::sync::lock(&self.rings);
        rings
            .pools
            .iter()
            .map(|(key, ring)| {
                std::mem::size_of::<(ObjectKey, Ring)>()
                    + key.namespace.capacity()
                    + key.name.capacity()
                    + ring.counters.capacity() * std::mem::size_of::<(bool, Counter)>()
            })
            .sum()
    }
}

/// Samples `table` into `history` every [`INTERVAL`] until `shutdown` turns true.
pub async fn run(
    history: Arc<History>,
    table: Arc<arc_swap::ArcSwap<RoutingTable>>,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: it only sets each pool's baseline.
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        }
        // The sample grows with the table (milliseconds at 10 000 pools): not on a thread
        // that serves requests.
        let (history, table, metrics) = (history.clone(), table.load_full(), metrics.clone());
        let sampled = tokio::task::spawn_blocking(move || {
            let _span = tracing::debug_span!("history_sample").entered();
            history.sample(&table, &metrics);
        });
        if let Err(e) = sampled.await {
            tracing::error!(error = %e, "history sample failed");
        }
    }
}
