//! Inter-pod affinity and anti-affinity (`spec.affinity.podAffinity` and
//! `podAntiAffinity`), as kube-scheduler's InterPodAffinity plugin has them, worked
//! out once per attempt as counts per topology pair (a node label key and value):
//! - the pod's required affinity: a node passes when, for every term, its domain
//!   holds a pod matching all the terms (or no pod anywhere does and the pod matches
//!   its own terms: the first of a group that wants to be together);
//! - the pod's required anti-affinity: a node fails when its domain holds a pod
//!   matching a term;
//! - other pods' required anti-affinity: a node fails when it shares a domain with
//!   a pod whose term matches this pod;
//! - preferred terms, the pod's and the other pods' (symmetrically), score.

use std::collections::{BTreeMap, HashMap, HashSet};

use proto::core::v1::{Affinity, PodAffinityTerm};
use proto::labels::Selector;
use proto::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::cache::{Cache, NodeInfo, PodInfo};

/// A topology pair: a node label key and its value.
type Pair = (String, String);

/// Which namespaces a term looks at.
enum Namespaces {
    All,
    Listed(HashSet<String>),
}

/// One term, resolved against the pod that owns it.
struct Term {
    selector: Selector,
    namespaces: Namespaces,
    key: String,
}

impl Term {
    /// `term` of a pod in `namespace` with `labels` (for matchLabelKeys and mismatchLabelKeys).
    fn new(term: &PodAffinityTerm, namespace: &str, labels: &BTreeMap<String, String>) -> Result<Term, String> {
        let mut selector: LabelSelector = match &term.label_selector {
            Some(s) => s.clone(),
            // No selector selects no pod.
            None => {
                return Ok(Term {
                    selector: Selector::nothing(),
                    namespaces: Namespaces::All,
                    key: term.topology_key.clone(),
                });
            }
        };
        for (keys, operator) in [(&term.match_label_keys, "In"), (&term.mismatch_label_keys, "NotIn")] {
            for key in keys {
                if let Some(value) = labels.get(key) {
                    selector.match_expressions.push(LabelSelectorRequirement {
                        key: key.clone(),
                        operator: operator.into(),
                        values: vec![value.clone()],
                    });
                }
            }
        }
        let selector = Selector::from_label_selector(&selector).map_err(|e| format!("labelSelector: {e}"))?;
        let namespaces = match &term.namespace_selector {
            Some(s) if s.match_labels.is_empty() && s.match_expressions.is_empty() => Namespaces::All,
            Some(_) => {
                return Err("namespaceSelector with labels is not supported by this scheduler; list the namespaces in namespaces instead".into());
            }
            None if term.namespaces.is_empty() => Namespaces::Listed(HashSet::from([namespace.to_string()])),
            None => Namespaces::Listed(term.namespaces.iter().cloned().collect()),
        };
        if term.topology_key.is_empty() {
            return Err("topologyKey must not be empty".into());
        }
        Ok(Term { selector, namespaces, key: term.topology_key.clone() })
    }

    fn matches(&self, pod: &PodInfo) -> bool {
        let in_namespace = match &self.namespaces {
            Namespaces::All => true,
            Namespaces::Listed(names) => names.contains(pod.namespace()),
        };
        in_namespace && self.selector.matches(pod.labels())
    }
}

/// A pod's terms: required affinity, required anti-affinity, and weighted
/// preferred ones (anti-affinity with a negative weight).
struct Terms {
    affinity: Vec<Term>,
    anti: Vec<Term>,
    preferred: Vec<(i64, Term)>,
}

