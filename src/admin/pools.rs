//! `/pools`: the live routing table as JSON, and the tables `weir inspect` prints from it.

use super::ProcessState;
use crate::endpoint::{ActiveHealth, Endpoint, EndpointLoad};
use crate::routing::Pool;
use std::time::Instant;

impl ProcessState {
    /// The live table as JSON: each pool, its routes, status and endpoints with their state.
    pub fn pools_json(&self) -> serde_json::Value {
        let table = self.table.load();
        let statuses = self.statuses.load();
        let now = Instant::now();
        let pools: Vec<serde_json::Value> = table
            .pools()
            .map(|pool| {
                let backends: Vec<serde_json::Value> = pool
                    .backends
                    .iter()
                    .map(|b| {
                        let endpoints: Vec<serde_json::Value> = b
                            .endpoints
                            .iter()
                            .map(|e| endpoint_json(e, "ready", pool, now))
                            .chain(
                                b.fenced
                                    .iter()
                                    .map(|e| endpoint_json(e, "fenced", pool, now)),
                            )
                            .collect();
                        serde_json::json!({
                            "service": b.service.to_string(),
                            "weight": b.weight,
                            "notReady": b.not_ready,
                            "endpoints": endpoints,
                        })
                    })
                    .collect();
                let routes: Vec<String> = pool
                    .routes
                    .iter()
                    .map(|(h, p)| format!("{}{p}", if h.is_empty() { "*" } else { h }))
                    .collect();
                serde_json::json!({
                    "name": pool.name.as_str(),
                    "algorithm": pool.policy.algorithm.as_str(),
                    "routes": routes,
                    "status": statuses.get(&pool.key),
                    "backends": backends,
                })
            })
            .collect();
        serde_json::json!({ "pools": pools })
    }
}

fn endpoint_json(e: &Endpoint, state: &str, pool: &Pool, now: Instant) -> serde_json::Value {
    let health = match e.active_health() {
        ActiveHealth::Unknown => "unknown",
        ActiveHealth::Healthy => "healthy",
        ActiveHealth::Unhealthy => "unhealthy",
    };
    let last_check = e.last_check().map(|(at, passed)| {
        serde_json::json!({
            "secondsAgo": (now.saturating_duration_since(at).as_secs_f64() * 10.0).round() / 10.0,
            "passed": passed,
        })
    });
    serde_json::json!({
        "address": e.addr.to_string(),
        "identity": e.identity,
        "state": state,
        "health": health,
        "ejected": e.is_ejected(now),
        "available": e.is_available(now),
        "inFlight": e.in_flight(),
        "requests": e.requests(),
        "latencyEwmaMs": (e.latency_ewma_at(now, pool.policy.latency_decay) / 1e4).round() / 100.0,
        "lastCheck": last_check,
        "load": e.load_if_any().map(|l| load_json(l, now)),
    })
}

/// What the pod reported of its load and the weight made of it.
fn load_json(load: &EndpointLoad, now: Instant) -> serde_json::Value {
    let round = |v: f64, places: i32| {
        let f = 10f64.powi(places);
        (v * f).round() / f
    };
    serde_json::json!({
        "utilization": round(load.utilization(), 3),
        "weight": load.weight().map(|w| round(w, 2)),
        "reports": load.accepted(),
        "rejected": load.rejected(),
        "lastReportSecondsAgo": load
            .last_report()
            .map(|at| round(now.saturating_duration_since(at).as_secs_f64(), 1)),
    })
}

/// `/pools` as the tables `weir inspect` prints.
pub fn render_pools(pools: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let empty = Vec::new();
    let list = pools
        .get("pools")
        .and_then(|p| p.as_array())
        .unwrap_or(&empty);
    if list.is_empty() {
        out.push_str("no pools\n");
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    for pool in list {
        let routes: Vec<String> = pool["routes"]
            .as_array()
            .map(|r| r.iter().map(s).collect())
            .unwrap_or_default();
        let counts = &pool["status"]["endpoints"];
        let _ = writeln!(
            out,
            "POOL {}  {}  routes: {}  endpoints: {} healthy / {} ready / {} total",
            s(&pool["name"]),
            s(&pool["algorithm"]),
            if routes.is_empty() {
                "-".to_string()
            } else {
                routes.join(", ")
            },
            s(&counts["healthy"]),
            s(&counts["ready"]),
            s(&counts["total"]),
        );
        for c in pool["status"]["conditions"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                out,
                "  {}={} {}: {}",
                s(&c["type"]),
                s(&c["status"]),
                s(&c["reason"]),
                s(&c["message"])
            );
        }
        let _ = writeln!(
            out,
            "  {:<22} {:<28} {:<7} {:<10} {:<8} {:>8} {:>9} {:>11} {:>6} {:>9}  LAST CHECK",
            "ENDPOINT",
            "IDENTITY",
            "STATE",
            "HEALTH",
            "EJECTED",
            "INFLIGHT",
            "REQUESTS",
            "EWMA (ms)",
            "UTIL",
            "WEIGHT"
        );
        for b in pool["backends"].as_array().unwrap_or(&empty) {
            for e in b["endpoints"].as_array().unwrap_or(&empty) {
                let check = match &e["lastCheck"] {
                    serde_json::Value::Null => "-".to_string(),
                    c => format!(
                        "{} {}s ago",
                        if c["passed"].as_bool() == Some(true) {
                            "pass"
                        } else {
                            "FAIL"
                        },
                        s(&c["secondsAgo"])
                    ),
                };
                let load = &e["load"];
                let utilization = if load["reports"].as_u64().unwrap_or(0) > 0 {
                    s(&load["utilization"])
                } else {
                    "-".to_string()
                };
                let _ = writeln!(
                    out,
                    "  {:<22} {:<28} {:<7} {:<10} {:<8} {:>8} {:>9} {:>11} {:>6} {:>9}  {check}",
                    s(&e["address"]),
                    s(&e["identity"]),
                    s(&e["state"]),
                    s(&e["health"]),
                    if e["ejected"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    s(&e["inFlight"]),
                    s(&e["requests"]),
                    s(&e["latencyEwmaMs"]),
                    utilization,
                    s(&load["weight"]),
                );
            }
        }
        out.push('\n');
    }
    out
}
