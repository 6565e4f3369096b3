//! The DaemonSet loop: a set's changes, those of the pods and revisions it owns,
//! and any Node change wake it; a sync brings its history up to date
//! (ControllerRevisions), works out each node's fit (`eligibility`) and the next
//! steps (`plan`), creates and deletes pods — with expectations, so a burst of
//! events never puts two pods on a node — and writes status.
//!
//! Daemon pods are created with spec.nodeName set (no scheduler involved), as
//! Kubernetes did before 1.12; they carry the daemon tolerations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use client::Api;
use client::runtime::store::BY_OWNER_UID;
use client::runtime::{Action, Change, Controller, Informer};
use proto::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use proto::core::v1::{Node, Pod, PodTemplateSpec};
use proto::meta::v1::{ObjectMeta, Time};
use proto::{ApiError, Reason, Resource};

use super::eligibility::{add_daemon_tolerations, fit};
use super::plan::{DaemonPod, NodeState, plan};
use crate::context::Context;
use crate::expectations::Expectations;
use crate::ownership::{controlled_by, controller_of, controller_reference, owner_key};
use crate::pods::{is_available, is_ready, is_terminating, node_of};
use crate::revisions::{self, HASH_LABEL};

pub struct DaemonSetController {
    ctx: Arc<Context>,
    sets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    expectations: Expectations,
}

