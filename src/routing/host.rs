//! Host and path matching rules, shared by compile (for conflicts) and the table (for lookups).

use std::borrow::Cow;

/// The host a request names, as routes spell hosts: lowercase, no port, no trailing dot.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = strip_port(raw);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn strip_port(raw: &str) -> &str {
    if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal: keep what is inside the brackets.
        return rest.split(']').next().unwrap_or(rest);
    }
    match raw.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => raw,
    }
}

/// A route's path prefix in the form compared: no trailing slash except for the root.
pub fn normalize_prefix(prefix: &str) -> &str {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// Whether a normalized prefix takes a request path, segment by segment: `/api` takes `/api`,
/// `/api/` and `/api/v1`, but not `/apiv1`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Shop.Example.COM:8080"), "shop.example.com");
        assert_eq!(normalize_host("shop.example.com."), "shop.example.com");
        assert_eq!(normalize_host("[::1]:8080"), "::1");
        assert_eq!(normalize_host("127.0.0.1"), "127.0.0.1");
        assert!(matches!(normalize_host("a.b"), Cow::Borrowed(_)));
    }

    #[test]
    fn prefixes_match_by_segment() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apiv1"));
        assert!(!prefix_matches("/api", "/"));
        assert_eq!(normalize_prefix("/api/"), "/api");
        assert_eq!(normalize_prefix("/"), "/");
        assert_eq!(normalize_prefix("//"), "/");
    }
}
