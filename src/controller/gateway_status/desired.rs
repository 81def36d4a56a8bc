//! What each object's status should read: compile's reports in the wire types of the Gateway
//! API, each condition with its `observedGeneration` and a `lastTransitionTime` kept from what
//! was last written while the condition's status is unchanged. Pure, so the writer's decisions
//! (write or not, which time) are tested without an API server.

use crate::api::Condition;
use crate::api::gateway::{
    CONTROLLER_NAME, GatewayClassStatus, GatewayStatus, ListenerStatus, RouteParentStatus,
    SUPPORTED_FEATURES, SupportedFeature,
};
use crate::routing::{GatewayReport, ObjectReport, ParentReport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};
use k8s_openapi::jiff::Timestamp;

/// Now, to the second: what the API server keeps of a `lastTransitionTime`, so a time read
/// back equals the one written.
pub fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// A GatewayClass of ours: `Accepted`, and the features weir implements.
pub fn class_status(
    report: &ObjectReport,
    previous: Option<&GatewayClassStatus>,
    now: Timestamp,
) -> GatewayClassStatus {
    GatewayClassStatus {
        conditions: conditions(
            &report.conditions,
            report.observed_generation,
            previous.map(|p| p.conditions.as_slice()),
            now,
        ),
        supported_features: SUPPORTED_FEATURES
            .iter()
            .map(|name| SupportedFeature {
                name: name.to_string(),
            })
            .collect(),
    }
}

/// A Gateway: its conditions, the address it is bound to, and each listener.
pub fn gateway_status(
    report: &GatewayReport,
    previous: Option<&GatewayStatus>,
    now: Timestamp,
) -> GatewayStatus {
    let generation = report.observed_generation;
    let listeners = report
        .listeners
        .iter()
        .map(|l| {
            let before = previous
                .and_then(|p| p.listeners.iter().find(|b| b.name == l.name))
                .map(|b| b.conditions.as_slice());
            ListenerStatus {
                name: l.name.clone(),
                supported_kinds: l.supported_kinds.clone(),
                attached_routes: l.attached_routes,
                conditions: conditions(&l.conditions, generation, before, now),
            }
        })
        .collect();
    GatewayStatus {
        addresses: report.addresses.clone(),
        conditions: conditions(
            &report.conditions,
            generation,
            previous.map(|p| p.conditions.as_slice()),
            now,
        ),
        listeners,
        attached_listener_sets: None,
    }
}

/// weir's entries of an HTTPRoute's `status.parents`: one per parentRef of ours.
pub fn route_parents(
    parents: &[ParentReport],
    previous: Option<&[RouteParentStatus]>,
    now: Timestamp,
) -> Vec<RouteParentStatus> {
    parents
        .iter()
        .map(|p| {
            let before = previous
                .and_then(|ps| ps.iter().find(|b| b.parent_ref == p.parent_ref))
                .map(|b| b.conditions.as_slice());
            RouteParentStatus {
                parent_ref: p.parent_ref.clone(),
                controller_name: CONTROLLER_NAME.to_string(),
                conditions: conditions(&p.conditions, p.observed_generation, before, now),
            }
        })
        .collect()
}

/// A route's `status.parents` with weir's entries replaced by `ours`: every other
/// controller's entry is kept as it is, in its place, and ours follow them. The list is
/// `atomic` in the CRD (no merge key), so whoever writes it writes all of it: this is how weir
/// writes it without taking another controller's entries away.
pub fn merge_parents(
    current: &[RouteParentStatus],
    ours: &[RouteParentStatus],
) -> Vec<RouteParentStatus> {
    current
        .iter()
        .filter(|p| p.controller_name != CONTROLLER_NAME)
        .chain(ours)
        .cloned()
        .collect()
}

/// weir's entries of a route's `status.parents`.
pub fn ours(parents: &[RouteParentStatus]) -> Vec<RouteParentStatus> {
    parents
        .iter()
        .filter(|p| p.controller_name == CONTROLLER_NAME)
        .cloned()
        .collect()
}

/// `conditions` in the wire shape, each with `generation`, and the transition time of the
/// same type in `before` while its status is unchanged, else `now`.
fn conditions(
    conditions: &[Condition],
    generation: Option<i64>,
    before: Option<&[MetaCondition]>,
    now: Timestamp,
) -> Vec<MetaCondition> {
    conditions
        .iter()
        .map(|c| {
            let kept = before
                .and_then(|b| b.iter().find(|b| b.type_ == c.type_))
                .filter(|b| b.status == c.status)
                .map(|b| b.last_transition_time.clone());
            MetaCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.chars().take(32768).collect(),
                observed_generation: c.observed_generation.or(generation),
                last_transition_time: kept.unwrap_or(Time(now)),
            }
        })
        .collect()
}
