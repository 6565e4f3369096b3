//! The cross-node pod network, in the manner of flannel: every node reaches every
//! other node's spec.podCIDR, by a plain route via that node's InternalIP when the
//! nodes share an L2 network (`--network-backend=host-gw`), or through a VXLAN
//! overlay when a router sits between them (`--network-backend=vxlan`).
//!
//! It lives with the kubelet's network code, not in a daemon of its own, because one
//! node agent owns the node's network: the kubelet already makes the bridge, the pod
//! CIDR's gateway address and the masquerade rule, knows the node's pod CIDR and
//! address, and publishes the Node object, so the routes to other nodes are one more
//! part of the same state, kept by the same process with the same privileges. There
//! is nothing extra to deploy, start in order, or keep in step with the kubelet.
//!
//! The shape is level-triggered: `sync` reads the namespace's subnets, computes the
//! desired routes, neighbour and forwarding entries from a list of Node objects
//! (`plan::plan`, pure) and makes the kernel match (`routes`, `vxlan`), touching only
//! what is the kubelet's. `OverlayController` is a thin layer over it: it follows
//! the Node objects through an informer, syncs on every change that matters to
//! routing and at least every resync period (which repairs routes deleted by hand),
//! and publishes this node's VXLAN MAC and tunnel address in its Node's annotations.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use client::runtime::{Change, Informer};
use client::{Api, Client, ListParams, PatchType};
use proto::core::v1::Node;
use serde_json::json;

use super::cidr::Ipv4Cidr;
use super::plan::{
    self, BACKEND_ANNOTATION, Backend, LocalNode, Mac, PUBLIC_IP_ANNOTATION, Plan, SkipReason, VTEP_MAC_ANNOTATION,
};
use super::routes::{self, RouteChanges};
use super::vxlan::{self, EntryChanges, VxlanSettings};
use super::{NetworkError, connect};

/// What this node is and how it routes to the others.
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    pub backend: Backend,
    pub node_name: String,
    /// This node's InternalIP: the source of VXLAN traffic and the address peers
    /// route to.
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Ipv4Cidr,
    pub vxlan: VxlanSettings,
}

/// What one sync wanted and did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub plan: Plan,
    /// vxlan: this node's VTEP MAC, to publish.
    pub vtep_mac: Option<Mac>,
    pub routes: RouteChanges,
    pub neighbours: EntryChanges,
    pub fdb: EntryChanges,
}

/// Makes this network namespace's cross-node routing match `nodes`. Runs in the
/// namespace of the calling thread (a netlink socket belongs to the namespace of the
/// thread that opens it) within a tokio runtime.
pub async fn sync(config: &OverlayConfig, nodes: &[Node]) -> Result<SyncReport, NetworkError> {
    let handle = connect()?;
    let connected = routes::connected_subnets(&handle).await?;
    let local = LocalNode { name: config.node_name.clone(), pod_cidr: config.pod_cidr };
    let plan = plan::plan(config.backend, &local, nodes, &connected);
    let mut report = SyncReport::default();
    match config.backend {
        Backend::Vxlan => {
            let underlay = routes::interface_with_address(&handle, config.node_ip).await?.ok_or_else(|| {
                NetworkError::Config(format!(
                    "this node's address {} is on no interface, so VXLAN has nothing to send from; \
                     pass the node's own address as --node-ip",
                    config.node_ip
                ))
            })?;
            let vtep = vxlan::ensure_vtep(
                &handle,
                &config.vxlan,
                &config.node_name,
                config.node_ip,
                underlay,
                config.pod_cidr,
            )
            .await?;
            // Forwarding and neighbour entries first: a route never points at a
            // peer the device cannot reach yet.
            report.fdb = vxlan::apply_fdb(&handle, &vtep, &plan.fdb).await?;
            report.neighbours = vxlan::apply_neighbours(&handle, &vtep, &plan.neighbours).await?;
            report.routes = routes::apply_routes(&handle, &plan.routes, Some(vtep.index)).await?;
            report.vtep_mac = Some(vtep.mac);
        }
        Backend::HostGw | Backend::None => {
            // A device left from running vxlan before would hold routes of its own.
            vxlan::remove_vtep(&handle, &config.vxlan).await?;
            report.routes = routes::apply_routes(&handle, &plan.routes, None).await?;
        }
    }
    report.plan = plan;
    Ok(report)
}

