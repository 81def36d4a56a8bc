//! The phases of forwarding one request, as `Proxy::forward` runs them: [`Proxy::prepare`] it
//! once, [`Prepared::pick`] an endpoint and make an [`Proxy::attempt`] there (again, on another
//! endpoint, as far as [`AttemptError::may_retry`] allows), and [`Proxy::finish`] the pod's
//! answer for the client.

use super::access_log::Summary;
use super::attempt::{AttemptError, idempotent, is_retry_status};
use super::request_body::{AttemptBody, RequestBody};
use super::upstream::{self, Dial, LentConnection};
use super::{ClientConnection, Proxy, ProxyBody, Scheme, hash_key, headers, local};
use crate::affinity::Pinned;
use crate::api::AffinityCookie;
use crate::balance::Pick;
use crate::endpoint::{Endpoint, InFlight};
use crate::health::Outcome;
use crate::metrics;
use crate::routing::Pool;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A request made ready for its attempts: what each one sends, and what finishing needs.
pub(super) struct Prepared<'p> {
    parts: http::request::Parts,
    pub body: RequestBody,
    /// What each attempt names as its target.
    target: PathAndQuery,
    /// The consistent-hash key, when the pool hashes and the request has the property.
    key: Option<u64>,
    pub idempotent: bool,
    scheme: Scheme,
    cookie: Option<&'p AffinityCookie>,
    had_cookie: bool,
    pinned: Option<Pinned>,
    /// The client's side of a protocol switch it asked for, until a pod agrees to one.
    client_upgrade: Option<OnUpgrade>,
    timeout: Duration,
    dial: Dial,
}

/// A pod's answer to an attempt, not yet handed to the client.
pub(super) struct Answer {
    response: Response<Incoming>,
    in_flight: InFlight,
    connection: Option<LentConnection>,
    /// Whether the trailers' load report stays for the client.
    keep_load_reports: bool,
}

impl Proxy {
    /// Takes the request apart for its attempts: the hash key, a requested upgrade, the
    /// affinity pin, the headers a pod sees, and the body (read in full when small). `Err` is
    /// the client's answer when the body did not arrive.
    pub(super) async fn prepare<'p>(
        &self,
        mut req: Request<Incoming>,
        conn: ClientConnection,
        client: IpAddr,
        host: &str,
        pool: &'p Arc<Pool>,
    ) -> Result<Prepared<'p>, Response<ProxyBody>> {
        let key = pool
            .policy
            .hash_on
            .as_ref()
            .and_then(|on| hash_key(on, &req, client));
        let upgrade = match req.version() {
            Version::HTTP_11 => headers::upgrade_requested(req.headers()),
            _ => None,
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let cookie = pool.policy.session_affinity.as_ref().map(|a| &a.cookie);
        let had_cookie = cookie.is_some_and(|c| headers::cookie(&parts.headers, &c.name).is_some());
        let pinned = cookie.and_then(|c| {
            let value = headers::cookie(&parts.headers, &c.name)?;
            self.affinity.pinned(pool, value, Instant::now())
        });
        if let Some(c) = cookie
            && !c.forward_cookie
        {
            headers::remove_cookie(&mut parts.headers, &c.name);
        }
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
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
        let timeout = pool.policy.attempt_timeout;
        let content_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let too_large = || {
            local(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this route takes\n",
            )
        };
        let body = match (pool.policy.max_request_body, content_length) {
            (Some(max), Some(n)) if n > max => return Err(too_large()),
            (Some(max), None) => RequestBody::from_client_within(body, max, timeout)
                .await
                .map(|b| b.ok_or(())),
            _ => RequestBody::from_client(body, content_length, timeout)
                .await
                .map(Ok),
        };
        let body = match body {
            Ok(Ok(b)) => b,
            Ok(Err(())) => return Err(too_large()),
            Err(why) => return Err(local(StatusCode::REQUEST_TIMEOUT, format!("{why}\n"))),
        };
        Ok(Prepared {
            idempotent: idempotent(&parts.method),
            parts,
            body,
            target,
            key,
            scheme: conn.scheme,
            cookie,
            had_cookie,
            pinned,
            client_upgrade,
            timeout,
            dial: Dial {
                connect: Duration::from_millis(pool.policy.timeouts.connect_millis.into()),
                idle: Duration::from_secs(pool.policy.timeouts.idle_seconds.into()),
            },
        })
    }

    /// One try at one endpoint: the pod's answer, or why there is none to hand on (counted in
    /// the endpoint's health and the pool's metrics either way).
    pub(super) async fn attempt(
        &self,
        request: &Prepared<'_>,
        pool: &Pool,
        endpoint: &Arc<Endpoint>,
        summary: &mut Summary,
    ) -> Result<Answer, AttemptError> {
        let upstream_request = request
            .for_endpoint(endpoint)
            .ok_or(AttemptError::BadTarget)?;
        let in_flight = endpoint.start_request();
        let sent_at = Instant::now();
        let result = tokio::time::timeout(
            request.timeout,
            upstream::send(endpoint, request.dial, upstream_request),
        )
        .await;
        let now = Instant::now();
        // Time to response headers feeds the latency EWMA; a timeout counts its full wait.
        endpoint.observe_latency(now - sent_at, now, pool.policy.latency_decay);
        summary.upstream = Some(now - sent_at);
        match result {
            Ok(Ok((mut response, connection))) => {
                let keep = pool.policy.keep_load_reports;
                super::load_reports::take(response.headers_mut(), endpoint, keep);
                let status = response.status();
                let outcome = if status.is_server_error() {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
                self.record(pool, endpoint, outcome, now);
                if is_retry_status(&pool.policy.retries, status) {
                    // Without the client's upgrade: an attempt after this one may need it.
                    return Err(AttemptError::RetryStatus(hand_on(
                        response, in_flight, connection, None, keep,
                    )));
                }
                Ok(Answer {
                    response,
                    in_flight,
                    connection,
                    keep_load_reports: keep,
                })
            }
            Ok(Err(e)) => {
                self.record(pool, endpoint, Outcome::Failure, now);
                let error = if e.is_connect() {
                    self.metrics
                        .connect_errors
                        .get_or_create(&metrics::pool_labels(&pool.name))
                        .inc();
                    tracing::warn!(endpoint = %endpoint.addr, error = %e, "upstream cannot connect");
                    AttemptError::NeverSent(e)
                } else {
                    tracing::warn!(endpoint = %endpoint.addr, error = %e, "upstream failed");
                    AttemptError::Broken(e)
                };
                Err(error)
            }
            Err(_) => {
                self.record(pool, endpoint, Outcome::Failure, now);
                self.metrics
                    .timeouts
                    .get_or_create(&metrics::pool_labels(&pool.name))
                    .inc();
                tracing::warn!(endpoint = %endpoint.addr, timeout_seconds = request.timeout.as_secs(), "upstream timed out");
                Err(AttemptError::TimedOut(request.timeout))
            }
        }
    }

    /// Completes a pod's answer for the client: `Via`, and the affinity cookie unless the
    /// client is already pinned to this endpoint under the current key.
    pub(super) fn finish(
        &self,
        mut response: Response<ProxyBody>,
        request: &Prepared<'_>,
        endpoint: &Arc<Endpoint>,
        pool: &Pool,
        summary: &mut Summary,
    ) -> Response<ProxyBody> {
        let version = response.version();
        self.forwarding.add_via(response.headers_mut(), version);
        if let Some(spec) = request.cookie {
            let same = request
                .pinned
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(&p.endpoint, endpoint) && !p.stale_key);
            summary.affinity = match (same, request.had_cookie) {
                (true, _) => "hit",
                (false, true) => "miss",
                (false, false) => "new",
            };
            let https = request.scheme == Scheme::Https;
            if !same && let Some(v) = self.affinity.set_cookie(spec, pool, endpoint, https) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        response
    }
}

