//! The endpoints controller in the real controller-manager: Endpoints follow the
//! ready pods of a Service (named target ports resolved per pod), a Service without
//! a selector keeps the Endpoints its user wrote, and a deleted Service takes its
//! Endpoints with it.

mod common;

use std::time::Duration;

use client::{Api, PatchType};
use proto::core::v1::{
    Container, ContainerPort, EndpointAddress, EndpointSubset, Endpoints, Pod, PodSpec, Service, ServicePort,
    ServiceSpec,
};
use proto::meta::v1::{IntOrString, ObjectMeta};

fn pod(name: &str, port: i32) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "busybox".into(),
                ports: vec![ContainerPort { name: "http".into(), container_port: port, ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Plays the kubelet: gives the pod an IP and a Ready condition.
async fn set_running(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    pods.patch_status(name, PatchType::Merge, &status).await.unwrap();
}

/// (ready IP:port, not-ready IP:port), sorted.
fn summary(endpoints: &Endpoints) -> (Vec<String>, Vec<String>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for subset in &endpoints.subsets {
        for port in &subset.ports {
            ready.extend(subset.addresses.iter().map(|a| format!("{}:{}", a.ip, port.port)));
            not_ready.extend(subset.not_ready_addresses.iter().map(|a| format!("{}:{}", a.ip, port.port)));
        }
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

async fn wait_for(api: &Api<Endpoints>, name: &str, wanted: (Vec<&str>, Vec<&str>)) {
    let wanted = (
        wanted.0.into_iter().map(String::from).collect::<Vec<_>>(),
        wanted.1.into_iter().map(String::from).collect::<Vec<_>>(),
    );
    let mut last = None;
    for _ in 0..200 {
        if let Some(endpoints) = api.get_opt(name).await.unwrap() {
            let got = summary(&endpoints);
            if got == wanted {
                return;
            }
            last = Some(got);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("endpoints {name}: wanted {wanted:?}, last saw {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_ready_pods_of_a_service() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    let services: Api<Service> = Api::namespaced(&cluster.client, "default");
    let endpoints: Api<Endpoints> = Api::namespaced(&cluster.client, "default");

    pods.create(&pod("a", 8080)).await.unwrap();
    pods.create(&pod("b", 9090)).await.unwrap();
    set_running(&pods, "a", "10.244.0.2", true).await;
    set_running(&pods, "b", "10.244.0.3", false).await;
    let service = Service {
        metadata: Some(ObjectMeta { name: "web".into(), ..Default::default() }),
        spec: Some(ServiceSpec {
            selector: [("app".to_string(), "web".to_string())].into(),
            ports: vec![ServicePort { port: 80, target_port: Some(IntOrString::string("http")), ..Default::default() }],
            ..Default::default()
        }),
        status: None,
    };
    services.create(&service).await.unwrap();
    wait_for(&endpoints, "web", (vec!["10.244.0.2:8080"], vec!["10.244.0.3:9090"])).await;

    set_running(&pods, "b", "10.244.0.3", true).await;
    wait_for(&endpoints, "web", (vec!["10.244.0.2:8080", "10.244.0.3:9090"], vec![])).await;

    pods.delete("a", Default::default()).await.unwrap();
    wait_for(&endpoints, "web", (vec!["10.244.0.3:9090"], vec![])).await;

    services.delete("web", Default::default()).await.unwrap();
    let mut gone = false;
    for _ in 0..200 {
        if endpoints.get_opt("web").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "a deleted Service's Endpoints go with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_selector_keeps_the_endpoints_its_user_wrote() {
    let cluster = common::cluster().await;
    let (_cm, _) = common::controller_manager(&cluster, "controller-manager");
    let services: Api<Service> = Api::namespaced(&cluster.client, "default");
    let endpoints: Api<Endpoints> = Api::namespaced(&cluster.client, "default");
    let service = Service {
        metadata: Some(ObjectMeta { name: "db".into(), ..Default::default() }),
        spec: Some(ServiceSpec { ports: vec![ServicePort { port: 5432, ..Default::default() }], ..Default::default() }),
        status: None,
    };
    services.create(&service).await.unwrap();
    let written = Endpoints {
        metadata: Some(ObjectMeta { name: "db".into(), ..Default::default() }),
        subsets: vec![EndpointSubset {
            addresses: vec![EndpointAddress { ip: "192.0.2.10".into(), ..Default::default() }],
            ports: vec![proto::core::v1::EndpointPort { port: 5432, protocol: "TCP".into(), ..Default::default() }],
            ..Default::default()
        }],
    };
    endpoints.create(&written).await.unwrap();
    // Other activity makes the controller sync; the user's Endpoints stay.
    let pods: Api<Pod> = Api::namespaced(&cluster.client, "default");
    pods.create(&pod("x", 80)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = endpoints.get("db").await.unwrap();
    assert_eq!(summary(&kept), (vec!["192.0.2.10:5432".to_string()], vec![]));
}
