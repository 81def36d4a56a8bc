//! Readiness: probe settings read from a container, one probe attempt, and the loop that turns
//! attempts into Ready flips (with the thresholds the kubelet uses).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What one attempt checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Http {
        port: u16,
        path: String,
        https: bool,
        headers: Vec<(String, String)>,
    },
    Tcp {
        port: u16,
    },
    Grpc {
        port: u16,
        service: String,
    },
    /// Every one of these ports accepts a TCP connection (no probe declared).
    AllPorts(Vec<u16>),
    /// Nothing to check: ready once started (an exec probe, or no ports and no probe).
    Pass {
        why: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub check: Check,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(value.map_or(default, |v| v.max(0) as u64))
}

/// A port given by number or by the name of one of the container's ports.
fn port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} is out of range")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("no container port named {name:?}"))
        }
    }
}

/// The TCP ports the container declares.
pub fn tcp_ports(container: &Container) -> Vec<u16> {
    container
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().is_none_or(|proto| proto == "TCP"))
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect()
}

fn from_probe(container: &Container, probe: &Probe) -> Result<ProbeConfig, String> {
    let check = if let Some(http) = &probe.http_get {
        let scheme = http.scheme.as_deref().unwrap_or("HTTP");
        Check::Http {
            port: port(container, &http.port)?,
            path: http.path.clone().unwrap_or_else(|| "/".into()),
            https: scheme.eq_ignore_ascii_case("HTTPS"),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        Check::Tcp {
            port: port(container, &tcp.port)?,
        }
    } else if let Some(grpc) = &probe.grpc {
        Check::Grpc {
            port: u16::try_from(grpc.port)
                .map_err(|_| format!("port {} is out of range", grpc.port))?,
            service: grpc.service.clone().unwrap_or_default(),
        }
    } else if probe.exec.is_some() {
        Check::Pass {
            why: "exec probes are not supported here and count as passing",
        }
    } else {
        return Err("the probe has no handler".into());
    };
    Ok(ProbeConfig {
        check,
        initial_delay: seconds(probe.initial_delay_seconds, 0),
        period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    })
}

/// The readiness check for a container: its readinessProbe, else "every declared TCP port
/// accepts", else ready once started.
pub fn readiness(container: &Container) -> Result<ProbeConfig, String> {
    if let Some(probe) = &container.readiness_probe {
        return from_probe(container, probe);
    }
    let ports = tcp_ports(container);
    let check = if ports.is_empty() {
        Check::Pass {
            why: "no readiness probe and no ports: ready once started",
        }
    } else {
        Check::AllPorts(ports)
    };
    Ok(ProbeConfig {
        check,
        initial_delay: Duration::ZERO,
        // Checked often, so a pod turns Ready as soon as its listeners are up.
        period: Duration::from_millis(500),
        timeout: Duration::from_secs(1),
        success_threshold: 1,
        failure_threshold: 3,
    })
}

/// One attempt against the pod's address. Ok(()) is success; Err says why not.
pub async fn attempt(check: &Check, ip: IpAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, attempt_inner(check, ip)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

async fn connect(ip: IpAddr, port: u16) -> Result<TcpStream, String> {
    TcpStream::connect(SocketAddr::new(ip, port))
        .await
        .map_err(|e| format!("connect {ip}:{port}: {e}"))
}

async fn attempt_inner(check: &Check, ip: IpAddr) -> Result<(), String> {
    match check {
        Check::Pass { .. } => Ok(()),
        Check::Tcp { port } => connect(ip, *port).await.map(drop),
        Check::AllPorts(ports) => {
            for port in ports {
                connect(ip, *port).await?;
            }
            Ok(())
        }
        Check::Http {
            port,
            path,
            https,
            headers,
        } => http_attempt(ip, *port, path, *https, headers).await,
        Check::Grpc { port, service } => grpc_attempt(ip, *port, service).await,
    }
}

async fn http_attempt(
    ip: IpAddr,
    port: u16,
    path: &str,
    https: bool,
    headers: &[(String, String)],
) -> Result<(), String> {
    let tcp = connect(ip, port).await?;
    let authority = SocketAddr::new(ip, port).to_string();
    let mut request = http::Request::get(path).header(http::header::HOST, authority.as_str());
    request = request.header(http::header::USER_AGENT, "kube-probe/1.36");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let status = if https {
        let config =
            crate::tls::insecure_client_config(&[b"http/1.1"]).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send_http1(TokioIo::new(tls), request).await?
    } else {
        send_http1(TokioIo::new(tcp), request).await?
    };
    // The kubelet's rule: 200 to 399 passes.
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

async fn send_http1<I>(io: I, request: http::Request<Empty<Bytes>>) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"));
    conn.abort();
    Ok(response?.status().as_u16())
}

/// grpc.health.v1.Health/Check over h2c, the request and answer encoded by hand: the request
/// is field 1 (service, a string), the answer's field 1 is the status (1 = SERVING).
async fn grpc_attempt(ip: IpAddr, port: u16, service: &str) -> Result<(), String> {
    let tcp = connect(ip, port).await?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .map_err(|e| format!("h2c handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        crate::grpc::put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let request = http::Request::post(format!("http://{ip}:{port}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(crate::grpc::frame(&message))))
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("gRPC: {e}"))?;
        let collected = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("gRPC body: {e}"))?;
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if status != "0" {
            return Err(format!("grpc-status {status:?}"));
        }
        let body = collected.to_bytes();
        let serving = body.len() >= 7 && body[5] == 0x08 && body[6] == 1;
        if serving {
            Ok(())
        } else {
            Err("not SERVING".into())
        }
    }
    .await;
    conn.abort();
    result
}

/// Counts attempts against the thresholds; says when Ready flips.
#[derive(Debug)]
pub struct Thresholds {
    success: u32,
    failure: u32,
    successes: u32,
    failures: u32,
    pub ready: bool,
}

impl Thresholds {
    pub fn new(config: &ProbeConfig) -> Self {
        Thresholds {
            success: config.success_threshold,
            failure: config.failure_threshold,
            successes: 0,
            failures: 0,
            ready: false,
        }
    }

    /// Records one attempt; Some(new state) when Ready changes.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if !self.ready && self.successes >= self.success {
                self.ready = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.ready && self.failures >= self.failure {
                self.ready = false;
                return Some(false);
            }
        }
        None
    }
}

