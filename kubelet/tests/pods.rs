//! Pods on a real kubelet: node registration, a pod's address and server, env,
//! command/args and volumes as declared, restarts, probes, init containers, graceful
//! deletion and re-adoption after a kubelet restart. Root only.

mod node;

use std::time::Duration;

use client::Api;
use node::Node;
use proto::coordination::v1::Lease;
use proto::core::v1::{ConfigMap, Node as NodeObject, Pod, Secret};
use serde_json::json;

fn root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

fn running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.clone().unwrap_or_default();
    status.phase == "Running" && status.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True")
}

#[tokio::test]
async fn a_pod_gets_an_address_serves_from_it_and_sees_what_it_declares() {
    if !root() {
        return;
    }
    let node = Node::start(1).await;
    let mut cm = ConfigMap::default();
    cm.metadata = Some(proto::meta::v1::ObjectMeta { name: "settings".into(), namespace: "default".into(), ..Default::default() });
    cm.data.insert("colour".into(), "blue".into());
    cm.data.insert("file.txt".into(), "from a configmap".into());
    Api::<ConfigMap>::namespaced(&node.client, "default").create(&cm).await.unwrap();
    let mut secret = Secret::default();
    secret.metadata = Some(proto::meta::v1::ObjectMeta { name: "creds".into(), namespace: "default".into(), ..Default::default() });
    secret.data.insert("password".into(), b"hunter2".to_vec().into());
    Api::<Secret>::namespaced(&node.client, "default").create(&secret).await.unwrap();
    let host_dir = node.dir.path().join("host-data");
    // The container runs as uid 1000: let it write into the subPath.
    std::fs::create_dir_all(host_dir.join("sub")).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(host_dir.join("sub")).unwrap().permissions(), 0o777);
    std::fs::set_permissions(host_dir.join("sub"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();

    node.create_pod(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "containers": [
                {"name": "web", "image": "rudder/httpd:test"},
                {
                    "name": "check",
                    "image": "rudder/busybox:test",
                    "command": ["sh", "-c"],
                    "args": ["echo \"$GREETING $COLOUR $PASSWORD $MY_NAME $(id -u):$(id -g)\" > /out/env; cat /cm/file.txt > /out/cm; hostname > /out/hostname; echo hi > /host/written; exec sleep 3600"],
                    "workingDir": "/work",
                    "env": [
                        {"name": "GREETING", "value": "hello"},
                        {"name": "COLOUR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "colour"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                    ],
                    "securityContext": {"runAsUser": 1000, "runAsGroup": 2000},
                    "volumeMounts": [
                        {"name": "out", "mountPath": "/out"},
                        {"name": "cm", "mountPath": "/cm", "readOnly": true},
                        {"name": "host", "mountPath": "/host", "subPath": "sub"}
                    ]
                }
            ],
            "volumes": [
                {"name": "out", "emptyDir": {"medium": "Memory"}},
                {"name": "cm", "configMap": {"name": "settings"}},
                {"name": "host", "hostPath": {"path": host_dir.display().to_string(), "type": "DirectoryOrCreate"}}
            ]
        }
    }))
    .await;
    let pod = node.wait_pod("web", "Running and Ready", running_and_ready).await;
    let status = pod.status.clone().unwrap();
    let cidr: kubelet::network::cidr::Ipv4Cidr = node.pod_cidr.parse().unwrap();
    let ip: std::net::Ipv4Addr = status.pod_ip.parse().unwrap();
    assert!(cidr.contains(ip) && ip != cidr.gateway(), "pod IP {ip} outside {cidr}");
    assert_eq!(status.host_ip, "127.0.0.1");
    assert_eq!(status.qos_class, "BestEffort");
    assert!(status.container_statuses.iter().all(|c| c.ready && c.restart_count == 0), "{:?}", status.container_statuses);

    // Its httpd answers from the host, naming the pod as its host.
    let mut body = Err(String::new());
    for _ in 0..50 {
        body = node::http_get(&format!("{ip}:80")).await;
        if body.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = body.unwrap();
    assert!(body.contains("Hello from web"), "{body}");

    // What the other container saw.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let read = |file: &str| node.exec(&pod, "check", &["cat", file]);
    while read("/out/hostname").0 != 0 {
        assert!(std::time::Instant::now() < deadline, "the check container never wrote its files: {:?}", read("/out/hostname"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(read("/out/env").1.trim(), "hello blue hunter2 web 1000:2000");
    assert_eq!(read("/out/cm").1.trim(), "from a configmap");
    assert_eq!(read("/out/hostname").1.trim(), "web");
    assert_eq!(node.exec(&pod, "check", &["pwd"]).1.trim(), "/work");
    let (code, _) = node.exec(&pod, "check", &["sh", "-c", "echo x > /cm/new"]);
    assert_ne!(code, 0, "a readOnly mount accepted a write");
    assert_eq!(std::fs::read_to_string(host_dir.join("sub/written")).unwrap().trim(), "hi");
    let mounts = node.exec(&pod, "check", &["cat", "/proc/mounts"]).1;
    assert!(mounts.lines().any(|l| l.contains(" /out tmpfs ")), "{mounts}");

    // The node registered itself, with a lease and Ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let n = loop {
        let n: NodeObject = Api::<NodeObject>::all(&node.client).get(&node.name).await.unwrap();
        let ready = n.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"));
        if ready || std::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(n.metadata.as_ref().unwrap().labels["kubernetes.io/hostname"], node.name);
    let ns = n.status.clone().unwrap();
    assert!(ns.capacity.contains_key("cpu") && ns.allocatable.contains_key("memory"));
    assert!(ns.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"), "{:?}", ns.conditions);
    let lease = Api::<Lease>::namespaced(&node.client, "kube-node-lease").get(&node.name).await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some(node.name.as_str()));

    // Deleting it honours the grace period and leaves nothing behind.
    let uid = pod.metadata.as_ref().unwrap().uid.clone();
    node.pods()
        .delete("web", proto::meta::v1::DeleteOptions { grace_period_seconds: Some(1), ..Default::default() })
        .await
        .unwrap();
    node.wait_gone("web").await;
    assert!(!node.root.join("runtime").join(&uid).exists(), "runtime state left behind");
    assert!(!node.root.join("pods").join(&uid).exists(), "volumes left behind");
    let cgroup = std::path::Path::new("/sys/fs/cgroup/memory").join(node.cgroup_parent()).join(format!("pod{uid}"));
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup").join(node.cgroup_parent()).join(format!("pod{uid}"));
    assert!(!cgroup.exists() && !cgroup_v2.exists(), "the pod's cgroup is left");
    assert!(node::http_get(&format!("{ip}:80")).await.is_err(), "the pod still answers");
}
