//! The HTTPRoute filters weir applies itself, compiled once when the table is built and then
//! applied as pure functions: header edits (`RequestHeaderModifier`,
//! `ResponseHeaderModifier`), `RequestRedirect` and `URLRewrite`. Everything a route could get
//! wrong is found by `compile`, so applying a filter to a request cannot fail.
//!
//! The choices the spec leaves open, and what weir does:
//! - A header edit removes first, then sets, then adds, so each instruction shows: a name
//!   both removed and added ends with the route's value only (removing last would undo the
//!   add), and a name both set and added ends with both values.
//! - A redirect keeps the request's query string, and a rewrite passes it on unchanged.
//! - ReplacePrefixMatch keeps whatever followed the matched prefix, trailing `/` included
//!   (the spec's table: `/foo/` with prefix `/foo` and replacement `/xyz` gives `/xyz/`).

use super::matching::uri_path_chars;
use super::{HostnameError, validate_hostname};
use crate::api::gateway::{
    HTTPHeaderFilter, HTTPPathModifier, HTTPRequestRedirectFilter, HTTPURLRewriteFilter,
    PathModifierType,
};
use crate::routing::{normalize_prefix, prefix_matches};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::borrow::Cow;
use std::fmt::Write as _;

/// A compiled `HTTPHeaderFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderEdit {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// A compiled `HTTPRequestRedirectFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    scheme: Option<Scheme>,
    hostname: Option<Box<str>>,
    path: Option<PathEdit>,
    port: Option<u16>,
    status: StatusCode,
}

