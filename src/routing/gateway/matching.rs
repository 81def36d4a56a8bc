//! One HTTPRoute match (`HTTPRouteMatch`), compiled once when the table is built and then
//! tried against each request: path, method, headers and query parameters, all of which must
//! hold (Gateway API ANDs them).
//!
//! The choices the spec leaves open, and what weir does:
//! - Regular expressions (paths, header and query values) are the `regex` crate's dialect
//!   (RE2-like, linear time), and always match the whole value, as if written `^(?:...)$`.
//! - A header the request repeats is matched as one comma-joined value (`a,b`), the
//!   combination RFC 9110 §5.3 allows a proxy to make, so two lines `x: a` and `x: b` match
//!   as `x: a,b` would. `Cookie`, which HTTP/2 may split, is joined with `; ` instead.
//! - A query parameter the request repeats is matched by its first value (the spec's
//!   recommendation), after `application/x-www-form-urlencoded` decoding (`%xx` and `+`).
//!
//! The request path is matched as the proxy hands it over (the URI's path, still
//! percent-encoded); normalizing it first is the proxy's job.

use crate::api::gateway::{
    HTTPHeaderMatch, HTTPQueryParamMatch, HTTPRouteMatch, PathMatchType, ValueMatchType,
};
use crate::routing::{normalize_prefix, prefix_matches};
use http::header::{COOKIE, HeaderName};
use http::{HeaderMap, Method};
use std::borrow::Cow;

/// A compiled regular expression may take at most this much memory, and so may the lazy DFA
/// each one builds as it runs (the `regex` defaults are 10 MiB and 2 MiB). A route may hold
/// 128 matches with up to 33 expressions each, and anyone who can write an HTTPRoute (or a
/// file weir serves) could otherwise make every replica hold gigabytes with a few short
/// patterns (`\w{1000}` compiles to over 32 MiB). Patterns routes really use are a few KiB;
/// Unicode classes are the costly part (`\w` is about 50 KiB, so `\w{20}` is near the
/// limit, where `[A-Za-z0-9_]{20}` is small). A pattern over the limit is refused with an
/// error, never truncated.
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// A compiled `HTTPRouteMatch`.
#[derive(Debug, Clone)]
pub struct RequestMatch {
    path: PathMatch,
    method: Option<Method>,
    headers: Vec<(HeaderName, HeaderValueMatch)>,
    query: Vec<(Box<str>, QueryValueMatch)>,
}

/// How the request path is compared.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(Box<str>),
    /// Normalized: no trailing `/` except for `/` itself.
    Prefix(Box<str>),
    /// Anchored at both ends.
    Regex(regex::Regex),
}

/// A header value compared as bytes: header values need not be UTF-8.
#[derive(Debug, Clone)]
enum HeaderValueMatch {
    Exact(Box<[u8]>),
    Regex(regex::bytes::Regex),
}

/// A query value compared after decoding.
#[derive(Debug, Clone)]
enum QueryValueMatch {
    Exact(Box<str>),
    Regex(regex::Regex),
}

/// Where in a match a regular expression sits, for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegexSite {
    Path,
    Header(String),
    QueryParam(String),
}

impl std::fmt::Display for RegexSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegexSite::Path => f.write_str("path"),
            RegexSite::Header(name) => write!(f, "header {name:?}"),
            RegexSite::QueryParam(name) => write!(f, "query parameter {name:?}"),
        }
    }
}

/// A match weir cannot serve as written (the route's rule is then refused, not half-applied).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatchError {
    #[error("the {site} regular expression {pattern:?} does not compile: {source}")]
    Regex {
        site: RegexSite,
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("path {value:?}: {reason}")]
    Path { value: String, reason: &'static str },
    #[error("{0:?} is not an HTTP header name")]
    HeaderName(String),
    #[error("query parameter name {0:?} is empty")]
    QueryParamName(String),
    #[error(
        "method {0:?} is not one Gateway API names (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)"
    )]
    Method(String),
}

/// The methods `HTTPRouteMatch.method` may name (an enum in the CRD; the file source is not
/// checked by an API server, so weir checks again).
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

