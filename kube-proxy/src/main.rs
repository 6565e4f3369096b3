use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use client::Client;
use client::runtime::SharedInformers;
use kube_proxy::cluster_dns;
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
    let client = Client::for_daemon(settings.master.as_deref(), settings.kubeconfig.as_deref())?;

    // Unhealthy once syncs have stopped for two periods (with a floor for short test periods).
    let stale_after = (settings.sync_period * 2).max(std::time::Duration::from_secs(10));
    let health = Arc::new(SyncHealth::new(stale_after));
    let listener = tokio::net::TcpListener::bind(settings.http_address)
        .await
        .with_context(|| format!("listening on {} (--http-address)", settings.http_address))?;

    // One informer per kind for the whole process: the proxier's Sources and the
    // cluster DNS read the same Services and Endpoints.
    let informers = SharedInformers::new(&client);
    // The cluster DNS binds before anything else is programmed, so a bad address
    // stops kube-proxy at once with the reason.
    let dns_server = match &settings.dns {
        Some(dns) => Some(cluster_dns::bind(dns, &informers).await?),
        None => None,
    };
    let dns_status = dns_server.as_ref().map(dns::Server::status);
    tokio::spawn(ops::serve(
        listener,
        Arc::new(Probe { health: health.clone(), dns: dns_status }),
        std::future::pending(),
    ));

    let mut proxier: Box<dyn Proxier> = match settings.proxy_mode {
        ProxyMode::Nftables => Box::new(NftablesProxier::new(nftables::Options {
            cluster_cidr: settings.cluster_cidr,
            ..nftables::Options::default()
        })),
        ProxyMode::Userspace => Box::new(UserspaceProxier::new(interface::DEFAULT_NAME).await?),
    };

    let dns_task = dns_server.map(|server| tokio::spawn(server.run(ops::signals::shutdown())));

    let changed = Arc::new(Notify::new());
    tracing::info!(mode = ?settings.proxy_mode, node = settings.hostname, "waiting for Services, Endpoints and the Node");
    let sources = tokio::select! {
        sources = Sources::start(&client, &informers, &settings.hostname, settings.nodeport_cidrs.clone(), changed.clone()) => sources,
        _ = ops::signals::shutdown() => return Ok(()),
    };
    tracing::info!("synced with the apiserver; programming Services");
    let timing = Timing { min_sync_interval: settings.min_sync_interval, sync_period: settings.sync_period };
    sync::run(proxier.as_mut(), || sources.snapshot(), &changed, timing, &health, ops::signals::shutdown()).await;
    if let Some(task) = dns_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the cluster DNS failed"),
            Err(e) => tracing::warn!(error = %e, "the cluster DNS task failed"),
        }
    }

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

/// --cleanup: removes everything either mode and the cluster DNS created.
async fn cleanup() -> anyhow::Result<()> {
    NftablesProxier::cleanup(nftables::DEFAULT_TABLE)
        .await
        .with_context(|| format!("removing the nftables table ip {}", nftables::DEFAULT_TABLE))?;
    interface::ServiceInterface::remove(interface::DEFAULT_NAME)
        .await
        .with_context(|| format!("removing the interface {}", interface::DEFAULT_NAME))?;
    cluster_dns::cleanup().await?;
    tracing::info!(
        table = nftables::DEFAULT_TABLE,
        interfaces = ?[interface::DEFAULT_NAME, cluster_dns::INTERFACE],
        "cleaned up"
    );
    Ok(())
}

struct Probe {
    health: Arc<SyncHealth>,
    /// The cluster DNS, when it is on.
    dns: Option<dns::Status>,
}

#[async_trait::async_trait]
impl ops::Probe for Probe {
    /// Ready once the rules are programmed and, with DNS on, its records are
    /// complete (before that it answers SERVFAIL for cluster names).
    async fn ready(&self) -> Result<(), String> {
        self.health.ready()?;
        match &self.dns {
            Some(dns) if !dns.synced() => Err("the cluster DNS has not listed Services and Endpoints yet".to_string()),
            _ => Ok(()),
        }
    }

    fn metrics(&self) -> String {
        let mut text = self.health.metrics();
        if let Some(dns) = &self.dns {
            // One exposition: the DNS families go before the final "# EOF".
            let end = text.strip_suffix("# EOF\n").map(str::len).unwrap_or(text.len());
            text.truncate(end);
            text.push_str(&cluster_dns::metrics(dns));
            text.push_str("# EOF\n");
        }
        text
    }

    fn health(&self) -> Result<String, String> {
        self.health.health()
    }
}
