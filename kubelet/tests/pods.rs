//! Pods on a real kubelet: node registration, a pod's address and server, env,
//! command/args and volumes as declared, restarts, probes, init containers, graceful
//! deletion and re-adoption after a kubelet restart. Root only.

mod node;

use std::time::Duration;

use client::Api;
use node::{Node, root, running_and_ready};
use proto::coordination::v1::Lease;
use proto::core::v1::{ConfigMap, Node as NodeObject, Pod, Secret};
use serde_json::json;

#[tokio::test]
async fn a_pod_gets_an_address_serves_from_it_and_sees_what_it_declares() {
    if !root() {
        return;
    }
    let node = Node::start(1).await;
    let cm = ConfigMap {
        metadata: Some(proto::meta::v1::ObjectMeta {
            name: "settings".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        data: [("colour", "blue"), ("file.txt", "from a configmap")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(&node.client, "default").create(&cm).await.unwrap();
    let secret = Secret {
        metadata: Some(proto::meta::v1::ObjectMeta {
            name: "creds".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        data: [("password".to_string(), b"hunter2".to_vec().into())].into_iter().collect(),
        ..Default::default()
    };
    Api::<Secret>::namespaced(&node.client, "default").create(&secret).await.unwrap();
    let host_dir = node.dir.path().join("host-data");
    // The container runs as uid 1000: let it write into the subPath.
    std::fs::create_dir_all(host_dir.join("sub")).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(host_dir.join("sub")).unwrap().permissions(),
        0o777,
    );
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
                        {"name": "host", "mountPath": "/host", "subPath": "sub"},
                        {"name": "info", "mountPath": "/info"},
                        {"name": "all", "mountPath": "/all"}
                    ]
                }
            ],
            "volumes": [
                {"name": "out", "emptyDir": {"medium": "Memory"}},
                {"name": "cm", "configMap": {"name": "settings"}},
                {"name": "host", "hostPath": {"path": host_dir.display().to_string(), "type": "DirectoryOrCreate"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "all", "projected": {"sources": [
                    {"configMap": {"name": "settings", "items": [{"key": "colour", "path": "colour"}]}},
                    {"secret": {"name": "creds"}},
                    {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}
                ]}}
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
    assert!(
        status.container_statuses.iter().all(|c| c.ready && c.restart_count == 0),
        "{:?}",
        status.container_statuses
    );

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
        assert!(
            std::time::Instant::now() < deadline,
            "the check container never wrote its files: {:?}",
            read("/out/hostname")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(read("/out/env").1.trim(), "hello blue hunter2 web 1000:2000");
    assert_eq!(read("/out/cm").1.trim(), "from a configmap");
    assert_eq!(read("/out/hostname").1.trim(), "web");
    assert_eq!(read("/info/labels").1, "app=\"web\"");
    let projected =
        node.exec(&pod, "check", &["sh", "-c", "cat /all/colour; echo; cat /all/password; echo; cat /all/name"]);
    assert_eq!(projected.1, "blue\nhunter2\nweb", "{projected:?}");
    assert_eq!(node.exec(&pod, "check", &["pwd"]).1.trim(), "/work");
    let (code, _) = node.exec(&pod, "check", &["sh", "-c", "echo x > /cm/new"]);
    assert_ne!(code, 0, "a readOnly mount accepted a write");
    assert_eq!(std::fs::read_to_string(host_dir.join("sub/written")).unwrap().trim(), "hi");
    let mounts = node.exec(&pod, "check", &["cat", "/proc/mounts"]).1;
    assert!(mounts.lines().any(|l| l.contains(" /out tmpfs ")), "{mounts}");
    // The container's program and an exec'd one start with the standard signals at their
    // defaults and none blocked, as runc starts them (the helpers themselves ignore
    // SIGPIPE). glibc keeps signals 32 and 33 to itself; they are left as inherited.
    for status in [read("/proc/1/status").1, read("/proc/self/status").1] {
        let mask = |field: &str| {
            let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
            u64::from_str_radix(line.trim_start_matches(field).trim(), 16).unwrap()
        };
        assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "ignored signals: {status}");
        assert_eq!(mask("SigBlk:"), 0, "blocked signals: {status}");
    }

    // The node registered itself, with a lease and Ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let n = loop {
        let n: NodeObject = Api::<NodeObject>::all(&node.client).get(&node.name).await.unwrap();
        let ready =
            n.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"));
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
    let logs = node.root.join("logs").join(format!("default_web_{uid}"));
    assert!(logs.join("web").exists(), "the running pod's logs are at {}", logs.display());
    node.pods()
        .delete("web", proto::meta::v1::DeleteOptions { grace_period_seconds: Some(1), ..Default::default() })
        .await
        .unwrap();
    node.wait_gone("web").await;
    assert!(!node.root.join("runtime").join(&uid).exists(), "runtime state left behind");
    assert!(!node.root.join("pods").join(&uid).exists(), "volumes left behind");
    assert!(!logs.exists(), "logs left behind at {}", logs.display());
    let cgroup = std::path::Path::new("/sys/fs/cgroup/memory").join(node.cgroup_parent()).join(format!("pod{uid}"));
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup").join(node.cgroup_parent()).join(format!("pod{uid}"));
    assert!(!cgroup.exists() && !cgroup_v2.exists(), "the pod's cgroup is left");
    assert!(node::http_get(&format!("{ip}:80")).await.is_err(), "the pod still answers");
}

fn container(pod: &Pod, name: &str) -> proto::core::v1::ContainerStatus {
    let status = pod.status.clone().unwrap_or_default();
    status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .find(|c| c.name == name)
        .cloned()
        .unwrap_or_default()
}

fn last_reason(c: &proto::core::v1::ContainerStatus) -> String {
    c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.reason.clone()).unwrap_or_default()
}

fn waiting_reason(c: &proto::core::v1::ContainerStatus) -> String {
    c.state.as_ref().and_then(|s| s.waiting.as_ref()).map(|w| w.reason.clone()).unwrap_or_default()
}

#[tokio::test]
async fn init_containers_oom_kills_liveness_and_readiness_drive_restarts_and_ready() {
    if !root() {
        return;
    }
    let node = Node::start(2).await;
    node.create_pod(json!({
        "metadata": {"name": "busy"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "initContainers": [
                {"name": "init1", "image": "rudder/busybox:test", "command": ["sh", "-c", "echo one >> /w/log"],
                 "volumeMounts": [{"name": "w", "mountPath": "/w"}]},
                {"name": "init2", "image": "rudder/busybox:test", "command": ["sh", "-c", "echo two >> /w/log"],
                 "volumeMounts": [{"name": "w", "mountPath": "/w"}]}
            ],
            "containers": [
                {"name": "hog", "image": "rudder/busybox:test",
                 "command": ["sh", "-c", "sleep 1; head -c 300m /dev/zero | tail"],
                 "resources": {"limits": {"memory": "32Mi"}}},
                {"name": "live", "image": "rudder/busybox:test",
                 "command": ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600"],
                 "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1}},
                {"name": "web", "image": "rudder/httpd:test",
                 "readinessProbe": {"httpGet": {"path": "/ready.html", "port": 80}, "periodSeconds": 1},
                 "volumeMounts": [{"name": "w", "mountPath": "/w"}]}
            ],
            "volumes": [{"name": "w", "emptyDir": {}}]
        }
    }))
    .await;
    // Init containers ran first, in order, and completed.
    let pod = node
        .wait_pod("busy", "its web container running", |p| {
            container(p, "web").state.as_ref().is_some_and(|s| s.running.is_some())
        })
        .await;
    for name in ["init1", "init2"] {
        let c = container(&pod, name);
        let t = c.state.and_then(|s| s.terminated).unwrap_or_default();
        assert_eq!((t.exit_code, t.reason.as_str()), (0, "Completed"), "{name}");
    }
    assert_eq!(node.exec(&pod, "web", &["cat", "/w/log"]).1, "one\ntwo\n");

    // Readiness follows the httpGet probe.
    assert!(!container(&pod, "web").ready);
    let (code, out) = node.exec(&pod, "web", &["sh", "-c", "echo ok > /tmp/www/ready.html"]);
    assert_eq!(code, 0, "{out}");
    node.wait_pod("busy", "web ready", |p| container(p, "web").ready).await;
    node.exec(&pod, "web", &["rm", "/tmp/www/ready.html"]);
    node.wait_pod("busy", "web unready again", |p| !container(p, "web").ready).await;

    // The memory hog is OOMKilled, restarted, and then backs off.
    let pod = node
        .wait_pod("busy", "hog OOMKilled and restarted", |p| {
            let c = container(p, "hog");
            c.restart_count >= 1 && last_reason(&c) == "OOMKilled"
        })
        .await;
    let c = container(&pod, "hog");
    assert!(!c.last_state.unwrap().terminated.unwrap().container_id.is_empty());
    node.wait_pod("busy", "hog in CrashLoopBackOff", |p| waiting_reason(&container(p, "hog")) == "CrashLoopBackOff")
        .await;

    // The failing liveness probe restarts its container.
    node.wait_pod("busy", "live restarted by its liveness probe", |p| container(p, "live").restart_count >= 1).await;
    let pod = node.pods().get("busy").await.unwrap();
    assert_eq!(pod.status.unwrap().phase, "Running");
}

#[tokio::test]
async fn a_restarted_kubelet_adopts_its_running_pod() {
    if !root() {
        return;
    }
    let mut node = Node::start(3).await;
    node.create_pod(json!({
        "metadata": {"name": "steady"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "rudder/httpd:test"}]}
    }))
    .await;
    let before = node.wait_pod("steady", "Running and Ready", running_and_ready).await;
    let before_status = container(&before, "main");
    let ip = before.status.clone().unwrap().pod_ip;
    node::wait_http(&format!("{ip}:80")).await;

    node.stop_kubelet();
    assert!(node::http_get(&format!("{ip}:80")).await.is_ok(), "the pod stopped with the kubelet");
    node.start_kubelet();
    // The new kubelet posts its node status; give it time to sync the pod too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = node.wait_pod("steady", "Running and Ready", running_and_ready).await;
    let after_status = container(&after, "main");
    assert_eq!(after_status.container_id, before_status.container_id, "the container was started again");
    assert_eq!(after_status.restart_count, 0);
    assert_eq!(after.status.unwrap().pod_ip, ip);
    let runtime = node.root.join("runtime").join(&after.metadata.as_ref().unwrap().uid).join("containers");
    assert_eq!(std::fs::read_dir(&runtime).unwrap().count(), 1, "a second container was made");
    assert!(node::http_get(&format!("{ip}:80")).await.unwrap().contains("Hello from steady"));

    node.pods().delete("steady", Default::default()).await.unwrap();
    node.wait_gone("steady").await;
}

#[tokio::test]
async fn a_host_network_pod_with_a_claim_and_a_secret_runs_to_completion() {
    if !root() {
        return;
    }
    let node = Node::start(4).await;
    let pv_dir = node.dir.path().join("pv");
    std::fs::create_dir_all(&pv_dir).unwrap();
    let pv: proto::core::v1::PersistentVolume = proto::codec::decode(&json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": pv_dir.display().to_string()}}
    }))
    .unwrap();
    Api::<proto::core::v1::PersistentVolume>::all(&node.client).create(&pv).await.unwrap();
    let pvc: proto::core::v1::PersistentVolumeClaim = proto::codec::decode(&json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "claim", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1",
                 "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    Api::<proto::core::v1::PersistentVolumeClaim>::namespaced(&node.client, "default").create(&pvc).await.unwrap();
    let secret: Secret = proto::codec::decode(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "stringData": {"password": "hunter2", "other": "x"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(&node.client, "default").create(&secret).await.unwrap();

    node.create_pod(json!({
        "metadata": {"name": "job"},
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "rudder/busybox:test",
                "command": ["sh", "-c", "cat /secret/pw > /data/pw && stat -c %a /secret/pw > /data/mode && ls /secret > /data/keys && hostname > /data/hostname && ls /sys/class/net > /data/net"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "secret", "mountPath": "/secret"}]
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
                {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 256, "items": [{"key": "password", "path": "pw"}]}}
            ]
        }
    }))
    .await;
    let pod =
        node.wait_pod("job", "phase Succeeded", |p| p.status.as_ref().is_some_and(|s| s.phase == "Succeeded")).await;
    let status = pod.status.unwrap();
    assert_eq!(status.pod_ip, "127.0.0.1", "a hostNetwork pod has the node's address");
    let t = container_terminated(&status);
    assert_eq!((t.exit_code, t.reason.as_str()), (0, "Completed"));
    let read = |f: &str| std::fs::read_to_string(pv_dir.join(f)).unwrap_or_default().trim().to_string();
    assert_eq!(read("pw"), "hunter2");
    assert_eq!(read("mode"), "400");
    assert_eq!(read("keys"), "pw");
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    assert_eq!(read("hostname"), host);
    assert!(read("net").lines().any(|l| l == node.bridge()), "the host's interfaces are not visible: {}", read("net"));

    node.pods().delete("job", Default::default()).await.unwrap();
    node.wait_gone("job").await;
    assert!(pv_dir.join("pw").exists(), "the claim's data went with the pod");
}

