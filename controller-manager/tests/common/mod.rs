//! What every controller-manager test starts: a real etcd, the real apiserver and
//! the real controller-manager binary, with short leader-election timings.

#![allow(dead_code)]

use client::Client;

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
    .map(|s| s.to_string())
    .collect();
    let program = testkit::binary_path("controller-manager").unwrap();
    let log = cluster.dir.path().join(format!("{name}.log"));
    (testkit::Daemon::spawn(name, &program, &args, &log).unwrap(), http)
}
