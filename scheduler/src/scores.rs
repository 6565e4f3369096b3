//! Scores: how good a feasible node is, each 0..=100, combined by weight.
//! Least allocated and balanced allocation (on cpu and memory, counting default
//! requests for containers that state none), preferred node affinity (normalised to
//! the best node), and PreferNoSchedule taints (fewer untolerated is better).

use proto::Resource as _;
use proto::core::v1::PreferredSchedulingTerm;
use serde::Deserialize;

use crate::cache::{NodeInfo, PodInfo};
use crate::filters::{term_matches, tolerates};

/// Score weights (kube-scheduler's defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Weights {
    pub least_allocated: i64,
    pub balanced_allocation: i64,
    pub node_affinity: i64,
    pub taint_toleration: i64,
    pub selector_spread: i64,
    pub topology_spread: i64,
    pub inter_pod_affinity: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            least_allocated: 1,
            balanced_allocation: 1,
            node_affinity: 2,
            taint_toleration: 3,
            selector_spread: 1,
            topology_spread: 2,
            inter_pod_affinity: 2,
        }
    }
}

fn fractions(pod: &PodInfo, node: &NodeInfo) -> (f64, f64) {
    let fraction = |used: i64, want: i64, have: i64| {
        if have <= 0 { 1.0 } else { ((used + want) as f64 / have as f64).min(1.0) }
    };
    (
        fraction(node.nonzero_requested.milli_cpu, pod.nonzero_requests.milli_cpu, node.allocatable.milli_cpu),
        fraction(node.nonzero_requested.memory, pod.nonzero_requests.memory, node.allocatable.memory),
    )
}

pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let (cpu, memory) = fractions(pod, node);
    (((1.0 - cpu) + (1.0 - memory)) * 50.0) as i64
}

pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let (cpu, memory) = fractions(pod, node);
    // The standard deviation of two values is half their difference.
    ((1.0 - (cpu - memory).abs() / 2.0) * 100.0) as i64
}

fn preferred_terms(pod: &PodInfo) -> &[PreferredSchedulingTerm] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .map_or(&[], |n| n.preferred_during_scheduling_ignored_during_execution.as_slice())
}

fn affinity_raw(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(labels) = node.labels() else { return 0 };
    preferred_terms(pod)
        .iter()
        .filter(|t| t.preference.as_ref().is_some_and(|p| term_matches(p, labels, &node.name)))
        .map(|t| i64::from(t.weight))
        .sum()
}

fn untolerated_soft_taints(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let tolerations = pod.pod.spec.as_ref().map_or(&[][..], |s| s.tolerations.as_slice());
    let taints = node.node.as_ref().and_then(|n| n.spec.as_ref()).map_or(&[][..], |s| s.taints.as_slice());
    taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerations.iter().any(|tol| tolerates(tol, t))).count()
        as i64
}

/// What makes pods "of the same kind" for spreading: the same controlling owner
/// (a ReplicaSet, ...) or a Service selecting them, in the pod's namespace.
pub struct Peers {
    pub namespace: String,
    pub owner_uid: Option<String>,
    pub selectors: Vec<proto::labels::Selector>,
}

impl Peers {
    fn is_peer(&self, other: &PodInfo) -> bool {
        if other.namespace() != self.namespace {
            return false;
        }
        let owner = other.pod.metadata().owner_references.iter().find(|r| r.controller == Some(true));
        if let (Some(uid), Some(owner)) = (&self.owner_uid, owner)
            && &owner.uid == uid
        {
            return true;
        }
        self.selectors.iter().any(|s| s.matches(other.labels()))
    }
}

/// The weighted total of every score for each node in `nodes`.
pub fn score(
    pod: &PodInfo,
    nodes: &[&NodeInfo],
    weights: &Weights,
    peers: Option<&Peers>,
    facts: &crate::filters::PodFacts,
) -> Vec<i64> {
    let mut totals: Vec<i64> = nodes
        .iter()
        .map(|n| {
            weights.least_allocated * least_allocated(pod, n)
                + weights.balanced_allocation * balanced_allocation(pod, n)
        })
        .collect();
    if !preferred_terms(pod).is_empty() {
        let raw: Vec<i64> = nodes.iter().map(|n| affinity_raw(pod, n)).collect();
        let max = raw.iter().copied().max().unwrap_or(0);
        if max > 0 {
            for (total, r) in totals.iter_mut().zip(&raw) {
                *total += weights.node_affinity * r * 100 / max;
            }
        }
    }
    let any_soft_taint = nodes.iter().any(|n| {
        n.node
            .as_ref()
            .and_then(|o| o.spec.as_ref())
            .is_some_and(|s| s.taints.iter().any(|t| t.effect == "PreferNoSchedule"))
    });
    if any_soft_taint {
        let raw: Vec<i64> = nodes.iter().map(|n| untolerated_soft_taints(pod, n)).collect();
        let max = raw.iter().copied().max().unwrap_or(0);
        for (total, r) in totals.iter_mut().zip(&raw) {
            let normalised = if max == 0 { 100 } else { 100 - r * 100 / max };
            *total += weights.taint_toleration * normalised;
        }
    } else {
        for total in totals.iter_mut() {
            *total += weights.taint_toleration * 100;
        }
    }
    if let Some(interpod) = &facts.interpod {
        let raw: Vec<Option<i64>> = nodes.iter().map(|n| interpod.raw_score(n)).collect();
        if raw.iter().any(Option::is_some) {
            // As kube-scheduler normalises it: the lowest sum 0, the highest 100.
            let raw: Vec<i64> = raw.into_iter().map(|r| r.unwrap_or(0)).collect();
            let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
            for (total, r) in totals.iter_mut().zip(&raw) {
                let normalised = if max == min { 0 } else { (r - min) * 100 / (max - min) };
                *total += weights.inter_pod_affinity * normalised;
            }
        }
    }
    let soft: Vec<&crate::spread::Constraint> = facts.spread.iter().filter(|c| !c.hard).collect();
    if !soft.is_empty() {
        // Matching pods in the node's domains: fewer is better.
        let raw: Vec<i64> = nodes.iter().map(|n| soft.iter().map(|c| c.domain_count(n).unwrap_or(0)).sum()).collect();
        let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
        for (total, r) in totals.iter_mut().zip(&raw) {
            let normalised = if max == min { 100 } else { (max - r) * 100 / (max - min) };
            *total += weights.topology_spread * normalised;
        }
    }
    if let Some(peers) = peers {
        // Fewer pods of the same kind on a node is better.
        let counts: Vec<i64> =
            nodes.iter().map(|n| n.pods.iter().filter(|p| peers.is_peer(p)).count() as i64).collect();
        let max = counts.iter().copied().max().unwrap_or(0);
        for (total, c) in totals.iter_mut().zip(&counts) {
            let normalised = if max == 0 { 100 } else { (max - c) * 100 / max };
            *total += weights.selector_spread * normalised;
        }
    }
    totals
}
