//! Gateway API's own rules, as pure functions over the `api::gateway` types: which listeners a
//! route attaches to, which hostnames it takes there, and in which order rules of many routes
//! are tried. Compile
//! uses them to turn Gateways and routes into the one routing table.

mod attach;
mod filter;
mod hostname;
mod listener;
mod matching;
mod precedence;
mod reference;

pub use attach::{Refusal, Route, RouteKind, allowed_kinds, attach, names_gateway, selects};
pub use filter::{FilterError, HeaderEdit, Redirect, Rewrite};
pub use hostname::{HostnameError, Intersection, intersect, listener_order, validate_hostname};
pub use listener::{ListenerProblem, Protocol, judge_listeners};
pub use matching::{MatchError, PathMatch, RegexSite, RequestMatch};
pub use precedence::{RuleKey, rule_key};
pub use reference::{Side, permits};
