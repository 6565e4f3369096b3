//! The Job controller in the real controller-manager (the test plays the kubelet,
//! finishing pods as each case needs): completions with bounded parallelism, a
//! failure within backoffLimit retried, failures past it failing the Job,
//! activeDeadlineSeconds, and ttlSecondsAfterFinished.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Api, ListParams};
use proto::Resource as _;
use proto::batch::v1::{Job, JobSpec};
use proto::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use proto::meta::v1::ObjectMeta;

fn job(name: &str, completions: i32, parallelism: i32, backoff_limit: i32) -> Job {
    Job {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(JobSpec {
            completions: Some(completions),
            parallelism: Some(parallelism),
            backoff_limit: Some(backoff_limit),
            template: Some(PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container { name: "c".into(), image: "busybox".into(), ..Default::default() }],
                    restart_policy: "Never".into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    /// The first pod fails, every other succeeds.
    FirstFails,
    AllFail,
    AllSucceed,
    /// Pods run for ever.
    Hang,
}

/// What the fake kubelet saw of one Job's pods.
#[derive(Default)]
struct Seen {
    pods: BTreeSet<String>,
    most_active: usize,
}

/// Plays the kubelet for the pods of Job `name`, every 100 ms.
fn kubelet(pods: Api<Pod>, name: &str, outcome: Outcome) -> (common::AbortOnDrop, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (selector, record) = (format!("job-name={name}"), seen.clone());
    let task = tokio::spawn(async move {
        let mut finished = 0usize;
        loop {
            // A busy etcd may time out a list: try again at the next beat.
            let Ok(list) = pods.list(&ListParams::labels(&selector)).await.map(|l| l.items) else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let phase = |p: &Pod| p.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default();
            let live: Vec<&Pod> = list
                .iter()
                .filter(|p| p.metadata().deletion_timestamp.is_none())
                .filter(|p| !["Succeeded", "Failed"].contains(&phase(p).as_str()))
                .collect();
            {
                let mut seen = record.lock().unwrap();
                seen.most_active = seen.most_active.max(live.len());
                seen.pods.extend(list.iter().map(|p| p.metadata().name.clone()));
            }
            for pod in live.iter().filter(|p| phase(p) == "Pending") {
                let result = match outcome {
                    Outcome::FirstFails if finished == 0 => "Failed",
                    Outcome::FirstFails | Outcome::AllSucceed => "Succeeded",
                    Outcome::AllFail => "Failed",
                    Outcome::Hang => "Running",
                };
                finished += 1;
                common::set_pod_phase(&pods, &pod.metadata().name, result, false).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (common::AbortOnDrop(task), seen)
}

fn condition(job: &Job, kind: &str) -> Option<String> {
    let conditions = job.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().find(|c| c.r#type == kind && c.status == "True").map(|c| c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_within_parallelism_honour_backoff_limit_deadline_and_ttl() {
    let cluster = common::cluster().await;
    let flags = ["--job-backoff-base", "1s"];
    let (_cm, _) = common::controller_manager_with(&cluster, "controller-manager", &flags);
    let client = &cluster.client;
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let (_a, retried) = kubelet(pods.clone(), "retried", Outcome::FirstFails);
    let (_b, doomed) = kubelet(pods.clone(), "doomed", Outcome::AllFail);
    let (_c, _) = kubelet(pods.clone(), "brief", Outcome::AllSucceed);
    let (_d, _) = kubelet(pods.clone(), "slow", Outcome::Hang);
    jobs.create(&job("retried", 5, 2, 1)).await.unwrap();
    jobs.create(&job("doomed", 5, 2, 1)).await.unwrap();
    let mut brief = job("brief", 1, 1, 0);
    brief.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(1);
    jobs.create(&brief).await.unwrap();
    let mut slow = job("slow", 1, 1, 6);
    slow.spec.as_mut().unwrap().active_deadline_seconds = Some(2);
    jobs.create(&slow).await.unwrap();

    // completions=5, parallelism=2, one failure within backoffLimit=1: retried, completes.
    common::eventually("retried complete", || async {
        condition(&jobs.get("retried").await.unwrap(), "Complete").is_some()
    })
    .await;
    let status = jobs.get("retried").await.unwrap().status.unwrap();
    assert_eq!((status.succeeded, status.failed, status.active), (5, 1, 0));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    {
        let seen = retried.lock().unwrap();
        assert!(seen.most_active <= 2, "at most parallelism=2 pods ran at once, saw {}", seen.most_active);
        assert_eq!(seen.pods.len(), 6, "five successes and one failure: {:?}", seen.pods);
    }

    // Every pod fails: the second failure is past backoffLimit=1.
    common::eventually("doomed failed", || async {
        condition(&jobs.get("doomed").await.unwrap(), "Failed").as_deref() == Some("BackoffLimitExceeded")
    })
    .await;
    let status = jobs.get("doomed").await.unwrap().status.unwrap();
    assert_eq!((status.failed, status.succeeded, status.active), (2, 0, 0));
    // No replacement once failed (the kubelet would have seen it within 100 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(doomed.lock().unwrap().pods.len(), 2, "no pod after the Job failed");

    common::eventually("slow failed at its deadline", || async {
        condition(&jobs.get("slow").await.unwrap(), "Failed").as_deref() == Some("DeadlineExceeded")
    })
    .await;
    common::eventually("slow's running pod deleted", || async {
        pods.list(&ListParams::labels("job-name=slow")).await.unwrap().items.is_empty()
    })
    .await;

    common::eventually("brief deleted after its ttl", || async { jobs.get_opt("brief").await.unwrap().is_none() })
        .await;
}
