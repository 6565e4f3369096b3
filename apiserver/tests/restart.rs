//! Everything survives an apiserver restart: objects, resourceVersions and
//! allocations. As in Kubernetes, the restarted server's watch window starts empty, so
//! a watch from a revision seen before the restart answers Expired and the client
//! relists; the relist's revision then watches as usual.

mod common;

use client::{Api, ListParams, WatchEvent};
use futures::StreamExt as _;
use proto::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use proto::meta::v1::ObjectMeta;
use proto::{Reason, Resource as _};

fn node_port_service(name: &str, node_port: i32) -> Service {
    Service {
        metadata: Some(ObjectMeta { name: name.to_string(), ..Default::default() }),
        spec: Some(ServiceSpec {
            r#type: "NodePort".to_string(),
            ports: vec![ServicePort { port: 80, node_port, ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_allocations_survive_a_restart_and_old_watches_relist() {
    let mut cluster = common::start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    let services: Api<Service> = Api::namespaced(&cluster.client, "default");
    let cm = configmaps.create(&common::config_map("keep", "k", "v")).await.unwrap();
    let svc = services.create(&node_port_service("web", 0)).await.unwrap();
    let spec = svc.spec.clone().unwrap();
    let (ip, port) = (spec.cluster_ip.clone(), spec.ports[0].node_port);
    assert!(!ip.is_empty() && port >= 30000);
    let seen = cm.metadata().resource_version.clone();

    cluster.apiserver.restart().await.unwrap();

    let after = configmaps.get("keep").await.unwrap();
    assert_eq!(after, cm, "the object and its resourceVersion are unchanged");
    // The allocations are still held: asking for the same port is refused...
    let error = services.create(&node_port_service("other", port)).await.unwrap_err();
    assert!(error.is(Reason::Invalid) && error.message().contains("already allocated"), "{error}");
    // ...and a watch from before the restart is told to relist.
    let error = match configmaps.watch(&ListParams::default(), &seen).await {
        Err(error) => error,
        Ok(mut watch) => watch.next().await.expect("an answer").expect_err("Expired"),
    };
    assert!(error.is(Reason::Expired), "{error}");
    let list = configmaps.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items, vec![cm.clone()]);
    let mut watch = configmaps.watch(&ListParams::default(), &list.resource_version).await.unwrap();
    let mut changed = after.clone();
    changed.data.insert("k".to_string(), "w".to_string());
    configmaps.update(&changed).await.unwrap();
    loop {
        match watch.next().await.unwrap().unwrap() {
            WatchEvent::Modified(cm) => {
                assert_eq!(cm.data["k"], "w");
                break;
            }
            WatchEvent::Bookmark(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Deleting frees the port for someone else.
    services.delete("web", Default::default()).await.unwrap();
    services.create(&node_port_service("other", port)).await.expect("the freed port can be taken");
}
