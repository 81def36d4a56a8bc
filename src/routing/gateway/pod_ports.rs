//! Which pod-side port serves each Gateway listener port when Gateways are exposed by a Service
//! of their own ("service mode", `weir run` in a cluster without `--gateway-addresses`).
//!
//! Every weir pod binds `0.0.0.0:<pod port>` for each (Gateway, listener port), and the
//! Gateway's Service maps the listener port to it (`targetPort`). Ports come from a range
//! (`--gateway-ports`); the oldest Gateway keeps a contested port, and a port once given stays
//! with its Gateway while it lives. What a Gateway "had" comes first from its Service (what
//! the leader wrote, so every replica agrees with the one that wrote it), then from the table
//! in service (before the Service exists).

use crate::store::ObjectKey;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

/// Listener port → pod port, per Gateway.
pub type PodPorts = BTreeMap<ObjectKey, BTreeMap<u16, u16>>;

/// A range of TCP ports, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl Default for PortRange {
    /// Above the usual service ports, below Linux's ephemeral range (32768 and up), so a
    /// socket weir binds does not meet an outgoing connection's.
    fn default() -> Self {
        PortRange {
            first: 20000,
            last: 29999,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Why `--gateway-ports` is not a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    #[error("{0:?} is not FIRST-LAST (e.g. 20000-29999)")]
    Shape(String),
    #[error("{0:?} is not a port from 1 to 65535")]
    Port(String),
    #[error("the range {0}-{1} ends before it starts")]
    Backwards(u16, u16),
}

impl FromStr for PortRange {
    type Err = PortRangeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| PortRangeError::Shape(s.to_string()))?;
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| PortRangeError::Port(p.to_string()))
        };
        let (first, last) = (port(a)?, port(b)?);
        if last < first {
            return Err(PortRangeError::Backwards(first, last));
        }
        Ok(PortRange { first, last })
    }
}

/// The pod port of each listener port of each Gateway in `gateways` (oldest first, each with
/// its listener ports). `held` are what Gateways had, most trusted first (their Services,
/// then the table in service). A listener port left out of the answer found no free port.
pub fn assign_pod_ports<'g>(
    gateways: impl IntoIterator<Item = (&'g ObjectKey, BTreeSet<u16>)>,
    held: &[&PodPorts],
    range: PortRange,
) -> PodPorts {
    let gateways: Vec<(&ObjectKey, BTreeSet<u16>)> = gateways.into_iter().collect();
    let mut out: PodPorts = BTreeMap::new();
    let mut taken: HashSet<u16> = HashSet::new();
    // Those that had a port keep it first (oldest first, so the older keeps a contested one),
    // then the others take the lowest free ones.
    let mut fresh = Vec::new();
    for (key, ports) in &gateways {
        for &port in ports {
            let kept = held
                .iter()
                .filter_map(|h| h.get(*key)?.get(&port).copied())
                .find(|p| range.contains(*p) && !taken.contains(p));
            match kept {
                Some(pod) => {
                    taken.insert(pod);
                    out.entry((*key).clone()).or_default().insert(port, pod);
                }
                None => fresh.push((*key, port)),
            }
        }
    }
    let mut free = (range.first..=range.last).filter(|p| !taken.contains(p));
    for (key, port) in fresh {
        let Some(pod) = free.next() else { break };
        out.entry(key.clone()).or_default().insert(port, pod);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    fn ports(list: &[u16]) -> BTreeSet<u16> {
        list.iter().copied().collect()
    }

    const RANGE: PortRange = PortRange {
        first: 20000,
        last: 20003,
    };

    #[test]
    fn ranges_parse() {
        assert_eq!("20000-29999".parse(), Ok(PortRange::default()));
        assert_eq!(
            " 1 - 2 ".parse(),
            Ok(PortRange { first: 1, last: 2 }),
            "spaces around the ends are fine"
        );
        assert!(matches!(
            "20000".parse::<PortRange>(),
            Err(PortRangeError::Shape(_))
        ));
        assert!(matches!(
            "0-10".parse::<PortRange>(),
            Err(PortRangeError::Port(_))
        ));
        assert!(matches!(
            "10-70000".parse::<PortRange>(),
            Err(PortRangeError::Port(_))
        ));
        assert_eq!(
            "10-9".parse::<PortRange>(),
            Err(PortRangeError::Backwards(10, 9))
        );
    }

    #[test]
    fn fresh_gateways_take_the_lowest_free_ports_in_age_order() {
        let (a, b) = (key("a"), key("b"));
        let out = assign_pod_ports([(&a, ports(&[80, 8080])), (&b, ports(&[80]))], &[], RANGE);
        assert_eq!(out[&a], BTreeMap::from([(80, 20000), (8080, 20001)]));
        assert_eq!(out[&b], BTreeMap::from([(80, 20002)]));
    }

    #[test]
    fn a_port_once_given_stays_and_freed_ports_are_reused() {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let first = assign_pod_ports(
            [(&a, ports(&[80])), (&b, ports(&[80])), (&c, ports(&[80]))],
            &[],
            RANGE,
        );
        // `a` goes; `c` keeps its port, `b` adds a listener, a new `d` takes the freed one.
        let d = key("d");
        let next = assign_pod_ports(
            [
                (&b, ports(&[80, 443])),
                (&c, ports(&[80])),
                (&d, ports(&[80])),
            ],
            &[&first],
            RANGE,
        );
        assert_eq!(next[&b], BTreeMap::from([(80, 20001), (443, 20000)]));
        assert_eq!(next[&c], BTreeMap::from([(80, 20002)]));
        assert_eq!(next[&d], BTreeMap::from([(80, 20003)]));
        assert!(!next.contains_key(&a));
    }

    #[test]
    fn the_service_wins_over_the_table_and_the_oldest_over_a_younger() {
        let (a, b) = (key("a"), key("b"));
        // The Services (what the leader wrote) say `b` has 20003; this replica's table said
        // 20000. Both say `a` has 20001, and a stale Service says `b` has it too.
        let services: PodPorts = BTreeMap::from([
            (a.clone(), BTreeMap::from([(80, 20001)])),
            (b.clone(), BTreeMap::from([(80, 20003), (81, 20001)])),
        ]);
        let table: PodPorts = BTreeMap::from([(b.clone(), BTreeMap::from([(80, 20000)]))]);
        let out = assign_pod_ports(
            [(&a, ports(&[80])), (&b, ports(&[80, 81]))],
            &[&services, &table],
            RANGE,
        );
        assert_eq!(out[&a], BTreeMap::from([(80, 20001)]));
        assert_eq!(out[&b], BTreeMap::from([(80, 20003), (81, 20000)]));
    }

    #[test]
    fn held_ports_outside_the_range_are_given_again_and_exhaustion_leaves_ports_out() {
        let (a, b) = (key("a"), key("b"));
        let old: PodPorts = BTreeMap::from([(a.clone(), BTreeMap::from([(80, 31000)]))]);
        let out = assign_pod_ports(
            [(&a, ports(&[80, 81, 82])), (&b, ports(&[80, 81]))],
            &[&old],
            RANGE,
        );
        assert_eq!(
            out[&a],
            BTreeMap::from([(80, 20000), (81, 20001), (82, 20002)])
        );
        assert_eq!(out[&b], BTreeMap::from([(80, 20003)]), "81 found no port");
    }
}
