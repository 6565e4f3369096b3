//! kube-proxy's settings: flags, optionally a YAML file with the same keys
//! (`proxy-mode: userspace`), flags winning over the file, defaults last.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use ops::settings::{self, parse_duration};
use serde::Deserialize;

use crate::model::Cidr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// Rules in an nftables table kube-proxy owns.
    Nftables,
    /// kube-proxy listens on each Service port and forwards, for hosts without nftables.
    Userspace,
}

#[derive(Debug, Parser, Default)]
#[command(
    name = "kube-proxy",
    version,
    about = "Makes Services' ClusterIPs and NodePorts reach their endpoints on this node."
)]
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
    /// This node's name, whose Node's addresses NodePorts answer on [default: the hostname].
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:10256].
    #[arg(long)]
    pub http_address: Option<SocketAddr>,
    /// nftables or userspace [default: nftables].
    #[arg(long, value_enum)]
    pub proxy_mode: Option<ProxyMode>,
    /// The pod network: traffic to a ClusterIP from outside it is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// CIDRs (comma-separated) of the node addresses NodePorts answer on [default: all the Node's addresses].
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Option<Vec<String>>,
    /// Remove kube-proxy's table and service interface, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// How often to resync even without changes [default: 30s].
    #[arg(long, value_parser = parse_duration)]
    pub sync_period: Option<Duration>,
    /// The least time between two syncs; changes within it are applied together [default: 1s].
    #[arg(long, value_parser = parse_duration)]
    pub min_sync_interval: Option<Duration>,
    /// Serve the cluster DNS on this IPv4 address (port 53, UDP and TCP; IP:PORT for
    /// another port); empty: no DNS. Point the kubelet's --cluster-dns at it. A
    /// node-local link address such as 169.254.20.10 suits: kube-proxy holds it on a
    /// dummy interface of its own (rudder-dns), so every pod on the node reaches it.
    #[arg(long)]
    pub cluster_dns_address: Option<String>,
    /// The cluster's DNS domain [default: cluster.local].
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// Resolvers (IP or IP:PORT, comma-separated) for names outside the cluster
    /// domain [default: the nameservers of /etc/resolv.conf].
    #[arg(long, value_delimiter = ',')]
    pub dns_upstream: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    kubeconfig: Option<PathBuf>,
    master: Option<String>,
    hostname_override: Option<String>,
    http_address: Option<SocketAddr>,
    proxy_mode: Option<ProxyMode>,
    cluster_cidr: Option<String>,
    nodeport_addresses: Option<Vec<String>>,
    cleanup: Option<bool>,
    sync_period: Option<String>,
    min_sync_interval: Option<String>,
    cluster_dns_address: Option<String>,
    cluster_domain: Option<String>,
    dns_upstream: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub master: Option<String>,
    pub hostname: String,
    pub http_address: SocketAddr,
    pub proxy_mode: ProxyMode,
    pub cluster_cidr: Option<Cidr>,
    pub nodeport_cidrs: Vec<Cidr>,
    pub cleanup: bool,
    pub sync_period: Duration,
    pub min_sync_interval: Duration,
    /// The cluster DNS, when it is on.
    pub dns: Option<DnsSettings>,
}

/// Where the cluster DNS listens and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub listen: SocketAddr,
    pub domain: String,
    /// Empty: the nameservers of /etc/resolv.conf.
    pub upstreams: Vec<SocketAddr>,
}

const DNS_PORT: u16 = 53;

/// "IP" (port `default_port`) or "IP:PORT"; `flag` names the setting in errors.
fn parse_address(text: &str, default_port: u16, flag: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        anyhow::anyhow!("{flag}: \"{text}\" is not an IP address or IP:PORT (write 169.254.20.10 or 10.0.0.1:5353)")
    })
}