/// Removes every route of the kubelet's and the VXLAN device (`kubelet cleanup`).
pub async fn remove_all(vxlan: &VxlanSettings) -> Result<(), NetworkError> {
    let handle = connect()?;
    vxlan::remove_vtep(&handle, vxlan).await?;
    let changes = routes::apply_routes(&handle, &[], None).await?;
    match changes.failed.into_iter().next() {
        None => Ok(()),
        Some((destination, error)) => {
            Err(NetworkError::Config(format!("removing the route to {destination}: {error}")))
        }
    }
}

/// `sync` inside the network namespace at `netns` (a /run/netns/NAME or
/// /proc/PID/ns/net path), from a thread of its own that joins it; in the caller's
/// namespace when `netns` is None.
pub async fn sync_in(
    netns: Option<&Path>,
    config: &OverlayConfig,
    nodes: Vec<Node>,
) -> Result<SyncReport, NetworkError> {
    let Some(path) = netns else {
        return sync(config, &nodes).await;
    };
    let path = path.to_path_buf();
    let config = config.clone();
    let work = move || -> Result<SyncReport, NetworkError> {
        let file = std::fs::File::open(&path)
            .map_err(|source| NetworkError::Io { what: format!("opening {}", path.display()), source })?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::Io {
            what: format!("joining the network namespace {}", path.display()),
            source: e.into(),
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
            NetworkError::Io { what: "a runtime for the namespace's netlink socket".into(), source }
        })?;
        runtime.block_on(sync(&config, &nodes))
    };
    // spawn_blocking threads are reused: one that joined another namespace must
    // not run anything else afterwards, so this gets a thread of its own.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("overlay-netns".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|source| NetworkError::Io { what: "starting the namespace thread".into(), source })?;
    rx.await.map_err(|_| NetworkError::Config("the namespace thread ended without an answer".into()))?
}

