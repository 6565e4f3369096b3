//! The CronJob loop: CronJob and Job changes become CronJob keys; a worker syncs
//! one key at a time from the caches — brings status.active in step with the
//! CronJob's Jobs (finished ones leave it, lastSuccessfulTime follows the
//! successes), starts the Job that is due as the plan says (Forbid, Replace,
//! startingDeadlineSeconds, suspend), prunes finished Jobs beyond the history
//! limits, writes status, and looks again at the next schedule time.
//!
//! A Job's name is fixed by its schedule time, so a start that the status update
//! did not record (a crash, a conflict) collides on the retry instead of running
//! twice; the Job found is ours by its controller reference and is recorded then.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use client::Api;
use client::runtime::store::BY_NAMESPACE;
use client::runtime::{Change, Informer, WorkQueue, key_of};
use proto::batch::v1::{CronJob, CronJobSpec, CronJobStatus, Job};
use proto::core::v1::ObjectReference;
use proto::meta::v1::{DeleteOptions, ObjectMeta, Preconditions, Time};
use proto::{ApiError, Reason, Resource};

use super::clock::Clock;
use super::plan::{Decision, MANY_MISSED, Policy, State, plan};
use crate::ownership::{controller_of, controller_reference, owner_key};
use proto::cron::{Schedule, time_zone};

/// The annotation on each Job: the time it was scheduled for, in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Past the schedule time before a look, so that the time has surely come.
const NEXT_DELTA: std::time::Duration = std::time::Duration::from_millis(100);

pub struct CronJobController {
    ctx: Arc<crate::context::Context>,
    cronjobs: Arc<Informer<CronJob>>,
    jobs: Arc<Informer<Job>>,
    queue: WorkQueue<String>,
    clock: Clock,
}

/// How a Job ended, if it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Failed,
}

fn outcome(job: &Job) -> Option<Outcome> {
    let conditions = job.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.r#type.as_str() {
        "Complete" => Some(Outcome::Complete),
        "Failed" => Some(Outcome::Failed),
        _ => None,
    })
}

