//! The HTTP side of the echo: connection serving (plain, TLS, HTTP/1.1 and h2c through
//! hyper-util's auto builder) and echo-basic's routes.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{EchoConfig, PodContext};

pub type Body = BoxBody<Bytes, Infallible>;

/// The one error a handler returns: hyper then drops the connection (see Conn::abort).
#[derive(Debug, thiserror::Error)]
#[error("connection aborted on purpose (retry simulation)")]
pub struct Abort;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// echo-basic's mux: /health, /status/N, /retry/, /ws and the echo.
    Echo,
    /// The H2C_PORT handler: the echo, but only for HTTP/2 or an h2c upgrade request.
    H2cOnly,
    /// The gRPC echo service.
    Grpc,
}

pub struct State {
    pub context: PodContext,
    pub http_port_text: String,
    /// /retry/ attempts per uuid. Held across the failing attempt, as echo-basic holds its
    /// mutex, so concurrent retries of one test are serialised the same way.
    retries: tokio::sync::Mutex<HashMap<String, u32>>,
}

impl State {
    pub fn new(config: &EchoConfig) -> Self {
        State {
            context: config.context.clone(),
            http_port_text: config.http_port_text.clone(),
            retries: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// The `tls` object of the echo JSON (echo-basic's TLSAssertions).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsAssertions {
    pub version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peer_certificates: Vec<String>,
    pub server_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub negotiated_protocol: String,
    pub cipher_suite: String,
}

impl TlsAssertions {
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        TlsAssertions {
            version: conn
                .protocol_version()
                .map(crate::tls::version_v_name)
                .unwrap_or_default(),
            peer_certificates: conn
                .peer_certificates()
                .unwrap_or(&[])
                .iter()
                .map(|c| crate::tls::pem_certificate(c))
                .collect(),
            server_name: conn.server_name().unwrap_or_default().to_string(),
            negotiated_protocol: crate::tls::negotiated_protocol(conn),
            cipher_suite: crate::tls::negotiated_cipher_suite(conn),
        }
    }
}

/// What a request's handler may know about its connection.
pub struct Conn {
    pub tls: Option<TlsAssertions>,
    /// A second descriptor of the TCP socket, so /retry/ can abort the connection with a RST
    /// (SO_LINGER 0, then every descriptor closed) as echo-basic does.
    reset: Mutex<Option<OwnedFd>>,
}

impl Conn {
    /// Arms a RST for when the connection closes. Returns an error for the service to return,
    /// which makes hyper drop the connection.
    fn abort(&self) -> Abort {
        if let Ok(mut fd) = self.reset.lock()
            && let Some(fd) = fd.take()
        {
            let _ = rustix::net::sockopt::set_socket_linger(&fd, Some(Duration::ZERO));
        }
        Abort
    }
}

/// Accepts connections forever and serves each in its own task.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>, app: App) {
    loop {
        let stream = super::accept(&listener).await;
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let reset = stream.as_fd().try_clone_to_owned().ok();
            match tls {
                None => {
                    let conn = Arc::new(Conn {
                        tls: None,
                        reset: Mutex::new(reset),
                    });
                    serve_io(TokioIo::new(stream), conn, state, app).await;
                }
                Some(acceptor) => {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("TLS handshake: {e}");
                            return;
                        }
                    };
                    let conn = Arc::new(Conn {
                        tls: Some(TlsAssertions::of(stream.get_ref().1)),
                        reset: Mutex::new(reset),
                    });
                    serve_io(TokioIo::new(stream), conn, state, app).await;
                }
            }
        });
    }
}