fn terms_of(pod: &PodInfo) -> Result<Terms, String> {
    let mut terms = Terms { affinity: Vec::new(), anti: Vec::new(), preferred: Vec::new() };
    let Some(affinity) = affinity(pod) else { return Ok(terms) };
    let (namespace, labels) = (pod.namespace(), pod.labels());
    let resolve = |t: &PodAffinityTerm, what: &str| Term::new(t, namespace, labels).map_err(|e| format!("{what}: {e}"));
    for (rules, sign, what) in
        [(&affinity.pod_affinity, 1, "podAffinity"), (&affinity.pod_anti_affinity, -1, "podAntiAffinity")]
    {
        let Some(rules) = rules else { continue };
        for t in &rules.required_during_scheduling_ignored_during_execution {
            let term = resolve(t, what)?;
            if sign > 0 { terms.affinity.push(term) } else { terms.anti.push(term) }
        }
        for w in &rules.preferred_during_scheduling_ignored_during_execution {
            if let Some(t) = &w.pod_affinity_term {
                terms.preferred.push((sign * i64::from(w.weight), resolve(t, what)?));
            }
        }
    }
    Ok(terms)
}

fn affinity(pod: &PodInfo) -> Option<&Affinity> {
    pod.pod.spec.as_ref()?.affinity.as_ref()
}

/// Whether the pod has any inter-pod (anti-)affinity term at all.
pub fn has_terms(pod: &proto::core::v1::Pod) -> bool {
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else { return false };
    [&a.pod_affinity, &a.pod_anti_affinity].iter().any(|r| {
        r.as_ref().is_some_and(|r| {
            !r.required_during_scheduling_ignored_during_execution.is_empty()
                || !r.preferred_during_scheduling_ignored_during_execution.is_empty()
        })
    })
}

/// What the filter and the score need, counted once per attempt.
#[derive(Default, Clone)]
pub struct InterPod {
    /// The keys of the pod's required affinity terms.
    affinity_keys: Vec<String>,
    /// Pods matching all of them, per pair.
    affinity_counts: HashMap<Pair, i64>,
    /// Whether the pod matches all its own required affinity terms.
    self_match: bool,
    /// Pods matching one of the pod's required anti-affinity terms, per pair.
    anti_counts: HashMap<Pair, i64>,
    /// Other pods' required anti-affinity terms that match the pod, per pair.
    existing_anti_counts: HashMap<Pair, i64>,
    /// Preferred weights per pair, the pod's terms and other pods' terms together.
    scores: HashMap<Pair, i64>,
}

/// Why a node fails inter-pod affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Affinity,
    AntiAffinity,
    ExistingAntiAffinity,
}

fn pair_of(node: &NodeInfo, key: &str) -> Option<Pair> {
    node.labels()?.get(key).map(|value| (key.to_string(), value.clone()))
}

impl InterPod {
    /// None when neither the pod nor any pod in the cache has inter-pod terms.
    /// An invalid term of the pod is an error naming it.
    pub fn prepare(cache: &Cache, pod: &PodInfo) -> Result<Option<InterPod>, String> {
        let own = terms_of(pod)?;
        let own_any = !(own.affinity.is_empty() && own.anti.is_empty() && own.preferred.is_empty());
        if !own_any && !cache.any_pod_affinity() {
            return Ok(None);
        }
        let mut state = InterPod {
            affinity_keys: own.affinity.iter().map(|t| t.key.clone()).collect(),
            self_match: own.affinity.iter().all(|t| t.matches(pod)),
            ..Default::default()
        };
        for node in cache.nodes() {
            if node.node.is_none() {
                continue;
            }
            for existing in &node.pods {
                if existing.key == pod.key {
                    continue;
                }
                state.tally(&own, pod, node, existing, 1);
            }
        }
        Ok(Some(state))
    }

