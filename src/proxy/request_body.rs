//! The request body sent upstream, in a form that can be sent again on a retry when that is
//! safe: no body; a small body read in full first; or the client's stream, which stays ours
//! until a connection first reads it (so a failed connect can still retry it).
//!
//! A request some `RequestMirror` filter copies gets its copies here too: a held body is
//! shared as it is; a stream is teed, each frame copied into a bounded queue per mirror as the
//! main attempt reads it. The main request never waits on a queue: a mirror whose queue is
//! full, or a stream past [`MIRROR_BODY_LIMIT`], is given up (its body ends in an error, so
//! the mirror's pod never takes a cut body for a whole one).

use crate::sync::lock;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Bodies up to this size (by Content-Length) are read in full before the first attempt, so
/// an idempotent request can be replayed after a connection breaks mid-way.
pub const REPLAY_BUFFER: u64 = 64 * 1024;

/// The most of a streamed body a mirror is sent; a longer one is not mirrored (bounded
/// memory per request whatever the mirrors do).
pub const MIRROR_BODY_LIMIT: u64 = 1024 * 1024;

/// The largest body-size limit a body of unknown length is read ahead for.
pub const MAX_COUNTED_BODY: u64 = 8 * 1024 * 1024;

/// Frames queued for one mirror before it counts as not keeping up.
const MIRROR_QUEUE_FRAMES: usize = 64;

/// A request body as weir holds it.
#[derive(Debug, Clone)]
pub enum RequestBody {
    Empty,
    Buffered(Bytes),
    /// Shared by the attempts; the first to read takes it. Every hold of the lock is one
    /// `take` or `is_some` (nothing that can panic half-way), so a poisoned lock still holds
    /// the body whole: read through it rather than treat the body as gone (which would send
    /// the pod an empty body).
    Stream(Arc<Mutex<Option<ClientStream>>>),
}

/// The client's body stream: as it comes, or teed to mirrors as it is read.
#[derive(Debug)]
pub enum ClientStream {
    Plain(Incoming),
    /// Boxed: only mirrored requests pay for its size.
    Teed(Box<Tee>),
}

/// The client's stream, copying each frame to the mirrors still keeping up.
#[derive(Debug)]
pub struct Tee {
    body: Incoming,
    copies: Vec<MirrorCopy>,
    copied: u64,
}

/// One mirror's end of a tee.
#[derive(Debug)]
struct MirrorCopy {
    frames: mpsc::Sender<Frame<Bytes>>,
    /// Set when the client's body ended whole and this mirror had every frame of it, before
    /// its sender is dropped: a mirror whose queue closes without it lost part of the body.
    whole: Arc<AtomicBool>,
}

/// Why an attempt's body did not arrive whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Client(#[from] hyper::Error),
    #[error(
        "mirror abandoned: the request body was not copied whole (too large, or the mirror fell behind)"
    )]
    MirrorAbandoned,
}

