//! Preemption: for a pod that fits nowhere, the node where evicting the fewest,
//! lowest-priority pods makes room. Only pods of lower priority are candidates;
//! among them, the higher-priority ones are spared first ("reprieved") as long as
//! the pod still fits. Nodes are ranked by the highest victim priority, then the
//! number of victims, then the sum of their priorities.

use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::filters::{self, PodFacts};

fn ports_clash(pod: &PodInfo, others: &[&Arc<PodInfo>]) -> bool {
    pod.host_ports.iter().any(|want| others.iter().any(|o| o.host_ports.iter().any(|used| used.conflicts(want))))
}

/// Whether the pod fits on `node` if `staying` are the only pods left there.
fn fits_with(pod: &PodInfo, node: &NodeInfo, staying: &[&Arc<PodInfo>]) -> bool {
    let mut requested = crate::resources::Resources::default();
    for p in staying {
        requested.add(&p.requests);
    }
    filters::fits_resources(pod, requested, staying.len() as i64, node).is_none() && !ports_clash(pod, staying)
}

/// The victims on one node, if evicting some lower-priority pods lets `pod` fit.
fn victims_on(pod: &PodInfo, node: &NodeInfo) -> Option<Vec<Arc<PodInfo>>> {
    let (mut lower, higher): (Vec<&Arc<PodInfo>>, Vec<&Arc<PodInfo>>) =
        node.pods.iter().partition(|p| p.priority < pod.priority);
    if lower.is_empty() || !fits_with(pod, node, &higher) {
        return None;
    }
    lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let mut staying = higher;
    let mut victims = Vec::new();
    for candidate in lower {
        staying.push(candidate);
        if !fits_with(pod, node, &staying) {
            staying.pop();
            victims.push(candidate.clone());
        }
    }
    Some(victims)
}

/// Whether a pod may preempt at all.
pub fn may_preempt(pod: &PodInfo) -> bool {
    pod.pod.spec.as_ref().is_none_or(|s| s.preemption_policy.as_deref() != Some("Never"))
}

/// Whether a pod nominated to a node is still waiting there for victims to go: then
/// it must not preempt again (Kubernetes' PodEligibleToPreemptOthers), or every retry
/// during the victims' grace period would evict more pods elsewhere.
fn awaiting_victims(cache: &Cache, pod: &PodInfo) -> bool {
    let Some(node) = cache.nominated_node(&pod.key).and_then(|name| cache.node(name)) else { return false };
    node.pods
        .iter()
        .any(|p| p.priority < pod.priority && p.pod.metadata.as_ref().is_some_and(|m| m.deletion_timestamp.is_some()))
}

/// Highest victim priority, number of victims, sum of their priorities: lower is better.
type Rank = (i32, usize, i64);

/// The best node and its victims, if preemption can help.
pub fn find(cache: &Cache, pod: &PodInfo) -> Option<(String, Vec<Arc<PodInfo>>)> {
    if !may_preempt(pod) || awaiting_victims(cache, pod) {
        return None;
    }
    let facts = PodFacts::new(pod);
    let mut best: Option<(Rank, String, Vec<Arc<PodInfo>>)> = None;
    for node in cache.nodes() {
        if node.node.is_none() {
            continue;
        }
        // Only failures that evictions can cure (resources, ports) are worth it.
        match filters::check(&facts, node) {
            Some(failure) if failure.resolvable_by_preemption() => {}
            _ => continue,
        }
        let Some(victims) = victims_on(pod, node) else { continue };
        let rank = (
            victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
            victims.len(),
            victims.iter().map(|v| i64::from(v.priority)).sum(),
        );
        if best.as_ref().is_none_or(|(b, _, _)| rank < *b) {
            best = Some((rank, node.name.clone(), victims));
        }
    }
    best.map(|(_, node, victims)| (node, victims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{Container, Node, NodeCondition, NodeStatus, Pod, PodSpec, ResourceRequirements};
    use proto::meta::v1::{ObjectMeta, Quantity};

    fn node(name: &str, cpu: &str) -> Arc<Node> {
        let q = |s: &str| Quantity { string: s.to_string() };
        Arc::new(Node {
            metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
            status: Some(NodeStatus {
                allocatable: [("cpu".to_string(), q(cpu)), ("pods".to_string(), q("10"))].into_iter().collect(),
                conditions: vec![NodeCondition { r#type: "Ready".into(), status: "True".into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(name: &str, cpu: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(Pod {
            metadata: Some(ObjectMeta { name: name.into(), namespace: "default".into(), ..Default::default() }),
            spec: Some(PodSpec {
                priority: Some(priority),
                containers: vec![Container {
                    resources: Some(ResourceRequirements {
                        requests: [("cpu".to_string(), Quantity { string: cpu.into() })].into_iter().collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })))
    }

    #[test]
    fn the_fewest_lowest_priority_victims_are_chosen() {
        let mut cache = Cache::default();
        cache.set_node(node("a", "2"));
        cache.set_node(node("b", "2"));
        // a: two low pods of 1 cpu; b: one medium pod of 2 cpu.
        cache.set_bound_pod(pod("low-1", "1", 1), "a");
        cache.set_bound_pod(pod("low-2", "1", 2), "a");
        cache.set_bound_pod(pod("medium", "2", 5), "b");
        let (node, victims) = find(&cache, &pod("high", "1", 10)).unwrap();
        assert_eq!(node, "a");
        let names: Vec<&str> = victims.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(names, ["default/low-1"], "low-2 is reprieved: one victim suffices");
        assert!(find(&cache, &pod("equal", "1", 1)).is_none(), "no pod of lower priority to evict");
    }

    #[test]
    fn a_nominated_pod_does_not_preempt_again_while_its_victims_terminate() {
        let mut cache = Cache::default();
        cache.set_node(node("a", "2"));
        cache.set_node(node("b", "2"));
        let mut terminating = (*pod("low-a", "2", 1).pod).clone();
        terminating.metadata.get_or_insert_with(Default::default).deletion_timestamp =
            Some(proto::meta::v1::Time { seconds: 1, nanos: 0 });
        cache.set_bound_pod(Arc::new(PodInfo::new(Arc::new(terminating))), "a");
        cache.set_bound_pod(pod("low-b", "2", 1), "b");
        let high = pod("high", "2", 10);
        assert!(find(&cache, &high).is_some(), "not nominated: it may preempt");
        cache.nominate(high.clone(), "a");
        assert!(find(&cache, &high).is_none(), "its victim on a is still terminating: wait, evict nothing on b");
    }
}
