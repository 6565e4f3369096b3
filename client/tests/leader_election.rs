//! Leader election against a real apiserver: one leader at a time; a standby takes
//! over after the leader dies (within the lease duration) or at once when it
//! releases; a leader whose Lease is taken stops leading.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use client::runtime::{LeaderElectionConfig, LeaderElector};
use client::{Api, Client};
use proto::coordination::v1::Lease;
use proto::core::v1::ConfigMap;
use tokio::sync::{mpsc, oneshot};

const LEASE: Duration = Duration::from_secs(2);

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: LEASE,
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaderElectionConfig::new("kube-system", "test-lease", identity)
    }
}

/// A candidate whose work reports when it starts and counts how many lead at once.
struct Candidate {
    task: tokio::task::JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

fn candidate(
    client: &Client,
    identity: &'static str,
    started: mpsc::UnboundedSender<&'static str>,
    leaders: Arc<AtomicUsize>,
) -> Candidate {
    let (stop, stopped) = oneshot::channel::<()>();
    let elector = LeaderElector::new(client, config(identity));
    let task = tokio::spawn(elector.run(
        async {
            let _ = stopped.await;
        },
        move |mut leadership| {
            let (started, leaders) = (started.clone(), leaders.clone());
            async move {
                let now = leaders.fetch_add(1, Ordering::SeqCst) + 1;
                // Work is dropped, not finished, when leadership ends.
                let _leading = Leading(leaders);
                assert_eq!(now, 1, "{identity} leads while another candidate does");
                let _ = started.send(identity);
                leadership.lost().await;
            }
        },
    ));
    Candidate { task, stop: Some(stop) }
}

/// Counts a leader for as long as its work exists.
struct Leading(Arc<AtomicUsize>);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn next_leader(started: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(Duration::from_secs(20), started.recv()).await.expect("a leader within 20 s").unwrap()
}

async fn cluster() -> (testkit::Etcd, testkit::ApiServer, Client) {
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    (etcd, apiserver, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_dies_and_at_once_when_it_releases() {
    let (_etcd, _apiserver, client) = cluster().await;
    let leaders = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let a = candidate(&client, "a", started_tx.clone(), leaders.clone());
    let first = next_leader(&mut started).await;
    assert_eq!(first, "a");
    let mut b = candidate(&client, "b", started_tx.clone(), leaders.clone());
    tokio::time::sleep(LEASE * 2).await;
    assert!(started.try_recv().is_err(), "b stays a standby while a renews");

    // a dies without releasing (its process is gone: nothing runs its cleanup).
    a.task.abort();
    let _ = a.task.await;
    let died = Instant::now();
    assert_eq!(next_leader(&mut started).await, "b");
    let takeover = died.elapsed();
    assert!(takeover < LEASE * 3, "b took over after {takeover:?}, lease {LEASE:?}");

    // A new candidate; b shuts down cleanly and releases, so c leads at once.
    let _c = candidate(&client, "c", started_tx, leaders.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let released = Instant::now();
    let _ = b.stop.take().unwrap().send(());
    b.task.await.unwrap();
    assert_eq!(next_leader(&mut started).await, "c");
    assert!(released.elapsed() < LEASE, "a released lease is taken without waiting it out: {:?}", released.elapsed());
    let lease = Api::<Lease>::namespaced(&client, "kube-system").get("test-lease").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("c"));
    assert_eq!(spec.lease_transitions, Some(2), "a -> b -> c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_at_once() {
    let (_etcd, _apiserver, client) = cluster().await;
    let elector = LeaderElector::new(&client, config("a"));
    let (lost_tx, mut lost_rx) = mpsc::unbounded_channel();
    let (led_tx, mut led_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(elector.run(std::future::pending(), move |mut leadership| {
        let (lost_tx, led_tx) = (lost_tx.clone(), led_tx.clone());
        async move {
            let _ = led_tx.send(());
            // A task the work spawned: it outlives the dropped work future and
            // must learn of the loss through its Leadership.
            tokio::spawn(async move {
                leadership.lost().await;
                let _ = lost_tx.send(leadership.is_leading());
            });
            std::future::pending::<()>().await;
        }
    }));
    tokio::time::timeout(Duration::from_secs(20), led_rx.recv()).await.unwrap();

    // Someone else writes the Lease (as an operator forcing a handover would).
    let api: Api<Lease> = Api::namespaced(&client, "kube-system");
    let mut lease = api.get("test-lease").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".to_string());
    spec.lease_duration_seconds = Some(3600);
    api.update(&lease).await.unwrap();

    let still_leading =
        tokio::time::timeout(Duration::from_secs(10), lost_rx.recv()).await.expect("leadership is lost").unwrap();
    assert!(!still_leading);
    tokio::time::sleep(LEASE).await;
    assert!(led_rx.try_recv().is_err(), "it does not lead again while the intruder holds a valid lease");
    task.abort();
}

/// A leader frozen past its renew deadline (here: its only thread blocked, as
/// SIGSTOP or a long pause would) cannot write on waking, even before its elector
/// has run again to notice; its fenced client refuses, the unfenced one still works.
#[tokio::test(flavor = "current_thread")]
async fn a_leader_woken_after_its_renew_deadline_cannot_write() {
    let (_etcd, _apiserver, client) = cluster().await;
    let elector = LeaderElector::new(&client, config("a"));
    let fenced = client.fenced(elector.fence());
    let api: Api<ConfigMap> = Api::namespaced(&fenced, "default");
    assert!(api.create(&config_map("before")).await.is_err(), "no writes before leading");
    let (done_tx, done_rx) = oneshot::channel();
    let done_tx = Arc::new(std::sync::Mutex::new(Some(done_tx)));
    let task = tokio::spawn(elector.run(std::future::pending(), move |_leadership| {
        let (api, done_tx) = (api.clone(), done_tx.clone());
        async move {
            api.create(&config_map("leading")).await.expect("the leader writes");
            // Frozen: no task of this runtime runs, the elector does not renew.
            std::thread::sleep(Duration::from_millis(1500 + 500));
            let woken = api.create(&config_map("woken")).await;
            if let Some(tx) = done_tx.lock().unwrap().take() {
                let _ = tx.send(woken.map(|_| ()).map_err(|e| e.to_string()));
            }
            std::future::pending::<()>().await;
        }
    }));
    let woken = tokio::time::timeout(Duration::from_secs(30), done_rx).await.expect("the leader ran").unwrap();
    let message = woken.expect_err("a write after the renew deadline is refused");
    assert!(message.contains("renew deadline"), "{message}");
    task.abort();
    let plain: Api<ConfigMap> = Api::namespaced(&client, "default");
    assert!(plain.get_opt("leading").await.unwrap().is_some());
    assert!(plain.get_opt("woken").await.unwrap().is_none(), "the refused write never reached the apiserver");
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(proto::meta::v1::ObjectMeta { name: name.into(), ..Default::default() }),
        ..Default::default()
    }
}
