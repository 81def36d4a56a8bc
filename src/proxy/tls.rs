//! TLS termination: the server configuration and the certificate resolver.
//!
//! The resolver reads certificates from the routing table in service, so a rotated Secret
//! takes effect at the next handshake, with no restart and no effect on open connections.

use crate::certificate::load_pem;
use crate::routing::RoutingTable;
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::sync::Arc;

/// Picks the certificate for a handshake: the exact SNI host, then the wildcard of its parent
/// domain, then the default certificate (also for clients that send no SNI).
#[derive(Debug)]
pub struct SniResolver {
    table: Arc<ArcSwap<RoutingTable>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let found = hello.server_name().and_then(|name| table.certificate(name));
        Some(found.unwrap_or(&self.default).clone())
    }
}

/// Picks the certificate for a handshake on a Gateway's HTTPS socket: the listener whose
/// hostname takes the SNI name, else the socket's default listener, else weir's default.
#[derive(Debug)]
pub struct GatewayResolver {
    table: Arc<ArcSwap<RoutingTable>>,
    socket: SocketAddr,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for GatewayResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let found = table
            .gateway_port(&self.socket)
            .and_then(|port| port.certificate(hello.server_name()));
        Some(found.unwrap_or(&self.default).clone())
    }
}

/// [`server_config`] for the Gateway socket bound to `socket`.
pub fn gateway_server_config(
    table: Arc<ArcSwap<RoutingTable>>,
    socket: SocketAddr,
    default: Arc<CertifiedKey>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    config_with(Arc::new(GatewayResolver {
        table,
        socket,
        default,
    }))
}

/// TLS 1.2 and 1.3 only, ring's default cipher suites (AEAD, forward secret) in the server's
/// order of preference, ALPN `h2` then `http/1.1`, session tickets and a session cache for
/// resumption.
pub fn server_config(
    table: Arc<ArcSwap<RoutingTable>>,
    default: Arc<CertifiedKey>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    config_with(Arc::new(SniResolver { table, default }))
}

fn config_with(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's order (AES-GCM first, which these CPUs do in hardware), not whatever a
    // client lists first: what nginx's ssl_prefer_server_ciphers and testssl expect.
    config.ignore_client_order = true;
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// The default certificate: from PEM files, or made up at start (self-signed).
pub fn default_certificate(
    files: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Arc<CertifiedKey>, String> {
    match files {
        Some((crt, key)) => {
            let crt_pem = std::fs::read(crt).map_err(|e| format!("{}: {e}", crt.display()))?;
            let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
            load_pem(&crt_pem, &key_pem)
                .map(|c| c.key)
                .map_err(|e| format!("{}: {e}", crt.display()))
        }
        None => {
            let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
            let params = rcgen::CertificateParams::new(vec!["weir.invalid".to_string()])
                .map_err(|e| e.to_string())?;
            let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
            tracing::info!(
                "no --default-certificate: clients without a matching SNI host get a self-signed certificate made at start"
            );
            load_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).map(|c| c.key)
        }
    }
}
