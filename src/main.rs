//! The weir binary: parses the command line and runs one of the commands.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weir::app::{self, Options};
use weir::proxy::access_log::AccessLog;
use weir::source::file;
use weir::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "A Kubernetes-native ingress controller and load balancer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve pools from a YAML file of Services, EndpointSlices, Secrets and LoadBalancerPools,
    /// reloading it when it changes. No cluster needed.
    Serve {
        /// The file (multi-document YAML, or a `kind: List` as `kubectl get -o yaml` prints).
        #[arg(long, short = 'c')]
        config: PathBuf,
        #[command(flatten)]
        listen: Listen,
        /// How often to look for changes in the file.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        reload_interval: Duration,
    },
    /// The ingress controller in a cluster: watch LoadBalancerPools, Services, EndpointSlices
    /// and TLS Secrets, proxy, and (when leader) write pool status.
    Run {
        /// A kubeconfig file; default: KUBECONFIG, ~/.kube/config, or the in-cluster account.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Namespaces to watch, comma-separated; default: all.
        #[arg(long, value_delimiter = ',')]
        watch_namespaces: Vec<String>,
        /// Serve only pools whose spec.className is this (pools without one are served too).
        #[arg(long, default_value = "weir")]
        controller_class: String,
        /// Namespace of the leader-election Lease (default: POD_NAMESPACE, else default).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        #[arg(long, default_value = "weir-leader")]
        lease_name: String,
        /// A leader that stops renewing is replaced after this long.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        lease_duration: Duration,
        #[command(flatten)]
        listen: Listen,
    },
    /// Start three local backends and a pool in front of them, to try weir in one command.
    Demo {
        #[command(flatten)]
        listen: DemoListen,
        /// Print the demo's configuration (a `weir serve` file) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Print the LoadBalancerPool CustomResourceDefinition as YAML.
    Crd,
    /// Check a file of pools (with the Services, EndpointSlices and Secrets they use) offline:
    /// the same parsing and compile weir runs, printing the conditions each pool would get.
    /// Exits non-zero when a pool would not be accepted or its references do not resolve.
    Check {
        /// The file, as `weir serve --config` takes it.
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    /// Show every pool of a running weir and the state of its endpoints (from its admin port).
    Inspect {
        /// The admin address of the weir to ask.
        #[arg(long, default_value = "http://127.0.0.1:9901")]
        admin: String,
    },
}

#[derive(clap::Args, Debug)]
struct Listen {
    /// Ingress HTTP listener (HTTP/1.1 and HTTP/2 prior knowledge).
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Ingress HTTPS listener (TLS 1.2 and 1.3; ALPN h2 and http/1.1).
    #[arg(long, default_value = "0.0.0.0:8443")]
    https_addr: SocketAddr,
    /// PEM certificate chain for clients whose SNI names no pool's host (with
    /// --default-key). Without it, a self-signed certificate is made at start.
    #[arg(long, requires = "default_key")]
    default_certificate: Option<PathBuf>,
    /// PEM private key of --default-certificate.
    #[arg(long, requires = "default_certificate")]
    default_key: Option<PathBuf>,
    /// Admin listener: /healthz, /readyz, /metrics.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin_addr: SocketAddr,
    /// The key of the session-affinity cookies (16 bytes or more; every replica must share
    /// it). Read again when it changes. Without it, a random key holds for this process only.
    #[arg(long)]
    affinity_key_file: Option<PathBuf>,
    /// After the key changes, cookies made with the previous key stay valid this long.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    affinity_key_grace: Duration,
    #[command(flatten)]
    clients: Clients,
    #[command(flatten)]
    process: Process,
}

/// `--max-connections` when the open-file limit leaves room for it.
const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// What ingress clients may cost, and what weir tells them and the pods.
#[derive(clap::Args, Debug)]
struct Clients {
    /// Open client connections (both listeners together); a client beyond this gets a 503
    /// (plain HTTP) or a closed socket (TLS). Default: 16384, or what the open-file limit
    /// leaves room for (two descriptors a connection), whichever is lower.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Time a client has to send a request's headers; an idle keep-alive connection is
    /// closed after it too.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    client_header_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    #[arg(long, default_value_t = 64 * 1024)]
    max_header_bytes: usize,
    /// Most header fields in a request; more gets 431.
    #[arg(long, default_value_t = 100)]
    max_headers: usize,
    /// CIDRs of proxies in front of weir (comma-separated) whose X-Forwarded-For, -Proto and
    /// -Host are believed. Anyone else's X-Forwarded-For is appended to, never trusted.
    #[arg(long, value_delimiter = ',')]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Add `Via: 1.1 weir` to requests and responses.
    #[arg(long)]
    via: bool,
    /// Set this `Server` header on every response (default: the pod's own, untouched).
    #[arg(long)]
    server_header: Option<String>,
}

impl Clients {
    fn limits(&self) -> weir::proxy::Limits {
        use weir::fd_limit::{PER_CONNECTION, RESERVED};
        let fds = weir::fd_limit::raise();
        let room = fds.map(|n| (n.saturating_sub(RESERVED) / PER_CONNECTION) as usize);
        let max_connections = match (self.max_connections, room) {
            (Some(max), Some(room)) if max > room => {
                tracing::warn!(
                    open_files = fds,
                    max_connections = max,
                    "the open-file limit is below what --max-connections needs; raise `ulimit -n` or lower --max-connections"
                );
                max
            }
            (Some(max), _) => max,
            (None, Some(room)) => room.clamp(1, DEFAULT_MAX_CONNECTIONS),
            (None, None) => DEFAULT_MAX_CONNECTIONS,
        };
        weir::proxy::Limits {
            max_connections: max_connections.max(1),
            header_timeout: self.client_header_timeout,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            ..Default::default()
        }
    }

    fn forwarding(&self) -> anyhow::Result<weir::proxy::Forwarding> {
        let server = match &self.server_header {
            Some(v) => Some(
                http::HeaderValue::from_str(v)
                    .with_context(|| format!("--server-header {v:?} is not a header value"))?,
            ),
            None => None,
        };
        Ok(weir::proxy::Forwarding {
            trusted_proxies: self.trusted_proxies.clone(),
            via: self.via,
            server,
        })
    }
}

#[derive(clap::Args, Debug)]
struct DemoListen {
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin_addr: SocketAddr,
    #[command(flatten)]
    process: Process,
}

#[derive(clap::Args, Debug)]
struct Process {
    /// On SIGTERM or SIGINT, how long in-flight requests get to finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// One line per request on stdout: off, json, or common (Common Log Format plus pool,
    /// endpoint, duration and request id).
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Off)]
    access_log: AccessLogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AccessLogFormat {
    Off,
    Json,
    Common,
}

