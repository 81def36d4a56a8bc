//! What the runner knows about a pod's processes, and the PodStatus that says it. Pure: the
//! lifecycle code owns the state and sends what `build` returns.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Now as a MicroTime, in its JSON form (for a Lease's renewTime).
pub fn now_micro() -> serde_json::Value {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    serde_json::to_value(MicroTime(k8s_openapi::jiff::Timestamp::now()))
        .unwrap_or(serde_json::Value::Null)
}

/// The pod condition this runner adds for a container played by a stand-in.
pub const STAND_IN_CONDITION: &str = "weir.dev/StandIn";

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        pid: u32,
        started_at: Time,
    },
    Terminated {
        pid: Option<u32>,
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<Time>,
        finished_at: Time,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    /// Which local program plays it (for imageID).
    pub program: String,
    /// "stand-in for IMAGE" when a stand-in plays it.
    pub stand_in: Option<String>,
    pub state: RunState,
    pub ready: bool,
}

impl ContainerRun {
    pub fn waiting(name: &str, image: &str, program: &str, reason: &str) -> Self {
        ContainerRun {
            name: name.into(),
            image: image.into(),
            program: program.into(),
            stand_in: None,
            state: RunState::Waiting {
                reason: reason.into(),
                message: None,
            },
            ready: false,
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.state, RunState::Terminated { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodRun {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Time,
    pub init_done: bool,
    pub containers: Vec<ContainerRun>,
    /// The pod failed as a whole (unknown image, a volume that can't be made): reason, message.
    pub failure: Option<(String, String)>,
    /// `Always` (the default), `OnFailure` or `Never`.
    pub restart_policy: String,
}

impl PodRun {
    pub fn phase(&self) -> &'static str {
        if self.failure.is_some() {
            return "Failed";
        }
        if !self.init_done
            || self
                .containers
                .iter()
                .any(|c| matches!(c.state, RunState::Waiting { .. }))
        {
            return "Pending";
        }
        let exited_ok =
            |c: &ContainerRun| matches!(c.state, RunState::Terminated { exit_code: 0, .. });
        // No restarts here: an exit under `Always`, or a failing exit, ends the pod.
        let any_failed = self
            .containers
            .iter()
            .any(|c| c.is_terminated() && (self.restart_policy == "Always" || !exited_ok(c)));
        if any_failed {
            return "Failed";
        }
        if self.containers.iter().all(exited_ok) {
            return "Succeeded";
        }
        "Running"
    }

    pub fn all_ready(&self) -> bool {
        self.failure.is_none()
            && !self.containers.is_empty()
            && self
                .containers
                .iter()
                .all(|c| c.ready && matches!(c.state, RunState::Running { .. }))
    }
}

/// A condition, keeping its previous lastTransitionTime when its status did not change.
fn condition(
    previous: &[PodCondition],
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        message,
        last_transition_time: Some(since),
        ..Default::default()
    }
}

fn container_status(c: &ContainerRun) -> ContainerStatus {
    let (state, pid, started) = match &c.state {
        RunState::Waiting { reason, message } => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            None,
            false,
        ),
        RunState::Running { pid, started_at } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at.clone()),
                }),
                ..Default::default()
            },
            Some(*pid),
            true,
        ),
        RunState::Terminated {
            pid,
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => (
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: pid.map(|p| format!("weir://{p}")),
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: started_at.clone(),
                    finished_at: Some(finished_at.clone()),
                }),
                ..Default::default()
            },
            *pid,
            false,
        ),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: format!("weir-pod-runner://{}", c.program),
        container_id: pid.map(|p| format!("weir://{p}")),
        started: Some(started),
        ready: c.ready && started,
        restart_count: 0,
        state: Some(state),
        ..Default::default()
    }
}

