//! What a Service's Endpoints hold, computed from the Service and the pods its
//! selector matches, as Kubernetes' endpoints controller computes it: ready pods in
//! `addresses`, the others in `notReadyAddresses`, named target ports resolved per
//! pod, and addresses grouped into subsets by the ports they serve.

use std::collections::BTreeMap;

use proto::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service};
use proto::meta::v1::int_or_string::Value;

use crate::pods::{is_ready, is_terminating};

/// The subsets of `service`'s Endpoints given the pods its selector matches.
pub fn subsets(service: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let service_name = service.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    // Ports served -> (ready, not ready) addresses, ordered for stable output.
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod_ip(pod) else { continue };
        if is_terminating(pod) && !spec.publish_not_ready_addresses {
            continue;
        }
        if is_finished(pod) {
            continue;
        }
        let mut ports: Vec<PortKey> = spec
            .ports
            .iter()
            .filter_map(|port| {
                let protocol = if port.protocol.is_empty() { "TCP".to_string() } else { port.protocol.clone() };
                let number = target_port(pod, port, &protocol)?;
                Some((port.name.clone(), number, protocol))
            })
            .collect();
        // A Service without ports (headless, DNS only) still lists its pods.
        if ports.is_empty() && !spec.ports.is_empty() {
            continue;
        }
        ports.sort();
        let address = address(pod, ip, service_name);
        let (ready, not_ready) = groups.entry(ports).or_default();
        if is_ready(pod) || spec.publish_not_ready_addresses {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: ready,
                not_ready_addresses: not_ready,
                ports: ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort { name, port, protocol, app_protocol: None })
                    .collect(),
            }
        })
        .collect()
}

/// A served port: name, number on the pod, protocol.
type PortKey = (String, i32, String);

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().map(|s| s.pod_ip.as_str()).filter(|ip| !ip.is_empty())
}

/// A pod that has run to completion and will not restart serves nothing.
fn is_finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    phase == "Succeeded" || phase == "Failed"
}

/// The port number `port` reaches on `pod`: a number as is, a name looked up among
/// the pod's container ports of the same protocol (absent: the pod does not serve
/// this port).
fn target_port(pod: &Pod, port: &proto::core::v1::ServicePort, protocol: &str) -> Option<i32> {
    match port.target_port.as_ref().and_then(|t| t.value.as_ref()) {
        None => Some(port.port),
        Some(Value::IntVal(0)) => Some(port.port),
        Some(Value::IntVal(n)) => Some(*n),
        Some(Value::StrVal(name)) => pod.spec.as_ref()?.containers.iter().flat_map(|c| &c.ports).find_map(|p| {
            let p_protocol = if p.protocol.is_empty() { "TCP" } else { p.protocol.as_str() };
            (p.name == *name && p_protocol == protocol).then_some(p.container_port)
        }),
    }
}

fn address(pod: &Pod, ip: &str, service_name: &str) -> EndpointAddress {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    // A pod with a hostname in the Service's subdomain gets a DNS name under it.
    let hostname =
        if !spec.hostname.is_empty() && spec.subdomain == service_name { spec.hostname } else { String::new() };
    EndpointAddress {
        ip: ip.to_string(),
        hostname,
        node_name: Some(spec.node_name).filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: "Pod".to_string(),
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec};
    use proto::meta::v1::{IntOrString, ObjectMeta};

    fn pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Pod {
        Pod {
            metadata: Some(ObjectMeta { name: name.into(), namespace: "default".into(), ..Default::default() }),
            spec: Some(PodSpec {
                node_name: "n1".into(),
                containers: vec![Container {
                    name: "c".into(),
                    ports: vec![ContainerPort { name: "http".into(), container_port: http_port, ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                pod_ip: ip.into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn service(target: IntOrString) -> Service {
        Service {
            metadata: Some(ObjectMeta { name: "web".into(), ..Default::default() }),
            spec: Some(ServiceSpec {
                ports: vec![ServicePort {
                    name: "web".into(),
                    port: 80,
                    target_port: Some(target),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_and_not_ready_pods_land_apart() {
        let pods = [pod("a", "10.0.0.2", true, 8080), pod("b", "10.0.0.1", false, 8080), pod("c", "", true, 8080)];
        let subsets = subsets(&service(IntOrString::int(8080)), &pods);
        assert_eq!(subsets.len(), 1);
        let ips = |a: &[EndpointAddress]| a.iter().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.1"], "a pod without an IP is left out");
        assert_eq!(subsets[0].ports[0].port, 8080);
        assert_eq!(subsets[0].ports[0].protocol, "TCP");
        assert_eq!(subsets[0].addresses[0].target_ref.as_ref().unwrap().name, "a");
    }

    #[test]
    fn named_target_ports_resolve_per_pod_into_separate_subsets() {
        let pods =
            [pod("a", "10.0.0.1", true, 8080), pod("b", "10.0.0.2", true, 9090), pod("c", "10.0.0.3", true, 8080)];
        let subsets = subsets(&service(IntOrString::string("http")), &pods);
        let summary: Vec<(i32, Vec<String>)> =
            subsets.iter().map(|s| (s.ports[0].port, s.addresses.iter().map(|a| a.ip.clone()).collect())).collect();
        assert_eq!(
            summary,
            vec![(8080, vec!["10.0.0.1".to_string(), "10.0.0.3".to_string()]), (9090, vec!["10.0.0.2".to_string()])]
        );
    }

    #[test]
    fn pods_without_the_named_port_or_finished_or_terminating_are_left_out() {
        let mut finished = pod("done", "10.0.0.4", false, 8080);
        finished.status.as_mut().unwrap().phase = "Succeeded".into();
        let mut terminating = pod("going", "10.0.0.5", true, 8080);
        terminating.metadata.as_mut().unwrap().deletion_timestamp = Some(Default::default());
        let pods = [finished, terminating];
        assert!(subsets(&service(IntOrString::int(8080)), &pods).is_empty());
        let unnamed = [pod("a", "10.0.0.1", true, 8080)];
        assert!(subsets(&service(IntOrString::string("metrics")), &unnamed).is_empty());
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let mut svc = service(IntOrString::int(80));
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = true;
        let subsets = subsets(&svc, &[pod("a", "10.0.0.1", false, 80)]);
        assert_eq!(subsets[0].addresses.len(), 1);
        assert!(subsets[0].not_ready_addresses.is_empty());
    }
}
