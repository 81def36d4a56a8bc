//! The proxy engine: listeners, request handling, upstream connection pools.
//!
//! Every request loads the current routing table (lock-free), picks an endpoint and forwards;
//! it never waits on the controller.

mod body;
mod headers;
mod listener;
mod upstream;

pub use body::ProxyBody;
pub use listener::serve;
pub use upstream::Upstreams;

use crate::api::HashOn;
use crate::balance::{Pick, key_hash};
use crate::metrics::Metrics;
use crate::routing::RoutingTable;
use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub client: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// The request handler shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    table: Arc<ArcSwap<RoutingTable>>,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    no_pool: Arc<String>,
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RoutingTable>>, metrics: Arc<Metrics>) -> Self {
        Proxy {
            table,
            upstreams: upstream::shared(),
            metrics,
            no_pool: Arc::new(String::new()),
        }
    }

    /// Answers one request: routed, balanced and forwarded, or a short local error.
    pub async fn handle(&self, req: Request<Incoming>, conn: Connection) -> Response<ProxyBody> {
        let host = request_host(&req).unwrap_or_default().to_string();
        let pool = self.table.load().route(&host, req.uri().path()).cloned();
        let Some(pool) = pool else {
            self.metrics.request(&self.no_pool, 404);
            return local(StatusCode::NOT_FOUND, "no route for this host and path\n");
        };
        let key = pool
            .hash_on
            .as_ref()
            .and_then(|on| hash_key(on, &req, conn.client));
        let picked = {
            let accept = |_: &crate::endpoint::Endpoint| true;
            let pick = Pick {
                now: Instant::now(),
                key,
                accept: &accept,
            };
            pool.pick(&pick).cloned()
        };
        let Some(endpoint) = picked else {
            self.metrics.request(&pool.name, 503);
            return local(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no healthy endpoints in pool {}\n", pool.name),
            );
        };
        let span = tracing::debug_span!("request", pool = %pool.name, endpoint = %endpoint.addr);
        let response = self
            .forward(req, conn, &host, &pool, &endpoint)
            .instrument(span)
            .await;
        self.metrics.request(&pool.name, response.status().as_u16());
        response
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        conn: Connection,
        host: &str,
        pool: &crate::routing::Pool,
        endpoint: &Arc<crate::endpoint::Endpoint>,
    ) -> Response<ProxyBody> {
        let upgrade = match req.version() {
            Version::HTTP_11 => headers::upgrade_requested(req.headers()),
            _ => None,
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let Ok(uri) = Uri::try_from(format!("http://{}{path}", endpoint.addr)) else {
            return local(StatusCode::BAD_REQUEST, "bad request target\n");
        };
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        headers::remove_hop_by_hop(headers, upgrade.clone());
        headers::add_forwarded(headers, conn.client.ip(), conn.scheme, host);
        if !headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(host)
        {
            headers.insert(header::HOST, v);
        }

        let in_flight = endpoint.start_request();
        let timeout = Duration::from_secs(pool.timeouts.request_seconds.into());
        let sent_at = Instant::now();
        let sent = self.upstreams.request(&pool.timeouts, req);
        let result = tokio::time::timeout(timeout, sent).await;
        // Time to response headers feeds the latency EWMA; a timeout counts as its full wait.
        let now = Instant::now();
        endpoint.observe_latency(now - sent_at, now, pool.latency_decay);
        let mut response = match result {
            Err(_) => {
                tracing::warn!(timeout_seconds = timeout.as_secs(), "upstream timed out");
                return local(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "upstream {} did not answer within {timeout:?}\n",
                        endpoint.identity
                    ),
                );
            }
            Ok(Err(e)) => {
                let what = if e.is_connect() {
                    "cannot connect"
                } else {
                    "failed"
                };
                tracing::warn!(error = %e, "upstream {what}");
                return local(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {} {what}\n", endpoint.identity),
                );
            }
            Ok(Ok(response)) => response,
        };

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching && let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(
                async move {
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((client, upstream)) => {
                            let mut client = TokioIo::new(client);
                            let mut upstream = TokioIo::new(upstream);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                }
                .in_current_span(),
            );
        }
        let agreed = if switching {
            response.headers().get(header::UPGRADE).cloned()
        } else {
            None
        };
        headers::remove_hop_by_hop(response.headers_mut(), agreed);
        response.map(|body| ProxyBody::upstream(body, in_flight))
    }
}

/// The request's consistent-hash key, when it has the property the pool hashes on.
fn hash_key<B>(on: &HashOn, req: &Request<B>, client: SocketAddr) -> Option<u64> {
    if let Some(name) = &on.header {
        return req
            .headers()
            .get(name.as_str())
            .map(|v| key_hash(v.as_bytes()));
    }
    if let Some(name) = &on.cookie {
        return headers::cookie(req.headers(), name).map(key_hash);
    }
    match client.ip() {
        IpAddr::V4(ip) => Some(key_hash(&ip.octets())),
        IpAddr::V6(ip) => Some(key_hash(&ip.octets())),
    }
}

/// The host a request is for: the URI authority (HTTP/2, absolute-form), else `Host`.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.as_str());
    }
    req.headers().get(header::HOST)?.to_str().ok()
}

/// A short plain-text answer of weir's own.
fn local(status: StatusCode, text: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
