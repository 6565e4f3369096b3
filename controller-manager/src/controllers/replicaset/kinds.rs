//! What the replication controller needs from the two kinds it manages — apps/v1
//! ReplicaSet (set-based selector) and core/v1 ReplicationController (equality
//! selector) — so one controller serves both.

use proto::Resource;
use proto::apps::v1::{ReplicaSet, ReplicaSetStatus};
use proto::core::v1::{PodTemplateSpec, ReplicationController, ReplicationControllerStatus};
use proto::labels::Selector;

/// The status counts the controller computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
    pub observed_generation: i64,
}

pub trait Replicated: Resource {
    fn selector(&self) -> Result<Selector, String>;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn counts(&self) -> Counts;
    fn set_counts(&mut self, counts: Counts);
}

impl Replicated for ReplicaSet {
    fn selector(&self) -> Result<Selector, String> {
        match self.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            Some(selector) => Selector::from_label_selector(selector).map_err(|e| e.to_string()),
            None => Ok(Selector::nothing()),
        }
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().map_or(0, |s| s.min_ready_seconds)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn counts(&self) -> Counts {
        let s = self.status.clone().unwrap_or_default();
        Counts {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas,
            ready: s.ready_replicas,
            available: s.available_replicas,
            observed_generation: s.observed_generation,
        }
    }

    fn set_counts(&mut self, c: Counts) {
        let status = self.status.get_or_insert_with(ReplicaSetStatus::default);
        status.replicas = c.replicas;
        status.fully_labeled_replicas = c.fully_labeled;
        status.ready_replicas = c.ready;
        status.available_replicas = c.available;
        status.observed_generation = c.observed_generation;
    }
}

impl Replicated for ReplicationController {
    fn selector(&self) -> Result<Selector, String> {
        let selector = self.spec.as_ref().map(|s| &s.selector).filter(|s| !s.is_empty());
        Ok(selector.map_or_else(Selector::nothing, Selector::from_map))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().map_or(0, |s| s.min_ready_seconds)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn counts(&self) -> Counts {
        let s = self.status.clone().unwrap_or_default();
        Counts {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas,
            ready: s.ready_replicas,
            available: s.available_replicas,
            observed_generation: s.observed_generation,
        }
    }

    fn set_counts(&mut self, c: Counts) {
        let status = self.status.get_or_insert_with(ReplicationControllerStatus::default);
        status.replicas = c.replicas;
        status.fully_labeled_replicas = c.fully_labeled;
        status.ready_replicas = c.ready;
        status.available_replicas = c.available;
        status.observed_generation = c.observed_generation;
    }
}
