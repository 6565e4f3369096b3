//! The DaemonSet controller in the real controller-manager (the test plays the
//! kubelet, reporting daemon pods Running and Ready): one pod per node, following
//! nodes that join, leave, get a NoExecute taint or start matching a nodeSelector,
//! and a rolling update of the template.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use client::{Api, ListParams};
use proto::Resource as _;
use proto::apps::v1::{DaemonSet, DaemonSetSpec};
use proto::core::v1::{Container, Node, NodeCondition, NodeStatus, Pod, PodSpec, PodTemplateSpec, Taint};
use proto::meta::v1::{LabelSelector, ObjectMeta, Time};

fn node(name: &str) -> Node {
    Node {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: None,
        status: Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: Some(Time::now()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn daemon_set(name: &str, node_selector: BTreeMap<String, String>) -> DaemonSet {
    let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    DaemonSet {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(DaemonSetSpec {
            selector: Some(LabelSelector { match_labels: labels.clone(), ..Default::default() }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels, ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "c".into(), image: "busybox:1".into(), ..Default::default() }],
                    node_selector,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Live (not terminating) pods of `app` by node, reporting new ones Running and
/// Ready and finishing the deletion of terminating ones, as kubelets would.
async fn pods_by_node(pods: &Api<Pod>, app: &str) -> BTreeMap<String, Vec<Pod>> {
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods.list(&ListParams::labels(&format!("app={app}"))).await.unwrap().items {
        if pod.metadata().deletion_timestamp.is_some() {
            // The kubelet has stopped it: gone for good.
            let now = proto::meta::v1::DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
            let _ = pods.delete(&pod.metadata().name, now).await;
            continue;
        }
        if pod.status.as_ref().is_none_or(|s| s.phase != "Running") {
            common::set_pod_phase(pods, &pod.metadata().name, "Running", true).await;
        }
        by_node.entry(pod.spec.clone().unwrap_or_default().node_name).or_default().push(pod);
    }
    by_node
}

async fn on_exactly(pods: &Api<Pod>, app: &str, nodes: &[&str]) -> bool {
    let by_node = pods_by_node(pods, app).await;
    let wanted: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
    by_node.keys().cloned().collect::<BTreeSet<_>>() == wanted && by_node.values().all(|p| p.len() == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_follows_nodes_joining_leaving_and_being_tainted() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let client = &cluster.client;
    let nodes: Api<Node> = Api::all(client);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let sets: Api<DaemonSet> = Api::namespaced(client, "default");
    for name in ["a", "b"] {
        nodes.create(&node(name)).await.unwrap();
    }
    sets.create(&daemon_set("agent", BTreeMap::new())).await.unwrap();
    sets.create(&daemon_set("edge", [("role".to_string(), "edge".to_string())].into())).await.unwrap();
    common::eventually("a pod on a and b", || on_exactly(&pods, "agent", &["a", "b"])).await;
    let pod = pods_by_node(&pods, "agent").await.remove("a").unwrap().remove(0);
    let tolerations = pod.spec.unwrap().tolerations;
    assert!(tolerations.iter().any(|t| t.key == "node.kubernetes.io/unreachable" && t.toleration_seconds.is_none()));

    nodes.create(&node("c")).await.unwrap();
    common::eventually("a pod on the new node c", || on_exactly(&pods, "agent", &["a", "b", "c"])).await;

    nodes.delete("b", Default::default()).await.unwrap();
    common::eventually("b's pod gone with b", || on_exactly(&pods, "agent", &["a", "c"])).await;

    common::update_node(&nodes, "a", |a| {
        a.spec.get_or_insert_with(Default::default).taints.push(Taint {
            key: "dedicated".into(),
            value: "db".into(),
            effect: "NoExecute".into(),
            time_added: None,
        })
    })
    .await;
    common::eventually("a's pod removed by the NoExecute taint", || on_exactly(&pods, "agent", &["c"])).await;
    common::eventually("status counts c only", || async {
        let status = sets.get("agent").await.unwrap().status.unwrap_or_default();
        status.desired_number_scheduled == 1 && status.number_ready == 1 && status.current_number_scheduled == 1
    })
    .await;

    // The edge set runs only where the label says.
    assert!(pods_by_node(&pods, "edge").await.is_empty(), "no node is labelled role=edge yet");
    common::update_node(&nodes, "c", |c| {
        c.metadata_mut().labels.insert("role".into(), "edge".into());
    })
    .await;
    common::eventually("an edge pod on c", || on_exactly(&pods, "edge", &["c"])).await;

    // A new template rolls out; the untainted node gets the new pod.
    nodes.create(&node("d")).await.unwrap();
    common::eventually("pods on c and d", || on_exactly(&pods, "agent", &["c", "d"])).await;
    let image = serde_json::json!({ "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "busybox:2" }] } } } });
    sets.patch("agent", client::PatchType::Merge, &image).await.unwrap();
    common::eventually("every pod updated", || async {
        let by_node = pods_by_node(&pods, "agent").await;
        by_node.len() == 2
            && by_node.values().flatten().all(|p| p.spec.as_ref().unwrap().containers[0].image == "busybox:2")
    })
    .await;
    common::eventually("status updated", || async {
        let status = sets.get("agent").await.unwrap().status.unwrap_or_default();
        status.updated_number_scheduled == 2 && status.number_available == 2
    })
    .await;
}
