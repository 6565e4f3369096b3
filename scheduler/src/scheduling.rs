//! One scheduler's work while it leads: feed the cache and the queue from the
//! informers, then take pods from the queue one at a time, pick a node (filter a
//! sample of nodes, score the feasible ones), assume the pod there at once and bind
//! it in the background, many bindings in flight at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use client::Client;
use client::runtime::{Change, EventRecorder, SharedInformers, Store};
use proto::Resource as _;
use proto::core::v1::{Binding, Node, ObjectReference, PersistentVolumeClaim, Pod, PodCondition, Service};
use proto::meta::v1::ObjectMeta;
use proto::{ApiError, Reason};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::cache::{Cache, PodInfo};
use crate::filters::{self, PodFacts};
use crate::metrics::Metrics;
use crate::queue::SchedulingQueue;
use crate::scores::{self, Weights};

#[derive(Debug, Clone)]
pub struct Profile {
    pub scheduler_name: String,
    pub weights: Weights,
    /// 0: adaptive, as kube-scheduler (50% minus 1% per 125 nodes, at least 5%).
    pub percentage_of_nodes_to_score: u32,
    pub max_bindings_in_flight: usize,
}

/// Below this many nodes every node is examined.
const MIN_FEASIBLE_NODES: usize = 100;

pub struct Scheduler {
    client: Client,
    profile: Profile,
    cache: Mutex<Cache>,
    pub queue: Arc<SchedulingQueue>,
    recorder: EventRecorder,
    claims: Store<PersistentVolumeClaim>,
    services: Store<Service>,
    metrics: Arc<Metrics>,
    next_start: AtomicUsize,
}

enum Decision {
    Node(String),
    /// Nothing fits: the FailedScheduling message.
    Unschedulable(String),
}

fn pod_is_terminal(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase == "Succeeded" || s.phase == "Failed")
}

fn assigned_node(pod: &Pod) -> &str {
    pod.spec.as_ref().map_or("", |s| s.node_name.as_str())
}

impl Scheduler {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn responsible_for(&self, pod: &Pod) -> bool {
        pod.spec.as_ref().is_some_and(|s| s.scheduler_name == self.profile.scheduler_name)
    }

    fn on_pod(&self, change: Change<Pod>) {
        let pod = change.object().clone();
        let key = client::runtime::key_of(pod.as_ref());
        let deleted = matches!(change, Change::Deleted(_));
        if deleted || pod_is_terminal(&pod) {
            self.queue.remove(&key);
            let mut cache = self.cache();
            cache.clear_nomination(&key);
            if cache.remove_pod(&key).is_some() {
                self.queue.move_all();
            }
            return;
        }
        let node = assigned_node(&pod);
        if !node.is_empty() {
            self.queue.remove(&key);
            let node = node.to_string();
            let mut cache = self.cache();
            cache.clear_nomination(&key);
            cache.set_bound_pod(Arc::new(PodInfo::new(pod)), &node);
            return;
        }
        // A pod with scheduling gates waits, out of the queue, until they are all
        // removed (the update that removes the last one queues it).
        let gated = pod.spec.as_ref().is_some_and(|s| !s.scheduling_gates.is_empty());
        if gated || pod.metadata().deletion_timestamp.is_some() || !self.responsible_for(&pod) {
            self.queue.remove(&key);
            self.cache().clear_nomination(&key);
            return;
        }
        {
            let mut cache = self.cache();
            // A stale event from before our own binding must not queue it again.
            if cache.is_assumed(&key) {
                return;
            }
            // A nomination recorded before this scheduler led (or restarted) still
            // holds the room its victims leave.
            let nominated = pod.status.as_ref().map_or("", |s| s.nominated_node_name.as_str());
            if !nominated.is_empty() && cache.nominated_node(&key).is_none() {
                cache.nominate(Arc::new(PodInfo::new(pod.clone())), nominated);
            }
        }
        self.queue.add_or_update(&key, pod);
    }

    fn on_node(&self, change: Change<Node>) {
        match change {
            Change::Deleted(node) => self.cache().remove_node(&node.metadata().name),
            Change::Added(node) => {
                self.cache().set_node(node);
                self.queue.move_all();
            }
            Change::Updated { old, new } => {
                let relevant = old.spec != new.spec
                    || old.metadata().labels != new.metadata().labels
                    || old.status.as_ref().map(|s| (&s.allocatable, &s.conditions))
                        != new.status.as_ref().map(|s| (&s.allocatable, &s.conditions));
                self.cache().set_node(new);
                if relevant {
                    self.queue.move_all();
                }
            }
        }
    }

