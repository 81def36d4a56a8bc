//! Writes each pool's status to the API server: by the leader only, with server-side apply on
//! the status subresource under one field manager, and only when it changed. A condition
//! turning bad (a route conflict, a missing reference, a bad Secret, no healthy endpoint) is
//! also reported as a Warning event on the pool, and a pool becoming ready as a Normal one.

use super::gateway_status;
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

/// Keeps the API server's pool statuses equal to `statuses`, and the Gateway API statuses
/// equal to `gateway_statuses`, while `leader` holds.
pub async fn run(
    client: kube::Client,
    namespaces: Vec<String>,
    admin: Arc<ProcessState>,
    leader: Arc<AtomicBool>,
    every: Duration,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "weir".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let gateways = gateway_status::StatusWriter::new(client.clone(), namespaces);
    let api = ApiServer { client, recorder };
    // One loop per kind of status; neither ever ends.
    tokio::join!(
        follow(&api, &admin, &leader, every),
        gateway_status::follow(gateways.0, &admin, &leader, every),
    );
}

/// Where status and events go: the API server, or a test's record of the calls.
trait Sink {
    type Error: std::fmt::Display;
    /// Writes a pool's status; returns a reference to the pool, for its events.
    async fn write(
        &self,
        key: &ObjectKey,
        status: &LoadBalancerPoolStatus,
    ) -> Result<ObjectReference, Self::Error>;
    async fn publish(&self, event: &Event, pool: &ObjectReference) -> Result<(), Self::Error>;
}

struct ApiServer {
    client: kube::Client,
    recorder: Recorder,
}

impl Sink for ApiServer {
    type Error = kube::Error;
    async fn write(
        &self,
        key: &ObjectKey,
        status: &LoadBalancerPoolStatus,
    ) -> Result<ObjectReference, kube::Error> {
        write(&self.client, key, status).await
    }
    async fn publish(&self, event: &Event, pool: &ObjectReference) -> Result<(), kube::Error> {
        self.recorder.publish(event, pool).await
    }
}

