//! Keep-alive connections to pods: weir's own small pool per endpoint.
//!
//! Each [`Endpoint`] carries its [`EndpointConnections`], made on its first request: a stack of idle
//! HTTP/1.1 connections, or one shared HTTP/2 connection for h2c pods. Because compile keeps
//! the same `Arc<Endpoint>` for a pod that stays, a table swap keeps its connections; a pod that
//! leaves takes its idle connections with it (they close when the endpoint is dropped).
//!
//! A request takes the most recently used idle connection (so the others age out) or dials a new
//! one, taking a connection another request gives back meanwhile if that comes first. The
//! response body hands an HTTP/1.1 connection back through its [`LentConnection`] when it has been read
//! to the end; a body that does not end closes it, as its connection cannot be reused safely. [`EndpointConnections::expire`] closes connections idle past the pool's idle timeout.
//!
//! Why not hyper-util's pooled client: it keys one shared, locked map by host string, spawns a
//! task per request to return each connection, and hides whether a failed request ever left.
//! Here the lookup is the endpoint itself, the lock is per pod and held for a push or a pop, and
//! a request a closed connection refused is sent on another connection, or reported as never
//! sent, so it may be retried anywhere.

use super::request_body::AttemptBody;
use crate::endpoint::Endpoint;
use crate::routing::RoutingTable;
use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::atomic::{AtomicUsize, Ordering};
// Pool locks are taken even after a panic under them: whatever a panic interrupts, the state
// stays a valid pool (`Vec::push`, `pop` and `retain` leave a stack of whole idle connections,
// and the shared slot holds one connection or none; a closed or stale one is skipped when
// taken, as always).
use crate::sync::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tracing::Instrument;

/// Idle HTTP/1.1 connections kept per endpoint; more are closed when they come back.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connection handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("{0}")]
    Request(#[source] hyper::Error),
}

impl UpstreamError {
    /// Whether the request surely never reached the pod (so any request may go elsewhere).
    pub fn is_connect(&self) -> bool {
        !matches!(self, UpstreamError::Request(_))
    }
}

/// The keep-alive connections of one endpoint.
#[derive(Debug, Default)]
pub struct EndpointConnections {
    /// Idle HTTP/1.1 connections, most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The HTTP/2 connection every request to an h2c pod shares.
    shared: Mutex<Option<Idle<http2::SendRequest<AttemptBody>>>>,
    /// Told each time a connection goes back on the idle stack while requests wait on a dial.
    released: tokio::sync::Notify,
    /// Requests waiting on a dial (so a release without waiters skips the notification).
    waiting: AtomicUsize,
}

#[derive(Debug)]
struct Idle<S = http1::SendRequest<AttemptBody>> {
    sender: S,
    /// Closed when still unused at this time.
    until: Instant,
}

/// Settings of one request's connection, from its pool's policy.
#[derive(Debug, Clone, Copy)]
pub struct Dial {
    pub connect: Duration,
    pub idle: Duration,
}

/// An HTTP/1.1 connection lent to one request; [`LentConnection::release`] gives it back.
#[derive(Debug)]
pub struct LentConnection {
    sender: http1::SendRequest<AttemptBody>,
    endpoint: Arc<Endpoint>,
    idle: Duration,
}

impl LentConnection {
    /// Returns the connection to its endpoint's idle stack. Only for a connection whose response
    /// was read to the end; one still writing the request body is closed instead.
    pub fn release(self) {
        if !self.sender.is_ready() {
            return;
        }
        if let Ok(connections) = connections_of(&self.endpoint) {
            connections.put_idle(self.sender, self.idle);
        }
    }
}

impl EndpointConnections {
    fn put_idle(&self, sender: http1::SendRequest<AttemptBody>, keep: Duration) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(Idle {
                sender,
                until: Instant::now() + keep,
            });
        } else {
            return;
        }
        drop(idle);
        // After the push: a waiter counted before it looked at the stack either saw this
        // connection or gets this notification.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.released.notify_one();
        }
    }

    /// Closes the connections unused since before `now` (past their idle timeout) or closed by
    /// the pod; returns how many are still open.
    pub fn expire(&self, now: Instant) -> usize {
        let mut open = 0;
        {
            let mut idle = lock(&self.idle);
            idle.retain(|i| i.until > now && !i.sender.is_closed());
            open += idle.len();
        }
        let mut shared = lock(&self.shared);
        if shared
            .as_ref()
            .is_some_and(|s| s.until <= now || s.sender.is_closed())
        {
            *shared = None;
        }
        open += shared.is_some() as usize;
        open
    }

    fn pop_idle(&self, now: Instant) -> Option<http1::SendRequest<AttemptBody>> {
        let mut idle = lock(&self.idle);
        while let Some(i) = idle.pop() {
            if i.until > now && i.sender.is_ready() {
                return Some(i.sender);
            }
        }
        None
    }

    fn shared_sender(
        &self,
        now: Instant,
        keep: Duration,
    ) -> Option<http2::SendRequest<AttemptBody>> {
        let mut shared = lock(&self.shared);
        match shared.as_mut() {
            Some(s) if !s.sender.is_closed() => {
                s.until = now + keep;
                Some(s.sender.clone())
            }
            _ => {
                *shared = None;
                None
            }
        }
    }
}

