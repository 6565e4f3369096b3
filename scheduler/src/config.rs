//! The scheduler's settings: flags, optionally a YAML file with the same keys
//! (`scheduler-name: my-scheduler`) plus `score-weights`, flags winning over the
//! file, defaults last.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;
use ops::settings::{self, LeaderElection, LeaderElectionFile, LeaderElectionFlags};
use serde::Deserialize;

use crate::scores::Weights;

#[derive(Debug, Parser, Default)]
#[command(name = "scheduler", version, about = "Places pending pods on nodes.")]
pub struct Flags {
    /// A YAML file with any of the settings below (keys as the flags, without "--"),
    /// and `score-weights` (least-allocated, balanced-allocation, node-affinity, taint-toleration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The kubeconfig naming the apiserver [default: $KUBECONFIG or ~/.kube/config].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The apiserver's address, overriding the kubeconfig (http://127.0.0.1:6443).
    #[arg(long, alias = "server")]
    pub master: Option<String>,
    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:10259].
    #[arg(long)]
    pub http_address: Option<SocketAddr>,
    /// Pods whose spec.schedulerName is this are ours [default: default-scheduler].
    #[arg(long)]
    pub scheduler_name: Option<String>,
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    /// Stop filtering once this share of nodes is feasible; 0 adapts to the cluster size [default: 0].
    #[arg(long)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Bindings sent concurrently [default: 64].
    #[arg(long)]
    pub max_bindings_in_flight: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileSettings {
    kubeconfig: Option<PathBuf>,
    master: Option<String>,
    http_address: Option<SocketAddr>,
    scheduler_name: Option<String>,
    leader_elect: Option<bool>,
    leader_elect_lease_duration: Option<String>,
    leader_elect_renew_deadline: Option<String>,
    leader_elect_retry_period: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    max_bindings_in_flight: Option<usize>,
    score_weights: Option<Weights>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub master: Option<String>,
    pub http_address: SocketAddr,
    pub scheduler_name: String,
    pub leader_election: LeaderElection,
    pub percentage_of_nodes_to_score: u32,
    pub max_bindings_in_flight: usize,
    pub weights: Weights,
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
        let settings = Settings {
            kubeconfig: flags.kubeconfig.or(file.kubeconfig),
            master: flags.master.or(file.master),
            http_address: flags.http_address.or(file.http_address).unwrap_or_else(|| ([127, 0, 0, 1], 10259).into()),
            scheduler_name: flags
                .scheduler_name
                .or(file.scheduler_name)
                .unwrap_or_else(|| "default-scheduler".to_string()),
            leader_election,
            percentage_of_nodes_to_score: flags
                .percentage_of_nodes_to_score
                .or(file.percentage_of_nodes_to_score)
                .unwrap_or(0),
            max_bindings_in_flight: flags.max_bindings_in_flight.or(file.max_bindings_in_flight).unwrap_or(64),
            weights: file.score_weights.unwrap_or_default(),
        };
        if settings.percentage_of_nodes_to_score > 100 {
            bail!("--percentage-of-nodes-to-score must be between 0 and 100");
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let settings = Settings::load(Flags::parse_from(["scheduler"])).unwrap();
        assert_eq!(settings.scheduler_name, "default-scheduler");
        assert_eq!(settings.weights.taint_toleration, 3);
        let error = Settings::load(Flags::parse_from(["scheduler", "--percentage-of-nodes-to-score", "150"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("between 0 and 100"), "{error}");
    }
}
