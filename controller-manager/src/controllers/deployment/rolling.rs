//! The arithmetic of a RollingUpdate, as Kubernetes' deployment controller does it:
//! how far the new ReplicaSet may grow (maxSurge) and how far the old ones may shrink
//! (maxUnavailable) at each step. Pure functions over counts, so every step of a
//! rollout can be checked in unit tests.

use proto::meta::v1::IntOrString;

/// maxSurge and maxUnavailable resolved against the desired replica count. Surge
/// rounds up and unavailability down; both zero would deadlock a rollout, so
/// unavailability becomes 1 then.
pub fn fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let default = IntOrString::string("25%");
    let surge = max_surge.unwrap_or(&default).scaled_value(desired, true)?;
    let unavailable = max_unavailable.unwrap_or(&default).scaled_value(desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// One ReplicaSet as the rollout sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetCounts {
    pub name: String,
    /// spec.replicas
    pub replicas: i32,
    /// status.availableReplicas
    pub available: i32,
}

/// The new ReplicaSet's replica count for this step: grow toward `desired` without
/// the total of every ReplicaSet's replicas exceeding desired + maxSurge.
pub fn new_replicas(desired: i32, max_surge: i32, new: &ReplicaSetCounts, all: &[ReplicaSetCounts]) -> i32 {
    if new.replicas >= desired {
        return desired;
    }
    let max_total = desired + max_surge;
    let current: i32 = all.iter().map(|rs| rs.replicas).sum();
    if current >= max_total {
        return new.replicas;
    }
    let scale_up = (max_total - current).min(desired - new.replicas);
    new.replicas + scale_up
}

/// New replica counts for the old ReplicaSets (oldest first in `old`) in this step:
/// first drop their unavailable pods, then available ones, never taking the
/// available total below desired - maxUnavailable. Returns (name, new count) for
/// each ReplicaSet that changes.
pub fn scale_down_old(
    desired: i32,
    max_unavailable: i32,
    new: &ReplicaSetCounts,
    old: &[ReplicaSetCounts],
) -> Vec<(String, i32)> {
    let old_total: i32 = old.iter().map(|rs| rs.replicas).sum();
    if old_total == 0 {
        return Vec::new();
    }
    let all_total = old_total + new.replicas;
    let min_available = desired - max_unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    // Scaling down more than this could leave too few available pods once the new
    // ReplicaSet's unavailable pods are counted.
    let mut budget = all_total - min_available - new_unavailable;
    if budget <= 0 {
        return Vec::new();
    }
    let mut counts: Vec<ReplicaSetCounts> = old.to_vec();
    // Unavailable old pods count for nothing: remove them first.
    for rs in counts.iter_mut() {
        if budget == 0 {
            break;
        }
        let unhealthy = (rs.replicas - rs.available).max(0);
        let drop = unhealthy.min(budget);
        rs.replicas -= drop;
        budget -= drop;
    }
    // Then available ones, while enough stay available overall.
    let available_total: i32 = counts.iter().map(|rs| rs.available.min(rs.replicas)).sum::<i32>() + new.available;
    let mut allowed = (available_total - min_available).max(0);
    for rs in counts.iter_mut() {
        if allowed == 0 {
            break;
        }
        let drop = rs.replicas.min(allowed);
        rs.replicas -= drop;
        allowed -= drop;
    }
    counts
        .into_iter()
        .zip(old)
        .filter(|(after, before)| after.replicas != before.replicas)
        .map(|(after, _)| (after.name, after.replicas))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSetCounts {
        ReplicaSetCounts { name: name.to_string(), replicas, available }
    }

    #[test]
    fn fenceposts_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::string(s);
        assert_eq!(fenceposts(None, None, 10).unwrap(), (3, 2), "25% surge rounds up, 25% unavailable down");
        assert_eq!(fenceposts(Some(&IntOrString::int(0)), Some(&IntOrString::int(0)), 5).unwrap(), (0, 1));
        assert_eq!(fenceposts(Some(&pct("10%")), Some(&pct("10%")), 3).unwrap(), (1, 0));
        assert!(fenceposts(Some(&pct("ten")), None, 3).is_err());
    }

    #[test]
    fn the_new_replica_set_grows_within_the_surge() {
        let new = rs("new", 0, 0);
        let old = rs("old", 10, 10);
        assert_eq!(new_replicas(10, 3, &new, &[new.clone(), old.clone()]), 3);
        let grown = rs("new", 3, 0);
        assert_eq!(new_replicas(10, 3, &grown, &[grown.clone(), old]), 3, "total already at 13");
        let done = rs("new", 10, 10);
        assert_eq!(new_replicas(10, 3, &done, std::slice::from_ref(&done)), 10);
        let over = rs("new", 12, 12);
        assert_eq!(new_replicas(10, 3, &over, std::slice::from_ref(&over)), 10, "scaled down to desired");
    }

    #[test]
    fn old_replica_sets_shrink_within_max_unavailable() {
        // 10 desired, surge 3, unavailable 2: new has 3 not yet available.
        let new = rs("new", 3, 0);
        let plan = scale_down_old(10, 2, &new, &[rs("old", 10, 10)]);
        assert_eq!(plan, vec![("old".to_string(), 8)], "13 - 8 min available - 3 unavailable new = 2");
        // Once the new pods are available, the old ones go further.
        let new = rs("new", 3, 3);
        assert_eq!(scale_down_old(10, 2, &new, &[rs("old", 8, 8)]), vec![("old".to_string(), 5)]);
    }

    #[test]
    fn unavailable_old_pods_go_first_and_oldest_replica_sets_first() {
        let new = rs("new", 2, 2);
        let plan = scale_down_old(4, 0, &new, &[rs("oldest", 2, 0), rs("older", 2, 2)]);
        // Budget 6 - 4 - 0 = 2: both unavailable pods of "oldest" go; available
        // pods stay because exactly 4 are available.
        assert_eq!(plan, vec![("oldest".to_string(), 0)]);
    }

    /// A simulated rollout never exceeds desired + surge pods nor drops below
    /// desired - unavailable available pods, and ends with only the new set.
    #[test]
    fn a_simulated_rollout_respects_both_bounds_at_every_step() {
        for (desired, surge, unavailable) in [(10, 3, 2), (10, 0, 1), (10, 1, 0), (3, 1, 1), (1, 1, 0)] {
            let mut new = rs("new", 0, 0);
            let mut old = vec![rs("old", desired, desired)];
            for _ in 0..100 {
                let all: Vec<_> = std::iter::once(new.clone()).chain(old.iter().cloned()).collect();
                new.replicas = new_replicas(desired, surge, &new, &all);
                let total: i32 = new.replicas + old.iter().map(|r| r.replicas).sum::<i32>();
                assert!(total <= desired + surge, "{desired}/{surge}/{unavailable}: {total} pods");
                for (name, count) in scale_down_old(desired, unavailable, &new, &old) {
                    let target = old.iter_mut().find(|r| r.name == name).unwrap();
                    target.replicas = count;
                    target.available = target.available.min(count);
                }
                let available: i32 = new.available + old.iter().map(|r| r.available).sum::<i32>();
                assert!(available >= desired - unavailable, "{desired}/{surge}/{unavailable}: {available} available");
                // The new pods become available before the next step.
                new.available = new.replicas;
                if new.replicas == desired && old.iter().all(|r| r.replicas == 0) {
                    break;
                }
            }
            assert_eq!((new.replicas, old[0].replicas), (desired, 0), "{desired}/{surge}/{unavailable} converges");
        }
    }
}
