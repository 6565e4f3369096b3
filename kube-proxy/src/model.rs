//! What to proxy, as plain values: every port of every proxied Service with its ready
//! endpoints, and the node's addresses for NodePorts. Built by a pure function of the
//! API objects, so both proxiers (and their tests) start from the same description.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use proto::core::v1::{Endpoints, Node, Service};

/// The transport protocols kube-proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The API's spelling ("TCP"; empty means TCP); None for protocols not proxied (SCTP).
    pub fn from_api(text: &str) -> Option<Protocol> {
        match text {
            "" | "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// nftables' and conntrack's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port of one Service, with where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name; empty for a Service's single unnamed port.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// ClientIP session affinity: how long a client sticks to its endpoint.
    pub affinity_seconds: Option<u32>,
    /// The ready endpoints, sorted and without duplicates.
    pub endpoints: Vec<SocketAddrV4>,
    /// The endpoints' addresses known to be pods of other nodes (their nodeName is
    /// another node's), sorted. Only a pod of this node can reach itself through the
    /// Service here, which needs masquerade (hairpin); an address of unknown node is
    /// taken to be local.
    pub remote_ips: Vec<Ipv4Addr>,
}

impl ServicePort {
    /// "namespace/name/tcp/port-name" (the port number when the port has no name):
    /// unique per node, and only of characters nftables accepts in a name.
    pub fn id(&self) -> String {
        let port = if self.port_name.is_empty() { self.port.to_string() } else { self.port_name.clone() };
        format!("{}/{}/{}/{}", self.namespace, self.name, self.protocol, port)
    }
}

/// Everything a proxier programs, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by id.
    pub service_ports: Vec<ServicePort>,
    /// The node's addresses NodePorts answer on, sorted.
    pub node_ips: Vec<Ipv4Addr>,
}

/// An IPv4 CIDR such as 10.244.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) =
            text.split_once('/').ok_or_else(|| format!("\"{text}\" is not a CIDR such as 10.244.0.0/16"))?;
        let address: Ipv4Addr =
            address.parse().map_err(|_| format!("\"{text}\": \"{address}\" is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("\"{text}\": the prefix length \"{prefix}\" must be a number from 0 to 32"))?;
        Ok(Cidr { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// Kubernetes' default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// The ports of every Service that has a ClusterIP, each with the ready endpoints that
/// its Endpoints object lists for that port (matched by port name and protocol), as
/// seen from the node `hostname`. Headless and ExternalName Services, IPv6 and SCTP
/// are left out.
pub fn service_ports<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    endpoints: impl IntoIterator<Item = &'a Endpoints>,
    hostname: &str,
) -> Vec<ServicePort> {
    let by_service: HashMap<(&str, &str), &Endpoints> = endpoints
        .into_iter()
        .filter_map(|e| e.metadata.as_ref().map(|m| ((m.namespace.as_str(), m.name.as_str()), e)))
        .collect();
    let mut ports = Vec::new();
    for service in services {
        let (Some(meta), Some(spec)) = (&service.metadata, &service.spec) else { continue };
        if spec.r#type == "ExternalName" {
            continue;
        }
        let Ok(cluster_ip) = spec.cluster_ip.parse::<Ipv4Addr>() else { continue };
        let affinity_seconds = (spec.session_affinity == "ClientIP").then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let subsets = by_service.get(&(meta.namespace.as_str(), meta.name.as_str())).map(|e| e.subsets.as_slice());
        for port in &spec.ports {
            let (Some(protocol), Ok(number)) = (Protocol::from_api(&port.protocol), u16::try_from(port.port)) else {
                continue;
            };
            let mut endpoints: Vec<SocketAddrV4> = subsets
                .unwrap_or_default()
                .iter()
                .flat_map(|subset| {
                    let target = subset
                        .ports
                        .iter()
                        .find(|p| p.name == port.name && Protocol::from_api(&p.protocol) == Some(protocol));
                    let target = target.and_then(|p| u16::try_from(p.port).ok());
                    subset.addresses.iter().filter_map(move |a| {
                        let ip = a.ip.parse::<Ipv4Addr>().ok()?;
                        Some(SocketAddrV4::new(ip, target?))
                    })
                })
                .collect();
            endpoints.sort();
            endpoints.dedup();
            let mut remote_ips: Vec<Ipv4Addr> = subsets
                .unwrap_or_default()
                .iter()
                .flat_map(|subset| &subset.addresses)
                .filter(|a| a.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != hostname))
                .filter_map(|a| a.ip.parse::<Ipv4Addr>().ok())
                .collect();
            remote_ips.sort();
            remote_ips.dedup();
            ports.push(ServicePort {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                port_name: port.name.clone(),
                protocol,
                cluster_ip,
                port: number,
                node_port: u16::try_from(port.node_port).ok().filter(|p| *p > 0),
                affinity_seconds,
                endpoints,
                remote_ips,
            });
        }
    }
    ports.sort_by_key(ServicePort::id);
    ports
}