fn container_terminated(status: &proto::core::v1::PodStatus) -> proto::core::v1::ContainerStateTerminated {
    status.container_statuses[0].state.clone().and_then(|s| s.terminated).unwrap_or_default()
}

#[tokio::test]
async fn security_contexts_bound_capabilities_privilege_escalation_and_the_root_filesystem() {
    if !root() {
        return;
    }
    let node = Node::start(5).await;
    node.create_pod(json!({
        "metadata": {"name": "locked"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {"name": "plain", "image": "rudder/busybox:test", "command": ["sleep", "3600"]},
                {
                    "name": "tight",
                    "image": "rudder/busybox:test",
                    "command": ["sleep", "3600"],
                    "securityContext": {
                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                        "allowPrivilegeEscalation": false,
                        "readOnlyRootFilesystem": true
                    },
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]
                },
                {
                    "name": "admin",
                    "image": "rudder/busybox:test",
                    "command": ["sleep", "3600"],
                    "securityContext": {"privileged": true}
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}]
        }
    }))
    .await;
    let pod = node.wait_pod("locked", "Running and Ready", running_and_ready).await;
    let status_line = |container: &str, pid: &str, field: &str| {
        let (code, out) = node.exec(&pod, container, &["grep", field, &format!("/proc/{pid}/status")]);
        assert_eq!(code, 0, "{container}: {out}");
        out.split_whitespace().nth(1).unwrap_or_default().to_string()
    };
    // containerd's default set, for the container's process and for an exec'd one.
    assert_eq!(status_line("plain", "1", "CapBnd"), "00000000a80425fb");
    assert_eq!(status_line("plain", "self", "CapEff"), "00000000a80425fb");
    assert_eq!(status_line("plain", "1", "NoNewPrivs"), "0");
    // The pod's RuntimeDefault seccomp profile filters every unprivileged container.
    assert_eq!(status_line("plain", "1", "Seccomp:"), "2");
    assert_eq!(status_line("tight", "self", "Seccomp:"), "2");
    assert_eq!(status_line("admin", "1", "Seccomp:"), "0");
    let (code, _) = node.exec(&pod, "plain", &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert_ne!(code, 0, "a container without SYS_ADMIN mounted a filesystem");
    assert_eq!(node.exec(&pod, "plain", &["touch", "/written"]).0, 0);

    assert_eq!(status_line("tight", "1", "CapBnd"), "0000000000000400");
    assert_eq!(status_line("tight", "self", "CapBnd"), "0000000000000400");
    assert_eq!(status_line("tight", "1", "NoNewPrivs"), "1");
    assert_eq!(status_line("tight", "self", "NoNewPrivs"), "1");
    let (code, out) = node.exec(&pod, "tight", &["touch", "/written"]);
    assert_ne!(code, 0, "the read-only root took a write: {out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(node.exec(&pod, "tight", &["touch", "/scratch/written"]).0, 0, "its volume stays writable");

    let host_bounding = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .unwrap();
    assert_eq!(status_line("admin", "1", "CapBnd"), host_bounding, "privileged keeps every capability");

    // A contradiction is refused before anything starts, with the reason.
    node.create_pod(json!({
        "metadata": {"name": "contradiction"},
        "spec": {"containers": [{
            "name": "main", "image": "rudder/busybox:test", "command": ["sleep", "3600"],
            "securityContext": {"privileged": true, "allowPrivilegeEscalation": false}
        }]}
    }))
    .await;
    let refused = node
        .wait_pod("contradiction", "CreateContainerConfigError", |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.container_statuses.iter().any(|c| waiting_reason(c) == "CreateContainerConfigError"))
        })
        .await;
    let message = refused.status.unwrap().container_statuses[0].state.clone().unwrap().waiting.unwrap().message;
    assert!(message.contains("allowPrivilegeEscalation cannot be false when privileged is true"), "{message}");
    for name in ["locked", "contradiction"] {
        node.pods().delete(name, Default::default()).await.unwrap();
        node.wait_gone(name).await;
    }
}