/// Sends `req` to `endpoint`, on an idle connection or a new one. The request's URI must be
/// origin-form for HTTP/1.1 and absolute for h2c. An HTTP/1.1 response comes with the lease of
/// its connection, to be released when its body has ended.
pub async fn send(
    endpoint: &Arc<Endpoint>,
    dial: Dial,
    req: http::Request<AttemptBody>,
) -> Result<(http::Response<Incoming>, Option<LentConnection>), UpstreamError> {
    if endpoint.h2c {
        return Box::pin(send_h2(endpoint, dial, req))
            .await
            .map(|r| (r, None));
    }
    let connections = connections_of(endpoint)?;
    let mut req = req;
    while let Some(mut sender) = connections.pop_idle(Instant::now()) {
        match sender.try_send_request(req).await {
            Ok(response) => return Ok((response, Some(lease(sender, endpoint, dial)))),
            // The pod had closed this connection before the request went out: next one.
            Err(e) => req = unsent(e)?,
        }
    }
    // None idle: the rare path, boxed so the common one stays small to move.
    Box::pin(dial_or_take_released(endpoint, dial, req)).await
}

/// Dials a new connection, and meanwhile takes any connection another request gives back,
/// whichever comes first (a burst does not wait on one slow connect per request). A dialed
/// connection nobody waits for any more joins the idle stack.
async fn dial_or_take_released(
    endpoint: &Arc<Endpoint>,
    dial: Dial,
    mut req: http::Request<AttemptBody>,
) -> Result<(http::Response<Incoming>, Option<LentConnection>), UpstreamError> {
    let connections = connections_of(endpoint)?;
    let (dialed_tx, mut dialed) = tokio::sync::oneshot::channel();
    let owner = endpoint.clone();
    tokio::spawn(
        async move {
            if let Err(Ok(sender)) = dialed_tx.send(dial_h1(&owner, dial).await)
                && let Ok(connections) = connections_of(&owner)
            {
                connections.put_idle(sender, dial.idle);
            }
        }
        .in_current_span(),
    );
    let _waiting = Waiting::count(&connections.waiting);
    loop {
        let released = connections.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if let Some(mut sender) = connections.pop_idle(Instant::now()) {
            match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, Some(lease(sender, endpoint, dial)))),
                Err(e) => {
                    req = unsent(e)?;
                    continue;
                }
            }
        }
        tokio::select! {
            result = &mut dialed => {
                let mut sender = result
                    .map_err(|_| UpstreamError::Connect(std::io::Error::other("dial task ended")))??;
                let response = sender
                    .send_request(req)
                    .await
                    .map_err(UpstreamError::Request)?;
                return Ok((response, Some(lease(sender, endpoint, dial))));
            }
            _ = &mut released => {}
        }
    }
}

/// The request a connection refused before sending any of it (so it can go on another), or the
/// error of one that failed once under way.
fn unsent<T>(mut e: hyper::client::conn::TrySendError<T>) -> Result<T, UpstreamError> {
    e.take_message()
        .ok_or_else(|| UpstreamError::Request(e.into_error()))
}

/// The endpoint's keep-alive connections, attached to it on first use.
fn connections_of(endpoint: &Endpoint) -> Result<&EndpointConnections, UpstreamError> {
    endpoint.attached::<EndpointConnections>().ok_or_else(|| {
        UpstreamError::Connect(std::io::Error::other(
            "the endpoint carries state of another type",
        ))
    })
}

/// Counts a waiting request while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn dial_h1(
    endpoint: &Endpoint,
    dial: Dial,
) -> Result<http1::SendRequest<AttemptBody>, UpstreamError> {
    let stream = connect(endpoint, dial).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(
        async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        }
        .instrument(tracing::debug_span!("upstream connection", endpoint = %endpoint.addr)),
    );
    Ok(sender)
}