/// What of a Node matters to routing: other changes (heartbeats, conditions) cause
/// no sync.
fn routing_fingerprint(node: &Node) -> (String, Option<String>, Vec<Option<String>>) {
    let cidr = node.spec.as_ref().map(|s| s.pod_cidr.clone()).unwrap_or_default();
    let ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.iter().find(|a| a.r#type == "InternalIP"))
        .map(|a| a.address.clone());
    let annotations = node.metadata.as_ref().map(|m| &m.annotations);
    let published = [VTEP_MAC_ANNOTATION, PUBLIC_IP_ANNOTATION, BACKEND_ANNOTATION]
        .iter()
        .map(|key| annotations.and_then(|a| a.get(*key).cloned()))
        .collect();
    (cidr, ip, published)
}

fn matters(change: &Change<Node>) -> bool {
    match change {
        Change::Added(_) | Change::Deleted(_) => true,
        Change::Updated { old, new } => routing_fingerprint(old) != routing_fingerprint(new),
    }
}

/// Stops the informer when the controller goes away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps this node's cross-node routes in step with the Node objects.
pub struct OverlayController {
    nodes: Api<Node>,
    config: OverlayConfig,
    resync: Duration,
    netns: Option<PathBuf>,
}

/// What was last logged, so a resync that finds the same problems stays quiet.
#[derive(Default)]
struct Reported {
    skipped: BTreeMap<String, SkipReason>,
    failed: BTreeMap<String, String>,
}

impl OverlayController {
    pub fn new(client: &Client, config: OverlayConfig) -> Self {
        OverlayController { nodes: Api::all(client), config, resync: Duration::from_secs(30), netns: None }
    }

    /// How often routes are checked (and repaired) without any change to Nodes.
    pub fn resync_every(mut self, period: Duration) -> Self {
        self.resync = period.max(Duration::from_millis(100));
        self
    }

    /// Programs the network namespace at `path` instead of the kubelet's own (the
    /// apiserver is still reached from the kubelet's namespace).
    pub fn in_netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    /// Runs until dropped.
    pub async fn run(self) {
        if self.config.backend == Backend::None {
            tracing::info!("--network-backend=none: no routes to other nodes' pods");
            return std::future::pending().await;
        }
        let informer = Informer::new(self.nodes.clone(), ListParams::default());
        let mut changes = informer.subscribe();
        let _informer_task = AbortOnDrop(tokio::spawn(informer.clone().run()));
        informer.wait_synced().await;
        tracing::info!(backend = %self.config.backend, pod_cidr = %self.config.pod_cidr, "routing to other nodes' pod CIDRs");
        let mut reported = Reported::default();
        let mut retry = Duration::from_secs(1);
        loop {
            let wait = match self.sync_once(&informer, &mut reported).await {
                Ok(()) => {
                    retry = Duration::from_secs(1);
                    self.resync
                }
                Err(e) => {
                    tracing::error!(error = %e, "programming routes to other nodes; retrying");
                    let wait = retry.min(self.resync);
                    retry = (retry * 2).min(self.resync);
                    wait
                }
            };
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    change = changes.recv() => match change {
                        None => return,
                        Some(change) if matters(&change) => {
                            // One sync covers every change queued so far.
                            while changes.try_recv().is_ok() {}
                            break;
                        }
                        Some(_) => {}
                    },
                }
            }
        }
    }

    async fn sync_once(&self, informer: &Arc<Informer<Node>>, reported: &mut Reported) -> Result<(), NetworkError> {
        let nodes: Vec<Node> = informer.store().list().iter().map(|n| (**n).clone()).collect();
        let own = nodes.iter().find(|n| n.metadata.as_ref().is_some_and(|m| m.name == self.config.node_name)).cloned();
        let report = sync_in(self.netns.as_deref(), &self.config, nodes).await?;
        self.log(&report, reported);
        if let Some(own) = own {
            self.publish(&own, report.vtep_mac).await;
        }
        Ok(())
    }

    fn log(&self, report: &SyncReport, reported: &mut Reported) {
        for cidr in &report.routes.added {
            tracing::info!(%cidr, "added a route to another node's pods");
        }
        for cidr in &report.routes.removed {
            tracing::info!(%cidr, "removed the route to a node's pods that is gone or changed");
        }
        for (node, reason) in &report.plan.skipped {
            if reported.skipped.get(node) == Some(reason) {
                continue;
            }
            if reason.is_transient() {
                tracing::info!(%node, "no route to the node's pods yet: {reason}");
            } else {
                tracing::error!(%node, "no route to the node's pods: {reason}");
            }
        }
        for (destination, error) in &report.routes.failed {
            if reported.failed.get(destination) != Some(error) {
                tracing::error!(%destination, "{error}");
            }
        }
        reported.skipped = report.plan.skipped.clone();
        reported.failed = report.routes.failed.clone();
    }

    /// Puts this node's backend, VTEP MAC and tunnel address in its annotations
    /// when they are not there already (null removes what vxlan left behind).
    async fn publish(&self, own: &Node, vtep_mac: Option<Mac>) {
        let annotations = own.metadata.as_ref().map(|m| m.annotations.clone()).unwrap_or_default();
        let want: [(&str, Option<String>); 3] = [
            (BACKEND_ANNOTATION, Some(self.config.backend.to_string())),
            (VTEP_MAC_ANNOTATION, vtep_mac.map(|m| m.to_string())),
            (PUBLIC_IP_ANNOTATION, vtep_mac.map(|_| self.config.node_ip.to_string())),
        ];
        if want.iter().all(|(key, value)| annotations.get(*key) == value.as_ref()) {
            return;
        }
        let patch: serde_json::Map<String, serde_json::Value> =
            want.iter().map(|(key, value)| (key.to_string(), json!(value))).collect();
        let patch = json!({"metadata": {"annotations": patch}});
        match self.nodes.patch(&self.config.node_name, PatchType::Merge, &patch).await {
            Ok(_) => {
                tracing::info!(backend = %self.config.backend, "published this node's network backend in its Node")
            }
            Err(e) => tracing::warn!(error = %e, "publishing this node's network backend in its Node; retrying"),
        }
    }
}
