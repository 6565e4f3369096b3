//! The kubelet's settings: flags, optionally a YAML file (`--config`) with the same keys
//! (kebab-case, without "--") plus a `registries` section; flags win over the file,
//! defaults come last.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use ops::settings::{self, parse_duration};
use proto::core::v1::Taint;
use proto::quantity::Amount;
use serde::Deserialize;

use crate::network::cidr::Ipv4Cidr;
use crate::network::plan::Backend;

#[derive(Debug, Parser, Default, Clone)]
#[command(name = "kubelet", version, about = "The node agent: registers the node and runs the pods bound to it.")]
pub struct Flags {
    /// A YAML file with any of the settings below (keys as the flags, without "--").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The kubeconfig naming the apiserver [default: $KUBECONFIG or ~/.kube/config].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver's address, overriding the kubeconfig (http://127.0.0.1:6443).
    #[arg(long, alias = "server")]
    pub master: Option<String>,
    /// The Node's name [default: the host name].
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's InternalIP [default: the first IPv4 address of an interface that is up].
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Labels for the Node: key=value,...
    #[arg(long)]
    pub node_labels: Option<String>,
    /// Taints for the Node: key=value:Effect,...
    #[arg(long)]
    pub register_with_taints: Option<String>,
    /// Resources kept for the OS: cpu=100m,memory=100Mi,ephemeral-storage=1Gi,pid=100
    #[arg(long)]
    pub system_reserved: Option<String>,
    /// Resources kept for Kubernetes daemons, in the same form as --system-reserved.
    #[arg(long)]
    pub kube_reserved: Option<String>,
    /// Pods this node runs at most [default: 110].
    #[arg(long)]
    pub max_pods: Option<u32>,
    /// Where the kubelet keeps its state: pods, volumes, IPAM, images [default: /var/lib/rudder-kubelet].
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// Container logs, one file per restart [default: <root-dir>/logs].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// The image store [default: <root-dir>/images].
    #[arg(long)]
    pub image_root: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:10248].
    #[arg(long)]
    pub http_address: Option<SocketAddr>,
    /// This node's pod subnet when the Node has no spec.podCIDR (running without a controller-manager).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The whole pod network; pod traffic leaving it is masqueraded [default: the pod CIDR].
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// The pod bridge [default: rudder0].
    #[arg(long)]
    pub bridge_name: Option<String>,
    /// The nftables table the kubelet owns [default: rudder-kubelet].
    #[arg(long)]
    pub nft_table: Option<String>,
    /// How this node reaches other nodes' pods: host-gw (a route to each node's podCIDR via its
    /// InternalIP; every node on one L2 network), vxlan (an overlay through the rudder.1 device,
    /// VNI 1, UDP 8472; nodes need only IP reachability) or none [default: host-gw].
    #[arg(long)]
    pub network_backend: Option<Backend>,
    /// The cgroup under which pod cgroups are made [default: rudder].
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Cluster DNS server for pods with dnsPolicy ClusterFirst [default: none: the host's resolv.conf].
    #[arg(long)]
    pub cluster_dns: Option<Ipv4Addr>,
    /// The cluster's DNS domain [default: cluster.local].
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// How often the node status is computed (posted on change, and at least every minute) [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub node_status_update_frequency: Option<Duration>,
    /// Processes a pod may run at most (its cgroup's pids.max) [default: unlimited].
    #[arg(long)]
    pub pod_max_pids: Option<i64>,
    /// Address of the kubelet's streaming endpoint (logs, exec) [default: 0.0.0.0].
    #[arg(long)]
    pub address: Option<std::net::IpAddr>,
    /// Port of the kubelet's streaming endpoint, published in the Node's status [default: 10250].
    #[arg(long)]
    pub port: Option<u16>,
    /// Size at which a container's log file is rotated (10Mi, 500Ki, 4096) [default: 10Mi].
    #[arg(long)]
    pub container_log_max_size: Option<String>,
    /// Log files kept per container instance, the current one included [default: 5].
    #[arg(long)]
    pub container_log_max_files: Option<u32>,
    /// A registry mirror: HOST=MIRROR (mydocker.io:5000=127.0.0.1:5000); repeatable.
    #[arg(long)]
    pub registry_mirror: Vec<String>,
    /// A registry spoken to over plain HTTP; repeatable.
    #[arg(long)]
    pub insecure_registry: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    kubeconfig: Option<PathBuf>,
    master: Option<String>,
    hostname_override: Option<String>,
    node_ip: Option<Ipv4Addr>,
    node_labels: Option<BTreeMap<String, String>>,
    register_with_taints: Option<Vec<String>>,
    system_reserved: Option<BTreeMap<String, String>>,
    kube_reserved: Option<BTreeMap<String, String>>,
    max_pods: Option<u32>,
    root_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    image_root: Option<PathBuf>,
    http_address: Option<SocketAddr>,
    pod_cidr: Option<String>,
    cluster_cidr: Option<String>,
    bridge_name: Option<String>,
    nft_table: Option<String>,
    network_backend: Option<String>,
    cgroup_parent: Option<String>,
    cluster_dns: Option<Ipv4Addr>,
    cluster_domain: Option<String>,
    node_status_update_frequency: Option<String>,
    pod_max_pids: Option<i64>,
    address: Option<std::net::IpAddr>,
    port: Option<u16>,
    container_log_max_size: Option<String>,
    container_log_max_files: Option<u32>,
    #[serde(default)]
    registries: Vec<FileRegistry>,
}