fn dns_settings(
    address: Option<String>,
    domain: Option<String>,
    upstreams: Option<Vec<String>>,
) -> anyhow::Result<Option<DnsSettings>> {
    let Some(address) = address.filter(|a| !a.trim().is_empty()) else {
        if domain.is_some() || upstreams.as_ref().is_some_and(|u| u.iter().any(|u| !u.is_empty())) {
            tracing::warn!("--cluster-domain and --dns-upstream have no effect without --cluster-dns-address");
        }
        return Ok(None);
    };
    let listen = parse_address(&address, DNS_PORT, "--cluster-dns-address")?;
    let SocketAddr::V4(v4) = listen else {
        bail!(
            "--cluster-dns-address: \"{address}\" is IPv6; the cluster DNS listens on an IPv4 address (the kubelet's --cluster-dns is one)"
        );
    };
    if v4.ip() == &Ipv4Addr::UNSPECIFIED {
        bail!(
            "--cluster-dns-address: 0.0.0.0 would answer on every address of the node; give the one address pods use (e.g. 169.254.20.10)"
        );
    }
    let upstreams = upstreams
        .unwrap_or_default()
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| parse_address(u, DNS_PORT, "--dns-upstream"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if upstreams.contains(&listen) {
        bail!(
            "--dns-upstream {listen} is the cluster DNS itself; name the node's own resolvers (or leave it out for /etc/resolv.conf's)"
        );
    }
    let domain = domain.unwrap_or_else(|| "cluster.local".to_string());
    // Checked here so a bad domain fails at start with the flag's name.
    let check = dns::Config {
        listen,
        domain: domain.clone(),
        upstreams: Vec::new(),
        ttl: dns::config::DEFAULT_TTL,
        upstream_timeout: dns::config::DEFAULT_UPSTREAM_TIMEOUT,
        free_bind: true,
    };
    check.domain_name().map_err(|e| anyhow::anyhow!("--cluster-domain: {e}"))?;
    Ok(Some(DnsSettings { listen, domain, upstreams }))
}

impl Settings {
    pub fn load(flags: Flags) -> anyhow::Result<Settings> {
        let file: FileSettings = settings::read_file(flags.config.as_deref())?;
        let hostname = match flags.hostname_override.or(file.hostname_override) {
            Some(name) => name,
            None => nix::unistd::gethostname()
                .context("reading the hostname (or pass --hostname-override)")?
                .to_string_lossy()
                .into_owned(),
        };
        let cluster_cidr = flags
            .cluster_cidr
            .or(file.cluster_cidr)
            .map(|text| text.parse::<Cidr>().map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}")))
            .transpose()?;
        let nodeport_cidrs = flags
            .nodeport_addresses
            .or(file.nodeport_addresses)
            .unwrap_or_default()
            .iter()
            .filter(|text| !text.is_empty())
            .map(|text| text.parse::<Cidr>().map_err(|e| anyhow::anyhow!("--nodeport-addresses: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let settings = Settings {
            kubeconfig: flags.kubeconfig.or(file.kubeconfig),
            master: flags.master.or(file.master),
            hostname,
            http_address: flags.http_address.or(file.http_address).unwrap_or_else(|| ([127, 0, 0, 1], 10256).into()),
            proxy_mode: flags.proxy_mode.or(file.proxy_mode).unwrap_or(ProxyMode::Nftables),
            cluster_cidr,
            nodeport_cidrs,
            cleanup: flags.cleanup || file.cleanup.unwrap_or(false),
            sync_period: settings::duration(
                flags.sync_period,
                file.sync_period,
                "sync-period",
                Duration::from_secs(30),
            )?,
            min_sync_interval: settings::duration(
                flags.min_sync_interval,
                file.min_sync_interval,
                "min-sync-interval",
                Duration::from_secs(1),
            )?,
            dns: dns_settings(
                flags.cluster_dns_address.or(file.cluster_dns_address),
                flags.cluster_domain.or(file.cluster_domain),
                flags.dns_upstream.or(file.dns_upstream),
            )?,
        };
        if settings.sync_period.is_zero() {
            bail!("--sync-period must be more than 0 (it is how often kube-proxy repairs its rules)");
        }
        if settings.min_sync_interval > settings.sync_period {
            bail!(
                "--min-sync-interval ({:?}) must not exceed --sync-period ({:?})",
                settings.min_sync_interval,
                settings.sync_period
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, "proxy-mode: userspace\ncluster-cidr: 10.244.0.0/16\nsync-period: 10s\n").unwrap();
        let flags = Flags::parse_from([
            "kube-proxy",
            "--config",
            path.to_str().unwrap(),
            "--sync-period",
            "20s",
            "--hostname-override",
            "n1",
            "--nodeport-addresses",
            "192.168.0.0/16,10.0.0.0/8",
        ]);
        let settings = Settings::load(flags).unwrap();
        assert_eq!(settings.proxy_mode, ProxyMode::Userspace);
        assert_eq!(settings.sync_period, Duration::from_secs(20));
        assert_eq!(settings.min_sync_interval, Duration::from_secs(1));
        assert_eq!(settings.cluster_cidr.unwrap().to_string(), "10.244.0.0/16");
        assert_eq!(settings.nodeport_cidrs.len(), 2);
        assert_eq!(settings.hostname, "n1");
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let error = Settings::load(Flags::parse_from(["kube-proxy", "--cluster-cidr", "10.244.0.0"])).unwrap_err();
        assert!(error.to_string().contains("--cluster-cidr: \"10.244.0.0\" is not a CIDR"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, "proxy-mod: userspace\n").unwrap();
        let error = Settings::load(Flags::parse_from(["kube-proxy", "--config", path.to_str().unwrap()])).unwrap_err();
        assert!(format!("{error:#}").contains("unknown field `proxy-mod`"), "{error:#}");
        assert!(Flags::try_parse_from(["kube-proxy", "--proxy-mode", "iptables"]).is_err());
    }

    #[test]
    fn dns_is_off_unless_an_address_is_given() {
        let settings = Settings::load(Flags::parse_from(["kube-proxy", "--hostname-override", "n1"])).unwrap();
        assert_eq!(settings.dns, None);
        let settings =
            Settings::load(Flags::parse_from(["kube-proxy", "--hostname-override", "n1", "--cluster-dns-address", ""]))
                .unwrap();
        assert_eq!(settings.dns, None);
    }

    #[test]
    fn dns_settings_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, "cluster-dns-address: 169.254.20.10\ncluster-domain: example.internal\ndns-upstream: [192.0.2.53, \"192.0.2.54:5353\"]\n").unwrap();
        let settings = Settings::load(Flags::parse_from([
            "kube-proxy",
            "--hostname-override",
            "n1",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap();
        let dns = settings.dns.unwrap();
        assert_eq!(dns.listen, "169.254.20.10:53".parse().unwrap());
        assert_eq!(dns.domain, "example.internal");
        assert_eq!(dns.upstreams, vec!["192.0.2.53:53".parse().unwrap(), "192.0.2.54:5353".parse().unwrap()]);
        let settings = Settings::load(Flags::parse_from([
            "kube-proxy",
            "--hostname-override",
            "n1",
            "--config",
            path.to_str().unwrap(),
            "--cluster-dns-address",
            "127.0.0.9:5353",
            "--cluster-domain",
            "cluster.local",
        ]))
        .unwrap();
        let dns = settings.dns.unwrap();
        assert_eq!(dns.listen, "127.0.0.9:5353".parse().unwrap());
        assert_eq!(dns.domain, "cluster.local");
    }

    #[test]
    fn bad_dns_settings_name_the_flag() {
        let load = |args: &[&str]| {
            let mut all = vec!["kube-proxy", "--hostname-override", "n1"];
            all.extend_from_slice(args);
            Settings::load(Flags::parse_from(all)).unwrap_err().to_string()
        };
        let error = load(&["--cluster-dns-address", "10.96.0"]);
        assert!(error.contains("--cluster-dns-address: \"10.96.0\" is not an IP address"), "{error}");
        let error = load(&["--cluster-dns-address", "0.0.0.0"]);
        assert!(error.contains("every address"), "{error}");
        let error = load(&["--cluster-dns-address", "fd00::10"]);
        assert!(error.contains("IPv6"), "{error}");
        let error = load(&["--cluster-dns-address", "169.254.20.10", "--cluster-domain", "bad_domain"]);
        assert!(error.contains("--cluster-domain"), "{error}");
        let error = load(&["--cluster-dns-address", "169.254.20.10", "--dns-upstream", "nameserver"]);
        assert!(error.contains("--dns-upstream: \"nameserver\""), "{error}");
        let error = load(&["--cluster-dns-address", "169.254.20.10", "--dns-upstream", "169.254.20.10"]);
        assert!(error.contains("the cluster DNS itself"), "{error}");
    }
}
