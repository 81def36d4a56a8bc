//! The response body the proxy returns: the upstream's, streamed as it comes, or a short local
//! answer. It carries the endpoint's in-flight mark, so a request counts until its body ends.

use super::access_log::Completion;
use crate::endpoint::InFlight;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    _in_flight: Option<InFlight>,
    /// Finished (metrics, access log) when the body ends or is dropped.
    completion: Option<Box<Completion>>,
    bytes: u64,
}

#[derive(Debug)]
enum Inner {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(body: Incoming, in_flight: InFlight) -> Self {
        ProxyBody {
            inner: Inner::Upstream(body),
            _in_flight: Some(in_flight),
            completion: None,
            bytes: 0,
        }
    }

    pub fn local(text: impl Into<Bytes>) -> Self {
        ProxyBody {
            inner: Inner::Local(Some(text.into())),
            _in_flight: None,
            completion: None,
            bytes: 0,
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
        let frame = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        if let Poll::Ready(Some(Ok(f))) = &frame
            && let Some(d) = f.data_ref()
        {
            this.bytes += d.len() as u64;
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
