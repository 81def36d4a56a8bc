//! A Gateway's listeners judged on their own (before certificates and routes): protocols weir
//! serves, listeners that cannot be told apart, and route kinds it cannot attach.

use super::attach::{RouteKind, allowed_kinds};
use crate::api::gateway::{Gateway, Listener};

/// What is wrong with one listener, as the spec's condition reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListenerProblem {
    /// `Accepted=False UnsupportedProtocol`: TCP, UDP, TLS passthrough and the like.
    #[error("protocol {0} is not served by weir (HTTP and HTTPS are)")]
    UnsupportedProtocol(Protocol),
    /// `Accepted=False UnsupportedValue`: HTTPS in `Passthrough` mode.
    #[error("tls.mode Passthrough is not served by weir: an HTTPS listener terminates TLS")]
    Passthrough,
    /// `Conflicted=True ProtocolConflict`: listeners on one port with different protocols.
    #[error("another listener on port {0} has a different protocol")]
    ProtocolConflict(i32),
    /// `Conflicted=True HostnameConflict`: listeners on one port, protocol and hostname.
    #[error("another listener on port {0} has the same protocol and hostname")]
    HostnameConflict(i32),
    /// `ResolvedRefs=False InvalidRouteKinds`: `allowedRoutes.kinds` names only kinds weir
    /// does not serve (some weir does serve: those are taken, the rest reported).
    #[error("allowedRoutes.kinds names kinds weir does not serve (HTTPRoute and GRPCRoute are)")]
    InvalidRouteKinds,
}

impl ListenerProblem {
    /// The condition this problem sets, and its reason.
    pub fn condition(self) -> (&'static str, &'static str) {
        match self {
            ListenerProblem::UnsupportedProtocol(_) => ("Accepted", "UnsupportedProtocol"),
            ListenerProblem::Passthrough => ("Accepted", "UnsupportedValue"),
            ListenerProblem::ProtocolConflict(_) => ("Conflicted", "ProtocolConflict"),
            ListenerProblem::HostnameConflict(_) => ("Conflicted", "HostnameConflict"),
            ListenerProblem::InvalidRouteKinds => ("ResolvedRefs", "InvalidRouteKinds"),
        }
    }

    /// Whether the listener still takes routes (a partly invalid kind list does; a conflict,
    /// as the spec says, takes none).
    pub fn blocks_routes(self) -> bool {
        !matches!(self, ListenerProblem::InvalidRouteKinds)
    }
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Tls,
    Tcp,
    Udp,
    /// A domain-prefixed or unknown protocol.
    Other,
}

impl Protocol {
    pub fn of(listener: &Listener) -> Protocol {
        match listener.protocol.as_str() {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            _ => Protocol::Other,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Other => "(unknown)",
        })
    }
}

/// The problems of each listener of `gateway`, in listener order.
pub fn judge_listeners(gateway: &Gateway) -> Vec<Vec<ListenerProblem>> {
    let listeners = &gateway.spec.listeners;
    listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut problems = Vec::new();
            let protocol = Protocol::of(l);
            if !matches!(protocol, Protocol::Http | Protocol::Https) {
                problems.push(ListenerProblem::UnsupportedProtocol(protocol));
            }
            let mode = l.tls.as_ref().and_then(|t| t.mode.as_deref());
            if protocol == Protocol::Https && mode == Some("Passthrough") {
                problems.push(ListenerProblem::Passthrough);
            }
            let others = listeners
                .iter()
                .enumerate()
                .filter(|(j, o)| *j != i && o.port == l.port);
            let (mut protocol_conflict, mut hostname_conflict) = (false, false);
            for (_, o) in others {
                if o.protocol != l.protocol {
                    protocol_conflict = true;
                } else if o.hostname.as_deref().unwrap_or("") == l.hostname.as_deref().unwrap_or("")
                {
                    hostname_conflict = true;
                }
            }
            if protocol_conflict {
                problems.push(ListenerProblem::ProtocolConflict(l.port));
            } else if hostname_conflict {
                problems.push(ListenerProblem::HostnameConflict(l.port));
            }
            let listed = l.allowed_routes.as_ref().map_or(0, |a| a.kinds.len());
            let served: Vec<RouteKind> = allowed_kinds(l);
            if listed > served.len() {
                problems.push(ListenerProblem::InvalidRouteKinds);
            }
            problems
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(listeners: &str) -> Gateway {
        let yaml = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{ name: g, namespace: n }}\nspec:\n  gatewayClassName: weir\n  listeners:\n{listeners}"
        );
        serde_saphyr::from_str(&yaml).expect("a Gateway")
    }

    #[test]
    fn distinct_listeners_have_no_problems() {
        let gw = gateway(
            "  - { name: a, port: 80, protocol: HTTP }\n  - { name: b, port: 80, protocol: HTTP, hostname: b.test }\n  - { name: c, port: 443, protocol: HTTPS, hostname: b.test }\n",
        );
        assert_eq!(judge_listeners(&gw), [vec![], vec![], vec![]]);
    }

    #[test]
    fn conflicts_and_unsupported_protocols_are_named() {
        let gw = gateway(
            "  - { name: a, port: 80, protocol: HTTP }\n  - { name: b, port: 80, protocol: HTTPS }\n  - { name: c, port: 90, protocol: HTTP, hostname: x.test }\n  - { name: d, port: 90, protocol: HTTP, hostname: x.test }\n  - { name: e, port: 5000, protocol: TCP }\n",
        );
        use ListenerProblem::*;
        assert_eq!(
            judge_listeners(&gw),
            [
                vec![ProtocolConflict(80)],
                vec![ProtocolConflict(80)],
                vec![HostnameConflict(90)],
                vec![HostnameConflict(90)],
                vec![UnsupportedProtocol(Protocol::Tcp)],
            ]
        );
        assert_eq!(
            ProtocolConflict(80).condition(),
            ("Conflicted", "ProtocolConflict")
        );
    }

    #[test]
    fn route_kinds_weir_does_not_serve_are_reported_and_passthrough_refused() {
        let gw = gateway(
            "  - name: a\n    port: 80\n    protocol: HTTP\n    allowedRoutes: { kinds: [{ kind: HTTPRoute }, { kind: TCPRoute }] }\n  - name: b\n    port: 443\n    protocol: HTTPS\n    tls: { mode: Passthrough }\n",
        );
        let problems = judge_listeners(&gw);
        assert_eq!(problems[0], [ListenerProblem::InvalidRouteKinds]);
        assert!(
            !problems[0][0].blocks_routes(),
            "its HTTPRoutes still attach"
        );
        assert_eq!(problems[1], [ListenerProblem::Passthrough]);
    }
}
