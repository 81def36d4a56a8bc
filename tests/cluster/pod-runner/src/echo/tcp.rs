//! echo-basic's TCP mode: a welcome line, then `TEST` (the pod context as JSON), `IS_TLS` and
//! `PING` commands, one a line; on the TLS port the same after a TLS handshake.

use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::EchoConfig;

pub const WELCOME: &str = "Gateway API Test TCP Server\n";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TcpTls {
    pub version: String,
    pub server_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub negotiated_protocol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub curves: String,
    pub cipher_suite: String,
}

/// echo-basic's TCPAssertions, field for field and in its order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TcpAssertions {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
    pub tcpport: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tlsport: String,
    #[serde(rename = "isTLS")]
    pub is_tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TcpTls>,
}

pub struct TcpState {
    base: TcpAssertions,
}

impl TcpState {
    pub fn new(config: &EchoConfig) -> Self {
        let c = &config.context;
        TcpState {
            base: TcpAssertions {
                namespace: c.namespace.clone(),
                ingress: c.ingress.clone(),
                service: c.service.clone(),
                pod: c.pod.clone(),
                tcpport: config.main_port.to_string(),
                tlsport: config.tls_port.to_string(),
                is_tls: false,
                tls: None,
            },
        }
    }
}

pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<TcpState>) {
    loop {
        let stream = super::accept(&listener).await;
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut assertions = state.base.clone();
            match tls {
                None => {
                    let _ = session(stream, assertions).await;
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let conn = stream.get_ref().1;
                        assertions.is_tls = true;
                        assertions.tls = Some(TcpTls {
                            version: conn
                                .protocol_version()
                                .map(crate::tls::version_space_name)
                                .unwrap_or_default(),
                            server_name: conn.server_name().unwrap_or_default().to_string(),
                            negotiated_protocol: crate::tls::negotiated_protocol(conn),
                            curves: conn
                                .negotiated_key_exchange_group()
                                .map(|g| crate::tls::group_name(g.name()))
                                .unwrap_or_default(),
                            cipher_suite: crate::tls::negotiated_cipher_suite(conn),
                        });
                        let _ = session(stream, assertions).await;
                    }
                    Err(e) => eprintln!("TLS handshake failed: {e}"),
                },
            }
        });
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    assertions: TcpAssertions,
) -> std::io::Result<()> {
    let payload = serde_json::to_string(&assertions).map_err(std::io::Error::other)?;
    let (read, mut write) = tokio::io::split(stream);
    write.write_all(WELCOME.as_bytes()).await?;
    write.flush().await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match line.trim_end_matches('\r') {
            "TEST" => format!("{payload}\n"),
            "IS_TLS" => format!("{}\n", assertions.is_tls),
            "PING" => "PONG\n".to_string(),
            _ => continue,
        };
        write.write_all(answer.as_bytes()).await?;
        write.flush().await?;
    }
    Ok(())
}
