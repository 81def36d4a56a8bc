//! Kubernetes `networking.k8s.io/v1` Ingress as weir reads it: which Ingresses are weir's (by
//! IngressClass), and the ingress-nginx annotations people migrate with, parsed into types.
//!
//! Every annotation under `nginx.ingress.kubernetes.io/` or `weir.dev/` (weir's wins when both
//! are set) is either understood or reported: an unknown name, a value that does not parse, or
//! a feature weir does not have is an [`AnnotationWarning`], never silently dropped. Pure: no
//! I/O, so compile, `weir check` and `weir migrate` read the same answers.

use super::{AffinityCookie, Algorithm, HashOn, SameSite};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use std::collections::BTreeMap;

/// The controller name an IngressClass names for weir.
pub const INGRESS_CONTROLLER: &str = "weir.dev/ingress-controller";
/// The class weir takes by default (`--ingress-class`).
pub const DEFAULT_INGRESS_CLASS: &str = "weir";
/// The annotation that makes an IngressClass the cluster's default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation older Ingresses use instead of `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";
const WEIR_PREFIX: &str = "weir.dev/";

/// Which Ingresses weir serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressClassChoice {
    /// The IngressClass name weir answers to.
    pub name: String,
    /// Take Ingresses that name no class even without an IngressClass marked default (the
    /// file source: the file is weir's alone).
    pub unclassed: bool,
}

impl Default for IngressClassChoice {
    fn default() -> Self {
        IngressClassChoice {
            name: DEFAULT_INGRESS_CLASS.to_string(),
            unclassed: false,
        }
    }
}

impl IngressClassChoice {
    /// Whether `ingress` is weir's: its class (field, else the legacy annotation) is weir's,
    /// or it names none and weir's class is the default (an IngressClass of that name, of
    /// weir's controller, with the default-class annotation `"true"`).
    pub fn takes(
        &self,
        ingress: &Ingress,
        classes: &BTreeMap<String, impl AsRef<IngressClass>>,
    ) -> bool {
        let named = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .or_else(|| {
                ingress
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                    .map(String::as_str)
            });
        let class = classes.get(&self.name).map(AsRef::as_ref);
        let class_is_ours = class.is_none_or(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(INGRESS_CONTROLLER)
        });
        match named {
            Some(name) => name == self.name && class_is_ours,
            None => {
                let default = class.is_some_and(|c| {
                    c.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                        .is_some_and(|v| v == "true")
                });
                (default || (self.unclassed && class.is_none())) && class_is_ours
            }
        }
    }
}

/// An annotation weir does not carry out as written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationWarning {
    /// The annotation's full name, as the Ingress has it.
    pub annotation: String,
    pub kind: WarningKind,
    pub message: String,
}

/// Why an annotation is not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// weir does not know the name.
    Unknown,
    /// The value does not parse.
    BadValue,
    /// weir knows it and has no such feature (yet).
    Unsupported,
    /// Configuration as nginx text, which weir never executes.
    Snippet,
}

impl WarningKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::Unknown => "Unknown",
            WarningKind::BadValue => "BadValue",
            WarningKind::Unsupported => "Unsupported",
            WarningKind::Snippet => "Snippet",
        }
    }
}

impl std::fmt::Display for AnnotationWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.annotation, self.message)
    }
}

/// How weir talks to the Ingress's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendProtocol {
    #[default]
    Http,
    /// HTTP/2 without TLS (`GRPC`, `H2C`).
    H2c,
}

/// A canary Ingress's rules: which requests its backend takes from the main Ingress of the
/// same host and path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CanaryRules {
    /// Share of requests, out of `weight_total`.
    pub weight: u32,
    pub weight_total: u32,
    /// A header that sends a request to the canary (`always`, or `by_header_value`) or away
    /// from it (`never`).
    pub by_header: Option<String>,
    pub by_header_value: Option<String>,
    /// A cookie that does the same with the values `always` and `never`.
    pub by_cookie: Option<String>,
}

/// A redirect answered for every request of the Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedRedirect {
    pub location: String,
    pub status: u16,
}

