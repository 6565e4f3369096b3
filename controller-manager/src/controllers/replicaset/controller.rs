//! The replication loop, in the shape of Kubernetes' pkg/controller/replicaset:
//! event handlers turn ReplicaSet and Pod changes into ReplicaSet keys; a worker
//! syncs one key at a time — claims matching orphans and releases pods that stopped
//! matching, creates or deletes pods toward `replicas` (creations in slow-start
//! batches, deletions of the least valuable pods), and writes status.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use client::Api;
use client::runtime::store::BY_NAMESPACE;
use client::runtime::{Change, Informer, WorkQueue, key_of};
use proto::core::v1::Pod;
use proto::meta::v1::{ObjectMeta, Time};
use proto::{ApiError, Reason, Resource};

use super::kinds::{Counts, Replicated};
use super::ranking::sort_for_deletion;
use crate::context::Context;
use crate::expectations::Expectations;
use crate::ownership::{controller_of, controller_reference, owner_key};
use crate::pods::{is_available, is_ready, is_terminating};

/// At most this many pods are created or deleted in one sync, as Kubernetes does.
const BURST: usize = 500;

pub struct ReplicaSetController<R: Replicated> {
    ctx: Arc<Context>,
    sets: Arc<Informer<R>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue<String>,
    expectations: Expectations,
    _kind: PhantomData<fn() -> R>,
}

