//! `weir-pod-runner kubelet-logs`: the kubelet's log endpoint, so `kubectl logs` (and the
//! Gateway API conformance suite, which reads the echo pods' logs to see mirrored requests)
//! works. The API server proxies `pods/{name}/log` to the node's `kubeletEndpoint` port over
//! HTTPS, as `GET /containerLogs/{namespace}/{pod}/{container}`; this answers with the
//! container's log file as the node runner writes it (`<pod folder>/<container>.log`).
//!
//! Run by the node runner, in the pods' network namespace on the Node's address. Its
//! certificate is self-signed, made at start: the test cluster's API server is not told a
//! kubelet CA, so it does not verify the kubelet (as with any kubelet without
//! `--kubelet-certificate-authority`), and it sends no client certificate, so none is asked.
//!
//! What a kubelet does and this does not: `sinceTime`/`sinceSeconds` and `timestamps` (the
//! log lines carry no time; the whole log is sent), `follow` (the log as it is now),
//! `previous` (a restarted container appends to the same file). `tailLines` and `limitBytes`
//! are honoured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

pub async fn main(listen: SocketAddr, state_dir: PathBuf) -> Result<()> {
    let config = Arc::new(server_config(listen)?);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    println!("kubelet logs: serving {} on {listen}", state_dir.display());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let state_dir = Arc::new(state_dir);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = acceptor.clone();
            let state_dir = state_dir.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("kubelet logs: TLS handshake: {e}");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let state_dir = state_dir.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&state_dir, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    crate::signals::terminated().await
}

/// A self-signed certificate for the address, ALPN http/1.1 only (the API server's proxy
/// speaks HTTP/1.1 to kubelets).
fn server_config(listen: SocketAddr) -> Result<rustls::ServerConfig> {
    let certified = rcgen::generate_simple_self_signed(vec![listen.ip().to_string()])
        .context("making the kubelet's certificate")?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("the kubelet's certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

fn answer<B>(state_dir: &Path, req: &http::Request<B>) -> Response<Full<Bytes>> {
    if req.method() != http::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    let Some((namespace, pod, container)) = log_target(req.uri().path()) else {
        return text(
            StatusCode::NOT_FOUND,
            "only /containerLogs/NS/POD/CONTAINER\n",
        );
    };
    let Some(dir) = pod_dir(state_dir, &namespace, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} has never run on this node\n"),
        );
    };
    let path = crate::process::log_path(&dir, &container);
    let log = match std::fs::read(&path) {
        Ok(log) => log,
        Err(e) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("container {container} of {namespace}/{pod}: {e}\n"),
            );
        }
    };
    let query = req.uri().query().unwrap_or_default();
    let param = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    text(
        StatusCode::OK,
        trimmed(log, param("tailLines"), param("limitBytes")),
    )
}

/// `(namespace, pod, container)` of `/containerLogs/NS/POD/CONTAINER`; names are DNS labels
/// or subdomains, so no part may climb out of the state folder.
fn log_target(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("/containerLogs/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [namespace, pod, container] = parts[..] else {
        return None;
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !s.starts_with('.')
    };
    (name_ok(namespace) && name_ok(pod) && name_ok(container)).then(|| {
        (
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
        )
    })
}

/// The folder of the newest pod `namespace/pod` (`<namespace>_<name>_<uid8>`): a pod recreated
/// under its name gets a new folder, and the old one stays.
fn pod_dir(state_dir: &Path, namespace: &str, pod: &str) -> Option<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(state_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, e.path()))
        })
        .max()
        .map(|(_, path)| path)
}

/// The last `tail` lines of `log`, then at most `limit` bytes of them.
fn trimmed(log: Vec<u8>, tail: Option<usize>, limit: Option<usize>) -> Vec<u8> {
    let mut log = log;
    if let Some(tail) = tail {
        let body = log.strip_suffix(b"\n").unwrap_or(&log);
        let start = if tail == 0 {
            log.len()
        } else {
            body.iter()
                .enumerate()
                .rev()
                .filter(|(_, b)| **b == b'\n')
                .nth(tail - 1)
                .map_or(0, |(i, _)| i + 1)
        };
        log.drain(..start);
    }
    if let Some(limit) = limit {
        log.truncate(limit);
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_three_names() {
        assert_eq!(
            log_target("/containerLogs/ns/pod-1/echo"),
            Some(("ns".into(), "pod-1".into(), "echo".into()))
        );
        for bad in [
            "/containerLogs/ns/pod",
            "/containerLogs/ns/pod/c/x",
            "/containerLogs/../pod/c",
            "/containerLogs/ns/pod/",
            "/containerLogs/ns/Pod/c",
            "/logs/ns/pod/c",
        ] {
            assert_eq!(log_target(bad), None, "{bad}");
        }
    }

    #[test]
    fn tail_lines_and_limit_bytes() {
        let log = b"one\ntwo\nthree\n".to_vec();
        assert_eq!(trimmed(log.clone(), None, None), log);
        assert_eq!(trimmed(log.clone(), Some(2), None), b"two\nthree\n");
        assert_eq!(trimmed(log.clone(), Some(9), None), log);
        assert_eq!(trimmed(log.clone(), Some(0), None), b"");
        assert_eq!(trimmed(log.clone(), Some(1), Some(3)), b"thr");
        assert_eq!(
            trimmed(b"no newline".to_vec(), Some(1), None),
            b"no newline"
        );
    }

    #[tokio::test]
    async fn answers_the_newest_pods_log() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("ns_echo_aaaaaaaa");
        let new = dir.path().join("ns_echo_bbbbbbbb");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("c.log"), "old\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("c.log"),
            "Echoing back request made to /mirror to client\n",
        )
        .unwrap();
        let req = |path: &str| http::Request::get(path).body(()).unwrap();
        let get = |path: &str| answer(dir.path(), &req(path));
        let body = |r: Response<Full<Bytes>>| async move {
            use http_body_util::BodyExt;
            let status = r.status();
            (status, r.into_body().collect().await.unwrap().to_bytes())
        };
        let (status, log) = body(get(
            "/containerLogs/ns/echo/c?sinceTime=2026-01-01T00:00:00Z",
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            &log[..],
            b"Echoing back request made to /mirror to client\n"
        );
        assert_eq!(
            body(get("/containerLogs/ns/gone/c")).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            body(get("/containerLogs/ns/echo/other")).await.0,
            StatusCode::NOT_FOUND
        );
        // The certificate is made and taken.
        assert!(server_config("127.0.0.1:10250".parse().unwrap()).is_ok());
    }
}
