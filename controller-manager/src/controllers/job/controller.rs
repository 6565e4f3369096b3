//! The Job loop: Job and pod changes become Job keys; a worker syncs one key at a
//! time from the caches — counts the Job's pods, creates or deletes pods toward
//! `parallelism` (replacing failed ones after an exponential retry delay), marks
//! the Job Complete or Failed, writes status, and deletes a finished Job once its
//! ttlSecondsAfterFinished has passed.
//!
//! Pods are tracked by counting them (no tracking finalizer): succeeded and
//! failed pods stay until the Job goes, so a pod that someone deletes before the
//! controller saw it finish is not counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::Api;
use client::runtime::store::BY_NAMESPACE;
use client::runtime::{Change, Informer, WorkQueue, key_of};
use proto::batch::v1::{Job, JobCondition, JobStatus};
use proto::core::v1::Pod;
use proto::meta::v1::{DeleteOptions, ObjectMeta, Time};
use proto::{ApiError, Reason, Resource};

use super::progress::{Counts, Next, next, retry_delay};
use crate::context::Context;
use crate::controllers::replicaset::ranking::sort_for_deletion;
use crate::expectations::Expectations;
use crate::ownership::{controller_of, controller_reference, owner_key};
use crate::pods::{is_finished, is_ready, is_terminating};

/// Labels every Job pod carries, as Kubernetes sets them.
const LABELS: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];
const NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];

#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    /// The first retry delay after a pod failure; doubles per failure.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

pub struct JobController {
    ctx: Arc<Context>,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    queue: WorkQueue<String>,
    expectations: Expectations,
    settings: JobSettings,
    /// Per Job: the failure count last seen and when it was first seen.
    failures: Mutex<HashMap<String, (i32, Instant)>>,
}

