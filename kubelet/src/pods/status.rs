//! The pod status the kubelet reports, built from what its runtime shows: container
//! states (waiting/running/terminated), restart counts and last states, readiness,
//! the pod's phase and conditions. Pure functions; the worker posts the result.

use std::net::Ipv4Addr;

use proto::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIp,
    Pod, PodCondition, PodIp, PodStatus,
};
use proto::meta::v1::Time;

use crate::runtime::{self, ContainerInfo};

/// What the worker knows about one container of the spec.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    /// Its latest attempt and the one before.
    pub latest: Option<ContainerInfo>,
    pub previous: Option<ContainerInfo>,
    /// Why it is not running, when it is not (image pull, back-off, config errors).
    pub waiting: Option<(String, String)>,
    pub ready: bool,
    pub started: bool,
}

fn time(seconds: i64) -> Time {
    Time { seconds, nanos: 0 }
}

pub fn container_state(info: &ContainerInfo) -> ContainerState {
    match &info.state {
        runtime::ContainerState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(time(*started_at)) }),
            ..Default::default()
        },
        runtime::ContainerState::Exited { exit_code, signal, started_at, finished_at, reason, message } => {
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: reason.clone(),
                    message: message.clone(),
                    started_at: started_at.map(time),
                    finished_at: Some(time(*finished_at)),
                    container_id: format!("rudder://{}", info.id),
                }),
                ..Default::default()
            }
        }
    }
}

pub fn container_status(view: &ContainerView) -> ContainerStatus {
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting { reason: reason.into(), message: message.into() }),
        ..Default::default()
    };
    let state = match (&view.waiting, &view.latest) {
        (Some((reason, message)), _) => waiting(reason, message),
        (None, Some(info)) => container_state(info),
        (None, None) => waiting("ContainerCreating", ""),
    };
    // While waiting to restart, the last run is the latest attempt.
    let last = match (&view.waiting, &view.latest) {
        (Some(_), Some(latest)) => Some(latest),
        _ => view.previous.as_ref(),
    };
    let restart_count = view.latest.as_ref().map(|l| l.attempt).unwrap_or(0);
    ContainerStatus {
        name: view.name.clone(),
        state: Some(state),
        last_state: Some(last.map(container_state).unwrap_or_default()),
        ready: view.ready,
        restart_count: restart_count as i32,
        image: view.image.clone(),
        image_id: view.latest.as_ref().map(|l| l.image_id.clone()).unwrap_or_default(),
        container_id: view.latest.as_ref().map(|l| format!("rudder://{}", l.id)).unwrap_or_default(),
        started: Some(view.started),
        ..Default::default()
    }
}

fn condition(kind: &str, on: bool, reason: &str) -> PodCondition {
    PodCondition {
        r#type: kind.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: if on { String::new() } else { reason.into() },
        ..Default::default()
    }
}

pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub phase: &'a str,
    pub init: &'a [ContainerView],
    pub app: &'a [ContainerView],
    pub initialized: bool,
    pub host_ip: Ipv4Addr,
    pub pod_ip: Option<Ipv4Addr>,
    pub start_time: Time,
    pub qos_class: &'a str,
    pub message: Option<(String, String)>,
}

/// The conditions the kubelet owns; others (readiness gates' among them) belong to
/// whoever set them and are kept as they are.
const OWN_CONDITIONS: [&str; 4] = ["PodScheduled", "Initialized", "ContainersReady", "Ready"];

/// Why the pod is not Ready although its containers are: a readiness gate whose
/// condition is missing or not True (Kubernetes' wording), if any.
fn unready_gate(pod: &Pod, current: &PodStatus) -> Option<String> {
    let gates = pod.spec.as_ref().map_or(&[][..], |s| s.readiness_gates.as_slice());
    gates.iter().find_map(|gate| {
        let kind = &gate.condition_type;
        match current.conditions.iter().find(|c| &c.r#type == kind) {
            None => Some(format!("corresponding condition of pod readiness gate \"{kind}\" does not exist.")),
            Some(c) if c.status != "True" => {
                Some(format!("the status of pod readiness gate \"{kind}\" is not \"True\", but {}", c.status))
            }
            Some(_) => None,
        }
    })
}

