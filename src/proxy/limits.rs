//! What one client may cost weir: connection count, header size and count, header time, and
//! the HTTP/2 settings that bound streams and resets. Every limit has a deliberate default;
//! hyper's own defaults are not relied on.

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Limits on ingress clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open client connections across every ingress listener; more are refused.
    pub max_connections: usize,
    /// Time a client has to send a request's headers. An idle HTTP/1.1 keep-alive connection
    /// waits for its next request's headers, so this also closes idle connections.
    pub header_timeout: Duration,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431.
    pub max_headers: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            header_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_streams: 256,
        }
    }
}

/// HTTP/2 resets a client may cause before the connection is closed (the "rapid reset" attack
/// opens and cancels streams faster than the server can see them finish).
const MAX_PENDING_RESETS: usize = 20;
/// Streams weir itself may reset for a client's protocol errors before closing the connection.
const MAX_LOCAL_RESETS: usize = 64;
/// Bytes queued for sending per HTTP/2 stream.
const MAX_SEND_BUFFER: usize = 400 * 1024;
/// How often an HTTP/2 connection is pinged, and how long the answer may take: a peer that is
/// gone is noticed without waiting for TCP.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

impl Limits {
    /// A connection builder (HTTP/1.1 and HTTP/2) with these limits applied.
    pub fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            // hyper's smallest buffer is 8 KiB; the head must fit in it.
            .max_buf_size(self.max_header_bytes.max(8192))
            .max_headers(self.max_headers)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.max_streams)
            .max_header_list_size(self.max_header_bytes.try_into().unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
            .max_local_error_reset_streams(MAX_LOCAL_RESETS)
            .max_send_buf_size(MAX_SEND_BUFFER)
            .keep_alive_interval(H2_PING_EVERY)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        builder
    }
}

/// Connection slots shared by every ingress listener.
#[derive(Debug)]
pub struct Slots {
    open: AtomicUsize,
    max: usize,
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A slot, or `None` when `max` connections are open.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a plain-HTTP client over the connection limit reads before weir closes: a complete
/// HTTP/1.1 response, so it sees why instead of a bare reset.
pub const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 33\r\n\
connection: close\r\n\
retry-after: 1\r\n\
\r\n\
too many open client connections\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_max_and_come_back() {
        let slots = Slots::new(2);
        let a = slots.take();
        let b = slots.take();
        assert!(a.is_some() && b.is_some());
        assert!(slots.take().is_none());
        drop(a);
        assert_eq!(slots.open(), 1);
        assert!(slots.take().is_some());
    }

    #[test]
    fn refusal_length_matches_its_body() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
