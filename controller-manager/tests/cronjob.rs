//! The CronJob controller against a real etcd and apiserver, driven by a fake
//! clock: the controller runs in this process (the same code the binary runs,
//! with `Clock::Fake` in place of the system clock), so "every minute" passes as
//! fast as the test moves the clock and no assertion depends on real time. The
//! test plays the Job controller, marking Jobs Complete or Failed.
//!
//! Cases: Forbid holds a second Job back while one is active and starts the held
//! time once it finishes; the history limits prune the oldest finished Jobs;
//! Replace deletes the running Job for the new one; after a long downtime only the
//! latest missed time starts, with a TooManyMissedTimes event; a bad schedule or
//! time zone is a Warning event and no Job.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use client::{Api, ListParams};
use controller_manager::context::Context;
use controller_manager::controllers::cronjob::{Clock, CronJobController, FakeClock};
use proto::Resource as _;
use proto::batch::v1::{CronJob, CronJobSpec, Job, JobCondition, JobSpec, JobTemplateSpec};
use proto::core::v1::{Container, Event, PodSpec, PodTemplateSpec};
use proto::meta::v1::{ObjectMeta, Time};

/// The CronJob controller on a fake clock, stopped when the test ends.
struct Harness {
    cluster: common::Cluster,
    clock: FakeClock,
    cronjobs: Api<CronJob>,
    jobs: Api<Job>,
    _controller: common::AbortOnDrop,
    _ctx: Arc<Context>,
}

async fn harness() -> Harness {
    let cluster = common::cluster().await;
    // The clock starts at the real time: CronJobs count from their creation,
    // which the apiserver stamps with it.
    let clock = FakeClock::new(Utc::now());
    let ctx = Arc::new(Context::new(cluster.client.clone(), "cronjob-test"));
    let controller = CronJobController::new(ctx.clone(), Clock::Fake(clock.clone()));
    let task = common::AbortOnDrop(tokio::spawn(controller.run(2)));
    Harness {
        cronjobs: Api::namespaced(&cluster.client, "default"),
        jobs: Api::namespaced(&cluster.client, "default"),
        cluster,
        clock,
        _controller: task,
        _ctx: ctx,
    }
}

