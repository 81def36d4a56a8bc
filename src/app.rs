//! Wires the parts together: a store feed → compile → the table → proxy and admin servers.

mod gateway_sockets;
mod load_weights;

use gateway_sockets::GatewaySockets;

use crate::admin::{self, ProcessState};
use crate::affinity::{Affinity, RandomKeyError};
use crate::api::LoadBalancerPoolStatus;
use crate::controller::gateway_status::with_bind_failures;
use crate::health::{self, Checker};
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy};
use crate::routing::gateway::GatewayAddresses;
use crate::routing::{
    CompileOptions, Compiled, GatewayStatuses, HostPolicy, RoutingTable, compile_with_options,
};
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
    /// Which namespace may claim which hosts (open: any).
    pub host_policy: HostPolicy,
    /// Where Gateways that name no address listen.
    pub gateway_addresses: GatewayAddresses,
    /// Which Kubernetes Ingresses are weir's.
    pub ingress_class: crate::api::ingress::IngressClassChoice,
}

impl Default for Options {
    /// weir's own defaults: plain HTTP on 127.0.0.1:8080, admin on 127.0.0.1:9901, no TLS
    /// listener, a random affinity key, no access log, the default client limits.
    fn default() -> Self {
        Options {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https_addr: None,
            default_certificate: None,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9901)),
            shutdown_grace: Duration::from_secs(30),
            affinity_key: None,
            access_log: proxy::access_log::AccessLog::Off,
            limits: Default::default(),
            forwarding: Default::default(),
            host_policy: HostPolicy::open(),
            gateway_addresses: GatewayAddresses::default(),
            ingress_class: Default::default(),
        }
    }
}

