//! Just enough gRPC for echo-basic's gRPC mode and for gRPC readiness probes: protobuf
//! encoding of a few messages by hand, length-prefixed framing, and a body with trailers.
//!
//! The messages are those of echo-basic's `grpcecho.proto` (package
//! `gateway_api_conformance.echo_basic.grpcecho`); field numbers are noted where they are used.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;

pub const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field (wire type 2): strings, bytes and sub-messages.
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A proto3 string field: empty strings are not written.
fn put_string(out: &mut Vec<u8>, field: u32, value: &str) {
    if !value.is_empty() {
        put_bytes(out, field, value.as_bytes());
    }
}

/// A gRPC message frame: not compressed, 4-byte big-endian length, the message.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodContext {
    pub namespace: String,
    pub ingress: String,
    pub service_name: String,
    pub pod: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsAssertions {
    pub version: String,
    pub negotiated_protocol: String,
    pub server_name: String,
    pub cipher_suite: String,
    pub peer_certificates: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assertions {
    pub fully_qualified_method: String,
    pub headers: Vec<(String, String)>,
    pub authority: String,
    pub context: PodContext,
    pub tls: Option<TlsAssertions>,
}

/// EchoResponse { Assertions assertions = 1; EchoRequest request = 2; } (request left unset,
/// as echo-basic does).
pub fn encode_echo_response(a: &Assertions) -> Vec<u8> {
    let mut assertions = Vec::new();
    put_string(&mut assertions, 1, &a.fully_qualified_method);
    for (key, value) in &a.headers {
        let mut header = Vec::new();
        put_string(&mut header, 1, key);
        put_string(&mut header, 2, value);
        put_bytes(&mut assertions, 2, &header);
    }
    put_string(&mut assertions, 3, &a.authority);
    let mut context = Vec::new();
    put_string(&mut context, 1, &a.context.namespace);
    put_string(&mut context, 2, &a.context.ingress);
    put_string(&mut context, 3, &a.context.service_name);
    put_string(&mut context, 4, &a.context.pod);
    put_bytes(&mut assertions, 4, &context);
    if let Some(tls) = &a.tls {
        let mut t = Vec::new();
        put_string(&mut t, 1, &tls.version);
        put_string(&mut t, 2, &tls.negotiated_protocol);
        put_string(&mut t, 3, &tls.server_name);
        put_string(&mut t, 4, &tls.cipher_suite);
        for cert in &tls.peer_certificates {
            put_bytes(&mut t, 5, cert.as_bytes());
        }
        put_bytes(&mut assertions, 5, &t);
    }
    let mut response = Vec::new();
    put_bytes(&mut response, 1, &assertions);
    response
}

/// HealthCheckResponse { ServingStatus status = 1; } with SERVING (1).
pub fn encode_health_serving() -> Vec<u8> {
    vec![0x08, 0x01]
}

/// A response body: at most one data frame, then trailers.
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl GrpcBody {
    pub fn new(data: Option<Bytes>, trailers: HeaderMap) -> Self {
        GrpcBody {
            data,
            trailers: Some(trailers),
        }
    }
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
/// Reads a protobuf message back into (field, wire type, bytes-or-varint) triples; used by
/// tests to check what we encode.
pub fn decode_fields(mut input: &[u8]) -> Option<Vec<(u32, Vec<u8>)>> {
    fn varint(input: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    while !input.is_empty() {
        let key = varint(&mut input)?;
        let field = u32::try_from(key >> 3).ok()?;
        match key & 7 {
            0 => {
                let v = varint(&mut input)?;
                fields.push((field, v.to_le_bytes().to_vec()));
            }
            2 => {
                let len = usize::try_from(varint(&mut input)?).ok()?;
                if input.len() < len {
                    return None;
                }
                fields.push((field, input[..len].to_vec()));
                input = &input[len..];
            }
            _ => return None,
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }

    #[test]
    fn echo_response_round_trip() {
        let a = Assertions {
            fully_qualified_method: format!("/{SERVICE}/Echo"),
            headers: vec![(":authority".into(), "example.com".into())],
            authority: "example.com".into(),
            context: PodContext {
                namespace: "ns".into(),
                pod: "p".into(),
                ..Default::default()
            },
            tls: None,
        };
        let bytes = encode_echo_response(&a);
        let top = decode_fields(&bytes).unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].0, 1);
        let inner = decode_fields(&top[0].1).unwrap();
        assert_eq!(inner[0], (1, format!("/{SERVICE}/Echo").into_bytes()));
        assert_eq!(inner[1].0, 2);
        assert_eq!(inner[2], (3, b"example.com".to_vec()));
        let context = decode_fields(&inner[3].1).unwrap();
        assert_eq!(context, [(1, b"ns".to_vec()), (4, b"p".to_vec())]);
        assert_eq!(frame(b"ab"), [0, 0, 0, 0, 2, b'a', b'b']);
    }
}