#[tokio::test]
async fn host_pid_and_host_ipc_pods_share_the_hosts_namespaces_and_leave_nothing_running() {
    if !root() {
        return;
    }
    let node = Node::start(6).await;
    // The host's PID namespace: the background sleep outlives the shell, and the
    // kubelet (not a namespace's end) must kill it once the shell exits.
    node.create_pod(json!({
        "metadata": {"name": "host-ns"},
        "spec": {
            "hostPID": true,
            "hostIPC": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": "rudder/busybox:test", "command": ["sleep", "3600"]},
                {"name": "forker", "image": "rudder/busybox:test", "command": ["sh", "-c", "sleep 3601 & sleep 2"]}
            ]
        }
    }))
    .await;
    node.create_pod(json!({
        "metadata": {"name": "own-ns"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "rudder/busybox:test", "command": ["sleep", "3600"]}]
        }
    }))
    .await;
    let host = node
        .wait_pod("host-ns", "main running", |p| {
            p.status.as_ref().is_some_and(|s| {
                s.container_statuses
                    .iter()
                    .any(|c| c.name == "main" && c.state.as_ref().is_some_and(|st| st.running.is_some()))
            })
        })
        .await;
    let own = node.wait_pod("own-ns", "running and ready", running_and_ready).await;
    let namespace = |kind: &str| std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap().display().to_string();
    for (kind, shared) in [("pid", true), ("ipc", true), ("net", false), ("uts", false)] {
        let (code, text) = node.exec(&host, "main", &["readlink", &format!("/proc/self/ns/{kind}")]);
        assert_eq!(code, 0, "{text}");
        assert_eq!(text.trim() == namespace(kind), shared, "hostPID/hostIPC pod, {kind}: {text}");
        let (_, text) = node.exec(&own, "main", &["readlink", &format!("/proc/self/ns/{kind}")]);
        assert_ne!(text.trim(), namespace(kind), "an ordinary pod has its own {kind} namespace");
    }
    let (_, processes) = node.exec(&host, "main", &["ps", "-o", "pid,comm"]);
    assert!(processes.lines().count() > 10, "the host's processes are visible: {processes}");

    // Once the forker's shell has exited, its background sleep is killed with it.
    node.wait_pod("host-ns", "forker restarted", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.container_statuses.iter().any(|c| c.name == "forker" && c.restart_count >= 1))
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stray = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| cmdline == b"sleep\x003601\x00")
        })
    };
    // A new attempt may have started its own sleep 3601: wait for a moment with none.
    while stray() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!stray(), "the forker's background sleep survived its container");
    for name in ["host-ns", "own-ns"] {
        node.pods().delete(name, Default::default()).await.unwrap();
        node.wait_gone(name).await;
    }
}

