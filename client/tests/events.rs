//! The Event recorder against a real apiserver: repeats aggregate into one Event.

use std::time::Duration;

use client::runtime::EventRecorder;
use client::{Api, Client, ListParams};
use proto::core::v1::{ConfigMap, Event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_events_are_counted_on_one_event() {
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(&client, "default");
    let mut cm = ConfigMap::default();
    cm.metadata.get_or_insert_with(Default::default).name = "subject".to_string();
    let cm = configmaps.create(&cm).await.unwrap();

    let recorder = EventRecorder::new(&client, "test-controller", "host-1");
    for _ in 0..3 {
        recorder.warning(&cm, "Trouble", "something failed");
    }
    recorder.normal(&cm, "Fine", "all good");

    let events: Api<Event> = Api::namespaced(&client, "default");
    let mut found = Vec::new();
    for _ in 0..100 {
        found = events.list(&ListParams::fields("involvedObject.name=subject")).await.unwrap().items;
        let counted: i32 = found.iter().map(|e| e.count).sum();
        if counted == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found.sort_by(|a, b| a.reason.cmp(&b.reason));
    let summary: Vec<(&str, &str, i32)> =
        found.iter().map(|e| (e.reason.as_str(), e.r#type.as_str(), e.count)).collect();
    assert_eq!(summary, [("Fine", "Normal", 1), ("Trouble", "Warning", 3)]);
    let trouble = &found[1];
    let involved = trouble.involved_object.as_ref().unwrap();
    assert_eq!(
        (involved.kind.as_str(), involved.uid.as_str()),
        ("ConfigMap", cm.metadata.as_ref().unwrap().uid.as_str())
    );
    assert_eq!(trouble.source.as_ref().unwrap().component, "test-controller");
    assert!(trouble.last_timestamp >= trouble.first_timestamp);
}
