//! The Kubernetes side that writes: leader election, and pool status written by the leader.

pub mod lease;
pub mod status;
