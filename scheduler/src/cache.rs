//! The scheduler's picture of the cluster: every node with what is requested on it
//! and the pods it runs, including pods the scheduler has only *assumed* there (it
//! decided, and the binding is on its way), so that the next decision already sees
//! them. The informers' view confirms an assumption; a failed binding forgets it.
//!
//! Node-derived facts (allocatable, readiness) are computed when a node changes,
//! never per scheduling decision.

use std::collections::HashMap;
use std::sync::Arc;

use proto::core::v1::{Node, Pod};

use crate::resources::{Resources, node_allocatable, pod_nonzero_requests, pod_requests};

/// A host port a pod claims: (host IP, protocol, port). An empty or 0.0.0.0 IP is
/// every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

/// A pod with what the scheduler needs of it worked out once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub key: String,
    pub requests: Resources,
    pub nonzero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let key = client::runtime::key_of(pod.as_ref());
        let spec = pod.spec.as_ref();
        let host_ports = spec
            .into_iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter()))
            .flat_map(|c| c.ports.iter())
            .filter(|p| p.host_port > 0)
            .map(|p| HostPort {
                ip: p.host_ip.clone(),
                protocol: if p.protocol.is_empty() { "TCP".to_string() } else { p.protocol.clone() },
                port: p.host_port,
            })
            .collect();
        PodInfo {
            key,
            requests: pod_requests(&pod),
            nonzero_requests: pod_nonzero_requests(&pod),
            host_ports,
            priority: priority_of(&pod),
            pod,
        }
    }

    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        &self.pod.metadata().labels
    }

    pub fn namespace(&self) -> &str {
        &self.pod.metadata().namespace
    }
}

/// A pod's priority (spec.priority; 0 when unset).
pub fn priority_of(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

use proto::Resource as _;

/// One node as the scheduler sees it.
#[derive(Debug)]
pub struct NodeInfo {
    pub name: String,
    /// None while the node is gone but pods bound to it are still known.
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub ready: bool,
    pub requested: Resources,
    pub nonzero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// How many of `pods` have inter-pod (anti-)affinity terms, so that pods
    /// without any skip the scan of every pod when nobody has them.
    pub pods_with_pod_affinity: usize,
}

impl NodeInfo {
    fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            node: None,
            allocatable: Resources::default(),
            allowed_pods: 0,
            ready: false,
            requested: Resources::default(),
            nonzero_requested: Resources::default(),
            pods: Vec::new(),
            used_ports: Vec::new(),
            pods_with_pod_affinity: 0,
        }
    }

    fn set_node(&mut self, node: Arc<Node>) {
        let (allocatable, pods) = node_allocatable(&node);
        self.allocatable = allocatable;
        self.allowed_pods = pods;
        self.ready = node
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"));
        self.node = Some(node);
    }

    fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.nonzero_requested.add(&pod.nonzero_requests);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods_with_pod_affinity += usize::from(crate::interpod::has_terms(&pod.pod));
        self.pods.push(pod);
    }

    fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let at = self.pods.iter().position(|p| p.key == key)?;
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests);
        self.nonzero_requested.sub(&pod.nonzero_requests);
        self.pods_with_pod_affinity -= usize::from(crate::interpod::has_terms(&pod.pod));
        if !pod.host_ports.is_empty() {
            self.used_ports = self.pods.iter().flat_map(|p| p.host_ports.iter().cloned()).collect();
        }
        Some(pod)
    }

    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.node.as_ref().map(|n| &n.metadata().labels)
    }
}

/// What nominated pods hold on one node.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    pub requests: Resources,
    pub pods: i64,
    pub host_ports: Vec<HostPort>,
}

#[derive(Debug, Clone)]
struct Placement {
    node: String,
    assumed: bool,
}

