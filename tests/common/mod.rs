//! What the integration tests share: backends that answer with their identity, a config builder
//! that writes the same file a user would (its objects from `weir::testkit`, the fixtures the
//! lib's unit tests, the benches and the examples build from too; `Endpoint`, `EndpointState`
//! and `endpoint` are re-exported here), weir started in-process, and HTTP clients.
#![allow(dead_code)]

pub mod cluster;
pub mod process;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weir::app::{Options, Running};
use weir::store::Store;
pub use weir::testkit::{Endpoint, EndpointState, endpoint};
use weir::testkit::{backend_slice, service, to_document};

/// A test backend. Answers:
/// - `/healthz`: 200, or 500 while `set_healthy(false)`, or never while `hang_health(true)`;
/// - `/slow?ms=N`: waits N ms, then answers its name;
/// - `/count`: reads the request body and answers how many bytes it had;
/// - `/bytes?n=N`: streams N bytes of `x`;
/// - `/headers`: the request headers, one `name: value` a line;
/// - anything else: its name, or a 500 while `set_failing(true)`.
///
/// Health checks are not counted in `hits`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    controls: Arc<Controls>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Controls {
    unhealthy: AtomicBool,
    hang_health: AtomicBool,
    /// The status every answer gets while failing; 0 when not failing.
    failing: std::sync::atomic::AtomicU16,
    delay: std::sync::Mutex<Duration>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_with_delay(name, Duration::ZERO).await
    }

    /// A backend that waits `delay` before every answer.
    pub async fn start_with_delay(name: &str, delay: Duration) -> Backend {
        Self::start_at(std::net::Ipv4Addr::LOCALHOST.into(), name, delay).await
    }

    /// A backend on a port of `ip` (an address of this machine).
    pub async fn start_on(ip: std::net::IpAddr, name: &str) -> Backend {
        Self::start_at(ip, name, Duration::ZERO).await
    }

    async fn start_at(ip: std::net::IpAddr, name: &str, delay: Duration) -> Backend {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let controls = Arc::new(Controls::default());
        if let Ok(mut d) = controls.delay.lock() {
            *d = delay;
        }
        let task = tokio::spawn(serve_backend(
            listener,
            name.to_string(),
            hits.clone(),
            controls.clone(),
        ));
        Backend {
            name: name.to_string(),
            addr,
            hits,
            controls,
            task,
        }
    }

    /// `n` backends named e0, e1, ...
    pub async fn start_many(n: usize) -> Vec<Backend> {
        futures_util::future::join_all(
            (0..n).map(|i| async move { Backend::start(&format!("e{i}")).await }),
        )
        .await
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.controls.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    pub fn hang_health(&self, hang: bool) {
        self.controls.hang_health.store(hang, Ordering::SeqCst);
    }

    /// Answers 500 to everything but `/healthz` while `failing`.
    pub fn set_failing(&self, failing: bool) {
        self.fail_with(if failing { 500 } else { 0 });
    }

    /// Answers `status` to everything but `/healthz`; 0 stops.
    pub fn fail_with(&self, status: u16) {
        self.controls.failing.store(status, Ordering::SeqCst);
    }

    /// Dies as a killed process would: the listener closes and every open connection drops.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn serve_backend(
    listener: TcpListener,
    name: String,
    hits: Arc<AtomicUsize>,
    controls: Arc<Controls>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    // Connections live in this set, so aborting this task closes them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let name = name.clone();
        let hits = hits.clone();
        let controls = controls.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let name = name.clone();
            let controls = controls.clone();
            let hits = hits.clone();
            async move {
                if req.uri().path() == "/healthz" {
                    if controls.hang_health.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let mut r = Response::new(Full::new(Bytes::from("ok")).boxed());
                    if controls.unhealthy.load(Ordering::SeqCst) {
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    return Ok(r);
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let delay = controls.delay.lock().map(|d| *d).unwrap_or_default();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let failing = controls.failing.load(Ordering::SeqCst);
                if failing != 0 {
                    let mut r = Response::new(Full::new(Bytes::from(name)).boxed());
                    *r.status_mut() =
                        StatusCode::from_u16(failing).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return Ok(r);
                }
                backend_answer(name, req).await
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        connections.spawn(conn);
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

async fn backend_answer(
    name: String,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let text = |s: String| Response::new(Full::new(Bytes::from(s)).boxed());
    match req.uri().path() {
        "/slow" => {
            let ms = query(&req, "ms").unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(text(name))
        }
        "/count" => {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len()),
                    Err(_) => break,
                }
            }
            Ok(text(n.to_string()))
        }
        "/bytes" => {
            let total = query(&req, "n").unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(total, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let n = left.min(chunk.len() as u64);
                    Some((
                        Ok::<_, Infallible>(Frame::data(chunk.slice(..n as usize))),
                        left - n,
                    ))
                }
            });
            Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))))
        }
        "/headers" => {
            let mut lines = String::new();
            for (k, v) in req.headers() {
                lines.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            Ok(text(lines))
        }
        _ => Ok(text(name)),
    }
}

