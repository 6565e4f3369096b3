//! What a pod's start relies on, on a real kubelet: the Services a container sees
//! in its environment come from the kubelet's Service informer (synced before any pod
//! starts), the pod's network is wired in its own namespace (eth0 up with the
//! default route, lo up), and a container that cannot start says why at once. Root only.

mod node;

use client::Api;
use node::{Node, root, running_and_ready};
use proto::core::v1::{Service, ServicePort, ServiceSpec};
use serde_json::json;

#[tokio::test]
async fn a_pod_sees_the_services_known_before_it_started_and_its_own_network() {
    if !root() {
        return;
    }
    let mut node = Node::start(1).await;
    // Made while no kubelet runs: only the informer's initial list can know it.
    node.stop_kubelet();
    let service = Service {
        metadata: Some(proto::meta::v1::ObjectMeta {
            name: "db-main".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            ports: vec![ServicePort { name: "pg".into(), port: 5432, ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let service = Api::<Service>::namespaced(&node.client, "default").create(&service).await.unwrap();
    let cluster_ip = service.spec.unwrap_or_default().cluster_ip;
    assert!(!cluster_ip.is_empty(), "the apiserver gave the Service no ClusterIP");
    node.start_kubelet();

    node.create_pod(json!({
        "metadata": {"name": "client"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "rudder/busybox:test",
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]
            }]
        }
    }))
    .await;
    let pod = node.wait_pod("client", "Running and Ready", running_and_ready).await;
    let (code, env) = node.exec(&pod, "main", &["env"]);
    assert_eq!(code, 0, "{env}");
    assert!(env.lines().any(|l| l == format!("DB_MAIN_SERVICE_HOST={cluster_ip}")), "{env}");
    assert!(env.lines().any(|l| l == "DB_MAIN_SERVICE_PORT_PG=5432"), "{env}");

    // eth0 was made inside the pod's namespace under its final name and is up; so is lo.
    let (_, flags) = node.exec(&pod, "main", &["cat", "/sys/class/net/eth0/flags", "/sys/class/net/lo/flags"]);
    let flags: Vec<u32> =
        flags.lines().map(|l| u32::from_str_radix(l.trim().trim_start_matches("0x"), 16).unwrap()).collect();
    assert!(flags.len() == 2 && flags.iter().all(|f| f & 1 == 1), "IFF_UP missing: {flags:?}");
    let pod_ip: std::net::Ipv4Addr = pod.status.clone().unwrap_or_default().pod_ip.parse().unwrap();
    let (_, routes) = node.exec(&pod, "main", &["cat", "/proc/net/route"]);
    let default = routes
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .unwrap_or_else(|| panic!("no default route:\n{routes}"));
    assert_eq!(default.split_whitespace().next(), Some("eth0"), "{routes}");
    let (_, addresses) = node.exec(&pod, "main", &["cat", "/proc/net/fib_trie"]);
    assert!(addresses.contains(&pod_ip.to_string()), "{pod_ip} is not on the pod's interfaces:\n{addresses}");
}

#[tokio::test]
async fn a_container_whose_program_is_missing_fails_with_the_reason() {
    if !root() {
        return;
    }
    let node = Node::start(2).await;
    node.create_pod(json!({
        "metadata": {"name": "broken"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main",
                "image": "rudder/busybox:test",
                "imagePullPolicy": "Never",
                "command": ["/no/such/program"]
            }]
        }
    }))
    .await;
    let pod = node.wait_pod("broken", "Failed", |p| p.status.as_ref().is_some_and(|s| s.phase == "Failed")).await;
    let status = pod.status.unwrap_or_default();
    let terminated = status.container_statuses[0].state.clone().unwrap_or_default().terminated.unwrap_or_default();
    assert_eq!(terminated.reason, "StartError", "{terminated:?}");
    assert!(terminated.message.contains("/no/such/program"), "{terminated:?}");
}