    /// Why the pod cannot be scheduled yet because of its claims, if it cannot.
    fn claims_pending(&self, pod: &Pod) -> Option<String> {
        let spec = pod.spec.as_ref()?;
        for volume in &spec.volumes {
            let Some(claim) = volume.persistent_volume_claim.as_ref() else { continue };
            match self.claims.get_named(&pod.metadata().namespace, &claim.claim_name) {
                None => return Some(format!("persistentvolumeclaim \"{}\" not found", claim.claim_name)),
                Some(pvc) => {
                    let bound = pvc.status.as_ref().is_some_and(|s| s.phase == "Bound")
                        || pvc.spec.as_ref().is_some_and(|s| !s.volume_name.is_empty());
                    if !bound {
                        return Some("pod has unbound immediate PersistentVolumeClaims".to_string());
                    }
                }
            }
        }
        None
    }

    fn decide(&self, cache: &Cache, info: &PodInfo) -> Decision {
        let nodes = cache.nodes();
        let total = cache.node_count();
        if total == 0 {
            // kube-scheduler's ErrNoNodesAvailable, checked before any filter.
            return Decision::Unschedulable("no nodes available to schedule pods".to_string());
        }
        if let Some(why) = self.claims_pending(&info.pod) {
            return Decision::Unschedulable(format!("0/{total} nodes are available: {why}."));
        }
        let mut facts = PodFacts::new(info);
        facts.reserved = cache.reservations_against(info);
        if info.pod.spec.as_ref().is_some_and(|s| !s.topology_spread_constraints.is_empty()) {
            let spread = crate::spread::prepare(cache, info, |n| filters::matches_affinity(&facts, n));
            facts.spread = spread;
        }
        match crate::interpod::InterPod::prepare(cache, info) {
            Ok(state) => facts.interpod = state,
            Err(e) => return Decision::Unschedulable(format!("0/{total} nodes are available: spec.affinity.{e}.")),
        }
        let wanted = self.feasible_wanted(total);
        let start = if nodes.is_empty() { 0 } else { self.next_start.load(Ordering::Relaxed) % nodes.len() };
        let mut feasible = Vec::with_capacity(wanted.min(nodes.len()));
        let mut failures = Vec::new();
        let mut examined = 0;
        for i in 0..nodes.len() {
            let node = &nodes[(start + i) % nodes.len()];
            if node.node.is_none() {
                continue;
            }
            examined = i + 1;
            match filters::check(&facts, node) {
                None => {
                    feasible.push(node);
                    if feasible.len() >= wanted {
                        break;
                    }
                }
                Some(failure) => failures.push(failure),
            }
        }
        if !nodes.is_empty() {
            self.next_start.store((start + examined) % nodes.len(), Ordering::Relaxed);
        }
        if feasible.is_empty() {
            return Decision::Unschedulable(filters::fit_error(total, &failures));
        }
        let peers = self.peers(info);
        let totals = scores::score(info, &feasible, &self.profile.weights, peers.as_ref(), &facts);
        let mut best = 0;
        for (i, t) in totals.iter().enumerate() {
            if *t > totals[best] {
                best = i;
            }
        }
        Decision::Node(feasible[best].name.clone())
    }

    /// The pod's owner and the Services selecting it, if any (for spreading).
    fn peers(&self, info: &PodInfo) -> Option<scores::Peers> {
        let meta = info.pod.metadata();
        let owner_uid = meta.owner_references.iter().find(|r| r.controller == Some(true)).map(|r| r.uid.clone());
        let selectors: Vec<proto::labels::Selector> = self
            .services
            .by_index(client::runtime::store::BY_NAMESPACE, &meta.namespace)
            .iter()
            .filter_map(|s| s.spec.as_ref())
            .filter(|s| !s.selector.is_empty())
            .map(|s| proto::labels::Selector::from_map(&s.selector))
            .filter(|s| s.matches(&meta.labels))
            .collect();
        (owner_uid.is_some() || !selectors.is_empty()).then(|| scores::Peers {
            namespace: meta.namespace.clone(),
            owner_uid,
            selectors,
        })
    }

    fn feasible_wanted(&self, nodes: usize) -> usize {
        if nodes < MIN_FEASIBLE_NODES {
            return nodes.max(1);
        }
        let percentage = match self.profile.percentage_of_nodes_to_score {
            0 => (50 - (nodes / 125) as i64).max(5) as usize,
            p => (p as usize).min(100),
        };
        (nodes * percentage / 100).max(MIN_FEASIBLE_NODES)
    }

