//! Benchmarks: each starts the real processes it measures (etcd, daemons) on loopback
//! and prints its figures. Build with `--release`; figures from a debug build mean
//! little.

mod apiserver;
mod controller_manager;
mod kube_proxy;
mod metrics;
mod pod_startup;
mod scheduler;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", about = "Prints performance figures of the real components.")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// apiserver creates vs raw etcd, watch fan-out, write latency under load.
    Apiserver(apiserver::Options),
    /// Converging N Deployments x R replicas; the controller-manager's peak RSS.
    ControllerManager(controller_manager::Options),
    /// kube-proxy nftables sync times (1,000 and 10,000 Services); ClusterIP vs direct requests/s.
    KubeProxy(kube_proxy::Options),
    /// Pod startup latency on one real kubelet (root): create -> Running and Ready, pods/s, kubelet RSS.
    PodStartup(pod_startup::Options),
    /// Scheduling N pending pods onto M nodes: pods/s, per-pod latency, the scheduler's peak RSS.
    Scheduler(scheduler::Options),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -p bench -- ...` for real figures");
    }
    match Args::parse().command {
        Command::Apiserver(options) => apiserver::run(options).await,
        Command::ControllerManager(options) => controller_manager::run(options).await,
        Command::KubeProxy(options) => kube_proxy::run(options).await,
        Command::PodStartup(options) => pod_startup::run(options).await,
        Command::Scheduler(options) => scheduler::run(options).await,
    }
}
