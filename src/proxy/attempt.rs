//! What one try at one endpoint can come to short of the client's answer, whether the request
//! may then go to another endpoint (the retry rules, all of them here), and what the client is
//! told when it may not.

use super::request_body::RequestBody;
use super::upstream::UpstreamError;
use super::{ProxyBody, local};
use crate::api::Retries;
use crate::endpoint::Endpoint;
use http::{Method, Response, StatusCode};
use std::time::Duration;

/// Why an attempt did not end with the response the client gets.
#[derive(Debug, thiserror::Error)]
#[expect(
    clippy::large_enum_variant,
    reason = "one lives on the stack per try; boxing the pod's response would cost an allocation \
              per retried status"
)]
pub(super) enum AttemptError {
    /// The request surely never reached the pod: the connect or the handshake failed, or the
    /// connection refused it before taking any of it.
    #[error("cannot connect")]
    NeverSent(#[source] UpstreamError),
    /// The exchange broke once the request was under way.
    #[error("failed")]
    Broken(#[source] UpstreamError),
    /// No response headers within the pool's request timeout.
    #[error("did not answer within {0:?}")]
    TimedOut(Duration),
    /// The pod answered with a status the pool retries on. Its response, ready to hand on, is
    /// kept: it is the answer if no other endpoint takes the request.
    #[error("answered {}", .0.status())]
    RetryStatus(Response<ProxyBody>),
    /// The target cannot be written as this endpoint's URI.
    #[error("has no URI for the request target")]
    BadTarget,
}

impl AttemptError {
    /// Whether the request may go on to another endpoint after this error, on try `attempt`
    /// (0 the first) under the pool's `retries`. `idempotent` is [`idempotent`] of its method;
    /// `body` as it stands after the attempt.
    pub fn may_retry(
        &self,
        idempotent: bool,
        body: &RequestBody,
        retries: &Retries,
        attempt: u32,
    ) -> bool {
        if attempt >= retries.attempts {
            return false;
        }
        match self {
            // Nothing reached the pod: any request can go elsewhere while its body is still ours.
            AttemptError::NeverSent(_) => body.can_resend(),
            // The pod may have acted on it, so only a request that does no harm twice, with its
            // whole body in hand, goes on (as nginx's `proxy_next_upstream`); each attempt gets
            // the full timeout.
            AttemptError::Broken(_) | AttemptError::TimedOut(_) | AttemptError::RetryStatus(_) => {
                idempotent && body.is_held()
            }
            AttemptError::BadTarget => false,
        }
    }

    /// The status the client gets when no retry follows.
    pub fn status(&self) -> StatusCode {
        match self {
            AttemptError::NeverSent(_) | AttemptError::Broken(_) => StatusCode::BAD_GATEWAY,
            AttemptError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            AttemptError::RetryStatus(response) => response.status(),
            AttemptError::BadTarget => StatusCode::BAD_REQUEST,
        }
    }

    /// The client's answer when no retry follows: the pod's own for a retry status, else weir's,
    /// naming the endpoint.
    pub fn into_response(self, endpoint: &Endpoint) -> Response<ProxyBody> {
        let status = self.status();
        match self {
            AttemptError::RetryStatus(response) => response,
            AttemptError::BadTarget => local(status, "bad request target\n"),
            error => local(status, format!("upstream {} {error}\n", endpoint.identity)),
        }
    }
}

/// Whether the pool retries on a pod's answer with this status (an attempt error, then, not
/// yet the client's answer).
pub(super) fn is_retry_status(retries: &Retries, status: StatusCode) -> bool {
    retries.on_status.contains(&status.as_u16())
}

/// Whether sending the request twice does no more than sending it once.
pub(super) fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone, Copy)]
    enum Kind {
        NeverSent,
        Broken,
        TimedOut,
        RetryStatus,
        BadTarget,
    }

    #[derive(Debug, Clone, Copy)]
    enum BodyKind {
        Empty,
        Buffered,
        /// A client's stream no connection has read yet.
        Unread,
        /// A client's stream a connection began reading.
        Taken,
    }

    fn error(kind: Kind) -> AttemptError {
        let refused = || UpstreamError::Connect(std::io::Error::other("refused"));
        match kind {
            Kind::NeverSent => AttemptError::NeverSent(refused()),
            Kind::Broken => AttemptError::Broken(refused()),
            Kind::TimedOut => AttemptError::TimedOut(Duration::from_secs(3)),
            Kind::RetryStatus => {
                AttemptError::RetryStatus(local(StatusCode::SERVICE_UNAVAILABLE, "busy\n"))
            }
            Kind::BadTarget => AttemptError::BadTarget,
        }
    }

    /// A streamed request body as a client's connection delivers it (only hyper makes an
    /// `Incoming`), over an in-memory pipe.
    async fn client_stream() -> Incoming {
        let (client, server) = tokio::io::duplex(4096);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Mutex::new(Some(tx));
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            if let Some(tx) = tx.lock().expect("the sender").take() {
                let _ = tx.send(req.into_body());
            }
            async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service),
        );
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .expect("handshake over the pipe");
        tokio::spawn(connection);
        let req = http::Request::post("/upload")
            .body(Endless)
            .expect("a request");
        tokio::spawn(async move {
            let _ = sender.send_request(req).await;
        });
        rx.await.expect("the server got the request")
    }

    /// A body of no stated length that never ends: sent chunked, so the server streams it.
    struct Endless;

    impl http_body::Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    async fn body(kind: BodyKind) -> RequestBody {
        match kind {
            BodyKind::Empty => RequestBody::Empty,
            BodyKind::Buffered => RequestBody::Buffered(Bytes::from_static(b"{}")),
            BodyKind::Unread => RequestBody::Stream(Arc::new(Mutex::new(Some(
                super::super::request_body::ClientStream::Plain(client_stream().await),
            )))),
            BodyKind::Taken => RequestBody::Stream(Arc::new(Mutex::new(None))),
        }
    }

    fn retries(attempts: u32) -> Retries {
        Retries {
            attempts,
            on_status: vec![503],
        }
    }

    #[tokio::test]
    async fn the_retry_rules() {
        use BodyKind::*;
        use Kind::*;
        // (error, method, body, retry?) with a retry left.
        let table = [
            // Never sent: any method, as long as the body can be sent again.
            (NeverSent, Method::GET, Empty, true),
            (NeverSent, Method::POST, Empty, true),
            (NeverSent, Method::POST, Buffered, true),
            (NeverSent, Method::POST, Unread, true),
            (NeverSent, Method::GET, Unread, true),
            (NeverSent, Method::GET, Taken, false),
            (NeverSent, Method::POST, Taken, false),
            // Under way: an idempotent method with the whole body held.
            (Broken, Method::GET, Empty, true),
            (Broken, Method::PUT, Buffered, true),
            (Broken, Method::DELETE, Empty, true),
            (Broken, Method::POST, Empty, false),
            (Broken, Method::PATCH, Buffered, false),
            (Broken, Method::PUT, Unread, false),
            (Broken, Method::GET, Taken, false),
            (TimedOut, Method::HEAD, Empty, true),
            (TimedOut, Method::OPTIONS, Buffered, true),
            (TimedOut, Method::POST, Buffered, false),
            (TimedOut, Method::PUT, Unread, false),
            (TimedOut, Method::GET, Taken, false),
            (RetryStatus, Method::GET, Empty, true),
            (RetryStatus, Method::PUT, Buffered, true),
            (RetryStatus, Method::POST, Empty, false),
            (RetryStatus, Method::PUT, Unread, false),
            (RetryStatus, Method::GET, Taken, false),
            // Not a failure of the endpoint: another would not do better.
            (BadTarget, Method::GET, Empty, false),
            (BadTarget, Method::POST, Unread, false),
        ];
        for (kind, method, body_kind, expected) in table {
            let body = body(body_kind).await;
            let error = error(kind);
            let idempotent = idempotent(&method);
            assert_eq!(
                error.may_retry(idempotent, &body, &retries(2), 1),
                expected,
                "{kind:?} {method} {body_kind:?} with a retry left"
            );
            // The pool's retries spent, or turned off: nothing is retried.
            for (attempts, attempt) in [(2, 2), (0, 0)] {
                assert!(
                    !error.may_retry(idempotent, &body, &retries(attempts), attempt),
                    "{kind:?} {method} {body_kind:?} on try {attempt} of attempts {attempts}"
                );
            }
        }
    }

    #[test]
    fn only_the_pools_statuses_are_retried() {
        let policy = retries(1);
        assert!(is_retry_status(&policy, StatusCode::SERVICE_UNAVAILABLE));
        assert!(!is_retry_status(&policy, StatusCode::BAD_GATEWAY));
        assert!(!is_retry_status(&policy, StatusCode::OK));
        assert!(!is_retry_status(
            &Retries::default(),
            StatusCode::SERVICE_UNAVAILABLE
        ));
    }

    #[tokio::test]
    async fn each_error_answers_with_its_status() {
        let endpoint = Endpoint::new("127.0.0.1:8080".parse().expect("an address"), "pod-a");
        let table = [
            (Kind::NeverSent, 502, "upstream pod-a cannot connect\n"),
            (Kind::Broken, 502, "upstream pod-a failed\n"),
            (
                Kind::TimedOut,
                504,
                "upstream pod-a did not answer within 3s\n",
            ),
            // The pod's own answer, as it came.
            (Kind::RetryStatus, 503, "busy\n"),
            (Kind::BadTarget, 400, "bad request target\n"),
        ];
        for (kind, status, text) in table {
            let error = error(kind);
            assert_eq!(error.status().as_u16(), status, "{kind:?}");
            let response = error.into_response(&endpoint);
            assert_eq!(response.status().as_u16(), status, "{kind:?}");
            let body = response.into_body().collect().await.expect("a local body");
            assert_eq!(body.to_bytes(), text, "{kind:?}");
        }
    }
}
