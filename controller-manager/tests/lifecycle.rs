//! Namespaces, service accounts and node CIDRs in the real controller-manager: a
//! deleted namespace is emptied of every kind and then removed; each namespace gets
//! a `default` ServiceAccount; each Node gets its own pod CIDR.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use client::{Api, ListParams};
use proto::apps::v1::{ReplicaSet, ReplicaSetSpec};
use proto::core::v1::{ConfigMap, Container, Namespace, Node, PodSpec, PodTemplateSpec, Secret, ServiceAccount};
use proto::meta::v1::{LabelSelector, ObjectMeta};

fn named(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta { name: name.into(), ..Default::default() })
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_is_emptied_then_removed_and_new_ones_get_a_service_account() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let client = &cluster.client;
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces.create(&Namespace { metadata: named("doomed"), ..Default::default() }).await.unwrap();

    let accounts: Api<ServiceAccount> = Api::namespaced(client, "doomed");
    eventually("a default service account", || async { accounts.get_opt("default").await.unwrap().is_some() }).await;

    let labels: std::collections::BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
    Api::<ConfigMap>::namespaced(client, "doomed")
        .create(&ConfigMap { metadata: named("c"), ..Default::default() })
        .await
        .unwrap();
    Api::<Secret>::namespaced(client, "doomed")
        .create(&Secret { metadata: named("s"), ..Default::default() })
        .await
        .unwrap();
    let rs = ReplicaSet {
        metadata: named("r"),
        spec: Some(ReplicaSetSpec {
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
    };
    Api::<ReplicaSet>::namespaced(client, "doomed").create(&rs).await.unwrap();
    let pods: Api<proto::core::v1::Pod> = Api::namespaced(client, "doomed");
    eventually("two pods", || async { pods.list(&ListParams::default()).await.unwrap().items.len() == 2 }).await;

    namespaces.delete("doomed", Default::default()).await.unwrap();
    eventually("the namespace to go", || async { namespaces.get_opt("doomed").await.unwrap().is_none() }).await;
    for info in proto::resource::KINDS.iter().filter(|k| k.namespaced) {
        let left = client.list(info, "doomed", &ListParams::default()).await.unwrap().items.len();
        assert_eq!(left, 0, "{} left in the removed namespace", info.plural);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_gets_its_own_pod_cidr() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let nodes: Api<Node> = Api::all(&cluster.client);
    for name in ["n1", "n2", "n3"] {
        nodes.create(&Node { metadata: named(name), ..Default::default() }).await.unwrap();
    }
    let cidrs = || async {
        let list = nodes.list(&ListParams::default()).await.unwrap().items;
        list.iter()
            .filter_map(|n| n.spec.as_ref().map(|s| s.pod_cidr.clone()))
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    eventually("three pod CIDRs", || async { cidrs().await.len() == 3 }).await;
    let assigned = cidrs().await;
    let distinct: BTreeSet<&String> = assigned.iter().collect();
    assert_eq!(distinct.len(), 3, "{assigned:?}");
    assert!(assigned.iter().all(|c| c.starts_with("10.244.") && c.ends_with("/24")), "{assigned:?}");
}