impl RequestMatch {
    /// Compiles `m`, with the CRD's defaults for what it leaves unset.
    pub fn compile(m: &HTTPRouteMatch) -> Result<RequestMatch, MatchError> {
        let path = compile_path(
            m.path.as_ref().and_then(|p| p.r#type),
            m.path.as_ref().and_then(|p| p.value.as_deref()),
        )?;
        let method = m.method.as_deref().map(compile_method).transpose()?;
        let mut headers: Vec<(HeaderName, HeaderValueMatch)> = Vec::new();
        for h in &m.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| MatchError::HeaderName(h.name.clone()))?;
            // Only the first entry of a name counts (the spec: later ones MUST be ignored),
            // so a later entry is not even compiled.
            if headers.iter().any(|(n, _)| *n == name) {
                continue;
            }
            headers.push((name, compile_header_value(h)?));
        }
        let mut query: Vec<(Box<str>, QueryValueMatch)> = Vec::new();
        for q in &m.query_params {
            if q.name.is_empty() {
                return Err(MatchError::QueryParamName(q.name.clone()));
            }
            // Names are case-sensitive, so `a` and `A` are two parameters.
            if query.iter().any(|(n, _)| **n == *q.name) {
                continue;
            }
            query.push((q.name.as_str().into(), compile_query_value(q)?));
        }
        Ok(RequestMatch {
            path,
            method,
            headers,
            query,
        })
    }

    /// Whether a request takes this match. `query` is the raw query string without '?', if
    /// any.
    pub fn matches(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self.path_matches(path)
            && self
                .headers
                .iter()
                .all(|(n, v)| header_matches(headers, n, v))
            && self.query_matches(query)
    }

    /// The normalized prefix this match takes (PathPrefix only), for URLRewrite's and
    /// RequestRedirect's ReplacePrefixMatch.
    pub fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(p) => Some(p),
            _ => None,
        }
    }

    /// How this match compares the path.
    pub fn path(&self) -> &PathMatch {
        &self.path
    }

    fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Exact(p) => **p == *path,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    fn query_matches(&self, query: Option<&str>) -> bool {
        if self.query.is_empty() {
            return true;
        }
        let Some(query) = query else {
            return false;
        };
        self.query.iter().all(|(name, want)| {
            // The first occurrence only; a later value never rescues a first that fails.
            let first = form_urlencoded::parse(query.as_bytes())
                .find(|(n, _)| n.as_ref() == &**name)
                .map(|(_, v)| v);
            match (first, want) {
                (None, _) => false,
                (Some(v), QueryValueMatch::Exact(e)) => v.as_ref() == &**e,
                (Some(v), QueryValueMatch::Regex(r)) => r.is_match(&v),
            }
        })
    }
}

fn compile_path(kind: Option<PathMatchType>, value: Option<&str>) -> Result<PathMatch, MatchError> {
    let value = value.unwrap_or("/");
    match kind.unwrap_or(PathMatchType::PathPrefix) {
        PathMatchType::Exact => {
            check_path(value)?;
            Ok(PathMatch::Exact(value.into()))
        }
        PathMatchType::PathPrefix => {
            check_path(value)?;
            Ok(PathMatch::Prefix(normalize_prefix(value).into()))
        }
        PathMatchType::RegularExpression => {
            anchored(value)
                .build()
                .map(PathMatch::Regex)
                .map_err(|source| MatchError::Regex {
                    site: RegexSite::Path,
                    pattern: value.to_string(),
                    source,
                })
        }
    }
}

/// The CRD's rules for Exact and PathPrefix values (checked again for the file source): an
/// absolute path with no empty, `.` or `..` segments, no encoded `/`, and only the characters
/// a URI path may hold.
fn check_path(value: &str) -> Result<(), MatchError> {
    let bad = |reason| {
        Err(MatchError::Path {
            value: value.to_string(),
            reason,
        })
    };
    if !value.starts_with('/') {
        return bad("must start with '/'");
    }
    if value.contains("//") {
        return bad("must not contain '//'");
    }
    if value.contains("/./") || value.ends_with("/.") {
        return bad("must not have a '.' segment");
    }
    if value.contains("/../") || value.ends_with("/..") {
        return bad("must not have a '..' segment");
    }
    if value.contains("%2f") || value.contains("%2F") {
        return bad("must not contain an encoded '/' (%2F)");
    }
    if !uri_path_chars(value) {
        return bad("may hold only URI path characters and %xx escapes");
    }
    Ok(())
}

