//! The dashboard: one page (built into the binary, no network fetch) and the JSON feed it
//! polls, `/dashboard.json`, a page of pools at a time, problem pools first.

use super::ProcessState;
use super::history::{INTERVAL, SAMPLES};
use crate::api::LoadBalancerPoolStatus;
use crate::endpoint::{ActiveHealth, Endpoint};
use crate::metrics::ListenerLabels;
use crate::routing::Pool;
use crate::store::ObjectKey;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
pub const APP_JS: &str = include_str!("dashboard/app.js");
pub const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Pools per page when the query names no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

/// What a feed request asks for: `?q=` (a substring of the pool's name or hosts, any case),
/// `offset`, `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub q: String,
    pub offset: usize,
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            q: String::new(),
            offset: 0,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl Page {
    /// The page a query string asks for; what does not parse keeps its default.
    pub fn from_query(query: Option<&str>) -> Page {
        let mut page = Page::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*k {
                "q" => page.q = v.trim().to_lowercase(),
                "offset" => page.offset = v.parse().unwrap_or(0),
                "limit" => page.limit = v.parse().unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
                _ => {}
            }
        }
        page
    }
}

/// Whether a pool needs someone's attention: a condition not true, or no endpoint that may
/// take traffic.
fn has_problem(status: Option<&LoadBalancerPoolStatus>, in_table: bool) -> bool {
    match status {
        None => !in_table,
        Some(s) => {
            !in_table || s.endpoints.healthy == 0 || s.conditions.iter().any(|c| !c.is_true())
        }
    }
}

