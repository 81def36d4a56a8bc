//! Wires the parts together: a store feed → compile → the table → proxy and admin servers.

use crate::admin::{self, AdminState};
use crate::affinity::Affinity;
use crate::api::LoadBalancerPoolStatus;
use crate::health::{self, Checker};
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy};
use crate::routing::{RoutingTable, compile};
use crate::store::{ObjectKey, Store};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where to listen and how to stop.
#[derive(Debug, Clone)]
pub struct Options {
    pub http_addr: SocketAddr,
    /// The HTTPS listener; `None`: no TLS.
    pub https_addr: Option<SocketAddr>,
    /// PEM certificate chain and key for clients whose SNI names no pool's host; `None`: a
    /// self-signed one made at start.
    pub default_certificate: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub admin_addr: SocketAddr,
    /// How long open connections get to finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// The affinity cookie key every replica shares; `None`: a random one for this process.
    pub affinity_key: Option<Vec<u8>>,
    /// One line per request on stdout, or none.
    pub access_log: proxy::access_log::AccessLog,
    /// What one client may cost: connections, header size and time, HTTP/2 streams.
    pub limits: proxy::Limits,
    /// Whose `X-Forwarded-*` to believe; `Via` and `Server`.
    pub forwarding: proxy::Forwarding,
}

/// A running weir: listeners bound, table following the store feed.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    pub https_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub admin: Arc<AdminState>,
    pub affinity: Arc<Affinity>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Why weir could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener's address is taken, not ours to use, or not on this host.
    #[error("cannot listen on {addr} (the {listener} listener)")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The certificate for clients whose SNI names no pool's host.
    #[error("the default TLS certificate: {0}")]
    DefaultCertificate(String),
    #[error("the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("reading a bound listener's address")]
    LocalAddr(#[source] std::io::Error),
}

/// Binds `addr`, naming it (and which listener it is) when that fails.
async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

