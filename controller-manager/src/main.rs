use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser as _;
use client::Client;
use client::runtime::{LeaderElectionConfig, LeaderElector};
use controller_manager::config::{Flags, Settings};
use controller_manager::context::Context;
use controller_manager::controllers;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ops::logging::init();
    let settings = Settings::load(Flags::parse())?;
    let client = Client::for_daemon(settings.master.as_deref(), settings.kubeconfig.as_deref())?;
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into());
    // With leader election, every write the controllers make goes through a client
    // fenced by the lease, so a leader woken from a pause cannot act on stale state.
    let elector = if settings.leader_election.enabled {
        let identity = format!("{host}_{}", std::process::id());
        let config = LeaderElectionConfig {
            lease_duration: settings.leader_election.lease_duration,
            renew_deadline: settings.leader_election.renew_deadline,
            retry_period: settings.leader_election.retry_period,
            ..LeaderElectionConfig::new("kube-system", "kube-controller-manager", &identity)
        };
        tracing::info!(identity, "campaigning for the kube-system/kube-controller-manager lease");
        Some(LeaderElector::new(&client, config))
    } else {
        None
    };
    let acting = match &elector {
        Some(elector) => client.fenced(elector.fence()),
        None => client.clone(),
    };
    let ctx = Arc::new(Context::new(acting, &host));
    let leading = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(settings.http_address)
        .await
        .with_context(|| format!("listening on {} (--http-address)", settings.http_address))?;
    let probe = Arc::new(Probe { client: client.clone(), leading: leading.clone() });
    tokio::spawn(ops::serve(listener, probe, std::future::pending()));

    let run = {
        let (leading, settings) = (leading.clone(), settings.clone());
        move || {
            let (ctx, leading, settings) = (ctx.clone(), leading.clone(), settings.clone());
            async move {
                leading.store(true, Ordering::SeqCst);
                let _flag = ClearOnDrop(leading);
                controllers::run_all(ctx, &settings).await;
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
}

#[async_trait::async_trait]
impl ops::Probe for Probe {
    async fn ready(&self) -> Result<(), String> {
        self.client.version().await.map(|_| ()).map_err(|e| format!("the apiserver: {e}"))
    }

    fn metrics(&self) -> String {
        let leading = u8::from(self.leading.load(Ordering::SeqCst));
        format!(
            "# HELP controller_manager_leader Whether this instance leads (1) or stands by (0).\n# TYPE controller_manager_leader gauge\ncontroller_manager_leader {leading}\n"
        )
    }
}

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