    async fn bind(self: Arc<Self>, info: Arc<PodInfo>, node: String, first_attempt: Instant) {
        let meta = info.pod.metadata();
        let binding = Binding {
            metadata: Some(ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                ..Default::default()
            }),
            target: Some(ObjectReference { kind: "Node".into(), name: node.clone(), ..Default::default() }),
        };
        match self.client.bind(binding).await {
            Ok(_) => {
                self.queue.remove(&info.key);
                self.metrics.scheduled.fetch_add(1, Ordering::Relaxed);
                self.metrics.e2e_duration.observe(first_attempt.elapsed());
                self.recorder.normal(
                    info.pod.as_ref(),
                    "Scheduled",
                    format!("Successfully assigned {} to {node}", info.key),
                );
            }
            Err(e) => self.binding_failed(&info, &node, &e),
        }
    }

    /// Records in the pod's status (UpdateStatus, retried on conflicts) that it
    /// fits nowhere — PodScheduled=False, reason Unschedulable, with the
    /// FailedScheduling message — and the node it is nominated to, if it preempted.
    async fn record_unschedulable(self: Arc<Self>, info: Arc<PodInfo>, message: String, nominated: Option<String>) {
        let meta = info.pod.metadata();
        let api: client::Api<Pod> = client::Api::namespaced(&self.client, &meta.namespace);
        for _ in 0..5 {
            let mut pod = match api.get(&meta.name).await {
                Ok(pod) => pod,
                Err(e) if e.is(Reason::NotFound) => return,
                Err(e) => {
                    tracing::debug!(pod = %info.key, error = %e, "reading the pod to record it unschedulable failed");
                    return;
                }
            };
            if !assigned_node(&pod).is_empty() {
                return;
            }
            let status = pod.status.get_or_insert_with(Default::default);
            let before = status.clone();
            if let Some(node) = &nominated {
                status.nominated_node_name = node.clone();
            }
            let unchanged = status.conditions.iter().any(|c| {
                c.r#type == "PodScheduled" && c.status == "False" && c.reason == "Unschedulable" && c.message == message
            });
            if !unchanged {
                status.conditions.retain(|c| c.r#type != "PodScheduled");
                status.conditions.push(PodCondition {
                    r#type: "PodScheduled".into(),
                    status: "False".into(),
                    reason: "Unschedulable".into(),
                    message: message.clone(),
                    last_transition_time: Some(proto::meta::v1::Time::now_seconds()),
                    ..Default::default()
                });
            }
            if *status == before {
                return;
            }
            match api.update_status(&pod).await {
                Ok(_) => return,
                Err(e) if e.is(Reason::Conflict) => continue,
                Err(e) => {
                    tracing::debug!(pod = %info.key, error = %e, "recording the pod unschedulable failed");
                    return;
                }
            }
        }
    }

    fn binding_failed(&self, info: &PodInfo, node: &str, error: &ApiError) {
        self.cache().forget(&info.key);
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        if error.is(Reason::NotFound) {
            self.queue.remove(&info.key);
            return;
        }
        tracing::warn!(pod = %info.key, node, error = %error, "binding failed; retrying");
        self.queue.retry(&info.key);
    }

    fn unschedulable(self: &Arc<Self>, info: &Arc<PodInfo>, message: String, nominated: Option<String>) {
        self.metrics.unschedulable.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pod = %info.key, %message, "unschedulable");
        self.recorder.warning(info.pod.as_ref(), "FailedScheduling", message.clone());
        self.queue.unschedulable(&info.key);
        tokio::spawn(self.clone().record_unschedulable(info.clone(), message, nominated));
    }

    /// Evicts the victims (graceful deletion); the pod is nominated to the node
    /// (in the cache by the caller, in its status by `record_unschedulable`) and
    /// tried again when the victims are gone.
    fn preempt(self: Arc<Self>, info: &PodInfo, node: String, victims: Vec<Arc<PodInfo>>) {
        tracing::info!(pod = %info.key, node, victims = victims.len(), "preempting");
        self.metrics.preemption_victims.fetch_add(victims.len() as u64, Ordering::Relaxed);
        let preemptor = info.pod.clone();
        tokio::spawn(async move {
            let meta = preemptor.metadata();
            for victim in victims {
                let vm = victim.pod.metadata();
                let api: client::Api<Pod> = client::Api::namespaced(&self.client, &vm.namespace);
                self.recorder.normal(
                    victim.pod.as_ref(),
                    "Preempted",
                    format!("Preempted by pod {} on node {node}", meta.uid),
                );
                if let Err(e) = api.delete(&vm.name, Default::default()).await
                    && !e.is(Reason::NotFound)
                {
                    tracing::warn!(victim = %victim.key, error = %e, "evicting a preemption victim failed");
                }
            }
        });
    }

    pub fn lengths(&self) -> crate::queue::Lengths {
        self.queue.lengths()
    }
}

