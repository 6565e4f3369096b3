//! Node health as the controller judges it: when did the kubelet last show signs
//! of life (a new Ready heartbeat or a renewed Lease), by this controller's own
//! clock so that clock skew between hosts does not matter, and what the node's
//! conditions and taints must become.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::core::v1::{Node, NodeCondition, NodeStatus, Taint};
use proto::meta::v1::Time;

use crate::tolerations::{NO_EXECUTE, NO_SCHEDULE, NOT_READY, UNREACHABLE, UNSCHEDULABLE};

/// A timestamp as the kubelet wrote it, compared only for change.
type Stamp = (i64, i32);

struct Probe {
    heartbeat: Option<Stamp>,
    renewed: Option<Stamp>,
    changed_at: Instant,
}

/// The last sign of life of each node.
pub struct Monitor {
    grace: Duration,
    probes: HashMap<String, Probe>,
}

impl Monitor {
    pub fn new(grace: Duration) -> Self {
        Monitor { grace, probes: HashMap::new() }
    }

    /// Records the node's Ready heartbeat and Lease renewal as seen `now`; answers
    /// whether the kubelet has been silent for longer than the grace period. A node
    /// seen for the first time gets the whole grace period from now.
    pub fn silent(&mut self, node: &str, heartbeat: Option<Stamp>, renewed: Option<Stamp>, now: Instant) -> bool {
        let probe = self.probes.entry(node.to_string()).or_insert(Probe { heartbeat, renewed, changed_at: now });
        if probe.heartbeat != heartbeat || probe.renewed != renewed {
            *probe = Probe { heartbeat, renewed, changed_at: now };
        }
        now.saturating_duration_since(probe.changed_at) > self.grace
    }

    /// Drops nodes that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.probes.retain(|name, _| exists(name));
    }
}

pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.iter().find(|c| c.r#type == "Ready")
}

/// The Ready heartbeat the kubelet last wrote.
pub fn heartbeat(node: &Node) -> Option<Stamp> {
    ready_condition(node)?.last_heartbeat_time.as_ref().map(|t| (t.seconds, t.nanos))
}

/// The kubelet stopped posting: Ready and the pressure conditions become Unknown
/// (a node that never posted gets Ready=Unknown). Heartbeats are kept, so this
/// write is not mistaken for a sign of life. Returns whether anything changed.
pub fn mark_unknown(status: &mut NodeStatus, now: Time) -> bool {
    let mut changed = false;
    if !status.conditions.iter().any(|c| c.r#type == "Ready") {
        status.conditions.push(NodeCondition {
            r#type: "Ready".into(),
            status: "Unknown".into(),
            last_transition_time: Some(now),
            reason: "NodeStatusNeverUpdated".into(),
            message: "Kubelet never posted node status.".into(),
            ..Default::default()
        });
        return true;
    }
    for condition in &mut status.conditions {
        let watched = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
        if watched.contains(&condition.r#type.as_str()) && condition.status != "Unknown" {
            condition.status = "Unknown".into();
            condition.reason = "NodeStatusUnknown".into();
            condition.message = "Kubelet stopped posting node status.".into();
            condition.last_transition_time = Some(now);
            changed = true;
        }
    }
    changed
}

/// The taints this controller owns.
fn managed(taint: &Taint) -> bool {
    matches!(
        (taint.key.as_str(), taint.effect.as_str()),
        (NOT_READY | UNREACHABLE, NO_EXECUTE | NO_SCHEDULE) | (UNSCHEDULABLE, NO_SCHEDULE)
    )
}

