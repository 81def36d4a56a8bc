//! The ingress listener: accepts connections, serves HTTP/1.1 and HTTP/2 (prior knowledge) on
//! them, and drains them gracefully on shutdown.

use super::limits::{Limits, REFUSAL, Slots};
use super::{ClientConnection, Proxy, Scheme};
use crate::metrics::{ListenerLabels, ResultLabels};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long a refused client gets to take its 503 before the socket closes.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The TLS handshake of one connection, bounded in time and counted.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: tokio::net::TcpStream,
    client: std::net::SocketAddr,
    metrics: &crate::metrics::Metrics,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let outcome = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
    let result = if matches!(outcome, Ok(Ok(_))) {
        "ok"
    } else {
        "error"
    };
    metrics
        .tls_handshakes
        .get_or_create(&ResultLabels { result })
        .inc();
    match outcome {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %client, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            None
        }
    }
}

/// Serves `listener` (over TLS when `tls` is given) until `shutdown` turns true, then stops
/// accepting and gives open connections `grace` to finish their requests. A connection needs
/// one of `slots`; a client that finds none is refused. `gateway`: the listener is a Gateway
/// API socket, routed by the rules the table has for that address.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    gateway: Option<std::net::SocketAddr>,
    limits: Limits,
    slots: Arc<Slots>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let scheme = if tls.is_some() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let builder = limits.builder();
    let handshake_timeout = limits.handshake_timeout;
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        };
        let Some(slot) = slots.take() else {
            refuse(stream, tls.is_none(), &proxy, scheme);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = ClientConnection {
            client,
            scheme,
            gateway,
        };
        let metrics = proxy.metrics().clone();
        let proxy = proxy.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, conn).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let open = metrics
                .connections_open
                .get_or_create(&ListenerLabels {
                    listener: scheme.as_str(),
                })
                .clone();
            open.inc();
            let result = match tls {
                None => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
                Some(acceptor) => {
                    let stream =
                        match handshake(&acceptor, stream, client, &metrics, handshake_timeout)
                            .await
                        {
                            Some(s) => s,
                            None => {
                                open.dec();
                                return;
                            }
                        };
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            open.dec();
            if let Err(e) = result {
                tracing::debug!(error = %e, %client, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(open, "listener closed; draining connections");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "connections still open after the grace period"
        );
    }
}

/// Turns away a client over the connection limit: a plain-HTTP one reads a 503 saying why; a
/// TLS one is closed at once (answering would cost a handshake, the very thing in short supply).
fn refuse(mut stream: tokio::net::TcpStream, plain: bool, proxy: &Proxy, scheme: Scheme) {
    proxy
        .metrics()
        .connections_refused
        .get_or_create(&ListenerLabels {
            listener: scheme.as_str(),
        })
        .inc();
    tracing::debug!(
        listener = scheme.as_str(),
        "connection limit reached; refusing a client"
    );
    if plain {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
                stream.write_all(REFUSAL).await?;
                stream.shutdown().await?;
                // Read what the client already sent: closing with unread bytes would reset the
                // connection and could destroy the 503 before the client reads it.
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
        });
    }
}