impl From<AccessLogFormat> for AccessLog {
    fn from(f: AccessLogFormat) -> Self {
        match f {
            AccessLogFormat::Off => AccessLog::Off,
            AccessLogFormat::Json => AccessLog::Json,
            AccessLogFormat::Common => AccessLog::Common,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `30s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 30s, 500ms or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: the unit must be ms, s or m")),
    }
}

/// A user's error (a bad file, a port in use) is one message with its causes, and exit code 1:
/// no `Result` from `main`, whose `Debug` printing adds a backtrace under `RUST_BACKTRACE`.
/// Backtraces are for bugs, and panics still print theirs.
fn main() -> std::process::ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_format, &cli.log_level);
    // One crypto provider for every rustls user in the binary (kube's client, our listeners).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Crd => {
            print!("{}", weir::api::crd_yaml().context("rendering the CRD")?);
            Ok(())
        }
        Command::Inspect { admin } => runtime(Some(1))?.block_on(inspect(&admin)),
        Command::Check { file } => check(&file),
        Command::Run {
            kubeconfig,
            watch_namespaces,
            controller_class,
            lease_namespace,
            lease_name,
            lease_duration,
            listen,
        } => {
            let options = listen_options(&listen)?;
            let scope = weir::source::kube::Scope {
                namespaces: watch_namespaces,
                class: controller_class,
            };
            let lease = weir::controller::lease::LeaseConfig {
                namespace: lease_namespace,
                name: lease_name,
                identity: replica_identity(),
                duration: lease_duration,
                renew_every: (lease_duration / 5).max(Duration::from_secs(1)),
            };
            let key_file = listen
                .affinity_key_file
                .map(|path| (path, listen.affinity_key_grace));
            runtime(listen.process.workers)?
                .block_on(run(kubeconfig, scope, lease, options, key_file))
        }
        Command::Serve {
            config,
            listen,
            reload_interval,
        } => {
            let options = listen_options(&listen)?;
            let key_file = listen
                .affinity_key_file
                .map(|path| (path, listen.affinity_key_grace));
            runtime(listen.process.workers)?.block_on(serve(
                config,
                options,
                reload_interval,
                key_file,
            ))
        }
        Command::Demo {
            listen,
            print_config,
        } => {
            if print_config {
                print!("{}", weir::demo::config(8000, 3));
                return Ok(());
            }
            let options = Options {
                http_addr: listen.http_addr,
                https_addr: None,
                default_certificate: None,
                admin_addr: listen.admin_addr,
                shutdown_grace: listen.process.shutdown_grace,
                affinity_key: None,
                access_log: listen.process.access_log.into(),
                limits: Default::default(),
                forwarding: Default::default(),
            };
            runtime(listen.process.workers)?.block_on(demo(options))
        }
    }
}

/// The async runtime: one thread per CPU, or `workers`. With one worker, the single-threaded
/// scheduler: it does the same work without the work-stealing machinery (shared queues,
/// cross-thread wake-ups) that only pays off with several threads.
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().context("starting the runtime")
}

fn init_logging(format: LogFormat, level: &str) {
    // rustls warns about what clients send (an IP address as SNI, say): a client must not be
    // able to write weir's log, so its messages start at error unless asked for by name.
    let level = if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Listener options shared by `serve` and `run`.
fn listen_options(listen: &Listen) -> anyhow::Result<Options> {
    let affinity_key = match &listen.affinity_key_file {
        Some(path) => Some(read_affinity_key(path)?),
        None => None,
    };
    Ok(Options {
        http_addr: listen.http_addr,
        https_addr: Some(listen.https_addr),
        default_certificate: listen
            .default_certificate
            .clone()
            .zip(listen.default_key.clone()),
        admin_addr: listen.admin_addr,
        shutdown_grace: listen.process.shutdown_grace,
        affinity_key,
        access_log: listen.process.access_log.into(),
        limits: listen.clients.limits(),
        forwarding: listen.clients.forwarding()?,
    })
}

/// This replica's name in the leader Lease: the pod, else host and process.
fn replica_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

async fn run(
    kubeconfig: Option<PathBuf>,
    scope: weir::source::kube::Scope,
    lease: weir::controller::lease::LeaseConfig,
    options: Options,
    key_file: Option<(PathBuf, Duration)>,
) -> anyhow::Result<()> {
    let client = match kubeconfig {
        Some(path) => {
            let config = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
                .await
                .context("using the kubeconfig")?;
            kube::Client::try_from(config).context("making the Kubernetes client")?
        }
        None => kube::Client::try_default()
            .await
            .context("finding the cluster (KUBECONFIG, ~/.kube/config or in-cluster)")?,
    };
    let (tx, rx) = watch::channel(Arc::new(Store::default()));
    let source_state = Arc::new(weir::source::kube::SourceState::default());
    let source = tokio::spawn(weir::source::kube::run(
        client.clone(),
        scope,
        tx,
        source_state.clone(),
    ));
    let running = app::start(options, rx).await.context("starting weir")?;
    let leader = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lease = tokio::spawn(weir::controller::lease::run(
        client.clone(),
        lease,
        leader.clone(),
    ));
    let status = tokio::spawn(weir::controller::status::run(
        client,
        running.admin.clone(),
        leader,
        Duration::from_millis(500),
    ));
    let metrics = running.admin.metrics.clone();
    let stale = tokio::spawn(async move {
        loop {
            let s = source_state
                .stale
                .load(std::sync::atomic::Ordering::Relaxed);
            metrics.source_stale.set(i64::from(s));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    // A mounted Secret changes in place (kubelet swaps a symlink), so a rotated key is picked
    // up without a restart.
    until_signal(&running, key_file, KEY_FILE_INTERVAL).await;
    for task in [source, lease, status, stale] {
        task.abort();
    }
    running.shutdown().await;
    Ok(())
}

/// How often `weir run` looks at the affinity key file.
const KEY_FILE_INTERVAL: Duration = Duration::from_secs(5);

/// The affinity key in a file: its bytes, without a trailing newline.
fn read_affinity_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut key = std::fs::read(path)
        .with_context(|| format!("reading the affinity key file {}", path.display()))?;
    while key.last().is_some_and(|b| b.is_ascii_whitespace()) {
        key.pop();
    }
    if key.len() < weir::affinity::MIN_KEY_LEN {
        anyhow::bail!(
            "the affinity key in {} has {} bytes; it needs at least {}",
            path.display(),
            key.len(),
            weir::affinity::MIN_KEY_LEN
        );
    }
    Ok(key)
}

/// Serves until SIGTERM or SIGINT, following the affinity key file (checked every `interval`)
/// meanwhile, when there is one.
async fn until_signal(
    running: &app::Running,
    key_file: Option<(PathBuf, Duration)>,
    interval: Duration,
) {
    let follow_key = async {
        match key_file {
            Some((path, grace)) => follow_affinity_key(path, grace, interval, running).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = follow_key => {}
    }
}

/// Follows the affinity key file: a new key takes over, the old one stays valid for `grace`.
async fn follow_affinity_key(
    path: PathBuf,
    grace: Duration,
    interval: Duration,
    running: &app::Running,
) {
    let mut current = read_affinity_key(&path).ok();
    loop {
        tokio::time::sleep(interval).await;
        match read_affinity_key(&path) {
            Ok(key) if current.as_ref() != Some(&key) => {
                running.affinity.rotate(&key, grace, &running.table.load());
                tracing::info!(grace_seconds = grace.as_secs(), "affinity key rotated");
                current = Some(key);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "keeping the current affinity key"),
        }
    }
}

async fn serve(
    config: PathBuf,
    options: Options,
    reload_interval: Duration,
    key_file: Option<(PathBuf, Duration)>,
) -> anyhow::Result<()> {
    // The first load must succeed: there is no last good state to fall back on yet.
    let contents = file::Contents::read(&config);
    let store = contents.parse(&config)?;
    let (tx, rx) = watch::channel(Arc::new(Store::default()));
    let _ = tx.send(Arc::new(store));
    let running = app::start(options, rx).await.context("starting weir")?;
    let metrics = running.admin.metrics.clone();
    let watcher = tokio::spawn(file::watch(
        config,
        reload_interval,
        tx,
        Some(contents),
        move |e| {
            metrics.config_errors.inc();
            tracing::error!(error = %e, "configuration refused; the last good one keeps serving");
        },
    ));
    until_signal(&running, key_file, reload_interval).await;
    watcher.abort();
    running.shutdown().await;
    Ok(())
}

async fn demo(options: Options) -> anyhow::Result<()> {
    let port = weir::demo::start_backends(3)
        .await
        .context("starting the demo backends")?;
    let store =
        file::parse("demo", &weir::demo::config(port, 3)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_tx, rx) = watch::channel(Arc::new(Store::default()));
    let _ = _tx.send(Arc::new(store));
    let running = app::start(options, rx)
        .await
        .context("binding the listeners (is something else on the port? try --http-addr)")?;
    println!(
        "{}",
        weir::demo::instructions(running.http_addr, running.admin_addr)
    );
    wait_for_signal().await;
    running.shutdown().await;
    Ok(())
}

/// `weir check`: parse and compile a file offline; print each pool's conditions.
fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let store = file::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compiled = weir::routing::compile(&store, None);
    let mut bad = 0;
    for (key, status) in &compiled.statuses {
        println!("{key}  hosts: {}", status.hosts.as_deref().unwrap_or("-"));
        for c in &status.conditions {
            println!("  {}={} {}: {}", c.type_, c.status, c.reason, c.message);
            if !c.is_true() && (c.type_ == "Accepted" || c.type_ == "ResolvedRefs") {
                bad += 1;
            }
        }
    }
    if compiled.statuses.is_empty() {
        println!("no LoadBalancerPool in {}", path.display());
    }
    if bad > 0 {
        anyhow::bail!("{bad} problem(s) found");
    }
    Ok(())
}

/// `weir inspect`: GET /pools and print it as tables.
async fn inspect(admin: &str) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let uri: http::Uri = format!("{}/pools", admin.trim_end_matches('/'))
        .parse()
        .context("the --admin address")?;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri.clone()))
        .await
        .with_context(|| format!("{uri} did not answer in 5s"))?
        .with_context(|| format!("asking {uri}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading /pools")?
        .to_bytes();
    let pools: serde_json::Value = serde_json::from_slice(&body).context("/pools is not JSON")?;
    print!("{}", weir::admin::render_pools(&pools));
    Ok(())
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
