//! The open-file limit. Every client and every pod connection is a file descriptor, and the
//! usual soft limit (1024) would cap weir far below `--max-connections`; the hard limit is
//! what the administrator meant, so weir raises its soft limit to it at start, as Go's
//! runtime and nginx's `worker_rlimit_nofile` do.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft open-file limit to the hard one; returns the limit now in force (`None`:
/// unlimited or unknown).
pub fn raise() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(_) => limit.current,
    }
}

/// Descriptors one client connection may need at worst: itself and one to a pod.
pub const PER_CONNECTION: u64 = 2;

/// Descriptors kept for listeners, the API server, health checks and files.
pub const RESERVED: u64 = 256;

#[cfg(test)]
mod tests {
    #[test]
    fn raising_never_lowers_the_limit() {
        let before = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let after = super::raise();
        match (before, after) {
            (Some(b), Some(a)) => assert!(a >= b),
            (_, None) => {}
            (None, Some(a)) => panic!("an unlimited limit became {a}"),
        }
    }
}