/// Probes forever, sending (container index, ready) on every flip. Ends when the receiver goes.
pub async fn run(
    config: ProbeConfig,
    ip: IpAddr,
    index: usize,
    tx: mpsc::UnboundedSender<(usize, bool)>,
    log: tracing::Span,
) {
    if let Check::Pass { why } = &config.check {
        tracing::info!(parent: &log, "readiness: {why}");
        let _ = tx.send((index, true));
        return;
    }
    tokio::time::sleep(config.initial_delay).await;
    let mut thresholds = Thresholds::new(&config);
    let mut last_error = String::new();
    loop {
        let result = attempt(&config.check, ip, config.timeout).await;
        match &result {
            Ok(()) => last_error.clear(),
            Err(e) if *e != last_error => {
                tracing::debug!(parent: &log, error = %e, "readiness probe failed");
                last_error = e.clone();
            }
            Err(_) => {}
        }
        if let Some(ready) = thresholds.record(result.is_ok()) {
            tracing::info!(parent: &log, ready, error = %last_error, "readiness changed");
            if tx.send((index, ready)).is_err() {
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(config.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn http_probe_with_named_port() {
        let c = container(json!({
            "name": "c",
            "ports": [{"name": "admin", "containerPort": 9901}],
            "readinessProbe": {
                "httpGet": {"path": "/ready", "port": "admin", "scheme": "HTTPS",
                            "httpHeaders": [{"name": "X-A", "value": "b"}]},
                "initialDelaySeconds": 2, "periodSeconds": 3, "timeoutSeconds": 4,
                "successThreshold": 2, "failureThreshold": 5
            }
        }));
        let config = readiness(&c).unwrap();
        assert_eq!(
            config.check,
            Check::Http {
                port: 9901,
                path: "/ready".into(),
                https: true,
                headers: vec![("X-A".into(), "b".into())]
            }
        );
        assert_eq!(config.initial_delay, Duration::from_secs(2));
        assert_eq!(config.period, Duration::from_secs(3));
        assert_eq!(config.timeout, Duration::from_secs(4));
        assert_eq!(config.success_threshold, 2);
        assert_eq!(config.failure_threshold, 5);
    }

    #[test]
    fn defaults_tcp_grpc_exec_and_none() {
        let tcp = readiness(&container(json!({
            "name": "c", "readinessProbe": {"tcpSocket": {"port": 80}}
        })))
        .unwrap();
        assert_eq!(tcp.check, Check::Tcp { port: 80 });
        assert_eq!(tcp.period, Duration::from_secs(10));
        assert_eq!(tcp.failure_threshold, 3);
        let grpc = readiness(&container(json!({
            "name": "c", "readinessProbe": {"grpc": {"port": 9000}}
        })))
        .unwrap();
        assert_eq!(
            grpc.check,
            Check::Grpc {
                port: 9000,
                service: String::new()
            }
        );
        let exec = readiness(&container(json!({
            "name": "c", "readinessProbe": {"exec": {"command": ["true"]}}
        })))
        .unwrap();
        assert!(matches!(exec.check, Check::Pass { .. }));
        let ports = readiness(&container(json!({
            "name": "c", "ports": [{"containerPort": 3000}, {"containerPort": 53, "protocol": "UDP"}]
        })))
        .unwrap();
        assert_eq!(ports.check, Check::AllPorts(vec![3000]));
        let none = readiness(&container(json!({"name": "c"}))).unwrap();
        assert!(matches!(none.check, Check::Pass { .. }));
        assert!(
            readiness(&container(json!({
                "name": "c", "readinessProbe": {"httpGet": {"port": "nope"}}
            })))
            .is_err()
        );
    }

    #[test]
    fn thresholds() {
        let config = ProbeConfig {
            check: Check::Tcp { port: 1 },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 2,
        };
        let mut t = Thresholds::new(&config);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None);
    }

    #[tokio::test]
    async fn tcp_and_http_attempts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let code = if req.uri().path() == "/ok" { 200 } else { 503 };
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(code)
                                    .body(Empty::<Bytes>::new())
                                    .unwrap(),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Duration::from_secs(2);
        assert!(attempt(&Check::Tcp { port }, ip, t).await.is_ok());
        let http = |path: &str| Check::Http {
            port,
            path: path.into(),
            https: false,
            headers: vec![],
        };
        assert!(attempt(&http("/ok"), ip, t).await.is_ok());
        assert!(attempt(&http("/bad"), ip, t).await.is_err());
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(
            attempt(&Check::AllPorts(vec![port, closed_port]), ip, t)
                .await
                .is_err()
        );
    }
}