impl CronJobController {
    pub fn new(ctx: Arc<crate::context::Context>, clock: Clock) -> Arc<Self> {
        Arc::new(CronJobController {
            cronjobs: ctx.informers.get::<CronJob>(),
            jobs: ctx.informers.get::<Job>(),
            ctx,
            queue: WorkQueue::default(),
            clock,
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.cronjobs.wait_synced().await;
        self.jobs.wait_synced().await;
        let (this, mut cronjobs) = (self.clone(), self.cronjobs.subscribe());
        let mut tasks = vec![tokio::spawn(async move {
            while let Some(change) = cronjobs.recv().await {
                this.queue.add(key_of(change.object().as_ref()));
            }
        })];
        let (this, mut jobs) = (self.clone(), self.jobs.subscribe());
        tasks.push(tokio::spawn(async move {
            while let Some(change) = jobs.recv().await {
                this.on_job(&change);
            }
        }));
        if let Some(mut jumps) = self.clock.jumps() {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                while jumps.changed().await.is_ok() {
                    for key in this.cronjobs.store().keys() {
                        this.queue.add(key);
                    }
                }
            }));
        }
        let this = self.clone();
        tasks.extend(crate::tasks::spawn_workers(&self.queue, workers, "cronjob", move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        }));
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    fn on_job(&self, change: &Change<Job>) {
        let job = change.object();
        let Some(meta) = job.metadata.as_ref() else { return };
        if let Some(owner) = controller_of(meta).filter(|r| r.kind == "CronJob") {
            self.queue.add(owner_key(&meta.namespace, owner));
        }
    }

    async fn sync(&self, key: &str) -> Result<(), ApiError> {
        let Some(cron) = self.cronjobs.store().get(key) else { return Ok(()) };
        let meta = cron.metadata().clone();
        let spec = cron.spec.clone().unwrap_or_default();
        let before = cron.status.clone().unwrap_or_default();
        let mut status = before.clone();
        let children: Vec<Arc<Job>> = self
            .jobs
            .store()
            .by_index(BY_NAMESPACE, &meta.namespace)
            .into_iter()
            .filter(|j| j.metadata.as_ref().and_then(controller_of).is_some_and(|r| r.uid == meta.uid))
            .collect();
        self.track_active(&cron, &children, &mut status).await?;

        if meta.deletion_timestamp.is_none() {
            let next = self.start_due(&cron, &spec, &children, &mut status).await?;
            self.prune_history(&cron, &spec, &children).await?;
            if let Some(next) = next {
                let wait = (next - self.clock.now()).to_std().unwrap_or_default();
                self.queue.add_after(key.to_string(), wait + NEXT_DELTA);
            }
        }
        if status == before {
            return Ok(());
        }
        let mut updated = cron.as_ref().clone();
        updated.status = Some(status);
        let api: Api<CronJob> = Api::namespaced(&self.ctx.client, &meta.namespace);
        match api.update_status(&updated).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Finished Jobs leave status.active, unfinished ones of ours are in it, and
    /// Jobs that are gone are dropped from it; lastSuccessfulTime is the latest
    /// completion.
    async fn track_active(
        &self,
        cron: &CronJob,
        children: &[Arc<Job>],
        status: &mut CronJobStatus,
    ) -> Result<(), ApiError> {
        for job in children {
            let meta = job.metadata();
            let listed = status.active.iter().any(|r| r.uid == meta.uid);
            match outcome(job) {
                // Ours but unrecorded: created just before a crash or a lost status write.
                None if !listed => status.active.push(reference(job)),
                Some(outcome) if listed => {
                    status.active.retain(|r| r.uid != meta.uid);
                    let condition = if outcome == Outcome::Complete { "Complete" } else { "Failed" };
                    self.ctx.recorder.normal(
                        cron,
                        "SawCompletedJob",
                        format!("Saw completed job: {}, condition: {condition}", meta.name),
                    );
                }
                _ => {}
            }
            if outcome(job) == Some(Outcome::Complete) {
                let completed = job.status.as_ref().and_then(|s| s.completion_time);
                if completed.is_some_and(|c| status.last_successful_time.is_none_or(|last| c > last)) {
                    status.last_successful_time = completed;
                }
            }
        }
        let missing: Vec<ObjectReference> =
            status.active.iter().filter(|r| !children.iter().any(|j| j.metadata().uid == r.uid)).cloned().collect();
        for gone in missing {
            // The cache may lag behind a Job just created: ask the apiserver.
            let api: Api<Job> = Api::namespaced(&self.ctx.client, &cron.metadata().namespace);
            let found = api.get_opt(&gone.name).await?;
            if found.is_none_or(|j| j.metadata().uid != gone.uid) {
                self.ctx.recorder.normal(cron, "MissingJob", format!("Active job went missing: {}", gone.name));
                status.active.retain(|r| r.uid != gone.uid);
            }
        }
        Ok(())
    }

    /// Starts the Job that is due, if any; returns the next schedule time. Bad
    /// schedules and time zones become Warning events and no further looks until
    /// the CronJob changes.
    async fn start_due(
        &self,
        cron: &CronJob,
        spec: &CronJobSpec,
        children: &[Arc<Job>],
        status: &mut CronJobStatus,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        let tz = match time_zone(spec.time_zone.as_deref()) {
            Ok(tz) => tz,
            Err(e) => {
                self.ctx.recorder.warning(cron, "UnknownTimeZone", format!("invalid spec.timeZone: {e}"));
                return Ok(None);
            }
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(schedule) => schedule,
            Err(e) => {
                self.ctx.recorder.warning(
                    cron,
                    "UnparseableSchedule",
                    format!("unparseable schedule \"{}\": {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        let active: Vec<String> = status.active.iter().map(|r| r.name.clone()).collect();
        let meta = cron.metadata();
        let now = self.clock.now();
        let state = State {
            now,
            schedule: &schedule,
            tz,
            created: meta.creation_timestamp.map_or(now, |t| t.to_datetime()),
            last_schedule: status.last_schedule_time.map(|t| t.to_datetime()),
            starting_deadline_seconds: spec.starting_deadline_seconds,
            policy: Policy::from_spec(&spec.concurrency_policy),
            active: &active,
            name: &meta.name,
        };
        let plan = match plan(&state) {
            Ok(plan) => plan,
            Err(e) => {
                self.ctx.recorder.warning(
                    cron,
                    "InvalidSchedule",
                    format!("invalid schedule \"{}\": {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        if plan.too_many_missed {
            self.ctx.recorder.warning(
                cron,
                "TooManyMissedTimes",
                format!(
                    "too many missed start times (more than {MANY_MISSED}): only the latest is started. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                ),
            );
        }
        match plan.decision {
            Decision::Wait | Decision::AlreadyStarted { .. } => {}
            Decision::Missed { scheduled } => self.ctx.recorder.warning(
                cron,
                "MissSchedule",
                format!("Missed scheduled time to start a job: {}", scheduled.to_rfc2822()),
            ),
            Decision::Forbidden { .. } => self.ctx.recorder.normal(
                cron,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            ),
            Decision::Start { scheduled, job, replace } => {
                if replace {
                    self.delete_active(cron, children, status).await?;
                }
                self.start(cron, &job, scheduled, tz, status).await?;
            }
        }
        Ok(plan.next)
    }

    /// Replace: the Jobs still running make way for the new one.
    async fn delete_active(
        &self,
        cron: &CronJob,
        children: &[Arc<Job>],
        status: &mut CronJobStatus,
    ) -> Result<(), ApiError> {
        for reference in std::mem::take(&mut status.active) {
            let still_running = children.iter().any(|j| j.metadata().uid == reference.uid && outcome(j).is_none());
            if !still_running {
                continue;
            }
            if let Err(e) = self.delete_job(cron, &reference.name, &reference.uid).await {
                status.active.push(reference);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn start(
        &self,
        cron: &CronJob,
        name: &str,
        scheduled: DateTime<Utc>,
        tz: Tz,
        status: &mut CronJobStatus,
    ) -> Result<(), ApiError> {
        let meta = cron.metadata();
        let api: Api<Job> = Api::namespaced(&self.ctx.client, &meta.namespace);
        let job = match api.create(&job_for(cron, name, scheduled, tz)).await {
            Ok(created) => {
                self.ctx.recorder.normal(cron, "SuccessfulCreate", format!("Created job {name}"));
                created
            }
            Err(e) if e.is(Reason::AlreadyExists) => {
                let existing = api.get(name).await?;
                let ours = existing.metadata.as_ref().and_then(controller_of).is_some_and(|r| r.uid == meta.uid);
                if !ours {
                    // Someone else's Job holds the name; theirs to look after.
                    return Ok(());
                }
                // Started before (the status write was lost): this time is done.
                status.last_schedule_time = Some(Time::from_datetime(scheduled));
                let listed = status.active.iter().any(|r| r.uid == existing.metadata().uid);
                if listed || outcome(&existing).is_some() {
                    return Ok(());
                }
                existing
            }
            Err(e) => {
                self.ctx.recorder.warning(cron, "FailedCreate", format!("Error creating job: {}", e.message()));
                return Err(e);
            }
        };
        status.active.push(reference(&job));
        status.last_schedule_time = Some(Time::from_datetime(scheduled));
        Ok(())
    }

    /// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit and
    /// failedJobsHistoryLimit.
    async fn prune_history(&self, cron: &CronJob, spec: &CronJobSpec, children: &[Arc<Job>]) -> Result<(), ApiError> {
        for (kind, limit) in
            [(Outcome::Complete, spec.successful_jobs_history_limit), (Outcome::Failed, spec.failed_jobs_history_limit)]
        {
            let Some(limit) = limit else { continue };
            let mut finished: Vec<&Arc<Job>> = children.iter().filter(|j| outcome(j) == Some(kind)).collect();
            let keep = usize::try_from(limit.max(0)).unwrap_or(0);
            if finished.len() <= keep {
                continue;
            }
            finished.sort_by_key(|j| (started_at(j), j.metadata().name.clone()));
            let excess = finished.len() - keep;
            for job in &finished[..excess] {
                self.delete_job(cron, &job.metadata().name, &job.metadata().uid).await?;
            }
        }
        Ok(())
    }

    async fn delete_job(&self, cron: &CronJob, name: &str, uid: &str) -> Result<(), ApiError> {
        let api: Api<Job> = Api::namespaced(&self.ctx.client, &cron.metadata().namespace);
        // Background: the Job goes now, the garbage collector takes its pods.
        let options = DeleteOptions {
            propagation_policy: "Background".into(),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), ..Default::default() }),
            ..Default::default()
        };
        match api.delete(name, options).await {
            Ok(_) => {
                self.ctx.recorder.normal(cron, "SuccessfulDelete", format!("Deleted job {name}"));
                Ok(())
            }
            Err(e) if e.is(Reason::NotFound) || e.is(Reason::Conflict) => Ok(()),
            Err(e) => {
                self.ctx.recorder.warning(cron, "FailedDelete", format!("Deleted job {name}: {}", e.message()));
                Err(e)
            }
        }
    }
}

/// When a Job started (its creation if it has not), for oldest-first ordering.
fn started_at(job: &Job) -> Option<Time> {
    job.status.as_ref().and_then(|s| s.start_time).or(job.metadata().creation_timestamp)
}

fn reference(job: &Job) -> ObjectReference {
    let meta = job.metadata();
    ObjectReference {
        kind: "Job".into(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        api_version: "batch/v1".into(),
        resource_version: meta.resource_version.clone(),
        field_path: String::new(),
    }
}

/// The Job of the CronJob's template for `scheduled`, owned by the CronJob.
fn job_for(cron: &CronJob, name: &str, scheduled: DateTime<Utc>, tz: Tz) -> Job {
    let owner = cron.metadata();
    let template = cron.spec.as_ref().and_then(|s| s.job_template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations;
    annotations.insert(
        SCHEDULED_TIMESTAMP.to_string(),
        scheduled.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    Job {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            namespace: owner.namespace.clone(),
            labels: template_meta.labels,
            annotations,
            owner_references: vec![controller_reference(cron)],
            ..Default::default()
        }),
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::batch::v1::{JobCondition, JobStatus, JobTemplateSpec};

    #[test]
    fn jobs_carry_the_template_the_owner_and_the_scheduled_time_in_the_zone() {
        let cron = CronJob {
            metadata: Some(ObjectMeta {
                name: "backup".into(),
                namespace: "ops".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            spec: Some(CronJobSpec {
                job_template: Some(JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: [("app".to_string(), "backup".to_string())].into(),
                        ..Default::default()
                    }),
                    spec: Some(Default::default()),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let scheduled = DateTime::parse_from_rfc3339("2026-12-03T08:00:00Z").unwrap().with_timezone(&Utc);
        let job = job_for(&cron, "backup-29604720", scheduled, "Europe/Berlin".parse().unwrap());
        let meta = job.metadata.unwrap();
        assert_eq!(meta.name, "backup-29604720");
        assert_eq!(meta.namespace, "ops");
        assert_eq!(meta.labels.get("app").map(String::as_str), Some("backup"));
        assert_eq!(meta.annotations.get(SCHEDULED_TIMESTAMP).map(String::as_str), Some("2026-12-03T09:00:00+01:00"));
        let owner = &meta.owner_references[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("CronJob", "u1", Some(true)));
        let utc = job_for(&cron, "x", scheduled, Tz::UTC);
        assert_eq!(
            utc.metadata.unwrap().annotations.get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2026-12-03T08:00:00Z")
        );
    }

    #[test]
    fn outcomes_come_from_true_conditions() {
        let with = |kind: &str, status: &str| Job {
            metadata: None,
            spec: None,
            status: Some(JobStatus {
                conditions: vec![JobCondition { r#type: kind.into(), status: status.into(), ..Default::default() }],
                ..Default::default()
            }),
        };
        assert_eq!(outcome(&with("Complete", "True")), Some(Outcome::Complete));
        assert_eq!(outcome(&with("Failed", "True")), Some(Outcome::Failed));
        assert_eq!(outcome(&with("Complete", "False")), None);
        assert_eq!(outcome(&with("Suspended", "True")), None);
    }
}
