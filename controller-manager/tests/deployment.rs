//! The deployment controller in the real controller-manager, with the test playing
//! the kubelet (every new pod is marked Running and Ready): a rolling update of 10
//! replicas never exceeds replicas + maxSurge pods nor drops below
//! replicas - maxUnavailable ready ones at any observed state; going back to the old
//! template reuses its ReplicaSet as the newest revision; Recreate removes every old
//! pod before creating new ones.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use client::{Api, ListParams, PatchType, WatchEvent};
use futures::StreamExt as _;
use proto::Resource as _;
use proto::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment};
use proto::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use proto::meta::v1::{IntOrString, LabelSelector, ObjectMeta};

fn deployment(name: &str, replicas: i32, strategy: DeploymentStrategy) -> Deployment {
    let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    Deployment {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector { match_labels: labels.clone(), ..Default::default() }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels, ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "web".into(), image: "web:v1".into(), ..Default::default() }],
                    ..Default::default()
                }),
            }),
            strategy: Some(strategy),
            ..Default::default()
        }),
        status: None,
    }
}

/// Plays the kubelet for every pod: Running and Ready as soon as it exists.
fn fake_kubelet(client: &client::Client) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::all(client);
    let client = client.clone();
    tokio::spawn(async move {
        let mut watch = pods.watch(&ListParams::default(), "").await.unwrap();
        let mut n = 0u32;
        while let Some(Ok(event)) = watch.next().await {
            let WatchEvent::Added(pod) = event else { continue };
            n += 1;
            let api: Api<Pod> = Api::namespaced(&client, &pod.metadata().namespace);
            let status = serde_json::json!({"status": {
                "phase": "Running",
                "podIP": format!("10.244.{}.{}", n / 250, n % 250 + 2),
                "conditions": [{"type": "Ready", "status": "True"}],
            }});
            let _ = api.patch_status(&pod.metadata().name, PatchType::Merge, &status).await;
        }
    })
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().map(|s| s.containers[0].image.clone()).unwrap_or_default()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"))
}

