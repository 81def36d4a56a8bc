//! Gateway sockets that would not bind, folded into what compile says of their listeners.
//!
//! Compile judges a listener by its spec alone; only the app knows whether its socket opened.
//! The spec's words for a listener whose port is in use (or whose address is not on this
//! host) are `Accepted=False` reason `PortUnavailable` ("the port is already in use"), and,
//! as weir tries the bind again every second and the listener may yet come up,
//! `Programmed=False` reason `Pending` ("not yet online and ready to accept client traffic";
//! `Invalid` is for a listener whose spec is wrong, which this one's is not). The Gateway's
//! own `Programmed` turns False only when none of its listeners is programmed, with reason
//! `AddressNotUsable` ("a provided static address can't be used", "the address is already in
//! use"), naming the sockets.

use crate::api::Condition;
use crate::routing::{GatewayReport, GatewayStatuses, RoutingTable};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// `statuses` as they are once the sockets in `failed` (address → why) did not bind; the
/// listeners on each come from `table` (the table in service, which asked for the sockets).
pub fn with_bind_failures(
    statuses: &GatewayStatuses,
    table: &RoutingTable,
    failed: &BTreeMap<SocketAddr, String>,
) -> GatewayStatuses {
    let mut out = statuses.clone();
    if failed.is_empty() {
        return out;
    }
    let mut touched = BTreeSet::new();
    for (addr, why) in failed {
        let Some(port) = table.gateway_port(addr) else {
            continue;
        };
        for listener in &port.listeners {
            let Some(report) = out.gateways.get_mut(&listener.gateway) else {
                continue;
            };
            let Some(status) = report
                .listeners
                .iter_mut()
                .find(|l| l.name == listener.listener)
            else {
                continue;
            };
            let message = format!("cannot listen on {addr}: {why} (tried again every second)");
            let generation = report.observed_generation;
            set(
                &mut status.conditions,
                condition("Accepted", "PortUnavailable", &message, generation),
            );
            set(
                &mut status.conditions,
                condition("Programmed", "Pending", &message, generation),
            );
            touched.insert(listener.gateway.clone());
        }
    }
    for key in touched {
        if let Some(report) = out.gateways.get_mut(&key) {
            // This Gateway's sockets: in service mode every Gateway's address is 0.0.0.0, so
            // the address alone does not say whose a socket is.
            let own: BTreeMap<SocketAddr, String> = failed
                .iter()
                .filter(|(addr, _)| {
                    table
                        .gateway_port(addr)
                        .is_some_and(|p| p.listeners.iter().any(|l| l.gateway == key))
                })
                .map(|(a, w)| (*a, w.clone()))
                .collect();
            gateway_programmed(report, &own);
        }
    }
    out
}

/// Turns the Gateway's `Programmed` False when none of its listeners is programmed (`failed`:
/// its sockets that did not bind).
fn gateway_programmed(report: &mut GatewayReport, failed: &BTreeMap<SocketAddr, String>) {
    let programmed = report.listeners.iter().any(|l| {
        l.conditions
            .iter()
            .any(|c| c.type_ == "Programmed" && c.is_true())
    });
    if programmed {
        return;
    }
    let sockets: Vec<String> = failed
        .iter()
        .map(|(addr, why)| format!("{addr}: {why}"))
        .collect();
    let message = format!(
        "no listener is served: cannot listen on {}",
        sockets.join("; ")
    );
    set(
        &mut report.conditions,
        condition(
            "Programmed",
            "AddressNotUsable",
            &message,
            report.observed_generation,
        ),
    );
}

fn condition(type_: &str, reason: &str, message: &str, generation: Option<i64>) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: "False".to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: None,
        observed_generation: generation,
    }
}

/// Replaces the condition of `c`'s type, or adds it.
fn set(conditions: &mut Vec<Condition>, c: Condition) {
    match conditions.iter_mut().find(|old| old.type_ == c.type_) {
        Some(old) => *old = c,
        None => conditions.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectKey;
    use crate::testkit::{StoreBuilder, gateway, gateway_class, http_listener};
    use serde_json::json;

    fn of<'a>(conditions: &'a [Condition], type_: &str) -> (&'a str, &'a str) {
        let c = conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"));
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_socket_that_would_not_bind_leaves_its_listener_pending_and_the_gateway_programmed_while_another_serves()
     {
        let compiled = StoreBuilder::default()
            .gateway_class(gateway_class())
            .gateway(gateway(
                "ns",
                "gw",
                Some("127.0.0.9"),
                json!([
                    http_listener("a", 8001, None),
                    http_listener("b", 8002, None)
                ]),
            ))
            .compile();
        let key = ObjectKey::new("ns", "gw");
        let one: BTreeMap<SocketAddr, String> = [(
            "127.0.0.9:8001".parse().expect("an address"),
            "Address already in use (os error 98)".to_string(),
        )]
        .into();
        let folded = with_bind_failures(&compiled.gateway, &compiled.table, &one);
        let report = &folded.gateways[&key];
        assert_eq!(
            of(&report.listeners[0].conditions, "Accepted"),
            ("False", "PortUnavailable")
        );
        assert_eq!(
            of(&report.listeners[0].conditions, "Programmed"),
            ("False", "Pending")
        );
        assert!(
            report.listeners[0].conditions[0]
                .message
                .contains("Address already in use")
        );
        assert_eq!(
            of(&report.listeners[1].conditions, "Programmed"),
            ("True", "Programmed")
        );
        assert_eq!(
            of(&report.conditions, "Programmed"),
            ("True", "Programmed"),
            "one listener still serves"
        );
        // The other conditions, and the generation, are compile's.
        assert_eq!(
            of(&report.listeners[0].conditions, "ResolvedRefs"),
            ("True", "ResolvedRefs")
        );

        let both: BTreeMap<SocketAddr, String> = one
            .into_iter()
            .chain([(
                "127.0.0.9:8002".parse().expect("an address"),
                "Cannot assign requested address (os error 99)".to_string(),
            )])
            .collect();
        let folded = with_bind_failures(&compiled.gateway, &compiled.table, &both);
        let report = &folded.gateways[&key];
        assert_eq!(
            of(&report.conditions, "Programmed"),
            ("False", "AddressNotUsable")
        );
        assert_eq!(of(&report.conditions, "Accepted"), ("True", "Accepted"));
        let message = &report
            .conditions
            .iter()
            .find(|c| c.type_ == "Programmed")
            .expect("Programmed")
            .message;
        assert!(message.contains("127.0.0.9:8001") && message.contains("127.0.0.9:8002"));

        // No failure: compile's word stands.
        assert_eq!(
            with_bind_failures(&compiled.gateway, &compiled.table, &BTreeMap::new()),
            compiled.gateway
        );
    }
}
