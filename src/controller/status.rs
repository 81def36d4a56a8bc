//! Writes each pool's status to the API server: by the leader only, with server-side apply on
//! the status subresource under one field manager, and only when it changed. A condition
//! turning bad (a route conflict, a missing reference, a bad Secret, no healthy endpoint) is
//! also reported as a Warning event on the pool, and a pool becoming ready as a Normal one.

use crate::admin::ProcessState;
use crate::api::{ConditionType, LoadBalancerPool, LoadBalancerPoolStatus};
use crate::store::ObjectKey;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The field manager weir's status writes are made under.
pub const FIELD_MANAGER: &str = "weir";

/// Keeps the API server's pool statuses equal to `statuses` while `leader` holds.
pub async fn run(
    client: kube::Client,
    admin: Arc<ProcessState>,
    leader: Arc<AtomicBool>,
    every: Duration,
) {
    // What we last wrote, with the transition time of each condition.
    let mut written: HashMap<ObjectKey, LoadBalancerPoolStatus> = HashMap::new();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "weir".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    loop {
        tokio::time::sleep(every).await;
        if !leader.load(Ordering::Relaxed) {
            // A new leader writes everything once: another replica may have written since.
            written.clear();
            continue;
        }
        let current = admin.statuses.load();
        written.retain(|key, _| current.contains_key(key));
        for (key, status) in current.iter() {
            let previous = written.get(key);
            let next = with_transition_times(status, previous);
            if previous == Some(&next) {
                continue;
            }
            match write(&client, key, &next).await {
                Ok(reference) => {
                    for event in events(previous, &next) {
                        if let Err(e) = recorder.publish(&event, &reference).await {
                            tracing::debug!(pool = %key, error = %e, "could not write an event");
                        }
                    }
                    written.insert(key.clone(), next);
                }
                Err(e) => tracing::warn!(pool = %key, error = %e, "could not write pool status"),
            }
        }
    }
}

/// `status` with each condition's `lastTransitionTime`: kept from `previous` while the
/// condition's status is unchanged, now when it changed.
fn with_transition_times(
    status: &LoadBalancerPoolStatus,
    previous: Option<&LoadBalancerPoolStatus>,
) -> LoadBalancerPoolStatus {
    let mut next = status.clone();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for c in &mut next.conditions {
        let before = previous.and_then(|p| p.conditions.iter().find(|b| b.type_ == c.type_));
        c.last_transition_time = match before {
            Some(b) if b.status == c.status => b.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        c.observed_generation = status.observed_generation;
    }
    next
}

/// The events a status change deserves: a Warning for each condition that turned false (or
/// changed its reason while false), a Normal one when the pool becomes ready again.
pub fn events(
    previous: Option<&LoadBalancerPoolStatus>,
    next: &LoadBalancerPoolStatus,
) -> Vec<Event> {
    let mut out = Vec::new();
    for c in &next.conditions {
        let before = previous.and_then(|p| p.conditions.iter().find(|b| b.type_ == c.type_));
        let event_type = match (before, c.is_true()) {
            (Some(b), false) if !b.is_true() && b.reason == c.reason => continue,
            (_, false) => EventType::Warning,
            (Some(b), true) if !b.is_true() && c.is(ConditionType::Ready) => EventType::Normal,
            _ => continue,
        };
        out.push(Event {
            type_: event_type,
            reason: c.reason.clone(),
            note: Some(c.message.chars().take(1000).collect()),
            action: c.type_.clone(),
            secondary: None,
        });
    }
    out
}

/// Applies the status; returns a reference to the pool, for events.
async fn write(
    client: &kube::Client,
    key: &ObjectKey,
    status: &LoadBalancerPoolStatus,
) -> Result<ObjectReference, kube::Error> {
    let api: Api<LoadBalancerPool> = Api::namespaced(client.clone(), &key.namespace);
    let patch = serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "LoadBalancerPool",
        "status": status,
    });
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|pool| pool.object_ref(&()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, Reason};

    fn status(conditions: Vec<Condition>) -> LoadBalancerPoolStatus {
        LoadBalancerPoolStatus {
            conditions,
            ..Default::default()
        }
    }

    /// Accepted and Ready, both true.
    fn healthy() -> Vec<Condition> {
        vec![
            Condition::new(
                ConditionType::Accepted,
                true,
                Reason::Accepted,
                "1 route(s)",
            ),
            Condition::new(
                ConditionType::Ready,
                true,
                Reason::HealthyEndpoints,
                "2 of 2",
            ),
        ]
    }

    #[test]
    fn events_for_conditions_turning_bad_and_recovery() {
        let good = status(healthy());
        assert!(events(None, &good).is_empty());
        let conflict = status(vec![
            Condition::new(
                ConditionType::Accepted,
                false,
                Reason::RouteConflict,
                "held by ns/old",
            ),
            Condition::new(
                ConditionType::Ready,
                false,
                Reason::NoHealthyEndpoints,
                "0 of 2",
            ),
        ]);
        let e = events(Some(&good), &conflict);
        let got: Vec<_> = e.iter().map(|e| (e.type_, e.reason.as_str())).collect();
        assert_eq!(
            got,
            [
                (EventType::Warning, "RouteConflict"),
                (EventType::Warning, "NoHealthyEndpoints")
            ]
        );
        // Unchanged trouble is not repeated; a new reason is.
        assert!(events(Some(&conflict), &conflict).is_empty());
        let other = status(vec![
            Condition::new(
                ConditionType::Accepted,
                false,
                Reason::Invalid,
                "spec.backends",
            ),
            Condition::new(
                ConditionType::Ready,
                false,
                Reason::NoHealthyEndpoints,
                "0 of 2",
            ),
        ]);
        assert_eq!(events(Some(&conflict), &other).len(), 1);
        // Recovery: Ready again is a Normal event.
        let e = events(Some(&other), &good);
        let got: Vec<_> = e.iter().map(|e| (e.type_, e.reason.as_str())).collect();
        assert_eq!(got, [(EventType::Normal, "HealthyEndpoints")]);
        // A new leader reports what is wrong now, once.
        assert_eq!(events(None, &conflict).len(), 2);
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let mut s = LoadBalancerPoolStatus {
            observed_generation: Some(4),
            conditions: healthy(),
            ..Default::default()
        };
        let first = with_transition_times(&s, None);
        assert!(
            first
                .conditions
                .iter()
                .all(|c| c.last_transition_time.is_some())
        );
        assert!(
            first
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
        std::thread::sleep(Duration::from_millis(5));
        s.conditions[1] = Condition::new(
            ConditionType::Ready,
            true,
            Reason::HealthyEndpoints,
            "1 of 2",
        );
        let same = with_transition_times(&s, Some(&first));
        assert_eq!(
            same.conditions[1].last_transition_time,
            first.conditions[1].last_transition_time
        );
        s.conditions[1] = Condition::new(
            ConditionType::Ready,
            false,
            Reason::NoHealthyEndpoints,
            "0 of 2",
        );
        let flipped = with_transition_times(&s, Some(&same));
        assert_ne!(
            flipped.conditions[1].last_transition_time,
            first.conditions[1].last_transition_time
        );
        assert_eq!(
            flipped.conditions[0].last_transition_time,
            first.conditions[0].last_transition_time
        );
    }
}
