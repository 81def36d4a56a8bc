//! echo-basic's gRPC mode: `GrpcEcho/Echo` and `EchoTwo` answer with the request's metadata,
//! authority, pod context and TLS details; every other method is Unimplemented.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::http::{Body, Conn, State};
use crate::grpc::{self as wire, Assertions, GrpcBody, PodContext, SERVICE, TlsAssertions};

/// Headers grpc-go keeps out of the metadata a handler sees.
fn reserved(name: &str) -> bool {
    matches!(
        name,
        "te" | "grpc-encoding"
            | "grpc-accept-encoding"
            | "grpc-timeout"
            | "grpc-message"
            | "grpc-status"
            | "grpc-status-details-bin"
            | "grpc-message-type"
            | "grpc-tags-bin"
            | "grpc-trace-bin"
    )
}

fn response(status: u32, message: &str, data: Option<Vec<u8>>) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
    if !message.is_empty()
        && let Ok(v) = HeaderValue::from_str(message)
    {
        trailers.insert("grpc-message", v);
    }
    let body = GrpcBody::new(data.map(|d| Bytes::from(wire::frame(&d))), trailers);
    let mut response = Response::new(body.boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

pub fn handle(req: Request<Incoming>, conn: &Conn, state: &State) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(method) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(SERVICE))
        .and_then(|p| p.strip_prefix('/'))
    else {
        if path == "/grpc.health.v1.Health/Check" {
            return response(0, "", Some(wire::encode_health_serving()));
        }
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        return response(12, &format!("unknown service {service}"), None);
    };
    if method != "Echo" && method != "EchoTwo" {
        return response(12, &format!("method {method} not implemented"), None);
    }
    let authority = super::http::host(&req);
    let mut headers = vec![(":authority".to_string(), authority.clone())];
    for (name, value) in req.headers() {
        if !reserved(name.as_str()) && name != http::header::HOST {
            headers.push((
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
        }
    }
    headers.sort();
    let tls = conn.tls.as_ref().map(|t| TlsAssertions {
        version: t.version.clone(),
        negotiated_protocol: t.negotiated_protocol.clone(),
        server_name: t.server_name.clone(),
        cipher_suite: t.cipher_suite.clone(),
        peer_certificates: t.peer_certificates.clone(),
    });
    println!(
        "Received over {}: {method}",
        if tls.is_some() { "TLS" } else { "plaintext" }
    );
    let assertions = Assertions {
        fully_qualified_method: format!("/{SERVICE}/{method}"),
        headers,
        authority,
        context: PodContext {
            namespace: state.context.namespace.clone(),
            ingress: state.context.ingress.clone(),
            service_name: state.context.service.clone(),
            pod: state.context.pod.clone(),
        },
        tls,
    };
    response(0, "", Some(wire::encode_echo_response(&assertions)))
}
