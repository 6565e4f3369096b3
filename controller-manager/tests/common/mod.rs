//! What every controller-manager test starts: a real etcd, the real apiserver and
//! the real controller-manager binary, with short leader-election timings.

#![allow(dead_code)]

use client::Client;
use proto::apps::v1::{ReplicaSet, ReplicaSetSpec};
use proto::core::v1::{Container, PodSpec, PodTemplateSpec};
use proto::meta::v1::{LabelSelector, ObjectMeta};

pub struct Cluster {
    pub client: Client,
    pub apiserver: testkit::ApiServer,
    pub etcd: testkit::Etcd,
    pub dir: tempfile::TempDir,
}

pub async fn cluster() -> Cluster {
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    Cluster { client, apiserver, etcd, dir: tempfile::tempdir().unwrap() }
}

pub fn controller_manager(cluster: &Cluster, name: &str) -> (testkit::Daemon, String) {
    controller_manager_with(cluster, name, &[])
}

/// The controller-manager with `extra` flags (short node grace periods, ...).
pub fn controller_manager_with(cluster: &Cluster, name: &str, extra: &[&str]) -> (testkit::Daemon, String) {
    let http = format!("127.0.0.1:{}", testkit::free_port());
    let args: Vec<String> = [
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
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let program = testkit::binary_path("controller-manager").unwrap();
    let log = cluster.dir.path().join(format!("{name}.log"));
    (testkit::Daemon::spawn(name, &program, &args, &log).unwrap(), http)
}

/// Waits for `check` to hold, polling, for up to 60 s (CI runs these beside the
/// kubelet and end-to-end tests on two cores).
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 60 s");
}

/// Plays the kubelet for a pod: binds it to `node` (if unbound) and reports it
/// Running and Ready.
pub async fn run_pod(client: &Client, pod: &proto::core::v1::Pod, node: &str) {
    use proto::Resource as _;
    use proto::core::v1::{Binding, ObjectReference, Pod};
    let meta = pod.metadata();
    let api: client::Api<Pod> = client::Api::namespaced(client, &meta.namespace);
    if pod.spec.as_ref().is_none_or(|s| s.node_name.is_empty()) {
        client
            .bind(Binding {
                metadata: Some(proto::meta::v1::ObjectMeta {
                    name: meta.name.clone(),
                    namespace: meta.namespace.clone(),
                    ..Default::default()
                }),
                target: Some(ObjectReference { kind: "Node".into(), name: node.into(), ..Default::default() }),
            })
            .await
            .unwrap();
    }
    set_pod_phase(&api, &meta.name, "Running", true).await;
}

/// Sets a pod's phase and Ready condition as a kubelet would, retrying conflicts.
pub async fn set_pod_phase(api: &client::Api<proto::core::v1::Pod>, name: &str, phase: &str, ready: bool) {
    use proto::core::v1::PodCondition;
    for _ in 0..20 {
        let Ok(mut pod) = api.get(name).await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let status = pod.status.get_or_insert_with(Default::default);
        status.phase = phase.into();
        status.conditions.retain(|c| c.r#type != "Ready");
        status.conditions.push(PodCondition {
            r#type: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            last_transition_time: Some(proto::meta::v1::Time::now_seconds()),
            ..Default::default()
        });
        match api.update_status(&pod).await {
            Ok(_) => return,
            // Conflicts, and a busy etcd timing out, are retried.
            Err(e) if e.is(proto::Reason::Conflict) || e.is(proto::Reason::ServiceUnavailable) => continue,
            Err(e) => panic!("updating pod {name}'s status: {e}"),
        }
    }
    panic!("pod {name}'s status kept conflicting");
}

/// Changes a node with `change`, retrying conflicts: the controller-manager writes
/// nodes too (their pod CIDRs, its taints).
pub async fn update_node(
    api: &client::Api<proto::core::v1::Node>,
    name: &str,
    change: impl Fn(&mut proto::core::v1::Node),
) {
    for _ in 0..20 {
        let mut node = api.get(name).await.unwrap_or_else(|e| panic!("reading node {name}: {e}"));
        change(&mut node);
        match api.update(&node).await {
            Ok(_) => return,
            Err(e) if e.is(proto::Reason::Conflict) => continue,
            Err(e) => panic!("updating node {name}: {e}"),
        }
    }
    panic!("node {name} kept conflicting");
}

/// Aborts a spawned helper (a fake kubelet) when the test ends, also on failure.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A ReplicaSet of `replicas` busybox pods labelled app=NAME.
pub fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    let labels: std::collections::BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    ReplicaSet {
        metadata: Some(ObjectMeta { name: name.to_string(), ..Default::default() }),
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
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
