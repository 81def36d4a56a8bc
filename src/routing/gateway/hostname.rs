//! Listener and route hostnames (Gateway API, `HTTPRoute.spec.hostnames`): a route attaches
//! to a listener only where their hostnames intersect, and serves the intersection.

use std::cmp::Ordering;

/// What a route's hostnames come to on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intersection {
    /// Every host the listener takes (neither side names any, or only the listener does).
    Listener(Option<String>),
    /// These hosts, each exact or `*.` wildcard, most specific first.
    Hosts(Vec<String>),
    /// None in common: the route does not attach to this listener.
    None,
}

/// A hostname the spec does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("hostname {0:?} is an IP address; a hostname names a host")]
    IpAddress(String),
    #[error(
        "hostname {0:?} is not a DNS name (lowercase letters, digits, '-' and '.', with an optional leading '*.')"
    )]
    Invalid(String),
}

/// Checks a hostname as the CRD's pattern does (weir checks it again for the file source,
/// which no API server validated): a DNS name, optionally with a leading `*.` label.
pub fn validate_hostname(host: &str) -> Result<(), HostnameError> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err(HostnameError::IpAddress(host.to_string()));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !name.split('.').all(label_ok) {
        return Err(HostnameError::Invalid(host.to_string()));
    }
    Ok(())
}

/// The hostnames a route with `route` hostnames serves on a listener with `listener`'s.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Intersection {
    let listener = listener.filter(|l| !l.is_empty());
    if route.is_empty() {
        return Intersection::Listener(listener.map(str::to_string));
    }
    let Some(listener) = listener else {
        return Intersection::Hosts(sorted(route.to_vec()));
    };
    let hosts: Vec<String> = route
        .iter()
        .filter_map(|r| narrower(listener, r))
        .map(str::to_string)
        .collect();
    if hosts.is_empty() {
        Intersection::None
    } else {
        Intersection::Hosts(sorted(hosts))
    }
}

/// The narrower of two hostnames when one covers the other, else none: `*.a.test` and
/// `x.a.test` give `x.a.test`; `*.a.test` and `*.b.a.test` give `*.b.a.test`.
fn narrower<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    if covers(a, b) {
        Some(b)
    } else if covers(b, a) {
        Some(a)
    } else {
        None
    }
}

/// Whether `wide` takes every host `narrow` does. A wildcard takes one or more labels in
/// place of its `*` (so `*.a.test` takes `x.y.a.test` but not `a.test`).
fn covers(wide: &str, narrow: &str) -> bool {
    if wide == narrow {
        return true;
    }
    let Some(suffix) = wide.strip_prefix('*') else {
        return false;
    };
    // `suffix` is `.a.test`: what precedes it in `narrow` must be a label or more.
    narrow.len() > suffix.len() && narrow.ends_with(suffix) && {
        let head = &narrow[..narrow.len() - suffix.len()];
        head != "*" && !head.is_empty() && (head.starts_with("*.") || !head.contains('*'))
    }
}

/// Exact hosts before wildcards; among wildcards, more labels first; then by name, so the
/// order (and every table built from it) is the same for the same objects.
fn sorted(mut hosts: Vec<String>) -> Vec<String> {
    hosts.sort_by(|a, b| specificity(b).cmp(&specificity(a)).then_with(|| a.cmp(b)));
    hosts.dedup();
    hosts
}

fn specificity(host: &str) -> (bool, usize) {
    (!host.starts_with('*'), host.matches('.').count())
}

/// Orders two listener hostnames the way the spec says requests pick between listeners that
/// differ only by hostname: exact before wildcard, longer wildcard suffix first, then none.
pub fn listener_order(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => specificity(b).cmp(&specificity(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_route_without_hostnames_takes_the_listeners() {
        assert_eq!(intersect(None, &[]), Intersection::Listener(None));
        assert_eq!(
            intersect(Some("*.a.test"), &[]),
            Intersection::Listener(Some("*.a.test".into()))
        );
        assert_eq!(
            intersect(None, &hosts(&["*.a.test", "x.a.test"])),
            Intersection::Hosts(hosts(&["x.a.test", "*.a.test"]))
        );
    }

    #[test]
    fn the_spec_examples_intersect_as_it_says() {
        // Listener `*.example.com`: these attach, `example.com` does not.
        let l = Some("*.example.com");
        for (route, expect) in [
            ("*.example.com", Some("*.example.com")),
            ("test.example.com", Some("test.example.com")),
            ("foo.test.example.com", Some("foo.test.example.com")),
            ("*.foo.example.com", Some("*.foo.example.com")),
            ("example.com", None),
            ("example.net", None),
        ] {
            let got = intersect(l, &hosts(&[route]));
            let want = match expect {
                Some(h) => Intersection::Hosts(hosts(&[h])),
                None => Intersection::None,
            };
            assert_eq!(got, want, "{route}");
        }
        // Listener `test.example.com`: a route wildcard narrows to the listener's host.
        let l = Some("test.example.com");
        assert_eq!(
            intersect(l, &hosts(&["*.example.com", "other.example.com"])),
            Intersection::Hosts(hosts(&["test.example.com"]))
        );
        assert_eq!(
            intersect(l, &hosts(&["*.test.example.com"])),
            Intersection::None
        );
        // `*` covers one or more labels: `*.com` takes `a.b.com`.
        assert_eq!(
            intersect(Some("*.com"), &hosts(&["a.b.com"])),
            Intersection::Hosts(hosts(&["a.b.com"]))
        );
    }

    #[test]
    fn hostnames_are_checked_as_the_crd_does() {
        for ok in ["a.test", "*.a.test", "x", "a-b.c9.test"] {
            assert_eq!(validate_hostname(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "A.test", "a..test", "-a.test", "*a.test", "a.*.test", "a_b.test",
        ] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            validate_hostname("10.0.0.1"),
            Err(HostnameError::IpAddress(_))
        ));
    }

    #[test]
    fn listeners_order_from_specific_to_catch_all() {
        let mut ls = vec![
            None,
            Some("*.example.com"),
            Some("*.foo.example.com"),
            Some("foo.example.com"),
        ];
        ls.sort_by(|a, b| listener_order(*a, *b));
        assert_eq!(
            ls,
            [
                Some("foo.example.com"),
                Some("*.foo.example.com"),
                Some("*.example.com"),
                None
            ]
        );
    }
}
