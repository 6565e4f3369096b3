//! A single-node cluster of real processes: etcd, the apiserver, the
//! controller-manager and the scheduler on the host's loopback; the kubelet and
//! kube-proxy (serving the cluster DNS) inside the node's network namespace.
//!
//! Dropping it (also while a failing test unwinds) stops every process, runs
//! `kubelet cleanup` and `kube-proxy --cleanup` inside the node, deletes the node's
//! namespace and removes the temporary directories.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use client::Client;
use tempfile::TempDir;
use testkit::{ApiServer, Daemon, Etcd};

use crate::Error;
use crate::http;
use crate::netns::NodeNetns;

/// How long a component may take to become ready; generous for a busy machine.
const READY_WITHIN: Duration = Duration::from_secs(90);

pub struct Options {
    /// A tag unique among concurrently running tests: names the node's namespace,
    /// its cgroup parent and its nftables table.
    pub tag: String,
    /// Third octet of the node's link (198.18.<octet>.0/30).
    pub link_octet: u8,
    pub service_cidr: String,
    pub cluster_cidr: String,
    /// The cluster DNS address: kube-proxy's --cluster-dns-address, the kubelet's --cluster-dns.
    pub dns_ip: Ipv4Addr,
    /// Registry host as images name it -> its mirror on the host's loopback (reached
    /// from the node through a relay on the same port), spoken to over plain HTTP.
    pub registry_mirrors: Vec<(String, SocketAddr)>,
}

pub struct Cluster {
    pub client: Client,
    /// A kubeconfig for `ctl` on the host.
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub kubelet_root: PathBuf,
    kubelet_args: Vec<String>,
    kubelet: Option<Daemon>,
    proxy: Option<Daemon>,
    proxy_http: SocketAddr,
    scheduler: Option<Daemon>,
    controller_manager: Option<Daemon>,
    apiserver: Option<ApiServer>,
    etcd: Option<Etcd>,
    node: Option<NodeNetns>,
    dir: Option<TempDir>,
}

