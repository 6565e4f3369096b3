//! Filters: whether a pod can run on a node, and if not, why — in the words
//! Kubernetes uses, so that the FailedScheduling message reads the same
//! ("0/3 nodes are available: 1 node(s) had untolerated taint {tag: test}, 2 Insufficient cpu.").
//! Order as in kube-scheduler: readiness, cordon, taints, node affinity, host
//! ports, resources. A node reports the reasons of the first filter it fails.

use std::collections::BTreeMap;

use proto::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use proto::labels::{Operator, Requirement};

use crate::cache::{NodeInfo, PodInfo};

/// What a pod needs, worked out once per attempt.
pub struct PodFacts<'a> {
    pub info: &'a PodInfo,
    pub tolerations: &'a [Toleration],
    pub node_selector: &'a BTreeMap<String, String>,
    /// None: no required node affinity.
    pub required_terms: Option<&'a [NodeSelectorTerm]>,
    /// Topology spread constraints with their domain counts (empty when none).
    pub spread: Vec<crate::spread::Constraint>,
    /// Inter-pod (anti-)affinity counts; None when no pod has such terms.
    pub interpod: Option<crate::interpod::InterPod>,
    /// Requests and pod counts held by nominated pods this pod must not
    /// displace, by node (empty when none).
    pub reserved: std::collections::HashMap<String, crate::cache::Reservation>,
}

impl<'a> PodFacts<'a> {
    pub fn new(info: &'a PodInfo) -> Self {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        let spec = info.pod.spec.as_ref();
        PodFacts {
            info,
            tolerations: spec.map_or(&[], |s| s.tolerations.as_slice()),
            node_selector: spec.map_or(&EMPTY, |s| &s.node_selector),
            required_terms: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
                .map(|r| r.node_selector_terms.as_slice()),
            spread: Vec::new(),
            interpod: None,
            reserved: Default::default(),
        }
    }
}

/// Why a node was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    NotReady,
    Unschedulable,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    HostPorts,
    TopologySpread,
    TopologySpreadMissingLabel,
    InterPod(crate::interpod::Violation),
    /// Which of cpu, memory, ephemeral-storage and the pod count ran out.
    Insufficient {
        cpu: bool,
        memory: bool,
        ephemeral_storage: bool,
        pods: bool,
    },
}

impl Failure {
    /// The reasons as kube-scheduler words them.
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Failure::NotReady => vec!["node(s) were not ready".into()],
            Failure::Unschedulable => vec!["node(s) were unschedulable".into()],
            Failure::UntoleratedTaint { key, value } => {
                vec![format!("node(s) had untolerated taint {{{key}: {value}}}")]
            }
            Failure::NodeAffinity => vec!["node(s) didn't match Pod's node affinity/selector".into()],
            Failure::HostPorts => vec!["node(s) didn't have free ports for the requested pod ports".into()],
            Failure::TopologySpread => vec!["node(s) didn't match pod topology spread constraints".into()],
            Failure::TopologySpreadMissingLabel => {
                vec!["node(s) didn't match pod topology spread constraints (missing required label)".into()]
            }
            Failure::InterPod(crate::interpod::Violation::Affinity) => {
                vec!["node(s) didn't match pod affinity rules".into()]
            }
            Failure::InterPod(crate::interpod::Violation::AntiAffinity) => {
                vec!["node(s) didn't match pod anti-affinity rules".into()]
            }
            Failure::InterPod(crate::interpod::Violation::ExistingAntiAffinity) => {
                vec!["node(s) didn't satisfy existing pods anti-affinity rules".into()]
            }
            Failure::Insufficient { cpu, memory, ephemeral_storage, pods } => {
                let mut out = Vec::new();
                if *pods {
                    out.push("Too many pods".to_string());
                }
                if *cpu {
                    out.push("Insufficient cpu".to_string());
                }
                if *memory {
                    out.push("Insufficient memory".to_string());
                }
                if *ephemeral_storage {
                    out.push("Insufficient ephemeral-storage".to_string());
                }
                out
            }
        }
    }

    /// Whether evicting pods from the node could cure this.
    pub fn resolvable_by_preemption(&self) -> bool {
        matches!(self, Failure::HostPorts | Failure::Insufficient { .. })
    }
}

pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if !toleration.effect.is_empty() && toleration.effect != taint.effect {
        return false;
    }
    if toleration.key.is_empty() {
        return toleration.operator == "Exists";
    }
    if toleration.key != taint.key {
        return false;
    }
    match toleration.operator.as_str() {
        "Exists" => true,
        "" | "Equal" => toleration.value == taint.value,
        _ => false,
    }
}

fn requirement_matches(requirement: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let operator = match requirement.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return false,
    };
    Requirement::new(requirement.key.as_str(), operator, requirement.values.iter().map(String::as_str))
        .is_ok_and(|r| r.matches(labels))
}

/// One node selector term: every expression holds and every field requirement
/// (only `metadata.name` exists) holds. A term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    let fields: BTreeMap<String, String> = if term.match_fields.is_empty() {
        BTreeMap::new()
    } else {
        [("metadata.name".to_string(), node_name.to_string())].into_iter().collect()
    };
    term.match_expressions.iter().all(|r| requirement_matches(r, labels))
        && term.match_fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, &fields))
}

