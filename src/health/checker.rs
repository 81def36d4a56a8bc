//! Active health checks. One task per checked endpoint; the set of tasks follows the routing
//! table: [`Checker::sync`] after each swap starts checks for new endpoints, stops those of
//! endpoints that left, and leaves the others (and their state) alone.

use crate::api::{HealthCheck, parse_status_range};
use crate::endpoint::{ActiveHealth, Endpoint};
use crate::metrics::{CheckLabels, Metrics};
use crate::routing::RoutingTable;
use crate::store::ObjectKey;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

type Key = (ObjectKey, SocketAddr);

struct Task {
    endpoint: Arc<Endpoint>,
    config: HealthCheck,
    handle: JoinHandle<()>,
}

/// The running checks, by pool and endpoint address.
#[derive(Default)]
pub struct Checker {
    // Touched only by `sync` (after a table swap), never by the request path.
    tasks: Mutex<HashMap<Key, Task>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("running", &self.running())
            .finish()
    }
}

impl Checker {
    /// Checks that count their results in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Checker {
            tasks: Mutex::default(),
            metrics,
        }
    }

    /// Makes the running checks match the table.
    pub fn sync(&self, table: &RoutingTable) {
        let mut wanted: HashMap<Key, (Arc<Endpoint>, &HealthCheck, Arc<String>)> = HashMap::new();
        for pool in table.pools() {
            let Some(config) = &pool.policy.health_check else {
                continue;
            };
            for e in pool.all_endpoints() {
                wanted.insert(
                    (pool.key.clone(), e.addr),
                    (e.clone(), config, pool.name.clone()),
                );
            }
        }
        let mut tasks = self.lock();
        tasks.retain(|key, task| {
            let keep = wanted.get(key).is_some_and(|(e, config, _)| {
                Arc::ptr_eq(e, &task.endpoint) && **config == task.config
            });
            if !keep {
                task.handle.abort();
                // Without checks, readiness is trusted again.
                task.endpoint.set_active_health(ActiveHealth::Unknown);
            }
            keep
        });
        for (key, (endpoint, config, pool)) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let handle = tokio::spawn(check_loop(
                endpoint.clone(),
                config.clone(),
                pool,
                self.metrics.clone(),
            ));
            tasks.insert(
                key,
                Task {
                    endpoint,
                    config: config.clone(),
                    handle,
                },
            );
        }
    }

    /// The running checks, even after a panic under the lock ([`crate::sync::lock`]). Whatever
    /// a panic interrupts, each entry is a whole task under its own key (`HashMap::retain` and
    /// `insert` leave no half entry), and the next `sync` makes the set match the table again.
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Task>> {
        crate::sync::lock(&self.tasks)
    }

    /// Checks running now.
    pub fn running(&self) -> usize {
        self.lock()
            .values()
            .filter(|t| !t.handle.is_finished())
            .count()
    }

    /// Stops every check.
    pub fn stop(&self) {
        for (_, task) in self.lock().drain() {
            task.handle.abort();
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn check_loop(
    endpoint: Arc<Endpoint>,
    config: HealthCheck,
    pool: Arc<String>,
    metrics: Arc<Metrics>,
) {
    let interval = Duration::from_secs(config.interval_seconds.into());
    let timeout = Duration::from_secs(config.timeout_seconds.into());
    // Spread the checks of many endpoints over the interval instead of firing them together.
    tokio::time::sleep(interval.mul_f64(fastrand::f64())).await;
    let (mut passes, mut failures) = (0u32, 0u32);
    loop {
        let passed = matches!(
            tokio::time::timeout(timeout, probe(&endpoint, &config)).await,
            Ok(true)
        );
        endpoint.record_check(passed, Instant::now());
        let result = if passed { "pass" } else { "fail" };
        metrics
            .health_check_results
            .get_or_create(&CheckLabels {
                pool: pool.clone(),
                result,
            })
            .inc();
        let state = endpoint.active_health();
        if passed {
            passes += 1;
            failures = 0;
            let back = state == ActiveHealth::Unhealthy && passes >= config.healthy_threshold;
            if back || state == ActiveHealth::Unknown {
                if back {
                    tracing::info!(pool = %pool, endpoint = %endpoint.addr, "endpoint passes health checks again");
                }
                endpoint.set_active_health(ActiveHealth::Healthy);
            }
        } else {
            failures += 1;
            passes = 0;
            if state != ActiveHealth::Unhealthy && failures >= config.unhealthy_threshold {
                tracing::warn!(pool = %pool, endpoint = %endpoint.addr, failures, "endpoint fails health checks; taking it out");
                endpoint.set_active_health(ActiveHealth::Unhealthy);
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One check: a TCP connect, or an HTTP GET whose status must be expected. A load report in
/// the answer is taken in too, so a pod that gets no traffic still tells its load.
async fn probe(endpoint: &Endpoint, config: &HealthCheck) -> bool {
    let addr = endpoint.addr;
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let Some(http) = &config.http else {
        return true;
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return false;
    };
    let connection = tokio::spawn(connection);
    let host = http.host.clone().unwrap_or_else(|| addr.to_string());
    let request = http::Request::get(http.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "weir-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let passed = match request {
        Ok(request) => match sender.send_request(request).await {
            Ok(response) => {
                if let Some(report) = crate::load_report::from_headers(response.headers()) {
                    endpoint.observe_load_report(report, Instant::now());
                }
                let status = response.status().as_u16();
                http.expected_statuses
                    .iter()
                    .filter_map(|s| parse_status_range(s))
                    .any(|(lo, hi)| (lo..=hi).contains(&status))
            }
            Err(_) => false,
        },
        Err(_) => false,
    };
    connection.abort();
    passed
}
