//! The request body sent upstream, in a form that can be sent again on a retry when that is
//! safe: no body; a small body read in full first; or the client's stream, which stays ours
//! until a connection first reads it (so a failed connect can still retry it).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Bodies up to this size (by Content-Length) are read in full before the first attempt, so
/// an idempotent request can be replayed after a connection breaks mid-way.
pub const REPLAY_BUFFER: u64 = 64 * 1024;

/// A request body as weir holds it.
#[derive(Debug, Clone)]
pub enum RequestBody {
    Empty,
    Buffered(Bytes),
    Stream(Arc<Mutex<Option<Incoming>>>),
}

impl RequestBody {
    /// Takes the client's body: empty, buffered when small and sized, else kept as a stream.
    /// Reading a small body is bounded by `limit`; `Err` when the client did not send it in time
    /// or the connection broke.
    pub async fn from_client(
        body: Incoming,
        content_length: Option<u64>,
        limit: Duration,
    ) -> Result<RequestBody, &'static str> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        match content_length {
            Some(n) if n <= REPLAY_BUFFER => {
                match tokio::time::timeout(limit, body.collect()).await {
                    Ok(Ok(collected)) => Ok(RequestBody::Buffered(collected.to_bytes())),
                    Ok(Err(_)) => Err("the request body broke off"),
                    Err(_) => Err("the request body did not arrive in time"),
                }
            }
            _ => Ok(RequestBody::Stream(Arc::new(Mutex::new(Some(body))))),
        }
    }

    /// Whether it could be sent again now: always for held bodies; for a stream, only while no
    /// connection has started reading it.
    pub fn can_resend(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Buffered(_) => true,
            RequestBody::Stream(slot) => slot.lock().map(|s| s.is_some()).unwrap_or(false),
        }
    }

    /// Whether weir holds the whole body (so it can be sent again even after a pod read it).
    pub fn is_held(&self) -> bool {
        !matches!(self, RequestBody::Stream(_))
    }

    /// A body for one attempt.
    pub fn attempt(&self) -> AttemptBody {
        match self {
            RequestBody::Empty => AttemptBody::Data(None),
            RequestBody::Buffered(b) => AttemptBody::Data(Some(b.clone())),
            RequestBody::Stream(slot) => AttemptBody::Stream {
                slot: slot.clone(),
                body: None,
            },
        }
    }
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub enum AttemptBody {
    Data(Option<Bytes>),
    Stream {
        slot: Arc<Mutex<Option<Incoming>>>,
        body: Option<Incoming>,
    },
}

impl AttemptBody {
    fn peek<T>(&self, f: impl Fn(&Incoming) -> T, otherwise: T) -> T {
        match self {
            AttemptBody::Data(_) => otherwise,
            AttemptBody::Stream { body: Some(b), .. } => f(b),
            AttemptBody::Stream { slot, body: None } => match slot.lock() {
                Ok(s) => s.as_ref().map_or(otherwise, f),
                Err(_) => otherwise,
            },
        }
    }
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            AttemptBody::Data(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            AttemptBody::Stream { slot, body } => {
                if body.is_none() {
                    // The first read takes the stream: from here on it cannot be resent.
                    *body = slot.lock().ok().and_then(|mut s| s.take());
                }
                match body {
                    Some(b) => Pin::new(b).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AttemptBody::Data(d) => d.is_none(),
            _ => self.peek(|b| b.is_end_stream(), true),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AttemptBody::Data(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            _ => self.peek(|b| b.size_hint(), SizeHint::default()),
        }
    }
}
