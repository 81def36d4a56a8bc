//! The response body the proxy returns: the upstream's, streamed as it comes, or a short local
//! answer. It carries the endpoint's in-flight mark, so a request counts until its body ends,
//! and the lease of its upstream connection, which goes back to the pool only if the body was
//! read to its end.

use super::access_log::Completion;
use super::upstream::LentConnection;
use crate::endpoint::InFlight;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    /// The request's mark on its endpoint (which also says whose trailers these are).
    in_flight: Option<InFlight>,
    connection: Option<LentConnection>,
    /// Finished (metrics, access log) when the body ends or is dropped.
    completion: Option<Box<Completion>>,
    bytes: u64,
    /// The body said it had no more frames (a chunked body never reports `is_end_stream`).
    ended: bool,
    /// Whether a load report in the trailers stays for the client.
    keep_load_reports: bool,
}

#[derive(Debug)]
enum Inner {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(
        body: Incoming,
        in_flight: InFlight,
        connection: Option<LentConnection>,
        keep_load_reports: bool,
    ) -> Self {
        ProxyBody {
            inner: Inner::Upstream(body),
            in_flight: Some(in_flight),
            connection,
            completion: None,
            bytes: 0,
            ended: false,
            keep_load_reports,
        }
    }

    pub fn local(text: impl Into<Bytes>) -> Self {
        ProxyBody {
            inner: Inner::Local(Some(text.into())),
            in_flight: None,
            connection: None,
            completion: None,
            bytes: 0,
            ended: false,
            keep_load_reports: false,
        }
    }

    /// Runs `completion` when the body has been sent (or the client went away).
    pub fn on_end(mut self, completion: Completion) -> Self {
        self.completion = Some(Box::new(completion));
        self
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(lease) = self.connection.take()
            && (self.ended || self.is_end_stream())
        {
            lease.release();
        }
        if let Some(c) = self.completion.take() {
            c.finish(self.bytes);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut frame = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        match &mut frame {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                } else if let (Some(trailers), Some(in_flight)) =
                    (f.trailers_mut(), this.in_flight.as_ref())
                {
                    // gRPC pods report load in the trailers, after the answer.
                    super::load_reports::take(
                        trailers,
                        in_flight.endpoint(),
                        this.keep_load_reports,
                    );
                }
            }
            Poll::Ready(None) => this.ended = true,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Local(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