/// The status for a pod run, given the status the API server has now (for transition times).
pub fn build(run: &PodRun, previous: Option<&PodStatus>) -> PodStatus {
    let previous = previous
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let ready = run.all_ready();
    let unready: Vec<&str> = run
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let unready_message = (!ready && run.failure.is_none())
        .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    let reason = (!ready).then_some("ContainersNotReady");
    let mut conditions = vec![
        condition(
            previous,
            "PodReadyToStartContainers",
            run.pod_ip.is_some(),
            None,
            None,
        ),
        condition(previous, "Initialized", run.init_done, None, None),
        condition(previous, "Ready", ready, reason, unready_message.clone()),
        condition(previous, "ContainersReady", ready, reason, unready_message),
        condition(previous, "PodScheduled", true, None, None),
    ];
    let stand_ins: Vec<&str> = run
        .containers
        .iter()
        .filter_map(|c| c.stand_in.as_deref())
        .collect();
    if !stand_ins.is_empty() {
        conditions.push(condition(
            previous,
            STAND_IN_CONDITION,
            true,
            Some("StandIn"),
            Some(stand_ins.join("; ")),
        ));
    }
    let (reason, message) = match &run.failure {
        Some((reason, message)) => (Some(reason.clone()), Some(message.clone())),
        None if !stand_ins.is_empty() => (None, Some(stand_ins.join("; "))),
        None => (None, None),
    };
    PodStatus {
        phase: Some(run.phase().into()),
        conditions: Some(conditions),
        host_ip: Some(run.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: run.host_ip.clone(),
        }]),
        pod_ip: run.pod_ip.clone(),
        pod_ips: run.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(run.start_time.clone()),
        container_statuses: Some(run.containers.iter().map(container_status).collect()),
        // qosClass is the API server's (set at creation, immutable): left out.
        reason,
        message,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> PodRun {
        PodRun {
            pod_ip: Some("10.244.3.130".into()),
            host_ip: "10.244.3.2".into(),
            start_time: now(),
            init_done: true,
            containers: vec![ContainerRun {
                name: "echo".into(),
                image: "weir.dev/test/echo".into(),
                program: "echo".into(),
                stand_in: None,
                state: RunState::Running {
                    pid: 42,
                    started_at: now(),
                },
                ready: false,
            }],
            failure: None,
            restart_policy: "Always".into(),
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn running_then_ready() {
        let mut r = run();
        let s = build(&r, None);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.244.3.130");
        assert_eq!(s.host_ips.as_ref().unwrap()[0].ip, "10.244.3.2");
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("weir://42"));
        assert_eq!(cs.started, Some(true));
        assert!(!cs.ready);
        assert!(cs.state.as_ref().unwrap().running.is_some());

        r.containers[0].ready = true;
        let s2 = build(&r, Some(&s));
        assert_eq!(cond(&s2, "Ready").status, "True");
        assert_eq!(cond(&s2, "ContainersReady").status, "True");
        assert!(s2.container_statuses.as_ref().unwrap()[0].ready);
        // Unchanged conditions keep their transition time.
        assert_eq!(
            cond(&s2, "PodScheduled").last_transition_time,
            cond(&s, "PodScheduled").last_transition_time
        );
    }

    #[test]
    fn phases() {
        let mut r = run();
        r.containers[0].state = RunState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        assert_eq!(r.phase(), "Pending");
        r.containers[0].state = RunState::Terminated {
            pid: Some(42),
            exit_code: 0,
            signal: None,
            reason: "Completed".into(),
            message: None,
            started_at: None,
            finished_at: now(),
        };
        // Always: an exit is a failure here (no restarts).
        assert_eq!(r.phase(), "Failed");
        r.restart_policy = "Never".into();
        assert_eq!(r.phase(), "Succeeded");
        r.failure = Some(("UnknownImage".into(), "x".into()));
        assert_eq!(r.phase(), "Failed");
        let s = build(&r, None);
        assert_eq!(s.reason.as_deref(), Some("UnknownImage"));
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("Completed"));
    }

    #[test]
    fn stand_in_is_said() {
        let mut r = run();
        r.containers[0].stand_in = Some("stand-in for registry.k8s.io/coredns/coredns:v1".into());
        let s = build(&r, None);
        assert_eq!(
            cond(&s, STAND_IN_CONDITION).message.as_deref(),
            Some("stand-in for registry.k8s.io/coredns/coredns:v1")
        );
        assert!(s.message.unwrap().contains("stand-in for"));
    }
}
