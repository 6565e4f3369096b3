//! The apiserver's settings: flags, optionally a YAML file with the same keys
//! (`etcd-servers: [...]`), flags winning over the file, defaults last.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;
use serde::Deserialize;

use crate::allocation::{PortRange, ServiceCidr};

#[derive(Debug, Parser, Default)]
#[command(name = "apiserver", version, about = "The cluster's API server: the only component that talks to etcd.")]
pub struct Flags {
    /// A YAML file with any of the settings below (keys as the flags, without "--").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// etcd endpoints, comma-separated: http://10.0.0.1:2379,http://10.0.0.2:2379.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Option<Vec<String>>,
    /// Key prefix in etcd; several clusters can share one etcd under different prefixes.
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// Address of the gRPC API [default: 127.0.0.1:6443].
    #[arg(long)]
    pub listen_address: Option<SocketAddr>,
    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:6444].
    #[arg(long)]
    pub http_address: Option<SocketAddr>,
    /// The CIDR Service ClusterIPs come from [default: 10.96.0.0/12].
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// The port range NodePorts come from [default: 30000-32767].
    #[arg(long)]
    pub service_node_port_range: Option<String>,
    /// Recent events kept per resource for watches to resume from [default: 10000].
    #[arg(long)]
    pub watch_cache_size: Option<usize>,
    /// Threads serving requests [default: one per core]. Where etcd shares the host's
    /// cores, fewer threads than cores leave etcd room and cut context switches.
    #[arg(long)]
    pub worker_threads: Option<usize>,
}

/// The file form of the same settings.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    etcd_servers: Option<Vec<String>>,
    etcd_prefix: Option<String>,
    listen_address: Option<SocketAddr>,
    http_address: Option<SocketAddr>,
    service_cluster_ip_range: Option<String>,
    service_node_port_range: Option<String>,
    watch_cache_size: Option<usize>,
    worker_threads: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub etcd_servers: Vec<String>,
    pub etcd_prefix: String,
    pub listen_address: SocketAddr,
    pub http_address: SocketAddr,
    pub service_cluster_ip_range: ServiceCidr,
    pub service_node_port_range: PortRange,
    pub watch_cache_size: usize,
    /// None: the runtime's default, one per core.
    pub worker_threads: Option<usize>,
}

impl Settings {
    pub fn load(flags: Flags) -> anyhow::Result<Settings> {
        let file: FileSettings = ops::settings::read_file(flags.config.as_deref())?;
        let etcd_servers =
            flags.etcd_servers.or(file.etcd_servers).unwrap_or_else(|| vec!["http://127.0.0.1:2379".to_string()]);
        for endpoint in &etcd_servers {
            check_etcd_endpoint(endpoint)?;
        }
        let ip_range = flags
            .service_cluster_ip_range
            .or(file.service_cluster_ip_range)
            .unwrap_or_else(|| "10.96.0.0/12".to_string());
        let port_range =
            flags.service_node_port_range.or(file.service_node_port_range).unwrap_or_else(|| "30000-32767".to_string());
        let worker_threads = flags.worker_threads.or(file.worker_threads);
        if worker_threads == Some(0) {
            bail!("--worker-threads is 0: give at least 1, or leave it out for one thread per core");
        }
        Ok(Settings {
            etcd_servers,
            etcd_prefix: flags.etcd_prefix.or(file.etcd_prefix).unwrap_or_else(|| "/registry".to_string()),
            listen_address: flags
                .listen_address
                .or(file.listen_address)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6443))),
            http_address: flags
                .http_address
                .or(file.http_address)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6444))),
            service_cluster_ip_range: ip_range
                .parse()
                .map_err(|e| anyhow::anyhow!("--service-cluster-ip-range: {e}"))?,
            service_node_port_range: port_range
                .parse()
                .map_err(|e| anyhow::anyhow!("--service-node-port-range: {e}"))?,
            watch_cache_size: flags.watch_cache_size.or(file.watch_cache_size).unwrap_or(10_000),
            worker_threads,
        })
    }
}

