//! The real scheduler binary against a real etcd and apiserver; nodes are plain
//! Node objects (no kubelet), pods are created pending.

use std::time::{Duration, Instant};

use client::{Api, Client, ListParams};
use proto::core::v1::{
    Container, Event, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, Taint, Toleration,
};
use proto::meta::v1::{ObjectMeta, Quantity};

struct Cluster {
    client: Client,
    apiserver: testkit::ApiServer,
    _etcd: testkit::Etcd,
    dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    Cluster { client, apiserver, _etcd: etcd, dir: tempfile::tempdir().unwrap() }
}

fn scheduler(cluster: &Cluster, name: &str, extra: &[&str]) -> (testkit::Daemon, String) {
    let http = format!("127.0.0.1:{}", testkit::free_port());
    let mut args: Vec<String> = [
        "--master",
        &cluster.apiserver.grpc_endpoint(),
        "--http-address",
        &http,
        "--leader-elect-lease-duration",
        "2s",
        "--leader-elect-renew-deadline",
        "1500ms",
        "--leader-elect-retry-period",
        "200ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let program = testkit::binary_path("scheduler").unwrap();
    let log = cluster.dir.path().join(format!("{name}.log"));
    (testkit::Daemon::spawn(name, &program, &args, &log).unwrap(), http)
}

fn q(s: &str) -> Quantity {
    Quantity { string: s.to_string() }
}

fn node(name: &str, cpu: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> Node {
    Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            taints: taints
                .iter()
                .map(|(k, v, e)| Taint {
                    key: k.to_string(),
                    value: v.to_string(),
                    effect: e.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: [
                ("cpu".to_string(), q(cpu)),
                ("memory".to_string(), q("8Gi")),
                ("pods".to_string(), q("110")),
            ]
            .into_iter()
            .collect(),
            conditions: vec![NodeCondition { r#type: "Ready".into(), status: "True".into(), ..Default::default() }],
            ..Default::default()
        }),
    }
}

fn pod(name: &str, cpu: &str) -> Pod {
    let requests =
        if cpu.is_empty() { Default::default() } else { [("cpu".to_string(), q(cpu))].into_iter().collect() };
    Pod {
        metadata: Some(ObjectMeta { name: name.into(), namespace: "default".into(), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "busybox".into(),
                resources: Some(ResourceRequirements { requests, ..Default::default() }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

const DEADLINE: Duration = Duration::from_secs(30);

async fn node_of(client: &Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let started = Instant::now();
    loop {
        let p = pods.get(name).await.unwrap();
        let node = p.spec.map(|s| s.node_name).unwrap_or_default();
        if !node.is_empty() {
            return node;
        }
        assert!(started.elapsed() < DEADLINE, "pod {name} was not scheduled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn event_message(client: &Client, pod: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(client, "default");
    let started = Instant::now();
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        if let Some(e) =
            list.items.iter().find(|e| e.reason == reason && e.involved_object.as_ref().is_some_and(|o| o.name == pod))
        {
            return e.message.clone();
        }
        assert!(started.elapsed() < DEADLINE, "no {reason} event for {pod}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pod_that_fits_nowhere_says_why_and_is_placed_when_a_node_appears() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("small-1", "500m", &[], &[])).await.unwrap();
    nodes.create(&node("small-2", "500m", &[], &[])).await.unwrap();
    nodes.create(&node("tainted", "4", &[], &[("tag", "test", "NoSchedule")])).await.unwrap();
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    pods.create(&pod("big", "1")).await.unwrap();
    let message = event_message(&cluster.client, "big", "FailedScheduling").await;
    assert_eq!(message, "0/3 nodes are available: 1 node(s) had untolerated taint {tag: test}, 2 Insufficient cpu.");
    let p = pods.get("big").await.unwrap();
    assert!(p.spec.unwrap().node_name.is_empty());
    nodes.create(&node("large", "2", &[], &[])).await.unwrap();
    assert_eq!(node_of(&cluster.client, "big").await, "large");
    let scheduled = event_message(&cluster.client, "big", "Scheduled").await;
    assert_eq!(scheduled, "Successfully assigned default/big to large");
}

#[tokio::test]
async fn each_filter_steers_pods_to_the_one_node_that_passes() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    let mut not_ready = node("not-ready", "4", &[("disk", "ssd")], &[]);
    not_ready.status.as_mut().unwrap().conditions[0].status = "False".into();
    let mut cordoned = node("cordoned", "4", &[("disk", "ssd")], &[]);
    cordoned.spec.as_mut().unwrap().unschedulable = true;
    for n in [
        not_ready,
        cordoned,
        node("ssd", "4", &[("disk", "ssd"), ("cores", "8")], &[]),
        node("hdd", "4", &[("disk", "hdd"), ("cores", "2")], &[]),
        node("gpu", "4", &[("disk", "hdd"), ("cores", "2")], &[("gpu", "yes", "NoExecute")]),
    ] {
        nodes.create(&n).await.unwrap();
    }
    let (_scheduler, http) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);

    let mut selected = pod("selected", "");
    selected.spec.as_mut().unwrap().node_selector = [("disk".to_string(), "ssd".to_string())].into_iter().collect();
    let mut tolerant = pod("tolerant", "");
    let spec = tolerant.spec.as_mut().unwrap();
    spec.tolerations.push(Toleration { key: "gpu".into(), operator: "Exists".into(), ..Default::default() });
    spec.affinity = Some(serde_free_affinity("cores", "Lt", &["4"]));
    spec.node_selector = [("disk".to_string(), "hdd".to_string())].into_iter().collect();
    let mut gt = pod("gt", "");
    gt.spec.as_mut().unwrap().affinity = Some(serde_free_affinity("cores", "Gt", &["4"]));
    // "hdd" is the only ready, uncordoned, untainted node without an ssd label.
    let mut not_in = pod("not-in", "");
    not_in.spec.as_mut().unwrap().affinity = Some(serde_free_affinity("disk", "NotIn", &["ssd"]));
    for p in [&selected, &gt, &not_in] {
        pods.create(p).await.unwrap();
    }
    assert_eq!(node_of(&cluster.client, "selected").await, "ssd");
    assert_eq!(node_of(&cluster.client, "gt").await, "ssd");
    assert_eq!(node_of(&cluster.client, "not-in").await, "hdd");
    // With hdd made full, the toleration is the only way onto "gpu".
    let mut filler = pod("filler", "4");
    filler.spec.as_mut().unwrap().node_name = "hdd".into();
    pods.create(&filler).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tolerant.spec.as_mut().unwrap().containers[0].resources.as_mut().unwrap().requests =
        [("cpu".to_string(), q("1"))].into_iter().collect();
    pods.create(&tolerant).await.unwrap();
    assert_eq!(node_of(&cluster.client, "tolerant").await, "gpu");

    // Host ports: two pods on the same port cannot share a node.
    let with_port = |name: &str| {
        let mut p = pod(name, "");
        let spec = p.spec.as_mut().unwrap();
        spec.node_selector = [("disk".to_string(), "ssd".to_string())].into_iter().collect();
        spec.containers[0].ports.push(proto::core::v1::ContainerPort {
            container_port: 80,
            host_port: 8080,
            ..Default::default()
        });
        p
    };
    pods.create(&with_port("port-1")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "port-1").await, "ssd");
    pods.create(&with_port("port-2")).await.unwrap();
    let message = event_message(&cluster.client, "port-2", "FailedScheduling").await;
    assert!(message.contains("1 node(s) didn't have free ports for the requested pod ports"), "{message}");
    assert!(message.contains("1 node(s) were not ready"), "{message}");
    assert!(message.contains("1 node(s) were unschedulable"), "{message}");

    let (code, metrics) = testkit::http_get(&http, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("scheduler_schedule_attempts_total{result=\"scheduled\"} 5"), "{metrics}");
    assert!(metrics.contains("scheduler_pending_pods{queue=\"unschedulable\"} 1"), "{metrics}");
}

fn serde_free_affinity(key: &str, operator: &str, values: &[&str]) -> proto::core::v1::Affinity {
    use proto::core::v1::{Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: vec![NodeSelectorRequirement {
                        key: key.into(),
                        operator: operator.into(),
                        values: values.iter().map(|v| v.to_string()).collect(),
                    }],
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn another_scheduler_name_is_left_alone_and_a_standby_takes_over() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("n1", "4", &[], &[])).await.unwrap();
    let (first, first_http) = scheduler(&cluster, "first", &[]);
    let (second, second_http) = scheduler(&cluster, "second", &[]);
    pods.create(&pod("a", "")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "a").await, "n1");
    let mut other = pod("other", "");
    other.spec.as_mut().unwrap().scheduler_name = "someone-else".into();
    pods.create(&other).await.unwrap();
    let leads = |http: String| async move {
        testkit::http_get(&http, "/metrics").await.map(|(_, m)| m.contains("scheduler_leader 1")).unwrap_or(false)
    };
    let (mut leader, standby_http) = if leads(first_http.clone()).await {
        (first, second_http)
    } else {
        assert!(leads(second_http.clone()).await, "one of the two leads");
        (second, first_http)
    };
    assert!(!leads(standby_http.clone()).await, "only one leads");
    // Kill the leader; the standby must take over and schedule.
    leader.kill();
    pods.create(&pod("b", "")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "b").await, "n1");
    assert!(leads(standby_http).await);
    let p = pods.get("other").await.unwrap();
    assert!(p.spec.unwrap().node_name.is_empty(), "a pod for another scheduler was bound");
}

#[tokio::test]
async fn a_high_priority_pod_evicts_the_fewest_lower_priority_pods() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("only", "2", &[], &[])).await.unwrap();
    let (_scheduler, http) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    for (name, priority) in [("low", 1), ("lower", 0)] {
        let mut p = pod(name, "1");
        p.spec.as_mut().unwrap().priority = Some(priority);
        pods.create(&p).await.unwrap();
        assert_eq!(node_of(&cluster.client, name).await, "only");
    }
    let mut high = pod("high", "1");
    high.spec.as_mut().unwrap().priority = Some(100);
    pods.create(&high).await.unwrap();
    // Play the kubelet: a pod being deleted gracefully is stopped, then removed.
    let started = Instant::now();
    let victim = loop {
        let list = pods.list(&ListParams::default()).await.unwrap();
        if let Some(p) = list.items.iter().find(|p| p.metadata.as_ref().unwrap().deletion_timestamp.is_some()) {
            break p.metadata.as_ref().unwrap().name.clone();
        }
        assert!(started.elapsed() < DEADLINE, "no victim was evicted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(victim, "lower", "the lowest-priority pod is the one victim");
    let now = proto::meta::v1::DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    pods.delete(&victim, now).await.unwrap();
    assert_eq!(node_of(&cluster.client, "high").await, "only");
    assert!(pods.get("low").await.unwrap().metadata.unwrap().deletion_timestamp.is_none());
    let (_, metrics) = testkit::http_get(&http, "/metrics").await.unwrap();
    assert!(metrics.contains("scheduler_preemption_victims_total 1"), "{metrics}");
}

#[tokio::test]
async fn scores_prefer_free_nodes_preferred_affinity_and_no_soft_taints() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("busy", "4", &[("zone", "a")], &[])).await.unwrap();
    nodes.create(&node("idle", "4", &[("zone", "b")], &[])).await.unwrap();
    let mut filler = pod("filler", "3");
    filler.spec.as_mut().unwrap().node_name = "busy".into();
    pods.create(&filler).await.unwrap();
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    pods.create(&pod("plain", "100m")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "plain").await, "idle", "least allocated wins");

    use proto::core::v1::{Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm};
    let mut preferring = pod("preferring", "100m");
    preferring.spec.as_mut().unwrap().affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: vec![PreferredSchedulingTerm {
                weight: 100,
                preference: Some(NodeSelectorTerm {
                    match_expressions: vec![NodeSelectorRequirement {
                        key: "zone".into(),
                        operator: "In".into(),
                        values: vec!["a".into()],
                    }],
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        ..Default::default()
    });
    pods.create(&preferring).await.unwrap();
    assert_eq!(node_of(&cluster.client, "preferring").await, "busy", "preferred affinity outweighs free room");

    let mut idle = nodes.get("idle").await.unwrap();
    idle.spec.get_or_insert_with(Default::default).taints.push(Taint {
        key: "soft".into(),
        value: "x".into(),
        effect: "PreferNoSchedule".into(),
        ..Default::default()
    });
    nodes.update(&idle).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pods.create(&pod("avoiding", "100m")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "avoiding").await, "busy", "a PreferNoSchedule taint is avoided");
}

#[tokio::test]
async fn a_pod_waits_for_its_claim() {
    use proto::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Volume};
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("n1", "4", &[], &[])).await.unwrap();
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    let mut p = pod("claimant", "");
    p.spec.as_mut().unwrap().volumes.push(Volume {
        name: "data".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: "data".into(),
            read_only: false,
        }),
        ..Default::default()
    });
    pods.create(&p).await.unwrap();
    let message = event_message(&cluster.client, "claimant", "FailedScheduling").await;
    assert_eq!(message, "0/1 nodes are available: persistentvolumeclaim \"data\" not found.");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(&cluster.client, "default");
    let claim = PersistentVolumeClaim {
        metadata: Some(ObjectMeta { name: "data".into(), namespace: "default".into(), ..Default::default() }),
        spec: Some(proto::core::v1::PersistentVolumeClaimSpec {
            access_modes: vec!["ReadWriteOnce".into()],
            volume_name: "pv-1".into(),
            resources: Some(proto::core::v1::VolumeResourceRequirements {
                requests: [("storage".to_string(), q("1Gi"))].into_iter().collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    claims.create(&claim).await.unwrap();
    assert_eq!(node_of(&cluster.client, "claimant").await, "n1");
}

#[tokio::test]
async fn pods_of_one_replicaset_spread_across_nodes() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("big", "64", &[], &[])).await.unwrap();
    nodes.create(&node("small", "2", &[], &[])).await.unwrap();
    let owned = |name: &str| {
        let mut p = pod(name, "100m");
        p.metadata.as_mut().unwrap().owner_references.push(proto::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: "rs-1".into(),
            controller: Some(true),
            ..Default::default()
        });
        p
    };
    let mut filler = pod("filler", "1");
    filler.spec.as_mut().unwrap().node_name = "small".into();
    pods.create(&filler).await.unwrap();
    let mut first = owned("peer-1");
    first.spec.as_mut().unwrap().node_name = "big".into();
    pods.create(&first).await.unwrap();
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    pods.create(&pod("loner", "100m")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "loner").await, "big", "without peers, free room wins");
    pods.create(&owned("peer-2")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "peer-2").await, "small", "a peer on big pushes the next one away");
}

