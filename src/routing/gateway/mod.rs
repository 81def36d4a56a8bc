//! Gateway API's own rules, as pure functions over the `api::gateway` types: which hostnames
//! a route takes on a listener, and in which order rules of many routes are tried. Compile
//! uses them to turn Gateways and routes into the one routing table.

mod hostname;
mod precedence;

pub use hostname::{HostnameError, Intersection, intersect, listener_order, validate_hostname};
pub use precedence::{RuleKey, rule_key};