/// Builds a `weir serve` file: Services with one slice per endpoint (from `weir::testkit`), and
/// pools. Everything is in namespace `test`.
#[derive(Default, Clone)]
pub struct Config {
    docs: Vec<String>,
}

impl Config {
    /// A Service `name` (port `http`: 80) whose endpoints are these addresses, all ready.
    pub fn service(self, name: &str, addrs: &[SocketAddr]) -> Self {
        let endpoints: Vec<Endpoint> = addrs
            .iter()
            .map(|&a| endpoint(a, EndpointState::Ready))
            .collect();
        self.service_endpoints(name, &endpoints)
    }

    /// A Service `name` (port `http`: 80) with these endpoints (each given as a `SocketAddr`:
    /// `endpoint(backend.addr, EndpointState::TerminatingServing)`); one slice per endpoint,
    /// since each test backend has its own port.
    pub fn service_endpoints(mut self, name: &str, endpoints: &[Endpoint]) -> Self {
        self.docs
            .push(to_document(&service("test", name, &[("http", 80)])));
        for (i, e) in endpoints.iter().enumerate() {
            let slice = backend_slice("test", name, &format!("{name}-{i}"), e);
            self.docs.push(to_document(&slice));
        }
        self
    }

    /// A Service with endpoints `(address, ready)` (not ready: not serving, not terminating).
    /// Kept for tests written before [`Config::service_endpoints`]; prefer that.
    pub fn service_with(self, name: &str, endpoints: &[(SocketAddr, bool)]) -> Self {
        let endpoints: Vec<Endpoint> = endpoints
            .iter()
            .map(|&(a, ready)| endpoint(a, EndpointState::ready_if(ready)))
            .collect();
        self.service_endpoints(name, &endpoints)
    }

    /// A Service whose endpoints are `(address, ready, serving, terminating)`; panics on a
    /// combination no [`EndpointState`] names. Kept for tests written before
    /// [`Config::service_endpoints`]; prefer that.
    pub fn service_conditions(
        self,
        name: &str,
        endpoints: &[(SocketAddr, bool, bool, bool)],
    ) -> Self {
        let endpoints: Vec<Endpoint> = endpoints
            .iter()
            .map(|&(a, ready, serving, terminating)| {
                let state = EndpointState::from_conditions(ready, serving, terminating)
                    .unwrap_or_else(|| {
                        panic!("no endpoint state is ready={ready} serving={serving} terminating={terminating}")
                    });
                endpoint(a, state)
            })
            .collect();
        self.service_endpoints(name, &endpoints)
    }

    /// A pool on `host` (empty: any host) over `(service, weight)` backends.
    pub fn pool(self, name: &str, host: &str, backends: &[(&str, u32)]) -> Self {
        self.pool_with(name, host, backends, "")
    }