    /// Counts `existing` on `node` (`delta` 1) or takes it away again (-1).
    fn tally(&mut self, own: &Terms, pod: &PodInfo, node: &NodeInfo, existing: &PodInfo, delta: i64) {
        if !own.affinity.is_empty() && own.affinity.iter().all(|t| t.matches(existing)) {
            for t in &own.affinity {
                if let Some(pair) = pair_of(node, &t.key) {
                    *self.affinity_counts.entry(pair).or_default() += delta;
                }
            }
        }
        for t in own.anti.iter().filter(|t| t.matches(existing)) {
            if let Some(pair) = pair_of(node, &t.key) {
                *self.anti_counts.entry(pair).or_default() += delta;
            }
        }
        for (weight, t) in own.preferred.iter().filter(|(_, t)| t.matches(existing)) {
            if let Some(pair) = pair_of(node, &t.key) {
                *self.scores.entry(pair).or_default() += weight * delta;
            }
        }
        if node.pods_with_pod_affinity == 0 || !has_terms(&existing.pod) {
            return;
        }
        // Another pod's terms count only when they are valid; an invalid
        // one kept that pod from scheduling, so it constrains nothing here.
        let Ok(theirs) = terms_of(existing) else { return };
        for t in theirs.anti.iter().filter(|t| t.matches(pod)) {
            if let Some(pair) = pair_of(node, &t.key) {
                *self.existing_anti_counts.entry(pair).or_default() += delta;
            }
        }
        for (weight, t) in theirs.preferred.iter().filter(|(_, t)| t.matches(pod)) {
            if let Some(pair) = pair_of(node, &t.key) {
                *self.scores.entry(pair).or_default() += weight * delta;
            }
        }
    }

    /// The counts once `gone` (pods on `node`) are evicted: what preemption checks
    /// a node against before it picks victims there.
    pub fn without(&self, pod: &PodInfo, node: &NodeInfo, gone: &[&std::sync::Arc<PodInfo>]) -> InterPod {
        let mut state = self.clone();
        // The pod's own terms were valid when this state was prepared.
        if let Ok(own) = terms_of(pod) {
            for existing in gone {
                state.tally(&own, pod, node, existing, -1);
            }
        }
        state.affinity_counts.retain(|_, n| *n > 0);
        state.anti_counts.retain(|_, n| *n > 0);
        state.existing_anti_counts.retain(|_, n| *n > 0);
        state
    }

    /// The first rule `node` breaks, if any (in kube-scheduler's order).
    pub fn check(&self, node: &NodeInfo) -> Option<Violation> {
        let labels = node.labels()?;
        let count = |counts: &HashMap<Pair, i64>, key: &str| {
            labels.get(key).and_then(|v| counts.get(&(key.to_string(), v.clone()))).copied().unwrap_or(0)
        };
        if self.existing_anti_counts.keys().any(|(key, _)| count(&self.existing_anti_counts, key) > 0) {
            return Some(Violation::ExistingAntiAffinity);
        }
        if self.anti_counts.keys().any(|(key, _)| count(&self.anti_counts, key) > 0) {
            return Some(Violation::AntiAffinity);
        }
        if !self.affinity_keys.is_empty() {
            if self.affinity_keys.iter().any(|k| !labels.contains_key(k)) {
                return Some(Violation::Affinity);
            }
            let together = self.affinity_keys.iter().all(|k| count(&self.affinity_counts, k) > 0);
            let first_of_its_group = self.affinity_counts.is_empty() && self.self_match;
            if !together && !first_of_its_group {
                return Some(Violation::Affinity);
            }
        }
        None
    }

