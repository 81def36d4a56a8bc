//! `/ws`: a WebSocket echo (echo-basic echoes every frame back). Only what an echo needs of
//! RFC 6455: the handshake, unmasking, ping/pong and close.

use base64::Engine;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::http::{Body, full};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_PAYLOAD: u64 = 16 << 20;

pub fn accept_key(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

pub fn accept(mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = Response::new(full("Bad Request: not a WebSocket handshake"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    if !upgrade {
        let mut r = Response::new(full("Bad Request: not a WebSocket handshake"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                println!("established websocket connection");
                if let Err(e) = echo_frames(TokioIo::new(upgraded)).await {
                    println!("websocket: {e}");
                }
            }
            Err(e) => println!("websocket upgrade: {e}"),
        }
    });
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    response
}

async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    first_byte: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut header = vec![first_byte];
    match payload.len() {
        n if n < 126 => header.push(n as u8),
        n if n <= 0xffff => {
            header.push(126);
            header.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            header.push(127);
            header.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    io.write_all(&header).await?;
    io.write_all(payload).await?;
    io.flush().await
}

/// Reads frames and writes each data frame back as it came (same opcode and FIN bit).
pub async fn echo_frames<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let fin_opcode = head[0];
        let opcode = fin_opcode & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            len = u64::from(io.read_u16().await?);
        } else if len == 127 {
            len = io.read_u64().await?;
        }
        if len > MAX_PAYLOAD {
            return Err(std::io::Error::other("frame too large"));
        }
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            0x8 => {
                write_frame(&mut io, 0x88, &payload[..payload.len().min(125)]).await?;
                return Ok(());
            }
            0x9 => write_frame(&mut io, 0x8a, &payload).await?,
            0xa => {}
            _ => write_frame(&mut io, fin_opcode, &payload).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc_6455_example_key() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
