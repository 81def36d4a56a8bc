//! The request body sent upstream, in a form that can be sent again on a retry when that is
//! safe: no body; a small body read in full first; or the client's stream, which stays ours
//! until a connection first reads it (so a failed connect can still retry it).

use crate::sync::lock;
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
    /// Shared by the attempts; the first to read takes it. Every hold of the lock is one
    /// `take` or `is_some` (nothing that can panic half-way), so a poisoned lock still holds
    /// the body whole: read through it rather than treat the body as gone (which would send
    /// the pod an empty body).
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
            RequestBody::Stream(slot) => lock(slot).is_some(),
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
            AttemptBody::Stream { slot, body: None } => lock(slot).as_ref().map_or(otherwise, f),
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
                    *body = lock(slot).take();
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt;

    /// A chunked body as hyper's server hands it over, from a real client on loopback; the
    /// connection stays up (its answer held back) while the test reads the body.
    async fn streamed(chunk: &str) -> (Incoming, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (body_tx, body_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            // One request on this connection; `service_fn` wants `Fn`, hence the slots.
            let (body_tx, done_rx) = (Mutex::new(Some(body_tx)), Mutex::new(Some(done_rx)));
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                if let Some(tx) = lock(&body_tx).take() {
                    let _ = tx.send(req.into_body());
                }
                let done = lock(&done_rx).take();
                async move {
                    if let Some(done) = done {
                        let _ = done.await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        // The client must outlive the read: dropping it would break the body off.
        tokio::spawn(async move {
            let mut client = client;
            let _ = tokio::io::AsyncReadExt::read(&mut client, &mut [0; 64]).await;
        });
        (body_rx.await.unwrap(), done_tx)
    }

    #[tokio::test]
    async fn a_panic_under_the_lock_loses_no_body() {
        let (incoming, _done) = streamed("hello").await;
        let slot = Arc::new(Mutex::new(Some(incoming)));
        let poisoner = slot.clone();
        let panicked = std::thread::spawn(move || {
            let _held = poisoner.lock();
            panic!("a panic while the body's lock is held");
        })
        .join();
        assert!(panicked.is_err() && slot.is_poisoned());
        let body = RequestBody::Stream(slot);
        assert!(body.can_resend(), "an unread stream counted as read");
        let sent = body.attempt().collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"hello", "the pod would get a different body");
        assert!(!body.can_resend(), "a read stream counted as resendable");
    }
}
