//! The echo backend, `weir-pod-runner echo`: behaves like the Gateway API conformance suite's
//! echo-basic (v1.6.3), written from its documented behaviour, so conformance-style tests can
//! run against local processes.
//!
//! Modes, chosen by env as echo-basic does: HTTP (default: an echo on HTTP_PORT, an h2c-only
//! echo on H2C_PORT, HTTPS on HTTPS_PORT when TLS_SERVER_CERT and TLS_SERVER_PRIVKEY are set),
//! gRPC (GRPC_ECHO_SERVER), TCP (TCP_ECHO_SERVER) and UDP (UDP_ECHO_SERVER).
//!
//! Differences, all for running many pods in one network namespace: listeners bind POD_IP
//! (0.0.0.0 when unset) instead of every address, every port in WEIR_ECHO_PORTS (and each
//! `--port=N` argument, echo-advanced's flag) gets one more listener of the mode's main kind,
//! and on SIGTERM the listeners keep serving for WEIR_ECHO_DRAIN_SECONDS.

mod grpc;
mod http;
mod tcp;
mod udp;
mod ws;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::net::{TcpListener, TcpStream};

/// The pod this echo runs in, as echo-basic reads it from env.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PodContext {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Grpc,
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// HTTP mode only: verify a client certificate if one is given (TLS_CLIENT_CACERTS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    pub mode: Mode,
    pub bind_ip: IpAddr,
    pub context: PodContext,
    /// HTTP_PORT as written (echo-basic reports it as the string `httpPort`).
    pub http_port_text: String,
    /// The mode's main port: HTTP_PORT (HTTP, gRPC), TCP_PORT (TCP) or UDP_PORT (UDP).
    pub main_port: u16,
    /// H2C_PORT, HTTP mode only.
    pub h2c_port: u16,
    /// HTTPS_PORT (HTTP, gRPC) or TLS_PORT (TCP), used when `tls` is set.
    pub tls_port: u16,
    pub tls: Option<TlsFiles>,
    /// More listeners of the mode's main kind.
    pub extra_ports: BTreeSet<u16>,
    pub drain: Duration,
}

fn port(value: Option<String>, name: &str, default: u16) -> Result<(u16, String)> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok((default, default.to_string())),
        Some(text) => {
            let port = text
                .parse()
                .with_context(|| format!("non-integer value in {name}: {text:?}"))?;
            Ok((port, text))
        }
    }
}

impl EchoConfig {
    /// From env (through `get`, so tests need not touch the process env) and the args.
    pub fn from_env(get: impl Fn(&str) -> Option<String>, args: &[String]) -> Result<Self> {
        let set = |name: &str| get(name).is_some_and(|v| !v.is_empty());
        let mode = if set("GRPC_ECHO_SERVER") {
            Mode::Grpc
        } else if set("TCP_ECHO_SERVER") {
            Mode::Tcp
        } else if set("UDP_ECHO_SERVER") {
            Mode::Udp
        } else {
            Mode::Http
        };
        let bind_ip = match get("POD_IP").filter(|v| !v.is_empty()) {
            Some(ip) => ip.parse().with_context(|| format!("POD_IP {ip:?}"))?,
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let (http_port, http_port_text) = port(get("HTTP_PORT"), "HTTP_PORT", 3000)?;
        let (h2c_port, _) = port(get("H2C_PORT"), "H2C_PORT", 3001)?;
        let (https_port, _) = port(get("HTTPS_PORT"), "HTTPS_PORT", 8443)?;
        let (main_port, tls_port) = match mode {
            Mode::Http | Mode::Grpc => (http_port, https_port),
            Mode::Tcp => (
                port(get("TCP_PORT"), "TCP_PORT", 3000)?.0,
                port(get("TLS_PORT"), "TLS_PORT", 8443)?.0,
            ),
            Mode::Udp => (port(get("UDP_PORT"), "UDP_PORT", 8080)?.0, 0),
        };
        // echo-basic's HTTP mode reads TLS_SERVER_PRIVKEY; its gRPC and TCP modes read
        // TLS_SERVER_PRIV_KEY.
        let key_var = match mode {
            Mode::Http => "TLS_SERVER_PRIVKEY",
            _ => "TLS_SERVER_PRIV_KEY",
        };
        let tls = match (get("TLS_SERVER_CERT"), get(key_var)) {
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() && mode != Mode::Udp => {
                Some(TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                    client_ca: get("TLS_CLIENT_CACERTS")
                        .filter(|v| !v.is_empty() && mode == Mode::Http)
                        .map(Into::into),
                })
            }
            _ => None,
        };
        let mut extra_ports = BTreeSet::new();
        for item in get("WEIR_ECHO_PORTS").unwrap_or_default().split(',') {
            let item = item.trim();
            if !item.is_empty() {
                extra_ports.insert(
                    item.parse()
                        .with_context(|| format!("WEIR_ECHO_PORTS: {item:?} is not a port"))?,
                );
            }
        }
        // echo-advanced's `--port=N` (minus the ones it also names with `--tls=N`).
        let flag = |name: &str| -> BTreeSet<u16> {
            args.iter()
                .filter_map(|a| a.strip_prefix(name))
                .filter_map(|v| v.parse::<u16>().ok())
                .collect()
        };
        let tls_flags = flag("--tls=");
        extra_ports.extend(flag("--port=").difference(&tls_flags));
        // A port the mode already listens on is not listened on twice.
        extra_ports.remove(&main_port);
        if mode == Mode::Http {
            extra_ports.remove(&h2c_port);
        }
        if tls.is_some() {
            extra_ports.remove(&tls_port);
        }
        let drain = Duration::from_secs(
            get("WEIR_ECHO_DRAIN_SECONDS")
                .filter(|v| !v.is_empty())
                .map(|v| v.parse().context("WEIR_ECHO_DRAIN_SECONDS"))
                .transpose()?
                .unwrap_or(0),
        );
        Ok(EchoConfig {
            mode,
            bind_ip,
            context: PodContext {
                namespace: get("NAMESPACE").unwrap_or_default(),
                ingress: get("INGRESS_NAME").unwrap_or_default(),
                service: get("SERVICE_NAME").unwrap_or_default(),
                pod: get("POD_NAME").unwrap_or_default(),
            },
            http_port_text,
            main_port,
            h2c_port,
            tls_port,
            tls,
            extra_ports,
            drain,
        })
    }
}

