//! Who the client is, and what weir says about itself: `X-Forwarded-*` trust, `Via` and
//! `Server`.
//!
//! A client may claim any `X-Forwarded-For` it likes. Weir appends the peer it saw and
//! believes the header only as far back as the chain runs through `--trusted-proxies`, as a
//! load balancer in front of weir (a cloud LB, a CDN) needs.

use super::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use http::Version;
use http::header::{self, HeaderMap, HeaderValue};
use ipnet::IpNet;
use std::io::Write as _;
use std::net::IpAddr;

/// How requests and responses are marked on their way through.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    /// Peers whose `X-Forwarded-For`, `-Proto` and `-Host` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Add `Via: <version> weir` to requests and responses.
    pub via: bool,
    /// Replace the upstream's `Server` response header with this; `None` passes it unchanged.
    pub server: Option<HeaderValue>,
}

impl Forwarding {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the last address
    /// in `X-Forwarded-For` that is not one (the nearest hop nobody trusted vouches for).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.trusted_proxies.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            let Some(ip) = parse_hop(hop) else {
                // A hop that is not an address: nothing beyond it can be believed.
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// Adds `X-Forwarded-For` (the peer appended to what came), and `-Proto` and `-Host`,
    /// which only a trusted peer may set for weir.
    pub fn add_forwarded(
        &self,
        headers: &mut HeaderMap,
        peer: IpAddr,
        proto: &'static str,
        host: &str,
    ) {
        let peer = canonical(peer);
        // Every X-Forwarded-For line, in order, then the peer: one chain in one line.
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let xff = if prior.is_empty() {
            // The usual case, written on the stack: an address is at most 45 bytes.
            let mut buf = [0u8; 64];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{peer}");
            let end = cursor.position() as usize;
            HeaderValue::from_bytes(&buf[..end])
        } else {
            HeaderValue::from_str(&format!("{}, {peer}", prior.join(", ")))
        };
        headers.remove(&X_FORWARDED_FOR);
        if let Ok(v) = xff {
            headers.insert(X_FORWARDED_FOR, v);
        }
        let trusted = !self.trusted_proxies.is_empty() && self.trusts(peer);
        if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
            // The Host header's own value when it is the host (a shared copy, not a new one).
            let value = match headers.get(header::HOST) {
                Some(v) if v.as_bytes() == host.as_bytes() => Ok(v.clone()),
                _ => HeaderValue::from_str(host),
            };
            if let Ok(v) = value {
                headers.insert(X_FORWARDED_HOST, v);
            }
        }
    }

    /// Marks a message that passed through weir, when `via` is on.
    pub fn add_via(&self, headers: &mut HeaderMap, received: Version) {
        if !self.via {
            return;
        }
        let value = match received {
            Version::HTTP_10 => "1.0 weir",
            Version::HTTP_2 => "2 weir",
            _ => "1.1 weir",
        };
        headers.append(header::VIA, HeaderValue::from_static(value));
    }

    /// Sets the response's `Server` header, when one is configured.
    pub fn set_server(&self, headers: &mut HeaderMap) {
        if let Some(server) = &self.server {
            headers.insert(header::SERVER, server.clone());
        }
    }
}

/// An IPv4 peer on a dual-stack socket shows as `::ffff:a.b.c.d`; CIDRs are written as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, maybe bracketed or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding(trusted: &[&str]) -> Forwarding {
        Forwarding {
            trusted_proxies: trusted.iter().map(|c| c.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let f = forwarding(&["10.0.0.0/8"]);
        assert_eq!(
            f.client_ip(ip("192.0.2.1"), &xff("203.0.113.9")),
            ip("192.0.2.1")
        );
        assert_eq!(
            forwarding(&[]).client_ip(ip("10.1.1.1"), &xff("203.0.113.9")),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn trusted_hops_are_walked_back_to_the_first_untrusted_one() {
        let f = forwarding(&["10.0.0.0/8", "fd00::/8"]);
        // The client forged the leftmost entry; the nearest untrusted hop is 198.51.100.4.
        let h = xff("1.2.3.4, 198.51.100.4, 10.0.0.7");
        assert_eq!(f.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.4"));
        // Every hop trusted: the farthest one is the client.
        assert_eq!(
            f.client_ip(ip("10.0.0.1"), &xff("10.2.2.2")),
            ip("10.2.2.2")
        );
        // Garbage stops the walk at the last believed address.
        assert_eq!(
            f.client_ip(ip("10.0.0.1"), &xff("nonsense, 10.3.3.3")),
            ip("10.3.3.3")
        );
        // Ports and brackets are allowed; mapped IPv4 peers match IPv4 CIDRs.
        assert_eq!(
            f.client_ip(ip("::ffff:10.0.0.1"), &xff("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
        assert_eq!(
            f.client_ip(ip("fd00::1"), &xff("192.0.2.8:5000")),
            ip("192.0.2.8")
        );
    }

    #[test]
    fn forwarded_headers_are_appended_and_only_trusted_peers_set_proto_and_host() {
        let f = forwarding(&["10.0.0.0/8"]);
        let mut h = xff("203.0.113.7");
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("forged.test"));
        f.add_forwarded(&mut h, ip("192.0.2.1"), "http", "a.test");
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.7, 192.0.2.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "a.test");

        let mut h = xff("203.0.113.7");
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        f.add_forwarded(&mut h, ip("10.0.0.2"), "http", "a.test");
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.7, 10.0.0.2");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "a.test");
    }

    #[test]
    fn via_and_server_are_off_unless_asked() {
        let mut h = HeaderMap::new();
        let off = Forwarding::default();
        off.add_via(&mut h, Version::HTTP_11);
        off.set_server(&mut h);
        assert!(h.is_empty());
        let on = Forwarding {
            via: true,
            server: Some(HeaderValue::from_static("edge")),
            ..Default::default()
        };
        h.insert(header::SERVER, HeaderValue::from_static("nginx/1.2.3"));
        on.add_via(&mut h, Version::HTTP_2);
        on.set_server(&mut h);
        assert_eq!(h[header::VIA], "2 weir");
        assert_eq!(h[header::SERVER], "edge");
    }
}