async fn wait_rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) {
    for _ in 0..600 {
        let d = api.get(name).await.unwrap();
        let status = d.status.clone().unwrap_or_default();
        if status.observed_generation == d.metadata().generation
            && status.updated_replicas == replicas
            && status.replicas == replicas
            && status.available_replicas == replicas
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not roll out: {:?}", api.get(name).await.unwrap().status);
}

/// Follows pods of app=NAME until every one of `replicas` runs `image`, checking
/// the bounds at each observed state.
async fn follow_rollout(pods: &Api<Pod>, name: &str, image: &str, replicas: usize, max_pods: usize, min_ready: usize) {
    let list = pods.list(&ListParams::labels(&format!("app={name}"))).await.unwrap();
    let mut live: BTreeMap<String, Pod> = list.items.into_iter().map(|p| (p.metadata().name.clone(), p)).collect();
    let mut watch = pods.watch(&ListParams::labels(&format!("app={name}")), &list.resource_version).await.unwrap();
    let done = |live: &BTreeMap<String, Pod>| {
        live.len() == replicas && live.values().all(|p| image_of(p) == image && is_ready(p))
    };
    while !done(&live) {
        let event = tokio::time::timeout(Duration::from_secs(60), watch.next())
            .await
            .expect("the rollout moves within 60 s")
            .unwrap()
            .unwrap();
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) if p.metadata().deletion_timestamp.is_none() => {
                live.insert(p.metadata().name.clone(), p);
            }
            WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => {
                live.remove(&p.metadata().name);
            }
            WatchEvent::Bookmark(_) => continue,
        }
        let ready = live.values().filter(|p| is_ready(p)).count();
        assert!(
            live.len() <= max_pods,
            "{} pods exceed the surge bound {max_pods}: {:?}",
            live.len(),
            live.values().map(|p| (p.metadata().name.clone(), image_of(p), is_ready(p))).collect::<Vec<_>>()
        );
        assert!(ready >= min_ready, "{ready} ready pods are below the availability bound {min_ready}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_stays_within_its_bounds_and_going_back_reuses_the_old_replica_set() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let _kubelet = fake_kubelet(&cluster.client);
    let deployments: Api<Deployment> = Api::namespaced(&cluster.client, "default");
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    let sets: Api<ReplicaSet> = Api::namespaced(&cluster.client, "default");
    let strategy = DeploymentStrategy {
        r#type: "RollingUpdate".into(),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::int(3)),
            max_unavailable: Some(IntOrString::int(2)),
        }),
    };
    deployments.create(&deployment("web", 10, strategy)).await.unwrap();
    wait_rolled_out(&deployments, "web", 10).await;

    let to = |image: &str| serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
    let rollout = follow_rollout(&pods, "web", "web:v2", 10, 13, 8);
    deployments.patch("web", PatchType::Merge, &to("web:v2")).await.unwrap();
    rollout.await;
    wait_rolled_out(&deployments, "web", 10).await;
    let revision = |d: &Deployment| d.metadata().annotations.get("deployment.kubernetes.io/revision").cloned();
    assert_eq!(revision(&deployments.get("web").await.unwrap()).as_deref(), Some("2"));

    // Back to v1: the v1 ReplicaSet becomes revision 3; no third ReplicaSet.
    let rollback = follow_rollout(&pods, "web", "web:v1", 10, 13, 8);
    deployments.patch("web", PatchType::Merge, &to("web:v1")).await.unwrap();
    rollback.await;
    wait_rolled_out(&deployments, "web", 10).await;
    let sets_now = sets.list(&ListParams::labels("app=web")).await.unwrap().items;
    assert_eq!(sets_now.len(), 2, "the old ReplicaSet is reused");
    assert_eq!(revision(&deployments.get("web").await.unwrap()).as_deref(), Some("3"));
    let d = deployments.get("web").await.unwrap();
    let conditions: Vec<(String, String, String)> =
        d.status.unwrap().conditions.into_iter().map(|c| (c.r#type, c.status, c.reason)).collect();
    assert!(
        conditions.contains(&("Available".into(), "True".into(), "MinimumReplicasAvailable".into())),
        "{conditions:?}"
    );
    assert!(
        conditions.contains(&("Progressing".into(), "True".into(), "NewReplicaSetAvailable".into())),
        "{conditions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_creating_new_ones() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let _kubelet = fake_kubelet(&cluster.client);
    let deployments: Api<Deployment> = Api::namespaced(&cluster.client, "default");
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    let strategy = DeploymentStrategy { r#type: "Recreate".into(), rolling_update: None };
    deployments.create(&deployment("db", 3, strategy)).await.unwrap();
    wait_rolled_out(&deployments, "db", 3).await;

    let list = pods.list(&ListParams::labels("app=db")).await.unwrap();
    let mut watch = pods.watch(&ListParams::labels("app=db"), &list.resource_version).await.unwrap();
    let mut images: BTreeMap<String, String> =
        list.items.iter().map(|p| (p.metadata().name.clone(), image_of(p))).collect();
    let patch =
        serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}});
    deployments.patch("db", PatchType::Merge, &patch).await.unwrap();
    while !(images.len() == 3 && images.values().all(|i| i == "web:v2")) {
        let event = tokio::time::timeout(Duration::from_secs(60), watch.next()).await.unwrap().unwrap().unwrap();
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) if p.metadata().deletion_timestamp.is_none() => {
                images.insert(p.metadata().name.clone(), image_of(&p));
            }
            WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => {
                images.remove(&p.metadata().name);
            }
            WatchEvent::Bookmark(_) => continue,
        }
        let versions: std::collections::BTreeSet<&String> = images.values().collect();
        assert!(versions.len() <= 1, "old and new pods never run together: {images:?}");
    }
}
