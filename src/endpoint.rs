//! An endpoint (one pod address of one pool) and its live state.
//!
//! The routing table is rebuilt on every change, but an endpoint that stays keeps the same
//! `Arc<Endpoint>`, so its counters (and, later, its health) survive rebuilds. Everything that
//! changes per request is an atomic: the request path never locks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One pod address of one pool.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// A stable name for logs and status: the pod (`namespace/name`) when the slice names it,
    /// else the address.
    pub identity: String,
    in_flight: AtomicU64,
    requests: AtomicU64,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, identity: impl Into<String>) -> Self {
        Endpoint {
            addr,
            identity: identity.into(),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// Marks a request as started; the guard marks it finished when dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint: self.clone(),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A request in flight on an endpoint; it lives as long as the response body streams.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_follows_guards() {
        let e = Arc::new(Endpoint::new("127.0.0.1:1".parse().unwrap(), "a"));
        let g1 = e.start_request();
        let g2 = e.start_request();
        assert_eq!(e.in_flight(), 2);
        drop(g1);
        assert_eq!(e.in_flight(), 1);
        drop(g2);
        assert_eq!((e.in_flight(), e.requests()), (0, 2));
    }
}
