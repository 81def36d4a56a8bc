//! The proxy engine: listeners, request handling, upstream connection pools.
//!
//! Every request loads the current routing table (lock-free), picks an endpoint and forwards;
//! it never waits on the controller.

pub mod access_log;
mod attempt;
mod body;
mod forward;
mod forwarding;
mod gateway;
pub mod headers;
mod ingress;
mod limits;
mod listener;
mod load_reports;
mod mirror;
mod request_body;
pub mod tls;
pub mod upstream;

pub use body::ProxyBody;
pub use forwarding::Forwarding;
pub use limits::{Limits, Slots};
pub use listener::serve;

use crate::affinity::Affinity;
use crate::api::HashOn;
use crate::balance::key_hash;
use crate::endpoint::Endpoint;
use crate::health::{self, Outcome};
use crate::metrics::{self, Metrics};
use crate::routing::gateway::Mirror;
use crate::routing::{Pool, RoutingTable};
use access_log::{AccessLog, Completion, Entry, Summary};
use arc_swap::ArcSwap;
use attempt::AttemptError;
use gateway::Routed;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The most retries a pool may ask for: the bound `spec.retries.attempts` has in validation and
/// the CRD. That bound is private to `api`, so `tests/flaws_retries.rs` holds the two together;
/// `forward` keeps one slot per attempt on the stack from it.
pub const MAX_RETRIES: u32 = 5;

/// The client side of one accepted connection: who it is and how it reached weir. (The pod side
/// is [`upstream::EndpointConnections`].)
#[derive(Debug, Clone, Copy)]
pub struct ClientConnection {
    pub client: SocketAddr,
    pub scheme: Scheme,
    /// The Gateway socket it arrived on (its local address), for Gateway API routing; `None`
    /// on weir's own listeners, which route by LoadBalancerPool.
    pub gateway: Option<SocketAddr>,
}

/// How a client reached weir: on the plain listener or the TLS one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The URI scheme, as in `X-Forwarded-Proto` and the listener metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The request handler shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    table: Arc<ArcSwap<RoutingTable>>,
    access_log: AccessLog,
    affinity: Arc<Affinity>,
    metrics: Arc<Metrics>,
    forwarding: Forwarding,
}

impl Proxy {
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn new(
        table: Arc<ArcSwap<RoutingTable>>,
        affinity: Arc<Affinity>,
        metrics: Arc<Metrics>,
        access_log: AccessLog,
        forwarding: Forwarding,
    ) -> Self {
        Proxy {
            table,
            access_log,
            affinity,
            metrics,
            forwarding,
        }
    }