impl BodyError {
    /// Whether `error`, or what caused it, is a mirror given up on.
    pub fn is_mirror_abandoned(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if matches!(
                e.downcast_ref::<BodyError>(),
                Some(BodyError::MirrorAbandoned)
            ) {
                return true;
            }
            next = e.source();
        }
        false
    }
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
            _ => Ok(RequestBody::Stream(Arc::new(Mutex::new(Some(
                ClientStream::Plain(body),
            ))))),
        }
    }

    /// A body of unknown length read in full when it must stay within `max` bytes (an
    /// Ingress's `proxy-body-size`, as nginx buffers and counts it); `Ok(None)`: it is longer.
    /// Limits above [`MAX_COUNTED_BODY`] are not read ahead (memory per request stays bounded):
    /// such a body streams as it comes, unchecked.
    pub async fn from_client_within(
        body: Incoming,
        max: u64,
        limit: Duration,
    ) -> Result<Option<RequestBody>, &'static str> {
        if body.is_end_stream() {
            return Ok(Some(RequestBody::Empty));
        }
        if max > MAX_COUNTED_BODY {
            return RequestBody::from_client(body, None, limit).await.map(Some);
        }
        let limited =
            http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        match tokio::time::timeout(limit, limited.collect()).await {
            Ok(Ok(collected)) => Ok(Some(RequestBody::Buffered(collected.to_bytes()))),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Ok(None),
            Ok(Err(_)) => Err("the request body broke off"),
            Err(_) => Err("the request body did not arrive in time"),
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

    /// A body for each of `n` mirrors: a held body as it is; a stream teed from here on (call
    /// before any attempt reads it). `None`: the body cannot be mirrored (a stream longer than
    /// [`MIRROR_BODY_LIMIT`] by its `content_length`, or one already read).
    pub fn mirrors(&self, n: usize, content_length: Option<u64>) -> Option<Vec<AttemptBody>> {
        match self {
            RequestBody::Empty | RequestBody::Buffered(_) => {
                Some((0..n).map(|_| self.attempt()).collect())
            }
            RequestBody::Stream(_) if content_length.is_some_and(|l| l > MIRROR_BODY_LIMIT) => None,
            RequestBody::Stream(slot) => {
                let mut slot = lock(slot);
                let body = match slot.take() {
                    Some(ClientStream::Plain(body)) => body,
                    other => {
                        *slot = other;
                        return None;
                    }
                };
                let (copies, bodies) = (0..n)
                    .map(|_| {
                        let (tx, rx) = mpsc::channel(MIRROR_QUEUE_FRAMES);
                        let whole = Arc::new(AtomicBool::new(false));
                        let body = AttemptBody::Mirror {
                            frames: rx,
                            whole: whole.clone(),
                        };
                        (MirrorCopy { frames: tx, whole }, body)
                    })
                    .unzip();
                *slot = Some(ClientStream::Teed(Box::new(Tee {
                    body,
                    copies,
                    copied: 0,
                })));
                Some(bodies)
            }
        }
    }
}

impl ClientStream {
    fn incoming(&self) -> &Incoming {
        match self {
            ClientStream::Plain(b) => b,
            ClientStream::Teed(t) => &t.body,
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self {
            ClientStream::Plain(b) => Pin::new(b).poll_frame(cx),
            ClientStream::Teed(t) => t.poll_frame(cx),
        }
    }
}

impl Tee {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.copy(frame);
                // A sized body may end without a last poll for `None`: hyper stops reading at
                // its length.
                if self.body.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    /// Queues a copy of `frame` for each mirror; one that cannot take it now is given up.
    fn copy(&mut self, frame: &Frame<Bytes>) {
        if self.copies.is_empty() {
            return;
        }
        if let Some(data) = frame.data_ref() {
            self.copied += data.len() as u64;
            if self.copied > MIRROR_BODY_LIMIT {
                tracing::debug!(limit = MIRROR_BODY_LIMIT, "request body too long to mirror");
                self.copies.clear();
                return;
            }
        }
        self.copies.retain(|copy_to| {
            let copy = match (frame.data_ref(), frame.trailers_ref()) {
                (Some(data), _) => Frame::data(data.clone()),
                (None, Some(trailers)) => Frame::trailers(trailers.clone()),
                // A frame kind http-body may add later: nothing a pod would miss.
                (None, None) => return true,
            };
            copy_to.frames.try_send(copy).is_ok()
        });
    }

