//! The replication controller in the real controller-manager binary, against a real
//! etcd and apiserver (no kubelet: pods stay Pending, which is all replication
//! needs): it keeps `replicas` pods through a storm of duplicate events, replaces
//! deleted pods, scales down, adopts orphans, and a standby controller-manager
//! takes over when the leader dies.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use client::{Api, ListParams, PatchType, WatchEvent};
use futures::StreamExt as _;
use proto::Resource as _;
use proto::apps::v1::ReplicaSet;
use proto::core::v1::{Container, Pod, PodSpec};
use proto::meta::v1::ObjectMeta;

/// Follows pods labelled app=NAME, tracking the live (not terminating) set after
/// every event; returns when `done` holds, panicking if `never` ever holds.
async fn follow_pods(
    watch: &mut client::api::WatchStream<Pod>,
    live: &mut BTreeSet<String>,
    done: impl Fn(&BTreeSet<String>) -> bool,
    never: impl Fn(&BTreeSet<String>) -> bool,
) {
    while !done(live) {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("pods change within 30 s")
            .expect("the watch stays open")
            .expect("no watch error");
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                let name = p.metadata().name.clone();
                if p.metadata().deletion_timestamp.is_some() {
                    live.remove(&name);
                } else {
                    live.insert(name);
                }
            }
            WatchEvent::Deleted(p) => {
                live.remove(&p.metadata().name);
            }
            WatchEvent::Bookmark(_) => {}
        }
        assert!(!never(live), "observed pods {live:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_keeps_its_count_through_duplicate_events_deletes_and_scaling() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let sets: Api<ReplicaSet> = Api::namespaced(&cluster.client, "default");
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    let mut watch = pods.watch(&ListParams::labels("app=web"), "").await.unwrap();
    let mut live = BTreeSet::new();

    sets.create(&common::replica_set("web", 3)).await.unwrap();
    follow_pods(&mut watch, &mut live, |l| l.len() == 3, |l| l.len() > 3).await;

    // A storm of events: the set touched 50 times, every pod's status written.
    for i in 0..50 {
        let touch = serde_json::json!({"metadata": {"annotations": {"touch": i.to_string()}}});
        sets.patch("web", PatchType::Merge, &touch).await.unwrap();
    }
    for name in live.clone() {
        let poke = serde_json::json!({"status": {"message": "poked"}});
        pods.patch_status(&name, PatchType::Merge, &poke).await.unwrap();
    }
    // Give the controller every chance to misbehave, while watching.
    let _ =
        tokio::time::timeout(Duration::from_secs(3), follow_pods(&mut watch, &mut live, |_| false, |l| l.len() > 3))
            .await;
    assert_eq!(live.len(), 3);

    // A deleted pod is replaced.
    let victim = live.iter().next().unwrap().clone();
    pods.delete(&victim, Default::default()).await.unwrap();
    follow_pods(&mut watch, &mut live, |l| l.len() == 3 && !l.contains(&victim), |l| l.len() > 3).await;

    // Scaling down removes two, and status follows.
    sets.patch("web", PatchType::Merge, &serde_json::json!({"spec": {"replicas": 1}})).await.unwrap();
    follow_pods(&mut watch, &mut live, |l| l.len() == 1, |l| l.len() > 3).await;
    let mut replicas = -1;
    for _ in 0..100 {
        let set = sets.get("web").await.unwrap();
        let status = set.status.unwrap_or_default();
        replicas = status.replicas;
        if replicas == 1 && status.observed_generation == set.metadata.as_ref().unwrap().generation {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(replicas, 1, "status.replicas follows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    let orphan = Pod {
        metadata: Some(ObjectMeta {
            name: "orphan".into(),
            labels: [("app".to_string(), "db".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container { name: "c".into(), image: "busybox".into(), ..Default::default() }],
            ..Default::default()
        }),
        status: None,
    };
    pods.create(&orphan).await.unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(&cluster.client, "default");
    let set = sets.create(&common::replica_set("db", 2)).await.unwrap();
    let uid = set.metadata().uid.clone();
    let mut adopted = false;
    let mut count = 0;
    for _ in 0..200 {
        let list = pods.list(&ListParams::labels("app=db")).await.unwrap().items;
        count = list.len();
        adopted = list
            .iter()
            .any(|p| p.metadata().name == "orphan" && p.metadata().owner_references.iter().any(|r| r.uid == uid));
        if adopted && count == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(adopted, "the orphan is adopted");
    assert_eq!(count, 2, "and counts toward replicas: one new pod, not two");

    // Relabelled out of the selector: released, and replaced.
    let relabel = serde_json::json!({"metadata": {"labels": {"app": "other"}}});
    pods.patch("orphan", PatchType::Merge, &relabel).await.unwrap();
    let mut released = false;
    for _ in 0..200 {
        let pod = pods.get("orphan").await.unwrap();
        let matching = pods.list(&ListParams::labels("app=db")).await.unwrap().items.len();
        released = pod.metadata().owner_references.is_empty();
        if released && matching == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released, "a pod that stops matching is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_controller_manager_takes_over_when_the_leader_dies() {
    let cluster = common::cluster().await;
    let (mut first, first_http) = common::controller_manager(&cluster, "first");
    let sets: Api<ReplicaSet> = Api::namespaced(&cluster.client, "default");
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    sets.create(&common::replica_set("a", 1)).await.unwrap();
    let wait_pods = |selector: &'static str, n: usize| {
        let pods = pods.clone();
        async move {
            for _ in 0..300 {
                if pods.list(&ListParams::labels(selector)).await.unwrap().items.len() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{selector} never had {n} pods");
        }
    };
    wait_pods("app=a", 1).await;
    let (_second, second_http) = common::controller_manager(&cluster, "second");
    let leader_metric = |http: String| async move {
        let (_, body) = testkit::http_get(&http, "/metrics").await.unwrap();
        body.lines().find_map(|l| l.strip_prefix("controller_manager_leader ").map(str::to_string))
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(leader_metric(first_http).await.as_deref(), Some("1"));
    assert_eq!(leader_metric(second_http.clone()).await.as_deref(), Some("0"), "the second stands by");

    first.kill();
    sets.create(&common::replica_set("b", 2)).await.unwrap();
    wait_pods("app=b", 2).await;
    assert_eq!(leader_metric(second_http).await.as_deref(), Some("1"));
}
