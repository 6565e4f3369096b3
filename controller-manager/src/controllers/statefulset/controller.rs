//! The StatefulSet loop: a set's changes, and those of the pods and revisions it
//! owns, wake it; a sync brings its history up to date (ControllerRevisions),
//! plans the next steps from its pods by ordinal (`plan`), creates each new pod's
//! claims before the pod, and writes status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use client::Api;
use client::runtime::store::BY_OWNER_UID;
use client::runtime::{Action, Controller, Informer};
use proto::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use proto::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use proto::meta::v1::Time;
use proto::{ApiError, Reason, Resource};

use super::identity::{self, ordinal_of};
use super::plan::{Member, Shape, Step, plan};
use crate::context::Context;
use crate::ownership::controlled_by;
use crate::pods::{is_available, is_finished, is_ready, is_terminating};
use crate::revisions::{self, HASH_LABEL};

pub struct StatefulSetController {
    ctx: Arc<Context>,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    revisions: Arc<Informer<ControllerRevision>>,
}

impl StatefulSetController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(StatefulSetController {
            sets: ctx.informers.get::<StatefulSet>(),
            pods: ctx.informers.get::<Pod>(),
            revisions: ctx.informers.get::<ControllerRevision>(),
            ctx,
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let controller = Controller::new(self.sets.clone())
            .owns(self.pods.clone())
            .owns(self.revisions.clone())
            .workers(workers)
            .resync_every(Duration::from_secs(300));
        controller
            .run(move |_key, set: Option<Arc<StatefulSet>>| {
                let this = self.clone();
                async move {
                    match set {
                        Some(set) => this.sync(&set).await,
                        None => Ok(Action::await_change()),
                    }
                }
            })
            .await;
    }

    async fn sync(&self, set: &StatefulSet) -> Result<Action, ApiError> {
        let meta = set.metadata();
        if meta.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let spec = set.spec.clone().unwrap_or_default();
        let Some(template) = spec.template.clone() else { return Ok(Action::await_change()) };
        let pods = controlled_by(&self.pods.store(), &meta.uid);
        let owned_revisions: Vec<ControllerRevision> =
            self.revisions.store().by_index(BY_OWNER_UID, &meta.uid).into_iter().map(|r| r.as_ref().clone()).collect();
        let status = set.status.clone().unwrap_or_default();
        let labels = spec.selector.as_ref().map(|s| s.match_labels.clone()).unwrap_or_default();
        let revision_of = |p: &Pod| p.metadata().labels.get(HASH_LABEL).cloned().unwrap_or_default();
        let history = revisions::sync(
            &self.ctx.client,
            set,
            &labels,
            &template,
            status.collision_count,
            owned_revisions,
            &status.current_revision,
            spec.revision_history_limit.unwrap_or(10),
            |name| pods.iter().any(|p| revision_of(p) == name),
        )
        .await?;
        let update_revision = history.update.metadata().name.clone();
        let current_revision = history.current.metadata().name.clone();
        let current_template = revisions::template_of(&history.current).unwrap_or_else(|| template.clone());

        let by_ordinal: BTreeMap<i32, &Arc<Pod>> =
            pods.iter().filter_map(|p| ordinal_of(&meta.name, &p.metadata().name).map(|o| (o, p))).collect();
        let members: BTreeMap<i32, Member> = by_ordinal
            .iter()
            .map(|(&ordinal, pod)| {
                let running = pod.status.as_ref().is_some_and(|s| s.phase == "Running");
                let member = Member {
                    revision: revision_of(pod),
                    healthy: running && is_ready(pod) && !is_terminating(pod),
                    terminating: is_terminating(pod),
                    finished: is_finished(pod),
                };
                (ordinal, member)
            })
            .collect();
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let shape = Shape {
            start: spec.ordinals.map_or(0, |o| o.start),
            replicas: spec.replicas.unwrap_or(1),
            ordered: spec.pod_management_policy != "Parallel",
            rolling: strategy.r#type != "OnDelete",
            partition: strategy.rolling_update.and_then(|r| r.partition).unwrap_or(0),
            current_revision: current_revision.clone(),
            update_revision: update_revision.clone(),
        };
        let pod_api: Api<Pod> = Api::namespaced(&self.ctx.client, &meta.namespace);
        for step in plan(&shape, &members) {
            match step {
                Step::Create { ordinal, revision } => {
                    let template = if revision == update_revision { &template } else { &current_template };
                    self.create(set, template, &revision, ordinal).await?;
                }
                Step::Delete { ordinal } => {
                    let name = identity::pod_name(&meta.name, ordinal);
                    match pod_api.delete(&name, Default::default()).await {
                        Ok(_) => {}
                        Err(e) if e.is(Reason::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                    self.ctx.recorder.normal(
                        set,
                        "SuccessfulDelete",
                        format!("delete Pod {name} in StatefulSet {} successful", meta.name),
                    );
                }
            }
        }
        self.update_status(set, &pods, &current_revision, &update_revision).await
    }

    async fn create(
        &self,
        set: &StatefulSet,
        template: &PodTemplateSpec,
        revision: &str,
        ordinal: i32,
    ) -> Result<(), ApiError> {
        let meta = set.metadata();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(&self.ctx.client, &meta.namespace);
        for claim in identity::claims(set, ordinal) {
            match claims.create(&claim).await {
                Ok(_) => {}
                // The claim of an earlier incarnation: the pod gets its volume back.
                Err(e) if e.is(Reason::AlreadyExists) => {}
                Err(e) => {
                    let name = &claim.metadata().name;
                    self.ctx.recorder.warning(
                        set,
                        "FailedCreate",
                        format!("create Claim {name} failed: {}", e.message()),
                    );
                    return Err(e);
                }
            }
        }
        let pod = identity::pod(set, template, revision, ordinal);
        let name = pod.metadata().name.clone();
        match Api::<Pod>::namespaced(&self.ctx.client, &meta.namespace).create(&pod).await {
            Ok(_) => {
                self.ctx.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!("create Pod {name} in StatefulSet {} successful", meta.name),
                );
                Ok(())
            }
            // Created by an earlier sync, not yet in the cache.
            Err(e) if e.is(Reason::AlreadyExists) => Ok(()),
            Err(e) => {
                self.ctx.recorder.warning(set, "FailedCreate", format!("create Pod {name} failed: {}", e.message()));
                Err(e)
            }
        }
    }

    async fn update_status(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        current_revision: &str,
        update_revision: &str,
    ) -> Result<Action, ApiError> {
        let spec = set.spec.clone().unwrap_or_default();
        let live: Vec<&Arc<Pod>> = pods.iter().filter(|p| !is_terminating(p)).collect();
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let at = |revision: &str| {
            live.iter().filter(|p| p.metadata().labels.get(HASH_LABEL).is_some_and(|r| r == revision)).count()
        };
        let now = Time::now().seconds;
        let mut status = StatefulSetStatus {
            observed_generation: set.metadata().generation,
            replicas: count(live.len()),
            ready_replicas: count(live.iter().filter(|p| is_ready(p)).count()),
            available_replicas: count(live.iter().filter(|p| is_available(p, spec.min_ready_seconds, now)).count()),
            current_replicas: count(at(current_revision)),
            updated_replicas: count(at(update_revision)),
            current_revision: current_revision.to_string(),
            update_revision: update_revision.to_string(),
            collision_count: set.status.as_ref().and_then(|s| s.collision_count),
            conditions: set.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
        };
        let replicas = spec.replicas.unwrap_or(1);
        // The rollout is complete: the update revision becomes the current one.
        if status.updated_replicas == replicas && status.replicas == replicas {
            status.current_revision = status.update_revision.clone();
            status.current_replicas = status.updated_replicas;
        }
        let action = if status.ready_replicas > status.available_replicas && spec.min_ready_seconds > 0 {
            Action::requeue(Duration::from_secs(u64::from(spec.min_ready_seconds.unsigned_abs()) + 1))
        } else {
            Action::await_change()
        };
        if Some(&status) == set.status.as_ref() {
            return Ok(action);
        }
        let mut updated = set.clone();
        updated.status = Some(status);
        match Api::<StatefulSet>::namespaced(&self.ctx.client, &set.metadata().namespace).update_status(&updated).await
        {
            Ok(_) => Ok(action),
            Err(e) if e.is(Reason::NotFound) => Ok(action),
            Err(e) => Err(e),
        }
    }
}