#[tokio::test]
async fn share_process_namespace_gives_the_pods_containers_one_pid_namespace_whose_init_reaps_orphans() {
    if !root() {
        return;
    }
    let node = Node::start(7).await;
    node.create_pod(json!({
        "metadata": {"name": "shared"},
        "spec": {
            "shareProcessNamespace": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "a", "image": "rudder/busybox:test", "command": ["sleep", "3600"]},
                {"name": "b", "image": "rudder/busybox:test", "command": ["sleep", "3601"]},
                // The subshell exits at once: its sleep is orphaned to the namespace's init.
                {"name": "orphans", "image": "rudder/busybox:test", "command": ["sh", "-c", "(sleep 1 &); sleep 3602"]}
            ]
        }
    }))
    .await;
    let pod = node.wait_pod("shared", "running and ready", running_and_ready).await;
    let uid = pod.metadata.as_ref().unwrap().uid.clone();
    let (_, a_ns) = node.exec(&pod, "a", &["readlink", "/proc/self/ns/pid"]);
    let (_, b_ns) = node.exec(&pod, "b", &["readlink", "/proc/self/ns/pid"]);
    assert_eq!(a_ns, b_ns, "one PID namespace for the pod");
    let host_ns = std::fs::read_link("/proc/self/ns/pid").unwrap().display().to_string();
    assert_ne!(a_ns.trim(), host_ns, "not the host's");
    let (_, init) = node.exec(&pod, "a", &["cat", "/proc/1/cmdline"]);
    assert!(init.contains("__pause"), "PID 1 is the sandbox's init: {init:?}");
    let (_, processes) = node.exec(&pod, "a", &["ps", "-o", "args"]);
    for other in ["sleep 3601", "sleep 3602"] {
        assert!(processes.contains(other), "container a sees {other}: {processes}");
    }
    // The orphaned `sleep 1` ended long ago: no zombie is left behind.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (_, stats) = node.exec(&pod, "a", &["sh", "-c", "cat /proc/[0-9]*/stat"]);
    let zombies: Vec<&str> =
        stats.lines().filter(|l| l.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'))).collect();
    assert!(zombies.is_empty(), "zombies in the pod: {zombies:?}");

    node.pods().delete("shared", Default::default()).await.unwrap();
    node.wait_gone("shared").await;
    let left = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(uid.as_str()))
    });
    assert!(!left, "the pod's pause processes are gone with it");
}

