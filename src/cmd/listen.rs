//! The listener and client flags `serve` and `run` share (and the few `demo` takes), and the
//! [`Options`] they make.

use super::affinity_key::{self, KeyFile};
use anyhow::Context;
use clap::ValueEnum;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use weir::app::Options;
use weir::proxy::access_log::AccessLog;

#[derive(clap::Args, Debug)]
pub struct Listen {
    /// Ingress HTTP listener (HTTP/1.1 and HTTP/2 prior knowledge).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Ingress HTTPS listener (TLS 1.2 and 1.3; ALPN h2 and http/1.1).
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub https_addr: SocketAddr,
    /// PEM certificate chain for clients whose SNI names no pool's host (with
    /// --default-key). Without it, a self-signed certificate is made at start.
    #[arg(long, requires = "default_key")]
    pub default_certificate: Option<PathBuf>,
    /// PEM private key of --default-certificate.
    #[arg(long, requires = "default_certificate")]
    pub default_key: Option<PathBuf>,
    /// Admin listener: /healthz, /readyz, /metrics, /pools and the dashboard (/).
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_addr: SocketAddr,
    /// The key of the session-affinity cookies (16 bytes or more; every replica must share
    /// it). Read again when it changes. Without it, a random key holds for this process only.
    #[arg(long)]
    pub affinity_key_file: Option<PathBuf>,
    /// After the key changes, cookies made with the previous key stay valid this long.
    #[arg(long, default_value = "60m", value_parser = super::parse_duration)]
    pub affinity_key_grace: Duration,
    #[command(flatten)]
    pub hosts: HostRules,
    /// Gateway API: the addresses to give Gateways that name none in `spec.addresses`, one
    /// each (a CIDR range, e.g. 10.0.64.0/26; they must be this host's to bind). Without it
    /// such Gateways listen on 127.0.0.1 (`serve`), or (`run`) each Gateway gets a Service
    /// of its own that weir makes (see --gateway-ports).
    #[arg(long, value_name = "CIDR")]
    pub gateway_addresses: Option<ipnet::IpNet>,
    /// Kubernetes Ingress: the IngressClass weir serves (its controller is
    /// weir.dev/ingress-controller). Ingresses naming no class are served too when that class
    /// is the cluster's default (`serve`: always, the file being weir's alone).
    #[arg(long, default_value = weir::api::ingress::DEFAULT_INGRESS_CLASS)]
    pub ingress_class: String,
    #[command(flatten)]
    pub clients: Clients,
    #[command(flatten)]
    pub process: Process,
}

/// `--allow-hosts`: shared by the commands that serve and by `check`, so a file is judged by
/// the policy it will be served under.
#[derive(clap::Args, Debug)]
pub struct HostRules {
    /// Which namespace may claim which hosts: NAMESPACE=HOST[,HOST...], repeated; a HOST is
    /// exact, *.domain (its subdomains) or * (any, the catch-all route included). Once given,
    /// a namespace claims only the hosts its rules cover. Without it any namespace may claim
    /// any host not yet held.
    #[arg(long = "allow-hosts", value_name = "NAMESPACE=HOSTS")]
    pub allow_hosts: Vec<String>,
}

impl HostRules {
    pub fn policy(&self) -> anyhow::Result<weir::routing::HostPolicy> {
        if self.allow_hosts.is_empty() {
            return Ok(weir::routing::HostPolicy::open());
        }
        weir::routing::HostPolicy::from_rules(&self.allow_hosts).context("--allow-hosts")
    }
}

/// `--max-connections` when the open-file limit leaves room for it.
const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// What ingress clients may cost, and what weir tells them and the pods.
#[derive(clap::Args, Debug)]
pub struct Clients {
    /// Open client connections (both listeners together); a client beyond this gets a 503
    /// (plain HTTP) or a closed socket (TLS). Default: 16384, or what the open-file limit
    /// leaves room for (two descriptors a connection), whichever is lower.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers; an idle keep-alive connection is
    /// closed after it too.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub client_header_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Most header fields in a request; more gets 431.
    #[arg(long, default_value_t = 100)]
    pub max_headers: usize,
    /// CIDRs of proxies in front of weir (comma-separated) whose X-Forwarded-For, -Proto and
    /// -Host are believed. Anyone else's X-Forwarded-For is appended to, never trusted.
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Add `Via: 1.1 weir` to requests and responses.
    #[arg(long)]
    pub via: bool,
    /// Set this `Server` header on every response (default: the pod's own, untouched).
    #[arg(long)]
    pub server_header: Option<String>,
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
pub struct DemoListen {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub process: Process,
}

#[derive(clap::Args, Debug)]
pub struct Process {
    /// On SIGTERM or SIGINT, how long in-flight requests get to finish.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    pub shutdown_grace: Duration,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// One line per request on stdout: off, json, or common (Common Log Format plus pool,
    /// endpoint, duration and request id).
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Off)]
    pub access_log: AccessLogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccessLogFormat {
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

impl Listen {
    /// The options these flags make (the affinity key read from its file, if given).
    pub fn options(&self) -> anyhow::Result<Options> {
        let affinity_key = match &self.affinity_key_file {
            Some(path) => Some(affinity_key::read(path)?),
            None => None,
        };
        Ok(Options {
            http_addr: self.http_addr,
            https_addr: Some(self.https_addr),
            default_certificate: self
                .default_certificate
                .clone()
                .zip(self.default_key.clone()),
            admin_addr: self.admin_addr,
            shutdown_grace: self.process.shutdown_grace,
            affinity_key,
            access_log: self.process.access_log.into(),
            limits: self.clients.limits(),
            forwarding: self.clients.forwarding()?,
            host_policy: self.hosts.policy()?,
            gateway_addresses: match self.gateway_addresses {
                Some(range) => weir::routing::gateway::GatewayAddresses::Range(range),
                None => Default::default(),
            },
            ingress_class: weir::api::ingress::IngressClassChoice {
                name: self.ingress_class.clone(),
                unclassed: false,
            },
        })
    }

    /// The key file to follow while serving, if any.
    pub fn key_file(&self) -> Option<KeyFile> {
        self.affinity_key_file.clone().map(|path| KeyFile {
            path,
            grace: self.affinity_key_grace,
        })
    }
}

impl DemoListen {
    /// The demo's options: plain HTTP, a random affinity key, the default limits.
    pub fn options(&self) -> Options {
        Options {
            http_addr: self.http_addr,
            https_addr: None,
            default_certificate: None,
            admin_addr: self.admin_addr,
            shutdown_grace: self.process.shutdown_grace,
            affinity_key: None,
            access_log: self.process.access_log.into(),
            ..Default::default()
        }
    }
}