impl Prepared<'_> {
    /// The endpoint for try `attempt` (0 the first), not one in `tried`: a pinned client's own
    /// while that can serve (fenced ones too), else the balancer's pick.
    pub fn pick(
        &self,
        pool: &Pool,
        attempt: u32,
        tried: &[Option<SocketAddr>],
    ) -> Option<Arc<Endpoint>> {
        let now = Instant::now();
        let accept = |e: &Endpoint| e.is_available(now) && !tried.contains(&Some(e.addr));
        match &self.pinned {
            Some(p) if attempt == 0 && accept(&p.endpoint) => Some(p.endpoint.clone()),
            _ => pool
                .pick(&Pick {
                    now,
                    key: self.key,
                    accept: &accept,
                })
                .cloned(),
        }
    }

    /// The request as this endpoint gets it; `None` when the target cannot be its URI.
    fn for_endpoint(&self, endpoint: &Endpoint) -> Option<Request<AttemptBody>> {
        self.copy_for(endpoint, self.body.attempt())
    }

    /// The request's head as this endpoint gets it, with `body`: an attempt's, or a mirror's.
    pub(super) fn copy_for(
        &self,
        endpoint: &Endpoint,
        body: AttemptBody,
    ) -> Option<Request<AttemptBody>> {
        // HTTP/1.1 names the path alone (the Host header says the rest); HTTP/2 needs the
        // scheme and authority as pseudo-headers.
        let uri = if endpoint.h2c {
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(endpoint.authority().clone());
            uri.path_and_query = Some(self.target.clone());
            Uri::from_parts(uri).ok()?
        } else {
            Uri::from(self.target.clone())
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = if endpoint.h2c {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        *request.headers_mut() = self.parts.headers.clone();
        Some(request)
    }

    /// Whether the client asked for a protocol switch (WebSocket).
    pub(super) fn upgrades(&self) -> bool {
        self.client_upgrade.is_some()
    }

    /// The request's Content-Length, when it names one.
    pub(super) fn content_length(&self) -> Option<u64> {
        self.parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// A pod's answer for the client, with the protocol switch wired up if it agreed to one.
    pub fn hand_on(&mut self, answer: Answer) -> Response<ProxyBody> {
        hand_on(
            answer.response,
            answer.in_flight,
            answer.connection,
            self.client_upgrade.take(),
            answer.keep_load_reports,
        )
    }
}

/// Hands an upstream response to the client: hop-by-hop headers out, the protocol switch
/// wired up when the pod agreed to one.
fn hand_on(
    mut response: Response<Incoming>,
    in_flight: InFlight,
    connection: Option<LentConnection>,
    client_upgrade: Option<OnUpgrade>,
    keep_load_reports: bool,
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
    response.map(|body| ProxyBody::upstream(body, in_flight, connection, keep_load_reports))
}