/// What weir takes from an Ingress's annotations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngressAnnotations {
    /// `ssl-redirect`: plain HTTP to hosts with TLS gets a redirect (default true).
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`: even without TLS in the Ingress.
    pub force_ssl_redirect: bool,
    /// `use-regex`: paths are case-insensitive regular expressions anchored at the start.
    pub use_regex: bool,
    /// `rewrite-target`: the path sent upstream; `$1`… name the path's captures.
    pub rewrite_target: Option<String>,
    /// `app-root`: `/` redirects here (302).
    pub app_root: Option<String>,
    /// `permanent-redirect` (with `-code`) or `temporal-redirect`.
    pub redirect: Option<FixedRedirect>,
    pub affinity: Option<AffinityCookie>,
    pub algorithm: Option<Algorithm>,
    /// `upstream-hash-by`: consistent hashing on this key.
    pub hash_on: Option<HashOn>,
    pub canary: Option<CanaryRules>,
    pub connect_timeout_millis: Option<u32>,
    /// `proxy-read-timeout`: the time to the response headers.
    pub read_timeout_seconds: Option<u32>,
    /// `proxy-body-size`: `Some(None)` is no limit (`0`).
    pub body_size: Option<Option<u64>>,
    /// `proxy-next-upstream-tries`: attempts in all, the first included.
    pub next_upstream_tries: Option<u32>,
    pub backend_protocol: BackendProtocol,
    /// `whitelist-source-range`: only these clients (`Some` even when no entry parsed, so a
    /// broken list refuses everyone rather than no one).
    pub allow_source: Option<Vec<ipnet::IpNet>>,
    pub deny_source: Vec<ipnet::IpNet>,
}

/// Annotations weir reads; anything else under the prefixes is [`WarningKind::Unknown`] or
/// one of [`UNSUPPORTED`].
const KNOWN: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "use-regex",
    "rewrite-target",
    "app-root",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-path",
    "session-cookie-samesite",
    "session-cookie-secure",
    "load-balance",
    "upstream-hash-by",
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-cookie",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-body-size",
    "proxy-next-upstream-tries",
    "backend-protocol",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
];

/// Annotations of ingress-nginx features weir does not have, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "proxy-send-timeout",
        "weir has no per-write upstream timeout; the connection's idle timeout applies",
    ),
    (
        "enable-cors",
        "CORS is not built yet; answer CORS in the application",
    ),
    ("cors-allow-origin", "CORS is not built yet"),
    ("cors-allow-methods", "CORS is not built yet"),
    ("cors-allow-headers", "CORS is not built yet"),
    ("cors-allow-credentials", "CORS is not built yet"),
    ("cors-expose-headers", "CORS is not built yet"),
    ("cors-max-age", "CORS is not built yet"),
    ("limit-rps", "weir has no request-rate limiter yet"),
    ("limit-rpm", "weir has no request-rate limiter yet"),
    (
        "limit-connections",
        "weir has no per-client connection limiter yet (--max-connections is global)",
    ),
    (
        "limit-burst-multiplier",
        "weir has no request-rate limiter yet",
    ),
    ("auth-url", "external authentication is not supported"),
    ("auth-type", "basic authentication is not supported"),
    ("auth-secret", "basic authentication is not supported"),
    ("proxy-ssl-secret", "weir has no TLS to pods yet"),
    ("proxy-ssl-verify", "weir has no TLS to pods yet"),
    (
        "proxy-buffering",
        "weir streams responses; buffering is not configurable",
    ),
    (
        "proxy-request-buffering",
        "weir streams request bodies over 64 KiB; buffering is not configurable",
    ),
    ("ssl-passthrough", "TLS passthrough is not supported"),
    (
        "upstream-vhost",
        "not supported; use a Gateway API URLRewrite hostname",
    ),
    ("x-forwarded-prefix", "not supported"),
    ("custom-http-errors", "not supported"),
    ("default-backend", "not supported; use spec.defaultBackend"),
    (
        "service-upstream",
        "weir always balances over pod addresses",
    ),
    (
        "proxy-next-upstream",
        "weir retries connection failures (and statuses with a LoadBalancerPool's retries.onStatus)",
    ),
    ("proxy-next-upstream-timeout", "not supported"),
    ("ssl-ciphers", "weir's TLS settings are global"),
    (
        "mirror-target",
        "not supported; use a Gateway API RequestMirror",
    ),
];

const SNIPPETS: &[&str] = &[
    "configuration-snippet",
    "server-snippet",
    "location-snippet",
    "stream-snippet",
    "auth-snippet",
    "modsecurity-snippet",
];

/// Parses an Ingress's annotations. The warnings name each annotation weir does not carry out.
pub fn parse_annotations(
    annotations: Option<&BTreeMap<String, String>>,
) -> (IngressAnnotations, Vec<AnnotationWarning>) {
    let mut values: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (full, value) in annotations.into_iter().flatten() {
        let (short, weir) = if let Some(s) = full.strip_prefix(WEIR_PREFIX) {
            (s, true)
        } else if let Some(s) = full.strip_prefix(NGINX_PREFIX) {
            (s, false)
        } else {
            continue;
        };
        if KNOWN.contains(&short) {
            // weir.dev/ wins over nginx.ingress.kubernetes.io/ of the same name.
            if weir || !values.contains_key(short) {
                values.insert(short, (full.as_str(), value.as_str()));
            }
            continue;
        }
        let (kind, message) = if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == short)
        {
            (WarningKind::Unsupported, (*why).to_string())
        } else if SNIPPETS.contains(&short) {
            (
                WarningKind::Snippet,
                "nginx configuration is never executed by weir".to_string(),
            )
        } else {
            (
                WarningKind::Unknown,
                "weir does not know this annotation".to_string(),
            )
        };
        warnings.push(AnnotationWarning {
            annotation: full.clone(),
            kind,
            message,
        });
    }
    let mut parser = Parser {
        values,
        warnings,
        out: IngressAnnotations::default(),
    };
    parser.run();
    (parser.out, parser.warnings)
}

struct Parser<'a> {
    values: BTreeMap<&'a str, (&'a str, &'a str)>,
    warnings: Vec<AnnotationWarning>,
    out: IngressAnnotations,
}

impl<'a> Parser<'a> {
    fn get(&self, short: &str) -> Option<&'a str> {
        self.values.get(short).map(|(_, v)| v.trim())
    }

    fn warn(&mut self, short: &str, kind: WarningKind, message: impl Into<String>) {
        let annotation = self.values.get(short).map_or_else(
            || format!("{NGINX_PREFIX}{short}"),
            |(full, _)| full.to_string(),
        );
        self.warnings.push(AnnotationWarning {
            annotation,
            kind,
            message: message.into(),
        });
    }

    fn bad(&mut self, short: &str, message: impl Into<String>) {
        self.warn(short, WarningKind::BadValue, message);
    }

    fn bool(&mut self, short: &str) -> Option<bool> {
        let v = self.get(short)?;
        match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.bad(short, format!("{v:?} is not true or false"));
                None
            }
        }
    }

    fn number(&mut self, short: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.get(short)?;
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.bad(
                    short,
                    format!("{v:?} is not a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    fn run(&mut self) {
        self.out.ssl_redirect = self.bool("ssl-redirect");
        self.out.force_ssl_redirect = self.bool("force-ssl-redirect").unwrap_or(false);
        self.out.use_regex = self.bool("use-regex").unwrap_or(false);
        self.out.rewrite_target = self.get("rewrite-target").map(str::to_string);
        if let Some(v) = self.get("app-root") {
            if v.starts_with('/') && !v.contains(char::is_whitespace) {
                self.out.app_root = Some(v.to_string());
            } else {
                self.bad("app-root", format!("{v:?} is not a path"));
            }
        }
        self.redirects();
        self.affinity();
        self.balancing();
        self.canary();
        self.timeouts();
        self.protocol();
        self.out.allow_source = self
            .ranges("whitelist-source-range")
            .or_else(|| self.ranges("allowlist-source-range"));
        self.out.deny_source = self.ranges("denylist-source-range").unwrap_or_default();
    }

    fn redirects(&mut self) {
        let code = self.number("permanent-redirect-code", 300, 308);
        if let Some(url) = self.get("permanent-redirect") {
            match http::Uri::try_from(url) {
                Ok(u) if u.scheme().is_some() && u.host().is_some() => {
                    self.out.redirect = Some(FixedRedirect {
                        location: url.to_string(),
                        status: code.map_or(301, |c| c as u16),
                    });
                }
                _ => self.bad(
                    "permanent-redirect",
                    format!("{url:?} is not an absolute URL"),
                ),
            }
        }
        if let Some(url) = self.get("temporal-redirect") {
            if self.out.redirect.is_some() {
                self.bad("temporal-redirect", "permanent-redirect is set and wins");
                return;
            }
            match http::Uri::try_from(url) {
                Ok(u) if u.scheme().is_some() && u.host().is_some() => {
                    self.out.redirect = Some(FixedRedirect {
                        location: url.to_string(),
                        status: 302,
                    });
                }
                _ => self.bad(
                    "temporal-redirect",
                    format!("{url:?} is not an absolute URL"),
                ),
            }
        }
    }

    fn affinity(&mut self) {
        let Some(kind) = self.get("affinity") else {
            for short in [
                "session-cookie-name",
                "session-cookie-max-age",
                "session-cookie-expires",
                "session-cookie-path",
                "session-cookie-samesite",
                "session-cookie-secure",
                "affinity-mode",
            ] {
                if self.values.contains_key(short) {
                    self.bad(short, "has no effect without affinity: cookie");
                }
            }
            return;
        };
        if kind != "cookie" {
            self.bad(
                "affinity",
                format!("{kind:?}: weir keeps sessions by cookie only"),
            );
            return;
        }
        // ingress-nginx's default name; its cookie is a session cookie unless given a lifetime.
        let mut cookie = AffinityCookie {
            name: "INGRESSCOOKIE".to_string(),
            ttl_seconds: 0,
            ..AffinityCookie::default()
        };
        if let Some(name) = self.get("session-cookie-name") {
            if super::is_cookie_name(name) {
                cookie.name = name.to_string();
            } else {
                self.bad(
                    "session-cookie-name",
                    format!("{name:?} is not a cookie name"),
                );
            }
        }
        let max_age = self.number("session-cookie-max-age", 1, u64::from(u32::MAX));
        let expires = self.number("session-cookie-expires", 1, u64::from(u32::MAX));
        if let Some(s) = max_age.or(expires) {
            cookie.ttl_seconds = u32::try_from(s).unwrap_or(u32::MAX);
        }
        if let Some(path) = self.get("session-cookie-path") {
            if path.starts_with('/') && !path.contains([';', ' ']) {
                cookie.path = path.to_string();
            } else {
                self.bad(
                    "session-cookie-path",
                    format!("{path:?} is not a cookie path"),
                );
            }
        }
        if let Some(v) = self.get("session-cookie-samesite") {
            match v.to_ascii_lowercase().as_str() {
                "lax" => cookie.same_site = SameSite::Lax,
                "strict" => cookie.same_site = SameSite::Strict,
                "none" => {
                    cookie.same_site = SameSite::None;
                    cookie.secure = Some(true);
                }
                _ => self.bad(
                    "session-cookie-samesite",
                    format!("{v:?} is not Lax, Strict or None"),
                ),
            }
        }
        if let Some(secure) = self.bool("session-cookie-secure") {
            if cookie.same_site == SameSite::None && !secure {
                self.bad(
                    "session-cookie-secure",
                    "SameSite=None needs Secure; kept Secure",
                );
            } else {
                cookie.secure = Some(secure);
            }
        }
        if let Some(mode) = self.get("affinity-mode")
            && mode != "balanced"
        {
            self.warn(
                "affinity-mode",
                WarningKind::Unsupported,
                format!("{mode:?}: weir moves a session only when its pod fails (as balanced)"),
            );
        }
        self.out.affinity = Some(cookie);
    }

    fn balancing(&mut self) {
        if let Some(v) = self.get("load-balance") {
            self.out.algorithm = match v {
                "round_robin" => Some(Algorithm::RoundRobin),
                "ewma" => Some(Algorithm::PeakEwma),
                "least_conn" => Some(Algorithm::LeastConnections),
                "random" => Some(Algorithm::Random),
                _ => {
                    self.bad(
                        "load-balance",
                        format!("{v:?} is not round_robin, ewma, least_conn or random"),
                    );
                    None
                }
            };
        }
        if let Some(v) = self.get("upstream-hash-by") {
            let on = if v == "$remote_addr" || v == "$binary_remote_addr" {
                Some(HashOn {
                    source_ip: Some(true),
                    ..HashOn::default()
                })
            } else if let Some(h) = v.strip_prefix("$http_") {
                Some(HashOn {
                    header: Some(h.replace('_', "-")),
                    ..HashOn::default()
                })
            } else {
                v.strip_prefix("$cookie_").map(|c| HashOn {
                    cookie: Some(c.to_string()),
                    ..HashOn::default()
                })
            };
            match on {
                Some(on)
                    if on
                        .header
                        .as_ref()
                        .is_none_or(|h| http::HeaderName::try_from(h.as_str()).is_ok()) =>
                {
                    self.out.hash_on = Some(on);
                    self.out.algorithm = Some(Algorithm::ConsistentHash);
                }
                _ => self.bad(
                    "upstream-hash-by",
                    format!("{v:?}: weir hashes on $remote_addr, $http_NAME or $cookie_NAME"),
                ),
            }
        }
    }

    fn canary(&mut self) {
        let on = self.bool("canary").unwrap_or(false);
        let names = [
            "canary-weight",
            "canary-weight-total",
            "canary-by-header",
            "canary-by-header-value",
            "canary-by-cookie",
        ];
        if !on {
            for short in names {
                if self.values.contains_key(short) {
                    self.bad(short, "has no effect without canary: \"true\"");
                }
            }
            return;
        }
        let total = self
            .number("canary-weight-total", 1, 1_000_000)
            .unwrap_or(100) as u32;
        let weight = self
            .number("canary-weight", 0, u64::from(total))
            .unwrap_or(0) as u32;
        let header = self.get("canary-by-header").map(str::to_string);
        if let Some(h) = &header
            && http::HeaderName::try_from(h.as_str()).is_err()
        {
            self.bad("canary-by-header", format!("{h:?} is not a header name"));
        }
        let header = header.filter(|h| http::HeaderName::try_from(h.as_str()).is_ok());
        let header_value = self.get("canary-by-header-value").map(str::to_string);
        if header_value.is_some() && header.is_none() {
            self.bad(
                "canary-by-header-value",
                "has no effect without canary-by-header",
            );
        }
        self.out.canary = Some(CanaryRules {
            weight,
            weight_total: total,
            by_header: header,
            by_header_value: header_value,
            by_cookie: self.get("canary-by-cookie").map(str::to_string),
        });
    }

    fn timeouts(&mut self) {
        // ingress-nginx takes seconds (nginx time units too: `5s`).
        let seconds = |p: &mut Self, short: &str, max: u64| -> Option<u64> {
            let v = p.get(short)?;
            match v.strip_suffix('s').unwrap_or(v).parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Some(n),
                _ => {
                    p.bad(
                        short,
                        format!("{v:?} is not a number of seconds from 1 to {max}"),
                    );
                    None
                }
            }
        };
        self.out.connect_timeout_millis =
            seconds(self, "proxy-connect-timeout", 60).map(|s| s as u32 * 1000);
        self.out.read_timeout_seconds = seconds(self, "proxy-read-timeout", 3600).map(|s| s as u32);
        if let Some(v) = self.get("proxy-body-size") {
            match parse_size(v) {
                Some(0) => self.out.body_size = Some(None),
                Some(n) => self.out.body_size = Some(Some(n)),
                None => self.bad(
                    "proxy-body-size",
                    format!("{v:?} is not a size (like 8m, 512k or 0)"),
                ),
            }
        }
        // weir allows five retries: six attempts in all.
        if let Some(n) = self.number("proxy-next-upstream-tries", 0, 6) {
            self.out.next_upstream_tries = Some(n as u32);
        }
    }

    fn protocol(&mut self) {
        let Some(v) = self.get("backend-protocol") else {
            return;
        };
        match v.to_ascii_uppercase().as_str() {
            "HTTP" => self.out.backend_protocol = BackendProtocol::Http,
            "GRPC" | "H2C" => self.out.backend_protocol = BackendProtocol::H2c,
            "HTTPS" | "GRPCS" | "AUTO_HTTP" | "FCGI" => self.warn(
                "backend-protocol",
                WarningKind::Unsupported,
                format!("{v}: weir has no TLS to pods yet; sent as plain HTTP/1.1"),
            ),
            _ => self.bad(
                "backend-protocol",
                format!("{v:?} is not HTTP, GRPC or H2C"),
            ),
        }
    }

    fn ranges(&mut self, short: &str) -> Option<Vec<ipnet::IpNet>> {
        let v = self.get(short)?;
        let mut out = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(n) => out.push(n.trunc()),
                // The good entries still apply: an allow list then lets in fewer clients
                // than meant, never more.
                Err(_) => self.bad(
                    short,
                    format!("{item:?} is not an address or CIDR range; left out"),
                ),
            }
        }
        Some(out)
    }
}

/// An nginx size: bytes, or with `k`/`m`/`g` (either case).
fn parse_size(v: &str) -> Option<u64> {
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 'b'),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        'b' => 1,
        'k' => 1024,
        'm' => 1024 * 1024,
        'g' => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests;