/// Whether `value` holds only what a URI path may (RFC 3986 `pchar` and `/`, with `%` only
/// as the start of a `%xx` escape): the CRD's character rule for paths, which filters'
/// replacement paths share.
pub(super) fn uri_path_chars(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b.is_ascii_alphanumeric()
            || b"-/._~!$&'()*+,;=:@".contains(&b)
            || (b == b'%'
                && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

fn compile_method(method: &str) -> Result<Method, MatchError> {
    METHODS
        .iter()
        .find(|m| m.as_str() == method)
        .cloned()
        .ok_or_else(|| MatchError::Method(method.to_string()))
}

fn compile_header_value(h: &HTTPHeaderMatch) -> Result<HeaderValueMatch, MatchError> {
    match h.r#type.unwrap_or(ValueMatchType::Exact) {
        ValueMatchType::Exact => Ok(HeaderValueMatch::Exact(h.value.as_bytes().into())),
        ValueMatchType::RegularExpression => {
            let site = RegexSite::Header(h.name.clone());
            regex::bytes::RegexBuilder::new(&format!("^(?:{})$", h.value))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(HeaderValueMatch::Regex)
                .map_err(|source| MatchError::Regex {
                    site,
                    pattern: h.value.clone(),
                    source,
                })
        }
    }
}

fn compile_query_value(q: &HTTPQueryParamMatch) -> Result<QueryValueMatch, MatchError> {
    match q.r#type.unwrap_or(ValueMatchType::Exact) {
        ValueMatchType::Exact => Ok(QueryValueMatch::Exact(q.value.as_str().into())),
        ValueMatchType::RegularExpression => {
            let site = RegexSite::QueryParam(q.name.clone());
            anchored(&q.value)
                .build()
                .map(QueryValueMatch::Regex)
                .map_err(|source| MatchError::Regex {
                    site,
                    pattern: q.value.clone(),
                    source,
                })
        }
    }
}

/// A builder for `pattern` matched whole, within the size limits.
fn anchored(pattern: &str) -> regex::RegexBuilder {
    let mut builder = regex::RegexBuilder::new(&format!("^(?:{pattern})$"));
    builder
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT);
    builder
}

