//! The Kubernetes side that writes: leader election, and the status the leader writes (of
//! pools, and of GatewayClasses, Gateways and HTTPRoutes), and the Services of Gateways.

pub mod gateway_service;
pub mod gateway_status;
pub mod ingress_status;
pub mod lease;
pub mod status;