    /// Ends every copy still kept up: whole when the client's body ended whole (a mirror
    /// dropped on the way never hears it, so its copy ends in an error).
    fn finish(&mut self, whole: bool) {
        for copy in self.copies.drain(..) {
            if whole {
                copy.whole.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// The body of one upstream attempt.
#[derive(Debug)]
pub enum AttemptBody {
    Data(Option<Bytes>),
    Stream {
        slot: Arc<Mutex<Option<ClientStream>>>,
        body: Option<ClientStream>,
    },
    /// A mirror's copy of a teed stream.
    Mirror {
        frames: mpsc::Receiver<Frame<Bytes>>,
        whole: Arc<AtomicBool>,
    },
}

impl AttemptBody {
    fn peek<T>(&self, f: impl Fn(&Incoming) -> T, otherwise: T) -> T {
        match self {
            AttemptBody::Data(_) | AttemptBody::Mirror { .. } => otherwise,
            AttemptBody::Stream { body: Some(b), .. } => f(b.incoming()),
            AttemptBody::Stream { slot, body: None } => {
                lock(slot).as_ref().map_or(otherwise, |b| f(b.incoming()))
            }
        }
    }
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            AttemptBody::Data(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            AttemptBody::Stream { slot, body } => {
                if body.is_none() {
                    // The first read takes the stream: from here on it cannot be resent.
                    *body = lock(slot).take();
                }
                match body {
                    Some(b) => b.poll_frame(cx).map_err(BodyError::Client),
                    None => Poll::Ready(None),
                }
            }
            AttemptBody::Mirror { frames, whole } => match frames.poll_recv(cx) {
                Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) if whole.load(Ordering::SeqCst) => Poll::Ready(None),
                Poll::Ready(None) => Poll::Ready(Some(Err(BodyError::MirrorAbandoned))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AttemptBody::Data(d) => d.is_none(),
            AttemptBody::Mirror { .. } => false,
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
        streamed_chunks(&[chunk.to_string()]).await
    }

    /// The same, sent as these chunks.
    async fn streamed_chunks(chunks: &[String]) -> (Incoming, tokio::sync::oneshot::Sender<()>) {
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
        let mut request =
            "POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_string();
        for chunk in chunks {
            request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        request.push_str("0\r\n\r\n");
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
        let slot = Arc::new(Mutex::new(Some(ClientStream::Plain(incoming))));
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

    fn chunks(n: usize, size: usize) -> Vec<String> {
        (0..n)
            .map(|i| char::from(b'a' + (i % 26) as u8).to_string().repeat(size))
            .collect()
    }

    async fn teed(chunks: &[String], mirrors: usize) -> (RequestBody, Vec<AttemptBody>) {
        let (incoming, done) = streamed_chunks(chunks).await;
        // The answer is held until the test ends.
        std::mem::forget(done);
        let body = RequestBody::Stream(Arc::new(Mutex::new(Some(ClientStream::Plain(incoming)))));
        let copies = body
            .mirrors(mirrors, None)
            .expect("a fresh stream can be teed");
        (body, copies)
    }

    #[tokio::test]
    async fn a_teed_stream_reaches_the_attempt_and_each_mirror_whole() {
        let sent = chunks(20, 100);
        let (body, copies) = teed(&sent, 2).await;
        let main = body.attempt().collect().await.unwrap().to_bytes();
        assert_eq!(main, sent.concat().as_bytes());
        for copy in copies {
            let copied = copy.collect().await.expect("a whole copy").to_bytes();
            assert_eq!(copied, main);
        }
    }

    #[tokio::test]
    async fn a_mirror_that_falls_behind_is_given_up_never_the_attempt() {
        // More frames than a mirror's queue holds, and the mirror reads none of them meanwhile.
        let sent = chunks(MIRROR_QUEUE_FRAMES * 3, 10);
        let (body, copies) = teed(&sent, 1).await;
        let main = body.attempt().collect().await.unwrap().to_bytes();
        assert_eq!(main, sent.concat().as_bytes());
        let copy = copies.into_iter().next().expect("a copy").collect().await;
        assert!(
            matches!(copy, Err(BodyError::MirrorAbandoned)),
            "a cut copy ended as a whole one: {copy:?}"
        );
    }

    #[tokio::test]
    async fn a_body_past_the_mirror_bound_is_not_mirrored() {
        let size = 64 * 1024;
        let sent = chunks(MIRROR_BODY_LIMIT as usize / size + 2, size);
        let (body, copies) = teed(&sent, 1).await;
        let main = body.attempt().collect().await.unwrap().to_bytes();
        assert_eq!(main.len(), sent.concat().len());
        let copy = copies.into_iter().next().expect("a copy").collect().await;
        assert!(matches!(copy, Err(BodyError::MirrorAbandoned)));
        // Known long by its Content-Length: not even started.
        let (incoming, _done) = streamed("x").await;
        let body = RequestBody::Stream(Arc::new(Mutex::new(Some(ClientStream::Plain(incoming)))));
        assert!(body.mirrors(1, Some(MIRROR_BODY_LIMIT + 1)).is_none());
        assert!(body.can_resend(), "refusing to mirror took the stream");
    }

    #[test]
    fn an_abandoned_mirror_is_told_from_the_errors_it_caused() {
        let abandoned = BodyError::MirrorAbandoned;
        assert!(BodyError::is_mirror_abandoned(&abandoned));
        // As upstream::send reports it: hyper's error, caused by the body's.
        #[derive(Debug, thiserror::Error)]
        #[error("the request failed")]
        struct Wrapped(#[source] BodyError);
        assert!(BodyError::is_mirror_abandoned(&Wrapped(
            BodyError::MirrorAbandoned
        )));
        assert!(!BodyError::is_mirror_abandoned(&std::io::Error::other(
            "reset"
        )));
    }
}
