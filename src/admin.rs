//! The admin server: `/healthz`, `/readyz` and `/metrics`, on its own address, never on the
//! ingress listeners.

use crate::api::LoadBalancerPoolStatus;
use crate::endpoint::Endpoint;
use crate::metrics::Metrics;
use crate::routing::{Pool, RoutingTable};
use crate::store::ObjectKey;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin endpoints report on.
#[derive(Debug, Default)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Set once the first routing table is in service.
    pub synced: AtomicBool,
    /// Set when shutdown starts, so load balancers stop sending new connections.
    pub draining: AtomicBool,
    /// Every pool's status, with live health, refreshed each second.
    pub statuses: ArcSwap<BTreeMap<ObjectKey, LoadBalancerPoolStatus>>,
}

impl AdminState {
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

/// Per-endpoint gauges, read from the table in service at each scrape: in flight, latency
/// EWMA, requests. Endpoint labels appear only here, never on histograms, so cardinality grows
/// with endpoints once, not per status code or bucket.
#[derive(Debug)]
pub struct EndpointCollector {
    pub table: Arc<ArcSwap<RoutingTable>>,
}

impl Collector for EndpointCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let table = self.table.load();
        let now = Instant::now();
        let rows: Vec<(&str, String, &Pool, &Arc<Endpoint>)> = table
            .pools()
            .flat_map(|p| {
                p.endpoints()
                    .map(move |e| (p.name.as_str(), e.addr.to_string(), p.as_ref(), e))
            })
            .collect();
        let mut m = encoder.encode_descriptor(
            "endpoint_in_flight",
            "Requests in flight on an endpoint",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, _, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            ConstGauge::new(e.in_flight() as i64).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "endpoint_latency_ewma_seconds",
            "Peak-sensitive EWMA of an endpoint's time to response headers",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, p, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            let seconds = e.latency_ewma_at(now, p.latency_decay) / 1e9;
            ConstGauge::new(seconds).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "certificate_expiry_seconds",
            "Time until a pool's TLS certificate expires (negative: expired)",
            None,
            MetricType::Gauge,
        )?;
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        for pool in table.pools() {
            let not_after = pool
                .tls
                .as_ref()
                .and_then(|t| t.certificate.as_ref())
                .and_then(|c| c.not_after);
            if let Some(not_after) = not_after {
                let labels = [("pool", pool.name.as_str())];
                ConstGauge::new(not_after - unix_now).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "endpoint_requests",
            "Requests sent to an endpoint",
            None,
            MetricType::Counter,
        )?;
        for (pool, addr, _, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            ConstCounter::new(e.requests()).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
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
    state: Arc<AdminState>,
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
        let service = service_fn(move |req| {
            let response = state.answer(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