fn header_matches(headers: &HeaderMap, name: &HeaderName, want: &HeaderValueMatch) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    // One value (the usual case) is compared in place; several are joined first.
    let value: Cow<'_, [u8]> = match values.next() {
        None => Cow::Borrowed(first.as_bytes()),
        Some(second) => {
            let separator: &[u8] = if name == COOKIE { b"; " } else { b"," };
            let mut joined = first.as_bytes().to_vec();
            for v in std::iter::once(second).chain(values) {
                joined.extend_from_slice(separator);
                joined.extend_from_slice(v.as_bytes());
            }
            Cow::Owned(joined)
        }
    };
    match want {
        HeaderValueMatch::Exact(e) => *value == **e,
        HeaderValueMatch::Regex(r) => r.is_match(&value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gateway::HTTPPathMatch;
    use http::HeaderValue;

    fn path(kind: PathMatchType, value: &str) -> HTTPRouteMatch {
        HTTPRouteMatch {
            path: Some(HTTPPathMatch {
                r#type: Some(kind),
                value: Some(value.into()),
            }),
            ..Default::default()
        }
    }

    fn header(kind: Option<ValueMatchType>, name: &str, value: &str) -> HTTPHeaderMatch {
        HTTPHeaderMatch {
            r#type: kind,
            name: name.into(),
            value: value.into(),
        }
    }

    fn query(kind: Option<ValueMatchType>, name: &str, value: &str) -> HTTPQueryParamMatch {
        HTTPQueryParamMatch {
            r#type: kind,
            name: name.into(),
            value: value.into(),
        }
    }

    fn compiled(m: &HTTPRouteMatch) -> RequestMatch {
        match RequestMatch::compile(m) {
            Ok(c) => c,
            Err(e) => panic!("{m:?} does not compile: {e}"),
        }
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

    /// Whether `m` takes a GET of `target` (a path with an optional `?query`).
    fn takes(m: &RequestMatch, target: &str, hs: &[(&str, &str)]) -> bool {
        let (p, q) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        m.matches(&Method::GET, p, q, &headers(hs))
    }

    #[test]
    fn paths_by_type() {
        // (type, value, request path, matches)
        let cases = [
            (PathMatchType::PathPrefix, "/foo", "/foo", true),
            (PathMatchType::PathPrefix, "/foo", "/foo/", true),
            (PathMatchType::PathPrefix, "/foo", "/foo/bar", true),
            (PathMatchType::PathPrefix, "/foo", "/foobar", false),
            (PathMatchType::PathPrefix, "/foo", "/", false),
            (PathMatchType::PathPrefix, "/foo/", "/foo", true),
            (PathMatchType::PathPrefix, "/foo/", "/foo/", true),
            (PathMatchType::PathPrefix, "/foo/", "/foo/bar", true),
            (PathMatchType::PathPrefix, "/foo/", "/foobar", false),
            (PathMatchType::PathPrefix, "/", "/anything/at/all", true),
            (PathMatchType::PathPrefix, "/v2", "/v2example", false),
            (PathMatchType::PathPrefix, "/v2", "/foo/v2/example", false),
            (PathMatchType::PathPrefix, "/Foo", "/foo", false),
            (PathMatchType::Exact, "/abc", "/abc", true),
            (PathMatchType::Exact, "/abc", "/abc/", false),
            (PathMatchType::Exact, "/abc", "/Abc", false),
            (PathMatchType::Exact, "/abc", "/abcd", false),
            (PathMatchType::Exact, "/abc/", "/abc", false),
            (
                PathMatchType::RegularExpression,
                "/v[0-9]+/.*",
                "/v12/x",
                true,
            ),
            (
                PathMatchType::RegularExpression,
                "/v[0-9]+/.*",
                "/v/x",
                false,
            ),
            // Anchored: neither a match inside the path nor a prefix of it is enough.
            (PathMatchType::RegularExpression, "/v[0-9]+", "/x/v1", false),
            (PathMatchType::RegularExpression, "/v[0-9]+", "/v1/x", false),
            // An alternation is anchored as a whole, not only its first and last branch.
            (PathMatchType::RegularExpression, "/a|/b", "/a/x", false),
            (PathMatchType::RegularExpression, "/a|/b", "/b", true),
        ];
        for (kind, value, request, want) in cases {
            let m = compiled(&path(kind, value));
            assert_eq!(
                takes(&m, request, &[]),
                want,
                "{kind:?} {value} on {request}"
            );
        }
    }

    #[test]
    fn an_unset_path_is_a_slash_prefix() {
        for m in [
            HTTPRouteMatch::default(),
            HTTPRouteMatch {
                path: Some(HTTPPathMatch::default()),
                ..Default::default()
            },
        ] {
            let m = compiled(&m);
            assert_eq!(m.prefix(), Some("/"));
            assert!(takes(&m, "/", &[]));
            assert!(takes(&m, "/example", &[]));
        }
    }

    #[test]
    fn only_prefix_matches_have_a_prefix() {
        assert_eq!(
            compiled(&path(PathMatchType::PathPrefix, "/foo/")).prefix(),
            Some("/foo")
        );
        assert_eq!(compiled(&path(PathMatchType::Exact, "/foo")).prefix(), None);
        let regex = compiled(&path(PathMatchType::RegularExpression, "/foo"));
        assert_eq!(regex.prefix(), None);
        assert!(matches!(regex.path(), PathMatch::Regex(_)));
    }

    #[test]
    fn paths_the_crd_refuses_are_refused() {
        for (kind, value) in [
            (PathMatchType::PathPrefix, "foo"),
            (PathMatchType::Exact, ""),
            (PathMatchType::PathPrefix, "/foo//bar"),
            (PathMatchType::PathPrefix, "/foo/./bar"),
            (PathMatchType::PathPrefix, "/foo/."),
            (PathMatchType::Exact, "/foo/../bar"),
            (PathMatchType::Exact, "/foo/.."),
            (PathMatchType::PathPrefix, "/a%2fb"),
            (PathMatchType::PathPrefix, "/a%2Fb"),
            (PathMatchType::PathPrefix, "/a#b"),
            (PathMatchType::PathPrefix, "/a b"),
            (PathMatchType::PathPrefix, "/a?b=c"),
            (PathMatchType::PathPrefix, "/a%zz"),
            (PathMatchType::PathPrefix, "/a%2"),
            (PathMatchType::PathPrefix, "/caf\u{e9}"),
        ] {
            let err = RequestMatch::compile(&path(kind, value));
            assert!(
                matches!(err, Err(MatchError::Path { .. })),
                "{kind:?} {value:?} gave {err:?}"
            );
        }
        // What the CRD allows compiles: dots inside a segment, %xx escapes, sub-delims.
        for value in ["/a.b/..c/.d", "/%41%7e", "/a:b@c;d=e,f!$&'()*+~"] {
            compiled(&path(PathMatchType::PathPrefix, value));
        }
    }

    #[test]
    fn a_bad_or_huge_regex_is_an_error_naming_where_it_is() {
        let err = RequestMatch::compile(&path(PathMatchType::RegularExpression, "/(unclosed"));
        assert!(
            matches!(
                &err,
                Err(MatchError::Regex {
                    site: RegexSite::Path,
                    ..
                })
            ),
            "{err:?}"
        );
        let m = HTTPRouteMatch {
            headers: vec![header(Some(ValueMatchType::RegularExpression), "X-A", "[")],
            ..Default::default()
        };
        let err = RequestMatch::compile(&m);
        assert!(
            matches!(&err, Err(MatchError::Regex { site: RegexSite::Header(n), .. }) if n == "X-A"),
            "{err:?}"
        );
        let m = HTTPRouteMatch {
            query_params: vec![query(
                Some(ValueMatchType::RegularExpression),
                "q",
                "a{2,1}",
            )],
            ..Default::default()
        };
        let err = RequestMatch::compile(&m);
        assert!(
            matches!(&err, Err(MatchError::Regex { site: RegexSite::QueryParam(n), .. }) if n == "q"),
            "{err:?}"
        );
        // A pattern that is short but compiles to megabytes is refused, not built.
        let err = RequestMatch::compile(&path(PathMatchType::RegularExpression, r"/\w{1000}"));
        assert!(matches!(&err, Err(MatchError::Regex { .. })), "{err:?}");
        let text = match err {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(text.contains("path regular expression"), "{text}");
        // While the patterns routes really hold fit, Unicode classes included (though a
        // counted `\w`, about 50 KiB a copy, reaches the limit at some twenty copies).
        for pattern in [
            r"/api/v[0-9]+/users/[a-z0-9-]{1,64}(/.*)?",
            r"/\w+/\w{10}/[\w.-]+/[a-z0-9.-]{1,64}\.(png|jpe?g|gif|webp)",
            r"/(?i:static|assets)/.*",
        ] {
            compiled(&path(PathMatchType::RegularExpression, pattern));
        }
    }

    #[test]
    fn headers_exact_by_case_insensitive_name() {
        let m = compiled(&HTTPRouteMatch {
            headers: vec![
                header(None, "version", "two"),
                header(None, "Color", "orange"),
            ],
            ..Default::default()
        });
        assert!(takes(&m, "/", &[("Version", "two"), ("color", "orange")]));
        assert!(takes(
            &m,
            "/",
            &[("VERSION", "two"), ("COLOR", "orange"), ("x", "y")]
        ));
        assert!(!takes(&m, "/", &[("Version", "two")]));
        assert!(!takes(&m, "/", &[("Color", "orange")]));
        // Values are compared exactly, case included.
        assert!(!takes(&m, "/", &[("Version", "Two"), ("color", "orange")]));
        assert!(!takes(&m, "/", &[("Version", "two "), ("color", "orange")]));
    }

    #[test]
    fn header_regexes_match_whole_values() {
        let m = compiled(&HTTPRouteMatch {
            headers: vec![header(
                Some(ValueMatchType::RegularExpression),
                "color",
                "red|yellow",
            )],
            ..Default::default()
        });
        assert!(takes(&m, "/", &[("Color", "red")]));
        assert!(takes(&m, "/", &[("Color", "yellow")]));
        assert!(!takes(&m, "/", &[("Color", "purple")]));
        assert!(!takes(&m, "/", &[("Color", "reddish")]));
        assert!(!takes(&m, "/", &[]));
    }

    #[test]
    fn a_header_named_twice_counts_once_the_first_time() {
        let m = compiled(&HTTPRouteMatch {
            headers: vec![
                header(None, "X-Env", "canary"),
                // Ignored, as the spec says, so not even compiled.
                header(Some(ValueMatchType::RegularExpression), "x-env", "(broken"),
            ],
            ..Default::default()
        });
        assert!(takes(&m, "/", &[("x-env", "canary")]));
        assert!(!takes(&m, "/", &[("x-env", "stable")]));
    }

    #[test]
    fn a_repeated_request_header_matches_as_its_joined_value() {
        let exact = |v: &str| {
            compiled(&HTTPRouteMatch {
                headers: vec![header(None, "x", v)],
                ..Default::default()
            })
        };
        let twice = [("x", "a"), ("x", "b")];
        assert!(takes(&exact("a,b"), "/", &twice));
        assert!(!takes(&exact("a"), "/", &twice));
        assert!(!takes(&exact("b"), "/", &twice));
        let any_a = compiled(&HTTPRouteMatch {
            headers: vec![header(
                Some(ValueMatchType::RegularExpression),
                "x",
                "(.*,)?a(,.*)?",
            )],
            ..Default::default()
        });
        assert!(takes(&any_a, "/", &twice));
        assert!(takes(&any_a, "/", &[("x", "b"), ("x", "c"), ("x", "a")]));
        assert!(!takes(&any_a, "/", &[("x", "b"), ("x", "c")]));
        // Cookie crumbs (HTTP/2 may send one header per cookie) join as one Cookie header.
        let cookie = compiled(&HTTPRouteMatch {
            headers: vec![header(None, "cookie", "a=1; b=2")],
            ..Default::default()
        });
        assert!(takes(&cookie, "/", &[("cookie", "a=1"), ("cookie", "b=2")]));
    }

    #[test]
    fn header_values_need_not_be_utf8() {
        let m = compiled(&HTTPRouteMatch {
            headers: vec![header(Some(ValueMatchType::RegularExpression), "x", "a.*")],
            ..Default::default()
        });
        let mut map = HeaderMap::new();
        let raw = HeaderValue::from_bytes(b"a\xff").expect("obs-text is a valid header value");
        map.insert("x", raw);
        // `.` takes characters, not stray bytes: no match, and no panic.
        assert!(!m.matches(&Method::GET, "/", None, &map));
        map.insert("x", HeaderValue::from_static("abc"));
        assert!(m.matches(&Method::GET, "/", None, &map));
    }

    #[test]
    fn bad_header_names_are_refused() {
        for name in ["", "has space", "colon:", "caf\u{e9}"] {
            let err = RequestMatch::compile(&HTTPRouteMatch {
                headers: vec![header(None, name, "v")],
                ..Default::default()
            });
            assert!(
                matches!(err, Err(MatchError::HeaderName(_))),
                "{name:?}: {err:?}"
            );
        }
    }

    #[test]
    fn query_params_as_the_conformance_suite_has_them() {
        let whale = compiled(&HTTPRouteMatch {
            query_params: vec![query(None, "animal", "whale")],
            ..Default::default()
        });
        let dolphin_blue = compiled(&HTTPRouteMatch {
            query_params: vec![
                query(None, "animal", "dolphin"),
                query(None, "color", "blue"),
            ],
            ..Default::default()
        });
        let upper = compiled(&HTTPRouteMatch {
            query_params: vec![query(None, "ANIMAL", "Whale")],
            ..Default::default()
        });
        // (request, whale, dolphin&blue, ANIMAL=Whale)
        let cases = [
            ("/?animal=whale", true, false, false),
            ("/?animal=whale&otherparam=irrelevant", true, false, false),
            ("/?animal=dolphin&color=blue", false, true, false),
            ("/?color=blue&animal=dolphin", false, true, false),
            ("/?animal=dolphin&color=yellow", false, false, false),
            ("/?ANIMAL=Whale", false, false, true),
            ("/?animal=Whale", false, false, false),
            ("/?color=blue", false, false, false),
            ("/?animal=dog", false, false, false),
            ("/?animal=whaledolphin", false, false, false),
            ("/?", false, false, false),
            ("/", false, false, false),
        ];
        for (target, w, db, u) in cases {
            assert_eq!(takes(&whale, target, &[]), w, "whale on {target}");
            assert_eq!(
                takes(&dolphin_blue, target, &[]),
                db,
                "dolphin&blue on {target}"
            );
            assert_eq!(takes(&upper, target, &[]), u, "ANIMAL on {target}");
        }
    }

    #[test]
    fn query_values_are_decoded_and_the_first_one_counts() {
        let m = compiled(&HTTPRouteMatch {
            query_params: vec![query(None, "q", "a b/c")],
            ..Default::default()
        });
        assert!(takes(&m, "/?q=a%20b%2Fc", &[]));
        assert!(takes(&m, "/?q=a+b/c", &[]));
        assert!(takes(&m, "/?x=1&q=a+b%2fc&q=other", &[]));
        assert!(!takes(&m, "/?q=other&q=a+b/c", &[]));
        // Names are decoded too, and compared exactly.
        assert!(takes(&m, "/?%71=a+b/c", &[]));
        assert!(!takes(&m, "/?Q=a+b/c", &[]));
        let re = compiled(&HTTPRouteMatch {
            query_params: vec![query(
                Some(ValueMatchType::RegularExpression),
                "id",
                "[0-9]+",
            )],
            ..Default::default()
        });
        assert!(takes(&re, "/?id=123", &[]));
        assert!(!takes(&re, "/?id=123x", &[]));
        assert!(!takes(&re, "/?id=", &[]));
        assert!(!takes(&re, "/?id", &[]));
        // A name given twice in the match: the first entry only.
        let twice = compiled(&HTTPRouteMatch {
            query_params: vec![query(None, "a", "1"), query(None, "a", "2")],
            ..Default::default()
        });
        assert!(takes(&twice, "/?a=1", &[]));
        assert!(!takes(&twice, "/?a=2", &[]));
        let empty = RequestMatch::compile(&HTTPRouteMatch {
            query_params: vec![query(None, "", "1")],
            ..Default::default()
        });
        assert!(
            matches!(empty, Err(MatchError::QueryParamName(_))),
            "{empty:?}"
        );
    }

    #[test]
    fn methods_exactly_and_only_the_crd_ones() {
        let post = compiled(&HTTPRouteMatch {
            method: Some("POST".into()),
            ..Default::default()
        });
        let h = HeaderMap::new();
        assert!(post.matches(&Method::POST, "/", None, &h));
        assert!(!post.matches(&Method::GET, "/", None, &h));
        for bad in ["post", "PURGE", "", "*"] {
            let err = RequestMatch::compile(&HTTPRouteMatch {
                method: Some(bad.into()),
                ..Default::default()
            });
            assert!(
                matches!(err, Err(MatchError::Method(_))),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn every_part_must_hold() {
        let m = compiled(&HTTPRouteMatch {
            path: Some(HTTPPathMatch {
                r#type: Some(PathMatchType::PathPrefix),
                value: Some("/path4".into()),
            }),
            headers: vec![header(None, "version", "three")],
            query_params: vec![query(None, "animal", "kraken")],
            method: Some("GET".into()),
        });
        let v3 = [("version", "three")];
        assert!(takes(&m, "/path4?animal=kraken", &v3));
        assert!(!takes(&m, "/path4?animal=kraken", &[]));
        assert!(!takes(&m, "/path4", &v3));
        assert!(!takes(&m, "/path5?animal=kraken", &v3));
        assert!(!m.matches(
            &Method::HEAD,
            "/path4",
            Some("animal=kraken"),
            &headers(&v3)
        ));
    }
}