async fn serve_io<I>(io: I, conn: Arc<Conn>, state: Arc<State>, app: App)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        let state = state.clone();
        async move {
            match app {
                App::Grpc => Ok(super::grpc::handle(req, &conn, &state)),
                App::Echo => route(req, &conn, &state).await,
                App::H2cOnly => {
                    if req.version() != Version::HTTP_2
                        && req
                            .headers()
                            .get(http::header::UPGRADE)
                            .map(|v| v.as_bytes())
                            != Some(b"h2c")
                    {
                        return Ok(text(StatusCode::BAD_REQUEST, "Expected h2c request"));
                    }
                    echo(req, &conn, &state).await
                }
            }
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let _ = builder.serve_connection_with_upgrades(io, service).await;
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Go's path.Clean, keeping a trailing slash, as ServeMux does before matching.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut cleaned = format!("/{}", parts.join("/"));
    if path.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

fn redirect(to: String, query: Option<&str>) -> Response<Body> {
    let location = match query {
        Some(q) => format!("{to}?{q}"),
        None => to,
    };
    let mut response = empty(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(http::header::LOCATION, v);
    }
    response
}

/// echo-basic's routes, with Go ServeMux's redirects for unclean paths.
async fn route(
    req: Request<Incoming>,
    conn: &Conn,
    state: &State,
) -> Result<Response<Body>, Abort> {
    // echo-basic's preserveSlashes: "//" becomes "/" before the mux sees the path.
    let path = req.uri().path().replace("//", "/");
    if req.method() != Method::CONNECT {
        let cleaned = clean_path(&path);
        if cleaned != path {
            return Ok(redirect(cleaned, req.uri().query()));
        }
    }
    match path.as_str() {
        "/health" => Ok(text(StatusCode::OK, "OK")),
        "/status" | "/retry" => Ok(redirect(format!("{path}/"), req.uri().query())),
        "/ws" => Ok(super::ws::accept(req)),
        p if p.starts_with("/status/") => Ok(status(&req)),
        p if p.starts_with("/retry/") => retry(req, conn, state).await,
        _ => echo(req, conn, state).await,
    }
}

/// Go's RequestURI: the request target as sent (HTTP/1), or `:path` (HTTP/2).
fn request_uri<B>(req: &Request<B>) -> String {
    if req.version() == Version::HTTP_2 || req.uri().scheme().is_none() {
        req.uri().path_and_query().map_or_else(
            || req.uri().path().to_string(),
            |pq| pq.as_str().to_string(),
        )
    } else {
        req.uri().to_string()
    }
}

/// The host a request is for: the URI's authority (HTTP/2's `:authority`, an absolute
/// HTTP/1 target), else the Host header; "" when neither is there.
pub fn host<B>(req: &Request<B>) -> String {
    req.uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default()
}

/// `/status/NNN` (the whole request URI, query included, as echo-basic's regexp reads it).
fn status<B>(req: &Request<B>) -> Response<Body> {
    let uri = request_uri(req);
    let code = uri
        .strip_prefix("/status/")
        .filter(|d| d.len() == 3 && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| !c.is_informational())
        .unwrap_or(StatusCode::BAD_REQUEST);
    empty(code)
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| (k == name).then(|| v.into_owned()))
}

/// Go's time.ParseDuration for the forms tests use: a sequence of number+unit ("1.5s",
/// "100ms", "1m30s"); "0" alone is zero.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {text:?}");
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {text:?}"))?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("time: unknown unit in duration {text:?}")),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn process_error(message: String, code: StatusCode) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    json_headers(response.headers_mut());
    response
}