    /// Answers one request: routed, balanced and forwarded, or a short local error. The
    /// response body carries the request's completion: metrics and the access-log line are
    /// written when it ends.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        conn: ClientConnection,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let request_id = ensure_request_id(req.headers_mut());
        let client = self.forwarding.client_ip(conn.client.ip(), req.headers());
        let host = request_host(&req);
        let bad_host = host.is_err();
        let host = host.unwrap_or_default().to_string();
        // Taken before a rule rewrites it: the log shows what the client asked for.
        let target = req.uri().path_and_query().cloned();
        let version = req.version();
        let routed = if bad_host {
            Err(local(
                StatusCode::BAD_REQUEST,
                "one Host header, naming a host, is required\n",
            ))
        } else if let Some(socket) = conn.gateway {
            gateway::route(
                &self.table.load(),
                socket,
                conn.scheme,
                &host,
                client,
                &mut req,
            )
            .map_err(|b| *b)
        } else {
            let table = self.table.load();
            match table.route(&host, req.uri().path()) {
                Some(pool) => Ok(Routed {
                    pool: pool.clone(),
                    rule: None,
                }),
                // What no pool's route takes, weir's Ingresses may.
                None => match table.ingress_rules() {
                    Some(rules) => gateway::route_on(rules, conn.scheme, &host, client, &mut req)
                        .map_err(|b| *b),
                    None => Err(local(
                        StatusCode::NOT_FOUND,
                        "no route for this host and path\n",
                    )),
                },
            }
        };
        let mut summary = Summary {
            affinity: "-",
            ..Default::default()
        };
        // The log's copy of the target is made only when there is a log.
        let entry = |summary: Summary, target: Option<http::uri::PathAndQuery>, version| {
            (self.access_log != AccessLog::Off).then(|| {
                let req_target = target.map_or_else(|| "/".to_string(), |t| t.as_str().to_string());
                (
                    self.access_log,
                    Box::new(Entry {
                        request_id: request_id.to_str().unwrap_or("-").to_string(),
                        client,
                        host: host.clone(),
                        target: req_target,
                        version,
                        summary,
                    }),
                )
            })
        };
        let Routed { pool, rule } = match routed {
            Ok(routed) => routed,
            Err(mut response) => {
                self.forwarding.set_server(response.headers_mut());
                let completion = Completion {
                    started,
                    metrics: self.metrics.clone(),
                    pool: None,
                    method,
                    status: response.status().as_u16(),
                    log: entry(summary, target, version),
                };
                return response.map(|b| b.on_end(completion));
            }
        };
        pool.metrics(&self.metrics).in_flight.inc();
        let mut response = if conn.scheme == Scheme::Http
            && conn.gateway.is_none()
            && let Some(location) = https_redirect(&pool, &host, req.uri())
        {
            let mut response = local(StatusCode::PERMANENT_REDIRECT, "moved to https\n");
            response.headers_mut().insert(header::LOCATION, location);
            response
        } else {
            let span = tracing::debug_span!("request", pool = %pool.name, request_id = request_id.to_str().unwrap_or("-"));
            // On the heap: the forwarding future is kilobytes, and hyper moves the request's
            // future more than once; a boxed one moves as a pointer.
            let mirrors = rule.as_ref().map_or(&[][..], |r| &r.mirrors[..]);
            let forwarded = Box::pin(
                self.forward(req, conn, client, &host, &pool, mirrors, &mut summary)
                    .instrument(span),
            );
            match rule.as_ref().and_then(|r| r.request_timeout) {
                None => forwarded.await,
                // A Gateway API rule's `timeouts.request`: the whole request, retries included.
                Some(limit) => tokio::time::timeout(limit, forwarded)
                    .await
                    .unwrap_or_else(|_| {
                        local(
                            StatusCode::GATEWAY_TIMEOUT,
                            "the route's request timeout passed\n",
                        )
                    }),
            }
        };
        if let Some(edit) = rule
            .as_ref()
            .and_then(|r| r.filters.response_headers.as_ref())
        {
            edit.apply(response.headers_mut());
        }
        if conn.scheme == Scheme::Https
            && let Some(hsts) = pool.tls.as_ref().and_then(|t| t.hsts.clone())
        {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        self.forwarding.set_server(response.headers_mut());
        let completion = Completion {
            started,
            metrics: self.metrics.clone(),
            pool: Some(pool),
            method,
            status: response.status().as_u16(),
            log: entry(summary, target, version),
        };
        response.map(|b| b.on_end(completion))
    }

    fn record(&self, pool: &Pool, endpoint: &Endpoint, outcome: Outcome, now: Instant) {
        if outcome == Outcome::Failure {
            endpoint.count_failure();
        }
        if health::record_outcome(pool, endpoint, outcome, now).is_some() {
            self.metrics
                .ejections
                .get_or_create(&metrics::pool_labels(&pool.name))
                .inc();
        }
    }