/// A compiled `HTTPURLRewriteFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    hostname: Option<HeaderValue>,
    path: Option<PathEdit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A compiled `HTTPPathModifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathEdit {
    /// The whole path becomes this (never empty).
    Full(Box<str>),
    /// The matched prefix becomes this, kept without a trailing `/` (so `/` is empty):
    /// what follows the prefix starts with `/` or is nothing.
    Prefix(Box<str>),
}

/// A filter weir cannot apply as written (the route's rule is then refused, not
/// half-applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{0:?} is not an HTTP header name")]
    HeaderName(String),
    #[error("the value of header {name:?} is not a valid header value (control characters?)")]
    HeaderValue { name: String },
    #[error("scheme {0:?} is not one weir supports (http, https)")]
    Scheme(String),
    #[error("hostname {0:?} is a wildcard; a filter names one host")]
    WildcardHostname(String),
    #[error(transparent)]
    Hostname(#[from] HostnameError),
    #[error("port {0} is not between 1 and 65535")]
    Port(i32),
    #[error("redirect status {0} is not one of 301, 302, 303, 307, 308")]
    Status(u16),
    #[error("a {kind:?} path modifier needs {field}")]
    PathValueMissing {
        kind: PathModifierType,
        field: &'static str,
    },
    #[error("a {kind:?} path modifier must not set {field}")]
    PathValueOfOtherType {
        kind: PathModifierType,
        field: &'static str,
    },
    #[error("replacement path {value:?}: {reason}")]
    Path { value: String, reason: &'static str },
}

/// The redirect statuses `HTTPRequestRedirectFilter.statusCode` may name (Gateway API v1.6:
/// 301 and 302 Core, the others Extended).
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

impl HeaderEdit {
    /// Compiles `f`; a name given twice in `set` keeps the last value.
    pub fn compile(f: &HTTPHeaderFilter) -> Result<HeaderEdit, FilterError> {
        let pairs = |list: &[crate::api::gateway::HTTPHeader]| {
            list.iter()
                .map(|h| Ok((header_name(&h.name)?, header_value(&h.name, &h.value)?)))
                .collect::<Result<Vec<_>, FilterError>>()
        };
        Ok(HeaderEdit {
            set: pairs(&f.set)?,
            add: pairs(&f.add)?,
            remove: f
                .remove
                .iter()
                .map(|n| header_name(n))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies the edit: `remove` takes every value of a name, then `set` replaces every value
    /// of its names with one, then `add` appends.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }

    /// Whether the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

impl Redirect {
    /// Compiles `f`, with the CRD's default status (302).
    pub fn compile(f: &HTTPRequestRedirectFilter) -> Result<Redirect, FilterError> {
        let scheme = match f.scheme.as_deref() {
            None => None,
            Some("http") => Some(Scheme::Http),
            Some("https") => Some(Scheme::Https),
            Some(other) => return Err(FilterError::Scheme(other.to_string())),
        };
        let port = f
            .port
            .map(|p| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or(FilterError::Port(p))
            })
            .transpose()?;
        let status = f.status_code.unwrap_or(302);
        let status = REDIRECT_STATUSES
            .contains(&status)
            .then(|| StatusCode::from_u16(status).ok())
            .flatten()
            .ok_or(FilterError::Status(status))?;
        Ok(Redirect {
            scheme,
            hostname: f.hostname.as_deref().map(precise_hostname).transpose()?,
            path: f.path.as_ref().map(compile_path).transpose()?,
            port,
            status,
        })
    }

    /// The redirect's status and Location for a request that reached the listener of
    /// `listener_port` over `scheme` ("http"/"https"), for `host` (the Host header with any
    /// port stripped), `path`, `query`; `matched_prefix` is `RequestMatch::prefix()` of the
    /// match that took it.
    ///
    /// The port: the filter's; else, when the filter names a scheme, that scheme's
    /// well-known one; else the listener's. It is left out of the Location when it is the
    /// well-known port of the Location's scheme (80 for http, 443 for https). A request
    /// without a host (only HTTP/1.0 may omit it), redirected to no hostname of the
    /// filter's, gets a Location of the path alone: a relative reference, which the client
    /// resolves against its own URL, so a scheme or port change is lost.
    pub fn answer(
        &self,
        scheme: &str,
        host: &str,
        listener_port: u16,
        path: &str,
        query: Option<&str>,
        matched_prefix: Option<&str>,
    ) -> (StatusCode, HeaderValue) {
        let scheme: &str = match self.scheme {
            Some(s) => s.as_str(),
            None => scheme,
        };
        let port = match (self.port, self.scheme) {
            (Some(port), _) => Some(port),
            (None, Some(_)) => None,
            (None, None) => Some(listener_port),
        };
        let port = port.filter(|&p| {
            !((p == 80 && scheme.eq_ignore_ascii_case("http"))
                || (p == 443 && scheme.eq_ignore_ascii_case("https")))
        });
        let host = self.hostname.as_deref().unwrap_or(host);
        let path = edit_path(self.path.as_ref(), path, matched_prefix);

        let mut location = String::with_capacity(
            scheme.len() + host.len() + path.len() + query.map_or(0, str::len) + 16,
        );
        if !host.is_empty() {
            location.push_str(scheme);
            location.push_str("://");
            // An IPv6 address, bare as `normalize_host` leaves it, needs its brackets back.
            if host.contains(':') && !host.starts_with('[') {
                let _ = write!(location, "[{host}]");
            } else {
                location.push_str(host);
            }
            if let Some(port) = port {
                let _ = write!(location, ":{port}");
            }
        }
        location.push_str(&path);
        if let Some(query) = query {
            location.push('?');
            location.push_str(query);
        }
        let location = HeaderValue::from_str(&escape_unsafe(&location))
            .unwrap_or_else(|_| HeaderValue::from_static("/"));
        (self.status, location)
    }
}

impl Rewrite {
    /// Compiles `f`.
    pub fn compile(f: &HTTPURLRewriteFilter) -> Result<Rewrite, FilterError> {
        let hostname = f
            .hostname
            .as_deref()
            .map(|h| {
                let h = precise_hostname(h)?;
                HeaderValue::from_str(&h).map_err(|_| FilterError::HeaderValue {
                    name: http::header::HOST.to_string(),
                })
            })
            .transpose()?;
        Ok(Rewrite {
            hostname,
            path: f.path.as_ref().map(compile_path).transpose()?,
        })
    }

    /// The new Host (if any) and the new path-and-query for the upstream request.
    pub fn apply(
        &self,
        path: &str,
        query: Option<&str>,
        matched_prefix: Option<&str>,
    ) -> (Option<HeaderValue>, PathAndQuery) {
        let path = edit_path(self.path.as_ref(), path, matched_prefix);
        let mut target = path.into_owned();
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        let target = PathAndQuery::try_from(escape_unsafe(&target).as_ref())
            .unwrap_or_else(|_| PathAndQuery::from_static("/"));
        (self.hostname.clone(), target)
    }
}

fn header_name(name: &str) -> Result<HeaderName, FilterError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| FilterError::HeaderName(name.to_string()))
}

/// Any bytes but control characters (a CR or LF would split the header).
fn header_value(name: &str, value: &str) -> Result<HeaderValue, FilterError> {
    HeaderValue::from_bytes(value.as_bytes()).map_err(|_| FilterError::HeaderValue {
        name: name.to_string(),
    })
}

/// A `PreciseHostname`: a DNS name, no wildcard, no IP address.
fn precise_hostname(host: &str) -> Result<Box<str>, FilterError> {
    if host.starts_with('*') {
        return Err(FilterError::WildcardHostname(host.to_string()));
    }
    validate_hostname(host)?;
    Ok(host.into())
}

fn compile_path(m: &HTTPPathModifier) -> Result<PathEdit, FilterError> {
    let (wanted, wanted_field, other, other_field) = match m.r#type {
        PathModifierType::ReplaceFullPath => (
            &m.replace_full_path,
            "replaceFullPath",
            &m.replace_prefix_match,
            "replacePrefixMatch",
        ),
        PathModifierType::ReplacePrefixMatch => (
            &m.replace_prefix_match,
            "replacePrefixMatch",
            &m.replace_full_path,
            "replaceFullPath",
        ),
    };
    if other.is_some() {
        return Err(FilterError::PathValueOfOtherType {
            kind: m.r#type,
            field: other_field,
        });
    }
    let Some(value) = wanted.as_deref() else {
        return Err(FilterError::PathValueMissing {
            kind: m.r#type,
            field: wanted_field,
        });
    };
    let bad = |reason| {
        Err(FilterError::Path {
            value: value.to_string(),
            reason,
        })
    };
    // The CRD allows an empty value: for a full path, `/`; for a prefix, removing it.
    if !value.is_empty() && !value.starts_with('/') {
        return bad("must start with '/'");
    }
    if !uri_path_chars(value) {
        return bad("may hold only URI path characters and %xx escapes (no '?' or '#')");
    }
    Ok(match m.r#type {
        PathModifierType::ReplaceFullPath if value.is_empty() => PathEdit::Full("/".into()),
        PathModifierType::ReplaceFullPath => PathEdit::Full(value.into()),
        PathModifierType::ReplacePrefixMatch => {
            PathEdit::Prefix(value.trim_end_matches('/').into())
        }
    })
}

/// The request path after `edit`. A prefix edit without a prefix the path takes (a rule whose
/// match is not a PathPrefix one, which compile refuses, or a path that does not start with
/// `/`) leaves the path as it is.
fn edit_path<'a>(
    edit: Option<&PathEdit>,
    path: &'a str,
    matched_prefix: Option<&str>,
) -> Cow<'a, str> {
    match edit {
        None => Cow::Borrowed(path),
        Some(PathEdit::Full(full)) => Cow::Owned(full.to_string()),
        Some(PathEdit::Prefix(replacement)) => {
            let Some(prefix) = matched_prefix.map(normalize_prefix) else {
                return Cow::Borrowed(path);
            };
            if !path.starts_with('/') || !prefix_matches(prefix, path) {
                return Cow::Borrowed(path);
            }
            // What follows the prefix: empty, or from a `/` on (the prefix `/` takes nothing).
            let rest = if prefix == "/" {
                path
            } else {
                &path[prefix.len()..]
            };
            let edited = format!("{replacement}{rest}");
            if edited.is_empty() {
                Cow::Borrowed("/")
            } else {
                Cow::Owned(edited)
            }
        }
    }
}

/// `s` with every byte a header value or URI must not hold as it is (space, controls,
/// non-ASCII) percent-encoded. What the filters build comes from a parsed request and
/// compiled values, so this changes nothing in practice; it makes building the answer
/// infallible without trusting that.
fn escape_unsafe(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gateway::HTTPHeader;

    fn prefix_to(value: &str) -> HTTPPathModifier {
        HTTPPathModifier {
            r#type: PathModifierType::ReplacePrefixMatch,
            replace_full_path: None,
            replace_prefix_match: Some(value.into()),
        }
    }

    fn full_to(value: &str) -> HTTPPathModifier {
        HTTPPathModifier {
            r#type: PathModifierType::ReplaceFullPath,
            replace_full_path: Some(value.into()),
            replace_prefix_match: None,
        }
    }

    fn redirect(f: HTTPRequestRedirectFilter) -> Redirect {
        match Redirect::compile(&f) {
            Ok(r) => r,
            Err(e) => panic!("{f:?} does not compile: {e}"),
        }
    }

    fn rewrite(f: HTTPURLRewriteFilter) -> Rewrite {
        match Rewrite::compile(&f) {
            Ok(r) => r,
            Err(e) => panic!("{f:?} does not compile: {e}"),
        }
    }

    fn location(answer: &(StatusCode, HeaderValue)) -> &str {
        answer.1.to_str().unwrap_or("<not text>")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).expect("test header name"),
                HeaderValue::from_str(v).expect("test header value"),
            );
        }
        map
    }

    /// Every value of `name`, joined as the conformance suite's echo backend shows them.
    fn joined(map: &HeaderMap, name: &str) -> Option<String> {
        let values: Vec<&str> = map
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<not text>"))
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    fn edit(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderEdit {
        let list = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(n, v)| HTTPHeader {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect()
        };
        let f = HTTPHeaderFilter {
            set: list(set),
            add: list(add),
            remove: remove.iter().map(|r| (*r).to_string()).collect(),
        };
        match HeaderEdit::compile(&f) {
            Ok(e) => e,
            Err(e) => panic!("{f:?} does not compile: {e}"),
        }
    }

    #[test]
    fn header_edits_as_the_conformance_suite_has_them() {
        // (filter, request headers, expected (name, joined values), absent names)
        let set = edit(&[("X-Header-Set", "set-overwrites-values")], &[], &[]);
        let add = edit(&[], &[("X-Header-Add", "add-appends-values")], &[]);
        let remove = edit(&[], &[], &["X-Header-Remove"]);
        let multiple = edit(
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
            ],
            &[
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "header-add-2"),
                ("X-Header-Add-3", "header-add-3"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        );
        let case = edit(
            &[("X-Header-Set", "header-set")],
            &[("X-Header-Add", "header-add")],
            &["X-Header-Remove"],
        );
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: [(&HeaderEdit, Headers<'_>, Headers<'_>, &[&str]); 7] = [
            (
                &set,
                &[("Some-Other-Header", "val")],
                &[
                    ("Some-Other-Header", "val"),
                    ("X-Header-Set", "set-overwrites-values"),
                ],
                &[],
            ),
            (
                &set,
                &[
                    ("Some-Other-Header", "val"),
                    ("X-Header-Set", "some-other-value"),
                ],
                &[
                    ("Some-Other-Header", "val"),
                    ("X-Header-Set", "set-overwrites-values"),
                ],
                &[],
            ),
            (
                &add,
                &[("Some-Other-Header", "val")],
                &[("X-Header-Add", "add-appends-values")],
                &[],
            ),
            (
                &add,
                &[("X-Header-Add", "some-other-value")],
                &[("X-Header-Add", "some-other-value,add-appends-values")],
                &[],
            ),
            (
                &remove,
                &[("X-Header-Remove", "val")],
                &[],
                &["X-Header-Remove"],
            ),
            (
                &multiple,
                &[
                    ("X-Header-Set-2", "set-val-2"),
                    ("X-Header-Add-2", "add-val-2"),
                    ("X-Header-Remove-2", "remove-val-2"),
                    ("Another-Header", "another-header-val"),
                ],
                &[
                    ("X-Header-Set-1", "header-set-1"),
                    ("X-Header-Set-2", "header-set-2"),
                    ("X-Header-Add-1", "header-add-1"),
                    ("X-Header-Add-2", "add-val-2,header-add-2"),
                    ("X-Header-Add-3", "header-add-3"),
                    ("Another-Header", "another-header-val"),
                ],
                &["X-Header-Remove-1", "X-Header-Remove-2"],
            ),
            (
                &case,
                &[
                    ("x-header-set", "original-val-set"),
                    ("x-header-add", "original-val-add"),
                    ("x-header-remove", "original-val-remove"),
                ],
                &[
                    ("X-Header-Set", "header-set"),
                    ("X-Header-Add", "original-val-add,header-add"),
                ],
                &["x-header-remove"],
            ),
        ];
        for (i, (edit, request, want, absent)) in cases.into_iter().enumerate() {
            let mut map = headers(request);
            edit.apply(&mut map);
            for (name, value) in want {
                assert_eq!(
                    joined(&map, name).as_deref(),
                    Some(*value),
                    "case {i}: {name}"
                );
            }
            for name in absent {
                assert_eq!(joined(&map, name), None, "case {i}: {name}");
            }
        }
    }

    #[test]
    fn set_replaces_every_value_and_the_order_is_remove_set_add() {
        let mut map = headers(&[("x-a", "1"), ("x-a", "2"), ("x-b", "old"), ("x-c", "c")]);
        edit(
            &[("x-a", "set"), ("x-b", "set")],
            &[("x-b", "added"), ("x-c", "added")],
            &["x-c", "x-missing"],
        )
        .apply(&mut map);
        assert_eq!(joined(&map, "x-a").as_deref(), Some("set"));
        // Set, then add: both instructions show.
        assert_eq!(joined(&map, "x-b").as_deref(), Some("set,added"));
        // Removed, then added: the route's value only.
        assert_eq!(joined(&map, "x-c").as_deref(), Some("added"));
        assert!(edit(&[], &[], &[]).is_empty());
        assert!(!edit(&[], &[], &["x"]).is_empty());
    }

    #[test]
    fn bad_header_edits_are_refused() {
        let f = |name: &str, value: &str| HTTPHeaderFilter {
            add: vec![HTTPHeader {
                name: name.into(),
                value: value.into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            HeaderEdit::compile(&f("bad name", "v")),
            Err(FilterError::HeaderName("bad name".into()))
        );
        assert_eq!(
            HeaderEdit::compile(&f("x", "a\r\nInjected: yes")),
            Err(FilterError::HeaderValue { name: "x".into() })
        );
        let remove = HTTPHeaderFilter {
            remove: vec!["x:".into()],
            ..Default::default()
        };
        assert!(matches!(
            HeaderEdit::compile(&remove),
            Err(FilterError::HeaderName(_))
        ));
        // Non-ASCII text is not a control character: it goes out as its UTF-8 bytes.
        assert!(HeaderEdit::compile(&f("x", "caf\u{e9}")).is_ok());
    }

    #[test]
    fn redirects_as_the_conformance_suite_has_them() {
        let none = HTTPRequestRedirectFilter::default;
        let prefix = || Some(prefix_to("/replacement-prefix"));
        let org = || Some("example.org".to_string());
        // (filter, request path, matched prefix, status, Location) on an http listener on 80,
        // for a request to example.com.
        let cases = [
            // httproute-redirect-path
            (
                HTTPRequestRedirectFilter {
                    path: prefix(),
                    ..none()
                },
                "/original-prefix/lemon",
                "/original-prefix",
                302,
                "http://example.com/replacement-prefix/lemon",
            ),
            (
                HTTPRequestRedirectFilter {
                    path: Some(full_to("/full-path-replacement")),
                    ..none()
                },
                "/full/path/original",
                "/full",
                302,
                "http://example.com/full-path-replacement",
            ),
            (
                HTTPRequestRedirectFilter {
                    hostname: org(),
                    path: prefix(),
                    ..none()
                },
                "/path-and-host",
                "/path-and-host",
                302,
                "http://example.org/replacement-prefix",
            ),
            (
                HTTPRequestRedirectFilter {
                    path: prefix(),
                    status_code: Some(301),
                    ..none()
                },
                "/path-and-status",
                "/path-and-status",
                301,
                "http://example.com/replacement-prefix",
            ),
            (
                HTTPRequestRedirectFilter {
                    hostname: org(),
                    path: Some(full_to("/replacement-full")),
                    ..none()
                },
                "/full-path-and-host",
                "/full-path-and-host",
                302,
                "http://example.org/replacement-full",
            ),
            // httproute-redirect-port
            (
                HTTPRequestRedirectFilter {
                    port: Some(8083),
                    ..none()
                },
                "/port",
                "/port",
                302,
                "http://example.com:8083/port",
            ),
            (
                HTTPRequestRedirectFilter {
                    hostname: org(),
                    port: Some(8083),
                    ..none()
                },
                "/port-and-host",
                "/port-and-host",
                302,
                "http://example.org:8083/port-and-host",
            ),
            (
                HTTPRequestRedirectFilter {
                    port: Some(8083),
                    status_code: Some(301),
                    ..none()
                },
                "/port-and-status",
                "/port-and-status",
                301,
                "http://example.com:8083/port-and-status",
            ),
            // httproute-redirect-scheme
            (
                HTTPRequestRedirectFilter {
                    scheme: Some("https".into()),
                    ..none()
                },
                "/scheme",
                "/scheme",
                302,
                "https://example.com/scheme",
            ),
            (
                HTTPRequestRedirectFilter {
                    scheme: Some("https".into()),
                    hostname: org(),
                    status_code: Some(301),
                    ..none()
                },
                "/scheme-and-host-and-status",
                "/scheme-and-host-and-status",
                301,
                "https://example.org/scheme-and-host-and-status",
            ),
            // httproute-redirect-host-and-status
            (
                HTTPRequestRedirectFilter {
                    hostname: org(),
                    ..none()
                },
                "/hostname-redirect",
                "/hostname-redirect",
                302,
                "http://example.org/hostname-redirect",
            ),
        ];
        for (f, path, prefix, status, want) in cases {
            let answer = redirect(f).answer("http", "example.com", 80, path, None, Some(prefix));
            assert_eq!(answer.0.as_u16(), status, "{path}");
            assert_eq!(location(&answer), want, "{path}");
        }
    }

    #[test]
    fn redirect_ports_by_listener_and_scheme() {
        // httproute-redirect-port-and-scheme: (listener scheme, listener port, filter scheme,
        // filter port, Location), all for hostname example.org.
        let cases = [
            ("http", 80, None, None, "http://example.org/p"),
            ("http", 80, None, Some(80), "http://example.org/p"),
            ("http", 80, None, Some(8080), "http://example.org:8080/p"),
            ("http", 80, Some("https"), None, "https://example.org/p"),
            (
                "http",
                80,
                Some("https"),
                Some(443),
                "https://example.org/p",
            ),
            (
                "http",
                80,
                Some("https"),
                Some(8443),
                "https://example.org:8443/p",
            ),
            ("http", 8080, None, None, "http://example.org:8080/p"),
            ("http", 8080, None, Some(80), "http://example.org/p"),
            ("http", 8080, Some("https"), None, "https://example.org/p"),
            ("https", 443, None, None, "https://example.org/p"),
            ("https", 443, None, Some(443), "https://example.org/p"),
            ("https", 443, None, Some(8443), "https://example.org:8443/p"),
            ("https", 443, Some("http"), None, "http://example.org/p"),
            ("https", 443, Some("http"), Some(80), "http://example.org/p"),
            (
                "https",
                443,
                Some("http"),
                Some(8080),
                "http://example.org:8080/p",
            ),
            // Beyond the suite: a non-default listener port stays unless the scheme changes,
            // and a port is left out only where it is the scheme's own.
            ("https", 8443, None, None, "https://example.org:8443/p"),
            ("https", 8443, Some("https"), None, "https://example.org/p"),
            (
                "http",
                80,
                Some("http"),
                Some(443),
                "http://example.org:443/p",
            ),
            ("https", 443, None, Some(80), "https://example.org:80/p"),
        ];
        for (listener_scheme, listener_port, scheme, port, want) in cases {
            let r = redirect(HTTPRequestRedirectFilter {
                scheme: scheme.map(str::to_string),
                hostname: Some("example.org".into()),
                port,
                ..Default::default()
            });
            let answer = r.answer(
                listener_scheme,
                "example.com",
                listener_port,
                "/p",
                None,
                None,
            );
            assert_eq!(
                location(&answer),
                want,
                "{listener_scheme}:{listener_port} scheme {scheme:?} port {port:?}"
            );
        }
    }

    #[test]
    fn redirects_keep_the_query_and_the_request_host() {
        let r = redirect(HTTPRequestRedirectFilter {
            scheme: Some("https".into()),
            ..Default::default()
        });
        let answer = r.answer(
            "http",
            "shop.test",
            80,
            "/a/b",
            Some("x=1&y=%20"),
            Some("/"),
        );
        assert_eq!(answer.0, StatusCode::FOUND);
        assert_eq!(location(&answer), "https://shop.test/a/b?x=1&y=%20");
        let answer = r.answer("http", "shop.test", 80, "/", Some(""), None);
        assert_eq!(location(&answer), "https://shop.test/?");
        // An IPv6 host, bare as normalize_host gives it, gets its brackets back.
        let answer = r.answer("http", "::1", 80, "/", None, None);
        assert_eq!(location(&answer), "https://[::1]/");
        let answer = r.answer("http", "[::1]", 80, "/", None, None);
        assert_eq!(location(&answer), "https://[::1]/");
        // No host to name: the path alone, resolved by the client against its own URL.
        let answer = r.answer("http", "", 80, "/a", Some("q=1"), None);
        assert_eq!(location(&answer), "/a?q=1");
    }

    #[test]
    fn every_allowed_status_and_only_those() {
        for status in REDIRECT_STATUSES {
            let r = redirect(HTTPRequestRedirectFilter {
                status_code: Some(status),
                ..Default::default()
            });
            assert_eq!(
                r.answer("http", "h", 80, "/", None, None).0.as_u16(),
                status
            );
        }
        for status in [200, 300, 304, 305, 306, 399, 404, 999] {
            let f = HTTPRequestRedirectFilter {
                status_code: Some(status),
                ..Default::default()
            };
            assert_eq!(Redirect::compile(&f), Err(FilterError::Status(status)));
        }
    }

    #[test]
    fn bad_redirects_are_refused() {
        let f = |f: HTTPRequestRedirectFilter| Redirect::compile(&f);
        assert_eq!(
            f(HTTPRequestRedirectFilter {
                scheme: Some("ftp".into()),
                ..Default::default()
            }),
            Err(FilterError::Scheme("ftp".into()))
        );
        assert_eq!(
            f(HTTPRequestRedirectFilter {
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            Err(FilterError::Scheme("HTTPS".into()))
        );
        for port in [0, -1, 65536] {
            assert_eq!(
                f(HTTPRequestRedirectFilter {
                    port: Some(port),
                    ..Default::default()
                }),
                Err(FilterError::Port(port))
            );
        }
        assert!(
            f(HTTPRequestRedirectFilter {
                port: Some(65535),
                ..Default::default()
            })
            .is_ok()
        );
        for host in ["*.example.org", "Example.org", "10.0.0.1", "a_b.test", ""] {
            let err = f(HTTPRequestRedirectFilter {
                hostname: Some(host.into()),
                ..Default::default()
            });
            assert!(
                matches!(
                    err,
                    Err(FilterError::WildcardHostname(_) | FilterError::Hostname(_))
                ),
                "{host:?}: {err:?}"
            );
        }
    }

    #[test]
    fn path_modifiers_must_say_what_their_type_needs() {
        let both = HTTPPathModifier {
            r#type: PathModifierType::ReplaceFullPath,
            replace_full_path: Some("/a".into()),
            replace_prefix_match: Some("/b".into()),
        };
        let missing = HTTPPathModifier {
            r#type: PathModifierType::ReplacePrefixMatch,
            replace_full_path: None,
            replace_prefix_match: None,
        };
        let f = |p: HTTPPathModifier| {
            Rewrite::compile(&HTTPURLRewriteFilter {
                path: Some(p),
                ..Default::default()
            })
        };
        assert_eq!(
            f(both),
            Err(FilterError::PathValueOfOtherType {
                kind: PathModifierType::ReplaceFullPath,
                field: "replacePrefixMatch"
            })
        );
        assert_eq!(
            f(missing),
            Err(FilterError::PathValueMissing {
                kind: PathModifierType::ReplacePrefixMatch,
                field: "replacePrefixMatch"
            })
        );
        for value in [
            "relative",
            "/a?b=1",
            "/a#frag",
            "/a b",
            "/100%",
            "/caf\u{e9}",
        ] {
            assert!(
                matches!(f(full_to(value)), Err(FilterError::Path { .. })),
                "full {value:?}"
            );
            assert!(
                matches!(f(prefix_to(value)), Err(FilterError::Path { .. })),
                "prefix {value:?}"
            );
        }
    }

    #[test]
    fn replace_prefix_match_as_the_spec_tables_it() {
        // HTTPPathModifier.replacePrefixMatch's table, then the rewrite conformance cases:
        // (request path, prefix match, replacement, modified path).
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            // httproute-rewrite-path
            ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
            ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
            ("/strip-prefix", "/strip-prefix", "/", "/"),
            (
                "/prefix/rewrite-path-and-modify-headers/one",
                "/prefix/rewrite-path-and-modify-headers",
                "/prefix",
                "/prefix/one",
            ),
            // The prefix `/` takes nothing away: the replacement goes in front.
            ("/x/y", "/", "/api", "/api/x/y"),
            ("/", "/", "/api", "/api/"),
            ("/x", "/", "/", "/x"),
            // Deeper prefixes and replacements, never a doubled `/` of weir's making.
            ("/a/b/c/d", "/a/b", "/x/y/z", "/x/y/z/c/d"),
            ("/a/b/", "/a/b", "/x/", "/x/"),
        ];
        for (path, prefix, replacement, want) in cases {
            let r = rewrite(HTTPURLRewriteFilter {
                path: Some(prefix_to(replacement)),
                ..Default::default()
            });
            let (host, target) = r.apply(path, None, Some(prefix));
            assert_eq!(host, None);
            assert_eq!(
                target.as_str(),
                want,
                "{path} with {prefix} -> {replacement:?}"
            );
            // A redirect edits the path the same way.
            let r = redirect(HTTPRequestRedirectFilter {
                path: Some(prefix_to(replacement)),
                ..Default::default()
            });
            let answer = r.answer("http", "h", 80, path, None, Some(prefix));
            assert_eq!(
                location(&answer),
                format!("http://h{want}"),
                "redirect {path}"
            );
        }
    }

    #[test]
    fn a_prefix_edit_without_a_prefix_leaves_the_path() {
        let r = rewrite(HTTPURLRewriteFilter {
            path: Some(prefix_to("/new")),
            ..Default::default()
        });
        assert_eq!(r.apply("/old/x", None, None).1.as_str(), "/old/x");
        // A prefix the path does not take (the caller's mistake) changes nothing either.
        assert_eq!(
            r.apply("/other/x", None, Some("/old")).1.as_str(),
            "/other/x"
        );
        assert_eq!(r.apply("/oldx", None, Some("/old")).1.as_str(), "/oldx");
    }

    #[test]
    fn rewrites_full_paths_hosts_and_keep_the_query() {
        // httproute-rewrite-path: /full/one/two under a ReplaceFullPath of /one.
        let full = rewrite(HTTPURLRewriteFilter {
            path: Some(full_to("/one")),
            ..Default::default()
        });
        assert_eq!(
            full.apply("/full/one/two", None, Some("/full/one"))
                .1
                .as_str(),
            "/one"
        );
        assert_eq!(
            full.apply("/full/one", Some("a=1&b"), None).1.as_str(),
            "/one?a=1&b"
        );
        let empty = rewrite(HTTPURLRewriteFilter {
            path: Some(full_to("")),
            ..Default::default()
        });
        assert_eq!(empty.apply("/x", None, None).1.as_str(), "/");
        // httproute-rewrite-host: the Host only, the path untouched.
        let host = rewrite(HTTPURLRewriteFilter {
            hostname: Some("one.example.org".into()),
            ..Default::default()
        });
        let (h, target) = host.apply("/one", None, Some("/one"));
        assert_eq!(h, Some(HeaderValue::from_static("one.example.org")));
        assert_eq!(target.as_str(), "/one");
        assert_eq!(
            host.apply("/one/x", Some("q=1"), None).1.as_str(),
            "/one/x?q=1"
        );
        assert!(matches!(
            Rewrite::compile(&HTTPURLRewriteFilter {
                hostname: Some("*.example.org".into()),
                ..Default::default()
            }),
            Err(FilterError::WildcardHostname(_))
        ));
    }

    #[test]
    fn what_cannot_go_out_as_it_is_is_escaped() {
        assert_eq!(escape_unsafe("/a/b?c=d"), "/a/b?c=d");
        assert!(matches!(escape_unsafe("/a"), Cow::Borrowed(_)));
        assert_eq!(escape_unsafe("/a b\u{e9}\n"), "/a%20b%C3%A9%0A");
        // So even a path the proxy should never pass makes a valid Location and target.
        let r = redirect(HTTPRequestRedirectFilter::default());
        assert_eq!(
            location(&r.answer("http", "h", 80, "/a b", None, None)),
            "http://h/a%20b"
        );
        let w = rewrite(HTTPURLRewriteFilter::default());
        assert_eq!(w.apply("/a b", None, None).1.as_str(), "/a%20b");
    }
}