/// What kind each listener is, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Http,
    H2c,
    Https,
    Grpc,
    GrpcTls,
    Tcp,
    TcpTls,
    Udp,
}

/// The listener's next connection; an accept error is logged and, after a pause, retried.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => return stream,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn bind(ip: IpAddr, port: u16) -> Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}

/// Binds every listener of the config and serves in spawned tasks; returns where each is.
pub async fn start(config: &EchoConfig) -> Result<Vec<(Listener, SocketAddr)>> {
    let mut bound = Vec::new();
    let state = Arc::new(http::State::new(config));
    let ip = config.bind_ip;
    let main_ports = std::iter::once(config.main_port).chain(config.extra_ports.iter().copied());
    match config.mode {
        Mode::Http => {
            for port in main_ports {
                let l = bind(ip, port).await?;
                bound.push((Listener::Http, l.local_addr()?));
                tokio::spawn(http::serve(l, None, state.clone(), http::App::Echo));
            }
            let l = bind(ip, config.h2c_port).await?;
            bound.push((Listener::H2c, l.local_addr()?));
            tokio::spawn(http::serve(l, None, state.clone(), http::App::H2cOnly));
            if let Some(files) = &config.tls {
                let tls = crate::tls::server_config(
                    &files.cert,
                    &files.key,
                    files.client_ca.as_deref(),
                    &[b"h2", b"http/1.1"],
                )?;
                let l = bind(ip, config.tls_port).await?;
                bound.push((Listener::Https, l.local_addr()?));
                tokio::spawn(http::serve(
                    l,
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
                    state.clone(),
                    http::App::Echo,
                ));
            }
        }
        Mode::Grpc => {
            for port in main_ports {
                let l = bind(ip, port).await?;
                bound.push((Listener::Grpc, l.local_addr()?));
                tokio::spawn(http::serve(l, None, state.clone(), http::App::Grpc));
            }
            if let Some(files) = &config.tls {
                let tls = crate::tls::server_config(&files.cert, &files.key, None, &[b"h2"])?;
                let l = bind(ip, config.tls_port).await?;
                bound.push((Listener::GrpcTls, l.local_addr()?));
                tokio::spawn(http::serve(
                    l,
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
                    state.clone(),
                    http::App::Grpc,
                ));
            }
        }
        Mode::Tcp => {
            let tcp_state = Arc::new(tcp::TcpState::new(config));
            for port in main_ports {
                let l = bind(ip, port).await?;
                bound.push((Listener::Tcp, l.local_addr()?));
                tokio::spawn(tcp::serve(l, None, tcp_state.clone()));
            }
            if let Some(files) = &config.tls {
                let mut tls = crate::tls::server_config(&files.cert, &files.key, None, &[])?;
                tls.alpn_protocols.clear();
                let l = bind(ip, config.tls_port).await?;
                bound.push((Listener::TcpTls, l.local_addr()?));
                tokio::spawn(tcp::serve(
                    l,
                    Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
                    tcp_state.clone(),
                ));
            }
        }
        Mode::Udp => {
            for port in main_ports {
                let socket = tokio::net::UdpSocket::bind(SocketAddr::new(ip, port))
                    .await
                    .with_context(|| format!("listening on UDP {ip}:{port}"))?;
                bound.push((Listener::Udp, socket.local_addr()?));
                tokio::spawn(udp::serve(socket, config.context.clone()));
            }
        }
    }
    Ok(bound)
}

/// `weir-pod-runner echo`: serves until SIGTERM/SIGINT, then drains and exits.
pub async fn main(args: Vec<String>) -> Result<()> {
    let config = EchoConfig::from_env(|name| std::env::var(name).ok(), &args)?;
    let bound = start(&config).await?;
    for (kind, addr) in &bound {
        println!("Starting server, listening on {addr} ({kind:?})");
    }
    crate::signals::terminated().await?;
    if !config.drain.is_zero() {
        println!("terminating: serving for {:?} more", config.drain);
        tokio::time::sleep(config.drain).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
