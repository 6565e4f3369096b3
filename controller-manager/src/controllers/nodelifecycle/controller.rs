//! The node lifecycle loop, in the shape of Kubernetes' node lifecycle controller
//! and its NoExecute taint manager:
//! - every `period`, each Node whose kubelet has been silent (no new Ready
//!   heartbeat, no renewed kube-node-lease Lease) for the grace period is marked
//!   Ready=Unknown, and the pods on a node that is not Ready are marked not ready;
//! - each Node's not-ready/unreachable/unschedulable taints follow its conditions;
//! - each pod on a node with NoExecute taints is evicted (deleted gracefully) when
//!   a taint is not tolerated, or when its tolerationSeconds run out. The
//!   apiserver gives every pod 300 s tolerations for not-ready and unreachable
//!   (DefaultTolerationSeconds), so a short outage evicts nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::Api;
use client::runtime::{Change, Informer, WorkQueue, key_of};
use proto::coordination::v1::Lease;
use proto::core::v1::{Node, Pod, PodCondition, Taint};
use proto::meta::v1::Time;
use proto::{ApiError, Reason, Resource};

use super::health::{Monitor, desired_taints, heartbeat, mark_unknown, ready_condition};
use crate::context::Context;
use crate::pods::{BY_NODE, index_by_node, is_finished, is_terminating, node_of};
use crate::tolerations::{Eviction, NO_EXECUTE, eviction};

/// Where kubelets renew their node's Lease.
const LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Debug, Clone, Copy)]
pub struct LifecycleSettings {
    /// How long a kubelet may be silent before its node is Unknown.
    pub grace: Duration,
    /// How often nodes are checked.
    pub period: Duration,
}

pub struct NodeLifecycleController {
    ctx: Arc<Context>,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    settings: LifecycleSettings,
    monitor: Mutex<Monitor>,
    /// Pods whose eviction is to be decided.
    evictions: WorkQueue<String>,
    /// When a NoExecute taint without timeAdded was first seen, by node, key and effect.
    first_seen: Mutex<HashMap<(String, String, String), i64>>,
}

impl NodeLifecycleController {
    pub fn new(ctx: Arc<Context>, settings: LifecycleSettings) -> Arc<Self> {
        Arc::new(NodeLifecycleController {
            nodes: ctx.informers.get::<Node>(),
            leases: ctx.informers.get::<Lease>(),
            pods: ctx.informers.get::<Pod>(),
            ctx,
            monitor: Mutex::new(Monitor::new(settings.grace)),
            settings,
            evictions: WorkQueue::default(),
            first_seen: Mutex::new(HashMap::new()),
        })
    }

