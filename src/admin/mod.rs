//! The admin server: `/healthz`, `/readyz`, `/metrics`, `/pools` and the dashboard (`/`,
//! `/dashboard.json`), on its own address, never on the ingress listeners.

mod collector;
mod dashboard;
pub mod history;
mod pools;
#[cfg(test)]
mod tests;

pub use collector::EndpointCollector;
pub use dashboard::Page;
pub use history::History;
pub use pools::render_pools;

use crate::api::LoadBalancerPoolStatus;
use crate::metrics::Metrics;
use crate::routing::{GatewayStatuses, RoutingTable};
use crate::store::ObjectKey;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin endpoints report on.
#[derive(Debug, Default)]
pub struct ProcessState {
    pub metrics: Arc<Metrics>,
    /// Set once the first routing table is in service.
    pub synced: AtomicBool,
    /// Set when shutdown starts, so load balancers stop sending new connections.
    pub draining: AtomicBool,
    /// Every pool's status, with live health, refreshed each second.
    pub statuses: ArcSwap<BTreeMap<ObjectKey, LoadBalancerPoolStatus>>,
    /// What the Gateway API step says of GatewayClasses, Gateways and HTTPRoutes, with the
    /// Gateway sockets that would not bind folded in: the leader writes it as their status.
    pub gateway_statuses: ArcSwap<GatewayStatuses>,
    /// What compile says of each Ingress of weir's class (its hosts and warnings): the
    /// leader writes its status and a Warning event per warning.
    pub ingress_reports: ArcSwap<BTreeMap<ObjectKey, crate::routing::IngressReport>>,
    /// The routing table in service, for `/pools`.
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// Each pool's recent answers, for the dashboard's charts.
    pub history: Arc<History>,
    /// When the process started, for its uptime.
    pub started: Started,
    /// When the last routing table was swapped in, in seconds since the Unix epoch; 0: never.
    pub last_rebuild: AtomicU64,
}

/// The instant a [`ProcessState`] was made.
#[derive(Debug, Clone, Copy)]
pub struct Started(pub Instant);

impl Default for Started {
    fn default() -> Self {
        Started(Instant::now())
    }
}

impl Started {
    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}

impl ProcessState {
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.draining.load(Ordering::Relaxed) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                } else if self.synced.load(Ordering::Relaxed) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "no routing table yet\n")
                }
            }
            "/pools" => {
                let mut r = text(StatusCode::OK, self.pools_json().to_string());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                r
            }
            "/" | "/index.html" => asset("text/html; charset=utf-8", dashboard::INDEX_HTML),
            "/dashboard/app.js" => asset("text/javascript; charset=utf-8", dashboard::APP_JS),
            "/dashboard/style.css" => asset("text/css; charset=utf-8", dashboard::STYLE_CSS),
            "/metrics" => {
                let mut r = text(StatusCode::OK, self.metrics.encode());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// `/dashboard.json`. Building it walks every pool (milliseconds at 10 000 pools, each second
/// while a page is open): not on a thread that serves requests.
async fn dashboard_feed(state: Arc<ProcessState>, page: Page) -> Response<Full<Bytes>> {
    let body =
        match tokio::task::spawn_blocking(move || state.dashboard_json(&page).to_string()).await {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "building the dashboard feed failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "the feed failed\n");
            }
        };
    let mut r = text(StatusCode::OK, body);
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// A file of the dashboard. The policy keeps the page to what weir serves: no script, style
/// or request goes anywhere else.
fn asset(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, body);
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProcessState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        };
        let state = state.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            async move {
                let read = req.method() == Method::GET || req.method() == Method::HEAD;
                if read && req.uri().path() == "/dashboard.json" {
                    let page = Page::from_query(req.uri().query());
                    return Ok::<_, Infallible>(dashboard_feed(state, page).await);
                }
                Ok(state.answer(&req))
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
