//! Taints and tolerations as the node lifecycle and DaemonSet controllers read
//! them: whether a toleration matches a taint, and when a pod on a NoExecute-tainted
//! node has to go.

use proto::core::v1::{Taint, Toleration};

pub const NO_EXECUTE: &str = "NoExecute";
pub const NO_SCHEDULE: &str = "NoSchedule";

/// The taints the node lifecycle controller manages.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Kubernetes' ToleratesTaint: an empty key with Exists tolerates every taint, an
/// empty effect every effect; Equal (or no operator) compares values.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if !toleration.effect.is_empty() && toleration.effect != taint.effect {
        return false;
    }
    if !toleration.key.is_empty() && toleration.key != taint.key {
        return false;
    }
    match toleration.operator.as_str() {
        "Exists" => true,
        "" | "Equal" => toleration.value == taint.value,
        _ => false,
    }
}

/// Every taint with one of `effects` is tolerated by some toleration.
pub fn tolerates_all(tolerations: &[Toleration], taints: &[Taint], effects: &[&str]) -> bool {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
}

/// What the NoExecute taints of a node mean for a pod on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// No NoExecute taint, or every one tolerated for ever.
    Never,
    /// Evict at this time (seconds since the epoch); in the past means now.
    At(i64),
}

/// When a pod with `tolerations` has to leave a node with `taints`. `added` gives
/// each taint's start (its timeAdded, or when it was first seen). A taint nothing
/// tolerates evicts at once; otherwise the pod stays for the shortest
/// tolerationSeconds among the tolerations it relies on, counted from the taint's
/// start, as Kubernetes' taint manager does.
pub fn eviction(tolerations: &[Toleration], taints: &[Taint], added: impl Fn(&Taint) -> i64, now: i64) -> Eviction {
    let mut deadline: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::At(now);
        }
        // A matching toleration without seconds tolerates this taint for ever.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let seconds = matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
        let at = added(taint).saturating_add(seconds);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    deadline.map_or(Eviction::Never, Eviction::At)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.into(), effect: effect.into(), time_added: None }
    }

    fn toleration(key: &str, operator: &str, value: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: operator.into(),
            value: value.into(),
            effect: effect.into(),
            toleration_seconds: seconds,
        }
    }

    #[test]
    fn tolerations_match_by_key_value_and_effect() {
        let t = taint("dedicated", "gpu", NO_EXECUTE);
        assert!(tolerates(&toleration("dedicated", "Equal", "gpu", NO_EXECUTE, None), &t));
        assert!(tolerates(&toleration("dedicated", "", "gpu", "", None), &t), "no operator means Equal");
        assert!(!tolerates(&toleration("dedicated", "Equal", "cpu", NO_EXECUTE, None), &t));
        assert!(tolerates(&toleration("dedicated", "Exists", "", NO_EXECUTE, None), &t));
        assert!(!tolerates(&toleration("dedicated", "Exists", "", NO_SCHEDULE, None), &t));
        assert!(tolerates(&toleration("", "Exists", "", "", None), &t), "empty key with Exists tolerates all");
        assert!(!tolerates(&toleration("other", "Exists", "", "", None), &t));
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration_relied_on() {
        let taints = [taint(UNREACHABLE, "", NO_EXECUTE), taint("soft", "", NO_SCHEDULE)];
        let at = |_: &Taint| 1000;
        assert_eq!(eviction(&[], &taints, at, 1005), Eviction::At(1005), "nothing tolerates it: now");
        let short = toleration(UNREACHABLE, "Exists", "", NO_EXECUTE, Some(300));
        let shorter = toleration("", "Exists", "", "", Some(30));
        assert_eq!(eviction(std::slice::from_ref(&short), &taints, at, 1005), Eviction::At(1300));
        assert_eq!(eviction(&[short, shorter], &taints, at, 1005), Eviction::At(1030));
        let forever = toleration(UNREACHABLE, "Exists", "", NO_EXECUTE, None);
        assert_eq!(eviction(&[forever], &taints, at, 1005), Eviction::Never);
        assert_eq!(eviction(&[], &[taint("soft", "", NO_SCHEDULE)], at, 1005), Eviction::Never);
        let negative = toleration(UNREACHABLE, "Exists", "", NO_EXECUTE, Some(-5));
        assert_eq!(eviction(&[negative], &taints, at, 1005), Eviction::At(1000));
    }
}
