//! The deployment loop, in the shape of Kubernetes' pkg/controller/deployment: a
//! Deployment owns one ReplicaSet per pod template (named by the template's hash);
//! each sync finds or creates the ReplicaSet of the current template, moves replicas
//! from the old ones to it — RollingUpdate within maxSurge and maxUnavailable, or
//! Recreate — prunes history beyond revisionHistoryLimit, and writes status and the
//! Available and Progressing conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::Api;
use client::runtime::store::BY_NAMESPACE;
use client::runtime::{Change, Informer, WorkQueue, key_of};
use proto::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use proto::core::v1::{Pod, PodTemplateSpec};
use proto::labels::Selector;
use proto::meta::v1::{LabelSelector, ObjectMeta, Time};
use proto::{ApiError, Reason, Resource};

use super::rolling::{ReplicaSetCounts, fenceposts, new_replicas, scale_down_old};
use super::template_hash;
use crate::context::Context;
use crate::ownership::{controller_of, controller_reference, owner_key};

/// The revision a ReplicaSet (and its Deployment) carries, as kubectl reads it.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

pub struct DeploymentController {
    ctx: Arc<Context>,
    deployments: Arc<Informer<Deployment>>,
    sets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue<String>,
}

impl DeploymentController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(DeploymentController {
            deployments: ctx.informers.get::<Deployment>(),
            sets: ctx.informers.get::<ReplicaSet>(),
            pods: ctx.informers.get::<Pod>(),
            ctx,
            queue: WorkQueue::default(),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.deployments.wait_synced().await;
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        let mut deployment_changes = self.deployments.subscribe();
        let mut set_changes = self.sets.subscribe();
        let mut pod_changes = self.pods.subscribe();
        let mut tasks = Vec::new();
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = deployment_changes.recv().await {
                this.queue.add(key_of(change.object().as_ref()));
            }
        }));
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = set_changes.recv().await {
                if let Change::Updated { old, .. } = &change {
                    this.enqueue_owner(old.metadata());
                }
                this.enqueue_owner(change.object().metadata());
            }
        }));
        // Recreate waits for old pods to be gone: their deletions matter.
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = pod_changes.recv().await {
                if let Change::Deleted(pod) = change {
                    this.enqueue_deployment_of_pod(&pod);
                }
            }
        }));
        let this = self.clone();
        tasks.extend(crate::tasks::spawn_workers(&self.queue, workers, "deployment", move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        }));
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    fn enqueue_owner(&self, meta: &ObjectMeta) {
        if let Some(owner) = controller_of(meta).filter(|r| r.kind == "Deployment") {
            self.queue.add(owner_key(&meta.namespace, owner));
        } else {
            // An orphan ReplicaSet: any Deployment whose selector matches may adopt it.
            for d in self.deployments.store().by_index(BY_NAMESPACE, &meta.namespace) {
                if selector_of(&d).is_some_and(|s| s.matches(&meta.labels)) {
                    self.queue.add(key_of(d.as_ref()));
                }
            }
        }
    }

    fn enqueue_deployment_of_pod(&self, pod: &Pod) {
        let meta = pod.metadata();
        let Some(owner) = controller_of(meta).filter(|r| r.kind == "ReplicaSet") else { return };
        if let Some(set) = self.sets.store().get(&owner_key(&meta.namespace, owner)) {
            self.enqueue_owner(set.metadata());
        }
    }

    async fn sync(&self, key: &str) -> Result<(), ApiError> {
        let Some(deployment) = self.deployments.store().get(key) else { return Ok(()) };
        let d = deployment.as_ref();
        let meta = d.metadata();
        let Some(selector) = selector_of(d) else { return Ok(()) };
        let sets_api: Api<ReplicaSet> = Api::namespaced(&self.ctx.client, &meta.namespace);

        // The ReplicaSets this Deployment owns, adopting matching orphans.
        let mut owned: Vec<ReplicaSet> = Vec::new();
        for set in self.sets.store().by_index(BY_NAMESPACE, &meta.namespace) {
            match controller_of(set.metadata()) {
                Some(r) if r.uid == meta.uid => owned.push(set.as_ref().clone()),
                None if selector.matches(&set.metadata().labels) && meta.deletion_timestamp.is_none() => {
                    let mut adopted = set.as_ref().clone();
                    adopted.metadata_mut().owner_references.push(controller_reference(d));
                    owned.push(sets_api.update(&adopted).await?);
                }
                _ => {}
            }
        }
        if meta.deletion_timestamp.is_some() {
            return self.update_status(d, &owned, false).await;
        }
        let spec = d.spec.clone().unwrap_or_default();
        let desired = spec.replicas.unwrap_or(1);
        let template = spec.template.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash::compute(&template, collision_count);

        let (new, old): (Vec<ReplicaSet>, Vec<ReplicaSet>) =
            owned.into_iter().partition(|rs| same_template(rs, &template));
        let mut old = old;
        // Oldest revision first: the first to shrink and to be pruned.
        old.sort_by_key(revision_of);
        let max_old_revision = old.iter().map(revision_of).max().unwrap_or(0);

        if spec.paused {
            let mut all = old.clone();
            all.extend(new);
            return self.update_status(d, &all, false).await;
        }

        let mut changed = false;
        let new = match new.into_iter().next() {
            Some(mut rs) => {
                // A rollback makes an old template current again: it becomes the
                // newest revision.
                if revision_of(&rs) <= max_old_revision {
                    rs.metadata_mut().annotations.insert(REVISION.to_string(), (max_old_revision + 1).to_string());
                    rs = sets_api.update(&rs).await?;
                    changed = true;
                }
                rs
            }
            None => {
                let rs = new_replica_set(d, &template, &hash, max_old_revision + 1);
                match sets_api.create(&rs).await {
                    Ok(created) => {
                        self.ctx.recorder.normal(
                            d,
                            "ScalingReplicaSet",
                            format!("Created new replica set \"{}\"", created.metadata().name),
                        );
                        changed = true;
                        created
                    }
                    Err(e) if e.is(Reason::AlreadyExists) => {
                        // Either our own creation the informer has not shown yet, or
                        // a ReplicaSet of that name with another template: a hash
                        // collision, counted so the next hash differs.
                        let existing = sets_api.get(&rs.metadata().name).await?;
                        let ours = controller_of(existing.metadata()).is_some_and(|r| r.uid == meta.uid);
                        if !(ours && same_template(&existing, &template)) {
                            return self.bump_collision_count(d).await;
                        }
                        existing
                    }
                    Err(e) => return Err(e),
                }
            }
        };

        let counts = |rs: &ReplicaSet| ReplicaSetCounts {
            name: rs.metadata().name.clone(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            available: rs.status.as_ref().map_or(0, |s| s.available_replicas),
        };
        let mut scale: BTreeMap<String, i32> = BTreeMap::new();
        if spec.strategy.as_ref().is_some_and(|s| s.r#type == "Recreate") {
            for rs in &old {
                if counts(rs).replicas > 0 {
                    scale.insert(rs.metadata().name.clone(), 0);
                }
            }
            let old_pods_remain = scale.is_empty() && self.old_pods_remain(&meta.namespace, &old);
            if scale.is_empty() && !old_pods_remain && counts(&new).replicas != desired {
                scale.insert(new.metadata().name.clone(), desired);
            }
        } else {
            let rolling = spec.strategy.as_ref().and_then(|s| s.rolling_update.clone()).unwrap_or_default();
            let (surge, unavailable) =
                fenceposts(rolling.max_surge.as_ref(), rolling.max_unavailable.as_ref(), desired)
                    .map_err(|e| ApiError::bad_request(format!("deployment {key}: {e}")))?;
            let new_counts = counts(&new);
            let all: Vec<ReplicaSetCounts> =
                std::iter::once(new_counts.clone()).chain(old.iter().map(counts)).collect();
            let grown = new_replicas(desired, surge, &new_counts, &all);
            if grown != new_counts.replicas {
                scale.insert(new_counts.name.clone(), grown);
            } else {
                let old_counts: Vec<ReplicaSetCounts> = old.iter().map(counts).collect();
                scale.extend(scale_down_old(desired, unavailable, &new_counts, &old_counts));
            }
        }
        for (name, replicas) in &scale {
            let Some(rs) = std::iter::once(&new).chain(old.iter()).find(|rs| &rs.metadata().name == name) else {
                continue;
            };
            let mut scaled = rs.clone();
            let from = scaled.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            scaled.spec.get_or_insert_with(Default::default).replicas = Some(*replicas);
            scaled
                .metadata_mut()
                .annotations
                .insert("deployment.kubernetes.io/desired-replicas".into(), desired.to_string());
            sets_api.update(&scaled).await?;
            let verb = if *replicas > from { "up" } else { "down" };
            self.ctx.recorder.normal(
                d,
                "ScalingReplicaSet",
                format!("Scaled {verb} replica set {name} from {from} to {replicas}"),
            );
            changed = true;
        }

        let complete = counts(&new).replicas == desired
            && new.status.as_ref().is_some_and(|s| s.available_replicas >= desired && s.replicas == desired)
            && old.iter().all(|rs| counts(rs).replicas == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0));
        if complete {
            self.prune_history(d, &sets_api, &old).await?;
        }
        let mut all = old;
        all.push(new);
        self.update_status(d, &all, changed).await
    }

    fn old_pods_remain(&self, namespace: &str, old: &[ReplicaSet]) -> bool {
        let uids: Vec<&str> = old.iter().map(|rs| rs.metadata().uid.as_str()).collect();
        self.pods.store().by_index(BY_NAMESPACE, namespace).iter().any(|pod| {
            let owned = controller_of(pod.metadata()).is_some_and(|r| uids.contains(&r.uid.as_str()));
            let finished = pod.status.as_ref().is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed");
            owned && !finished
        })
    }

    /// Deletes the oldest scaled-down ReplicaSets beyond revisionHistoryLimit.
    async fn prune_history(&self, d: &Deployment, api: &Api<ReplicaSet>, old: &[ReplicaSet]) -> Result<(), ApiError> {
        let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0);
        let idle: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0)
            .filter(|rs| rs.status.as_ref().is_none_or(|s| s.replicas == 0))
            .collect();
        let excess = idle.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        for rs in idle.into_iter().take(excess) {
            match api.delete(&rs.metadata().name, Default::default()).await {
                Ok(_) => {}
                Err(e) if e.is(Reason::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn bump_collision_count(&self, d: &Deployment) -> Result<(), ApiError> {
        let mut updated = d.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
        let api: Api<Deployment> = Api::namespaced(&self.ctx.client, &d.metadata().namespace);
        api.update_status(&updated).await?;
        Err(ApiError::conflict(
            Deployment::INFO,
            &d.metadata().name,
            "pod-template hash collision; retrying with a new hash",
        ))
    }

    async fn update_status(&self, d: &Deployment, sets: &[ReplicaSet], progressed: bool) -> Result<(), ApiError> {
        let spec = d.spec.clone().unwrap_or_default();
        let desired = spec.replicas.unwrap_or(1);
        let template = spec.template.clone().unwrap_or_default();
        let sum = |f: fn(&proto::apps::v1::ReplicaSetStatus) -> i32| -> i32 {
            sets.iter().map(|rs| rs.status.as_ref().map_or(0, f)).sum()
        };
        let updated: i32 = sets
            .iter()
            .filter(|rs| same_template(rs, &template))
            .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
            .sum();
        let previous = d.status.clone().unwrap_or_default();
        let available = sum(|s| s.available_replicas);
        let mut status = DeploymentStatus {
            observed_generation: d.metadata().generation,
            replicas: sum(|s| s.replicas),
            updated_replicas: updated,
            ready_replicas: sum(|s| s.ready_replicas),
            available_replicas: available,
            unavailable_replicas: (desired - available).max(0),
            terminating_replicas: previous.terminating_replicas,
            conditions: previous.conditions.clone(),
            collision_count: previous.collision_count,
        };
        let rolling = spec.strategy.as_ref().and_then(|s| s.rolling_update.clone()).unwrap_or_default();
        let max_unavailable = if spec.strategy.as_ref().is_some_and(|s| s.r#type == "Recreate") {
            desired
        } else {
            fenceposts(rolling.max_surge.as_ref(), rolling.max_unavailable.as_ref(), desired).map_or(0, |(_, u)| u)
        };
        let now = Time::now();
        if available >= desired - max_unavailable {
            set_condition(
                &mut status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
            );
        } else {
            set_condition(
                &mut status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
            );
        }
        let new_name = sets
            .iter()
            .find(|rs| same_template(rs, &template))
            .map(|rs| rs.metadata().name.clone())
            .unwrap_or_default();
        let complete = updated == desired && status.replicas == desired && available >= desired;
        if spec.paused {
            set_condition(&mut status, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now);
        } else if complete {
            set_condition(
                &mut status,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                now,
            );
        } else if progressed || !status.conditions.iter().any(|c| c.r#type == "Progressing" && c.status == "True") {
            set_condition(
                &mut status,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{new_name}\" is progressing."),
                now,
            );
        } else if let Some(deadline) = spec.progress_deadline_seconds {
            let last = status
                .conditions
                .iter()
                .find(|c| c.r#type == "Progressing")
                .and_then(|c| c.last_update_time)
                .map_or(now.seconds, |t| t.seconds);
            if now.seconds - last > i64::from(deadline) {
                set_condition(
                    &mut status,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    now,
                );
            } else {
                let left = u64::try_from(i64::from(deadline) - (now.seconds - last)).unwrap_or(0) + 1;
                self.queue.add_after(key_of(d), Duration::from_secs(left));
            }
        }
        let mut revision_annotation = None;
        if let Some(new) = sets.iter().find(|rs| same_template(rs, &template)) {
            let revision = revision_of(new).to_string();
            if d.metadata().annotations.get(REVISION) != Some(&revision) {
                revision_annotation = Some(revision);
            }
        }
        let api: Api<Deployment> = Api::namespaced(&self.ctx.client, &d.metadata().namespace);
        if let Some(revision) = revision_annotation {
            let patch = serde_json::json!({"metadata": {"annotations": {REVISION: revision}}});
            api.patch(&d.metadata().name, client::PatchType::Merge, &patch).await?;
        }
        if d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated_deployment = d.clone();
        updated_deployment.status = Some(status);
        match api.update_status(&updated_deployment).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn selector_of(d: &Deployment) -> Option<Selector> {
    let selector = d.spec.as_ref()?.selector.as_ref()?;
    Selector::from_label_selector(selector).ok()
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata().annotations.get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Whether `rs` runs `template`, ignoring the hash label it added.
fn same_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(mut ours) = rs.spec.as_ref().and_then(|s| s.template.clone()) else { return false };
    if let Some(meta) = ours.metadata.as_mut() {
        meta.labels.remove(template_hash::LABEL);
    }
    let mut theirs = template.clone();
    if let Some(meta) = theirs.metadata.as_mut() {
        meta.labels.remove(template_hash::LABEL);
    }
    ours == theirs
}

fn new_replica_set(d: &Deployment, template: &PodTemplateSpec, hash: &str, revision: i64) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = template.clone();
    let template_meta = template.metadata.get_or_insert_with(Default::default);
    template_meta.labels.insert(template_hash::LABEL.to_string(), hash.to_string());
    let labels = template_meta.labels.clone();
    let mut selector: LabelSelector = spec.selector.clone().unwrap_or_default();
    selector.match_labels.insert(template_hash::LABEL.to_string(), hash.to_string());
    let desired = spec.replicas.unwrap_or(1);
    ReplicaSet {
        metadata: Some(ObjectMeta {
            name: format!("{}-{hash}", d.metadata().name),
            namespace: d.metadata().namespace.clone(),
            labels,
            annotations: [
                (REVISION.to_string(), revision.to_string()),
                ("deployment.kubernetes.io/desired-replicas".to_string(), desired.to_string()),
            ]
            .into(),
            owner_references: vec![controller_reference(d)],
            ..Default::default()
        }),
        spec: Some(ReplicaSetSpec {
            // Grown by the strategy, starting from none.
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector: Some(selector),
            template: Some(template),
        }),
        status: None,
    }
}

fn set_condition(status: &mut DeploymentStatus, kind: &str, value: &str, reason: &str, message: &str, now: Time) {
    match status.conditions.iter_mut().find(|c| c.r#type == kind) {
        Some(c) if c.status == value && c.reason == reason => {
            if c.message != message {
                c.message = message.to_string();
            }
            // Progress refreshes the time the deadline counts from.
            if kind == "Progressing" && reason == "ReplicaSetUpdated" {
                c.last_update_time = Some(now);
            }
        }
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now);
            }
            c.status = value.to_string();
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.last_update_time = Some(now);
        }
        None => status.conditions.push(DeploymentCondition {
            r#type: kind.to_string(),
            status: value.to_string(),
            last_update_time: Some(now),
            last_transition_time: Some(now),
            reason: reason.to_string(),
            message: message.to_string(),
        }),
    }
}
