//! Writes racing each other: compare-and-swap loses no update, and concurrent
//! allocations never hand out a value twice.

mod common;

use std::collections::HashSet;

use client::Api;
use proto::Reason;
use proto::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use proto::meta::v1::ObjectMeta;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_read_modify_write_clients_lose_no_increment() {
    let cluster = common::start().await;
    let api: Api<ConfigMap> = Api::namespaced(&cluster.client, "default");
    api.create(&common::config_map("counter", "count", "0")).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            loop {
                let mut current = api.get("counter").await.unwrap();
                let count: i64 = current.data["count"].parse().unwrap();
                current.data.insert("count".to_string(), (count + 1).to_string());
                match api.update(&current).await {
                    Ok(_) => return conflicts,
                    Err(e) if e.is(Reason::Conflict) => conflicts += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let last = api.get("counter").await.unwrap();
    assert_eq!(last.data["count"], "20", "every increment must land exactly once");
    assert!(conflicts > 0, "20 racing writers must have met at least one Conflict");
}

fn service(name: &str, cluster_ip: &str) -> Service {
    Service {
        metadata: Some(ObjectMeta { name: name.to_string(), ..Default::default() }),
        spec: Some(ServiceSpec {
            cluster_ip: cluster_ip.to_string(),
            ports: vec![ServicePort { port: 80, ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_services_get_distinct_cluster_ips() {
    // A /24 makes collisions between concurrent pickers likely, so the transaction's
    // absence check has real work to do.
    let cluster = common::start_with(&["--service-cluster-ip-range=10.97.0.0/24"]).await;
    let api: Api<Service> = Api::namespaced(&cluster.client, "default");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move { api.create(&service(&format!("svc-{i}"), "")).await }));
    }
    let mut ips = HashSet::new();
    for task in tasks {
        let created = task.await.unwrap().expect("the create succeeds");
        let ip = created.spec.unwrap().cluster_ip;
        assert!(ip.starts_with("10.97.0."), "{ip} is outside the configured range");
        assert!(ips.insert(ip.clone()), "{ip} was handed out twice");
    }
    assert_eq!(ips.len(), 100);

    // An explicit address already held is refused, naming it.
    let taken = ips.iter().next().unwrap().clone();
    let error = api.create(&service("dup", &taken)).await.unwrap_err();
    assert!(error.is(Reason::Invalid), "{error}");
    assert!(error.message().contains("already allocated"), "{error}");

    // An address outside the range is refused, naming the range.
    let error = api.create(&service("outside", "192.168.192.72")).await.unwrap_err();
    assert!(error.is(Reason::Invalid), "{error}");
    assert!(error.message().contains("10.97.0.0/24"), "{error}");

    // Deleting a service frees its address for an explicit request.
    let victim = api.get("svc-0").await.unwrap();
    let freed = victim.spec.unwrap().cluster_ip;
    api.delete("svc-0", Default::default()).await.unwrap();
    let reused = api.create(&service("reuse", &freed)).await.expect("a freed address can be requested");
    assert_eq!(reused.spec.unwrap().cluster_ip, freed);
}
