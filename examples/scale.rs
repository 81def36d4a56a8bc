//! Scale benchmark: `compile` of 10 000 pools × 10 endpoints (100 000 endpoints), the memory
//! of the store and of the table, and one table swap at that size.
//!
//! `cargo run --release --example scale -- [POOLS] [ENDPOINTS_PER_POOL] [RUNS]`
//! (defaults 10000 10 7). Add `--affinity` to give every pool cookie affinity (the swap then
//! includes `Affinity::sync`, which hashes every endpoint), and `--created` to give pools
//! creation times, as pools from the API server have (pools from a file have none).
//!
//! Memory is read two ways: the process's `VmRSS` (what the kernel charges, allocator slack
//! included) and the live heap bytes counted by this program's global allocator (exact, by
//! phase). Figures are printed; nothing is asserted.
// The counting allocator below implements GlobalAlloc, an unsafe trait: the one unsafe code
// the package allows (Cargo.toml denies it everywhere else).
#![allow(unsafe_code)]

mod support;

use arc_swap::ArcSwap;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{mib, rss_bytes};
use weir::affinity::Affinity;
use weir::routing::compile;
use weir::testkit::generated::{self, Shape};

/// The system allocator, counting live bytes and allocation calls.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, min and max of some durations, in ms.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let median = times[times.len() / 2];
    format!(
        "median {:.1} ms (min {:.1}, max {:.1}, n={})",
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

fn rss() -> u64 {
    rss_bytes().expect("VmRSS from /proc/self/status (Linux only)")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let affinity_on = args.iter().any(|a| a == "--affinity");
    let created = args.iter().any(|a| a == "--created");
    let nums: Vec<usize> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("arguments: POOLS ENDPOINTS_PER_POOL RUNS"))
        .collect();
    let pools = nums.first().copied().unwrap_or(10_000);
    let per_pool = nums.get(1).copied().unwrap_or(10);
    let runs = nums.get(2).copied().unwrap_or(7).max(1);
    println!(
        "scale: {pools} pools x {per_pool} endpoints = {} endpoints, affinity {}, creation times {}, {runs} runs",
        pools * per_pool,
        if affinity_on { "on" } else { "off" },
        if created {
            "set"
        } else {
            "unset (as from a file)"
        }
    );

    let rss_start = rss();
    let heap_start = live();
    let mut shape = Shape::new(pools, per_pool).affinity(affinity_on);
    shape.created = created;
    let t = Instant::now();
    let store = generated::store(&shape);
    let built = t.elapsed();
    let rss_store = rss();
    let heap_store = live() - heap_start;
    println!(
        "store: {} objects built in {:.0} ms (not part of any figure below)",
        store.len(),
        ms(built)
    );

    // Cold compiles: no previous table (weir's start).
    let mut cold = Vec::new();
    let mut calls_per_compile = 0;
    for _ in 0..runs {
        let calls = CALLS.load(Ordering::Relaxed);
        let t = Instant::now();
        let compiled = compile(&store, None);
        cold.push(t.elapsed());
        calls_per_compile = CALLS.load(Ordering::Relaxed) - calls;
        drop(compiled);
    }
    println!("compile, cold (no previous table): {}", summary(&mut cold));
    println!("  allocations per compile: {calls_per_compile}");

    // The table in service, as weir holds it.
    let heap_before_table = live();
    let compiled = compile(&store, None);
    let heap_table = live() - heap_before_table;
    // weir keeps the statuses too (admin's `/pools`); the table alone is what is left after.
    let statuses = compiled.statuses;
    let statuses_bytes = {
        let before = live();
        drop(statuses);
        before - live()
    };
    let heap_table_only = heap_table - statuses_bytes;
    let current = Arc::new(ArcSwap::from_pointee(compiled.table));
    let rss_table = rss();
    let endpoints: usize = current
        .load()
        .pools()
        .map(|p| p.ready_endpoints().count())
        .sum();

    // Recompiles against the table in service (every change while weir runs).
    let mut warm = Vec::new();
    for _ in 0..runs {
        let previous = current.load_full();
        let t = Instant::now();
        let compiled = compile(&store, Some(&previous));
        warm.push(t.elapsed());
        drop(compiled);
    }
    println!("compile, with the previous table: {}", summary(&mut warm));

    // Swaps: what `app::rebuild` and `follow_store` do, step by step.
    let affinity = Affinity::new(b"a scale key of at least sixteen bytes");
    affinity.sync(&current.load());
    let (mut t_compile, mut t_store, mut t_drop, mut t_sync, mut t_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let previous = current.load_full();
        let compiled = compile(&store, Some(&previous));
        drop(previous);
        let a = Instant::now();
        let old = current.swap(Arc::new(compiled.table));
        let b = Instant::now();
        affinity.sync(&current.load());
        let c = Instant::now();
        // The last reference to the old table: its pools, maps and endpoints not reused go.
        drop(old);
        let d = Instant::now();
        t_compile.push(a - start);
        t_store.push(b - a);
        t_sync.push(c - b);
        t_drop.push(d - c);
        t_total.push(d - start);
    }
    println!(
        "swap at this size (compile with previous + ArcSwap::swap + affinity sync + drop of the old table):"
    );
    println!("  compile:        {}", summary(&mut t_compile));
    println!(
        "  ArcSwap::swap:  median {:.3} µs",
        summary_us(&mut t_store)
    );
    println!("  affinity sync:  {}", summary(&mut t_sync));
    println!("  old table drop: {}", summary(&mut t_drop));
    println!("  total:          {}", summary(&mut t_total));

    let rss_end = rss();
    let hwm = support::status_field("/proc/self/status", "VmHWM:").unwrap_or(0);
    println!("memory ({endpoints} endpoints in the table):");
    println!(
        "  VmRSS: start {:.1} MiB, + store {:.1} MiB, + table {:.1} MiB (store and table: {:.1} MiB over start); after the swaps {:.1} MiB; peak (VmHWM) {:.1} MiB",
        mib(rss_start),
        mib(rss_store.saturating_sub(rss_start)),
        mib(rss_table.saturating_sub(rss_store)),
        mib(rss_table.saturating_sub(rss_start)),
        mib(rss_end),
        mib(hwm)
    );
    println!(
        "  live heap: store {:.1} MiB ({:.0} B per endpoint), table + statuses {:.1} MiB, table alone {:.1} MiB ({:.0} B per endpoint, {:.0} B per pool)",
        mib(heap_store as u64),
        heap_store as f64 / (pools * per_pool).max(1) as f64,
        mib(heap_table as u64),
        mib(heap_table_only.max(0) as u64),
        heap_table_only as f64 / (pools * per_pool).max(1) as f64,
        heap_table_only as f64 / pools.max(1) as f64,
    );
    drop(store);
}

fn summary_us(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e6
}
