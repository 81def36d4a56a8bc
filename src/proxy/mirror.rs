//! `RequestMirror`: a copy of a request, as the rule's backend gets it (after the rule's other
//! request filters, with weir's forwarding headers and the request's Host), sent to one
//! endpoint of each mirror's pool that draws it. Fire and forget: each copy runs on its own
//! task, the client's request never waits on it, its answer is read and dropped, and what
//! becomes of it is only logged and counted (`weir_mirror_requests_total`).
//!
//! The body: a held one (empty, or small and read in full for retries) is shared as it is; a
//! streamed one is teed as the main attempt reads it (`request_body.rs`), and a mirror that
//! cannot keep up, or a body past the bound, is given up, never the main request.

use super::Proxy;
use super::forward::Prepared;
use super::request_body::{AttemptBody, BodyError};
use super::upstream::{self, Dial, LentConnection};
use crate::balance::Pick;
use crate::endpoint::Endpoint;
use crate::health::{self, Outcome};
use crate::metrics::{Metrics, MirrorLabels};
use crate::routing::Pool;
use crate::routing::gateway::Mirror;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The most of a mirror's answer read (so its connection can be kept); past it the
/// connection is closed instead.
const DRAIN_LIMIT: usize = 256 * 1024;

/// Requests in flight on a mirror's endpoint past which it gets no more copies: a mirror that
/// hangs holds a connection per copy until its timeout, and copies must not pile up into
/// sockets and memory the main traffic needs. (A LoadBalancerPool as mirror counts its main
/// traffic too: a pool that busy is shed its copies first.)
const MIRROR_IN_FLIGHT_LIMIT: u64 = 512;

/// What became of one copy, as the metric labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MirrorOutcome {
    Answered,
    Failed,
    TimedOut,
    NoEndpoint,
    Overloaded,
    Abandoned,
}

impl MirrorOutcome {
    fn as_str(self) -> &'static str {
        match self {
            MirrorOutcome::Answered => "answered",
            MirrorOutcome::Failed => "failed",
            MirrorOutcome::TimedOut => "timed_out",
            MirrorOutcome::NoEndpoint => "no_endpoint",
            MirrorOutcome::Overloaded => "overloaded",
            MirrorOutcome::Abandoned => "abandoned",
        }
    }
}

fn count(metrics: &Metrics, pool: &Pool, outcome: MirrorOutcome) {
    metrics
        .mirror_requests
        .get_or_create(&MirrorLabels {
            pool: pool.name.clone(),
            outcome: outcome.as_str(),
        })
        .inc();
}

impl Proxy {
    /// Starts a copy of `request` for each of `mirrors` whose share draws it. Called before the
    /// first attempt, so a streamed body is teed from its start; returns at once.
    #[inline(never)]
    pub(super) fn mirror(&self, request: &Prepared<'_>, mirrors: &[Mirror]) {
        let chosen: Vec<&Mirror> = mirrors.iter().filter(|m| m.sample.take()).collect();
        if chosen.is_empty() {
            return;
        }
        if request.upgrades() {
            // A protocol switch cannot be made for nobody: the copy's connection would be
            // left switched, or the mirror would see a handshake it must refuse.
            tracing::debug!("a protocol switch is not mirrored");
            return;
        }
        let Some(bodies) = request.body.mirrors(chosen.len(), request.content_length()) else {
            for m in chosen {
                tracing::debug!(pool = %m.pool.name, "request body too long to mirror");
                count(&self.metrics, &m.pool, MirrorOutcome::Abandoned);
            }
            return;
        };
        for (mirror, body) in chosen.into_iter().zip(bodies) {
            let pool = mirror.pool.clone();
            let now = Instant::now();
            let accept = |e: &Endpoint| e.is_available(now);
            let Some(endpoint) = pool
                .pick(&Pick {
                    now,
                    key: None,
                    accept: &accept,
                })
                .cloned()
            else {
                tracing::debug!(pool = %pool.name, "no endpoint to mirror to");
                count(&self.metrics, &pool, MirrorOutcome::NoEndpoint);
                continue;
            };
            if endpoint.in_flight() >= MIRROR_IN_FLIGHT_LIMIT {
                tracing::debug!(pool = %pool.name, endpoint = %endpoint.addr, "mirror endpoint too busy for a copy");
                count(&self.metrics, &pool, MirrorOutcome::Overloaded);
                continue;
            }
            let Some(copy) = request.copy_for(&endpoint, body) else {
                count(&self.metrics, &pool, MirrorOutcome::Failed);
                continue;
            };
            let span = tracing::debug_span!("mirror", pool = %pool.name, endpoint = %endpoint.addr);
            tokio::spawn(send(self.metrics.clone(), pool, endpoint, copy).instrument(span));
        }
    }
}

/// Sends one copy and reads its answer to the end (bounded), for nobody.
async fn send(
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    endpoint: Arc<Endpoint>,
    copy: Request<AttemptBody>,
) {
    let timeouts = &pool.policy.timeouts;
    let dial = Dial {
        connect: Duration::from_millis(timeouts.connect_millis.into()),
        idle: Duration::from_secs(timeouts.idle_seconds.into()),
    };
    let limit = pool.policy.attempt_timeout;
    let _in_flight = endpoint.start_request();
    let sent_at = Instant::now();
    let result = tokio::time::timeout(limit, upstream::send(&endpoint, dial, copy)).await;
    let now = Instant::now();
    let outcome = match result {
        Ok(Ok((response, connection))) => {
            endpoint.observe_latency(now - sent_at, now, pool.policy.latency_decay);
            let status = response.status();
            let health = if status.is_server_error() {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            health::record_outcome(&pool, &endpoint, health, now);
            tracing::debug!(status = status.as_u16(), "mirror answered");
            drain(response.into_body(), connection, limit).await;
            MirrorOutcome::Answered
        }
        // Our giving up on the body is no fault of the pod's.
        Ok(Err(e)) if BodyError::is_mirror_abandoned(&e) => {
            tracing::debug!(error = %e, "mirror abandoned");
            MirrorOutcome::Abandoned
        }
        Ok(Err(e)) => {
            health::record_outcome(&pool, &endpoint, Outcome::Failure, now);
            tracing::info!(error = %e, "mirror failed");
            MirrorOutcome::Failed
        }
        Err(_) => {
            health::record_outcome(&pool, &endpoint, Outcome::Failure, now);
            tracing::info!(timeout_ms = limit.as_millis() as u64, "mirror timed out");
            MirrorOutcome::TimedOut
        }
    };
    count(&metrics, &pool, outcome);
}

/// Reads a mirror's answer and drops it; the connection goes back for reuse only when the
/// answer ended in time and within [`DRAIN_LIMIT`].
async fn drain(mut body: Incoming, connection: Option<LentConnection>, limit: Duration) {
    let whole = tokio::time::timeout(limit, async {
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > DRAIN_LIMIT {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if whole && let Some(connection) = connection {
        connection.release();
    }
}
