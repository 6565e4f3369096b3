//! The node lifecycle controller in the real controller-manager (the test plays
//! the kubelet: it renews the node's Lease and reports pods running): a node whose
//! kubelet goes silent becomes Unknown and tainted unreachable, its pods are marked
//! not ready, evicted after their tolerationSeconds and replaced by their
//! ReplicaSet; the taint goes when the node reports Ready again. A NoExecute taint
//! set by a user evicts the pods that do not tolerate it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use client::{Api, Client, ListParams};
use proto::Resource as _;
use proto::apps::v1::ReplicaSet;
use proto::coordination::v1::{Lease, LeaseSpec};
use proto::core::v1::{Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, Taint, Toleration};
use proto::meta::v1::{MicroTime, ObjectMeta, Time};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn ready_node(name: &str) -> Node {
    Node {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus { conditions: vec![ready_condition()], ..Default::default() }),
    }
}

fn ready_condition() -> NodeCondition {
    NodeCondition {
        r#type: "Ready".into(),
        status: "True".into(),
        last_heartbeat_time: Some(Time::now()),
        last_transition_time: Some(Time::now_seconds()),
        reason: "KubeletReady".into(),
        ..Default::default()
    }
}

/// Renews kube-node-lease/<node> every 200 ms while `beating` holds, as a kubelet does.
fn heartbeat(client: &Client, node: &str, beating: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let node = node.to_string();
    tokio::spawn(async move {
        loop {
            if beating.load(Ordering::SeqCst) {
                renew(&leases, &node).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn renew(leases: &Api<Lease>, node: &str) {
    let now = MicroTime { seconds: Time::now().seconds, nanos: Time::now().nanos };
    match leases.get_opt(node).await.unwrap() {
        None => {
            let lease = Lease {
                metadata: Some(ObjectMeta { name: node.into(), ..Default::default() }),
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&lease).await.unwrap();
        }
        Some(mut lease) => {
            lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
            // A conflict is only a missed beat.
            let _ = leases.update(&lease).await;
        }
    }
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec.as_ref().is_some_and(|s| s.taints.iter().any(|t| t.key == key && t.effect == effect))
}

fn ready_status(node: &Node) -> String {
    let conditions = node.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().find(|c| c.r#type == "Ready").map(|c| c.status.clone()).unwrap_or_default()
}

fn pod_ready_status(pod: &Pod) -> String {
    let conditions = pod.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().find(|c| c.r#type == "Ready").map(|c| c.status.clone()).unwrap_or_default()
}

fn short_tolerations() -> Vec<Toleration> {
    ["node.kubernetes.io/not-ready", UNREACHABLE]
        .iter()
        .map(|key| Toleration {
            key: key.to_string(),
            operator: "Exists".into(),
            effect: "NoExecute".into(),
            toleration_seconds: Some(1),
            ..Default::default()
        })
        .collect()
}

fn replica_set(name: &str, replicas: i32, tolerations: Vec<Toleration>) -> ReplicaSet {
    let mut set = common::replica_set(name, replicas);
    if let Some(pod) = set.spec.as_mut().and_then(|s| s.template.as_mut()).and_then(|t| t.spec.as_mut()) {
        pod.tolerations = tolerations;
    }
    set
}

async fn list(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::labels(selector)).await.unwrap().items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_its_pods_evicted_and_replaced_and_the_taint_goes_when_it_recovers() {
    let cluster = common::cluster().await;
    let flags = ["--node-monitor-grace-period", "2s", "--node-monitor-period", "200ms"];
    let (_cm, _) = common::controller_manager_with(&cluster, "controller-manager", &flags);
    let client = &cluster.client;
    let nodes: Api<Node> = Api::all(client);
    let pods: Api<Pod> = Api::namespaced(client, "default");

    nodes.create(&ready_node("n1")).await.unwrap();
    let beating = Arc::new(AtomicBool::new(true));
    let _kubelet = common::AbortOnDrop(heartbeat(client, "n1", beating.clone()));

    Api::<ReplicaSet>::namespaced(client, "default").create(&replica_set("web", 2, short_tolerations())).await.unwrap();
    common::eventually("two pods", || async { list(&pods, "app=web").await.len() == 2 }).await;
    let originals = list(&pods, "app=web").await;
    for pod in &originals {
        common::run_pod(client, pod, "n1").await;
    }
    let original_names: Vec<String> = originals.iter().map(|p| p.metadata().name.clone()).collect();

    // Heartbeating through more than the grace period keeps the node Ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let node = nodes.get("n1").await.unwrap();
    assert_eq!(ready_status(&node), "True", "a node whose lease is renewed stays Ready");
    assert!(node.spec.as_ref().is_none_or(|s| s.taints.is_empty()), "{:?}", node.spec);

    beating.store(false, Ordering::SeqCst);
    common::eventually("n1 Unknown and tainted unreachable", || async {
        let node = nodes.get("n1").await.unwrap();
        ready_status(&node) == "Unknown" && has_taint(&node, UNREACHABLE, "NoExecute")
    })
    .await;
    common::eventually("the original pods evicted", || async {
        let mut evicted = 0;
        for name in &original_names {
            match pods.get_opt(name).await.unwrap() {
                None => evicted += 1,
                Some(pod) if pod.metadata().deletion_timestamp.is_some() => {
                    assert_eq!(pod_ready_status(&pod), "False", "{name} was marked not ready");
                    evicted += 1;
                }
                Some(_) => {}
            }
        }
        evicted == original_names.len()
    })
    .await;
    common::eventually("two replacements", || async {
        let live = list(&pods, "app=web").await;
        let fresh = live
            .iter()
            .filter(|p| p.metadata().deletion_timestamp.is_none() && !original_names.contains(&p.metadata().name))
            .count();
        fresh == 2
    })
    .await;

    // The kubelet comes back and reports Ready: the taints go.
    beating.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        let mut node = nodes.get("n1").await.unwrap();
        node.status.get_or_insert_with(Default::default).conditions = vec![ready_condition()];
        if nodes.update_status(&node).await.is_ok() {
            break;
        }
    }
    common::eventually("the taints removed", || async {
        let node = nodes.get("n1").await.unwrap();
        ready_status(&node) == "True" && node.spec.as_ref().is_none_or(|s| s.taints.is_empty())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_no_execute_taint_evicts_only_the_pods_that_do_not_tolerate_it() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let client = &cluster.client;
    let nodes: Api<Node> = Api::all(client);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    nodes.create(&ready_node("n2")).await.unwrap();

    let pod = |name: &str, tolerations: Vec<Toleration>| Pod {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(PodSpec {
            node_name: "n2".into(),
            containers: vec![Container { name: "c".into(), image: "busybox".into(), ..Default::default() }],
            tolerations,
            ..Default::default()
        }),
        status: None,
    };
    let tolerant = Toleration {
        key: "dedicated".into(),
        operator: "Exists".into(),
        effect: "NoExecute".into(),
        ..Default::default()
    };
    pods.create(&pod("plain", vec![])).await.unwrap();
    pods.create(&pod("tolerant", vec![tolerant])).await.unwrap();
    for name in ["plain", "tolerant"] {
        common::set_pod_phase(&pods, name, "Running", true).await;
    }

    common::update_node(&nodes, "n2", |node| {
        node.spec.get_or_insert_with(Default::default).taints.push(Taint {
            key: "dedicated".into(),
            value: "db".into(),
            effect: "NoExecute".into(),
            time_added: None,
        })
    })
    .await;

    common::eventually("the pod without the toleration evicted", || async {
        pods.get_opt("plain").await.unwrap().is_none_or(|p| p.metadata().deletion_timestamp.is_some())
    })
    .await;
    // Give a wrong eviction of the tolerating pod the time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kept = pods.get("tolerant").await.unwrap();
    assert!(kept.metadata().deletion_timestamp.is_none(), "the tolerating pod stays");
}
