//! Pod topology spread constraints: how many matching pods each topology domain
//! (a value of the constraint's node label) holds, worked out once per attempt
//! over the nodes the pod could use. `DoNotSchedule` constraints filter (a node is
//! out when placing the pod there would exceed maxSkew over the emptiest domain);
//! `ScheduleAnyway` ones score (emptier domains are better).

use std::collections::HashMap;

use proto::Resource as _;
use proto::labels::Selector;

use crate::cache::{Cache, NodeInfo, PodInfo};

pub struct Constraint {
    pub key: String,
    pub max_skew: i64,
    pub hard: bool,
    /// Matching pods per domain.
    pub counts: HashMap<String, i64>,
    pub min: i64,
    /// 1 if the pod itself matches the selector.
    pub self_match: i64,
}

impl Constraint {
    pub fn domain_count(&self, node: &NodeInfo) -> Option<i64> {
        let domain = node.labels()?.get(&self.key)?;
        Some(self.counts.get(domain).copied().unwrap_or(0))
    }

    /// Whether the pod may go to `node` under this (hard) constraint: None if the
    /// node lacks the label, else whether the skew stays within bounds.
    pub fn allows(&self, node: &NodeInfo) -> Option<bool> {
        let count = self.domain_count(node)?;
        Some(count + self.self_match - self.min <= self.max_skew)
    }
}

/// The pod's constraints with their counts; `eligible` says which nodes the pod's
/// node selector and affinity allow (those define the domains).
pub fn prepare(cache: &Cache, pod: &PodInfo, eligible: impl Fn(&NodeInfo) -> bool) -> Vec<Constraint> {
    let Some(spec) = pod.pod.spec.as_ref() else { return Vec::new() };
    let mut out = Vec::new();
    for c in &spec.topology_spread_constraints {
        let selector = match c.label_selector.as_ref().map(Selector::from_label_selector) {
            Some(Ok(s)) => s,
            // No (or an invalid) selector matches no pod.
            _ => Selector::nothing(),
        };
        let mut counts: HashMap<String, i64> = HashMap::new();
        for node in cache.nodes() {
            let Some(domain) = node.labels().and_then(|l| l.get(&c.topology_key)) else { continue };
            if !eligible(node) {
                continue;
            }
            let matching = node
                .pods
                .iter()
                .filter(|p| {
                    p.namespace() == pod.namespace()
                        && p.pod.metadata().deletion_timestamp.is_none()
                        && selector.matches(p.labels())
                })
                .count() as i64;
            *counts.entry(domain.clone()).or_default() += matching;
        }
        let too_few_domains = c.min_domains.is_some_and(|m| (counts.len() as i64) < i64::from(m));
        let min = if too_few_domains { 0 } else { counts.values().copied().min().unwrap_or(0) };
        out.push(Constraint {
            key: c.topology_key.clone(),
            max_skew: i64::from(c.max_skew.max(1)),
            hard: c.when_unsatisfiable != "ScheduleAnyway",
            self_match: i64::from(selector.matches(pod.labels())),
            counts,
            min,
        });
    }
    out
}