fn drain<K: proto::Resource>(rx: &mut mpsc::UnboundedReceiver<Change<K>>, mut apply: impl FnMut(Change<K>)) {
    while let Ok(change) = rx.try_recv() {
        apply(change);
    }
}

/// Schedules until dropped. `informers` are shared with the process so that a
/// standby keeps warm caches.
pub async fn run(
    client: Client,
    informers: Arc<SharedInformers>,
    recorder: EventRecorder,
    profile: Profile,
    metrics: Arc<Metrics>,
    current: Arc<Mutex<Option<Arc<SchedulingQueue>>>>,
) {
    let nodes = informers.get::<Node>();
    let pods = informers.get::<Pod>();
    let claims = informers.get::<PersistentVolumeClaim>();
    let services = informers.get::<Service>();
    nodes.wait_synced().await;
    pods.wait_synced().await;
    claims.wait_synced().await;
    services.wait_synced().await;
    let max_in_flight = profile.max_bindings_in_flight.max(1);
    let scheduler = Arc::new(Scheduler {
        client,
        profile,
        cache: Mutex::new(Cache::default()),
        queue: SchedulingQueue::new(),
        recorder,
        claims: claims.store(),
        services: services.store(),
        metrics: metrics.clone(),
        next_start: AtomicUsize::new(0),
    });
    *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(scheduler.queue.clone());
    // A subscription replays the whole store before it returns: applying what is
    // queued now gives a complete picture before the first decision.
    let mut node_rx = nodes.subscribe();
    let mut pod_rx = pods.subscribe();
    let mut claim_rx = claims.subscribe();
    drain(&mut node_rx, |c| scheduler.on_node(c));
    drain(&mut pod_rx, |c| scheduler.on_pod(c));
    drain(&mut claim_rx, |_| {});
    tracing::info!(nodes = scheduler.cache().node_count(), pending = ?scheduler.lengths(), "scheduling");

    let mut tasks = JoinSet::new();
    {
        let s = scheduler.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    Some(c) = node_rx.recv() => s.on_node(c),
                    Some(c) = pod_rx.recv() => s.on_pod(c),
                    Some(_) = claim_rx.recv() => s.queue.move_all(),
                    else => break,
                }
            }
        });
    }
    tasks.spawn(scheduler.queue.clone().run_backoff_flusher());
    let bindings = Arc::new(Semaphore::new(max_in_flight));
    let mut binds = JoinSet::new();
    loop {
        let queued = scheduler.queue.pop().await;
        while binds.try_join_next().is_some() {}
        let started = Instant::now();
        let info = Arc::new(PodInfo::new(queued.pod.clone()));
        let decision = {
            let mut cache = scheduler.cache();
            let decision = scheduler.decide(&cache, &info);
            if let Decision::Node(node) = &decision {
                // Placed (on its nominated node or elsewhere): it holds room by
                // its assumption now, no longer by a nomination.
                cache.clear_nomination(&info.key);
                cache.assume(info.clone(), node);
            }
            decision
        };
        metrics.attempt_duration.observe(started.elapsed());
        match decision {
            Decision::Node(node) => {
                let Ok(permit) = bindings.clone().acquire_owned().await else { return };
                let s = scheduler.clone();
                binds.spawn(async move {
                    s.bind(info, node, queued.first_attempt).await;
                    drop(permit);
                });
            }
            Decision::Unschedulable(message) => {
                let mut nominated = None;
                {
                    let mut cache = scheduler.cache();
                    if let Some((node, victims)) = crate::preemption::find(&cache, &info) {
                        cache.nominate(info.clone(), &node);
                        nominated = Some(node.clone());
                        drop(cache);
                        scheduler.clone().preempt(&info, node, victims);
                    }
                }
                scheduler.unschedulable(&info, message, nominated);
            }
        }
    }
}