/// One --etcd-servers entry must be `http://host:port`, or `host:port` as etcdctl takes
/// it. Checked here so that a mistyped endpoint fails at start, rather than looking like
/// an etcd that is not up yet, which the apiserver waits for.
fn check_etcd_endpoint(endpoint: &str) -> anyhow::Result<()> {
    const EXAMPLE: &str = "give endpoints such as http://127.0.0.1:2379";
    if endpoint.trim().is_empty() {
        bail!("--etcd-servers has an empty entry: {EXAMPLE}");
    }
    let url = match endpoint.split_once("://").map(|(scheme, _)| scheme) {
        None => format!("http://{endpoint}"),
        Some("http") => endpoint.to_string(),
        Some("https") => bail!(
            "--etcd-servers entry {endpoint:?} is https, but the apiserver speaks plain HTTP to etcd: \
             give http:// endpoints, on loopback or a network only the control plane reaches"
        ),
        Some(scheme) => bail!("--etcd-servers entry {endpoint:?} has the scheme {scheme:?}: {EXAMPLE}"),
    };
    let uri: tonic::transport::Uri =
        url.parse().map_err(|e| anyhow::anyhow!("--etcd-servers entry {endpoint:?} is not a URL ({e}): {EXAMPLE}"))?;
    if uri.host().is_none_or(str::is_empty) {
        bail!("--etcd-servers entry {endpoint:?} has no host: {EXAMPLE}");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("--etcd-servers entry {endpoint:?} has a path; etcd endpoints have none: {EXAMPLE}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("apiserver-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(&path, "etcd-servers: [http://10.0.0.1:2379]\nservice-node-port-range: 8000-9000\n").unwrap();
        let flags = Flags::parse_from(["apiserver", "--config", path.to_str().unwrap(), "--etcd-prefix=/other"]);
        let settings = Settings::load(flags).unwrap();
        assert_eq!(settings.etcd_servers, vec!["http://10.0.0.1:2379"]);
        assert_eq!(settings.etcd_prefix, "/other");
        assert_eq!(settings.service_node_port_range.to_string(), "8000-9000");
        assert_eq!(settings.service_cluster_ip_range.to_string(), "10.96.0.0/12");

        std::fs::write(&path, "etcd-server: [x]\n").unwrap();
        let flags = Flags::parse_from(["apiserver", "--config", path.to_str().unwrap()]);
        let error = format!("{:#}", Settings::load(flags).unwrap_err());
        assert!(error.contains("unknown field `etcd-server`"), "{error}");

        std::fs::write(&path, "worker-threads: 1\n").unwrap();
        let flags = Flags::parse_from(["apiserver", "--config", path.to_str().unwrap()]);
        assert_eq!(Settings::load(flags).unwrap().worker_threads, Some(1));
        let error =
            format!("{:#}", Settings::load(Flags::parse_from(["apiserver", "--worker-threads=0"])).unwrap_err());
        assert!(error.contains("--worker-threads is 0"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn etcd_endpoints_are_checked_at_start() {
        let load = |endpoints: &str| Settings::load(Flags::parse_from(["apiserver", "--etcd-servers", endpoints]));
        let settings = load("http://10.0.0.1:2379,10.0.0.2:2379,http://etcd-0.local:2379/").unwrap();
        assert_eq!(settings.etcd_servers, ["http://10.0.0.1:2379", "10.0.0.2:2379", "http://etcd-0.local:2379/"]);
        for (endpoints, expected) in [
            ("http://[bad", "entry \"http://[bad\" is not a URL"),
            ("https://10.0.0.1:2379", "is https, but the apiserver speaks plain HTTP"),
            ("unix:///run/etcd.sock", "has the scheme \"unix\""),
            ("http://10.0.0.1:2379/v3", "has a path"),
            ("http://10.0.0.1:2379,", "has an empty entry"),
        ] {
            let error = format!("{:#}", load(endpoints).unwrap_err());
            assert!(error.contains(expected), "{endpoints}: {error}");
            assert!(error.contains("http://127.0.0.1:2379") || error.contains("give http://"), "{error}");
        }
    }
}
