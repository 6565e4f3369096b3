//! Facts about a pod that several controllers ask: is it ready, since when, is it
//! available (ready for minReadySeconds), is it going away, which node it is on.

use client::runtime::Store;
use proto::core::v1::{Pod, PodCondition};
use proto::meta::v1::Time;

/// The pod store's index of pods by `spec.nodeName` (unbound pods are not in it).
pub const BY_NODE: &str = "spec.nodeName";

/// Adds the by-node index to the shared pod store (idempotent).
pub fn index_by_node(store: &Store<Pod>) {
    store.add_index(BY_NODE, |pod: &Pod| node_of(pod).map(str::to_string).into_iter().collect());
}

/// The node the pod is bound to.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().map(|s| s.node_name.as_str()).filter(|n| !n.is_empty())
}

/// The pod has finished (Succeeded or Failed) and will not run again.
pub fn is_finished(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready (or not ready).
pub fn ready_since(pod: &Pod) -> Option<&Time> {
    ready_condition(pod)?.last_transition_time.as_ref()
}

/// Ready for at least `min_ready_seconds` at `now` (seconds since the epoch).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: i64) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|t| t.seconds + i64::from(min_ready_seconds) <= now)
}

/// Deletion has begun: the pod still exists but no longer counts.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.as_ref().is_some_and(|m| m.deletion_timestamp.is_some())
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.iter().find(|c| c.r#type == "Ready")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::PodStatus;

    fn ready_at(seconds: i64) -> Pod {
        Pod {
            status: Some(PodStatus {
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time { seconds, nanos: 0 }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let pod = ready_at(100);
        assert!(is_ready(&pod));
        assert!(is_available(&pod, 0, 100));
        assert!(!is_available(&pod, 10, 109));
        assert!(is_available(&pod, 10, 110));
        assert!(!is_available(&Pod::default(), 0, 100));
    }
}
