//! Pod addresses: a range handed out lowest-free-first and reused once a pod's processes are gone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    #[error("expected FIRST-LAST (two IPv4 addresses), got {0:?}")]
    Syntax(String),
    #[error("the range {0}-{1} is empty (FIRST is after LAST)")]
    Empty(Ipv4Addr, Ipv4Addr),
}

/// An inclusive range of IPv4 addresses, `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl std::str::FromStr for IpRange {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, RangeError> {
        let syntax = || RangeError::Syntax(text.to_string());
        let (first, last) = text.split_once('-').ok_or_else(syntax)?;
        let first: Ipv4Addr = first.trim().parse().map_err(|_| syntax())?;
        let last: Ipv4Addr = last.trim().parse().map_err(|_| syntax())?;
        if u32::from(first) > u32::from(last) {
            return Err(RangeError::Empty(first, last));
        }
        Ok(IpRange { first, last })
    }
}

/// The allocator. Lowest free first, so a small test sees predictable addresses.
#[derive(Debug)]
pub struct IpPool {
    range: IpRange,
    used: BTreeSet<u32>,
}

impl IpPool {
    pub fn new(range: IpRange) -> Self {
        IpPool {
            range,
            used: BTreeSet::new(),
        }
    }

    /// A free address, or None when every one is taken.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let free = (u32::from(self.range.first)..=u32::from(self.range.last))
            .find(|ip| !self.used.contains(ip))?;
        self.used.insert(free);
        Some(Ipv4Addr::from(free))
    }

    /// Gives an address back. Freeing one that isn't taken is harmless.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&u32::from(ip));
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let range: IpRange = "10.244.3.128-10.244.3.254".parse().unwrap();
        assert_eq!(range.first, Ipv4Addr::new(10, 244, 3, 128));
        assert_eq!(range.last, Ipv4Addr::new(10, 244, 3, 254));
        assert!("10.0.0.1".parse::<IpRange>().is_err());
        assert!("10.0.0.9-10.0.0.1".parse::<IpRange>().is_err());
        assert!("a-b".parse::<IpRange>().is_err());
    }

    #[test]
    fn allocate_and_reuse() {
        let mut pool = IpPool::new("10.0.0.1-10.0.0.3".parse().unwrap());
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        let c = pool.allocate().unwrap();
        assert_eq!(
            [a, b, c],
            [
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(10, 0, 0, 3)
            ]
        );
        assert_eq!(pool.allocate(), None);
        pool.release(b);
        assert_eq!(pool.in_use(), 2);
        assert_eq!(pool.allocate(), Some(b));
        pool.release(Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(pool.in_use(), 3);
    }
}
