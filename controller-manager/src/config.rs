//! The controller-manager's settings: flags, optionally a YAML file with the same
//! keys (`leader-elect: false`), flags winning over the file, defaults last.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use ops::settings::{self, LeaderElection, LeaderElectionFile, LeaderElectionFlags, parse_duration};
use serde::Deserialize;

use crate::controllers::nodeipam::cidrs::{Cidr, CidrPool};

#[derive(Debug, Parser, Default)]
#[command(
    name = "controller-manager",
    version,
    about = "Runs the control loops that drive the cluster to its desired state."
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
    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:10257].
    #[arg(long)]
    pub http_address: Option<SocketAddr>,
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    /// Workers per replication controller [default: 5].
    #[arg(long)]
    pub concurrent_replicaset_syncs: Option<usize>,
    /// Give each Node a spec.podCIDR out of --cluster-cidr [default: true].
    #[arg(long)]
    pub allocate_node_cidrs: Option<bool>,
    /// The pod network, cut into per-node subnets [default: 10.244.0.0/16].
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// The prefix length of each node's subnet [default: 24].
    #[arg(long)]
    pub node_cidr_mask_size: Option<u8>,
    /// How long a kubelet may go without renewing its Lease or posting status
    /// before its node is Unknown and tainted unreachable [default: 40s].
    #[arg(long, value_parser = parse_duration)]
    pub node_monitor_grace_period: Option<Duration>,
    /// How often node health is checked [default: 5s].
    #[arg(long, value_parser = parse_duration)]
    pub node_monitor_period: Option<Duration>,
    /// The delay before a Job replaces its first failed pod; it doubles with
    /// each failure [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub job_backoff_base: Option<Duration>,
    /// The longest delay before a Job replaces a failed pod [default: 6m].
    #[arg(long, value_parser = parse_duration)]
    pub job_backoff_max: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    kubeconfig: Option<PathBuf>,
    master: Option<String>,
    http_address: Option<SocketAddr>,
    leader_elect: Option<bool>,
    leader_elect_lease_duration: Option<String>,
    leader_elect_renew_deadline: Option<String>,
    leader_elect_retry_period: Option<String>,
    concurrent_replicaset_syncs: Option<usize>,
    allocate_node_cidrs: Option<bool>,
    cluster_cidr: Option<String>,
    node_cidr_mask_size: Option<u8>,
    node_monitor_grace_period: Option<String>,
    node_monitor_period: Option<String>,
    job_backoff_base: Option<String>,
    job_backoff_max: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub master: Option<String>,
    pub http_address: SocketAddr,
    pub leader_election: LeaderElection,
    pub replicaset_workers: usize,
    /// None when node CIDR allocation is off.
    pub node_cidrs: Option<(Cidr, u8)>,
    pub node_monitor_grace_period: Duration,
    pub node_monitor_period: Duration,
    pub job_backoff_base: Duration,
    pub job_backoff_max: Duration,
}

impl Settings {
    pub fn load(flags: Flags) -> anyhow::Result<Settings> {
        let file: FileSettings = settings::read_file(flags.config.as_deref())?;
        let leader_election = flags.leader_election.resolve(LeaderElectionFile {
            leader_elect: file.leader_elect,
            lease_duration: file.leader_elect_lease_duration,
            renew_deadline: file.leader_elect_renew_deadline,
            retry_period: file.leader_elect_retry_period,
        })?;
        let duration = |flag: Option<Duration>, file: Option<String>, key: &str, seconds: u64| {
            settings::duration(flag, file, key, Duration::from_secs(seconds))
        };
        let settings = Settings {
            kubeconfig: flags.kubeconfig.or(file.kubeconfig),
            master: flags.master.or(file.master),
            http_address: flags.http_address.or(file.http_address).unwrap_or_else(|| ([127, 0, 0, 1], 10257).into()),
            leader_election,
            replicaset_workers: flags.concurrent_replicaset_syncs.or(file.concurrent_replicaset_syncs).unwrap_or(5),
            node_cidrs: None,
            node_monitor_grace_period: duration(
                flags.node_monitor_grace_period,
                file.node_monitor_grace_period,
                "node-monitor-grace-period",
                40,
            )?,
            node_monitor_period: duration(
                flags.node_monitor_period,
                file.node_monitor_period,
                "node-monitor-period",
                5,
            )?,
            job_backoff_base: duration(flags.job_backoff_base, file.job_backoff_base, "job-backoff-base", 10)?,
            job_backoff_max: duration(flags.job_backoff_max, file.job_backoff_max, "job-backoff-max", 360)?,
        };
        let mut settings = settings;
        if flags.allocate_node_cidrs.or(file.allocate_node_cidrs).unwrap_or(true) {
            let text = flags.cluster_cidr.or(file.cluster_cidr).unwrap_or_else(|| "10.244.0.0/16".to_string());
            let cidr: Cidr = text.parse().map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?;
            let mask = flags.node_cidr_mask_size.or(file.node_cidr_mask_size).unwrap_or(24);
            CidrPool::new(cidr, mask).map_err(|e| anyhow::anyhow!("--node-cidr-mask-size: {e}"))?;
            settings.node_cidrs = Some((cidr, mask));
        }
        if settings.node_monitor_period.is_zero() {
            bail!("--node-monitor-period must be longer than 0 (for instance 5s)");
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renew_deadline_past_the_lease_is_refused() {
        let flags = Flags::parse_from(["controller-manager", "--leader-elect-renew-deadline", "20s"]);
        let error = Settings::load(flags).unwrap_err().to_string();
        assert!(error.contains("must be shorter"), "{error}");
    }
}