    pub async fn run(self: Arc<Self>) {
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.pods.wait_synced().await;
        index_by_node(&self.pods.store());
        let mut tasks = Vec::new();

        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.settings.period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.monitor_nodes().await;
            }
        }));

        let (this, mut pods) = (self.clone(), self.pods.subscribe());
        tasks.push(tokio::spawn(async move {
            while let Some(change) = pods.recv().await {
                if let Change::Added(pod) | Change::Updated { new: pod, .. } = change
                    && node_of(&pod).is_some()
                {
                    this.evictions.add(key_of(pod.as_ref()));
                }
            }
        }));

        let (this, mut nodes) = (self.clone(), self.nodes.subscribe());
        tasks.push(tokio::spawn(async move {
            while let Some(change) = nodes.recv().await {
                let node = change.object().clone();
                let name = node.metadata().name.clone();
                let live = if matches!(change, Change::Deleted(_)) { Vec::new() } else { no_execute(&node) };
                this.forget_gone_taints(&name, live);
                let taints_changed = match &change {
                    Change::Updated { old, new } => no_execute(old) != no_execute(new),
                    Change::Added(_) => true,
                    Change::Deleted(_) => false,
                };
                if taints_changed {
                    for pod in this.pods.store().by_index(BY_NODE, &name) {
                        this.evictions.add(key_of(pod.as_ref()));
                    }
                }
            }
        }));

        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = this.evictions.get().await {
                match this.decide_eviction(&key).await {
                    Ok(()) => this.evictions.forget(&key),
                    Err(e) => {
                        tracing::warn!(pod = key, error = %e, "evicting failed; retrying");
                        this.evictions.add_rate_limited(key.clone());
                    }
                }
                this.evictions.done(&key);
            }
        }));
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    async fn monitor_nodes(&self) {
        let store = self.nodes.store();
        self.lock_monitor().retain(|name| store.get(name).is_some());
        for node in store.list() {
            if let Err(e) = self.check_node(&node).await {
                tracing::warn!(node = %node.metadata().name, error = %e, "node health check failed");
            }
        }
    }

    fn lock_monitor(&self) -> std::sync::MutexGuard<'_, Monitor> {
        self.monitor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn check_node(&self, cached: &Node) -> Result<(), ApiError> {
        let name = cached.metadata().name.clone();
        let lease = self.leases.store().get_named(LEASE_NAMESPACE, &name);
        let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| (t.seconds, t.nanos)));
        let silent = self.lock_monitor().silent(&name, heartbeat(cached), renewed, Instant::now());
        let api: Api<Node> = Api::all(&self.ctx.client);
        let mut node = cached.clone();
        if silent {
            let mut updated = node.clone();
            if mark_unknown(updated.status.get_or_insert_with(Default::default), Time::now_seconds()) {
                node = match api.update_status(&updated).await {
                    Ok(node) => node,
                    // A kubelet wrote meanwhile, or the node went: look again next period.
                    Err(e) if e.is(Reason::Conflict) || e.is(Reason::NotFound) => return Ok(()),
                    Err(e) => return Err(e),
                };
                tracing::info!(node = name, "kubelet stopped posting node status; node is Unknown");
                self.ctx.recorder.normal(&node, "NodeNotReady", format!("Node {name} status is now: NodeNotReady"));
            }
        }
        if ready_condition(&node).is_some_and(|c| c.status != "True") {
            self.mark_pods_not_ready(&name).await?;
        }
        let taints = desired_taints(&node, Time::now_seconds());
        let current = node.spec.as_ref().map(|s| s.taints.clone()).unwrap_or_default();
        if taints != current {
            node.spec.get_or_insert_with(Default::default).taints = taints;
            match api.update(&node).await {
                Ok(_) => {}
                Err(e) if e.is(Reason::Conflict) || e.is(Reason::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), ApiError> {
        for pod in self.pods.store().by_index(BY_NODE, node) {
            if is_terminating(&pod) || is_finished(&pod) {
                continue;
            }
            let status = pod.status.clone().unwrap_or_default();
            if status.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "False") {
                continue;
            }
            let mut updated = pod.as_ref().clone();
            let conditions = &mut updated.status.get_or_insert_with(Default::default).conditions;
            conditions.retain(|c| c.r#type != "Ready");
            conditions.push(PodCondition {
                r#type: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(Time::now_seconds()),
                reason: "NodeNotReady".into(),
                message: format!("node {node} is not ready"),
                ..Default::default()
            });
            let api: Api<Pod> = Api::namespaced(&self.ctx.client, &pod.metadata().namespace);
            match api.update_status(&updated).await {
                Ok(_) => {}
                Err(e) if e.is(Reason::Conflict) || e.is(Reason::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Evicts the pod if its node's NoExecute taints say so now, or looks again
    /// when its tolerations run out.
    async fn decide_eviction(&self, key: &str) -> Result<(), ApiError> {
        let Some(pod) = self.pods.store().get(key) else { return Ok(()) };
        if is_terminating(&pod) || is_finished(&pod) {
            return Ok(());
        }
        let Some(node) = node_of(&pod).and_then(|n| self.nodes.store().get(n)) else { return Ok(()) };
        let node_name = node.metadata().name.clone();
        let taints = no_execute(&node);
        let tolerations = pod.spec.as_ref().map(|s| s.tolerations.as_slice()).unwrap_or_default();
        let now = Time::now().seconds;
        let started = |taint: &Taint| self.taint_start(&node_name, taint, now);
        match eviction(tolerations, &taints, started, now) {
            Eviction::Never => Ok(()),
            Eviction::At(at) if at > now => {
                self.evictions.add_after(key.to_string(), Duration::from_secs(at.abs_diff(now)));
                Ok(())
            }
            Eviction::At(_) => {
                let api: Api<Pod> = Api::namespaced(&self.ctx.client, &pod.metadata().namespace);
                match api.delete(&pod.metadata().name, Default::default()).await {
                    Ok(_) => {}
                    Err(e) if e.is(Reason::NotFound) => return Ok(()),
                    Err(e) => return Err(e),
                }
                tracing::info!(pod = key, node = node_name, "evicted for a NoExecute taint");
                self.ctx.recorder.normal(
                    pod.as_ref(),
                    "TaintManagerEviction",
                    format!("Marking for deletion Pod {key}"),
                );
                Ok(())
            }
        }
    }

    /// A taint's start: its timeAdded, else when this controller first saw it.
    fn taint_start(&self, node: &str, taint: &Taint, now: i64) -> i64 {
        if let Some(added) = &taint.time_added {
            return added.seconds;
        }
        let mut seen = self.first_seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *seen.entry((node.to_string(), taint.key.clone(), taint.effect.clone())).or_insert(now)
    }

    fn forget_gone_taints(&self, node: &str, taints: Vec<Taint>) {
        let mut seen = self.first_seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.retain(|(n, key, effect), _| n != node || taints.iter().any(|t| &t.key == key && &t.effect == effect));
    }
}

fn no_execute(node: &Node) -> Vec<Taint> {
    let taints = node.spec.as_ref().map(|s| s.taints.as_slice()).unwrap_or_default();
    taints.iter().filter(|t| t.effect == NO_EXECUTE).cloned().collect()
}