/// Nodes in a stable order (the scheduler walks them round-robin) with an index by
/// name, and where every known pod is.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    pods: HashMap<String, Placement>,
    /// Pods that preempted victims on a node and wait for them to go, by pod key:
    /// the node they were nominated to and the pod. Their requests stay reserved
    /// there against pods of lower or equal priority, as in Kubernetes.
    nominated: HashMap<String, (String, Arc<PodInfo>)>,
    /// The sum of the nodes' `pods_with_pod_affinity`, so that an attempt for a pod
    /// without terms knows at once whether any other pod has some.
    pods_with_pod_affinity: usize,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// Whether any placed pod has inter-pod (anti-)affinity terms.
    pub fn any_pod_affinity(&self) -> bool {
        self.pods_with_pod_affinity > 0
    }

    /// How many real nodes there are (not counting ghosts of deleted ones).
    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.node.is_some()).count()
    }

    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let at = match self.by_name.get(name) {
            Some(&at) => at,
            None => {
                self.nodes.push(NodeInfo::new(name));
                self.by_name.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[at]
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata().name.clone();
        self.entry(&name).set_node(node);
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(&at) = self.by_name.get(name) else { return };
        self.nodes[at].node = None;
        self.drop_if_empty(at);
    }

    fn drop_if_empty(&mut self, at: usize) {
        if self.nodes[at].node.is_some() || !self.nodes[at].pods.is_empty() {
            return;
        }
        let gone = self.nodes.swap_remove(at);
        self.by_name.remove(&gone.name);
        if at < self.nodes.len() {
            let moved = self.nodes[at].name.clone();
            self.by_name.insert(moved, at);
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    pub fn contains_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Places the pod on `node` before the binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, node, true);
    }

    /// Undoes an assumption whose binding failed.
    pub fn forget(&mut self, key: &str) {
        if self.is_assumed(key) {
            self.remove_pod(key);
        }
    }

    /// A pod the apiserver says is bound to `node` (its latest version).
    pub fn set_bound_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, node, false);
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        let key = pod.key.clone();
        self.remove_pod(&key);
        self.pods_with_pod_affinity += usize::from(crate::interpod::has_terms(&pod.pod));
        self.entry(node).add_pod(pod);
        self.pods.insert(key, Placement { node: node.to_string(), assumed });
    }

    /// Reserves room for `pod` on `node` while its victims terminate.
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.nominated.insert(pod.key.clone(), (node.to_string(), pod));
    }

    /// Ends a nomination (the pod was placed, went, or fits elsewhere); returns
    /// the node it was nominated to.
    pub fn clear_nomination(&mut self, key: &str) -> Option<String> {
        self.nominated.remove(key).map(|(node, _)| node)
    }

    pub fn nominated_node(&self, key: &str) -> Option<&str> {
        self.nominated.get(key).map(|(node, _)| node.as_str())
    }

    /// What nominated pods that `pod` must not displace hold, by node: requests,
    /// pod count and host ports of those of higher or equal priority, `pod` itself
    /// excepted.
    pub fn reservations_against(&self, pod: &PodInfo) -> HashMap<String, Reservation> {
        let mut reserved: HashMap<String, Reservation> = HashMap::new();
        for (key, (node, nominee)) in &self.nominated {
            if key == &pod.key || nominee.priority < pod.priority {
                continue;
            }
            let entry = reserved.entry(node.clone()).or_default();
            entry.requests.add(&nominee.requests);
            entry.pods += 1;
            entry.host_ports.extend(nominee.host_ports.iter().cloned());
        }
        reserved
    }

    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let placement = self.pods.remove(key)?;
        let &at = self.by_name.get(&placement.node)?;
        let removed = self.nodes[at].remove_pod(key);
        if let Some(pod) = &removed {
            self.pods_with_pod_affinity -= usize::from(crate::interpod::has_terms(&pod.pod));
        }
        self.drop_if_empty(at);
        removed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proto::core::v1::{Container, ContainerPort, NodeCondition, NodeStatus, PodSpec, ResourceRequirements};
    use proto::meta::v1::{ObjectMeta, Quantity};

    pub fn node(name: &str) -> Arc<Node> {
        let q = |s: &str| Quantity { string: s.to_string() };
        Arc::new(Node {
            metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
            status: Some(NodeStatus {
                allocatable: [
                    ("cpu".to_string(), q("2")),
                    ("memory".to_string(), q("4Gi")),
                    ("pods".to_string(), q("10")),
                ]
                .into_iter()
                .collect(),
                conditions: vec![NodeCondition { r#type: "Ready".into(), status: "True".into(), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(name: &str, cpu: &str, host_port: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(Pod {
            metadata: Some(ObjectMeta { name: name.into(), namespace: "default".into(), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    resources: Some(ResourceRequirements {
                        requests: [("cpu".to_string(), Quantity { string: cpu.into() })].into_iter().collect(),
                        ..Default::default()
                    }),
                    ports: vec![ContainerPort { host_port, container_port: 80, ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })))
    }

    #[test]
    fn assumed_pods_count_at_once_and_forgetting_undoes_them() {
        let mut cache = Cache::default();
        cache.set_node(node("a"));
        let info = cache.node("a").unwrap();
        assert!(info.ready);
        assert_eq!((info.allocatable.milli_cpu, info.allowed_pods), (2000, 10));
        cache.assume(pod("p", "500m", 8080), "a");
        assert_eq!(cache.node("a").unwrap().requested.milli_cpu, 500);
        assert_eq!(cache.node("a").unwrap().used_ports.len(), 1);
        // The informer's confirmation replaces the assumption, never doubles it.
        cache.set_bound_pod(pod("p", "500m", 8080), "a");
        assert!(!cache.is_assumed("default/p"));
        assert_eq!(cache.node("a").unwrap().requested.milli_cpu, 500);
        cache.forget("default/p");
        assert_eq!(cache.node("a").unwrap().pods.len(), 1, "a confirmed pod is not forgotten");
        cache.assume(pod("q", "1", 0), "a");
        cache.forget("default/q");
        assert_eq!(cache.node("a").unwrap().requested.milli_cpu, 500);
    }

    #[test]
    fn a_nomination_holds_room_against_lower_or_equal_priority_only() {
        let mut cache = Cache::default();
        cache.set_node(node("a"));
        let with_priority = |name: &str, priority: i32| {
            let mut p = pod(name, "1", 8080).pod.as_ref().clone();
            p.spec.as_mut().unwrap().priority = Some(priority);
            Arc::new(PodInfo::new(Arc::new(p)))
        };
        cache.nominate(with_priority("preemptor", 10), "a");
        let held = cache.reservations_against(&with_priority("equal", 10));
        assert_eq!(held.get("a").map(|r| (r.requests.milli_cpu, r.pods)), Some((1000, 1)));
        assert_eq!(held["a"].host_ports.iter().map(|p| p.port).collect::<Vec<_>>(), [8080]);
        // The node has room, but the nominee's host port is held for it.
        let equal = with_priority("equal", 10);
        let mut facts = crate::filters::PodFacts::new(&equal);
        facts.reserved = held;
        assert_eq!(crate::filters::check(&facts, cache.node("a").unwrap()), Some(crate::filters::Failure::HostPorts));
        assert!(cache.reservations_against(&with_priority("higher", 11)).is_empty());
        assert!(cache.reservations_against(&with_priority("preemptor", 10)).is_empty(), "not against itself");
        assert_eq!(cache.clear_nomination("default/preemptor").as_deref(), Some("a"));
        assert!(cache.reservations_against(&with_priority("low", 0)).is_empty());
    }

    #[test]
    fn a_deleted_node_lingers_while_pods_are_bound_to_it() {
        let mut cache = Cache::default();
        cache.set_node(node("a"));
        cache.set_node(node("b"));
        cache.set_bound_pod(pod("p", "1", 0), "a");
        cache.remove_node("a");
        assert_eq!(cache.node_count(), 1);
        assert!(cache.node("a").is_some());
        cache.remove_pod("default/p");
        assert!(cache.node("a").is_none());
        assert_eq!(cache.node("b").unwrap().name, "b", "the index follows the moved entry");
    }

    #[test]
    fn host_ports_conflict_on_overlapping_addresses() {
        let port = |ip: &str, protocol: &str| HostPort { ip: ip.into(), protocol: protocol.into(), port: 80 };
        assert!(port("", "TCP").conflicts(&port("10.0.0.1", "TCP")));
        assert!(!port("10.0.0.2", "TCP").conflicts(&port("10.0.0.1", "TCP")));
        assert!(!port("", "UDP").conflicts(&port("", "TCP")));
    }
}