/// The loop of [`run`]: each `every`, while leading, writes the statuses that changed since
/// they were last written.
async fn follow(sink: &impl Sink, admin: &ProcessState, leader: &AtomicBool, every: Duration) {
    // What we last wrote, with the transition time of each condition.
    let mut written: HashMap<ObjectKey, LoadBalancerPoolStatus> = HashMap::new();
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
            match sink.write(key, &next).await {
                Ok(reference) => {
                    for event in events(previous, &next) {
                        if let Err(e) = sink.publish(&event, &reference).await {
                            tracing::debug!(pool = %key, error = %e, "could not write an event");
                        }
                    }
                    written.insert(key.clone(), next);
                }
                // Not recorded as written: the next tick tries again.
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
    use std::cell::RefCell;

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

    /// Records what the loop sends; fails the writes of the pools named in `failing`.
    #[derive(Default)]
    struct Recorded {
        writes: RefCell<Vec<(String, Vec<String>)>>,
        events: RefCell<Vec<(String, String)>>,
        failing: RefCell<Vec<String>>,
    }

    impl Sink for Recorded {
        type Error = &'static str;
        async fn write(
            &self,
            key: &ObjectKey,
            status: &LoadBalancerPoolStatus,
        ) -> Result<ObjectReference, &'static str> {
            if self.failing.borrow().contains(&key.name) {
                return Err("connection refused");
            }
            let reasons = status.conditions.iter().map(|c| c.reason.clone()).collect();
            self.writes.borrow_mut().push((key.name.clone(), reasons));
            Ok(ObjectReference {
                name: Some(key.name.clone()),
                ..Default::default()
            })
        }
        async fn publish(&self, event: &Event, pool: &ObjectReference) -> Result<(), &'static str> {
            let name = pool.name.clone().unwrap_or_default();
            self.events.borrow_mut().push((name, event.reason.clone()));
            Ok(())
        }
    }

    fn unhealthy() -> Vec<Condition> {
        let mut c = healthy();
        c[1] = Condition::new(
            ConditionType::Ready,
            false,
            Reason::NoHealthyEndpoints,
            "0 of 2",
        );
        c
    }

    fn set(admin: &ProcessState, pools: &[(&str, Vec<Condition>)]) {
        let statuses = pools
            .iter()
            .map(|(name, c)| (ObjectKey::new("ns", *name), status(c.clone())))
            .collect();
        admin.statuses.store(Arc::new(statuses));
    }

    const EVERY: Duration = Duration::from_secs(1);

    /// Runs the loop beside `script` on the paused clock; `script`'s sleeps are whole ticks
    /// plus half of one, so each step sees the ticks before it done.
    async fn with_loop(
        admin: &ProcessState,
        leader: &AtomicBool,
        sink: &Recorded,
        script: impl Future<Output = ()>,
    ) {
        tokio::select! {
            _ = follow(sink, admin, leader, EVERY) => unreachable!("the status loop never ends"),
            _ = script => {}
        }
    }

    async fn ticks(n: u32) {
        tokio::time::sleep(EVERY * n).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_writes_each_change_once_with_its_events() {
        let (admin, leader, sink) = (
            ProcessState::default(),
            AtomicBool::new(true),
            Recorded::default(),
        );
        set(&admin, &[("a", healthy()), ("b", healthy())]);
        with_loop(&admin, &leader, &sink, async {
            tokio::time::sleep(EVERY / 2).await;
            ticks(3).await;
            assert_eq!(
                sink.writes.borrow().len(),
                2,
                "each pool once, not once a tick"
            );
            set(&admin, &[("a", unhealthy()), ("b", healthy())]);
            ticks(2).await;
        })
        .await;
        let ready = vec!["Accepted".to_string(), "HealthyEndpoints".into()];
        let down = vec!["Accepted".to_string(), "NoHealthyEndpoints".into()];
        assert_eq!(
            *sink.writes.borrow(),
            [
                ("a".into(), ready.clone()),
                ("b".into(), ready),
                ("a".into(), down)
            ]
        );
        assert_eq!(
            *sink.events.borrow(),
            [("a".into(), "NoHealthyEndpoints".into())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_writes_nothing_and_each_new_term_writes_everything_once() {
        let (admin, leader, sink) = (
            ProcessState::default(),
            AtomicBool::new(false),
            Recorded::default(),
        );
        set(&admin, &[("a", healthy()), ("b", unhealthy())]);
        with_loop(&admin, &leader, &sink, async {
            tokio::time::sleep(EVERY / 2).await;
            ticks(3).await;
            assert!(sink.writes.borrow().is_empty(), "a follower wrote");
            leader.store(true, Ordering::Relaxed);
            ticks(3).await;
            assert_eq!(sink.writes.borrow().len(), 2);
            // Another replica may have written while this one followed.
            leader.store(false, Ordering::Relaxed);
            ticks(2).await;
            leader.store(true, Ordering::Relaxed);
            ticks(2).await;
        })
        .await;
        let names: Vec<_> = sink
            .writes
            .borrow()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(names, ["a", "b", "a", "b"]);
        // Each term reports what is wrong now, once.
        assert_eq!(
            *sink.events.borrow(),
            [
                ("b".into(), "NoHealthyEndpoints".into()),
                ("b".into(), "NoHealthyEndpoints".into())
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_tried_again_and_a_deleted_pool_is_forgotten() {
        let (admin, leader, sink) = (
            ProcessState::default(),
            AtomicBool::new(true),
            Recorded::default(),
        );
        sink.failing.borrow_mut().push("a".into());
        set(&admin, &[("a", unhealthy())]);
        with_loop(&admin, &leader, &sink, async {
            tokio::time::sleep(EVERY / 2).await;
            ticks(2).await;
            assert!(sink.writes.borrow().is_empty());
            assert!(
                sink.events.borrow().is_empty(),
                "events for a status never written"
            );
            sink.failing.borrow_mut().clear();
            ticks(2).await;
            assert_eq!(
                sink.writes.borrow().len(),
                1,
                "written once the API answers"
            );
            set(&admin, &[]);
            ticks(1).await;
            // Back with the same status: written again, as the pool (and its status) is new.
            set(&admin, &[("a", unhealthy())]);
            ticks(2).await;
        })
        .await;
        assert_eq!(sink.writes.borrow().len(), 2);
        assert_eq!(sink.events.borrow().len(), 2);
    }
}