fn cronjob(name: &str, schedule: &str, policy: &str) -> CronJob {
    CronJob {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: policy.into(),
            job_template: Some(JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: [("app".to_string(), name.to_string())].into(),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    template: Some(PodTemplateSpec {
                        metadata: None,
                        spec: Some(PodSpec {
                            containers: vec![Container {
                                name: "c".into(),
                                image: "busybox".into(),
                                ..Default::default()
                            }],
                            restart_policy: "Never".into(),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The name Kubernetes gives the Job of `minute`: the minutes since the epoch.
fn job_name(cron: &str, minute: DateTime<Utc>) -> String {
    format!("{cron}-{}", minute.timestamp() / 60)
}

impl Harness {
    async fn create(&self, cron: CronJob) -> CronJob {
        self.cronjobs.create(&cron).await.expect("the CronJob is created")
    }

    /// The first whole minute after the CronJob's creation.
    fn first_minute(cron: &CronJob) -> DateTime<Utc> {
        let created = cron.metadata().creation_timestamp.expect("a creation time").to_datetime();
        created.duration_trunc(Duration::minutes(1)).expect("a minute") + Duration::minutes(1)
    }

    /// Moves the fake clock a few seconds past `minute`.
    fn at(&self, minute: DateTime<Utc>) {
        self.clock.set(minute + Duration::seconds(5));
    }

    /// The names of the CronJob's Jobs that exist now.
    async fn job_names(&self, cron: &str) -> BTreeSet<String> {
        let Ok(list) = self.jobs.list(&ListParams::labels(&format!("app={cron}"))).await else {
            return BTreeSet::new();
        };
        list.items
            .iter()
            .filter(|j| j.metadata().deletion_timestamp.is_none())
            .map(|j| j.metadata().name.clone())
            .collect()
    }

    async fn wait_for_jobs(&self, cron: &str, expected: &[&str]) {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        let what = format!("the Jobs of {cron} to be {expected:?}");
        common::eventually(&what, || async { self.job_names(cron).await == expected }).await;
    }

    /// Whether the CronJob has an Event with `reason`.
    async fn has_event(&self, cron: &str, reason: &str) -> bool {
        let events: Api<Event> = Api::namespaced(&self.cluster.client, "default");
        let Ok(list) = events.list(&ListParams::default()).await else { return false };
        list.items.iter().any(|e| {
            e.reason == reason && e.involved_object.as_ref().is_some_and(|o| o.name == cron && o.kind == "CronJob")
        })
    }

    async fn wait_for_event(&self, cron: &str, reason: &str) {
        let what = format!("a {reason} event on {cron}");
        common::eventually(&what, || self.has_event(cron, reason)).await;
    }

    /// Plays the Job controller: the Job ends as `condition` (Complete or Failed).
    async fn finish(&self, name: &str, condition: &str) {
        for _ in 0..20 {
            let mut job = self.jobs.get(name).await.expect("the Job exists");
            let status = job.status.get_or_insert_with(Default::default);
            let now = Time::from_datetime(self.clock.now());
            status.start_time.get_or_insert(now);
            if condition == "Complete" {
                status.completion_time = Some(now);
                status.succeeded = 1;
            } else {
                status.failed = 1;
            }
            status.conditions.push(JobCondition {
                r#type: condition.into(),
                status: "True".into(),
                last_transition_time: Some(now),
                ..Default::default()
            });
            match self.jobs.update_status(&job).await {
                Ok(_) => return,
                Err(e) if e.is(proto::Reason::Conflict) => continue,
                Err(e) => panic!("finishing Job {name}: {e}"),
            }
        }
        panic!("Job {name}'s status kept conflicting");
    }

    async fn status_of(&self, name: &str) -> proto::batch::v1::CronJobStatus {
        self.cronjobs.get(name).await.expect("the CronJob exists").status.unwrap_or_default()
    }
}

#[tokio::test]
async fn forbid_holds_back_a_second_job_and_history_limits_prune_the_oldest() {
    let h = harness().await;
    let mut cron = cronjob("tick", "* * * * *", "Forbid");
    let spec = cron.spec.as_mut().unwrap();
    spec.successful_jobs_history_limit = Some(2);
    spec.failed_jobs_history_limit = Some(1);
    let created = h.create(cron).await;
    let m1 = Harness::first_minute(&created);
    let minute = |n: i64| m1 + Duration::minutes(n - 1);
    let name = |n: i64| job_name("tick", minute(n));

    h.at(minute(1));
    h.wait_for_jobs("tick", &[&name(1)]).await;
    let job = h.jobs.get(&name(1)).await.unwrap();
    let owner = &job.metadata().owner_references[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("CronJob", "tick", Some(true)));
    assert_eq!(
        job.metadata().annotations.get("batch.kubernetes.io/cronjob-scheduled-timestamp").map(String::as_str),
        Some(minute(1).to_rfc3339_opts(chrono::SecondsFormat::Secs, true).as_str())
    );
    common::eventually("status.active to list the first Job", || async {
        let status = h.status_of("tick").await;
        status.active.iter().map(|r| r.name.clone()).collect::<Vec<_>>() == [name(1)]
            && status.last_schedule_time.map(|t| t.to_datetime()) == Some(minute(1))
    })
    .await;

    // Minute 2 comes while the first Job runs: Forbid says no.
    h.at(minute(2));
    h.wait_for_event("tick", "JobAlreadyActive").await;
    assert_eq!(h.job_names("tick").await, BTreeSet::from([name(1)]), "Forbid started a second Job");

    // Once it completes, the held-back time starts at once.
    h.finish(&name(1), "Complete").await;
    h.wait_for_jobs("tick", &[&name(1), &name(2)]).await;
    common::eventually("lastSuccessfulTime and the active list to follow", || async {
        let status = h.status_of("tick").await;
        status.last_successful_time.is_some()
            && status.active.iter().map(|r| r.name.clone()).collect::<Vec<_>>() == [name(2)]
    })
    .await;

    // Three successes: the oldest goes (successfulJobsHistoryLimit 2).
    h.finish(&name(2), "Complete").await;
    h.at(minute(3));
    h.wait_for_jobs("tick", &[&name(1), &name(2), &name(3)]).await;
    h.finish(&name(3), "Complete").await;
    h.wait_for_jobs("tick", &[&name(2), &name(3)]).await;

    // Two failures: only the newest stays (failedJobsHistoryLimit 1).
    h.at(minute(4));
    h.wait_for_jobs("tick", &[&name(2), &name(3), &name(4)]).await;
    h.finish(&name(4), "Failed").await;
    h.at(minute(5));
    h.wait_for_jobs("tick", &[&name(2), &name(3), &name(4), &name(5)]).await;
    h.finish(&name(5), "Failed").await;
    h.wait_for_jobs("tick", &[&name(2), &name(3), &name(5)]).await;
    common::eventually("nothing active", || async { h.status_of("tick").await.active.is_empty() }).await;
}

#[tokio::test]
async fn replace_deletes_the_running_job_for_the_new_one() {
    let h = harness().await;
    let created = h.create(cronjob("swap", "* * * * *", "Replace")).await;
    let m1 = Harness::first_minute(&created);
    let (first, second) = (job_name("swap", m1), job_name("swap", m1 + Duration::minutes(1)));

    h.at(m1);
    h.wait_for_jobs("swap", &[&first]).await;
    h.at(m1 + Duration::minutes(1));
    h.wait_for_jobs("swap", &[&second]).await;
    common::eventually("status.active to hold only the new Job", || async {
        let active: Vec<String> = h.status_of("swap").await.active.iter().map(|r| r.name.clone()).collect();
        active == [second.clone()]
    })
    .await;
    // Events are written by the recorder's queue, after the delete itself.
    h.wait_for_event("swap", "SuccessfulDelete").await;
}

#[tokio::test]
async fn after_a_long_downtime_only_the_latest_missed_time_starts() {
    let h = harness().await;
    let created = h.create(cronjob("late", "* * * * *", "Allow")).await;
    let m1 = Harness::first_minute(&created);
    // Three hours pass in one jump: 180 missed minutes, one Job.
    let latest = m1 + Duration::minutes(180);
    h.at(latest);
    h.wait_for_jobs("late", &[&job_name("late", latest)]).await;
    h.wait_for_event("late", "TooManyMissedTimes").await;
    assert_eq!(h.job_names("late").await.len(), 1, "missed times flooded in");
}

#[tokio::test]
async fn a_bad_schedule_or_time_zone_is_refused_with_the_parsers_words() {
    // The apiserver parses schedules as the controller does, so neither reaches it.
    let h = harness().await;
    let api: Api<CronJob> = Api::namespaced(&h.cluster.client, "default");
    let error = api.create(&cronjob("badminute", "61 * * * *", "Allow")).await.unwrap_err();
    assert!(error.is(proto::Reason::Invalid), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("spec.schedule") && message.contains("minute field \"61\"") && message.contains("0-59"),
        "{message}"
    );
    let mut zoned = cronjob("badzone", "* * * * *", "Allow");
    zoned.spec.as_mut().unwrap().time_zone = Some("Mars/Olympus_Mons".into());
    let message = api.create(&zoned).await.unwrap_err().to_string();
    assert!(
        message.contains("spec.timeZone") && message.contains("Mars/Olympus_Mons") && message.contains("IANA"),
        "{message}"
    );
    assert!(api.get_opt("badminute").await.unwrap().is_none() && api.get_opt("badzone").await.unwrap().is_none());
}
