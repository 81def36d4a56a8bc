//! From objects to a routing table: `compile` (pure) and the table the proxy reads.
//!
//! Nothing here does I/O: objects in, `(RoutingTable, status per pool)` out.

mod compile;
pub mod gateway;
mod host;
mod host_policy;
pub mod ingress;
mod pool;
mod table;

pub use compile::{
    CompileOptions, Compiled, DEFAULT_BODY_SIZE, DEFAULT_GATEWAY_ADDRESS, GatewayReport,
    GatewayStatuses, IngressReport, IngressWarning, IngressWarningReason, ListenerReport,
    ObjectReport, ParentReport, ServicePlan, compile, compile_with, compile_with_options,
};
pub use host::{normalize_host, normalize_prefix, prefix_matches};
pub use host_policy::{HostPolicy, HostPolicyError};
pub use pool::{BackendSet, Policy, Pool, PoolTls};
pub use table::RoutingTable;
