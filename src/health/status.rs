//! A pool's status with live health folded in: compile knows readiness; checks and
//! ejections change between rebuilds.

use crate::api::{Condition, ConditionType, LoadBalancerPoolStatus, Reason};
use crate::endpoint::ActiveHealth;
use crate::routing::Pool;
use std::time::Instant;

/// `compiled` (the status compile gave the pool) with `endpoints.healthy` and the `Ready`
/// condition recomputed from the endpoints' live health.
pub fn live_status(
    compiled: &LoadBalancerPoolStatus,
    pool: &Pool,
    now: Instant,
) -> LoadBalancerPoolStatus {
    let mut status = compiled.clone();
    let ready = pool.ready_endpoints().count() as u32;
    let failing = pool
        .ready_endpoints()
        .filter(|e| e.active_health() == ActiveHealth::Unhealthy)
        .count() as u32;
    let ejected = pool
        .ready_endpoints()
        .filter(|e| e.active_health() != ActiveHealth::Unhealthy && e.is_ejected(now))
        .count() as u32;
    let healthy = ready - failing - ejected;
    let terminating: usize = pool.backends.iter().map(|b| b.fenced.len()).sum();
    let not_ready: u32 = pool.backends.iter().map(|b| b.not_ready).sum();
    status.endpoints.healthy = healthy;
    let total = status.endpoints.total;
    let mut why = Vec::new();
    for (n, what) in [
        (failing, "failing health checks"),
        (ejected, "ejected after failed requests"),
        (terminating as u32, "terminating"),
        (not_ready, "not ready"),
    ] {
        if n > 0 {
            why.push(format!("{n} {what}"));
        }
    }
    let mut message = format!("{healthy} of {total} endpoints healthy");
    if !why.is_empty() {
        message = format!("{message} ({})", why.join(", "));
    }
    let ready_condition = if healthy > 0 {
        Condition::new(
            ConditionType::Ready,
            true,
            Reason::HealthyEndpoints,
            message,
        )
    } else {
        // Keep compile's explanation (a missing port, no slices) when there is one.
        match compiled
            .conditions
            .iter()
            .find(|c| c.is(ConditionType::Ready))
        {
            Some(c) if !c.is_true() && ready == 0 => c.clone(),
            _ => Condition::new(
                ConditionType::Ready,
                false,
                Reason::NoHealthyEndpoints,
                message,
            ),
        }
    };
    match status
        .conditions
        .iter_mut()
        .find(|c| c.is(ConditionType::Ready))
    {
        Some(c) => *c = ready_condition,
        None => status.conditions.push(ready_condition),
    }
    status
}
