//! `weir-pod-runner stand-in`: plays a container whose image no test talks to. It accepts TCP
//! on the container's ports and answers anything with an HTTP 200 that says what it is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub async fn main(image: String, ports: Vec<u16>) -> Result<()> {
    let ip: IpAddr = match std::env::var("POD_IP") {
        Ok(ip) if !ip.is_empty() => ip.parse().with_context(|| format!("POD_IP {ip:?}"))?,
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let text = format!("weir-pod-runner: stand-in for {image}\n");
    for port in ports {
        let listener = TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .with_context(|| format!("listening on {ip}:{port}"))?;
        println!("stand-in for {image}: listening on {ip}:{port}");
        let text = text.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let text = text.clone();
                tokio::spawn(async move {
                    // Read what comes first (a request, or nothing), then answer and close.
                    let mut buf = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
    }
    crate::signals::terminated().await
}
