//! Recomputes the weights of `WeightedByLoad` pools on their period, off the request path.

use crate::routing::RoutingTable;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the pools are asked; each recomputes only when its own period
/// (`updatePeriodMillis`, at least this) has passed.
const TICK: Duration = Duration::from_millis(100);

pub(super) async fn run(table: Arc<ArcSwap<RoutingTable>>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now = Instant::now();
        let table = table.load();
        for backend in table.pools().flat_map(|p| p.backends.iter()) {
            if backend.balancer.needs_refresh() {
                backend.balancer.refresh(&backend.endpoints, now);
            }
        }
    }
}
