//! Load-balancing policy: which endpoint of a set takes the next request.
//!
//! Pure policy over `Endpoint`s: no sockets, no tables. Each algorithm sits behind
//! [`Balance`]; the caller passes an *accept* predicate so endpoints that may not take new
//! traffic are skipped without rebuilding anything.

mod round_robin;
mod weighted_sequence;

pub use round_robin::RoundRobin;
pub use weighted_sequence::WeightedSequence;

use crate::endpoint::Endpoint;
use std::sync::Arc;

/// A balancing algorithm over a fixed list of endpoints (the list changes only by rebuilding).
pub trait Balance: Send + Sync + std::fmt::Debug {
    /// The index of the endpoint to use, among those `accept` takes; `None` when it takes none.
    fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        accept: &dyn Fn(&Endpoint) -> bool,
    ) -> Option<usize>;
}
