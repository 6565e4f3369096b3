//! With a three-member etcd cluster, the apiserver keeps serving reads, writes and
//! watches while one member is killed.

use std::time::Duration;

use client::{Api, Client, ListParams, WatchEvent};
use futures::StreamExt as _;
use proto::Resource as _;
use proto::core::v1::ConfigMap;
use proto::meta::v1::ObjectMeta;

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta { name: name.to_string(), ..Default::default() }),
        data: [("v".to_string(), value.to_string())].into_iter().collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_apiserver_rides_out_the_loss_of_one_etcd_member() {
    let mut etcd = testkit::EtcdCluster::start(3).await.expect("a 3-member etcd cluster");
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.expect("the apiserver starts");
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    let api: Api<ConfigMap> = Api::namespaced(&client, "default");

    let first = api.create(&config_map("before", "0")).await.unwrap();
    let mut watch = api.watch(&ListParams::default(), &first.metadata().resource_version).await.unwrap();

    // Kill members in turn (one at a time, restarting each), writing throughout.
    let mut written = Vec::new();
    for victim in 0..3 {
        etcd.kill(victim);
        for i in 0..20 {
            let name = format!("m{victim}-{i}");
            let created = tokio::time::timeout(Duration::from_secs(30), api.create(&config_map(&name, "x")))
                .await
                .expect("a write completes within 30s")
                .unwrap_or_else(|e| panic!("write {name} with member {victim} down: {e}"));
            written.push(created.metadata().name.clone());
        }
        let listed = api.list(&ListParams::default()).await.expect("a consistent list with a member down");
        assert_eq!(listed.items.len(), written.len() + 1);
        etcd.restart(victim).await.expect("the member rejoins");
    }

    // The watch saw every write, in order, across all the failures.
    for expected in &written {
        let event = loop {
            let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .expect("an event within 30s")
                .expect("the watch stays open")
                .expect("no watch error");
            if !matches!(event, WatchEvent::Bookmark(_)) {
                break event;
            }
        };
        match event {
            WatchEvent::Added(cm) => assert_eq!(&cm.metadata().name, expected),
            other => panic!("expected ADDED {expected}, got {other:?}"),
        }
    }
}
