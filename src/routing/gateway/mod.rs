//! Gateway API's own rules, as pure functions over the `api::gateway` types: which listeners a
//! route attaches to, which hostnames it takes there, in which order rules of many routes are
//! tried, how a match and a filter are compiled and applied; and what one Gateway socket
//! serves (`port`). `routing::compile` uses them to turn Gateways and routes into the table.

mod addresses;
mod attach;
mod filter;
mod grpc;
mod hostname;
mod listener;
mod matching;
mod mirror;
mod pod_ports;
mod port;
mod precedence;
mod reference;

pub use addresses::{AddressError, GatewayAddresses, assign};
pub use attach::{Refusal, Route, RouteKind, allowed_kinds, attach, names_gateway, selects};
pub use filter::{FilterError, HeaderEdit, Redirect, Rewrite};
pub use grpc::as_http_route;
pub use hostname::{HostnameError, Intersection, intersect, listener_order, validate_hostname};
pub use listener::{ListenerProblem, Protocol, judge_listeners};
pub use matching::{MatchError, PathMatch, RegexSite, RequestMatch};
pub use mirror::{Mirror, MirrorError, Sample};
pub use pod_ports::{PodPorts, PortRange, PortRangeError, assign_pod_ports};
pub use port::{
    GatewayPort, ListenerRef, RequestFacts, RouteRule, RuleBackends, RuleFilters, RuleMatch,
};
pub use precedence::{RuleKey, rule_key};
pub use reference::{Side, permits};