fn hosts(pool: Option<&Pool>, status: Option<&LoadBalancerPoolStatus>) -> Vec<String> {
    if let Some(pool) = pool {
        let mut hosts: Vec<String> = pool
            .routes
            .iter()
            .map(|(h, _)| {
                if h.is_empty() {
                    "*".to_string()
                } else {
                    h.clone()
                }
            })
            .collect();
        hosts.dedup();
        return hosts;
    }
    status
        .and_then(|s| s.hosts.as_deref())
        .map(|h| h.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

impl ProcessState {
    /// `/dashboard.json`: the process, and one page of pools (problem pools first, then by
    /// name) with their endpoints and recent history.
    pub fn dashboard_json(&self, page: &Page) -> Value {
        let table = self.table.load();
        let statuses = self.statuses.load();
        let now = Instant::now();
        // Every pool weir knows: the table's, and those compile left out (they have a status).
        let mut keys: Vec<(bool, &ObjectKey)> = statuses
            .keys()
            .chain(
                table
                    .pools()
                    .map(|p| &p.key)
                    .filter(|k| !statuses.contains_key(*k)),
            )
            .map(|key| {
                let problem = has_problem(statuses.get(key), table.pool(key).is_some());
                (problem, key)
            })
            .collect();
        let problems = keys.iter().filter(|(p, _)| *p).count();
        let total_pools = keys.len();
        if !page.q.is_empty() {
            keys.retain(|(_, key)| {
                let name = format!("{key}").to_lowercase();
                name.contains(&page.q)
                    || hosts(table.pool(key).map(|p| p.as_ref()), statuses.get(*key))
                        .iter()
                        .any(|h| h.to_lowercase().contains(&page.q))
            });
        }
        keys.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let matched = keys.len();
        let pools: Vec<Value> = keys
            .iter()
            .skip(page.offset)
            .take(page.limit)
            .map(|(problem, key)| {
                self.pool_json(
                    key,
                    table.pool(key).map(|p| p.as_ref()),
                    statuses.get(*key),
                    *problem,
                    now,
                )
            })
            .collect();
        json!({
            "process": self.process_json(total_pools, problems),
            "history": { "intervalSeconds": INTERVAL.as_secs(), "samples": SAMPLES },
            "matched": matched,
            "offset": page.offset,
            "limit": page.limit,
            "pools": pools,
        })
    }

    fn process_json(&self, pools: usize, problems: usize) -> Value {
        let m = &self.metrics;
        let by_listener = |family: &dyn Fn(&ListenerLabels) -> i64| {
            json!({
                "http": family(&ListenerLabels { listener: "http" }),
                "https": family(&ListenerLabels { listener: "https" }),
            })
        };
        let last_rebuild = self.last_rebuild.load(Ordering::Relaxed);
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": self.started.elapsed().as_secs(),
            "ready": self.synced.load(Ordering::Relaxed),
            "draining": self.draining.load(Ordering::Relaxed),
            "tableGeneration": m.table_rebuilds.get(),
            "lastRebuildUnixSeconds": (last_rebuild != 0).then_some(last_rebuild),
            "lastRebuildSecondsAgo": (last_rebuild != 0).then(|| unix_now().saturating_sub(last_rebuild as i64).max(0)),
            "configErrors": m.config_errors.get(),
            "connectionsOpen": by_listener(&|l| m.connections_open.get(l).map_or(0, |g| g.get())),
            "connectionsRefused": by_listener(&|l| m.connections_refused.get(l).map_or(0, |c| c.get() as i64)),
            "pools": pools,
            "poolsWithProblems": problems,
        })
    }

    fn pool_json(
        &self,
        key: &ObjectKey,
        pool: Option<&Pool>,
        status: Option<&LoadBalancerPoolStatus>,
        problem: bool,
        now: Instant,
    ) -> Value {
        let conditions: Vec<Value> = status
            .map(|s| {
                s.conditions
                    .iter()
                    .map(|c| {
                        json!({
                            "type": c.type_, "status": c.status, "reason": c.reason,
                            "message": c.message, "ok": c.is_true(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let series = self.history.series(key).unwrap_or_default();
        let interval = INTERVAL.as_secs_f64();
        let last = |v: &[u32]| v.last().copied().unwrap_or(0);
        let (answers, errors) = (last(&series.answers), last(&series.errors));
        let mut out = json!({
            "name": key.to_string(),
            "hosts": hosts(pool, status),
            "inTable": pool.is_some(),
            "problem": problem,
            "conditions": conditions,
            "endpointCounts": status.map(|s| s.endpoints),
            "requestsPerSecond": round(f64::from(answers) / interval, 2),
            "errorRate5xx": if answers == 0 { 0.0 } else { round(f64::from(errors) / f64::from(answers), 4) },
            "history": { "answers": series.answers, "errors5xx": series.errors },
        });
        let Some(pool) = pool else {
            return out;
        };
        let total: u64 = pool.all_endpoints().map(|e| e.requests()).sum();
        let endpoints: Vec<Value> = pool
            .backends
            .iter()
            .flat_map(|b| {
                let service = b.service.to_string();
                let ready = b.endpoints.iter().map(move |e| (e, "ready"));
                let fenced = b.fenced.iter().map(move |e| (e, "fenced"));
                ready.chain(fenced).map(move |(e, state)| {
                    endpoint_json(e, state, &service, b.weight, pool, total, now)
                })
            })
            .collect();
        out["routes"] = pool
            .routes
            .iter()
            .map(|(h, p)| json!({ "host": if h.is_empty() { "*" } else { h }, "path": p }))
            .collect();
        out["algorithm"] = json!(pool.policy.algorithm.as_str());
        out["affinity"] = json!(
            pool.policy
                .session_affinity
                .as_ref()
                .map(|a| json!({ "cookie": a.cookie.name }))
        );
        out["tls"] = json!(pool.tls.as_ref().map(|t| {
            let not_after = t.certificate.as_ref().and_then(|c| c.not_after);
            json!({
                "certificate": t.certificate.is_some(),
                "expiresUnixSeconds": not_after,
                "expiresInSeconds": not_after.map(|n| n - unix_now()),
                "redirectHttp": t.redirect_http,
            })
        }));
        out["healthCheck"] = json!(pool.policy.health_check.is_some());
        out["requests"] = json!(total);
        out["endpoints"] = json!(endpoints);
        out
    }
}

fn endpoint_json(
    e: &Endpoint,
    state: &str,
    service: &str,
    weight: u32,
    pool: &Pool,
    pool_requests: u64,
    now: Instant,
) -> Value {
    let health = match e.active_health() {
        ActiveHealth::Unknown => "unknown",
        ActiveHealth::Healthy => "healthy",
        ActiveHealth::Unhealthy => "unhealthy",
    };
    let requests = e.requests();
    json!({
        "address": e.addr.to_string(),
        "identity": e.identity,
        "backend": service,
        "weight": weight,
        "state": state,
        "health": health,
        "ejectedForSeconds": e.ejected_for(now).map(|d| round(d.as_secs_f64(), 1)),
        "available": e.is_available(now),
        "inFlight": e.in_flight(),
        "requests": requests,
        "share": if pool_requests == 0 { 0.0 } else { round(requests as f64 / pool_requests as f64, 4) },
        "latencyEwmaMs": round(e.latency_ewma_at(now, pool.policy.latency_decay) / 1e6, 2),
        // The upper bound of the p99's power-of-two bucket, over the last one to two minutes.
        "latencyP99Ms": e
            .latency_window()
            .and_then(|w| w.p99())
            .map(|d| round(d.as_secs_f64() * 1e3, 3)),
        // What the pod reports of its load (ORCA), and the WeightedByLoad weight made of it.
        "utilization": e
            .load_if_any()
            .filter(|l| l.accepted() > 0)
            .map(|l| round(l.utilization(), 3)),
        "loadWeight": e.load_if_any().and_then(|l| l.weight()).map(|w| round(w, 1)),
        "lastCheck": e.last_check().map(|(at, passed)| json!({
            "secondsAgo": round(now.saturating_duration_since(at).as_secs_f64(), 1),
            "passed": passed,
        })),
    })
}
