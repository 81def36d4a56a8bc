//! What a rule compiled from a Kubernetes Ingress does besides a Gateway API rule: the
//! ingress-nginx annotations that decide before the backend is picked (source ranges,
//! redirects, the canary) and nginx's `rewrite-target`. Built by compile, read by the proxy;
//! immutable like the rest of the table.

use super::pool::Pool;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

/// An Ingress rule's own behaviour (boxed on [`super::gateway::RouteRule`]; Gateway API rules
/// have none).
#[derive(Debug, Default)]
pub struct IngressRule {
    /// Plain HTTP gets a 308 to the same URL on https (`ssl-redirect`, on by default for hosts
    /// with TLS, and `force-ssl-redirect`).
    pub ssl_redirect: bool,
    /// `permanent-redirect` / `temporal-redirect`: every request gets this answer.
    pub redirect: Option<(StatusCode, HeaderValue)>,
    /// `app-root`: a request for `/` gets a 302 here.
    pub app_root: Option<HeaderValue>,
    /// Only these clients (`None`: any); an empty list lets no one in.
    pub allow: Option<Box<[IpNet]>>,
    pub deny: Box<[IpNet]>,
    pub canary: Option<Canary>,
    pub rewrite: Option<RegexRewrite>,
}

impl IngressRule {
    /// Whether the source ranges let `client` in.
    pub fn admits(&self, client: IpAddr) -> bool {
        let client = canonical(client);
        let inside = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&client));
        self.allow.as_deref().is_none_or(inside) && !inside(&self.deny)
    }
}

/// An IPv4 client reached over an IPv6 socket (`::ffff:a.b.c.d`) is matched as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A canary Ingress's backend, and which requests it takes.
#[derive(Debug)]
pub struct Canary {
    pub pool: Arc<Pool>,
    /// Of every `total` requests, `weight` go to the canary (when no header or cookie says).
    pub weight: u32,
    pub total: u32,
    pub header: Option<HeaderName>,
    /// The value `header` must have; `None`: `always` and `never`.
    pub header_value: Option<HeaderValue>,
    pub cookie: Option<Box<str>>,
}

impl Canary {
    /// Whether this request goes to the canary: the header decides first (`always`, `never`,
    /// or its own value), then the cookie (`always`, `never`), then the weight, as
    /// ingress-nginx has it.
    pub fn takes(&self, headers: &HeaderMap) -> bool {
        if let Some(name) = &self.header
            && let Some(value) = headers.get(name)
        {
            match &self.header_value {
                Some(wanted) => {
                    if value == wanted {
                        return true;
                    }
                }
                None => match value.as_bytes() {
                    b"always" => return true,
                    b"never" => return false,
                    _ => {}
                },
            }
        }
        if let Some(name) = &self.cookie
            && let Some(value) = cookie(headers, name)
        {
            match value {
                b"always" => return true,
                b"never" => return false,
                _ => {}
            }
        }
        self.weight > 0 && fastrand::u32(0..self.total.max(1)) < self.weight
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (the first, as browsers send
/// the most specific first).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
            Some(value.trim_ascii_end())
        })
}

/// nginx's `rewrite REGEX TARGET`: a path the expression matches is replaced whole by the
/// target, `$N` standing for the N-th capture; the query string is kept.
#[derive(Debug)]
pub struct RegexRewrite {
    regex: regex::Regex,
    /// In the `regex` crate's syntax (`${N}`).
    target: Box<str>,
}

impl RegexRewrite {
    /// `pattern` matches from the path's start, case-insensitively (nginx's `location ~*`);
    /// `target` is nginx's (`/$1`).
    pub fn compile(pattern: &str, target: &str) -> Result<Self, regex::Error> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})"))
            .case_insensitive(true)
            .size_limit(1024 * 1024)
            .build()?;
        Ok(RegexRewrite {
            regex,
            target: nginx_captures(target).into(),
        })
    }

    /// The new path and query for `path` (`None`: the expression does not match; the request
    /// goes on as it is).
    pub fn apply(&self, path: &str, query: Option<&str>) -> Option<String> {
        let captures = self.regex.captures(path)?;
        let mut out = String::new();
        captures.expand(&self.target, &mut out);
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(q) = query {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        Some(out)
    }
}

/// `$1x` → `${1}x`: nginx ends a capture's number at the first non-digit; the `regex` crate
/// would read `$1x` as a group named `1x`. A `$` not before a digit stays a `$`.
fn nginx_captures(target: &str) -> String {
    let mut out = String::with_capacity(target.len() + 8);
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            if digits.is_empty() {
                out.push_str("$$");
            } else {
                out.push_str("${");
                out.push_str(&digits);
                out.push('}');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_as_nginx_does() {
        let r = RegexRewrite::compile("/something(/|$)(.*)", "/$2").expect("compiles");
        assert_eq!(r.apply("/something/new", None).as_deref(), Some("/new"));
        assert_eq!(r.apply("/something", Some("a=1")).as_deref(), Some("/?a=1"));
        assert_eq!(
            r.apply("/SOMETHING/x", None).as_deref(),
            Some("/x"),
            "case-insensitive"
        );
        assert_eq!(r.apply("/other", None), None);
        let whole = RegexRewrite::compile("/app", "/").expect("compiles");
        assert_eq!(whole.apply("/app/deep/path", None).as_deref(), Some("/"));
        let glued = RegexRewrite::compile("/v(\\d)/(.*)", "/api$1x/$2?from=v$1").expect("compiles");
        assert_eq!(
            glued.apply("/v2/users", Some("q=1")).as_deref(),
            Some("/api2x/users?from=v2&q=1")
        );
    }

    #[test]
    fn source_ranges_allow_then_deny() {
        let nets =
            |s: &[&str]| -> Box<[IpNet]> { s.iter().map(|n| n.parse().expect("net")).collect() };
        let rule = IngressRule {
            allow: Some(nets(&["10.0.0.0/8"])),
            deny: nets(&["10.0.0.7/32"]),
            ..IngressRule::default()
        };
        assert!(rule.admits("10.1.2.3".parse().expect("ip")));
        assert!(!rule.admits("10.0.0.7".parse().expect("ip")));
        assert!(!rule.admits("192.168.0.1".parse().expect("ip")));
        assert!(
            rule.admits("::ffff:10.1.2.3".parse().expect("ip")),
            "mapped IPv4"
        );
        let nobody = IngressRule {
            allow: Some(nets(&[])),
            ..IngressRule::default()
        };
        assert!(!nobody.admits("127.0.0.1".parse().expect("ip")));
        assert!(IngressRule::default().admits("127.0.0.1".parse().expect("ip")));
    }
}
