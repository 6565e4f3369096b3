//! Fencing of a controller-manager that lost its Lease while it could not run: the
//! leader is frozen (SIGSTOP) so it neither renews nor notices anything, a standby
//! takes the kube-system/kube-controller-manager Lease and acts; then the old
//! leader resumes (SIGCONT) with a stale view of the cluster and must stop leading
//! without acting on that view, until it wins the Lease again.
//!
//! The stale view is made to tempt it: a node's kubelet renews only its
//! kube-node-lease Lease (as real kubelets do between status updates), so the
//! frozen leader's last sign of life from that node is older than the grace period
//! when it wakes, and marking the node Unknown would be a write that passes the
//! apiserver's compare-and-swap (the Node object itself has not changed). A pod of
//! a ReplicaSet is deleted and replaced while it is frozen, so a replica count
//! taken from its stale cache would create a duplicate.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Api, Client, ListParams, WatchEvent};
use futures::StreamExt as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proto::Resource as _;
use proto::apps::v1::ReplicaSet;
use proto::coordination::v1::{Lease, LeaseSpec};
use proto::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Pod};
use proto::meta::v1::{DeleteOptions, MicroTime, ObjectMeta, Time};

const REPLICAS: usize = 2;
/// The controller-managers' node grace period; the leader stays frozen longer.
const GRACE: Duration = Duration::from_secs(2);

/// Resumes a process stopped with SIGSTOP when dropped, so a failing test never
/// leaves it frozen (the Daemon's own guard then kills it).
struct Frozen {
    pid: Pid,
    resumed: bool,
}

impl Frozen {
    fn stop(pid: Pid) -> Frozen {
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP the leader");
        Frozen { pid, resumed: false }
    }

    fn resume(&mut self) {
        kill(self.pid, Signal::SIGCONT).expect("SIGCONT the old leader");
        self.resumed = true;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.resumed {
            let _ = kill(self.pid, Signal::SIGCONT);
        }
    }
}

fn pid_of(daemon: &testkit::Daemon) -> Pid {
    let pid = daemon.pid().expect("the controller-manager is running");
    Pid::from_raw(i32::try_from(pid).expect("a pid fits in i32"))
}

