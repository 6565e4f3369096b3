//! The scheduler binary: settings, the ops endpoint, leader election on
//! kube-system/kube-scheduler, and the scheduling loop while leading.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Parser as _;
use client::Client;
use client::runtime::{EventRecorder, LeaderElectionConfig, LeaderElector, SharedInformers};
use scheduler::config::{Flags, Settings};
use scheduler::metrics::Metrics;
use scheduler::queue::SchedulingQueue;
use scheduler::scheduling::{self, Profile};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ops::logging::init();
    let settings = Settings::load(Flags::parse())?;
    let client = Client::for_daemon(settings.master.as_deref(), settings.kubeconfig.as_deref())?;
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into());
    let leading = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(Metrics::default());
    let current: Arc<Mutex<Option<Arc<SchedulingQueue>>>> = Arc::new(Mutex::new(None));

    let listener = tokio::net::TcpListener::bind(settings.http_address)
        .await
        .with_context(|| format!("listening on {} (--http-address)", settings.http_address))?;
    let probe = Arc::new(Probe {
        client: client.clone(),
        leading: leading.clone(),
        metrics: metrics.clone(),
        current: current.clone(),
    });
    tokio::spawn(ops::serve(listener, probe, std::future::pending()));

    // With leader election, everything the scheduling loop writes (bindings,
    // statuses, events) goes through a client fenced by the lease.
    let elector = if settings.leader_election.enabled {
        let identity = format!("{host}_{}", std::process::id());
        let config = LeaderElectionConfig {
            lease_duration: settings.leader_election.lease_duration,
            renew_deadline: settings.leader_election.renew_deadline,
            retry_period: settings.leader_election.retry_period,
            ..LeaderElectionConfig::new("kube-system", "kube-scheduler", &identity)
        };
        config.validate().context("leader election")?;
        tracing::info!(identity, "campaigning for the kube-system/kube-scheduler lease");
        Some(LeaderElector::new(&client, config))
    } else {
        None
    };
    let client = match &elector {
        Some(elector) => client.fenced(elector.fence()),
        None => client,
    };
    let informers = Arc::new(SharedInformers::new(&client));
    let recorder = EventRecorder::new(&client, &settings.scheduler_name, &host);
    let profile = Profile {
        scheduler_name: settings.scheduler_name.clone(),
        weights: settings.weights.clone(),
        percentage_of_nodes_to_score: settings.percentage_of_nodes_to_score,
        max_bindings_in_flight: settings.max_bindings_in_flight,
    };
    let run = {
        let leading = leading.clone();
        move || {
            let (client, informers, recorder, profile, metrics, current, leading) = (
                client.clone(),
                informers.clone(),
                recorder.clone(),
                profile.clone(),
                metrics.clone(),
                current.clone(),
                leading.clone(),
            );
            async move {
                leading.store(true, Ordering::SeqCst);
                let _flag = ClearOnDrop(leading);
                scheduling::run(client, informers, recorder, profile, metrics, current).await;
            }
        }
    };
    if let Some(elector) = elector {
        elector.run(ops::signals::shutdown(), |_leadership| run()).await;
    } else {
        tokio::select! {
            _ = run() => {}
            _ = ops::signals::shutdown() => {}
        }
    }
    tracing::info!("stopped");
    Ok(())
}

struct Probe {
    client: Client,
    leading: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    current: Arc<Mutex<Option<Arc<SchedulingQueue>>>>,
}

#[async_trait::async_trait]
impl ops::Probe for Probe {
    async fn ready(&self) -> Result<(), String> {
        self.client.version().await.map(|_| ()).map_err(|e| format!("the apiserver: {e}"))
    }

    fn metrics(&self) -> String {
        let lengths =
            self.current.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|q| q.lengths()).unwrap_or_default();
        self.metrics.render(lengths, self.leading.load(Ordering::SeqCst))
    }
}

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