/// One entry of the `registries` section.
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileRegistry {
    pub host: String,
    pub mirror: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub master: Option<String>,
    pub node_name: String,
    pub node_ip: Option<Ipv4Addr>,
    pub node_labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// system-reserved + kube-reserved, by resource name.
    pub reserved: BTreeMap<String, Amount>,
    pub max_pods: u32,
    pub root_dir: PathBuf,
    pub log_dir: PathBuf,
    pub image_root: PathBuf,
    pub http_address: SocketAddr,
    pub pod_cidr: Option<Ipv4Cidr>,
    pub cluster_cidr: Option<Ipv4Cidr>,
    pub bridge_name: String,
    pub nft_table: String,
    /// How pods reach other nodes' pods (--network-backend).
    pub network_backend: Backend,
    pub cgroup_parent: String,
    pub cluster_dns: Option<Ipv4Addr>,
    pub cluster_domain: String,
    pub status_update_frequency: Duration,
    pub pod_max_pids: Option<i64>,
    pub registries: Vec<FileRegistry>,
    /// Where the streaming endpoint listens (--address, --port).
    pub streaming_address: SocketAddr,
    pub log_rotation: crate::runtime::logs::Rotation,
}

/// "a=1,b=2" as a map; `what` names the flag in errors.
fn parse_pairs(text: &str, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut pairs = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("{what}: \"{item}\" is not key=value (write {what} a=1,b=2)"))?;
        pairs.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(pairs)
}

/// "key=value:Effect" or "key:Effect".
pub fn parse_taint(text: &str) -> anyhow::Result<Taint> {
    let (head, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("taint \"{text}\": missing the effect (write key=value:NoSchedule)"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        bail!("taint \"{text}\": effect \"{effect}\" is not NoSchedule, PreferNoSchedule or NoExecute");
    }
    let (key, value) = head.split_once('=').unwrap_or((head, ""));
    if key.is_empty() {
        bail!("taint \"{text}\": the key is empty");
    }
    Ok(Taint { key: key.into(), value: value.into(), effect: effect.into(), time_added: None })
}

fn reserved_amounts(pairs: &BTreeMap<String, String>, what: &str) -> anyhow::Result<BTreeMap<String, Amount>> {
    let mut amounts = BTreeMap::new();
    for (name, text) in pairs {
        if !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage" | "pid") {
            bail!("{what}: unknown resource \"{name}\" (use cpu, memory, ephemeral-storage or pid)");
        }
        let amount = Amount::parse(text).map_err(|e| anyhow!("{what}: {name}={text}: {e}"))?;
        amounts.insert(name.clone(), amount);
    }
    Ok(amounts)
}