impl JobController {
    pub fn new(ctx: Arc<Context>, settings: JobSettings) -> Arc<Self> {
        Arc::new(JobController {
            jobs: ctx.informers.get::<Job>(),
            pods: ctx.informers.get::<Pod>(),
            ctx,
            queue: WorkQueue::default(),
            expectations: Expectations::default(),
            settings,
            failures: Mutex::new(HashMap::new()),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.jobs.wait_synced().await;
        self.pods.wait_synced().await;
        let (this, mut jobs) = (self.clone(), self.jobs.subscribe());
        let mut tasks = vec![tokio::spawn(async move {
            while let Some(change) = jobs.recv().await {
                this.queue.add(key_of(change.object().as_ref()));
            }
        })];
        let (this, mut pods) = (self.clone(), self.pods.subscribe());
        tasks.push(tokio::spawn(async move {
            while let Some(change) = pods.recv().await {
                this.on_pod(change);
            }
        }));
        let this = self.clone();
        tasks.extend(crate::tasks::spawn_workers(&self.queue, workers, "job", move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        }));
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    fn on_pod(&self, change: Change<Pod>) {
        let owner = |pod: &Pod| {
            let meta = pod.metadata.as_ref()?;
            controller_of(meta).filter(|r| r.kind == "Job").map(|r| owner_key(&meta.namespace, r))
        };
        match &change {
            Change::Added(pod) => {
                if let Some(key) = owner(pod) {
                    self.expectations.created(&key);
                    self.queue.add(key);
                }
            }
            Change::Updated { old, new } => {
                if let Some(key) = owner(new) {
                    if is_terminating(new) && !is_terminating(old) {
                        self.expectations.deleted(&key);
                    }
                    self.queue.add(key);
                }
            }
            Change::Deleted(pod) => {
                if let Some(key) = owner(pod) {
                    if !is_terminating(pod) {
                        self.expectations.deleted(&key);
                    }
                    self.queue.add(key);
                }
            }
        }
    }

    async fn sync(&self, key: &str) -> Result<(), ApiError> {
        let Some(job) = self.jobs.store().get(key) else {
            self.expectations.forget(key);
            self.lock_failures().remove(key);
            return Ok(());
        };
        let meta = job.metadata().clone();
        if meta.deletion_timestamp.is_some() {
            return Ok(());
        }
        if let Some(finished_at) = finished_at(&job) {
            return self.expire(&job, finished_at).await;
        }
        let spec = job.spec.clone().unwrap_or_default();
        let pods: Vec<Pod> = self
            .pods
            .store()
            .by_index(BY_NAMESPACE, &meta.namespace)
            .into_iter()
            .filter(|p| p.metadata.as_ref().and_then(controller_of).is_some_and(|r| r.uid == meta.uid))
            .map(|p| p.as_ref().clone())
            .collect();
        let on_failure =
            spec.template.as_ref().and_then(|t| t.spec.as_ref()).is_some_and(|s| s.restart_policy == "OnFailure");
        let mut counts = count(&pods, on_failure);
        let mut active: Vec<Pod> = pods.into_iter().filter(|p| !is_finished(p) && !is_terminating(p)).collect();

        let now = Time::now_seconds();
        let mut status = job.status.clone().unwrap_or_default();
        let started = status.start_time.get_or_insert(now).seconds;
        let running_for = Duration::from_secs(now.seconds.saturating_sub(started).max(0).unsigned_abs());
        let api: Api<Pod> = Api::namespaced(&self.ctx.client, &meta.namespace);

        match next(&spec, counts, running_for) {
            Next::Run(change) if self.expectations.satisfied(key) => {
                if change > 0 {
                    self.create(key, &job, &api, change, counts.failed).await?;
                } else if change < 0 {
                    sort_for_deletion(&mut active);
                    let excess = usize::try_from(-change).unwrap_or(0);
                    self.delete(key, &job, &api, &active[..excess.min(active.len())]).await?;
                }
            }
            Next::Run(_) => {}
            Next::Complete => {
                self.delete(key, &job, &api, &active).await?;
                counts.active = 0;
                status.completion_time = Some(now);
                set_condition(&mut status, "Complete", "", "", now);
                self.ctx.recorder.normal(job.as_ref(), "Completed", "Job completed");
            }
            Next::Failed { reason, message } => {
                self.delete(key, &job, &api, &active).await?;
                counts.active = 0;
                set_condition(&mut status, "Failed", reason, &message, now);
                self.ctx.recorder.warning(job.as_ref(), reason, message);
            }
        }
        if let Some(deadline) = spec.active_deadline_seconds {
            let left = Duration::from_secs(deadline.unsigned_abs()).saturating_sub(running_for);
            self.queue.add_after(key.to_string(), left + Duration::from_millis(500));
        }
        status.active = counts.active;
        status.ready = Some(counts.ready);
        status.succeeded = counts.succeeded;
        status.failed = counts.failed;
        if Some(&status) == job.status.as_ref() {
            return Ok(());
        }
        let mut updated = job.as_ref().clone();
        updated.status = Some(status);
        let jobs: Api<Job> = Api::namespaced(&self.ctx.client, &meta.namespace);
        match jobs.update_status(&updated).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i32, Instant)>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates `n` pods, unless the last failure is too recent: then looks again
    /// when the retry delay has passed.
    async fn create(&self, key: &str, job: &Job, api: &Api<Pod>, n: i32, failed: i32) -> Result<(), ApiError> {
        if failed > 0 {
            let since = {
                let mut failures = self.lock_failures();
                let entry = failures.entry(key.to_string()).or_insert((failed, Instant::now()));
                if entry.0 != failed {
                    *entry = (failed, Instant::now());
                }
                entry.1
            };
            let delay = retry_delay(self.settings.backoff_base, self.settings.backoff_max, failed);
            let waited = since.elapsed();
            if waited < delay {
                self.queue.add_after(key.to_string(), delay - waited);
                return Ok(());
            }
        }
        let Some(pod) = pod_for(job) else { return Ok(()) };
        let n = usize::try_from(n).unwrap_or(0);
        self.expectations.expect(key, i64::try_from(n).unwrap_or(0), 0);
        let results = futures::future::join_all((0..n).map(|_| api.create(&pod))).await;
        let mut failure = None;
        for error in results.into_iter().filter_map(Result::err) {
            self.expectations.created(key);
            failure.get_or_insert(error);
        }
        if let Some(e) = failure {
            self.ctx.recorder.warning(job, "FailedCreate", format!("Error creating: {}", e.message()));
            return Err(e);
        }
        self.ctx.recorder.normal(job, "SuccessfulCreate", format!("Created {n} pod(s)"));
        Ok(())
    }

    async fn delete(&self, key: &str, job: &Job, api: &Api<Pod>, pods: &[Pod]) -> Result<(), ApiError> {
        if pods.is_empty() {
            return Ok(());
        }
        self.expectations.expect(key, 0, i64::try_from(pods.len()).unwrap_or(0));
        let names: Vec<&str> = pods.iter().map(|p| p.metadata().name.as_str()).collect();
        let results = futures::future::join_all(names.iter().map(|n| api.delete(n, Default::default()))).await;
        let mut failure = None;
        for result in results {
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
            return Err(e);
        }
        self.ctx.recorder.normal(job, "SuccessfulDelete", format!("Deleted pod(s): {}", names.join(", ")));
        Ok(())
    }

    /// Deletes a finished Job once its ttlSecondsAfterFinished has passed.
    async fn expire(&self, job: &Job, finished_at: i64) -> Result<(), ApiError> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else { return Ok(()) };
        let expires = finished_at + i64::from(ttl);
        let now = Time::now().seconds;
        if now < expires {
            self.queue.add_after(key_of(job), Duration::from_secs(expires.abs_diff(now)));
            return Ok(());
        }
        let api: Api<Job> = Api::namespaced(&self.ctx.client, &job.metadata().namespace);
        let options = DeleteOptions {
            propagation_policy: "Background".into(),
            preconditions: Some(proto::meta::v1::Preconditions {
                uid: Some(job.metadata().uid.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        match api.delete(&job.metadata().name, options).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) || e.is(Reason::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn count(pods: &[Pod], on_failure: bool) -> Counts {
    let phase = |p: &Pod| p.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default();
    let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let active: Vec<&Pod> = pods.iter().filter(|p| !is_finished(p) && !is_terminating(p)).collect();
    let restarts: i32 = if on_failure {
        active
            .iter()
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| s.container_statuses.iter().chain(&s.init_container_statuses))
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    Counts {
        active: clamp(active.len()),
        ready: clamp(active.iter().filter(|p| is_ready(p)).count()),
        succeeded: clamp(pods.iter().filter(|p| phase(p) == "Succeeded").count()),
        failed: clamp(pods.iter().filter(|p| phase(p) == "Failed").count()).saturating_add(restarts),
    }
}

/// When the Job became Complete or Failed, if it has.
fn finished_at(job: &Job) -> Option<i64> {
    let status = job.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|c| (c.r#type == "Complete" || c.r#type == "Failed") && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map_or(0, |t| t.seconds))
}

fn set_condition(status: &mut JobStatus, kind: &str, reason: &str, message: &str, now: Time) {
    status.conditions.retain(|c| c.r#type != kind);
    status.conditions.push(JobCondition {
        r#type: kind.into(),
        status: "True".into(),
        last_probe_time: Some(now),
        last_transition_time: Some(now),
        reason: reason.into(),
        message: message.into(),
    });
}

/// A pod of the Job's template, owned by it and labelled with its uid and name.
fn pod_for(job: &Job) -> Option<Pod> {
    let owner = job.metadata();
    let template = job.spec.as_ref()?.template.as_ref()?;
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels;
    for label in LABELS {
        labels.entry(label.to_string()).or_insert_with(|| owner.uid.clone());
    }
    for label in NAME_LABELS {
        labels.entry(label.to_string()).or_insert_with(|| owner.name.clone());
    }
    Some(Pod {
        metadata: Some(ObjectMeta {
            generate_name: format!("{}-", owner.name),
            namespace: owner.namespace.clone(),
            labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: vec![controller_reference(job)],
            ..Default::default()
        }),
        spec: template.spec.clone(),
        status: None,
    })
}
