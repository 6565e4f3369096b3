//! What a DaemonSet does next, as a pure function of each node's fit and the
//! daemon pods on it: one pod on every node where it should run (none while an
//! old one is still terminating), none where it may not continue, failed pods
//! replaced, duplicates removed (the oldest stays); and a RollingUpdate that
//! replaces outdated pods while at most `maxUnavailable` nodes lack an available
//! daemon pod (outdated pods that are not available go at once).

/// A daemon pod on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonPod {
    pub name: String,
    /// At the DaemonSet's current template revision.
    pub updated: bool,
    pub available: bool,
    pub failed: bool,
    pub terminating: bool,
    /// Creation time, seconds: the oldest duplicate is kept.
    pub created: i64,
}

#[derive(Debug, Clone)]
pub struct NodeState {
    pub node: String,
    pub should_run: bool,
    pub should_continue: bool,
    pub pods: Vec<DaemonPod>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Nodes to create a pod on.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
}

/// `max_unavailable` is None for OnDelete (no automatic replacement).
pub fn plan(nodes: &[NodeState], max_unavailable: Option<i32>) -> Plan {
    let mut plan = Plan::default();
    // The pod kept on each node where one should run, for the rolling update.
    let mut kept: Vec<&DaemonPod> = Vec::new();
    let mut unavailable = 0;
    for state in nodes {
        let mut live: Vec<&DaemonPod> = state.pods.iter().filter(|p| !p.terminating && !p.failed).collect();
        live.sort_by_key(|p| p.created);
        plan.delete.extend(state.pods.iter().filter(|p| p.failed && !p.terminating).map(|p| p.name.clone()));
        if !state.should_continue {
            plan.delete.extend(live.iter().map(|p| p.name.clone()));
            continue;
        }
        match live.split_first() {
            Some((oldest, duplicates)) => {
                plan.delete.extend(duplicates.iter().map(|p| p.name.clone()));
                if state.should_run {
                    if !oldest.available {
                        unavailable += 1;
                    }
                    kept.push(oldest);
                }
            }
            None if state.should_run => {
                unavailable += 1;
                if !state.pods.iter().any(|p| p.terminating) {
                    plan.create.push(state.node.clone());
                }
            }
            None => {}
        }
    }
    let Some(max_unavailable) = max_unavailable else { return plan };
    for pod in kept.iter().filter(|p| !p.updated) {
        if !pod.available {
            plan.delete.push(pod.name.clone());
        } else if unavailable < max_unavailable {
            plan.delete.push(pod.name.clone());
            unavailable += 1;
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, updated: bool, available: bool) -> DaemonPod {
        DaemonPod { name: name.into(), updated, available, failed: false, terminating: false, created: 0 }
    }

    fn node(name: &str, fits: bool, pods: Vec<DaemonPod>) -> NodeState {
        NodeState { node: name.into(), should_run: fits, should_continue: fits, pods }
    }

    #[test]
    fn one_pod_per_fitting_node() {
        let mut old = pod("a-2", true, true);
        old.created = 5;
        let nodes = [
            node("a", true, vec![old, pod("a-1", true, true)]),
            node("b", true, vec![]),
            node("c", false, vec![pod("c-1", true, true)]),
        ];
        let p = plan(&nodes, Some(1));
        assert_eq!(p.create, ["b"]);
        assert_eq!(p.delete, ["a-2", "c-1"], "the newer duplicate and the pod on a node it no longer fits");
        let mut gone = pod("b-1", true, false);
        gone.terminating = true;
        assert!(plan(&[node("b", true, vec![gone])], Some(1)).create.is_empty(), "wait for the old pod to go");
        let mut failed = pod("b-1", true, false);
        failed.failed = true;
        assert_eq!(
            plan(&[node("b", true, vec![failed])], Some(1)),
            Plan { create: vec!["b".into()], delete: vec!["b-1".into()] }
        );
        let soft = NodeState {
            node: "d".into(),
            should_run: false,
            should_continue: true,
            pods: vec![pod("d-1", true, true)],
        };
        assert_eq!(plan(&[soft], Some(1)), Plan::default(), "a NoSchedule taint keeps a running pod");
    }

    #[test]
    fn rolling_update_stays_within_max_unavailable() {
        let nodes = [
            node("a", true, vec![pod("a-1", false, true)]),
            node("b", true, vec![pod("b-1", false, true)]),
            node("c", true, vec![pod("c-1", false, false)]),
        ];
        // c is unavailable already: with maxUnavailable 2, one available pod may go too.
        assert_eq!(plan(&nodes, Some(2)).delete, ["a-1", "c-1"]);
        assert_eq!(plan(&nodes, Some(1)).delete, ["c-1"], "only the unavailable outdated pod");
        assert!(plan(&nodes, None).delete.is_empty(), "OnDelete");
    }
}