fn lease(
    sender: http1::SendRequest<AttemptBody>,
    endpoint: &Arc<Endpoint>,
    dial: Dial,
) -> LentConnection {
    LentConnection {
        sender,
        endpoint: endpoint.clone(),
        idle: dial.idle,
    }
}

async fn send_h2(
    endpoint: &Arc<Endpoint>,
    dial: Dial,
    req: http::Request<AttemptBody>,
) -> Result<http::Response<Incoming>, UpstreamError> {
    let connections = connections_of(endpoint)?;
    let mut req = req;
    if let Some(mut sender) = connections.shared_sender(Instant::now(), dial.idle) {
        match sender.try_send_request(req).await {
            Ok(response) => return Ok(response),
            Err(e) => req = unsent(e)?,
        }
    }
    let stream = connect(endpoint, dial).await?;
    let (mut sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(
        async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        }
        .instrument(tracing::debug_span!("upstream connection", endpoint = %endpoint.addr)),
    );
    {
        let mut shared = lock(&connections.shared);
        if shared.as_ref().is_none_or(|s| s.sender.is_closed()) {
            *shared = Some(Idle {
                sender: sender.clone(),
                until: Instant::now() + dial.idle,
            });
        }
    }
    sender
        .send_request(req)
        .await
        .map_err(UpstreamError::Request)
}

async fn connect(endpoint: &Endpoint, dial: Dial) -> Result<TcpStream, UpstreamError> {
    let stream = tokio::time::timeout(dial.connect, TcpStream::connect(endpoint.addr))
        .await
        .map_err(|_| UpstreamError::ConnectTimeout(dial.connect))?
        .map_err(UpstreamError::Connect)?;
    // Small requests and responses go out at once, not after Nagle's delay.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Every second until shutdown, closes the upstream connections of the table in service that
/// sat idle past their pool's idle timeout (or that their pod closed).
pub async fn expire_idle(
    table: Arc<ArcSwap<RoutingTable>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now = Instant::now();
        let table = table.load_full();
        for endpoint in table.pools().flat_map(|p| p.all_endpoints()) {
            if let Some(connections) = endpoint.attached_if_any::<EndpointConnections>() {
                connections.expire(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A pod answering `ok` over HTTP/1.1 and h2c; counts the connections it accepted.
    async fn pod() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test pod");
        let addr = listener.local_addr().expect("the test pod's address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    /// One GET, its body read to the end and its connection given back as a proxy does.
    async fn get(endpoint: &Arc<Endpoint>) {
        let dial = Dial {
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        };
        let uri = format!("http://{}/", endpoint.addr);
        let uri = if endpoint.h2c { uri.as_str() } else { "/" };
        let req = http::Request::get(uri)
            .body(AttemptBody::Data(None))
            .expect("a test request");
        let (response, lease) = send(endpoint, dial, req).await.expect("sent");
        response.into_body().collect().await.expect("the body");
        if let Some(lease) = lease {
            // The connection is ready again once its task has seen the response end.
            for _ in 0..1000 {
                if lease.sender.is_ready() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            lease.release();
        }
    }

    fn poison<T: Send>(lock: &Mutex<T>) {
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = lock.lock();
                panic!("a panic under the lock");
            })
            .join()
        });
        assert!(lock.is_poisoned());
    }

    #[tokio::test]
    async fn http1_pooling_goes_on_after_a_panic_under_the_lock() {
        let (addr, accepted) = pod().await;
        let endpoint = Arc::new(Endpoint::new(addr, "pod"));
        get(&endpoint).await;
        let connections = connections_of(&endpoint).expect("connections");
        assert_eq!(connections.expire(Instant::now()), 1);
        poison(&connections.idle);
        assert_eq!(
            connections.expire(Instant::now()),
            1,
            "lost sight of the idle connection"
        );
        get(&endpoint).await;
        get(&endpoint).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "dialed instead of reusing"
        );
    }

    #[tokio::test]
    async fn h2c_sharing_goes_on_after_a_panic_under_the_lock() {
        let (addr, accepted) = pod().await;
        let endpoint = Arc::new(Endpoint::new(addr, "pod").with_h2c(true));
        let connections = connections_of(&endpoint).expect("connections");
        poison(&connections.shared);
        get(&endpoint).await;
        get(&endpoint).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "dialed instead of sharing"
        );
        assert_eq!(connections.expire(Instant::now()), 1);
    }
}
