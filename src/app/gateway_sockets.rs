//! The Gateway API sockets: bound and closed as Gateways come and go, never a restart.
//!
//! After each table swap, the sockets the table wants (`RoutingTable::gateway_ports`) are
//! compared with those open: new ones are bound and served, gone ones stop accepting and
//! drain. A socket that cannot be bound (its port taken, its address not on this host) is
//! logged and tried again at the next sync; the others serve.

use crate::proxy::{self, Limits, Proxy, Slots};
use crate::routing::RoutingTable;
use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Everything a Gateway socket is served with.
#[derive(Debug)]
pub(super) struct GatewaySockets {
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub proxy: Arc<Proxy>,
    pub limits: Limits,
    pub slots: Arc<Slots>,
    pub grace: Duration,
    /// The certificate for an SNI name no listener takes: the HTTPS listener's, or made from
    /// `certificate_files` (else self-signed) when a Gateway first needs TLS.
    pub default_certificate: Option<Arc<CertifiedKey>>,
    certificate_files: Option<(PathBuf, PathBuf)>,
    open: BTreeMap<SocketAddr, Open>,
    /// Sockets that would not bind, and why (as of the last sync).
    failed: BTreeMap<SocketAddr, String>,
}

#[derive(Debug)]
struct Open {
    tls: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl GatewaySockets {
    pub fn new(
        table: Arc<ArcSwap<RoutingTable>>,
        proxy: Arc<Proxy>,
        limits: Limits,
        slots: Arc<Slots>,
        grace: Duration,
        default_certificate: Option<Arc<CertifiedKey>>,
        certificate_files: Option<(PathBuf, PathBuf)>,
    ) -> Self {
        GatewaySockets {
            table,
            proxy,
            limits,
            slots,
            grace,
            default_certificate,
            certificate_files,
            open: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// Whether some socket the table wants is not open.
    pub fn has_failures(&self) -> bool {
        !self.failed.is_empty()
    }

    /// The sockets that would not bind at the last sync, and why: their listeners' status
    /// says so.
    pub fn failures(&self) -> &BTreeMap<SocketAddr, String> {
        &self.failed
    }

    /// Binds what the table in service wants and closes what it no longer does.
    pub async fn sync(&mut self) {
        let table = self.table.load_full();
        let wanted: BTreeMap<SocketAddr, bool> =
            table.gateway_ports().map(|p| (p.addr, p.tls)).collect();
        let gone: Vec<SocketAddr> = self
            .open
            .iter()
            .filter(|(addr, open)| wanted.get(addr) != Some(&open.tls))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in gone {
            if let Some(open) = self.open.remove(&addr) {
                tracing::info!(socket = %addr, "Gateway socket closed");
                let _ = open.stop.send(true);
            }
        }
        self.failed.clear();
        for (addr, tls) in wanted {
            if self.open.contains_key(&addr) {
                continue;
            }
            match self.bind(addr, tls).await {
                Ok(open) => {
                    tracing::info!(socket = %addr, tls, "Gateway socket listening");
                    self.open.insert(addr, open);
                }
                Err(why) => {
                    tracing::warn!(socket = %addr, error = %why, "cannot listen for a Gateway");
                    self.failed.insert(addr, why);
                }
            }
        }
    }

    async fn bind(&mut self, addr: SocketAddr, tls: bool) -> Result<Open, String> {
        let acceptor = if tls {
            let default = self.default_certificate()?;
            let config = proxy::tls::gateway_server_config(self.table.clone(), addr, default)
                .map_err(|e| e.to_string())?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        } else {
            None
        };
        let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(proxy::serve(
            listener,
            self.proxy.clone(),
            acceptor,
            Some(addr),
            self.limits.clone(),
            self.slots.clone(),
            stopped,
            self.grace,
        ));
        Ok(Open { tls, stop, task })
    }

    /// The default certificate, made the first time a Gateway socket needs it (a process with
    /// no TLS anywhere never makes one).
    fn default_certificate(&mut self) -> Result<Arc<CertifiedKey>, String> {
        if let Some(c) = &self.default_certificate {
            return Ok(c.clone());
        }
        let files = self
            .certificate_files
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let made = proxy::tls::default_certificate(files)
            .map_err(|e| format!("the default TLS certificate: {e}"))?;
        self.default_certificate = Some(made.clone());
        Ok(made)
    }

    /// Stops every socket and waits for their connections to drain (each within the grace).
    pub async fn shutdown(&mut self) {
        let open = std::mem::take(&mut self.open);
        for open in open.values() {
            let _ = open.stop.send(true);
        }
        for (_, open) in open {
            let _ = open.task.await;
        }
    }
}
