//! What the example programs share besides the generated stores (`weir::testkit::generated`):
//! memory readings and a minimal upstream.
#![allow(dead_code)]

/// Resident set size of this process, from `/proc/self/status` (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_field("/proc/self/status", "VmRSS:")
}

/// A `kB` field of a `/proc/.../status` file, in bytes.
pub fn status_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A minimal upstream for the example programs: answers `ok` to every request on every
/// connection `listener` accepts, forever.
pub async fn serve_ok(listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::body::Incoming;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req: http::Request<Incoming>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
