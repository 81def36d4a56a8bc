//! The Kubernetes side that writes: leader election, and the status the leader writes (of
//! pools, and of GatewayClasses, Gateways and HTTPRoutes).

pub mod gateway_status;
pub mod lease;
pub mod status;