    /// A pool with extra spec lines (indented two spaces), e.g. timeouts.
    pub fn pool_with(
        mut self,
        name: &str,
        host: &str,
        backends: &[(&str, u32)],
        extra: &str,
    ) -> Self {
        let backends: String = backends
            .iter()
            .map(|(s, w)| format!("    - {{ service: {s}, port: http, weight: {w} }}\n"))
            .collect();
        self.docs.push(format!(
            "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: {{ name: {name}, namespace: test }}\nspec:\n  routes: [{{ host: \"{host}\" }}]\n  backends:\n{backends}{extra}"
        ));
        self
    }

    /// Any object, as one document (`weir::testkit::to_document` of a testkit object, or YAML).
    pub fn document(mut self, text: impl Into<String>) -> Self {
        self.docs.push(text.into());
        self
    }

    pub fn yaml(&self) -> String {
        self.docs.join("---\n")
    }

    pub fn store(&self) -> Store {
        weir::source::file::parse("test.yaml", &self.yaml()).expect("test config parses")
    }
}

/// weir in this process, on ephemeral loopback ports, fed by a channel the test controls.
pub struct Weir {
    pub running: Running,
    pub feed: watch::Sender<Arc<Store>>,
}

impl Weir {
    pub async fn start(config: &Config) -> Weir {
        Weir::start_with(config, |_| {}).await
    }

    /// Starts with the test defaults changed by `adjust`.
    pub async fn start_with(config: &Config, adjust: impl FnOnce(&mut Options)) -> Weir {
        let first = Arc::new(config.store());
        let (feed, rx) = watch::channel(first.clone());
        let options = Options {
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            https_addr: Some("127.0.0.1:0".parse().expect("addr")),
            default_certificate: None,
            admin_addr: "127.0.0.1:0".parse().expect("addr"),
            shutdown_grace: Duration::from_secs(5),
            affinity_key: Some(b"a test key of at least sixteen bytes".to_vec()),
            ..Default::default()
        };
        let mut options = options;
        adjust(&mut options);
        let running = weir::app::start(options, Some(first), rx)
            .await
            .expect("weir starts");
        let weir = Weir { running, feed };
        weir.wait_ready().await;
        weir
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.running.admin.synced.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("weir never built a table");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.http_addr)
    }

    /// A pool's live status (health folded in, refreshed each second).
    pub fn status(&self, pool: &str) -> Option<weir::api::LoadBalancerPoolStatus> {
        self.running
            .admin
            .statuses
            .load()
            .get(&weir::store::ObjectKey::new("test", pool))
            .cloned()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin_addr)
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn http2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A GET with this Host header; returns status and body text.
pub async fn get(
    client: &HttpClient,
    url: &str,
    host: &str,
) -> Result<(StatusCode, String), String> {
    let req = Request::get(url)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `f` every 100 ms until it gives a value; panics, naming `what`, after `limit`.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A per-pool counter's value for pool `test/NAME` (0 before it counted anything).
pub fn pool_count(
    family: &prometheus_client::metrics::family::Family<
        weir::metrics::PoolLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    pool: &str,
) -> u64 {
    family
        .get(&weir::metrics::PoolLabels {
            pool: Arc::new(format!("test/{pool}")),
        })
        .map_or(0, |c| c.get())
}

/// A steady client loop: `clients` tasks sending GETs to `url` with `host` until stopped (at
/// most `limit` requests each), counting answers.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: String, host: &str, clients: usize, limit: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (url, host) = (url.clone(), host.to_string());
                tokio::spawn(async move {
                    let client = http1_client();
                    for _ in 0..limit {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match get(&client, &url, &host).await {
                            Ok((StatusCode::OK, _)) => ok.fetch_add(1, Ordering::Relaxed),
                            other => {
                                eprintln!("failed: {other:?}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    /// Stops the clients; returns (answered 200, failed).
    pub async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.join().await
    }

    /// Waits for every client to send its `limit` requests; returns (answered 200, failed).
    pub async fn join(self) -> (usize, usize) {
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Accepts any certificate: the tests look at which one they got.
#[derive(Debug)]
pub struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