/// The node's taints as they must be: not-ready while Ready=False, unreachable
/// while Ready=Unknown (NoExecute to evict, NoSchedule to keep new pods away),
/// unschedulable while cordoned; other taints untouched, and a taint that stays
/// keeps its timeAdded. A node that has never reported Ready is left alone until
/// its grace period makes it Unknown.
pub fn desired_taints(node: &Node, now: Time) -> Vec<Taint> {
    let ready = ready_condition(node).map(|c| c.status.as_str());
    let mut wanted: Vec<(&str, &str)> = match ready {
        Some("False") => vec![(NOT_READY, NO_EXECUTE), (NOT_READY, NO_SCHEDULE)],
        Some("True") | None => Vec::new(),
        Some(_) => vec![(UNREACHABLE, NO_EXECUTE), (UNREACHABLE, NO_SCHEDULE)],
    };
    if node.spec.as_ref().is_some_and(|s| s.unschedulable) {
        wanted.push((UNSCHEDULABLE, NO_SCHEDULE));
    }
    let current = node.spec.as_ref().map(|s| s.taints.as_slice()).unwrap_or_default();
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint { key: key.into(), value: String::new(), effect: effect.into(), time_added: Some(now) });
        }
    }
    taints
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::NodeSpec;

    fn node(ready: Option<&str>, taints: Vec<Taint>) -> Node {
        Node {
            metadata: None,
            spec: Some(NodeSpec { taints, ..Default::default() }),
            status: Some(NodeStatus {
                conditions: ready
                    .map(|s| NodeCondition { r#type: "Ready".into(), status: s.into(), ..Default::default() })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        }
    }

    fn keys(taints: &[Taint]) -> Vec<(String, String)> {
        taints.iter().map(|t| (t.key.clone(), t.effect.clone())).collect()
    }

    #[test]
    fn silence_is_counted_from_the_last_change_seen() {
        let start = Instant::now();
        let grace = Duration::from_secs(40);
        let mut monitor = Monitor::new(grace);
        assert!(!monitor.silent("n", Some((1, 0)), None, start));
        assert!(!monitor.silent("n", Some((1, 0)), None, start + grace));
        assert!(monitor.silent("n", Some((1, 0)), None, start + grace + Duration::from_secs(1)));
        // A renewed lease alone is a sign of life.
        assert!(!monitor.silent("n", Some((1, 0)), Some((5, 0)), start + grace + Duration::from_secs(2)));
        monitor.retain(|_| false);
        assert!(!monitor.silent("n", Some((1, 0)), Some((5, 0)), start + grace * 3), "forgotten: a new grace");
    }

    #[test]
    fn unknown_keeps_heartbeats_and_covers_a_node_that_never_posted() {
        let mut status = node(Some("True"), vec![]).status.unwrap();
        status.conditions[0].last_heartbeat_time = Some(Time { seconds: 7, nanos: 0 });
        assert!(mark_unknown(&mut status, Time { seconds: 100, nanos: 0 }));
        assert_eq!(status.conditions[0].status, "Unknown");
        assert_eq!(status.conditions[0].last_heartbeat_time, Some(Time { seconds: 7, nanos: 0 }));
        assert!(!mark_unknown(&mut status, Time { seconds: 101, nanos: 0 }), "already unknown");
        let mut never = NodeStatus::default();
        assert!(mark_unknown(&mut never, Time { seconds: 100, nanos: 0 }));
        assert_eq!(never.conditions[0].reason, "NodeStatusNeverUpdated");
    }

    #[test]
    fn taints_follow_readiness_and_leave_others_alone() {
        let now = Time { seconds: 100, nanos: 0 };
        let user = Taint { key: "dedicated".into(), value: "x".into(), effect: NO_EXECUTE.into(), time_added: None };
        let unknown = desired_taints(&node(Some("Unknown"), vec![user.clone()]), now);
        assert_eq!(
            keys(&unknown),
            [
                ("dedicated".into(), NO_EXECUTE.into()),
                (UNREACHABLE.into(), NO_EXECUTE.into()),
                (UNREACHABLE.into(), NO_SCHEDULE.into())
            ]
        );
        let not_ready = desired_taints(&node(Some("False"), unknown.clone()), Time { seconds: 200, nanos: 0 });
        assert_eq!(
            keys(&not_ready)[1..],
            [(NOT_READY.into(), NO_EXECUTE.into()), (NOT_READY.into(), NO_SCHEDULE.into())]
        );
        let again = desired_taints(&node(Some("False"), not_ready.clone()), Time { seconds: 300, nanos: 0 });
        assert_eq!(again, not_ready, "a kept taint keeps its timeAdded");
        assert_eq!(
            keys(&desired_taints(&node(Some("True"), not_ready), now)),
            [("dedicated".into(), NO_EXECUTE.into())]
        );
        assert!(desired_taints(&node(None, vec![]), now).is_empty(), "never reported: wait for the grace period");
    }
}