/// Binds the listeners and starts serving. The table follows `stores`: every value sent is
/// compiled and swapped in; until the first one, `/readyz` says not ready and every request
/// gets 404.
pub async fn start(
    options: Options,
    stores: watch::Receiver<Arc<Store>>,
) -> Result<Running, StartError> {
    let http = bind("HTTP", options.http_addr).await?;
    let https = match options.https_addr {
        Some(addr) => Some(bind("HTTPS", addr).await?),
        None => None,
    };
    let admin_listener = bind("admin", options.admin_addr).await?;
    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::default()));
    let metrics = Arc::new(Metrics::new(vec![Box::new(admin::EndpointCollector {
        table: table.clone(),
    })]));
    let admin = Arc::new(AdminState {
        metrics: metrics.clone(),
        table: table.clone(),
        ..Default::default()
    });
    let affinity = Arc::new(match &options.affinity_key {
        Some(key) => Affinity::new(key),
        None => Affinity::random(),
    });
    let tls = match &https {
        None => None,
        Some(_) => {
            let files = options
                .default_certificate
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            let default =
                proxy::tls::default_certificate(files).map_err(StartError::DefaultCertificate)?;
            let config = proxy::tls::server_config(table.clone(), default)?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let proxy = Arc::new(Proxy::new(
        table.clone(),
        affinity.clone(),
        metrics.clone(),
        options.access_log,
        options.forwarding.clone(),
    ));
    let slots = proxy::Slots::new(options.limits.max_connections);
    let mut tasks = Vec::new();
    let https_addr = match https {
        Some(listener) => {
            let addr = listener.local_addr().map_err(StartError::LocalAddr)?;
            tasks.push(tokio::spawn(proxy::serve(
                listener,
                proxy.clone(),
                tls,
                options.limits.clone(),
                slots.clone(),
                shutdown_rx.clone(),
                options.shutdown_grace,
            )));
            Some(addr)
        }
        None => None,
    };
    let running = Running {
        http_addr: http.local_addr().map_err(StartError::LocalAddr)?,
        https_addr,
        admin_addr: admin_listener.local_addr().map_err(StartError::LocalAddr)?,
        table: table.clone(),
        admin: admin.clone(),
        affinity: affinity.clone(),
        tasks: vec![
            tokio::spawn(proxy::upstream::expire_idle(
                table.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(follow_store(
                stores,
                table,
                admin.clone(),
                affinity,
                shutdown_rx.clone(),
            )),
            tokio::spawn(proxy::serve(
                http,
                proxy,
                None,
                options.limits.clone(),
                slots,
                shutdown_rx.clone(),
                options.shutdown_grace,
            )),
            tokio::spawn(admin::serve(admin_listener, admin, shutdown_rx)),
        ]
        .into_iter()
        .chain(tasks)
        .collect(),
        shutdown,
    };
    tracing::info!(http = %running.http_addr, https = ?running.https_addr, admin = %running.admin_addr, "listening");
    Ok(running)
}

impl Running {
    /// Stops accepting, lets open requests finish (within the grace period), and returns
    /// when everything has stopped.
    pub async fn shutdown(self) {
        self.admin.draining.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// How often live health is folded into pool statuses.
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// Compiles every store the feed sends and swaps the result in; keeps health checks in step
/// with the table, and pool statuses in step with live health.
async fn follow_store(
    mut stores: watch::Receiver<Arc<Store>>,
    table: Arc<ArcSwap<RoutingTable>>,
    admin: Arc<AdminState>,
    affinity: Arc<Affinity>,
    mut shutdown: watch::Receiver<bool>,
) {
    let checker = Checker::new(admin.metrics.clone());
    let mut compiled_statuses: BTreeMap<ObjectKey, LoadBalancerPoolStatus> = BTreeMap::new();
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = stores.changed() => {
                if changed.is_err() {
                    return;
                }
                let store = stores.borrow_and_update().clone();
                if let Some(statuses) = rebuild(store, &table, &admin, &affinity).await {
                    compiled_statuses = statuses;
                    let current = table.load();
                    checker.sync(&current);
                    admin.metrics.health_checks.set(checker.running() as i64);
                }
            }
            _ = refresh.tick() => {}
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        }
        let now = Instant::now();
        let current = table.load();
        let live: BTreeMap<ObjectKey, LoadBalancerPoolStatus> = compiled_statuses
            .iter()
            .map(|(key, status)| {
                let live = match current.pool(key) {
                    Some(pool) => health::live_status(status, pool, now),
                    None => status.clone(),
                };
                (key.clone(), live)
            })
            .collect();
        log_status_changes(&admin.statuses.load(), &live);
        admin.statuses.store(Arc::new(live));
    }
}

/// Compiles a store and swaps the table in; returns the pools' compiled statuses.
async fn rebuild(
    store: Arc<Store>,
    table: &ArcSwap<RoutingTable>,
    admin: &AdminState,
    affinity: &Affinity,
) -> Option<BTreeMap<ObjectKey, LoadBalancerPoolStatus>> {
    let previous = table.load_full();
    let started = Instant::now();
    // compile is CPU work that grows with the cluster: keep it off the proxy's threads.
    let compiled = match tokio::task::spawn_blocking(move || compile(&store, Some(&previous))).await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "compile failed; keeping the table in service");
            return None;
        }
    };
    let metrics = &admin.metrics;
    metrics.table_rebuilds.inc();
    metrics
        .table_rebuild_duration
        .observe(started.elapsed().as_secs_f64());
    metrics.pools.set(compiled.table.pools().count() as i64);
    metrics.endpoints.set(
        compiled
            .table
            .pools()
            .map(|p| p.endpoints().count() as i64)
            .sum(),
    );
    let new = Arc::new(compiled.table);
    // The cookie index first: a request that meets the new table before its index falls back
    // to hashing every endpoint of its pool.
    affinity.sync(&new);
    let old = table.swap(new);
    // Freeing a large table takes tens of milliseconds: not on a thread that serves requests.
    // (A request still holding it frees it when it ends; that is rare and short-lived.)
    drop(tokio::task::spawn_blocking(move || drop(old)));
    admin.synced.store(true, Ordering::Relaxed);
    tracing::info!(
        pools = compiled.statuses.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "routing table swapped in"
    );
    Some(compiled.statuses)
}

/// Logs each pool whose status changed: its conditions, at warn when one is not true.
fn log_status_changes(
    before: &BTreeMap<ObjectKey, LoadBalancerPoolStatus>,
    after: &BTreeMap<ObjectKey, LoadBalancerPoolStatus>,
) {
    for (key, status) in after {
        if before.get(key) == Some(status) {
            continue;
        }
        let e = status.endpoints;
        for c in &status.conditions {
            if c.is_true() {
                tracing::info!(pool = %key, condition = %c.type_, reason = %c.reason, message = %c.message, ready = e.ready, total = e.total, "pool status");
            } else {
                tracing::warn!(pool = %key, condition = %c.type_, reason = %c.reason, message = %c.message, ready = e.ready, total = e.total, "pool status");
            }
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(k)) {
        tracing::info!(pool = %key, "pool removed");
    }
}
