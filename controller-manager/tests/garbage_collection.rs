//! Garbage collection in the real controller-manager: deleting a Deployment in the
//! background removes its ReplicaSets and pods; in the foreground the Deployment
//! stays until they are gone; with orphan propagation they stay, released.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use client::{Api, ListParams};
use proto::Resource as _;
use proto::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use proto::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use proto::meta::v1::{DeleteOptions, LabelSelector, ObjectMeta};

fn deployment(name: &str) -> Deployment {
    let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    Deployment {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: Some(LabelSelector { match_labels: labels.clone(), ..Default::default() }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels, ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "c".into(), image: "busybox".into(), ..Default::default() }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

struct Apis {
    deployments: Api<Deployment>,
    sets: Api<ReplicaSet>,
    pods: Api<Pod>,
}

impl Apis {
    async fn counts(&self, app: &str) -> (usize, usize) {
        let selector = ListParams::labels(&format!("app={app}"));
        let sets = self.sets.list(&selector).await.unwrap().items.len();
        let pods = self.pods.list(&selector).await.unwrap().items.len();
        (sets, pods)
    }

    /// Creates the Deployment and waits for its ReplicaSet and two pods.
    async fn deployed(&self, name: &str) {
        self.deployments.create(&deployment(name)).await.unwrap();
        for _ in 0..300 {
            if self.counts(name).await == (1, 2) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} never had its ReplicaSet and pods");
    }

    async fn until(&self, what: &str, check: impl AsyncFn() -> bool) {
        for _ in 0..300 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what} did not happen within 30 s");
    }
}

fn propagation(policy: &str) -> DeleteOptions {
    DeleteOptions { propagation_policy: policy.to_string(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_foreground_and_orphan_deletion_of_a_deployment() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let apis = Apis {
        deployments: Api::namespaced(&cluster.client, "default"),
        sets: Api::namespaced(&cluster.client, "default"),
        pods: Api::namespaced(&cluster.client, "default"),
    };

    apis.deployed("bg").await;
    apis.deployments.delete("bg", propagation("Background")).await.unwrap();
    apis.until("background deletion of dependents", async || apis.counts("bg").await == (0, 0)).await;

    apis.deployed("fg").await;
    let (held, removed) = apis.deployments.delete("fg", propagation("Foreground")).await.unwrap();
    assert!(!removed && held.metadata().finalizers.contains(&"foregroundDeletion".to_string()));
    apis.until("foreground deletion", async || {
        apis.deployments.get_opt("fg").await.unwrap().is_none() && apis.counts("fg").await == (0, 0)
    })
    .await;

    apis.deployed("orphan").await;
    apis.deployments.delete("orphan", propagation("Orphan")).await.unwrap();
    apis.until("the orphaning owner to go", async || apis.deployments.get_opt("orphan").await.unwrap().is_none()).await;
    // The dependents stay, no longer owned by the Deployment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(apis.counts("orphan").await, (1, 2));
    let sets = apis.sets.list(&ListParams::labels("app=orphan")).await.unwrap().items;
    assert!(sets[0].metadata().owner_references.is_empty(), "released: {:?}", sets[0].metadata().owner_references);
}