impl Settings {
    pub fn load(flags: Flags) -> anyhow::Result<Settings> {
        let file: FileSettings = settings::read_file(flags.config.as_deref())?;
        let node_name = match flags.hostname_override.or(file.hostname_override) {
            Some(name) => name,
            None => nix::unistd::gethostname()
                .context("reading the host name (pass --hostname-override)")?
                .to_string_lossy()
                .to_lowercase(),
        };
        let mut node_labels = file.node_labels.unwrap_or_default();
        if let Some(text) = &flags.node_labels {
            node_labels.extend(parse_pairs(text, "--node-labels")?);
        }
        let taint_texts: Vec<String> = match &flags.register_with_taints {
            Some(text) => text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
            None => file.register_with_taints.unwrap_or_default(),
        };
        let taints = taint_texts.iter().map(|t| parse_taint(t)).collect::<anyhow::Result<Vec<_>>>()?;
        let system = match &flags.system_reserved {
            Some(text) => parse_pairs(text, "--system-reserved")?,
            None => file.system_reserved.unwrap_or_default(),
        };
        let kube = match &flags.kube_reserved {
            Some(text) => parse_pairs(text, "--kube-reserved")?,
            None => file.kube_reserved.unwrap_or_default(),
        };
        let mut reserved = reserved_amounts(&system, "--system-reserved")?;
        for (name, amount) in reserved_amounts(&kube, "--kube-reserved")? {
            let sum = reserved.get(&name).copied().unwrap_or_else(Amount::zero) + amount;
            reserved.insert(name, sum);
        }
        let root_dir = flags.root_dir.or(file.root_dir).unwrap_or_else(|| PathBuf::from("/var/lib/rudder-kubelet"));
        if !root_dir.is_absolute() {
            bail!("--root-dir {} must be an absolute path", root_dir.display());
        }
        let cidr = |text: Option<String>, what: &str| -> anyhow::Result<Option<Ipv4Cidr>> {
            text.map(|t| t.parse::<Ipv4Cidr>().map_err(|e| anyhow!("{what}: {e}"))).transpose()
        };
        let status_update_frequency = settings::duration(
            flags.node_status_update_frequency,
            file.node_status_update_frequency,
            "node-status-update-frequency",
            Duration::from_secs(10),
        )?;
        let mut registries = file.registries;
        for item in &flags.registry_mirror {
            let (host, mirror) = item.split_once('=').ok_or_else(|| {
                anyhow!("--registry-mirror {item}: write HOST=MIRROR (mydocker.io:5000=127.0.0.1:5000)")
            })?;
            registry_entry(&mut registries, host).mirror = Some(mirror.to_string());
        }
        for host in &flags.insecure_registry {
            registry_entry(&mut registries, host).insecure = true;
        }
        let bridge_name = flags.bridge_name.or(file.bridge_name).unwrap_or_else(|| "rudder0".into());
        if bridge_name.is_empty() || bridge_name.len() > 15 {
            bail!("--bridge-name \"{bridge_name}\": an interface name has 1 to 15 characters");
        }
        let network_backend = match (flags.network_backend, file.network_backend) {
            (Some(backend), _) => backend,
            (None, Some(text)) => text.parse().map_err(|e| anyhow!("network-backend in --config: {e}"))?,
            (None, None) => Backend::HostGw,
        };
        let max_size_text = flags.container_log_max_size.or(file.container_log_max_size);
        let max_size = match max_size_text.as_deref() {
            None => 10 * 1024 * 1024,
            Some(text) => {
                let amount = Amount::parse(text)
                    .map_err(|e| anyhow!("--container-log-max-size {text}: {e} (write a size such as 10Mi)"))?;
                u64::try_from(amount.value())
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("--container-log-max-size {text}: must be a positive size such as 10Mi"))?
            }
        };
        let max_files = flags.container_log_max_files.or(file.container_log_max_files).unwrap_or(5);
        if max_files < 1 {
            bail!("--container-log-max-files {max_files}: keep at least 1 file");
        }
        let streaming_address = SocketAddr::new(
            flags.address.or(file.address).unwrap_or(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            flags.port.or(file.port).unwrap_or(10250),
        );
        Ok(Settings {
            streaming_address,
            log_rotation: crate::runtime::logs::Rotation { max_size, max_files },
            kubeconfig: flags.kubeconfig.or(file.kubeconfig),
            master: flags.master.or(file.master),
            node_name,
            node_ip: flags.node_ip.or(file.node_ip),
            node_labels,
            taints,
            reserved,
            max_pods: flags.max_pods.or(file.max_pods).unwrap_or(110),
            log_dir: flags.log_dir.or(file.log_dir).unwrap_or_else(|| root_dir.join("logs")),
            image_root: flags.image_root.or(file.image_root).unwrap_or_else(|| root_dir.join("images")),
            root_dir,
            http_address: flags.http_address.or(file.http_address).unwrap_or_else(|| ([127, 0, 0, 1], 10248).into()),
            pod_cidr: cidr(flags.pod_cidr.or(file.pod_cidr), "--pod-cidr")?,
            cluster_cidr: cidr(flags.cluster_cidr.or(file.cluster_cidr), "--cluster-cidr")?,
            bridge_name,
            nft_table: flags.nft_table.or(file.nft_table).unwrap_or_else(|| "rudder-kubelet".into()),
            network_backend,
            cgroup_parent: flags.cgroup_parent.or(file.cgroup_parent).unwrap_or_else(|| "rudder".into()),
            cluster_dns: flags.cluster_dns.or(file.cluster_dns),
            cluster_domain: flags.cluster_domain.or(file.cluster_domain).unwrap_or_else(|| "cluster.local".into()),
            status_update_frequency,
            pod_max_pids: flags.pod_max_pids.or(file.pod_max_pids).filter(|n| *n > 0),
            registries,
        })
    }
}

