//! Header rewriting between client and upstream: hop-by-hop headers out, forwarding headers in.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether a request asks to switch protocols (WebSocket and the like): an HTTP/1.1 request
/// with `Upgrade` and a `Connection` header that names it.
pub fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    connection_tokens(headers)
        .any(|t| t.eq_ignore_ascii_case("upgrade"))
        .then(|| upgrade.clone())
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, and those the `Connection` header names. When `upgrade` is set,
/// the message keeps asking for (or agreeing to) that protocol switch.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    // One pass over the names finds what is there (most messages carry one of these, or
    // none), instead of hashing every hop-by-hop name into the map.
    // The hop-by-hop names and Upgrade: at most nine distinct ones.
    let mut present: [Option<HeaderName>; 9] = Default::default();
    let mut found = 0;
    for name in headers.keys() {
        if found < present.len()
            && (*name == header::UPGRADE || HOP_BY_HOP.contains(name))
            && !present[..found].iter().flatten().any(|p| p == name)
        {
            present[found] = Some(name.clone());
            found += 1;
        }
    }
    if found == 0 && upgrade.is_none() {
        return;
    }
    // Names removed anyway (and `close`) are skipped: the usual `Connection: keep-alive` then
    // costs no allocation.
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| {
            !t.eq_ignore_ascii_case("close")
                && !t.eq_ignore_ascii_case(header::UPGRADE.as_str())
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // `TE: trailers` is the one TE value HTTP/2 allows, and gRPC needs it end to end.
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in present.iter().flatten() {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, if it is there.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// Removes cookie `name` from the request's `Cookie` headers, leaving the others as they were.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    if cookie(headers, name).is_none() {
        return;
    }
    let kept: Vec<Vec<u8>> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| {
            let pairs: Vec<&[u8]> = v
                .as_bytes()
                .split(|&b| b == b';')
                .map(|p| p.trim_ascii())
                .filter(|p| {
                    let n = p.iter().position(|&b| b == b'=').map_or(*p, |eq| &p[..eq]);
                    !p.is_empty() && n.trim_ascii() != name.as_bytes()
                })
                .collect();
            pairs.join(&b"; "[..])
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        if let Ok(v) = HeaderValue::from_bytes(&v) {
            headers.append(header::COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, None);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let up = upgrade_requested(&h);
        assert_eq!(up.as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        remove_hop_by_hop(&mut h, up);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(upgrade_requested(&map(&[("upgrade", "websocket")])).is_none());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = map(&[("cookie", "a=1; session=abc ;b=2"), ("cookie", "late=z")]);
        assert_eq!(cookie(&h, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie(&h, "late"), Some(&b"z"[..]));
        assert_eq!(cookie(&h, "sess"), None);
        assert_eq!(cookie(&map(&[("cookie", "novalue; x")]), "x"), None);
    }

    #[test]
    fn removing_a_cookie_keeps_the_others() {
        let mut h = map(&[
            ("cookie", "a=1; weir-affinity=xyz; b=2"),
            ("cookie", "weir-affinity=q"),
        ]);
        remove_cookie(&mut h, "weir-affinity");
        let values: Vec<_> = h
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(values, ["a=1; b=2"]);
        let mut untouched = map(&[("cookie", "a=1;b=2")]);
        remove_cookie(&mut untouched, "weir-affinity");
        assert_eq!(untouched["cookie"], "a=1;b=2");
    }
}