#[tokio::test]
async fn a_topology_spread_constraint_keeps_the_skew_within_bounds() {
    use proto::core::v1::TopologySpreadConstraint;
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("big", "64", &[("zone", "a")], &[])).await.unwrap();
    nodes.create(&node("small", "2", &[("zone", "b")], &[])).await.unwrap();
    nodes.create(&node("unzoned", "64", &[], &[])).await.unwrap();
    let web = |name: &str, constrained: bool| {
        let mut p = pod(name, "100m");
        p.metadata.as_mut().unwrap().labels.insert("app".into(), "web".into());
        if constrained {
            p.spec.as_mut().unwrap().topology_spread_constraints.push(TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "zone".into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(proto::meta::v1::LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into_iter().collect(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        p
    };
    let mut filler = pod("filler", "1");
    filler.spec.as_mut().unwrap().node_name = "small".into();
    pods.create(&filler).await.unwrap();
    let mut first = web("web-1", false);
    first.spec.as_mut().unwrap().node_name = "big".into();
    pods.create(&first).await.unwrap();
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    // Zone a has one web pod, zone b none: another in zone a would make the skew 2.
    pods.create(&web("web-2", true)).await.unwrap();
    assert_eq!(node_of(&cluster.client, "web-2").await, "small");
    // Now 1 and 1: either zone is fine, and the roomier node wins; never the unzoned one.
    pods.create(&web("web-3", true)).await.unwrap();
    assert_eq!(node_of(&cluster.client, "web-3").await, "big");
}

/// The pod's PodScheduled condition as (status, reason, message), waiting until it
/// has one with `status`.
async fn pod_scheduled_condition(client: &Client, name: &str, status: &str) -> (String, String, String) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let started = Instant::now();
    loop {
        let p = pods.get(name).await.unwrap();
        let conditions = p.status.map(|s| s.conditions).unwrap_or_default();
        if let Some(c) = conditions.iter().find(|c| c.r#type == "PodScheduled" && c.status == status) {
            return (c.status.clone(), c.reason.clone(), c.message.clone());
        }
        assert!(started.elapsed() < DEADLINE, "pod {name} never had PodScheduled={status}: {conditions:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pod_that_fits_nowhere_is_marked_unschedulable_and_placed_pods_scheduled() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    pods.create(&pod("early", "1")).await.unwrap();
    let (_, reason, message) = pod_scheduled_condition(&cluster.client, "early", "False").await;
    assert_eq!((reason.as_str(), message.as_str()), ("Unschedulable", "no nodes available to schedule pods"));
    nodes.create(&node("small", "500m", &[], &[])).await.unwrap();
    pods.create(&pod("big", "1")).await.unwrap();
    let (_, reason, message) = pod_scheduled_condition(&cluster.client, "big", "False").await;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
    assert_eq!(message, event_message(&cluster.client, "big", "FailedScheduling").await);
    nodes.create(&node("large", "2", &[], &[])).await.unwrap();
    assert_eq!(node_of(&cluster.client, "big").await, "large");
    pod_scheduled_condition(&cluster.client, "big", "True").await;
}

#[tokio::test]
async fn the_room_a_preemptor_freed_is_held_for_it_against_lower_priority_pods() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("only", "2", &[], &[])).await.unwrap();
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    for (name, priority) in [("keep", 1), ("victim", 0)] {
        let mut p = pod(name, "1");
        p.spec.as_mut().unwrap().priority = Some(priority);
        pods.create(&p).await.unwrap();
        assert_eq!(node_of(&cluster.client, name).await, "only");
    }
    let mut high = pod("high", "1");
    high.spec.as_mut().unwrap().priority = Some(100);
    pods.create(&high).await.unwrap();

    // The preemptor is nominated to the node (in its status) and waits.
    let started = Instant::now();
    loop {
        let p = pods.get("high").await.unwrap();
        if p.status.as_ref().is_some_and(|s| s.nominated_node_name == "only") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "high was never nominated to only: {:?}", p.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, reason, _) = pod_scheduled_condition(&cluster.client, "high", "False").await;
    assert_eq!(reason, "Unschedulable");
    let started = Instant::now();
    while pods.get("victim").await.unwrap().metadata.unwrap().deletion_timestamp.is_none() {
        assert!(started.elapsed() < DEADLINE, "the victim was not evicted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Play the kubelet: the victim goes; a lower-priority pod arrives at once,
    // while the preemptor may still be backing off. The freed cpu is the
    // preemptor's: the newcomer must not take it.
    let now = proto::meta::v1::DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    pods.delete("victim", now).await.unwrap();
    let mut newcomer = pod("newcomer", "1");
    newcomer.spec.as_mut().unwrap().priority = Some(0);
    pods.create(&newcomer).await.unwrap();

    assert_eq!(node_of(&cluster.client, "high").await, "only");
    pod_scheduled_condition(&cluster.client, "high", "True").await;
    let (_, reason, message) = pod_scheduled_condition(&cluster.client, "newcomer", "False").await;
    assert_eq!((reason.as_str(), message.as_str()), ("Unschedulable", "0/1 nodes are available: 1 Insufficient cpu."));
    let newcomer = pods.get("newcomer").await.unwrap();
    assert!(newcomer.spec.unwrap().node_name.is_empty(), "the newcomer did not take the preemptor's room");
    let keep = pods.get("keep").await.unwrap();
    assert!(keep.metadata.unwrap().deletion_timestamp.is_none(), "no second preemption was needed");
}

#[tokio::test]
async fn pod_anti_affinity_keeps_replicas_apart_and_pod_affinity_brings_a_pod_to_its_peer() {
    use proto::core::v1::{Affinity, PodAffinity, PodAffinityTerm};
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    for (name, zone) in [("n1", "a"), ("n2", "a"), ("n3", "b")] {
        nodes.create(&node(name, "8", &[("zone", zone), ("kubernetes.io/hostname", name)], &[])).await.unwrap();
    }
    let term = |app: &str, key: &str| PodAffinityTerm {
        label_selector: Some(proto::meta::v1::LabelSelector {
            match_labels: [("app".to_string(), app.to_string())].into_iter().collect(),
            ..Default::default()
        }),
        topology_key: key.into(),
        ..Default::default()
    };
    let labelled = |name: &str, app: &str, affinity: Affinity| {
        let mut p = pod(name, "100m");
        p.metadata.as_mut().unwrap().labels.insert("app".into(), app.into());
        p.spec.as_mut().unwrap().affinity = Some(affinity);
        p
    };
    let apart = Affinity {
        pod_anti_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: vec![term("db", "kubernetes.io/hostname")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    let mut placed = std::collections::BTreeSet::new();
    for i in 0..3 {
        let name = format!("db-{i}");
        pods.create(&labelled(&name, "db", apart.clone())).await.unwrap();
        placed.insert(node_of(&cluster.client, &name).await);
    }
    assert_eq!(placed.len(), 3, "two db replicas share a node: {placed:?}");
    pods.create(&labelled("db-3", "db", apart)).await.unwrap();
    let (status, reason, message) = pod_scheduled_condition(&cluster.client, "db-3", "False").await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Unschedulable"));
    assert!(message.contains("0/3 nodes are available"), "{message}");
    assert!(message.contains("node(s) didn't satisfy existing pods anti-affinity rules"), "{message}");

    // A pod that wants to share a zone with db-0 goes to that zone.
    let db0_node = node_of(&cluster.client, "db-0").await;
    let db0_zone = if db0_node == "n3" { "b" } else { "a" };
    // Gone at once (no kubelet finishes a graceful deletion here): terminating pods
    // still count for affinity, as in Kubernetes.
    let now = proto::meta::v1::DeleteOptions { grace_period_seconds: Some(0), ..Default::default() };
    for name in ["db-1", "db-2", "db-3"] {
        pods.delete(name, now.clone()).await.unwrap();
    }
    let near = Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: vec![term("db", "zone")],
            ..Default::default()
        }),
        ..Default::default()
    };
    for i in 0..3 {
        let name = format!("web-{i}");
        pods.create(&labelled(&name, "web", near.clone())).await.unwrap();
        let zone = if node_of(&cluster.client, &name).await == "n3" { "b" } else { "a" };
        assert_eq!(zone, db0_zone, "{name} left db-0's zone");
    }
}

#[tokio::test]
async fn a_gated_pod_waits_until_its_last_scheduling_gate_is_removed() {
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(&cluster.client);
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    nodes.create(&node("n1", "4", &[], &[])).await.unwrap();
    let (_scheduler, _) = scheduler(&cluster, "scheduler", &["--leader-elect=false"]);
    let mut gated = pod("gated", "100m");
    gated.spec.as_mut().unwrap().scheduling_gates =
        vec![proto::core::v1::PodSchedulingGate { name: "example.com/quota".into() }];
    pods.create(&gated).await.unwrap();
    // A pod created after it is placed, so the scheduler has seen the gated one.
    pods.create(&pod("plain", "100m")).await.unwrap();
    assert_eq!(node_of(&cluster.client, "plain").await, "n1");
    let waiting = pods.get("gated").await.unwrap();
    assert_eq!(waiting.spec.as_ref().unwrap().node_name, "", "a gated pod was scheduled");
    let condition = waiting.status.unwrap().conditions.into_iter().find(|c| c.r#type == "PodScheduled").unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "SchedulingGated"));

    let mut open = pods.get("gated").await.unwrap();
    open.spec.as_mut().unwrap().scheduling_gates.clear();
    pods.update(&open).await.unwrap();
    assert_eq!(node_of(&cluster.client, "gated").await, "n1");
}
