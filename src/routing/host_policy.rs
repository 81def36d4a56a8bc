//! Which namespace may claim which hosts. Without a policy any namespace may claim any host
//! not yet held (as with ingress-nginx), so a team can squat another's host and answer for it
//! with its own certificate. A policy is an allow list: a namespace claims a host only where
//! one of its patterns covers it (`--allow-hosts shop=shop.example.com,*.shop.example.com`).

use std::collections::BTreeMap;

/// An allow list of host patterns per namespace, or open (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// None: open. Some: each namespace's patterns; a namespace not listed claims no host.
    rules: Option<BTreeMap<String, Vec<HostPattern>>>,
}

/// One allowed pattern: an exact host, `*.parent` (the subdomains of parent, and the wildcard
/// route `*.parent` itself), or `*` (every host, the catch-all route included).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Subdomains(String),
    Any,
}

/// A malformed `--allow-hosts` rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostPolicyError {
    #[error("{0:?} is not NAMESPACE=HOST[,HOST...]")]
    Shape(String),
    #[error("{0:?} is not a host, *.domain or *")]
    Pattern(String),
}

impl HostPolicy {
    /// Any namespace may claim any host.
    pub fn open() -> Self {
        HostPolicy::default()
    }

    /// An allow list from rules like `shop=shop.example.com,*.shop.example.com`; a namespace
    /// may be named in several rules.
    pub fn from_rules<S: AsRef<str>>(rules: &[S]) -> Result<Self, HostPolicyError> {
        let mut map: BTreeMap<String, Vec<HostPattern>> = BTreeMap::new();
        for rule in rules {
            let rule = rule.as_ref();
            let (namespace, hosts) = rule
                .split_once('=')
                .filter(|(ns, hosts)| !ns.trim().is_empty() && !hosts.trim().is_empty())
                .ok_or_else(|| HostPolicyError::Shape(rule.to_string()))?;
            let patterns = map.entry(namespace.trim().to_string()).or_default();
            for host in hosts.split(',') {
                patterns.push(HostPattern::parse(host.trim())?);
            }
        }
        Ok(HostPolicy { rules: Some(map) })
    }

    pub fn is_open(&self) -> bool {
        self.rules.is_none()
    }

    /// Whether `namespace` may claim a route for `host` ("" is the catch-all route, "*.x" a
    /// wildcard route).
    pub fn allows(&self, namespace: &str, host: &str) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        rules
            .get(namespace)
            .is_some_and(|patterns| patterns.iter().any(|p| p.covers(host)))
    }
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, HostPolicyError> {
        let bad = || HostPolicyError::Pattern(text.to_string());
        if text == "*" {
            return Ok(HostPattern::Any);
        }
        let (pattern, name): (fn(String) -> HostPattern, &str) = match text.strip_prefix("*.") {
            Some(parent) => (HostPattern::Subdomains, parent),
            None => (HostPattern::Exact, text),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(pattern(name.to_ascii_lowercase()))
    }

    fn covers(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => host == h,
            HostPattern::Subdomains(parent) => {
                let sub = host.strip_prefix("*.").unwrap_or(host);
                sub.strip_suffix(parent.as_str())
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
                    || host.strip_prefix("*.") == Some(parent.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_allows_everything() {
        let p = HostPolicy::open();
        assert!(p.allows("any", "shop.example.com") && p.allows("any", ""));
    }

    #[test]
    fn a_namespace_claims_only_what_its_patterns_cover() {
        let p = HostPolicy::from_rules(&["shop=shop.example.com,*.shop.example.com", "ops=*"])
            .expect("parses");
        assert!(p.allows("shop", "shop.example.com"));
        assert!(p.allows("shop", "api.shop.example.com"));
        assert!(p.allows("shop", "*.shop.example.com"));
        assert!(p.allows("shop", "*.eu.shop.example.com"));
        assert!(
            !p.allows("shop", "myshop.example.com"),
            "a suffix is not a subdomain"
        );
        assert!(!p.allows("shop", "example.com"));
        assert!(!p.allows("shop", ""), "the catch-all route needs *");
        assert!(
            !p.allows("other", "shop.example.com"),
            "unlisted namespaces claim nothing"
        );
        assert!(p.allows("ops", "") && p.allows("ops", "anything.test"));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        assert_eq!(
            HostPolicy::from_rules(&["shop"]),
            Err(HostPolicyError::Shape("shop".into()))
        );
        assert_eq!(
            HostPolicy::from_rules(&["shop=a..b"]),
            Err(HostPolicyError::Pattern("a..b".into()))
        );
        assert_eq!(
            HostPolicy::from_rules(&["shop=*.*.x"]),
            Err(HostPolicyError::Pattern("*.*.x".into()))
        );
    }
}
