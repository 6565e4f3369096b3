//! Preemption: for a pod that fits nowhere, the node where evicting the fewest,
//! lowest-priority pods makes room. Only pods of lower priority are candidates;
//! among them, the higher-priority ones are spared first ("reprieved") as long as
//! the pod still fits. "Fits" takes in inter-pod (anti-)affinity with the victims
//! gone, as kube-scheduler runs every filter: a pod its anti-affinity forbids is
//! never spared, and a node where its affinity needs a pod of lower priority is no
//! candidate (kube-scheduler, too, does not work out whether that pod could stay). Nodes are
//! ranked by the highest victim priority, then the number of victims, then the sum
//! of their priorities.

use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::filters::{self, PodFacts};
use crate::interpod::{InterPod, Violation};

fn ports_clash(pod: &PodInfo, others: &[&Arc<PodInfo>]) -> bool {
    pod.host_ports.iter().any(|want| others.iter().any(|o| o.host_ports.iter().any(|used| used.conflicts(want))))
}

/// Whether the pod fits on `node` if `staying` are the only pods left there.
fn fits_with(pod: &PodInfo, node: &NodeInfo, staying: &[&Arc<PodInfo>], interpod: Option<&InterPod>) -> bool {
    let mut requested = crate::resources::Resources::default();
    for p in staying {
        requested.add(&p.requests);
    }
    if filters::fits_resources(pod, requested, staying.len() as i64, node).is_some() || ports_clash(pod, staying) {
        return false;
    }
    interpod.is_none_or(|state| {
        let gone: Vec<&Arc<PodInfo>> =
            node.pods.iter().filter(|p| !staying.iter().any(|s| Arc::ptr_eq(s, p))).collect();
        state.without(pod, node, &gone).check(node).is_none()
    })
}

