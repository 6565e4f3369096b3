//! Which pods a ReplicaSet (or ReplicationController) removes first when it has too
//! many: the least valuable, as Kubernetes ranks them — unscheduled before scheduled,
//! pending before unknown before running, not ready before ready, doubled-up on a
//! node before alone, ready for a shorter time before longer, more restarts before
//! fewer, newer before older.

use std::cmp::Ordering;
use std::collections::HashMap;

use proto::core::v1::Pod;
use proto::meta::v1::Time;

use crate::pods::{is_ready, ready_since};

/// Sorts `pods` so the first ones are the ones to delete.
pub fn sort_for_deletion(pods: &mut [Pod]) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for pod in pods.iter() {
        if let Some(node) = node_name(pod) {
            *per_node.entry(node.to_string()).or_default() += 1;
        }
    }
    pods.sort_by(|a, b| compare(a, b, &per_node));
}

fn compare(a: &Pod, b: &Pod, per_node: &HashMap<String, usize>) -> Ordering {
    // Each key orders the pod to delete first as the smaller.
    let scheduled = |p: &Pod| node_name(p).is_some();
    let phase_rank = |p: &Pod| match p.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("") {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let crowding = |p: &Pod| node_name(p).and_then(|n| per_node.get(n)).copied().unwrap_or(0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // More pods on the same node: deleting one spreads the set out.
        .then_with(|| crowding(b).cmp(&crowding(a)))
        // Ready more recently: less proven.
        .then_with(|| match (is_ready(a), is_ready(b)) {
            (true, true) => ready_since(b).cmp(&ready_since(a)),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        // Newer first; a pod without a creation time counts as newest.
        .then_with(|| match (created(a), created(b)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(x),
        })
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().map(|s| s.node_name.as_str()).filter(|n| !n.is_empty())
}

fn restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().map_or(0, |s| s.container_statuses.iter().map(|c| c.restart_count).sum())
}

fn created(pod: &Pod) -> Option<&Time> {
    pod.metadata.as_ref()?.creation_timestamp.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use proto::meta::v1::ObjectMeta;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: i64) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.to_string(),
                creation_timestamp: Some(Time { seconds: created, nanos: 0 }),
                ..Default::default()
            }),
            spec: Some(PodSpec { node_name: node.to_string(), ..Default::default() }),
            status: Some(PodStatus {
                phase: phase.to_string(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn names(pods: &[Pod]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.as_ref().unwrap().name.as_str()).collect()
    }

    #[test]
    fn the_least_valuable_pods_come_first() {
        let mut pods = vec![
            pod("running-ready-old", "n1", "Running", true, 10),
            pod("unscheduled", "", "Pending", false, 5),
            pod("running-not-ready", "n2", "Running", false, 10),
            pod("pending-on-node", "n3", "Pending", false, 10),
            pod("running-ready-new", "n4", "Running", true, 20),
        ];
        sort_for_deletion(&mut pods);
        assert_eq!(
            names(&pods),
            ["unscheduled", "pending-on-node", "running-not-ready", "running-ready-new", "running-ready-old"]
        );
    }

    #[test]
    fn crowded_nodes_and_restarts_break_ties() {
        let mut crowded = vec![pod("alone", "n1", "Running", true, 10), pod("a", "n2", "Running", true, 10)];
        crowded.push(pod("b", "n2", "Running", true, 10));
        sort_for_deletion(&mut crowded);
        assert_eq!(names(&crowded)[2], "alone", "pods sharing a node go before a pod alone");

        let mut restarted = pod("restarted", "n1", "Running", true, 10);
        restarted.status.as_mut().unwrap().container_statuses =
            vec![ContainerStatus { restart_count: 3, ..Default::default() }];
        let mut pods = vec![pod("steady", "n2", "Running", true, 10), restarted];
        sort_for_deletion(&mut pods);
        assert_eq!(names(&pods), ["restarted", "steady"]);
    }
}
