//! The node's presence in the cluster: it registers the Node object, renews the node's
//! Lease in kube-node-lease, and posts the node status (capacity, conditions, addresses)
//! when it changes and at least every minute. It never touches pods.

pub mod machine;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client::{Api, Client};
use proto::ApiError;
use proto::Reason;
use proto::coordination::v1::{Lease, LeaseSpec};
use proto::core::v1::{DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus};
use proto::meta::v1::{MicroTime, ObjectMeta, Time};

use crate::config::Settings;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
const STATUS_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// What the node's conditions depend on beyond the machine itself.
#[derive(Clone, Default)]
pub struct Health {
    /// The pod network is set up (bridge, addresses, masquerade).
    pub network_ready: Arc<AtomicBool>,
}

pub struct NodeAgent {
    nodes: Api<Node>,
    leases: Api<Lease>,
    settings: Settings,
    node_ip: Ipv4Addr,
    health: Health,
}

impl NodeAgent {
    pub fn new(client: &Client, settings: &Settings, health: Health) -> Self {
        NodeAgent {
            nodes: Api::all(client),
            leases: Api::namespaced(client, LEASE_NAMESPACE),
            node_ip: settings.node_ip.unwrap_or_else(machine::default_node_ip),
            settings: settings.clone(),
            health,
        }
    }

    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }

    fn desired_labels(&self) -> std::collections::BTreeMap<String, String> {
        let mut labels: std::collections::BTreeMap<String, String> =
            self.settings.node_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert("kubernetes.io/hostname".into(), self.settings.node_name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), machine::system_info().architecture);
        labels
    }

    /// Creates the Node, or brings an existing one's labels and taints up to date
    /// (labels added by others are kept). Returns the Node as stored.
    pub async fn register(&self) -> Result<Node, ApiError> {
        let node = Node {
            metadata: Some(ObjectMeta {
                name: self.settings.node_name.clone(),
                labels: self.desired_labels(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                pod_cidr: self.settings.pod_cidr.map(|c| c.to_string()).unwrap_or_default(),
                pod_cidrs: self.settings.pod_cidr.map(|c| vec![c.to_string()]).unwrap_or_default(),
                taints: self.settings.taints.clone(),
                ..Default::default()
            }),
            status: None,
        };
        let stored = match self.nodes.create(&node).await {
            Ok(created) => created,
            Err(e) if e.is(Reason::AlreadyExists) => {
                let mut existing = self.nodes.get(&self.settings.node_name).await?;
                let meta = existing.metadata.get_or_insert_with(Default::default);
                let mut changed = false;
                for (k, v) in self.desired_labels() {
                    if meta.labels.get(&k) != Some(&v) {
                        meta.labels.insert(k, v);
                        changed = true;
                    }
                }
                let spec = existing.spec.get_or_insert_with(Default::default);
                for taint in &self.settings.taints {
                    if !spec.taints.iter().any(|t| t.key == taint.key && t.effect == taint.effect) {
                        spec.taints.push(taint.clone());
                        changed = true;
                    }
                }
                if changed { self.nodes.update(&existing).await? } else { existing }
            }
            Err(e) => return Err(e),
        };
        tracing::info!(node = %self.settings.node_name, "registered the node");
        Ok(stored)
    }

    /// The node's pod CIDR: --pod-cidr, else the Node's spec.podCIDR once the
    /// controller-manager has given it one.
    pub async fn wait_pod_cidr(&self) -> crate::network::cidr::Ipv4Cidr {
        if let Some(cidr) = self.settings.pod_cidr {
            return cidr;
        }
        let mut warned = false;
        loop {
            match self.nodes.get(&self.settings.node_name).await {
                Ok(node) => {
                    let text = node.spec.map(|s| s.pod_cidr).unwrap_or_default();
                    if !text.is_empty() {
                        match text.parse() {
                            Ok(cidr) => return cidr,
                            Err(e) => tracing::error!(error = %e, "the Node's spec.podCIDR is unusable"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the Node for its podCIDR"),
            }
            if !warned {
                tracing::info!("waiting for the Node's spec.podCIDR (or pass --pod-cidr)");
                warned = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Renews the Lease every 10 s, creating it when missing.
    pub async fn run_lease(&self) {
        loop {
            if let Err(e) = self.renew_lease().await {
                tracing::warn!(error = %e, "renewing the node lease");
            }
            tokio::time::sleep(LEASE_RENEW_EVERY).await;
        }
    }

    pub async fn renew_lease(&self) -> Result<(), ApiError> {
        let name = &self.settings.node_name;
        let spec = LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime::now()),
            ..Default::default()
        };
        match self.leases.get_opt(name).await? {
            Some(mut lease) => {
                let old = lease.spec.take().unwrap_or_default();
                lease.spec = Some(LeaseSpec { acquire_time: old.acquire_time, ..spec });
                self.leases.update(&lease).await?;
            }
            None => {
                let lease = Lease {
                    metadata: Some(ObjectMeta {
                        name: name.clone(),
                        namespace: LEASE_NAMESPACE.into(),
                        ..Default::default()
                    }),
                    spec: Some(LeaseSpec { acquire_time: Some(MicroTime::now()), ..spec }),
                };
                self.leases.create(&lease).await?;
            }
        }
        Ok(())
    }

    /// Computes the status every --node-status-update-frequency; posts it when it
    /// changed and at least every minute.
    pub async fn run_status(&self) {
        let mut last: Option<(NodeStatus, Instant)> = None;
        loop {
            let status = self.observe();
            let due = match &last {
                None => true,
                Some((previous, at)) => !same_status(previous, &status) || at.elapsed() >= STATUS_AT_LEAST_EVERY,
            };
            if due {
                match self.post_status(status.clone()).await {
                    Ok(()) => last = Some((status, Instant::now())),
                    Err(e) => tracing::warn!(error = %e, "posting the node status"),
                }
            }
            tokio::time::sleep(self.settings.status_update_frequency).await;
        }
    }

    /// The status as the machine shows it now (transition times filled in on posting).
    pub fn observe(&self) -> NodeStatus {
        let capacity = machine::capacity(&self.settings.root_dir, self.settings.max_pods);
        let allocatable = machine::allocatable(&capacity, &self.settings.reserved);
        let memory_pressure = machine::meminfo_bytes("MemAvailable").is_some_and(|b| b < 100 * 1024 * 1024);
        let disk_pressure = machine::disk_bytes(&self.settings.root_dir).is_some_and(|(t, a)| a * 10 < t);
        let pid_pressure = machine::pid_usage().is_some_and(|(n, max)| n * 10 > max * 9);
        let network = self.health.network_ready.load(Ordering::SeqCst);
        let condition = |kind: &str, on: bool, yes: (&str, &str), no: (&str, &str)| {
            let (reason, message) = if on { yes } else { no };
            NodeCondition {
                r#type: kind.into(),
                status: if on { "True" } else { "False" }.into(),
                reason: reason.into(),
                message: message.into(),
                ..Default::default()
            }
        };
        let conditions = vec![
            condition(
                "MemoryPressure",
                memory_pressure,
                ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
                ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ),
            condition(
                "DiskPressure",
                disk_pressure,
                ("KubeletHasDiskPressure", "kubelet has disk pressure"),
                ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ),
            condition(
                "PIDPressure",
                pid_pressure,
                ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
                ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ),
            condition(
                "Ready",
                network,
                ("KubeletReady", "kubelet is posting ready status"),
                ("KubeletNotReady", "the pod network is not ready yet"),
            ),
        ];
        // Where the apiserver reaches this kubelet's streaming endpoint (logs, exec).
        let port = i32::from(self.settings.streaming_address.port());
        NodeStatus {
            capacity: machine::quantities(&capacity),
            allocatable: machine::quantities(&allocatable),
            conditions,
            addresses: vec![
                NodeAddress { r#type: "InternalIP".into(), address: self.node_ip.to_string() },
                NodeAddress { r#type: "Hostname".into(), address: self.settings.node_name.clone() },
            ],
            daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port }) }),
            node_info: Some(machine::system_info()),
            ..Default::default()
        }
    }

    async fn post_status(&self, mut status: NodeStatus) -> Result<(), ApiError> {
        let mut node = self.nodes.get(&self.settings.node_name).await?;
        let now = Time::now_seconds();
        let old = node.status.take().unwrap_or_default();
        for condition in &mut status.conditions {
            let previous = old.conditions.iter().find(|c| c.r#type == condition.r#type);
            condition.last_heartbeat_time = Some(now);
            condition.last_transition_time = match previous {
                Some(p) if p.status == condition.status => p.last_transition_time,
                _ => Some(now),
            };
        }
        status.images = old.images;
        node.status = Some(status);
        self.nodes.update_status(&node).await?;
        Ok(())
    }
}

/// Equal but for heartbeat and transition times.
fn same_status(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_heartbeat_time = None;
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}