/// The identity a controller-manager campaigns under (main.rs: host name and pid).
fn identity_of(daemon: &testkit::Daemon) -> String {
    let host = nix::unistd::gethostname().expect("the host name").to_string_lossy().into_owned();
    format!("{host}_{}", pid_of(daemon))
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt("kube-controller-manager").await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// The controller_manager_leader gauge a process reports, or None if it does not answer.
async fn leader_metric(http: &str) -> Option<String> {
    let (_, body) = testkit::http_get(http, "/metrics").await.ok()?;
    body.lines().find_map(|l| l.strip_prefix("controller_manager_leader ").map(str::to_string))
}

fn ready_node(name: &str) -> Node {
    Node {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: Some(Time::now()),
                last_transition_time: Some(Time::now_seconds()),
                reason: "KubeletReady".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn ready_status(node: &Node) -> String {
    let conditions = node.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().find(|c| c.r#type == "Ready").map(|c| c.status.clone()).unwrap_or_default()
}

/// Renews kube-node-lease/<node> every 200 ms, as a kubelet does; the Node object
/// itself is never written again.
fn node_heartbeat(client: &Client, node: &str) -> tokio::task::JoinHandle<()> {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let node = node.to_string();
    tokio::spawn(async move {
        loop {
            let now = Time::now();
            let now = MicroTime { seconds: now.seconds, nanos: now.nanos };
            match leases.get_opt(&node).await {
                Ok(None) => {
                    let lease = Lease {
                        metadata: Some(ObjectMeta { name: node.clone(), ..Default::default() }),
                        spec: Some(LeaseSpec {
                            holder_identity: Some(node.clone()),
                            lease_duration_seconds: Some(40),
                            renew_time: Some(now),
                            ..Default::default()
                        }),
                    };
                    let _ = leases.create(&lease).await;
                }
                Ok(Some(mut lease)) => {
                    lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
                    // A conflict or a slow etcd is only a missed beat.
                    let _ = leases.update(&lease).await;
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Names of the live (not terminating) pods labelled app=`app`.
async fn live_pods(pods: &Api<Pod>, app: &str) -> BTreeSet<String> {
    let Ok(list) = pods.list(&ListParams::labels(&format!("app={app}"))).await else { return BTreeSet::new() };
    list.items.iter().filter(|p| p.metadata().deletion_timestamp.is_none()).map(|p| p.metadata().name.clone()).collect()
}

/// Deletes one live pod of the set and waits until a new one replaces it; returns
/// the new set of live pods.
async fn delete_one_and_wait_for_replacement(pods: &Api<Pod>, app: &str) -> BTreeSet<String> {
    let before = live_pods(pods, app).await;
    let victim = before.iter().next().expect("a live pod to delete").clone();
    pods.delete(&victim, DeleteOptions::default()).await.unwrap();
    common::eventually("the deleted pod replaced", || async {
        let after = live_pods(pods, app).await;
        after.len() == REPLICAS && !after.contains(&victim) && after != before
    })
    .await;
    live_pods(pods, app).await
}

/// What a resumed stale leader could write, as seen through watches.
#[derive(Default)]
struct Observed {
    /// Pods of the set created, by name.
    created: Vec<String>,
    /// The most live pods of the set at once.
    most_live: usize,
    /// Node writes that stopped calling it Ready, or tainted it.
    node_changes: Vec<String>,
    /// Holders the controller-manager Lease was written with.
    holders: Vec<String>,
}

/// Follows the set's pods, the node and the controller-manager Lease from
/// `resource_version` on, recording into `observed` until aborted.
async fn follow(client: Client, app: String, node: String, resource_version: String, observed: Arc<Mutex<Observed>>) {
    let pods: Api<Pod> = Api::namespaced(&client, "default");
    let nodes: Api<Node> = Api::all(&client);
    let leases: Api<Lease> = Api::namespaced(&client, "kube-system");
    let selector = format!("app={app}");
    let mut pod_events = pods.watch(&ListParams::labels(&selector), &resource_version).await.unwrap();
    let mut node_events = nodes.watch(&ListParams::default(), &resource_version).await.unwrap();
    let mut lease_events = leases.watch(&ListParams::default(), &resource_version).await.unwrap();
    let mut live: BTreeSet<String> = live_pods(&pods, &app).await;
    loop {
        tokio::select! {
            Some(event) = pod_events.next() => {
                let mut seen = observed.lock().unwrap();
                match event.unwrap() {
                    WatchEvent::Added(pod) => {
                        seen.created.push(pod.metadata().name.clone());
                        live.insert(pod.metadata().name.clone());
                    }
                    WatchEvent::Modified(pod) if pod.metadata().deletion_timestamp.is_some() => {
                        live.remove(&pod.metadata().name);
                    }
                    WatchEvent::Deleted(pod) => {
                        live.remove(&pod.metadata().name);
                    }
                    _ => {}
                }
                seen.most_live = seen.most_live.max(live.len());
            }
            Some(event) = node_events.next() => {
                if let WatchEvent::Modified(changed) = event.unwrap()
                    && changed.metadata().name == node
                {
                    let tainted = changed.spec.as_ref().is_some_and(|s| !s.taints.is_empty());
                    if ready_status(&changed) != "True" || tainted {
                        let what = format!("Ready={} taints={:?}", ready_status(&changed), changed.spec.map(|s| s.taints));
                        observed.lock().unwrap().node_changes.push(what);
                    }
                }
            }
            Some(event) = lease_events.next() => {
                if let WatchEvent::Added(lease) | WatchEvent::Modified(lease) = event.unwrap()
                    && lease.metadata().name == "kube-controller-manager"
                {
                    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                    observed.lock().unwrap().holders.push(holder);
                }
            }
            else => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_old_leader_acts_no_more_until_it_wins_the_lease_again() {
    let cluster = common::cluster().await;
    let client = &cluster.client;
    let grace = format!("{}s", GRACE.as_secs());
    let flags = ["--node-monitor-grace-period", &grace, "--node-monitor-period", "200ms"];
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let nodes: Api<Node> = Api::all(client);

    // The first controller-manager leads before the second starts.
    let (mut old, old_http) = common::controller_manager_with(&cluster, "old-leader", &flags);
    let old_identity = identity_of(&old);
    common::eventually("the first controller-manager holds the lease", || async {
        lease_holder(&leases).await.as_deref() == Some(old_identity.as_str())
    })
    .await;
    let (mut standby, standby_http) = common::controller_manager_with(&cluster, "standby", &flags);
    let standby_identity = identity_of(&standby);

    nodes.create(&ready_node("n1")).await.unwrap();
    let _kubelet = common::AbortOnDrop(node_heartbeat(client, "n1"));
    Api::<ReplicaSet>::namespaced(client, "default")
        .create(&common::replica_set("guarded", REPLICAS as i32))
        .await
        .unwrap();
    common::eventually("the leader creates the replicas", || async {
        live_pods(&pods, "guarded").await.len() == REPLICAS
    })
    .await;
    common::eventually("the standby reports it stands by", || async {
        leader_metric(&standby_http).await.as_deref() == Some("0")
    })
    .await;
    assert_eq!(leader_metric(&old_http).await.as_deref(), Some("1"), "the first controller-manager leads");

    // Freeze the leader: the standby takes the Lease once it has gone unrenewed
    // for the lease duration, and acts.
    let frozen_at = Instant::now();
    let mut frozen = Frozen::stop(pid_of(&old));
    common::eventually("the standby holds the lease", || async {
        lease_holder(&leases).await.as_deref() == Some(standby_identity.as_str())
    })
    .await;
    let replaced = delete_one_and_wait_for_replacement(&pods, "guarded").await;
    assert_eq!(leader_metric(&standby_http).await.as_deref(), Some("1"), "the standby leads");

    // Keep the old leader frozen past the node grace period, so the node looks
    // silent to it when it wakes; the standby, which sees the heartbeats, keeps
    // the node Ready.
    tokio::time::sleep((GRACE + Duration::from_secs(2)).saturating_sub(frozen_at.elapsed())).await;
    assert_eq!(ready_status(&nodes.get("n1").await.unwrap()), "True", "the standby keeps n1 Ready");

    // Everything from here on is watched: the old leader must write nothing.
    let revision = pods.list(&ListParams::default()).await.unwrap().resource_version;
    let observed = Arc::new(Mutex::new(Observed::default()));
    let follower = common::AbortOnDrop(tokio::spawn(follow(
        client.clone(),
        "guarded".into(),
        "n1".into(),
        revision,
        observed.clone(),
    )));
    // Let the watches start before the old leader resumes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    frozen.resume();

    common::eventually("the old leader reports it no longer leads", || async {
        leader_metric(&old_http).await.as_deref() == Some("0")
    })
    .await;
    let log = std::fs::read_to_string(old.log_path()).unwrap_or_default();
    assert!(
        log.contains("lost the lease; stopped leading"),
        "the old leader logs that it stopped:\n{}",
        old.log_tail()
    );
    // Both run side by side for longer than the node grace period and several
    // node-monitor and retry periods: time for a stale leader to act.
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    assert!(old.is_running() && standby.is_running(), "both controller-managers are alive");
    assert_eq!(leader_metric(&old_http).await.as_deref(), Some("0"), "the old leader still stands by");
    assert_eq!(lease_holder(&leases).await.as_deref(), Some(standby_identity.as_str()));
    drop(follower);

    {
        let seen = observed.lock().unwrap();
        assert!(seen.created.is_empty(), "pods were created while nothing needed them: {:?}", seen.created);
        assert!(seen.most_live <= REPLICAS, "the set had {} live pods at once (replicas {REPLICAS})", seen.most_live);
        assert!(seen.node_changes.is_empty(), "n1 was written as not Ready or tainted: {:?}", seen.node_changes);
        assert!(
            seen.holders.iter().all(|h| h == &standby_identity),
            "the Lease was written with other holders than the standby: {:?}",
            seen.holders
        );
    }
    assert_eq!(live_pods(&pods, "guarded").await, replaced, "the set's pods are those the standby left");
    assert_eq!(ready_status(&nodes.get("n1").await.unwrap()), "True");

    // The old leader acts again once it wins the Lease again.
    standby.kill();
    common::eventually("the old leader holds the lease again", || async {
        lease_holder(&leases).await.as_deref() == Some(old_identity.as_str())
    })
    .await;
    common::eventually("the old leader reports it leads", || async {
        leader_metric(&old_http).await.as_deref() == Some("1")
    })
    .await;
    delete_one_and_wait_for_replacement(&pods, "guarded").await;
}