/// The status to post; transition times carry over from the current one when the
/// condition did not change.
pub fn pod_status(inputs: &Inputs<'_>) -> PodStatus {
    let current = inputs.pod.status.clone().unwrap_or_default();
    let containers_ready = !inputs.app.is_empty() && inputs.app.iter().all(|c| c.ready);
    let terminal = matches!(inputs.phase, "Succeeded" | "Failed");
    let gate = unready_gate(inputs.pod, &current);
    let mut ready = condition("Ready", containers_ready && !terminal && gate.is_none(), "ContainersNotReady");
    if let (true, Some(message)) = (containers_ready && !terminal, gate) {
        ready.reason = "ReadinessGatesNotReady".into();
        ready.message = message;
    }
    let mut conditions = vec![
        condition("PodScheduled", true, ""),
        condition("Initialized", inputs.initialized, "ContainersNotInitialized"),
        condition("ContainersReady", containers_ready && !terminal, "ContainersNotReady"),
        ready,
    ];
    let now = Time::now_seconds();
    for c in &mut conditions {
        let previous = current.conditions.iter().find(|p| p.r#type == c.r#type);
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status => p.last_transition_time,
            _ => Some(now),
        };
    }
    conditions.extend(current.conditions.iter().filter(|c| !OWN_CONDITIONS.contains(&c.r#type.as_str())).cloned());
    let (reason, message) = inputs.message.clone().unwrap_or_default();
    PodStatus {
        phase: inputs.phase.into(),
        conditions,
        reason,
        message,
        host_ip: inputs.host_ip.to_string(),
        host_ips: vec![HostIp { ip: inputs.host_ip.to_string() }],
        pod_ip: inputs.pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        pod_ips: inputs.pod_ip.map(|ip| vec![PodIp { ip: ip.to_string() }]).unwrap_or_default(),
        start_time: Some(current.start_time.unwrap_or(inputs.start_time)),
        init_container_statuses: inputs.init.iter().map(container_status).collect(),
        container_statuses: inputs.app.iter().map(container_status).collect(),
        qos_class: inputs.qos_class.into(),
        observed_generation: current.observed_generation,
        nominated_node_name: current.nominated_node_name,
        resize: current.resize,
    }
}

/// Equal but for condition transition times (what decides whether to post).
pub fn same(a: &PodStatus, b: &PodStatus) -> bool {
    let strip = |s: &PodStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = None;
            c.last_probe_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use proto::core::v1::{PodReadinessGate, PodSpec};

    use super::*;

    fn gated_pod(extra: Option<(&str, &str)>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                readiness_gates: vec![PodReadinessGate { condition_type: "example.com/lb".into() }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: extra
                    .map(|(kind, status)| PodCondition {
                        r#type: kind.into(),
                        status: status.into(),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ready_condition(pod: &Pod) -> (PodCondition, Vec<String>) {
        let view = ContainerView {
            name: "c".into(),
            image: "i".into(),
            latest: None,
            previous: None,
            waiting: None,
            ready: true,
            started: true,
        };
        let inputs = Inputs {
            pod,
            phase: "Running",
            init: &[],
            app: std::slice::from_ref(&view),
            initialized: true,
            host_ip: Ipv4Addr::LOCALHOST,
            pod_ip: None,
            start_time: Time::now_seconds(),
            qos_class: "BestEffort",
            message: None,
        };
        let status = pod_status(&inputs);
        let kinds = status.conditions.iter().map(|c| c.r#type.clone()).collect();
        (status.conditions.into_iter().find(|c| c.r#type == "Ready").unwrap(), kinds)
    }

    #[test]
    fn readiness_gates_hold_ready_until_their_condition_is_true_and_others_conditions_are_kept() {
        let (ready, _) = ready_condition(&gated_pod(None));
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ReadinessGatesNotReady"));
        assert!(ready.message.contains("\"example.com/lb\" does not exist"), "{}", ready.message);
        let (ready, _) = ready_condition(&gated_pod(Some(("example.com/lb", "False"))));
        assert_eq!(ready.status, "False");
        let (ready, kinds) = ready_condition(&gated_pod(Some(("example.com/lb", "True"))));
        assert_eq!(ready.status, "True");
        assert_eq!(kinds, ["PodScheduled", "Initialized", "ContainersReady", "Ready", "example.com/lb"]);
    }
}