impl DaemonSetController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(DaemonSetController {
            sets: ctx.informers.get::<DaemonSet>(),
            pods: ctx.informers.get::<Pod>(),
            nodes: ctx.informers.get::<Node>(),
            revisions: ctx.informers.get::<ControllerRevision>(),
            ctx,
            expectations: Expectations::default(),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let sets = self.sets.store();
        let controller = Controller::new(self.sets.clone())
            .owns(self.revisions.clone())
            .watches(self.nodes.clone(), move |_node: &Node| sets.keys())
            .workers(workers)
            .resync_every(Duration::from_secs(300));
        // Pod changes both wake their set and settle its expectations, in that order.
        let queue = controller.queue();
        let (this, mut pods) = (self.clone(), self.pods.subscribe());
        let observe = tokio::spawn(async move {
            while let Some(change) = pods.recv().await {
                let owner = |pod: &Pod| {
                    let meta = pod.metadata.as_ref()?;
                    controller_of(meta).filter(|r| r.kind == "DaemonSet").map(|r| owner_key(&meta.namespace, r))
                };
                let key = match &change {
                    Change::Added(pod) => owner(pod).inspect(|k| this.expectations.created(k)),
                    Change::Updated { old, new } => owner(new).inspect(|k| {
                        if is_terminating(new) && !is_terminating(old) {
                            this.expectations.deleted(k);
                        }
                    }),
                    Change::Deleted(pod) => owner(pod).inspect(|k| {
                        if !is_terminating(pod) {
                            this.expectations.deleted(k);
                        }
                    }),
                };
                if let Some(key) = key {
                    queue.add(key);
                }
            }
        });
        let _stop = crate::tasks::AbortOnDrop(vec![observe]);
        controller
            .run(move |key, set: Option<Arc<DaemonSet>>| {
                let this = self.clone();
                async move {
                    match set {
                        Some(set) => this.sync(&key, &set).await,
                        None => {
                            this.expectations.forget(&key);
                            Ok(Action::await_change())
                        }
                    }
                }
            })
            .await;
    }

    async fn sync(&self, key: &str, set: &DaemonSet) -> Result<Action, ApiError> {
        let meta = set.metadata();
        if meta.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let spec = set.spec.clone().unwrap_or_default();
        let Some(template) = spec.template.clone() else { return Ok(Action::await_change()) };
        let pods = controlled_by(&self.pods.store(), &meta.uid);
        let owned_revisions: Vec<ControllerRevision> =
            self.revisions.store().by_index(BY_OWNER_UID, &meta.uid).iter().map(|r| r.as_ref().clone()).collect();
        let status = set.status.clone().unwrap_or_default();
        let labels = spec.selector.as_ref().map(|s| s.match_labels.clone()).unwrap_or_default();
        let revision_of = |p: &Pod| p.metadata().labels.get(HASH_LABEL).cloned().unwrap_or_default();
        let current = owned_revisions.iter().max_by_key(|r| r.revision).map(|r| r.metadata().name.clone());
        let history = revisions::sync(
            &self.ctx.client,
            set,
            &labels,
            &template,
            status.collision_count,
            owned_revisions,
            &current.unwrap_or_default(),
            spec.revision_history_limit.unwrap_or(10),
            |name| pods.iter().any(|p| revision_of(p) == name),
        )
        .await?;
        let update_revision = history.update.metadata().name.clone();

        let mut daemon_spec = template.spec.clone().unwrap_or_default();
        add_daemon_tolerations(&mut daemon_spec);
        let now = Time::now().seconds;
        let mut by_node: HashMap<String, Vec<DaemonPod>> = HashMap::new();
        let mut strays = Vec::new();
        let nodes = self.nodes.store();
        for pod in &pods {
            let daemon_pod = DaemonPod {
                name: pod.metadata().name.clone(),
                updated: revision_of(pod) == update_revision,
                available: is_available(pod, spec.min_ready_seconds, now),
                failed: pod.status.as_ref().is_some_and(|s| s.phase == "Failed"),
                terminating: is_terminating(pod),
                created: pod.metadata().creation_timestamp.as_ref().map_or(0, |t| t.seconds),
            };
            match node_of(pod).filter(|n| nodes.get(n).is_some()) {
                Some(node) => by_node.entry(node.to_string()).or_default().push(daemon_pod),
                // Its node is gone (or it was never bound): it goes too.
                None if !daemon_pod.terminating => strays.push(daemon_pod.name),
                None => {}
            }
        }
        let states: Vec<NodeState> = nodes
            .list()
            .iter()
            .map(|node| {
                let name = node.metadata().name.clone();
                let fit = fit(node, &daemon_spec);
                let pods = by_node.remove(&name).unwrap_or_default();
                NodeState { node: name, should_run: fit.should_run, should_continue: fit.should_continue, pods }
            })
            .collect();
        let desired = states.iter().filter(|s| s.should_run).count();
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let max_unavailable = if strategy.r#type == "OnDelete" {
            None
        } else {
            let value = strategy.rolling_update.and_then(|r| r.max_unavailable);
            let total = i32::try_from(desired).unwrap_or(i32::MAX);
            Some(value.map_or(Ok(1), |v| v.scaled_value(total, true)).unwrap_or(1).max(1))
        };
        let mut steps = plan(&states, max_unavailable);
        steps.delete.extend(strays);

        if self.expectations.satisfied(key) && (!steps.create.is_empty() || !steps.delete.is_empty()) {
            self.act(key, set, &template, &daemon_spec, &update_revision, &steps.create, &steps.delete).await?;
        }
        self.update_status(set, &states).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn act(
        &self,
        key: &str,
        set: &DaemonSet,
        template: &PodTemplateSpec,
        daemon_spec: &proto::core::v1::PodSpec,
        revision: &str,
        create: &[String],
        delete: &[String],
    ) -> Result<(), ApiError> {
        let meta = set.metadata();
        let api: Api<Pod> = Api::namespaced(&self.ctx.client, &meta.namespace);
        self.expectations.expect(
            key,
            i64::try_from(create.len()).unwrap_or(0),
            i64::try_from(delete.len()).unwrap_or(0),
        );
        let template_meta = template.metadata.clone().unwrap_or_default();
        let pods: Vec<Pod> = create
            .iter()
            .map(|node| {
                let mut labels = template_meta.labels.clone();
                labels.insert(HASH_LABEL.into(), revision.into());
                let mut spec = daemon_spec.clone();
                spec.node_name = node.clone();
                Pod {
                    metadata: Some(ObjectMeta {
                        generate_name: format!("{}-", meta.name),
                        namespace: meta.namespace.clone(),
                        labels,
                        annotations: template_meta.annotations.clone(),
                        owner_references: vec![controller_reference(set)],
                        ..Default::default()
                    }),
                    spec: Some(spec),
                    status: None,
                }
            })
            .collect();
        let mut failure = None;
        for (result, node) in
            futures::future::join_all(pods.iter().map(|p| api.create(p))).await.into_iter().zip(create)
        {
            match result {
                Ok(pod) => self.ctx.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!("Created pod: {} on node {node}", pod.metadata().name),
                ),
                Err(e) => {
                    self.expectations.created(key);
                    self.ctx.recorder.warning(set, "FailedCreate", format!("Error creating: {}", e.message()));
                    failure.get_or_insert(e);
                }
            }
        }
        for result in futures::future::join_all(delete.iter().map(|n| api.delete(n, Default::default()))).await {
            match result {
                Ok(_) => {}
                Err(e) if e.is(Reason::NotFound) => self.expectations.deleted(key),
                Err(e) => {
                    self.expectations.deleted(key);
                    failure.get_or_insert(e);
                }
            }
        }
        if !delete.is_empty() {
            self.ctx.recorder.normal(set, "SuccessfulDelete", format!("Deleted pod(s): {}", delete.join(", ")));
        }
        failure.map_or(Ok(()), Err)
    }

    async fn update_status(&self, set: &DaemonSet, states: &[NodeState]) -> Result<Action, ApiError> {
        let spec = set.spec.clone().unwrap_or_default();
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let pods_store = self.pods.store();
        let namespace = &set.metadata().namespace;
        let live_pod = |state: &NodeState| {
            state.pods.iter().filter(|p| !p.terminating && !p.failed).min_by_key(|p| p.created).cloned()
        };
        let scheduled: Vec<(&NodeState, DaemonPod)> =
            states.iter().filter_map(|s| live_pod(s).map(|p| (s, p))).collect();
        let on_wanted: Vec<&DaemonPod> = scheduled.iter().filter(|(s, _)| s.should_run).map(|(_, p)| p).collect();
        let ready = on_wanted
            .iter()
            .filter(|p| pods_store.get_named(namespace, &p.name).is_some_and(|pod| is_ready(&pod)))
            .count();
        let available = on_wanted.iter().filter(|p| p.available).count();
        let desired = states.iter().filter(|s| s.should_run).count();
        let status = DaemonSetStatus {
            current_number_scheduled: count(on_wanted.len()),
            number_misscheduled: count(scheduled.iter().filter(|(s, _)| !s.should_run).count()),
            desired_number_scheduled: count(desired),
            number_ready: count(ready),
            observed_generation: set.metadata().generation,
            updated_number_scheduled: count(on_wanted.iter().filter(|p| p.updated).count()),
            number_available: count(available),
            number_unavailable: count(desired.saturating_sub(available)),
            collision_count: set.status.as_ref().and_then(|s| s.collision_count),
            conditions: set.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
        };
        let action = if ready > available && spec.min_ready_seconds > 0 {
            Action::requeue(Duration::from_secs(u64::from(spec.min_ready_seconds.unsigned_abs()) + 1))
        } else {
            Action::await_change()
        };
        if Some(&status) == set.status.as_ref() {
            return Ok(action);
        }
        let mut updated = set.clone();
        updated.status = Some(status);
        match Api::<DaemonSet>::namespaced(&self.ctx.client, namespace).update_status(&updated).await {
            Ok(_) => Ok(action),
            Err(e) if e.is(Reason::NotFound) => Ok(action),
            Err(e) => Err(e),
        }
    }
}
