//! What a pod asks for and what a node offers, as plain integers: cpu in
//! millicores, memory and ephemeral storage in bytes, and a pod count. Quantities
//! are parsed once (when a pod or node is seen), never in the scheduling loop.

use std::collections::BTreeMap;

use proto::core::v1::{Container, Node, Pod};
use proto::meta::v1::Quantity;
use proto::quantity::Amount;

/// Requests the scoring functions assume for a container that states none, as
/// Kubernetes does, so that request-less pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
    }

    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
    }

    /// Reads cpu, memory and ephemeral-storage from a resource map; a value that
    /// does not parse counts as zero (the apiserver validated it already).
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Resources {
        let amount = |name: &str| map.get(name).and_then(|q| Amount::parse(&q.string).ok());
        Resources {
            milli_cpu: amount("cpu").map_or(0, |a| a.milli_value()),
            memory: amount("memory").map_or(0, |a| a.value()),
            ephemeral_storage: amount("ephemeral-storage").map_or(0, |a| a.value()),
        }
    }
}

fn container_requests(container: &Container) -> Resources {
    container.resources.as_ref().map(|r| Resources::from_map(&r.requests)).unwrap_or_default()
}

fn container_nonzero_requests(container: &Container) -> Resources {
    let mut requests = container_requests(container);
    let stated = container.resources.as_ref().map(|r| &r.requests);
    if !stated.is_some_and(|r| r.contains_key("cpu")) {
        requests.milli_cpu = DEFAULT_MILLI_CPU;
    }
    if !stated.is_some_and(|r| r.contains_key("memory")) {
        requests.memory = DEFAULT_MEMORY;
    }
    requests
}

/// A pod's effective request as Kubernetes computes it: the larger of (the sum of
/// its containers plus its sidecars) and (the largest init container, plus the
/// sidecars started before it), plus the pod overhead.
fn effective(pod: &Pod, per_container: fn(&Container) -> Resources) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&per_container(container));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in &spec.init_containers {
        let requests = per_container(container);
        let during = if container.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running beside everything that starts after it.
            sidecars.add(&requests);
            sidecars
        } else {
            let mut during = requests;
            during.add(&sidecars);
            during
        };
        init_peak.max(&during);
    }
    total.add(&sidecars);
    total.max(&init_peak);
    total.add(&Resources::from_map(&spec.overhead));
    total
}

/// What the resource filter counts.
pub fn pod_requests(pod: &Pod) -> Resources {
    effective(pod, container_requests)
}

/// What the resource scores count: unstated cpu and memory get defaults.
pub fn pod_nonzero_requests(pod: &Pod) -> Resources {
    effective(pod, container_nonzero_requests)
}

/// A node's allocatable resources and how many pods it takes (0 when it does not
/// say, as in Kubernetes: such a node takes no pods).
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let Some(status) = node.status.as_ref() else { return (Resources::default(), 0) };
    let pods = status.allocatable.get("pods").and_then(|q| Amount::parse(&q.string).ok()).map_or(0, |a| a.value());
    (Resources::from_map(&status.allocatable), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{PodSpec, ResourceRequirements};

    fn container(cpu: &str, memory: &str, sidecar: bool) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity { string: cpu.to_string() });
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), Quantity { string: memory.to_string() });
        }
        Container {
            resources: Some(ResourceRequirements { requests, ..Default::default() }),
            restart_policy: sidecar.then(|| "Always".to_string()),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod { spec: Some(PodSpec { containers, init_containers: init, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn an_init_container_larger_than_the_sum_sets_the_request() {
        let p = pod(
            vec![container("100m", "1Mi", false), container("200m", "1Mi", false)],
            vec![container("1", "1Ki", false), container("500m", "", false)],
        );
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1000);
        assert_eq!(r.memory, 2 * 1024 * 1024);
    }

    #[test]
    fn sidecars_add_to_the_containers_and_to_later_init_containers() {
        // sidecar 300m runs beside the 800m init container (1100m) and beside the
        // 200m of regular containers (500m).
        let p =
            pod(vec![container("200m", "", false)], vec![container("300m", "", true), container("800m", "", false)]);
        assert_eq!(pod_requests(&p).milli_cpu, 1100);
        let q = pod(vec![container("2", "", false)], vec![container("300m", "", true)]);
        assert_eq!(pod_requests(&q).milli_cpu, 2300);
    }

    #[test]
    fn scoring_assumes_defaults_for_unstated_requests() {
        let p = pod(vec![container("", "", false), container("1", "", false)], vec![]);
        let r = pod_nonzero_requests(&p);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU + 1000);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY);
        assert_eq!(pod_requests(&p).memory, 0);
    }
}
