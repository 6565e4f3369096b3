//! The node-local cluster DNS that kube-proxy serves beside its proxier (the `dns`
//! crate), from the same Service and Endpoints informers.
//!
//! Pods reach it at one address on their own node: `--cluster-dns-address`, which
//! the kubelet's `--cluster-dns` names. Any address works as long as the node
//! delivers packets for it locally, so kube-proxy makes it local itself: it holds
//! the address on a dummy interface of its own (`rudder-dns`). A pod's query leaves
//! through its default route to the node, which owns the address and answers; no
//! Service, endpoint or rule is involved, so DNS works on every node the moment
//! kube-proxy runs there. A link-local address (169.254.20.10, NodeLocal DNSCache's
//! choice) never collides with the pod, Service or node networks.
//!
//! The address stays on the interface when kube-proxy stops (as its rules do): a
//! query during a restart is refused at once instead of leaking to the node's
//! default route. `kube-proxy --cleanup` removes it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use client::runtime::SharedInformers;

use crate::config::DnsSettings;
use crate::userspace::interface::ServiceInterface;

/// The dummy interface holding the DNS address.
pub const INTERFACE: &str = "rudder-dns";

/// Makes the address local, binds UDP and TCP on it and follows Services and
/// Endpoints through `informers`. Answers start with `Server::run`.
pub async fn bind(settings: &DnsSettings, informers: &SharedInformers) -> anyhow::Result<dns::Server> {
    hold_address(settings.listen).await?;
    let mut config = dns::Config::new(settings.listen);
    config.domain = settings.domain.clone();
    if !settings.upstreams.is_empty() {
        config.upstreams = settings.upstreams.clone();
    }
    // The address may be one the node gets later (the pod bridge's, say).
    config.free_bind = true;
    dns::Server::bind(config, informers).await.context("starting the cluster DNS (--cluster-dns-address)")
}

/// Puts the listen address on `rudder-dns` unless it is loopback (always local).
async fn hold_address(listen: SocketAddr) -> anyhow::Result<()> {
    let IpAddr::V4(ip) = listen.ip() else {
        anyhow::bail!("the cluster DNS address {listen} is not IPv4");
    };
    if ip.is_loopback() {
        return Ok(());
    }
    let mut interface = ServiceInterface::ensure(INTERFACE)
        .await
        .with_context(|| format!("creating the interface {INTERFACE} for the cluster DNS address {ip}"))?;
    interface
        .set_addresses(&BTreeSet::from([ip]))
        .await
        .with_context(|| format!("putting the cluster DNS address {ip} on {INTERFACE}"))?;
    Ok(())
}

/// Removes the interface and so the address (--cleanup).
pub async fn cleanup() -> anyhow::Result<()> {
    ServiceInterface::remove(INTERFACE).await.with_context(|| format!("removing the interface {INTERFACE}"))
}

/// The DNS counters as OpenMetrics text (without the final "# EOF"), for /metrics.
pub fn metrics(status: &dns::Status) -> String {
    let counts = status.counts();
    let mut text = String::new();
    text.push_str("# HELP kube_proxy_dns_responses DNS responses by how they were answered.\n");
    text.push_str("# TYPE kube_proxy_dns_responses counter\n");
    for (kind, value) in [
        ("authoritative", counts.authoritative),
        ("nxdomain", counts.nxdomain),
        ("forwarded", counts.forwarded),
        ("servfail", counts.servfail),
    ] {
        text.push_str(&format!("kube_proxy_dns_responses_total{{kind=\"{kind}\"}} {value}\n"));
    }
    text.push_str("# HELP kube_proxy_dns_services Services the cluster DNS has records for.\n");
    text.push_str("# TYPE kube_proxy_dns_services gauge\n");
    text.push_str(&format!("kube_proxy_dns_services {}\n", status.service_count()));
    text
}
