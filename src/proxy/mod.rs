//! The proxy engine: listeners, request handling, upstream connection pools.
//!
//! Every request loads the current routing table (lock-free), picks an endpoint and forwards;
//! it never waits on the controller.

pub mod access_log;
mod body;
mod forwarding;
pub mod headers;
mod limits;
mod listener;
mod request_body;
pub mod tls;
pub mod upstream;

pub use body::ProxyBody;
pub use forwarding::Forwarding;
pub use limits::{Limits, Slots};
pub use listener::serve;

use crate::affinity::Affinity;
use crate::api::HashOn;
use crate::balance::{Pick, key_hash};
use crate::endpoint::{Endpoint, InFlight};
use crate::health::{self, Outcome};
use crate::metrics::{self, Metrics};
use crate::routing::{Pool, RoutingTable};
use access_log::{AccessLog, Completion, Entry, Summary};
use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use request_body::RequestBody;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        let pool = if bad_host {
            None
        } else {
            self.table.load().route(&host, req.uri().path()).cloned()
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
        let target = req.uri().path_and_query().cloned();
        let version = req.version();
        let Some(pool) = pool else {
            let mut response = if bad_host {
                local(
                    StatusCode::BAD_REQUEST,
                    "one Host header, naming a host, is required\n",
                )
            } else {
                local(StatusCode::NOT_FOUND, "no route for this host and path\n")
            };
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
        };
        pool.metrics(&self.metrics).in_flight.inc();
        let mut response = if conn.scheme == Scheme::Http
            && let Some(location) = https_redirect(&pool, &host, req.uri())
        {
            let mut response = local(StatusCode::PERMANENT_REDIRECT, "moved to https\n");
            response.headers_mut().insert(header::LOCATION, location);
            response
        } else {
            let span = tracing::debug_span!("request", pool = %pool.name, request_id = request_id.to_str().unwrap_or("-"));
            // On the heap: the forwarding future is kilobytes, and hyper moves the request's
            // future more than once; a boxed one moves as a pointer.
            Box::pin(
                self.forward(req, conn, client, &host, &pool, &mut summary)
                    .instrument(span),
            )
            .await
        };
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
        if health::record_outcome(pool, endpoint, outcome, now).is_some() {
            self.metrics
                .ejections
                .get_or_create(&metrics::pool_labels(&pool.name))
                .inc();
        }
    }

    /// Sends the request to an endpoint of the pool, and to others when an attempt fails in a
    /// way that is safe to retry.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        conn: ClientConnection,
        client: IpAddr,
        host: &str,
        pool: &Arc<Pool>,
        summary: &mut Summary,
    ) -> Response<ProxyBody> {
        let key = pool
            .policy
            .hash_on
            .as_ref()
            .and_then(|on| hash_key(on, &req, client));
        let upgrade = match req.version() {
            Version::HTTP_11 => headers::upgrade_requested(req.headers()),
            _ => None,
        };
        let mut client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let cookie_spec = pool.policy.session_affinity.as_ref().map(|a| &a.cookie);
        let had_cookie =
            cookie_spec.is_some_and(|c| headers::cookie(&parts.headers, &c.name).is_some());
        let pinned = cookie_spec.and_then(|c| {
            let value = headers::cookie(&parts.headers, &c.name)?;
            self.affinity.pinned(pool, value, Instant::now())
        });
        if let Some(c) = cookie_spec
            && !c.forward_cookie
        {
            headers::remove_cookie(&mut parts.headers, &c.name);
        }
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        headers::remove_hop_by_hop(&mut parts.headers, upgrade.clone());
        self.forwarding.add_forwarded(
            &mut parts.headers,
            conn.client.ip(),
            conn.scheme.as_str(),
            host,
        );
        self.forwarding.add_via(&mut parts.headers, parts.version);
        // The pod sees the host weir routed on: an absolute-form target's authority wins
        // over a Host header that disagrees (RFC 9112 §3.2.2).
        if (parts.uri.authority().is_some() || !parts.headers.contains_key(header::HOST))
            && let Ok(v) = HeaderValue::from_str(host)
        {
            parts.headers.insert(header::HOST, v);
        }
        let timeout = Duration::from_secs(pool.policy.timeouts.request_seconds.into());
        let content_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = match RequestBody::from_client(body, content_length, timeout).await {
            Ok(b) => b,
            Err(why) => return local(StatusCode::REQUEST_TIMEOUT, format!("{why}\n")),
        };
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );

        let dial = upstream::Dial {
            connect: Duration::from_millis(pool.policy.timeouts.connect_millis.into()),
            idle: Duration::from_secs(pool.policy.timeouts.idle_seconds.into()),
        };
        // The endpoints tried so far, on the stack: the first attempt and each retry.
        let mut tried = [None::<SocketAddr>; MAX_RETRIES as usize + 1];
        let mut last_failure: Option<Response<ProxyBody>> = None;
        for attempt in 0..=pool.policy.retries.attempts {
            let now = Instant::now();
            let accept = |e: &Endpoint| e.is_available(now) && !tried.contains(&Some(e.addr));
            // A pinned client goes to its endpoint while that can serve (fenced ones too).
            let picked = match &pinned {
                Some(p) if attempt == 0 && accept(&p.endpoint) => Some(p.endpoint.clone()),
                _ => pool
                    .pick(&Pick {
                        now,
                        key,
                        accept: &accept,
                    })
                    .cloned(),
            };
            let Some(endpoint) = picked else {
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
            // HTTP/1.1 names the path alone (the Host header says the rest); HTTP/2 needs the
            // scheme and authority as pseudo-headers.
            let uri = if endpoint.h2c {
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(http::uri::Scheme::HTTP);
                uri.authority = Some(endpoint.authority().clone());
                uri.path_and_query = Some(target.clone());
                match Uri::from_parts(uri) {
                    Ok(uri) => uri,
                    Err(_) => return local(StatusCode::BAD_REQUEST, "bad request target\n"),
                }
            } else {
                Uri::from(target.clone())
            };
            let mut request = Request::new(body.attempt());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.version_mut() = if endpoint.h2c {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            *request.headers_mut() = parts.headers.clone();

            let in_flight = endpoint.start_request();
            let sent_at = Instant::now();
            let result =
                tokio::time::timeout(timeout, upstream::send(&endpoint, dial, request)).await;
            let now = Instant::now();
            // Time to response headers feeds the latency EWMA; a timeout counts its full wait.
            endpoint.observe_latency(now - sent_at, now, pool.policy.latency_decay);
            summary.upstream = Some(now - sent_at);
            let (failure, retryable) = match result {
                Ok(Ok((response, connection))) => {
                    let status = response.status();
                    let outcome = if status.is_server_error() {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    self.record(pool, &endpoint, outcome, now);
                    let retry = idempotent
                        && body.is_held()
                        && pool.policy.retries.on_status.contains(&status.as_u16())
                        && attempt < pool.policy.retries.attempts;
                    if !retry {
                        let mut response =
                            finish(response, in_flight, connection, client_upgrade.take());
                        let version = response.version();
                        self.forwarding.add_via(response.headers_mut(), version);
                        if let Some(spec) = cookie_spec {
                            let same = pinned.as_ref().is_some_and(|p| {
                                Arc::ptr_eq(&p.endpoint, &endpoint) && !p.stale_key
                            });
                            let https = conn.scheme == Scheme::Https;
                            summary.affinity = match (same, had_cookie) {
                                (true, _) => "hit",
                                (false, true) => "miss",
                                (false, false) => "new",
                            };
                            if !same
                                && let Some(v) =
                                    self.affinity.set_cookie(spec, pool, &endpoint, https)
                            {
                                response.headers_mut().append(header::SET_COOKIE, v);
                            }
                        }
                        return response;
                    }
                    tracing::debug!(endpoint = %endpoint.addr, %status, "retrying on another endpoint");
                    (finish(response, in_flight, connection, None), true)
                }
                Ok(Err(e)) => {
                    self.record(pool, &endpoint, Outcome::Failure, now);
                    let never_sent = e.is_connect();
                    if never_sent {
                        self.metrics
                            .connect_errors
                            .get_or_create(&metrics::pool_labels(&pool.name))
                            .inc();
                    }
                    let what = if never_sent {
                        "cannot connect"
                    } else {
                        "failed"
                    };
                    tracing::warn!(endpoint = %endpoint.addr, error = %e, "upstream {what}");
                    // A request that never left can go elsewhere if its body is still ours; one
                    // that broke mid-way only when replaying it is harmless.
                    let retryable =
                        body.can_resend() && (never_sent || (idempotent && body.is_held()));
                    (
                        local(
                            StatusCode::BAD_GATEWAY,
                            format!("upstream {} {what}\n", endpoint.identity),
                        ),
                        retryable,
                    )
                }
                Err(_) => {
                    self.record(pool, &endpoint, Outcome::Failure, now);
                    self.metrics
                        .timeouts
                        .get_or_create(&metrics::pool_labels(&pool.name))
                        .inc();
                    tracing::warn!(endpoint = %endpoint.addr, timeout_seconds = timeout.as_secs(), "upstream timed out");
                    // The pod may have acted on it, so only an idempotent request with its body
                    // still in hand goes to another endpoint (as nginx's `proxy_next_upstream
                    // timeout`); each attempt gets the full timeout.
                    let retryable = idempotent && body.is_held() && body.can_resend();
                    (
                        local(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!(
                                "upstream {} did not answer within {timeout:?}\n",
                                endpoint.identity
                            ),
                        ),
                        retryable,
                    )
                }
            };
            last_failure = Some(failure);
            if !retryable {
                break;
            }
        }
        last_failure.unwrap_or_else(|| {
            local(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no healthy endpoints in pool {}\n", pool.name),
            )
        })
    }
}

/// Hands an upstream response to the client: hop-by-hop headers out, the protocol switch
/// wired up when the pod agreed to one.
fn finish(
    mut response: Response<Incoming>,
    in_flight: InFlight,
    connection: Option<upstream::LentConnection>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
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
    response.map(|body| ProxyBody::upstream(body, in_flight, connection))
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