#[tokio::test]
async fn an_exec_probe_that_outlives_its_timeout_fails_and_its_helper_and_command_are_killed() {
    if !root() {
        return;
    }
    let node = Node::start(8).await;
    node.create_pod(json!({
        "metadata": {"name": "slow"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "slow", "image": "rudder/busybox:test", "command": ["sleep", "3600"],
                "readinessProbe": {"exec": {"command": ["sleep", "30"]}, "timeoutSeconds": 1, "periodSeconds": 1}
            }]
        }
    }))
    .await;
    let pod = node
        .wait_pod("slow", "running", |p| container(p, "slow").state.as_ref().is_some_and(|s| s.running.is_some()))
        .await;
    let uid = pod.metadata.as_ref().unwrap().uid.clone();
    // Each probe runs in an exec helper; one past its timeout is killed, so at most
    // the current one is ever alive, however many probes have timed out.
    let helpers = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| {
                std::fs::read(entry.path().join("cmdline")).is_ok_and(|raw| {
                    let line = String::from_utf8_lossy(&raw);
                    line.contains("__exec") && line.contains(uid.as_str())
                })
            })
            .count()
    };
    // Nor does its command live on in the container.
    let commands = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| std::fs::read(entry.path().join("cmdline")).is_ok_and(|raw| raw == b"sleep\x0030\x00"))
            .count()
    };
    let (mut most, mut most_commands) = (0, 0);
    for _ in 0..50 {
        most = most.max(helpers());
        most_commands = most_commands.max(commands());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most >= 1, "no probe ran");
    assert!(most <= 1, "{most} probe helpers alive at once: timed-out probes were not killed");
    assert!(most_commands <= 1, "{most_commands} probe commands alive at once: they outlived their helpers");
    let pod = node.pods().get("slow").await.unwrap();
    assert!(!container(&pod, "slow").ready, "a probe that times out does not pass");
    node.pods().delete("slow", Default::default()).await.unwrap();
    node.wait_gone("slow").await;
}