fn binary(name: &str) -> Result<PathBuf, Error> {
    Ok(testkit::binary_path(name)?)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

impl Cluster {
    pub async fn start(options: Options) -> Result<Cluster, Error> {
        let dir = tempfile::Builder::new().prefix(&format!("rudder-e2e-{}-", options.tag)).tempdir()?;
        let node = NodeNetns::create(&options.tag, options.link_octet, &[&options.service_cidr])?;
        let etcd = Etcd::start().await?;
        let apiserver = ApiServer::start_with(
            &etcd.endpoints(),
            &[&format!("--service-cluster-ip-range={}", options.service_cidr)],
        )
        .await?;
        let endpoint = apiserver.grpc_endpoint();
        let client = Client::new(&endpoint, "default").map_err(|e| Error::Api(e.to_string()))?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {endpoint}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\ncurrent-context: e2e\nusers:\n- name: admin\n  user: {{}}\n"
            ),
        )?;
        let node_name = format!("node-{}", options.tag);
        let kubelet_root = dir.path().join("kubelet");
        let mut cluster = Cluster {
            client,
            kubeconfig,
            node_name: node_name.clone(),
            kubelet_root: kubelet_root.clone(),
            kubelet_args: Vec::new(),
            kubelet: None,
            proxy: None,
            proxy_http: SocketAddr::from(([127, 0, 0, 1], testkit::free_port())),
            scheduler: None,
            controller_manager: None,
            apiserver: Some(apiserver),
            etcd: Some(etcd),
            node: Some(node),
            dir: Some(dir),
        };

        // The control plane, on the host.
        let cm_http = format!("127.0.0.1:{}", testkit::free_port());
        let args = strings(&[
            "--master",
            &endpoint,
            "--http-address",
            &cm_http,
            "--cluster-cidr",
            &options.cluster_cidr,
            "--leader-elect=false",
        ]);
        cluster.controller_manager =
            Some(cluster.spawn("controller-manager", &binary("controller-manager")?, &args)?);
        let scheduler_http = format!("127.0.0.1:{}", testkit::free_port());
        let args = strings(&["--master", &endpoint, "--http-address", &scheduler_http, "--leader-elect=false"]);
        cluster.scheduler = Some(cluster.spawn("scheduler", &binary("scheduler")?, &args)?);
        for (name, address) in [("controller-manager", &cm_http), ("scheduler", &scheduler_http)] {
            cluster.wait_ready_on_host(name, address).await?;
        }

        // The node: relays to the apiserver and the registries on the same port numbers.
        let api_address: SocketAddr = endpoint
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| Error::Api(format!("the apiserver's endpoint {endpoint}: {e}")))?;
        let node = cluster.node.as_mut().ok_or(Error::Gone)?;
        node.relay(api_address.port(), api_address).await?;
        for (_, mirror) in &options.registry_mirrors {
            node.relay(mirror.port(), *mirror).await?;
        }
        let node_ip = node.node_ip;
        let mut kubelet_args = strings(&[
            "--master",
            &endpoint,
            "--hostname-override",
            &node_name,
            "--node-ip",
            &node_ip.to_string(),
            "--root-dir",
            &kubelet_root.display().to_string(),
            "--http-address",
            &format!("127.0.0.1:{}", testkit::free_port()),
            "--cluster-cidr",
            &options.cluster_cidr,
            "--bridge-name",
            "rudder0",
            "--nft-table",
            &format!("rudder-e2e-{}", options.tag),
            "--cgroup-parent",
            &format!("rudder-e2e-{}", options.tag),
            "--cluster-dns",
            &options.dns_ip.to_string(),
            "--cluster-domain",
            "cluster.local",
            "--node-status-update-frequency",
            "2s",
        ]);
        for (host, mirror) in &options.registry_mirrors {
            kubelet_args.extend(strings(&[
                "--registry-mirror",
                &format!("{host}={mirror}"),
                "--insecure-registry",
                host,
            ]));
        }
        cluster.kubelet_args = kubelet_args.clone();
        cluster.kubelet = Some(cluster.spawn_in_node("kubelet", &binary("kubelet")?, &kubelet_args)?);

        let proxy_args = strings(&[
            "--master",
            &endpoint,
            "--hostname-override",
            &node_name,
            "--http-address",
            &cluster.proxy_http.to_string(),
            "--cluster-cidr",
            &options.cluster_cidr,
            "--cluster-dns-address",
            &options.dns_ip.to_string(),
            // Nothing listens there: names outside the cluster get SERVFAIL and no
            // query ever leaves the node's namespace.
            "--dns-upstream",
            "127.0.0.1:9",
        ]);
        cluster.proxy = Some(cluster.spawn_in_node("kube-proxy", &binary("kube-proxy")?, &proxy_args)?);
        cluster.wait_node_ready().await?;
        cluster.wait_proxy_ready().await?;
        Ok(cluster)
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("/nonexistent"), |d| d.path())
    }

    pub fn node(&self) -> &NodeNetns {
        self.node.as_ref().expect("the node namespace lives as long as the cluster")
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.log"))
    }

    /// The end of a component's log ("kubelet", "kube-proxy", "scheduler", ...).
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn spawn(&self, name: &str, program: &Path, args: &[String]) -> Result<Daemon, Error> {
        Ok(Daemon::spawn(name, program, args, &self.log_path(name))?)
    }

    fn spawn_in_node(&self, name: &str, program: &Path, args: &[String]) -> Result<Daemon, Error> {
        let wrapped = self.node().wrap(&program.display().to_string(), args);
        Ok(Daemon::spawn(name, Path::new("nsenter"), &wrapped, &self.log_path(name))?)
    }

    async fn wait_ready_on_host(&mut self, name: &str, address: &str) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = testkit::http_get(address, "/readyz").await {
                return Ok(());
            }
            self.check_running()?;
            if start.elapsed() > READY_WITHIN {
                return Err(Error::NotReady { what: name.to_string(), log: self.log_tail(name) });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_node_ready(&mut self) -> Result<(), Error> {
        let nodes = client::Api::<proto::core::v1::Node>::all(&self.client);
        let start = Instant::now();
        loop {
            if let Ok(Some(node)) = nodes.get_opt(&self.node_name).await {
                let ready = node
                    .status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"));
                let has_cidr = node.spec.as_ref().is_some_and(|s| !s.pod_cidr.is_empty());
                if ready && has_cidr {
                    return Ok(());
                }
            }
            self.check_running()?;
            if start.elapsed() > READY_WITHIN {
                return Err(Error::NotReady { what: "the Node".into(), log: self.log_tail("kubelet") });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_proxy_ready(&mut self) -> Result<(), Error> {
        let start = Instant::now();
        let address = self.proxy_http;
        loop {
            if let Ok((200, _)) = self.node().run(move || http::get(address, "/readyz")).await {
                return Ok(());
            }
            self.check_running()?;
            if start.elapsed() > READY_WITHIN {
                return Err(Error::NotReady { what: "kube-proxy".into(), log: self.log_tail("kube-proxy") });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An error naming the first component that has exited, with its log.
    pub fn check_running(&mut self) -> Result<(), Error> {
        let daemons = [&mut self.controller_manager, &mut self.scheduler, &mut self.kubelet, &mut self.proxy];
        for daemon in daemons.into_iter().flatten() {
            if let Some(status) = daemon.exited() {
                return Err(Error::Exited { what: daemon.name().to_string(), status, log: daemon.log_tail() });
            }
        }
        Ok(())
    }

    /// Runs the real `ctl` with this cluster's kubeconfig.
    pub fn ctl(&self, args: &[&str]) -> Result<Output, Error> {
        Command::new(binary("ctl")?)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .map_err(|source| Error::Spawn { program: "ctl".into(), source })
    }

    /// Runs `command` in a pod's container through the kubelet's exec helper (it
    /// enters the container's namespaces, network included).
    pub fn exec(&self, pod_uid: &str, container: &str, restart: i32, command: &[&str]) -> Result<Output, Error> {
        let dir = self.container_dir(pod_uid, container, restart);
        Command::new(binary("kubelet")?)
            .arg("__exec")
            .arg(dir)
            .arg("--")
            .args(command)
            .output()
            .map_err(|source| Error::Spawn { program: "kubelet __exec".into(), source })
    }

    /// Where the kubelet keeps one run of a container.
    pub fn container_dir(&self, pod_uid: &str, container: &str, restart: i32) -> PathBuf {
        self.kubelet_root.join("runtime").join(pod_uid).join("containers").join(format!("{container}_{restart}"))
    }

    /// The host pid of one run of a container's first process.
    pub fn container_pid(&self, pod_uid: &str, container: &str, restart: i32) -> Result<i32, Error> {
        let path = self.container_dir(pod_uid, container, restart).join("started.json");
        let text = std::fs::read_to_string(&path)?;
        let started: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Api(format!("{}: {e}", path.display())))?;
        started["pid"]
            .as_i64()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| Error::Api(format!("{}: no pid in {text}", path.display())))
    }

    /// kube-proxy's nftables table inside the node, as `nft list` prints it.
    pub fn proxy_rules(&self) -> Result<String, Error> {
        let out = self.node().exec("nft", &["list", "table", "ip", "rudder-proxy"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn teardown(&mut self) {
        for daemon in [self.proxy.take(), self.kubelet.take()].into_iter().flatten() {
            let mut daemon = daemon;
            daemon.terminate(Duration::from_secs(15));
        }
        if let Some(node) = &self.node {
            let mut cleanups: Vec<(&str, Vec<String>)> = Vec::new();
            if let Ok(kubelet) = binary("kubelet") {
                let mut args = vec!["cleanup".to_string()];
                args.extend(self.kubelet_args.iter().cloned());
                cleanups.push(("kubelet cleanup", node.wrap(&kubelet.display().to_string(), &args)));
            }
            if let Ok(proxy) = binary("kube-proxy") {
                cleanups.push((
                    "kube-proxy --cleanup",
                    node.wrap(&proxy.display().to_string(), &["--cleanup".to_string()]),
                ));
            }
            for (what, args) in cleanups {
                // kubelet cleanup needs its flags even when the kubelet never started.
                if what == "kubelet cleanup" && self.kubelet_args.is_empty() {
                    continue;
                }
                match Command::new("nsenter").args(&args).output() {
                    Ok(out) if out.status.success() => {}
                    Ok(out) => eprintln!("{what}: {}", String::from_utf8_lossy(&out.stderr)),
                    Err(e) => eprintln!("{what}: {e}"),
                }
            }
        }
        for daemon in [self.scheduler.take(), self.controller_manager.take()].into_iter().flatten() {
            let mut daemon = daemon;
            daemon.terminate(Duration::from_secs(10));
        }
        drop(self.apiserver.take());
        drop(self.etcd.take());
        drop(self.node.take());
        if std::env::var_os("E2E_KEEP_LOGS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("logs kept in {}", dir.keep().display());
        }
        drop(self.dir.take());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}