fn registry_entry<'a>(registries: &'a mut Vec<FileRegistry>, host: &str) -> &'a mut FileRegistry {
    let index = match registries.iter().position(|r| r.host == host) {
        Some(i) => i,
        None => {
            registries.push(FileRegistry { host: host.to_string(), mirror: None, insecure: false, ca_file: None });
            registries.len() - 1
        }
    };
    &mut registries[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> anyhow::Result<Settings> {
        let mut all = vec!["kubelet", "--hostname-override", "n1"];
        all.extend_from_slice(args);
        Settings::load(Flags::parse_from(all))
    }

    #[test]
    fn the_example_config_in_deploy_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/config/kubelet.yaml");
        let s = load(&["--config", path]).unwrap();
        assert_eq!(s.cluster_dns, Some(Ipv4Addr::new(169, 254, 20, 10)));
        assert_eq!(s.network_backend, Backend::HostGw);
        assert_eq!(s.max_pods, 110);
    }

    #[test]
    fn reserved_resources_add_up_across_both_flags() {
        let s = load(&["--system-reserved", "cpu=100m,memory=100Mi", "--kube-reserved", "cpu=200m"]).unwrap();
        assert_eq!(s.reserved["cpu"].milli_value(), 300);
        assert_eq!(s.reserved["memory"].value(), 100 * 1024 * 1024);
        let error = load(&["--kube-reserved", "gpu=1"]).unwrap_err().to_string();
        assert!(error.contains("unknown resource \"gpu\""), "{error}");
    }

    #[test]
    fn taints_and_labels_parse_as_kubernetes_writes_them() {
        let s = load(&["--register-with-taints", "a=b:NoSchedule,c:NoExecute", "--node-labels", "x=1,y=2"]).unwrap();
        assert_eq!(s.taints.len(), 2);
        assert_eq!((s.taints[0].key.as_str(), s.taints[0].value.as_str()), ("a", "b"));
        assert_eq!((s.taints[1].key.as_str(), s.taints[1].effect.as_str()), ("c", "NoExecute"));
        assert_eq!(s.node_labels["y"], "2");
        let error = load(&["--register-with-taints", "a=b:Sometimes"]).unwrap_err().to_string();
        assert!(error.contains("effect \"Sometimes\""), "{error}");
    }

    #[test]
    fn the_network_backend_defaults_to_host_gw_and_comes_from_flag_or_file() {
        assert_eq!(load(&[]).unwrap().network_backend, Backend::HostGw);
        assert_eq!(load(&["--network-backend", "vxlan"]).unwrap().network_backend, Backend::Vxlan);
        let error = Flags::try_parse_from(["kubelet", "--network-backend", "udp"]).unwrap_err().to_string();
        assert!(error.contains("host-gw, vxlan or none"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, "network-backend: none\n").unwrap();
        assert_eq!(load(&["--config", path.to_str().unwrap()]).unwrap().network_backend, Backend::None);
        std::fs::write(&path, "network-backend: gre\n").unwrap();
        let error = format!("{:#}", load(&["--config", path.to_str().unwrap()]).unwrap_err());
        assert!(error.contains("network-backend in --config") && error.contains("\"gre\""), "{error}");
    }

    #[test]
    fn streaming_port_and_log_rotation_have_kubernetes_defaults_and_check_their_values() {
        let s = load(&[]).unwrap();
        assert_eq!(s.streaming_address, SocketAddr::from(([0, 0, 0, 0], 10250)));
        assert_eq!(s.log_rotation, crate::runtime::logs::Rotation { max_size: 10 * 1024 * 1024, max_files: 5 });
        let s =
            load(&["--port", "11250", "--container-log-max-size", "4Ki", "--container-log-max-files", "2"]).unwrap();
        assert_eq!(s.streaming_address.port(), 11250);
        assert_eq!(s.log_rotation, crate::runtime::logs::Rotation { max_size: 4096, max_files: 2 });
        let error = load(&["--container-log-max-size", "lots"]).unwrap_err().to_string();
        assert!(error.contains("--container-log-max-size lots"), "{error}");
        let error = load(&["--container-log-max-files", "0"]).unwrap_err().to_string();
        assert!(error.contains("at least 1"), "{error}");
    }

    #[test]
    fn registries_merge_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, "root-dir: /tmp/x\nregistries:\n- host: a.io\n  insecure: true\n").unwrap();
        let s = load(&["--config", path.to_str().unwrap(), "--registry-mirror", "a.io=127.0.0.1:5000"]).unwrap();
        assert_eq!(s.root_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.image_root, PathBuf::from("/tmp/x/images"));
        assert_eq!(s.registries.len(), 1);
        assert!(s.registries[0].insecure);
        assert_eq!(s.registries[0].mirror.as_deref(), Some("127.0.0.1:5000"));
        std::fs::write(&path, "rootdir: /tmp/x\n").unwrap();
        let error = format!("{:#}", load(&["--config", path.to_str().unwrap()]).unwrap_err());
        assert!(error.contains("unknown field `rootdir`"), "{error}");
    }
}
