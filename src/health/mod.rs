//! Endpoint health beyond Kubernetes readiness: active checks that follow the routing table,
//! passive outlier ejection from live traffic, and the live status they add up to.

mod checker;
mod outlier;
mod status;

pub use checker::Checker;
pub use outlier::{Outcome, record_outcome};
pub use status::live_status;