/// A running weir: listeners bound, table following the store feed.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    pub https_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub admin: Arc<ProcessState>,
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
    /// No key for the affinity cookies: weir refuses a guessable one.
    #[error(transparent)]
    RandomKey(#[from] RandomKeyError),
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

/// Binds the listeners and starts serving `first`, then every store `updates` sends (each is
/// compiled and swapped in; the value `updates` holds at start counts as seen). With no
/// `first` (the cluster not listed yet), `/readyz` says not ready and every request gets 404
/// until `updates` sends one.
pub async fn start(
    options: Options,
    first: Option<Arc<Store>>,
    updates: watch::Receiver<Arc<Store>>,
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
    let admin = Arc::new(ProcessState {
        metrics: metrics.clone(),
        table: table.clone(),
        ..Default::default()
    });
    let affinity = Arc::new(match &options.affinity_key {
        Some(key) => Affinity::new(key),
        None => Affinity::try_random()?,
    });
    // Made at start only for an HTTPS listener; Gateway sockets share it, or make it when one
    // first needs TLS.
    let default_certificate = match &https {
        None => None,
        Some(_) => {
            let files = options
                .default_certificate
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            Some(proxy::tls::default_certificate(files).map_err(StartError::DefaultCertificate)?)
        }
    };
    let tls = match &default_certificate {
        None => None,
        Some(default) => {
            let config = proxy::tls::server_config(table.clone(), default.clone())?;
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
                None,
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
            tokio::spawn(admin::history::run(
                admin.history.clone(),
                table.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(proxy::upstream::expire_idle(
                table.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(load_weights::run(table.clone(), shutdown_rx.clone())),
            tokio::spawn(follow_store(
                Follower::new(
                    table.clone(),
                    admin.clone(),
                    affinity,
                    CompileOptions {
                        host_policy: options.host_policy.clone(),
                        gateway_addresses: options.gateway_addresses.clone(),
                        ingress_class: options.ingress_class.clone(),
                    },
                    GatewaySockets::new(
                        table,
                        proxy.clone(),
                        options.limits.clone(),
                        slots.clone(),
                        options.shutdown_grace,
                        default_certificate,
                        options.default_certificate.clone(),
                    ),
                ),
                first,
                updates,
                shutdown_rx.clone(),
            )),
            tokio::spawn(proxy::serve(
                http,
                proxy,
                None,
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

/// Keeps the table in step with the store, health checks in step with the table, and pool
/// statuses in step with live health. One step each, in that order.
struct Follower {
    table: Arc<ArcSwap<RoutingTable>>,
    admin: Arc<ProcessState>,
    affinity: Arc<Affinity>,
    checker: Checker,
    /// What compile is told besides the store.
    compile_options: Arc<CompileOptions>,
    /// The statuses compile gave, before live health is folded in.
    compiled: BTreeMap<ObjectKey, LoadBalancerPoolStatus>,
    /// What compile said of the Gateway API objects, before the sockets' bind failures.
    gateway: GatewayStatuses,
    /// The Gateway API sockets, opened and closed as the table asks.
    sockets: GatewaySockets,
}

/// Serves `first` (when there is one), then every store `updates` sends, until shutdown.
/// Between stores, live health is folded into the statuses every [`STATUS_REFRESH`].
async fn follow_store(
    mut follower: Follower,
    first: Option<Arc<Store>>,
    mut updates: watch::Receiver<Arc<Store>>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Some(store) = first {
        follower.apply(store).await;
    }
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let store = updates.borrow_and_update().clone();
                follower.apply(store).await;
            }
            _ = refresh.tick() => {
                if follower.sockets.has_failures() {
                    follower.sockets.sync().await;
                    follower.publish_gateway_statuses();
                }
            }
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                follower.sockets.shutdown().await;
                return;
            }
        }
        follower.refresh_statuses();
    }
}

impl Follower {
    fn new(
        table: Arc<ArcSwap<RoutingTable>>,
        admin: Arc<ProcessState>,
        affinity: Arc<Affinity>,
        compile_options: CompileOptions,
        sockets: GatewaySockets,
    ) -> Self {
        Follower {
            sockets,
            checker: Checker::new(admin.metrics.clone()),
            table,
            admin,
            affinity,
            compile_options: Arc::new(compile_options),
            compiled: BTreeMap::new(),
            gateway: GatewayStatuses::default(),
        }
    }

    /// Compiles `store`, swaps the table in and moves the health checks to it. A compile
    /// that fails (a panic) keeps the table in service.
    #[tracing::instrument(skip_all, fields(objects = store.len()))]
    async fn apply(&mut self, store: Arc<Store>) {
        let started = Instant::now();
        let Some(compiled) = compile_off_thread(
            store,
            self.table.load_full(),
            self.compile_options.clone(),
            self.admin.clone(),
        )
        .await
        else {
            return;
        };
        record_rebuild(&self.admin.metrics, &compiled.table, started);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        self.admin.last_rebuild.store(unix, Ordering::Relaxed);
        let pools = compiled.statuses.len();
        self.swap_in(compiled.table);
        self.compiled = compiled.statuses;
        self.sync_health();
        self.sockets.sync().await;
        self.gateway = compiled.gateway;
        self.publish_gateway_statuses();
        log_ingress_warnings(&self.admin.ingress_reports.load(), &compiled.ingresses);
        self.admin
            .ingress_reports
            .store(Arc::new(compiled.ingresses));
        tracing::info!(
            pools,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "routing table swapped in"
        );
    }

    /// Puts `table` in service.
    fn swap_in(&self, table: RoutingTable) {
        let new = Arc::new(table);
        // The cookie index first: a request that meets the new table before its index falls
        // back to hashing every endpoint of its pool.
        self.affinity.sync(&new);
        let old = self.table.swap(new);
        // Freeing a large table takes tens of milliseconds: not on a thread that serves
        // requests. (A request still holding it frees it when it ends; rare and short-lived.)
        drop(tokio::task::spawn_blocking(move || drop(old)));
        self.admin.synced.store(true, Ordering::Relaxed);
    }

    /// Starts checks for new endpoints and stops those of endpoints gone.
    fn sync_health(&self) {
        self.checker.sync(&self.table.load());
        self.admin
            .metrics
            .health_checks
            .set(self.checker.running() as i64);
    }

    /// Publishes the Gateway API statuses for the leader to write: compile's, with the
    /// sockets that would not bind folded in (their listeners are not programmed).
    fn publish_gateway_statuses(&self) {
        let statuses =
            with_bind_failures(&self.gateway, &self.table.load(), self.sockets.failures());
        self.admin.gateway_statuses.store(Arc::new(statuses));
    }

    /// Folds live health into the compiled statuses, logs what changed and publishes them.
    fn refresh_statuses(&self) {
        let now = Instant::now();
        let current = self.table.load();
        let live: BTreeMap<ObjectKey, LoadBalancerPoolStatus> = self
            .compiled
            .iter()
            .map(|(key, status)| {
                let live = match current.pool(key) {
                    Some(pool) => health::live_status(status, pool, now),
                    None => status.clone(),
                };
                (key.clone(), live)
            })
            .collect();
        log_status_changes(&self.admin.statuses.load(), &live);
        self.admin.statuses.store(Arc::new(live));
    }
}

/// Logs each Ingress warning that is new since the last compile (once, not at every rebuild).
fn log_ingress_warnings(
    before: &BTreeMap<ObjectKey, crate::routing::IngressReport>,
    now: &BTreeMap<ObjectKey, crate::routing::IngressReport>,
) {
    for (key, report) in now {
        let old = before.get(key);
        for w in &report.warnings {
            if old.is_none_or(|o| !o.warnings.contains(w)) {
                tracing::warn!(ingress = %key, reason = w.reason.as_str(), "{}", w.message);
            }
        }
    }
}

/// Compiles `store` against the table in service, and starts the history of its new pools
/// before they serve. Compile is CPU work that grows with the cluster: it runs off the
/// proxy's threads. `None`: it panicked (logged).
async fn compile_off_thread(
    store: Arc<Store>,
    previous: Arc<RoutingTable>,
    options: Arc<CompileOptions>,
    admin: Arc<ProcessState>,
) -> Option<Compiled> {
    match tokio::task::spawn_blocking(move || {
        let compiled = compile_with_options(&store, Some(&previous), &options);
        admin.history.start(&compiled.table, &admin.metrics);
        compiled
    })
    .await
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, "compile failed; keeping the table in service");
            None
        }
    }
}

/// The rebuild metrics: count, duration, and the new table's pools and endpoints.
fn record_rebuild(metrics: &Metrics, table: &RoutingTable, started: Instant) {
    metrics.table_rebuilds.inc();
    metrics
        .table_rebuild_duration
        .observe(started.elapsed().as_secs_f64());
    metrics.pools.set(table.pools().count() as i64);
    metrics.endpoints.set(
        table
            .pools()
            .map(|p| p.ready_endpoints().count() as i64)
            .sum(),
    );
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