/// The headers of a JSON answer (the echo and its error responses, as echo-basic sets them):
/// the content type, and sniffing turned off.
fn json_headers(h: &mut HeaderMap) {
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// Waits for `?key=DURATION` if given; an unparsable duration is an error response.
async fn delay(req: &Request<Incoming>, key: &str) -> Result<(), Response<Body>> {
    let Some(value) = query_param(req, key).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let wait = parse_go_duration(&value)
        .map_err(|e| process_error(e, StatusCode::INTERNAL_SERVER_ERROR))?;
    tokio::time::sleep(wait).await;
    Ok(())
}

/// `/retry/?uuid=U&succeedAfter=N[&responseCode=C][&delayRetry=D]`: the first N attempts
/// for a uuid fail (a connection reset, or status C), later ones echo.
async fn retry(
    req: Request<Incoming>,
    conn: &Conn,
    state: &State,
) -> Result<Response<Body>, Abort> {
    let Some(uuid) = query_param(&req, "uuid").filter(|u| !u.is_empty()) else {
        return Ok(text(StatusCode::BAD_REQUEST, "uuid is required"));
    };
    let Some(succeed_after) = query_param(&req, "succeedAfter").and_then(|v| v.parse::<i64>().ok())
    else {
        return Ok(text(StatusCode::BAD_REQUEST, "succeedAfter is required"));
    };
    let response_code = query_param(&req, "responseCode").and_then(|v| v.parse::<u16>().ok());
    let mut attempts = state.retries.lock().await;
    let seen = attempts.entry(uuid).or_insert(0);
    if i64::from(*seen) < succeed_after {
        *seen += 1;
        if let Err(response) = delay(&req, "delayRetry").await {
            return Ok(response);
        }
        return match response_code.and_then(|c| StatusCode::from_u16(c).ok()) {
            Some(code) => Ok(empty(code)),
            None => Err(conn.abort()),
        };
    }
    drop(attempts);
    echo(req, conn, state).await
}

/// Go's textproto.CanonicalMIMEHeaderKey: `x-forwarded-for` → `X-Forwarded-For`. Names with
/// characters outside a token are left as they are, as Go leaves them.
pub fn canonical_header(name: &str) -> String {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(token) {
        return name.to_string();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// The echo JSON (echo-basic's RequestAssertions; field order as Go writes the struct).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAssertions<'a> {
    pub path: String,
    pub host: String,
    pub method: String,
    pub proto: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub http_port: &'a str,
    #[serde(flatten)]
    pub context: &'a PodContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<&'a TlsAssertions>,
}

fn proto(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The headers as Go's Request.Header has them: canonical names, Host taken out.
pub fn go_headers(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if name == http::header::HOST {
            continue;
        }
        out.entry(canonical_header(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

/// Go's json.MarshalIndent with one space, HTML characters escaped as Go does.
pub fn go_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser)?;
    let text = String::from_utf8_lossy(&out)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    Ok(text.into_bytes())
}

/// `X-Echo-Set-Header: Name: value, Other: value`: each named header is set on the response;
/// a name given again gets `,value` appended.
pub fn echo_set_headers(request: &HeaderMap, response: &mut HeaderMap) {
    for list in request.get_all("x-echo-set-header") {
        let list = String::from_utf8_lossy(list.as_bytes());
        for item in list.split(',') {
            let (name, value) = item.trim().split_once(':').unwrap_or((item.trim(), ""));
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            let value = value.trim();
            let joined = match response.get(&name) {
                Some(old) => format!("{},{value}", String::from_utf8_lossy(old.as_bytes())),
                None => value.to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&joined) {
                response.insert(name, v);
            }
        }
    }
}

pub async fn echo(
    req: Request<Incoming>,
    conn: &Conn,
    state: &State,
) -> Result<Response<Body>, Abort> {
    println!(
        "Echoing back request made to {} to client",
        request_uri(&req)
    );
    if let Err(response) = delay(&req, "delay").await {
        return Ok(response);
    }
    let assertions = RequestAssertions {
        path: request_uri(&req),
        host: host(&req),
        method: req.method().to_string(),
        proto: proto(req.version()).into(),
        headers: go_headers(req.headers()),
        http_port: &state.http_port_text,
        context: &state.context,
        tls: conn.tls.as_ref(),
    };
    let body = match go_json(&assertions) {
        Ok(body) => body,
        Err(e) => {
            return Ok(process_error(
                e.to_string(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ));
        }
    };
    let mut response = Response::new(full(body));
    echo_set_headers(req.headers(), response.headers_mut());
    json_headers(response.headers_mut());
    // Read the request body so a keep-alive connection stays usable after a POST.
    let _ = req.into_body().collect().await;
    Ok(response)
}