impl<R: Replicated> ReplicaSetController<R> {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let sets = ctx.informers.get::<R>();
        let pods = ctx.informers.get::<Pod>();
        Arc::new(ReplicaSetController {
            ctx,
            sets,
            pods,
            queue: WorkQueue::default(),
            expectations: Expectations::default(),
            _kind: PhantomData,
        })
    }

    /// Runs the event handlers and `workers` workers until the task is dropped.
    pub async fn run(self: Arc<Self>, workers: usize) {
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        let mut set_changes = self.sets.subscribe();
        let mut pod_changes = self.pods.subscribe();
        let sets = {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(change) = set_changes.recv().await {
                    this.queue.add(key_of(change.object().as_ref()));
                }
            })
        };
        let pods = {
            let this = self.clone();
            tokio::spawn(async move {
                while let Some(change) = pod_changes.recv().await {
                    this.on_pod(change);
                }
            })
        };
        let mut tasks = vec![sets, pods];
        for _ in 0..workers.max(1) {
            let this = self.clone();
            tasks.push(tokio::spawn(async move { this.work().await }));
        }
        // Dropping this future (leadership lost) must stop every task.
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    fn on_pod(&self, change: Change<Pod>) {
        match &change {
            Change::Added(pod) => {
                if let Some(owner) = self.owner_key(pod) {
                    self.expectations.created(&owner);
                    self.queue.add(owner);
                } else {
                    self.enqueue_matching(pod);
                }
            }
            Change::Updated { old, new } => {
                let old_owner = self.owner_key(old);
                let new_owner = self.owner_key(new);
                if is_terminating(new)
                    && !is_terminating(old)
                    && let Some(owner) = &new_owner
                {
                    self.expectations.deleted(owner);
                }
                for owner in [old_owner.clone(), new_owner.clone()].into_iter().flatten() {
                    self.queue.add(owner);
                }
                if new_owner.is_none() {
                    self.enqueue_matching(new);
                }
            }
            Change::Deleted(pod) => {
                if let Some(owner) = self.owner_key(pod) {
                    // A graceful deletion was counted when it began.
                    if !is_terminating(pod) {
                        self.expectations.deleted(&owner);
                    }
                    self.queue.add(owner);
                }
            }
        }
    }

    /// The key of the set of our kind controlling `pod`.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let meta = pod.metadata.as_ref()?;
        let reference = controller_of(meta).filter(|r| r.kind == R::INFO.kind)?;
        Some(owner_key(&meta.namespace, reference))
    }

    /// An orphan may be adopted by any set whose selector matches it.
    fn enqueue_matching(&self, pod: &Pod) {
        let Some(meta) = pod.metadata.as_ref() else { return };
        for set in self.sets.store().by_index(BY_NAMESPACE, &meta.namespace) {
            if set.selector().is_ok_and(|s| s.matches(&meta.labels)) {
                self.queue.add(key_of(set.as_ref()));
            }
        }
    }

    async fn work(&self) {
        while let Some(key) = self.queue.get().await {
            match self.sync(&key).await {
                Ok(()) => self.queue.forget(&key),
                Err(e) => {
                    tracing::warn!(kind = R::INFO.kind, key, error = %e, "sync failed; retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    async fn sync(&self, key: &str) -> Result<(), ApiError> {
        let Some(set) = self.sets.store().get(key) else {
            self.expectations.forget(key);
            return Ok(());
        };
        let meta = set.metadata().clone();
        let selector = match set.selector() {
            Ok(selector) => selector,
            Err(e) => {
                tracing::warn!(key, error = %e, "invalid selector; not managing pods");
                return Ok(());
            }
        };
        let pod_api: Api<Pod> = Api::namespaced(&self.ctx.client, &meta.namespace);
        let deleting = meta.deletion_timestamp.is_some();

        // Claim: keep matching pods we own, adopt matching orphans, release the rest.
        let mut owned: Vec<Pod> = Vec::new();
        for pod in self.pods.store().by_index(BY_NAMESPACE, &meta.namespace) {
            let pod_meta = pod.metadata.clone().unwrap_or_default();
            let matches = selector.matches(&pod_meta.labels);
            match controller_of(&pod_meta) {
                Some(r) if r.uid == meta.uid => {
                    if matches || deleting {
                        owned.push(pod.as_ref().clone());
                    } else {
                        self.release(&pod_api, &pod, &meta.uid).await?;
                    }
                }
                Some(_) => {}
                None if matches && !deleting && !is_terminating(&pod) => {
                    owned.push(self.adopt(&pod_api, &pod, set.as_ref()).await?);
                }
                None => {}
            }
        }
        let active: Vec<Pod> = owned.into_iter().filter(is_active).collect();

        if self.expectations.satisfied(key) && !deleting {
            self.manage(key, set.as_ref(), &pod_api, active.clone()).await?;
        }
        self.update_status(set.as_ref(), &active).await
    }

    async fn manage(&self, key: &str, set: &R, api: &Api<Pod>, mut active: Vec<Pod>) -> Result<(), ApiError> {
        let wanted = usize::try_from(set.replicas().max(0)).unwrap_or(0);
        if active.len() < wanted {
            let Some(template) = set.template() else { return Ok(()) };
            let missing = (wanted - active.len()).min(BURST);
            self.expectations.expect(key, i64::try_from(missing).unwrap_or(i64::MAX), 0);
            let pod = pod_from_template(set, template);
            let mut created = 0;
            let mut batch = 1;
            let mut failure = None;
            // Slow start: 1, 2, 4, ... so a template the apiserver rejects fails
            // once, not five hundred times.
            while created < missing && failure.is_none() {
                let size = batch.min(missing - created);
                let results = futures::future::join_all((0..size).map(|_| api.create(&pod))).await;
                for error in results.into_iter().filter_map(Result::err) {
                    self.expectations.created(key);
                    failure.get_or_insert(error);
                }
                created += size;
                batch *= 2;
            }
            // The creations never attempted will never be observed.
            for _ in created..missing {
                self.expectations.created(key);
            }
            if let Some(e) = failure {
                self.ctx.recorder.warning(set, "FailedCreate", format!("Error creating: {}", e.message()));
                return Err(e);
            }
            self.ctx.recorder.normal(set, "SuccessfulCreate", format!("Created {missing} pod(s)"));
        } else if active.len() > wanted {
            let excess = (active.len() - wanted).min(BURST);
            sort_for_deletion(&mut active);
            self.expectations.expect(key, 0, i64::try_from(excess).unwrap_or(i64::MAX));
            let names: Vec<String> =
                active.iter().take(excess).filter_map(|p| p.metadata.as_ref().map(|m| m.name.clone())).collect();
            let results = futures::future::join_all(names.iter().map(|n| api.delete(n, Default::default()))).await;
            let mut failure = None;
            for result in results {
                // Success is counted when the informer sees the pod terminating or gone.
                match result {
                    Ok(_) => {}
                    Err(e) if e.is(Reason::NotFound) => self.expectations.deleted(key),
                    Err(e) => {
                        self.expectations.deleted(key);
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                self.ctx.recorder.warning(set, "FailedDelete", format!("Error deleting: {}", e.message()));
                return Err(e);
            }
            self.ctx.recorder.normal(set, "SuccessfulDelete", format!("Deleted pod(s): {}", names.join(", ")));
        }
        Ok(())
    }

    async fn adopt(&self, api: &Api<Pod>, pod: &Pod, set: &R) -> Result<Pod, ApiError> {
        let mut adopted = pod.clone();
        adopted.metadata_mut().owner_references.push(controller_reference(set));
        // Compare-and-swap on the pod's resourceVersion: never adopt a pod another
        // controller adopted meanwhile.
        api.update(&adopted).await
    }

    async fn release(&self, api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), ApiError> {
        let mut released = pod.clone();
        released.metadata_mut().owner_references.retain(|r| r.uid != uid);
        match api.update(&released).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn update_status(&self, set: &R, active: &[Pod]) -> Result<(), ApiError> {
        let now = Time::now().seconds;
        let min_ready = set.min_ready_seconds();
        let template_labels = set.template().and_then(|t| t.metadata.as_ref()).map(|m| m.labels.clone());
        let fully_labeled = active
            .iter()
            .filter(|p| {
                let labels = &p.metadata().labels;
                template_labels.as_ref().is_none_or(|t| t.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
            .count();
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let counts = Counts {
            replicas: count(active.len()),
            fully_labeled: count(fully_labeled),
            ready: count(active.iter().filter(|p| is_ready(p)).count()),
            available: count(active.iter().filter(|p| is_available(p, min_ready, now)).count()),
            observed_generation: set.metadata().generation,
        };
        if counts.ready > counts.available && min_ready > 0 {
            // Check again when the ready pods have been ready long enough.
            self.queue.add_after(key_of(set), Duration::from_secs(u64::from(min_ready.unsigned_abs()) + 1));
        }
        if counts == set.counts() {
            return Ok(());
        }
        let mut updated = set.clone();
        updated.set_counts(counts);
        let api: Api<R> = Api::namespaced(&self.ctx.client, &set.metadata().namespace);
        match api.update_status(&updated).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A pod that counts toward replicas: not finished, not being deleted.
fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && !is_terminating(pod)
}

fn pod_from_template<R: Replicated>(set: &R, template: &proto::core::v1::PodTemplateSpec) -> Pod {
    let owner = set.metadata();
    let template_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: Some(ObjectMeta {
            generate_name: format!("{}-", owner.name),
            namespace: owner.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: vec![controller_reference(set)],
            ..Default::default()
        }),
        spec: template.spec.clone(),
        status: None,
    }
}