    /// Sends the request to an endpoint of the pool, and to others when an attempt fails in a
    /// way that is safe to retry (the phases are in `forward.rs`, the retry rules in
    /// `attempt.rs`); copies it to the rule's `mirrors` on their own tasks (`mirror.rs`).
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        req: Request<Incoming>,
        conn: ClientConnection,
        client: IpAddr,
        host: &str,
        pool: &Arc<Pool>,
        mirrors: &[Mirror],
        summary: &mut Summary,
    ) -> Response<ProxyBody> {
        let mut request = match self.prepare(req, conn, client, host, pool).await {
            Ok(request) => request,
            Err(response) => return response,
        };
        if !mirrors.is_empty() {
            // Before the first attempt: a streamed body is teed from its first frame on.
            self.mirror(&request, mirrors);
        }
        // The endpoints tried so far, on the stack: the first attempt and each retry.
        let mut tried = [None::<SocketAddr>; MAX_RETRIES as usize + 1];
        let mut last_failure: Option<(AttemptError, Arc<Endpoint>)> = None;
        for attempt in 0..=pool.policy.retries.attempts {
            let Some(endpoint) = request.pick(pool, attempt, &tried) else {
                break;
            };
            if let Some(slot) = tried.get_mut(attempt as usize) {
                *slot = Some(endpoint.addr);
            }
            summary.endpoint = Some(endpoint.addr);
            if attempt > 0 {
                summary.retries = attempt;
                self.metrics
                    .retries
                    .get_or_create(&metrics::pool_labels(&pool.name))
                    .inc();
            }
            let error = match self.attempt(&request, pool, &endpoint, summary).await {
                Ok(answer) => {
                    let response = request.hand_on(answer);
                    return self.finish(response, &request, &endpoint, pool, summary);
                }
                Err(error) => error,
            };
            let retries = &pool.policy.retries;
            if !error.may_retry(request.idempotent, &request.body, retries, attempt) {
                return match error {
                    AttemptError::RetryStatus(response) => {
                        self.finish(response, &request, &endpoint, pool, summary)
                    }
                    error => error.into_response(&endpoint),
                };
            }
            tracing::debug!(endpoint = %endpoint.addr, %error, "retrying on another endpoint");
            last_failure = Some((error, endpoint));
        }
        // No endpoint left to try: the last failure answers. A pod's answer kept for a retry
        // goes out without `Via` or an affinity cookie, as it always has here (unlike one that
        // is not retried, above).
        match last_failure {
            Some((error, endpoint)) => error.into_response(&endpoint),
            None => local(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no healthy endpoints in pool {}\n", pool.name),
            ),
        }
    }
}

/// The request's `X-Request-Id`, made up (and added) when it has none usable. Always text.
fn ensure_request_id(headers: &mut http::HeaderMap) -> HeaderValue {
    const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
    if let Some(id) = headers.get(&X_REQUEST_ID)
        && id.to_str().is_ok()
        && !id.is_empty()
        && id.len() <= 200
    {
        return id.clone();
    }
    let id = HeaderValue::from_bytes(&access_log::new_request_id())
        .unwrap_or_else(|_| HeaderValue::from_static("-"));
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// Where a plain-HTTP request goes when its pool redirects to https: same host (without the
/// port: the https port is the standard one behind the Service), path and query.
fn https_redirect(pool: &Pool, host: &str, uri: &Uri) -> Option<HeaderValue> {
    let tls = pool.tls.as_ref()?;
    if !tls.redirect_http || tls.certificate.is_none() {
        return None;
    }
    let name = match host.strip_prefix('[') {
        Some(v6) => &host[..v6.find(']').map_or(host.len(), |i| i + 2)],
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    HeaderValue::from_str(&format!("https://{name}{target}")).ok()
}

/// The request's consistent-hash key, when it has the property the pool hashes on.
fn hash_key<B>(on: &HashOn, req: &Request<B>, client: IpAddr) -> Option<u64> {
    if let Some(name) = &on.header {
        return req
            .headers()
            .get(name.as_str())
            .map(|v| key_hash(v.as_bytes()));
    }
    if let Some(name) = &on.cookie {
        return headers::cookie(req.headers(), name).map(key_hash);
    }
    match client {
        IpAddr::V4(ip) => Some(key_hash(&ip.octets())),
        IpAddr::V6(ip) => Some(key_hash(&ip.octets())),
    }
}

/// The host a request is for: the URI authority (HTTP/2, absolute-form), else `Host`.
/// Two `Host` headers, or an HTTP/1.1 request with none, are malformed (RFC 9112 §3.2): which
/// one a pod would believe is anyone's guess, so neither is routed. So is a host with userinfo.
fn request_host<B>(req: &Request<B>) -> Result<&str, ()> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(());
    }
    let host = match (req.uri().authority(), first) {
        (Some(authority), _) => authority.as_str(),
        (None, Some(v)) => v.to_str().map_err(|_| ())?,
        (None, None) if req.version() == Version::HTTP_11 => return Err(()),
        (None, None) => "",
    };
    // Userinfo (`user@host`) has no place in a request's host (RFC 9110 §4.2.4).
    if host.contains('@') {
        return Err(());
    }
    Ok(host)
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
