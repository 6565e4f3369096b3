//! Which nodes a DaemonSet's pod belongs on: the template's nodeSelector and
//! required node affinity must match the node, and its taints must be tolerated —
//! NoSchedule and NoExecute ones to start a pod there, NoExecute ones to keep it
//! (as Kubernetes' shouldRun / shouldContinueRunning). Daemon pods tolerate the
//! node conditions a node agent has to ride out.

use proto::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Toleration};

use crate::tolerations::{NO_EXECUTE, NO_SCHEDULE, NOT_READY, UNREACHABLE, UNSCHEDULABLE, tolerates_all};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// A pod should be started on the node.
    pub should_run: bool,
    /// A pod already there may stay.
    pub should_continue: bool,
}

/// Adds the tolerations Kubernetes gives every daemon pod.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        (NOT_READY, NO_EXECUTE),
        (UNREACHABLE, NO_EXECUTE),
        ("node.kubernetes.io/disk-pressure", NO_SCHEDULE),
        ("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
        ("node.kubernetes.io/pid-pressure", NO_SCHEDULE),
        (UNSCHEDULABLE, NO_SCHEDULE),
    ];
    if spec.host_network {
        wanted.push(("node.kubernetes.io/network-unavailable", NO_SCHEDULE));
    }
    for (key, effect) in wanted {
        if !spec.tolerations.iter().any(|t| t.key == key && t.effect == effect && t.operator == "Exists") {
            spec.tolerations.push(Toleration {
                key: key.into(),
                operator: "Exists".into(),
                effect: effect.into(),
                ..Default::default()
            });
        }
    }
}

/// How the daemon pod `spec` (with its daemon tolerations) fits `node`.
pub fn fit(node: &Node, spec: &PodSpec) -> Fit {
    let matches = node_matches(node, spec);
    let taints = node.spec.as_ref().map(|s| s.taints.as_slice()).unwrap_or_default();
    Fit {
        should_run: matches && tolerates_all(&spec.tolerations, taints, &[NO_SCHEDULE, NO_EXECUTE]),
        should_continue: matches && tolerates_all(&spec.tolerations, taints, &[NO_EXECUTE]),
    }
}

fn node_matches(node: &Node, spec: &PodSpec) -> bool {
    let labels = node.metadata.as_ref().map(|m| &m.labels);
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if !spec.node_selector.iter().all(|(k, v)| label(k) == Some(v.as_str())) {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        // No terms matches no node, as in Kubernetes.
        Some(selector) => selector.node_selector_terms.iter().any(|term| term_matches(node, term)),
        None => true,
    }
}

fn term_matches(node: &Node, term: &NodeSelectorTerm) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    let meta = node.metadata.clone().unwrap_or_default();
    term.match_expressions.iter().all(|r| requirement_matches(r, meta.labels.get(&r.key).map(String::as_str)))
        && term.match_fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(meta.name.as_str());
            requirement_matches(r, value)
        })
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = &requirement.values;
    let number = |text: &str| text.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (value.and_then(number), values.first().and_then(|b| number(b))) else {
                return false;
            };
            if requirement.operator == "Gt" { have > bound } else { have < bound }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{Affinity, NodeAffinity, NodeSelector, NodeSpec, Taint};
    use proto::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            }),
            spec: Some(NodeSpec { taints, ..Default::default() }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: String::new(), effect: effect.into(), time_added: None }
    }

    fn daemon(spec: PodSpec) -> PodSpec {
        let mut spec = spec;
        add_daemon_tolerations(&mut spec);
        spec
    }

    #[test]
    fn taints_stop_new_pods_and_no_execute_ones_remove_running_pods() {
        let spec = daemon(PodSpec::default());
        assert_eq!(fit(&node("a", &[], vec![]), &spec), Fit { should_run: true, should_continue: true });
        let soft = node("a", &[], vec![taint("dedicated", NO_SCHEDULE)]);
        assert_eq!(fit(&soft, &spec), Fit { should_run: false, should_continue: true });
        let hard = node("a", &[], vec![taint("dedicated", NO_EXECUTE)]);
        assert_eq!(fit(&hard, &spec), Fit { should_run: false, should_continue: false });
        let unreachable = node("a", &[], vec![taint(UNREACHABLE, NO_EXECUTE), taint(UNSCHEDULABLE, NO_SCHEDULE)]);
        assert_eq!(fit(&unreachable, &spec), Fit { should_run: true, should_continue: true }, "daemon tolerations");
    }

    #[test]
    fn node_selector_and_required_affinity_pick_nodes() {
        let selected = daemon(PodSpec { node_selector: [("role".into(), "edge".into())].into(), ..Default::default() });
        assert!(fit(&node("a", &[("role", "edge")], vec![]), &selected).should_run);
        assert!(!fit(&node("a", &[("role", "core")], vec![]), &selected).should_continue);
        let requirement = |key: &str, operator: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let affinity = |terms: Vec<NodeSelectorTerm>| {
            daemon(PodSpec {
                affinity: Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: terms,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let by_zone = affinity(vec![NodeSelectorTerm {
            match_expressions: vec![requirement("zone", "In", &["x", "y"]), requirement("cores", "Gt", &["4"])],
            match_fields: vec![],
        }]);
        assert!(fit(&node("a", &[("zone", "y"), ("cores", "8")], vec![]), &by_zone).should_run);
        assert!(!fit(&node("a", &[("zone", "y"), ("cores", "2")], vec![]), &by_zone).should_run);
        assert!(!fit(&node("a", &[("zone", "z"), ("cores", "8")], vec![]), &by_zone).should_run);
        let by_name = affinity(vec![
            NodeSelectorTerm {
                match_expressions: vec![],
                match_fields: vec![requirement("metadata.name", "In", &["b"])],
            },
            NodeSelectorTerm { match_expressions: vec![requirement("gpu", "Exists", &[])], match_fields: vec![] },
        ]);
        assert!(fit(&node("b", &[], vec![]), &by_name).should_run);
        assert!(fit(&node("c", &[("gpu", "1")], vec![]), &by_name).should_run, "terms are ORed");
        assert!(!fit(&node("c", &[], vec![]), &by_name).should_run);
        assert!(!fit(&node("c", &[], vec![]), &affinity(vec![])).should_run, "no terms match nothing");
    }
}