/// Runs every filter; None when the pod fits.
pub fn check(pod: &PodFacts, node: &NodeInfo) -> Option<Failure> {
    let Some(object) = node.node.as_ref() else { return Some(Failure::NotReady) };
    if !node.ready {
        return Some(Failure::NotReady);
    }
    let spec = object.spec.as_ref();
    if spec.is_some_and(|s| s.unschedulable) {
        let cordon =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if !pod.tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Some(Failure::Unschedulable);
        }
    }
    for taint in spec.map_or(&[][..], |s| s.taints.as_slice()) {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !pod.tolerations.iter().any(|t| tolerates(t, taint))
        {
            return Some(Failure::UntoleratedTaint { key: taint.key.clone(), value: taint.value.clone() });
        }
    }
    if !matches_affinity(pod, node) {
        return Some(Failure::NodeAffinity);
    }
    let reserved = pod.reserved.get(&node.name);
    let held_ports = reserved.map_or(&[][..], |r| r.host_ports.as_slice());
    if pod.info.host_ports.iter().any(|want| node.used_ports.iter().chain(held_ports).any(|used| used.conflicts(want)))
    {
        return Some(Failure::HostPorts);
    }
    let (mut requested, mut pod_count) = (node.requested, node.pods.len() as i64);
    if let Some(held) = reserved {
        requested.add(&held.requests);
        pod_count += held.pods;
    }
    if let Some(failure) = fits_resources(pod.info, requested, pod_count, node) {
        return Some(failure);
    }
    for constraint in pod.spread.iter().filter(|c| c.hard) {
        match constraint.allows(node) {
            None => return Some(Failure::TopologySpreadMissingLabel),
            Some(false) => return Some(Failure::TopologySpread),
            Some(true) => {}
        }
    }
    if let Some(violation) = pod.interpod.as_ref().and_then(|state| state.check(node)) {
        return Some(Failure::InterPod(violation));
    }
    None
}

/// The pod's nodeSelector and required node affinity.
pub fn matches_affinity(pod: &PodFacts, node: &NodeInfo) -> bool {
    let Some(labels) = node.labels() else { return false };
    if pod.node_selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        return false;
    }
    pod.required_terms.is_none_or(|terms| terms.iter().any(|t| term_matches(t, labels, &node.name)))
}

/// The resource filter against a given use of the node (preemption asks with
/// victims taken away).
pub fn fits_resources(
    pod: &PodInfo,
    requested: crate::resources::Resources,
    pod_count: i64,
    node: &NodeInfo,
) -> Option<Failure> {
    let want = &pod.requests;
    let have = &node.allocatable;
    let pods = pod_count + 1 > node.allowed_pods;
    let cpu = want.milli_cpu > 0 && requested.milli_cpu + want.milli_cpu > have.milli_cpu;
    let memory = want.memory > 0 && requested.memory + want.memory > have.memory;
    let ephemeral_storage =
        want.ephemeral_storage > 0 && requested.ephemeral_storage + want.ephemeral_storage > have.ephemeral_storage;
    (pods || cpu || memory || ephemeral_storage).then_some(Failure::Insufficient {
        cpu,
        memory,
        ephemeral_storage,
        pods,
    })
}

/// Kubernetes' FitError text: reasons counted over nodes and sorted as strings.
pub fn fit_error(total_nodes: usize, failures: &[Failure]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for failure in failures {
        for reason in failure.reasons() {
            *counts.entry(reason).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(reason, n)| format!("{n} {reason}")).collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{total_nodes} nodes are available.")
    } else {
        format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_counts_reasons_as_kubernetes_prints_them() {
        let cpu = Failure::Insufficient { cpu: true, memory: false, ephemeral_storage: false, pods: false };
        let taint = Failure::UntoleratedTaint { key: "tag".into(), value: "test".into() };
        assert_eq!(
            fit_error(3, &[cpu.clone(), taint, cpu]),
            "0/3 nodes are available: 1 node(s) had untolerated taint {tag: test}, 2 Insufficient cpu."
        );
    }

    #[test]
    fn tolerations_match_as_in_kubernetes() {
        let taint = Taint { key: "k".into(), value: "v".into(), effect: "NoSchedule".into(), ..Default::default() };
        let t = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: effect.into(),
            ..Default::default()
        };
        assert!(tolerates(&t("k", "Equal", "v", "NoSchedule"), &taint));
        assert!(tolerates(&t("k", "", "v", ""), &taint));
        assert!(tolerates(&t("k", "Exists", "", ""), &taint));
        assert!(tolerates(&t("", "Exists", "", ""), &taint));
        assert!(!tolerates(&t("k", "Equal", "w", ""), &taint));
        assert!(!tolerates(&t("k", "Exists", "", "NoExecute"), &taint));
    }

    #[test]
    fn affinity_operators_hold_as_documented() {
        let labels: BTreeMap<String, String> =
            [("zone".to_string(), "a".to_string()), ("cores".to_string(), "8".to_string())].into_iter().collect();
        let term = |key: &str, op: &str, values: &[&str]| NodeSelectorTerm {
            match_expressions: vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            ..Default::default()
        };
        assert!(term_matches(&term("zone", "In", &["a", "b"]), &labels, "n"));
        assert!(!term_matches(&term("zone", "NotIn", &["a"]), &labels, "n"));
        assert!(term_matches(&term("gpu", "DoesNotExist", &[]), &labels, "n"));
        assert!(term_matches(&term("zone", "Exists", &[]), &labels, "n"));
        assert!(term_matches(&term("cores", "Gt", &["4"]), &labels, "n"));
        assert!(!term_matches(&term("cores", "Lt", &["4"]), &labels, "n"));
        assert!(!term_matches(&NodeSelectorTerm::default(), &labels, "n"));
    }
}