/// The victims on one node, if evicting some lower-priority pods lets `pod` fit.
fn victims_on(pod: &PodInfo, node: &NodeInfo, interpod: Option<&InterPod>) -> Option<Vec<Arc<PodInfo>>> {
    let (mut lower, higher): (Vec<&Arc<PodInfo>>, Vec<&Arc<PodInfo>>) =
        node.pods.iter().partition(|p| p.priority < pod.priority);
    if lower.is_empty() || !fits_with(pod, node, &higher, interpod) {
        return None;
    }
    lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let mut staying = higher;
    let mut victims = Vec::new();
    for candidate in lower {
        staying.push(candidate);
        if !fits_with(pod, node, &staying, interpod) {
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
    // A pod whose own terms are invalid schedules nowhere; evicting cannot help.
    let Ok(interpod) = InterPod::prepare(cache, pod) else { return None };
    let mut best: Option<(Rank, String, Vec<Arc<PodInfo>>)> = None;
    for node in cache.nodes() {
        if node.node.is_none() {
            continue;
        }
        // Only failures that evictions can cure are worth it: resources, ports, and
        // pods that anti-affinity (the pod's or theirs) keeps it away from.
        match filters::check(&facts, node) {
            Some(failure) if failure.resolvable_by_preemption() => {}
            Some(_) => continue,
            None => {
                let violation = interpod.as_ref().and_then(|state| state.check(node));
                if !matches!(violation, Some(Violation::AntiAffinity | Violation::ExistingAntiAffinity)) {
                    continue;
                }
            }
        }
        let Some(victims) = victims_on(pod, node, interpod.as_ref()) else { continue };
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

    fn hostname_node(name: &str, cpu: &str) -> Arc<Node> {
        let mut node = (*node(name, cpu)).clone();
        node.metadata.get_or_insert_with(Default::default).labels.insert("kubernetes.io/hostname".into(), name.into());
        Arc::new(node)
    }

    /// Required terms, per node, on pods labelled app=`app` (for podAffinity or podAntiAffinity).
    fn on_the_node_of(app: &str) -> proto::core::v1::PodAffinity {
        let term = proto::core::v1::PodAffinityTerm {
            label_selector: Some(proto::meta::v1::LabelSelector {
                match_labels: [("app".to_string(), app.to_string())].into_iter().collect(),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        };
        proto::core::v1::PodAffinity {
            required_during_scheduling_ignored_during_execution: vec![term],
            ..Default::default()
        }
    }

    /// `base` with the label app=`app` (none if empty) and `affinity`.
    fn with_affinity(base: Arc<PodInfo>, app: &str, affinity: Option<proto::core::v1::Affinity>) -> Arc<PodInfo> {
        let mut pod = (*base.pod).clone();
        if !app.is_empty() {
            pod.metadata.get_or_insert_with(Default::default).labels.insert("app".into(), app.into());
        }
        pod.spec.get_or_insert_with(Default::default).affinity = affinity;
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    /// `base` with the label app=`app` and, if given, required anti-affinity (per
    /// node) to pods labelled app=`avoid`.
    fn app_pod(base: Arc<PodInfo>, app: &str, avoid: Option<&str>) -> Arc<PodInfo> {
        let anti = avoid.map(|avoid| proto::core::v1::Affinity {
            pod_anti_affinity: Some(on_the_node_of(avoid)),
            ..Default::default()
        });
        with_affinity(base, app, anti)
    }

    fn victim_names(found: Option<(String, Vec<Arc<PodInfo>>)>) -> Option<(String, Vec<String>)> {
        found.map(|(node, victims)| (node, victims.iter().map(|v| v.key.clone()).collect()))
    }

    #[test]
    fn the_pod_its_anti_affinity_avoids_is_evicted_rather_than_spared() {
        let mut cache = Cache::default();
        cache.set_node(hostname_node("a", "2"));
        // Room for the preemptor needs either pod gone; only the web pod's going lets it in.
        cache.set_bound_pod(app_pod(pod("web", "500m", 1), "web", None), "a");
        cache.set_bound_pod(app_pod(pod("filler", "1500m", 1), "", None), "a");
        let high = app_pod(pod("high", "500m", 10), "", Some("web"));
        assert_eq!(victim_names(find(&cache, &high)), Some(("a".into(), vec!["default/web".into()])));
    }

    #[test]
    fn anti_affinity_alone_is_cured_by_evicting_the_pods_in_the_way() {
        let mut cache = Cache::default();
        cache.set_node(hostname_node("b", "4"));
        cache.set_bound_pod(app_pod(pod("web", "500m", 1), "web", None), "b");
        cache.set_bound_pod(app_pod(pod("other", "500m", 1), "", None), "b");
        // Room enough: only its anti-affinity keeps the pod off b.
        let high = app_pod(pod("high", "500m", 10), "", Some("web"));
        assert_eq!(victim_names(find(&cache, &high)), Some(("b".into(), vec!["default/web".into()])));
        // Another pod's anti-affinity against the preemptor is cured the same way.
        let mut cache = Cache::default();
        cache.set_node(hostname_node("c", "4"));
        cache.set_bound_pod(app_pod(pod("loner", "500m", 1), "", Some("high")), "c");
        let labelled = app_pod(pod("high", "500m", 10), "high", None);
        assert_eq!(victim_names(find(&cache, &labelled)), Some(("c".into(), vec!["default/loner".into()])));
        // A pod in the way of higher priority cannot be evicted: nothing to do.
        let mut cache = Cache::default();
        cache.set_node(hostname_node("d", "4"));
        cache.set_bound_pod(app_pod(pod("web", "500m", 20), "web", None), "d");
        assert!(find(&cache, &high).is_none());
    }

    #[test]
    fn affinity_holds_during_preemption_and_to_lower_priority_pods_rules_the_node_out() {
        let near = with_affinity(
            pod("near", "500m", 10),
            "",
            Some(proto::core::v1::Affinity { pod_affinity: Some(on_the_node_of("db")), ..Default::default() }),
        );
        for (db_priority, expected) in [
            // The db pod outranks the preemptor: it stays, the filler goes.
            (20, Some(("a".to_string(), vec!["default/filler".to_string()]))),
            // Affinity to a pod preemption could evict: kube-scheduler, for speed, does
            // not work out whether it could stay; the node is not a candidate.
            (1, None),
        ] {
            let mut cache = Cache::default();
            cache.set_node(hostname_node("a", "2"));
            cache.set_bound_pod(app_pod(pod("filler", "1500m", 1), "", None), "a");
            cache.set_bound_pod(app_pod(pod("db", "500m", db_priority), "db", None), "a");
            assert_eq!(victim_names(find(&cache, &near)), expected, "db of priority {db_priority}");
        }
    }
}