    /// The preferred weights of the node's pairs; None when no preferred term applies.
    pub fn raw_score(&self, node: &NodeInfo) -> Option<i64> {
        if self.scores.is_empty() {
            return None;
        }
        let labels = node.labels()?;
        Some(
            self.scores
                .iter()
                .filter(|((key, value), _)| labels.get(key) == Some(value))
                .map(|(_, weight)| weight)
                .sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto::core::v1::Pod;

    use super::*;
    use crate::cache::tests::node;

    fn pod(name: &str, labels: serde_json::Value, affinity: serde_json::Value) -> Arc<PodInfo> {
        let pod: Pod = proto::codec::decode(&serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}], "affinity": affinity}
        }))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    fn zone_node(name: &str, zone: &str) -> Arc<proto::core::v1::Node> {
        let mut n = (*node(name)).clone();
        let meta = n.metadata.get_or_insert_with(Default::default);
        meta.labels.insert("zone".into(), zone.into());
        meta.labels.insert("kubernetes.io/hostname".into(), name.into());
        Arc::new(n)
    }

    fn cache() -> Cache {
        let mut cache = Cache::default();
        cache.set_node(zone_node("a1", "a"));
        cache.set_node(zone_node("a2", "a"));
        cache.set_node(zone_node("b1", "b"));
        cache
    }

    fn verdicts(cache: &Cache, incoming: &PodInfo) -> Vec<(String, Option<Violation>)> {
        let state = InterPod::prepare(cache, incoming).unwrap().unwrap();
        cache.nodes().iter().map(|n| (n.name.clone(), state.check(n))).collect()
    }

    #[test]
    fn required_affinity_follows_the_matching_pods_domain_and_lets_the_first_of_a_group_go_anywhere() {
        let mut cache = cache();
        let wants_cache = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}]}});
        let web = pod("web", serde_json::json!({"app": "web"}), wants_cache.clone());
        let first = verdicts(&cache, &web);
        assert!(first.iter().all(|(_, v)| *v == Some(Violation::Affinity)), "{first:?}");
        let own_group = pod("cache-0", serde_json::json!({"app": "cache"}), wants_cache);
        assert!(verdicts(&cache, &own_group).iter().all(|(_, v)| v.is_none()), "the first of a group goes anywhere");

        cache.set_bound_pod(pod("cache-1", serde_json::json!({"app": "cache"}), serde_json::json!({})), "a2");
        let v = verdicts(&cache, &web);
        assert_eq!(
            v,
            [("a1".into(), None), ("a2".into(), None), ("b1".into(), Some(Violation::Affinity))],
            "only zone a holds a cache"
        );
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut cache = cache();
        let apart = serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        cache.set_bound_pod(pod("db-0", serde_json::json!({"app": "db"}), apart.clone()), "a1");
        // The incoming pod's own term keeps it off a1.
        let db1 = pod("db-1", serde_json::json!({"app": "db"}), apart);
        assert_eq!(verdicts(&cache, &db1)[0], ("a1".into(), Some(Violation::ExistingAntiAffinity)));
        // A pod without terms is kept off a1 by db-0's term only if it matches it.
        let plain_db = pod("db-2", serde_json::json!({"app": "db"}), serde_json::json!({}));
        let v = verdicts(&cache, &plain_db);
        assert_eq!(v[0], ("a1".into(), Some(Violation::ExistingAntiAffinity)));
        assert!(v[1..].iter().all(|(_, v)| v.is_none()));
        let web = pod("web", serde_json::json!({"app": "web"}), serde_json::json!({}));
        assert!(verdicts(&cache, &web).iter().all(|(_, v)| v.is_none()));
        // The incoming pod's term against a pod without terms.
        let avoid_web = serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}});
        cache.set_bound_pod(web.clone(), "b1");
        let loner = pod("loner", serde_json::json!({}), avoid_web);
        assert_eq!(verdicts(&cache, &loner)[2], ("b1".into(), Some(Violation::AntiAffinity)));
    }

    #[test]
    fn preferred_terms_score_by_domain_and_bad_terms_are_named() {
        let mut cache = cache();
        cache.set_bound_pod(pod("cache-1", serde_json::json!({"app": "cache"}), serde_json::json!({})), "b1");
        let near_cache = serde_json::json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}]}});
        let web = pod("web", serde_json::json!({"app": "web"}), near_cache);
        let state = InterPod::prepare(&cache, &web).unwrap().unwrap();
        let scores: Vec<Option<i64>> = cache.nodes().iter().map(|n| state.raw_score(n)).collect();
        assert_eq!(scores, [Some(0), Some(0), Some(50)]);

        let selector = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone",
             "namespaceSelector": {"matchLabels": {"team": "a"}}}]}});
        let error = InterPod::prepare(&cache, &pod("x", serde_json::json!({}), selector)).err().unwrap();
        assert!(error.starts_with("podAffinity: namespaceSelector with labels is not supported"), "{error}");
        let no_affinity = pod("y", serde_json::json!({}), serde_json::json!({}));
        let mut empty = Cache::default();
        empty.set_node(zone_node("a1", "a"));
        assert!(InterPod::prepare(&empty, &no_affinity).unwrap().is_none(), "no work when no pod has terms");
    }
}