/// The node's IPv4 InternalIP and ExternalIP addresses, kept to those inside one of
/// `allowed` when that is not empty (--nodeport-addresses).
pub fn node_ips(node: Option<&Node>, allowed: &[Cidr]) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = node
        .and_then(|n| n.status.as_ref())
        .map(|s| s.addresses.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|a| a.r#type == "InternalIP" || a.r#type == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .filter(|ip| allowed.is_empty() || allowed.iter().any(|c| c.contains(*ip)))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{
        ClientIpConfig, EndpointAddress, EndpointPort, EndpointSubset, NodeAddress, NodeStatus, ServicePort as ApiPort,
        ServiceSpec, SessionAffinityConfig,
    };
    use proto::meta::v1::ObjectMeta;

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta { name: name.into(), namespace: "default".into(), ..Default::default() })
    }

    fn service(name: &str, ip: &str, ports: Vec<ApiPort>) -> Service {
        Service {
            metadata: meta(name),
            spec: Some(ServiceSpec { cluster_ip: ip.into(), ports, ..Default::default() }),
            status: None,
        }
    }

    fn port(name: &str, protocol: &str, number: i32) -> ApiPort {
        ApiPort { name: name.into(), protocol: protocol.into(), port: number, ..Default::default() }
    }

    fn address(ip: &str) -> EndpointAddress {
        EndpointAddress { ip: ip.into(), ..Default::default() }
    }

    #[test]
    fn ports_match_endpoints_by_name_and_protocol_and_skip_not_ready() {
        let svc = service("web", "10.96.0.10", vec![port("http", "TCP", 80), port("dns", "UDP", 53)]);
        let eps = Endpoints {
            metadata: meta("web"),
            subsets: vec![
                EndpointSubset {
                    addresses: vec![address("10.244.0.3"), address("10.244.0.2")],
                    not_ready_addresses: vec![address("10.244.0.9")],
                    ports: vec![
                        EndpointPort { name: "http".into(), port: 8080, protocol: "TCP".into(), ..Default::default() },
                        EndpointPort { name: "dns".into(), port: 5353, protocol: "UDP".into(), ..Default::default() },
                    ],
                },
                // Another subset whose pods serve http on another port.
                EndpointSubset {
                    addresses: vec![address("10.244.1.5")],
                    ports: vec![EndpointPort { name: "http".into(), port: 9090, ..Default::default() }],
                    ..Default::default()
                },
            ],
        };
        let ports = service_ports([&svc], [&eps], "n1");
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].id(), "default/web/tcp/http");
        assert_eq!(ports[1].id(), "default/web/udp/dns");
        let http: Vec<String> = ports[0].endpoints.iter().map(ToString::to_string).collect();
        assert_eq!(http, ["10.244.0.2:8080", "10.244.0.3:8080", "10.244.1.5:9090"]);
        let dns: Vec<String> = ports[1].endpoints.iter().map(ToString::to_string).collect();
        assert_eq!(dns, ["10.244.0.2:5353", "10.244.0.3:5353"]);
    }

    #[test]
    fn endpoints_on_other_nodes_are_remote_and_those_of_this_or_no_node_are_not() {
        let svc = service("web", "10.96.0.10", vec![port("", "TCP", 80)]);
        let on = |ip: &str, node: Option<&str>| EndpointAddress { node_name: node.map(Into::into), ..address(ip) };
        let eps = Endpoints {
            metadata: meta("web"),
            subsets: vec![EndpointSubset {
                addresses: vec![
                    on("10.244.0.2", Some("n1")),
                    on("10.244.1.2", Some("n2")),
                    on("10.244.2.2", Some("n3")),
                    on("192.168.1.20", None),
                    on("10.244.0.3", Some("")),
                ],
                ports: vec![EndpointPort { port: 8080, ..Default::default() }],
                ..Default::default()
            }],
        };
        let ports = service_ports([&svc], [&eps], "n1");
        assert_eq!(ports[0].endpoints.len(), 5);
        let remote: Vec<String> = ports[0].remote_ips.iter().map(ToString::to_string).collect();
        assert_eq!(remote, ["10.244.1.2", "10.244.2.2"]);
    }

    #[test]
    fn headless_external_name_and_sctp_are_not_proxied() {
        let headless = service("headless", "None", vec![port("", "TCP", 80)]);
        let mut external = service("ext", "", vec![port("", "TCP", 80)]);
        external.spec.as_mut().unwrap().r#type = "ExternalName".into();
        let sctp = service("sctp", "10.96.0.3", vec![port("", "SCTP", 80)]);
        assert!(service_ports([&headless, &external, &sctp], [], "n1").is_empty());
    }

    #[test]
    fn client_ip_affinity_takes_its_timeout_or_the_default() {
        let mut svc = service("web", "10.96.0.10", vec![port("", "", 80)]);
        svc.spec.as_mut().unwrap().session_affinity = "ClientIP".into();
        assert_eq!(service_ports([&svc], [], "n1")[0].affinity_seconds, Some(DEFAULT_AFFINITY_SECONDS));
        svc.spec.as_mut().unwrap().session_affinity_config =
            Some(SessionAffinityConfig { client_ip: Some(ClientIpConfig { timeout_seconds: Some(60) }) });
        let ports = service_ports([&svc], [], "n1");
        assert_eq!(ports[0].affinity_seconds, Some(60));
        assert_eq!(ports[0].id(), "default/web/tcp/80");
        assert!(ports[0].endpoints.is_empty());
    }

    #[test]
    fn node_ips_are_internal_and_external_addresses_within_the_allowed_cidrs() {
        let node = Node {
            metadata: meta("n1"),
            spec: None,
            status: Some(NodeStatus {
                addresses: vec![
                    NodeAddress { r#type: "Hostname".into(), address: "n1".into() },
                    NodeAddress { r#type: "InternalIP".into(), address: "192.168.1.10".into() },
                    NodeAddress { r#type: "ExternalIP".into(), address: "203.0.113.7".into() },
                ],
                ..Default::default()
            }),
        };
        let all = node_ips(Some(&node), &[]);
        assert_eq!(all, ["192.168.1.10".parse::<Ipv4Addr>().unwrap(), "203.0.113.7".parse().unwrap()]);
        let internal = node_ips(Some(&node), &["192.168.0.0/16".parse().unwrap()]);
        assert_eq!(internal, ["192.168.1.10".parse::<Ipv4Addr>().unwrap()]);
        assert!(node_ips(None, &[]).is_empty());
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let cidr: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(cidr.contains("10.244.3.4".parse().unwrap()));
        assert!(!cidr.contains("10.245.0.1".parse().unwrap()));
        assert!("10.244.0.0".parse::<Cidr>().unwrap_err().contains("not a CIDR"));
        assert!("10.244.0.0/33".parse::<Cidr>().unwrap_err().contains("0 to 32"));
    }
}
