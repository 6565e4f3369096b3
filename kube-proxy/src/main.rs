use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use client::Client;
use client::kubeconfig::Kubeconfig;
use kube_proxy::config::{Flags, ProxyMode, Settings};
use kube_proxy::nftables::{self, NftablesProxier};
use kube_proxy::sync::{self, Proxier, SyncHealth, Timing};
use kube_proxy::userspace::{UserspaceProxier, interface};
use kube_proxy::watch::Sources;
use tokio::sync::Notify;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ops::logging::init();
    let settings = Settings::load(Flags::parse())?;
    if settings.cleanup {
        return cleanup().await;
    }
    let client = connect(&settings)?;

    // Unhealthy once syncs have stopped for two periods (with a floor for short test periods).
    let stale_after = (settings.sync_period * 2).max(std::time::Duration::from_secs(10));
    let health = Arc::new(SyncHealth::new(stale_after));
    let listener = tokio::net::TcpListener::bind(settings.http_address)
        .await
        .with_context(|| format!("listening on {} (--http-address)", settings.http_address))?;
    tokio::spawn(ops::serve(listener, Arc::new(Probe(health.clone())), std::future::pending()));

    let mut proxier: Box<dyn Proxier> = match settings.proxy_mode {
        ProxyMode::Nftables => Box::new(NftablesProxier::new(nftables::Options {
            cluster_cidr: settings.cluster_cidr,
            ..nftables::Options::default()
        })),
        ProxyMode::Userspace => Box::new(UserspaceProxier::new(interface::DEFAULT_NAME).await?),
    };

    // The node-local cluster DNS server (the `dns` crate) will start here, beside the
    // proxier, from the same Services and Endpoints.

    let changed = Arc::new(Notify::new());
    tracing::info!(mode = ?settings.proxy_mode, node = settings.hostname, "waiting for Services, Endpoints and the Node");
    let sources = tokio::select! {
        sources = Sources::start(&client, &settings.hostname, settings.nodeport_cidrs.clone(), changed.clone()) => sources,
        _ = ops::signals::shutdown() => return Ok(()),
    };
    tracing::info!("synced with the apiserver; programming Services");
    let timing = Timing { min_sync_interval: settings.min_sync_interval, sync_period: settings.sync_period };
    sync::run(proxier.as_mut(), || sources.snapshot(), &changed, timing, &health, ops::signals::shutdown()).await;

    // nftables rules stay on exit so Services keep working while kube-proxy restarts;
    // userspace listeners die with the process, so their addresses go too.
    if settings.proxy_mode == ProxyMode::Userspace {
        drop(proxier);
        if let Err(e) = interface::ServiceInterface::remove(interface::DEFAULT_NAME).await {
            tracing::warn!(error = %e, "removing the service interface failed");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// --cleanup: removes everything either mode created.
async fn cleanup() -> anyhow::Result<()> {
    NftablesProxier::cleanup(nftables::DEFAULT_TABLE)
        .await
        .with_context(|| format!("removing the nftables table ip {}", nftables::DEFAULT_TABLE))?;
    interface::ServiceInterface::remove(interface::DEFAULT_NAME)
        .await
        .with_context(|| format!("removing the interface {}", interface::DEFAULT_NAME))?;
    tracing::info!(table = nftables::DEFAULT_TABLE, interface = interface::DEFAULT_NAME, "cleaned up");
    Ok(())
}

fn connect(settings: &Settings) -> anyhow::Result<Client> {
    if let Some(server) = &settings.master {
        return Client::new(server, "default").with_context(|| format!("--master {server}"));
    }
    let path = Kubeconfig::locate(settings.kubeconfig.as_deref())
        .context("no kubeconfig: pass --kubeconfig or --master, or set $KUBECONFIG")?;
    let config = Kubeconfig::load(&path)?;
    let resolved = config.resolve(None)?;
    Ok(Client::from_kubeconfig(&resolved)?)
}

struct Probe(Arc<SyncHealth>);

#[async_trait::async_trait]
impl ops::Probe for Probe {
    async fn ready(&self) -> Result<(), String> {
        self.0.ready()
    }

    fn metrics(&self) -> String {
        self.0.metrics()
    }

    fn health(&self) -> Result<String, String> {
        self.0.health()
    }
}
