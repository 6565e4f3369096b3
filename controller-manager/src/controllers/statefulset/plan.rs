//! What a StatefulSet does next, as a pure function of its spec and its pods by
//! ordinal, in the order of Kubernetes' StatefulSet control:
//! 1. replace finished pods;
//! 2. create missing ordinals, lowest first — with OrderedReady, one at a time,
//!    each after every lower ordinal is Running and Ready;
//! 3. remove ordinals past `replicas`, highest first (OrderedReady: one at a time);
//! 4. RollingUpdate: once every pod is Running and Ready, replace the highest pod
//!    at or above `partition` not yet at the update revision, one at a time.
//!    OnDelete replaces nothing: a pod the user deletes comes back updated.

use std::collections::BTreeMap;

/// One pod of the set, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub revision: String,
    /// Running and Ready.
    pub healthy: bool,
    pub terminating: bool,
    /// Succeeded or Failed: it has to be replaced.
    pub finished: bool,
}

#[derive(Debug, Clone)]
pub struct Shape {
    /// The first ordinal (spec.ordinals.start).
    pub start: i32,
    pub replicas: i32,
    /// OrderedReady (else Parallel).
    pub ordered: bool,
    /// RollingUpdate (else OnDelete).
    pub rolling: bool,
    pub partition: i32,
    pub current_revision: String,
    pub update_revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create { ordinal: i32, revision: String },
    Delete { ordinal: i32 },
}

pub fn plan(shape: &Shape, members: &BTreeMap<i32, Member>) -> Vec<Step> {
    let mut steps = Vec::new();
    let end = shape.start.saturating_add(shape.replicas.max(0));
    let wanted = |ordinal: i32| ordinal >= shape.start && ordinal < end;

    for (&ordinal, member) in members.iter().filter(|(o, _)| wanted(**o)) {
        if member.finished && !member.terminating {
            steps.push(Step::Delete { ordinal });
            if shape.ordered {
                return steps;
            }
        }
    }

    for ordinal in shape.start..end {
        match members.get(&ordinal) {
            None => {
                // Below the partition, a recreated pod keeps the current revision.
                let revision = if shape.rolling && ordinal < shape.partition {
                    shape.current_revision.clone()
                } else {
                    shape.update_revision.clone()
                };
                steps.push(Step::Create { ordinal, revision });
                if shape.ordered {
                    return steps;
                }
            }
            Some(member) if shape.ordered && !member.healthy => return steps,
            Some(_) => {}
        }
    }

    for (&ordinal, member) in members.iter().rev().filter(|(o, _)| !wanted(**o)) {
        if member.terminating {
            if shape.ordered {
                return steps;
            }
            continue;
        }
        steps.push(Step::Delete { ordinal });
        if shape.ordered {
            return steps;
        }
    }

    if !shape.rolling || !steps.is_empty() {
        return steps;
    }
    let in_range = || members.iter().filter(|(o, _)| wanted(**o));
    if in_range().count() < usize::try_from(end - shape.start).unwrap_or(0) || in_range().any(|(_, m)| !m.healthy) {
        return steps;
    }
    for (&ordinal, member) in in_range().rev().filter(|(o, _)| **o >= shape.partition) {
        if member.terminating {
            return steps;
        }
        if member.revision != shape.update_revision {
            steps.push(Step::Delete { ordinal });
            return steps;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(replicas: i32, ordered: bool) -> Shape {
        Shape {
            start: 0,
            replicas,
            ordered,
            rolling: true,
            partition: 0,
            current_revision: "v1".into(),
            update_revision: "v1".into(),
        }
    }

    fn member(revision: &str, healthy: bool) -> Member {
        Member { revision: revision.into(), healthy, terminating: false, finished: false }
    }

    fn members(list: &[(i32, Member)]) -> BTreeMap<i32, Member> {
        list.iter().cloned().collect()
    }

    fn create(ordinal: i32, revision: &str) -> Step {
        Step::Create { ordinal, revision: revision.into() }
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_after_the_previous_is_ready() {
        let s = shape(3, true);
        assert_eq!(plan(&s, &members(&[])), [create(0, "v1")]);
        assert_eq!(plan(&s, &members(&[(0, member("v1", false))])), [], "wait for pod 0");
        assert_eq!(plan(&s, &members(&[(0, member("v1", true))])), [create(1, "v1")]);
        let parallel = shape(3, false);
        assert_eq!(plan(&parallel, &members(&[])), [create(0, "v1"), create(1, "v1"), create(2, "v1")]);
    }

    #[test]
    fn scale_down_goes_highest_first() {
        let all = members(&[(0, member("v1", true)), (1, member("v1", true)), (2, member("v1", true))]);
        assert_eq!(plan(&shape(1, true), &all), [Step::Delete { ordinal: 2 }]);
        let mut going = all.clone();
        going.get_mut(&2).unwrap().terminating = true;
        assert_eq!(plan(&shape(1, true), &going), [], "wait for pod 2 to go");
        assert_eq!(plan(&shape(1, false), &all), [Step::Delete { ordinal: 2 }, Step::Delete { ordinal: 1 }]);
    }

    #[test]
    fn rolling_update_replaces_the_highest_outdated_pod_down_to_the_partition() {
        let mut s = shape(3, true);
        s.update_revision = "v2".into();
        s.partition = 1;
        let old = members(&[(0, member("v1", true)), (1, member("v1", true)), (2, member("v1", true))]);
        assert_eq!(plan(&s, &old), [Step::Delete { ordinal: 2 }]);
        let mut half = old.clone();
        half.insert(2, member("v2", true));
        assert_eq!(plan(&s, &half), [Step::Delete { ordinal: 1 }]);
        half.insert(1, member("v2", true));
        assert_eq!(plan(&s, &half), [], "pod 0 is below the partition");
        half.remove(&0);
        assert_eq!(plan(&s, &half), [create(0, "v1")], "below the partition, recreated at the current revision");
        s.rolling = false;
        assert_eq!(plan(&s, &members(&[(0, member("v1", true)), (1, member("v1", true))])), [create(2, "v2")]);
    }

    #[test]
    fn finished_pods_are_replaced() {
        let mut failed = member("v1", false);
        failed.finished = true;
        assert_eq!(
            plan(&shape(2, true), &members(&[(0, failed), (1, member("v1", true))])),
            [Step::Delete { ordinal: 0 }]
        );
    }
}
