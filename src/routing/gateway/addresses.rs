//! Which address each Gateway listens on. A Gateway that names an `IPAddress` in
//! `spec.addresses` gets it; one that names none gets weir's default: loopback, or the next
//! free address of a range weir was given (`--gateway-addresses`), so that Gateways on the same
//! port never share a socket. An address once given stays with its Gateway while it lives.
//! In a cluster without a range, Gateways are exposed by Services of their own
//! ([`GatewayAddresses::Services`]): weir binds every address of its pod, on a port of its own
//! per listener port (`pod_ports`), and the Service holds the Gateway's address.

use super::pod_ports::PortRange;
use crate::api::gateway::Gateway;
use crate::store::ObjectKey;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

/// Where Gateways that name no address listen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GatewayAddresses {
    /// 127.0.0.1: a file tried on a laptop is not exposed to the network.
    #[default]
    Loopback,
    /// One address of this range per Gateway.
    Range(IpNet),
    /// A Service per Gateway, in weir's `namespace`, that sends each listener port to a pod
    /// port of `ports`: the Gateway's sockets are `0.0.0.0:<pod port>`.
    Services { ports: PortRange, namespace: String },
}

/// Why a Gateway has no address (the message of its `Accepted=False` condition).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address {0:?} is not an IP address")]
    NotAnIp(String),
    #[error("address type {0} is not supported (weir binds IPAddress addresses)")]
    UnsupportedType(String),
    #[error("every address of {0} is taken by another Gateway")]
    RangeExhausted(IpNet),
    /// The Service holds a Gateway's address, and weir asks for none on it.
    #[error(
        "spec.addresses is not supported when Gateways are exposed by a Service of their own \
         (weir run without --gateway-addresses); the Service's address is the Gateway's"
    )]
    ServiceMode,
}

/// The address of each Gateway in `gateways` (oldest first: the older keeps a contested
/// address); `previous` is what they had in the table in service.
pub fn assign<'g>(
    gateways: impl IntoIterator<Item = (&'g ObjectKey, &'g Gateway)>,
    previous: &BTreeMap<ObjectKey, IpAddr>,
    default: &GatewayAddresses,
) -> BTreeMap<ObjectKey, Result<IpAddr, AddressError>> {
    let mut out = BTreeMap::new();
    let mut wanting = Vec::new();
    for (key, gateway) in gateways {
        match asked(gateway) {
            Some(asked) => {
                out.insert(key.clone(), asked);
            }
            None => wanting.push(key),
        }
    }
    let range = match default {
        GatewayAddresses::Loopback => {
            for key in wanting {
                out.insert(key.clone(), Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            }
            return out;
        }
        GatewayAddresses::Range(range) => *range,
        GatewayAddresses::Services { .. } => {
            // A bad address keeps its own error; a good one cannot be honoured here.
            for asked in out.values_mut().filter(|a| a.is_ok()) {
                *asked = Err(AddressError::ServiceMode);
            }
            for key in wanting {
                out.insert(key.clone(), Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
            }
            return out;
        }
    };
    let mut taken: HashSet<IpAddr> = out.values().filter_map(|a| a.clone().ok()).collect();
    // Those that had an address keep it first, then the others take the lowest free ones.
    let mut fresh = Vec::new();
    for key in wanting {
        match previous.get(key) {
            Some(ip) if range.contains(ip) && taken.insert(*ip) => {
                out.insert(key.clone(), Ok(*ip));
            }
            _ => fresh.push(key),
        }
    }
    let mut free = range.hosts().filter(|ip| !taken.contains(ip));
    for key in fresh {
        let next = free.next().ok_or(AddressError::RangeExhausted(range));
        out.insert(key.clone(), next);
    }
    out
}

/// The address a Gateway names itself: the first of `spec.addresses`, if any.
fn asked(gateway: &Gateway) -> Option<Result<IpAddr, AddressError>> {
    let first = gateway.spec.addresses.first()?;
    Some(match first.r#type.as_deref().unwrap_or("IPAddress") {
        "IPAddress" => first
            .value
            .parse()
            .map_err(|_| AddressError::NotAnIp(first.value.clone())),
        other => Err(AddressError::UnsupportedType(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::gateway;
    use serde_json::json;

    fn gw(name: &str, address: Option<&str>) -> (ObjectKey, Gateway) {
        (
            ObjectKey::new("ns", name),
            gateway("ns", name, address, json!([])),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn addresses_come_from_the_spec_the_range_or_loopback() {
        let gateways = [gw("a", None), gw("b", Some("192.0.2.7")), gw("c", None)];
        let refs = || gateways.iter().map(|(k, g)| (k, g));
        let loopback = assign(refs(), &BTreeMap::new(), &GatewayAddresses::Loopback);
        assert_eq!(loopback[&gateways[0].0], Ok(ip("127.0.0.1")));
        assert_eq!(loopback[&gateways[1].0], Ok(ip("192.0.2.7")));
        assert_eq!(loopback[&gateways[2].0], Ok(ip("127.0.0.1")));

        let range = GatewayAddresses::Range("127.0.10.0/30".parse().expect("a range"));
        let first = assign(refs(), &BTreeMap::new(), &range);
        assert_eq!(first[&gateways[0].0], Ok(ip("127.0.10.1")));
        assert_eq!(first[&gateways[2].0], Ok(ip("127.0.10.2")));
        // `a` goes; `c` keeps its address, a new `d` takes the free one, `e` finds none.
        let previous: BTreeMap<ObjectKey, IpAddr> = first
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone().ok()?)))
            .collect();
        let later = [gateways[2].clone(), gw("d", None), gw("e", None)];
        let next = assign(later.iter().map(|(k, g)| (k, g)), &previous, &range);
        assert_eq!(next[&later[0].0], Ok(ip("127.0.10.2")));
        assert_eq!(next[&later[1].0], Ok(ip("127.0.10.1")));
        assert!(matches!(
            next[&later[2].0],
            Err(AddressError::RangeExhausted(_))
        ));
    }

    #[test]
    fn in_service_mode_gateways_take_every_address_and_name_none() {
        let gateways = [gw("a", None), gw("b", Some("192.0.2.7"))];
        let services = GatewayAddresses::Services {
            ports: PortRange::default(),
            namespace: "weir".into(),
        };
        let out = assign(
            gateways.iter().map(|(k, g)| (k, g)),
            &BTreeMap::new(),
            &services,
        );
        assert_eq!(out[&gateways[0].0], Ok(ip("0.0.0.0")));
        assert_eq!(out[&gateways[1].0], Err(AddressError::ServiceMode));
    }

    #[test]
    fn a_bad_address_is_named() {
        let (key, mut g) = gw("a", Some("not-an-ip"));
        let out = assign([(&key, &g)], &BTreeMap::new(), &GatewayAddresses::Loopback);
        assert_eq!(out[&key], Err(AddressError::NotAnIp("not-an-ip".into())));
        g.spec.addresses[0].r#type = Some("Hostname".into());
        let out = assign([(&key, &g)], &BTreeMap::new(), &GatewayAddresses::Loopback);
        assert_eq!(
            out[&key],
            Err(AddressError::UnsupportedType("Hostname".into()))
        );
    }
}
