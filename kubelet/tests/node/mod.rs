//! What every kubelet pod test starts: a real etcd and apiserver, the test images
//! imported into a fresh root dir, and the real kubelet binary with a bridge, pod CIDR,
//! nftables table and cgroup parent of its own. Dropping it stops the kubelet and runs
//! `kubelet cleanup`, which removes every pod, cgroup, mount, veth, bridge and rule.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use client::{Api, Client};
use proto::core::v1::Pod;

pub struct Node {
    pub client: Client,
    pub kubelet: Option<testkit::Daemon>,
    pub args: Vec<String>,
    pub name: String,
    pub pod_cidr: String,
    pub root: PathBuf,
    pub apiserver: testkit::ApiServer,
    pub etcd: testkit::Etcd,
    pub dir: tempfile::TempDir,
}

fn kubelet_binary() -> PathBuf {
    testkit::binary_path("kubelet").expect("build the kubelet first: cargo build -p kubelet")
}

impl Node {
    /// `n` tells tests of one binary apart (1..=50).
    pub async fn start(n: u32) -> Node {
        let pid = std::process::id();
        let etcd = testkit::Etcd::start().await.unwrap();
        let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
        let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
        let dir = tempfile::Builder::new().prefix("rudder-kubelet-test-").tempdir().unwrap();
        let root = dir.path().join("root");
        let images = dir.path().join("images");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-test-images.sh");
        let out = Command::new("bash").arg(&script).arg(&images).output().unwrap();
        assert!(out.status.success(), "build-test-images.sh: {}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new(kubelet_binary())
            .args(["import-image", "--root-dir"])
            .arg(&root)
            .arg(images.join("busybox.oci.tar"))
            .arg(images.join("httpd.oci.tar"))
            .output()
            .unwrap();
        assert!(out.status.success(), "import-image: {}", String::from_utf8_lossy(&out.stderr));
        let name = format!("node-{n}");
        let pod_cidr = format!("10.{}.{}.0/24", 200 + n, pid % 250);
        let tag = format!("{}{n}", pid % 100_000);
        let args: Vec<String> = vec![
            "--master".into(),
            apiserver.grpc_endpoint(),
            "--hostname-override".into(),
            name.clone(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--root-dir".into(),
            root.display().to_string(),
            "--http-address".into(),
            format!("127.0.0.1:{}", testkit::free_port()),
            "--address".into(),
            "127.0.0.1".into(),
            "--port".into(),
            testkit::free_port().to_string(),
            "--pod-cidr".into(),
            pod_cidr.clone(),
            "--bridge-name".into(),
            format!("rt{tag}"),
            "--nft-table".into(),
            format!("rudder-test-{tag}"),
            "--cgroup-parent".into(),
            format!("rudder-test-{tag}"),
            "--node-status-update-frequency".into(),
            "1s".into(),
        ];
        let mut node = Node { client, kubelet: None, args, name, pod_cidr, root, apiserver, etcd, dir };
        node.start_kubelet();
        node
    }

    pub fn start_kubelet(&mut self) {
        let log = self.dir.path().join("kubelet.log");
        self.kubelet = Some(testkit::Daemon::spawn("kubelet", &kubelet_binary(), &self.args, &log).unwrap());
    }

    pub fn stop_kubelet(&mut self) {
        if let Some(mut k) = self.kubelet.take() {
            k.terminate(Duration::from_secs(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubelet.log")).unwrap_or_default()
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(&self.client, "default")
    }

    /// Creates a pod bound to this node from its JSON form.
    pub async fn create_pod(&self, mut json: serde_json::Value) -> Pod {
        json["apiVersion"] = "v1".into();
        json["kind"] = "Pod".into();
        json["metadata"]["namespace"] = "default".into();
        json["spec"]["nodeName"] = self.name.clone().into();
        let pod: Pod = proto::codec::decode(&json).unwrap();
        self.pods().create(&pod).await.unwrap()
    }

    /// Waits (generously) until the pod satisfies `ok`; fails with the pod and the log.
    pub async fn wait_pod(&self, name: &str, what: &str, ok: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let pod = self.pods().get_opt(name).await.unwrap();
            if let Some(pod) = &pod
                && ok(pod)
            {
                return pod.clone();
            }
            if Instant::now() > deadline {
                let yaml = pod.map(|p| proto::codec::to_yaml(&proto::codec::encode(&p))).unwrap_or_default();
                panic!("pod {name} never got {what}:\n{yaml}\nkubelet log:\n{}", tail(&self.log()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.pods().get_opt(name).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "pod {name} was never removed; kubelet log:\n{}", tail(&self.log()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs a command in a pod's container through the kubelet's own exec helper.
    pub fn exec(&self, pod: &Pod, container: &str, command: &[&str]) -> (i32, String) {
        let uid = &pod.metadata.as_ref().unwrap().uid;
        let status = pod.status.as_ref().unwrap();
        let attempt = status.container_statuses.iter().find(|c| c.name == container).unwrap().restart_count;
        let dir = self.root.join("runtime").join(uid).join("containers").join(format!("{container}_{attempt}"));
        let out = Command::new(kubelet_binary()).arg("__exec").arg(dir).arg("--").args(command).output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    pub fn cgroup_parent(&self) -> String {
        let i = self.args.iter().position(|a| a == "--cgroup-parent").unwrap();
        self.args[i + 1].clone()
    }

    pub fn bridge(&self) -> String {
        let i = self.args.iter().position(|a| a == "--bridge-name").unwrap();
        self.args[i + 1].clone()
    }
}

/// Whether the test can run (it needs root); says so when it cannot.
pub fn root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

pub fn running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.clone().unwrap_or_default();
    status.phase == "Running" && status.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True")
}

pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_kubelet();
        let mut args = vec!["cleanup".to_string()];
        args.extend(self.args.iter().cloned());
        match Command::new(kubelet_binary()).args(&args).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("kubelet cleanup: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("kubelet cleanup: {e}"),
        }
    }
}

/// A GET from the host to a pod; the body, or the error.
pub async fn http_get(address: &str) -> Result<String, String> {
    let (status, body) = testkit::http_get(address, "/").await.map_err(|e| e.to_string())?;
    if status == 200 { Ok(body) } else { Err(format!("status {status}")) }
}

/// Retries a GET until the pod's server answers (it may still be starting).
pub async fn wait_http(address: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http_get(address).await {
            Ok(body) => return body,
            Err(e) if Instant::now() > deadline => panic!("{address} never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
