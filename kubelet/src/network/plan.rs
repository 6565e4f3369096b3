//! What this node's cross-node pod routing should be, computed from the Node objects
//! alone: no kernel, no apiserver. Each other node with a pod CIDR and an address
//! becomes a route to that pod CIDR — via the node's address (host-gw), or via the
//! node's VXLAN endpoint (vxlan) with the neighbour and forwarding entries that make
//! the endpoint reachable. Nodes that cannot be routed to are listed with the reason,
//! so the controller can say what is wrong with which node instead of installing a
//! route that would silently drop traffic.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use proto::core::v1::Node;

use super::cidr::Ipv4Cidr;

/// The annotation in which a node publishes the MAC address of its VXLAN device.
pub const VTEP_MAC_ANNOTATION: &str = "rudder.io/vtep-mac";
/// The annotation in which a node publishes the address its tunnel endpoint uses;
/// peers send encapsulated traffic there (it wins over the InternalIP).
pub const PUBLIC_IP_ANNOTATION: &str = "rudder.io/public-ip";
/// The annotation in which a node publishes the backend it runs, so a mismatch
/// between nodes is visible with `ctl get node -o yaml`.
pub const BACKEND_ANNOTATION: &str = "rudder.io/backend-type";

/// How this node reaches other nodes' pod CIDRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// A plain route per node via the node's address: needs every node on one L2
    /// network (one subnet without a router in between).
    #[default]
    HostGw,
    /// A VXLAN overlay: pod traffic is wrapped in UDP between the nodes' addresses,
    /// so the nodes only need IP reachability.
    Vxlan,
    /// No cross-node routes: something else (or nothing) connects the pod networks.
    None,
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::Vxlan),
            "none" => Ok(Backend::None),
            _ => Err(format!("\"{text}\" is not a network backend: use host-gw, vxlan or none")),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::HostGw => "host-gw",
            Backend::Vxlan => "vxlan",
            Backend::None => "none",
        })
    }
}

/// A MAC address, written as `0a:1b:2c:3d:4e:5f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fail = || format!("\"{text}\" is not a MAC address such as 02:56:0a:1b:2c:3d");
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(fail)?;
            if part.len() != 2 {
                return Err(fail());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| fail())?;
        }
        if parts.next().is_some() {
            return Err(fail());
        }
        Ok(Mac(bytes))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// A route to another node's pod CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRoute {
    pub destination: Ipv4Cidr,
    /// host-gw: the node's address. vxlan: the .0 of the node's pod CIDR, which
    /// its VXLAN device holds.
    pub gateway: Ipv4Addr,
    /// Through this node's VXLAN device, `onlink` (the gateway is on no subnet).
    pub via_vtep: bool,
}

/// A permanent neighbour entry on the VXLAN device: the remote device's address
/// and MAC, so no ARP crosses the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VtepNeighbour {
    pub address: Ipv4Addr,
    pub mac: Mac,
}

/// A forwarding entry on the VXLAN device: frames for `mac` go in UDP to `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    pub mac: Mac,
    pub remote: Ipv4Addr,
}

/// Why a node gets no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Not yet given one by the controller-manager: normal for a new node.
    NoPodCidr,
    BadPodCidr(String),
    NoAddress,
    BadAddress(String),
    /// host-gw only: the node's address is on none of this node's subnets.
    NotAdjacent(Ipv4Addr),
    /// vxlan only: the node has not published its VXLAN device's MAC yet.
    NoVtepMac,
    BadVtepMac(String),
    /// Its pod CIDR overlaps this node's own.
    OverlapsLocal(Ipv4Cidr),
    /// Its pod CIDR overlaps one already routed to another node.
    OverlapsNode {
        cidr: Ipv4Cidr,
        other: String,
    },
}

impl SkipReason {
    /// Whether this is a state a healthy cluster passes through (a node just
    /// registered), rather than a misconfiguration someone must fix.
    pub fn is_transient(&self) -> bool {
        matches!(self, SkipReason::NoPodCidr | SkipReason::NoVtepMac)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoPodCidr => write!(f, "it has no spec.podCIDR yet"),
            SkipReason::BadPodCidr(e) => write!(f, "its spec.podCIDR is unusable: {e}"),
            SkipReason::NoAddress => {
                write!(f, "it has no InternalIP in status.addresses (its kubelet has not posted a status yet)")
            }
            SkipReason::BadAddress(e) => write!(f, "its address is unusable: {e}"),
            SkipReason::NotAdjacent(ip) => write!(
                f,
                "its address {ip} is on none of this node's subnets; the host-gw backend needs every node on one \
                 L2 network (run every kubelet with --network-backend=vxlan when a router sits between the nodes)"
            ),
            SkipReason::NoVtepMac => write!(f, "it has not published its VXLAN MAC ({VTEP_MAC_ANNOTATION}) yet"),
            SkipReason::BadVtepMac(e) => write!(f, "annotation {VTEP_MAC_ANNOTATION}: {e}"),
            SkipReason::OverlapsLocal(own) => write!(f, "its pod CIDR overlaps this node's own {own}"),
            SkipReason::OverlapsNode { cidr, other } => {
                write!(f, "its pod CIDR overlaps {cidr}, which node {other} already has")
            }
        }
    }
}

/// This node, as far as planning goes.
#[derive(Debug, Clone)]
pub struct LocalNode {
    pub name: String,
    pub pod_cidr: Ipv4Cidr,
}

/// The routes, neighbour and forwarding entries this node should have, and the
/// nodes it cannot route to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub routes: Vec<PodRoute>,
    pub neighbours: Vec<VtepNeighbour>,
    pub fdb: Vec<FdbEntry>,
    /// node name -> why it gets no route
    pub skipped: BTreeMap<String, SkipReason>,
}

/// What planning needs from another Node.
#[derive(Debug, Clone)]
struct Peer {
    name: String,
    pod_cidr: Ipv4Cidr,
    address: Ipv4Addr,
    vtep_mac: Option<Result<Mac, String>>,
}

fn overlaps(a: Ipv4Cidr, b: Ipv4Cidr) -> bool {
    a.contains(b.network) || b.contains(a.network)
}

/// The InternalIP in the Node's status.
pub fn internal_ip(node: &Node) -> Option<Result<Ipv4Addr, String>> {
    let status = node.status.as_ref()?;
    let address = status.addresses.iter().find(|a| a.r#type == "InternalIP")?;
    Some(address.address.parse().map_err(|_| format!("InternalIP \"{}\" is not an IPv4 address", address.address)))
}

fn peer_of(node: &Node, backend: Backend) -> Result<Peer, SkipReason> {
    let meta = node.metadata.clone().unwrap_or_default();
    let text = node.spec.as_ref().map(|s| s.pod_cidr.as_str()).unwrap_or_default();
    if text.is_empty() {
        return Err(SkipReason::NoPodCidr);
    }
    let pod_cidr: Ipv4Cidr = text.parse().map_err(|e: super::cidr::CidrError| SkipReason::BadPodCidr(e.to_string()))?;
    // Encapsulated traffic goes where the node says its tunnel endpoint is.
    let published = match backend {
        Backend::Vxlan => meta.annotations.get(PUBLIC_IP_ANNOTATION).map(|text| {
            text.parse::<Ipv4Addr>()
                .map_err(|_| format!("annotation {PUBLIC_IP_ANNOTATION} \"{text}\" is not an IPv4 address"))
        }),
        _ => None,
    };
    let address = match published.or_else(|| internal_ip(node)) {
        Some(Ok(ip)) => ip,
        Some(Err(e)) => return Err(SkipReason::BadAddress(e)),
        None => return Err(SkipReason::NoAddress),
    };
    let vtep_mac = meta.annotations.get(VTEP_MAC_ANNOTATION).map(|text| text.parse::<Mac>());
    Ok(Peer { name: meta.name, pod_cidr, address, vtep_mac })
}

/// Whether `ip` lies in one of `subnets`.
pub fn is_adjacent(ip: Ipv4Addr, subnets: &[Ipv4Cidr]) -> bool {
    subnets.iter().any(|s| s.contains(ip))
}

/// The desired state of this node's cross-node routing. `connected` are the
/// subnets this node has an address in (host-gw checks adjacency against them).
/// Deterministic: nodes are considered by name, so two nodes claiming one CIDR
/// resolve the same way on every node and every run.
pub fn plan(backend: Backend, local: &LocalNode, nodes: &[Node], connected: &[Ipv4Cidr]) -> Plan {
    let mut out = Plan::default();
    if backend == Backend::None {
        return out;
    }
    let mut nodes: Vec<&Node> = nodes.iter().collect();
    nodes.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let mut claimed: Vec<(Ipv4Cidr, String)> = Vec::new();
    for node in nodes {
        let name = name_of(node);
        if name == local.name {
            continue;
        }
        let peer = match peer_of(node, backend) {
            Ok(peer) => peer,
            Err(reason) => {
                out.skipped.insert(name.to_string(), reason);
                continue;
            }
        };
        if overlaps(peer.pod_cidr, local.pod_cidr) {
            out.skipped.insert(peer.name, SkipReason::OverlapsLocal(local.pod_cidr));
            continue;
        }
        if let Some((cidr, other)) = claimed.iter().find(|(cidr, _)| overlaps(*cidr, peer.pod_cidr)) {
            let reason = SkipReason::OverlapsNode { cidr: *cidr, other: other.clone() };
            out.skipped.insert(peer.name, reason);
            continue;
        }
        match backend {
            Backend::HostGw => {
                if !is_adjacent(peer.address, connected) {
                    out.skipped.insert(peer.name, SkipReason::NotAdjacent(peer.address));
                    continue;
                }
                out.routes.push(PodRoute { destination: peer.pod_cidr, gateway: peer.address, via_vtep: false });
            }
            Backend::Vxlan => {
                let mac = match peer.vtep_mac {
                    Some(Ok(mac)) => mac,
                    Some(Err(e)) => {
                        out.skipped.insert(peer.name, SkipReason::BadVtepMac(e));
                        continue;
                    }
                    None => {
                        out.skipped.insert(peer.name, SkipReason::NoVtepMac);
                        continue;
                    }
                };
                // The remote device holds the .0 of its pod CIDR.
                let gateway = peer.pod_cidr.network;
                out.routes.push(PodRoute { destination: peer.pod_cidr, gateway, via_vtep: true });
                out.neighbours.push(VtepNeighbour { address: gateway, mac });
                out.fdb.push(FdbEntry { mac, remote: peer.address });
            }
            Backend::None => {}
        }
        claimed.push((peer.pod_cidr, peer.name));
    }
    out
}

fn name_of(node: &Node) -> &str {
    node.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{NodeAddress, NodeSpec, NodeStatus};
    use proto::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: &str, ip: &str, mac: Option<&str>) -> Node {
        let mut meta = ObjectMeta { name: name.into(), ..Default::default() };
        if let Some(mac) = mac {
            meta.annotations.insert(VTEP_MAC_ANNOTATION.into(), mac.into());
        }
        Node {
            metadata: Some(meta),
            spec: Some(NodeSpec { pod_cidr: cidr.into(), ..Default::default() }),
            status: (!ip.is_empty()).then(|| NodeStatus {
                addresses: vec![NodeAddress { r#type: "InternalIP".into(), address: ip.into() }],
                ..Default::default()
            }),
        }
    }

    fn local() -> LocalNode {
        LocalNode { name: "a".into(), pod_cidr: "10.244.1.0/24".parse().unwrap() }
    }

    fn lan() -> Vec<Ipv4Cidr> {
        vec!["192.168.1.0/24".parse().unwrap()]
    }

    #[test]
    fn host_gw_routes_every_other_node_via_its_address() {
        let nodes = vec![
            node("a", "10.244.1.0/24", "192.168.1.1", None),
            node("c", "10.244.3.0/24", "192.168.1.3", None),
            node("b", "10.244.2.0/24", "192.168.1.2", None),
        ];
        let plan = plan(Backend::HostGw, &local(), &nodes, &lan());
        assert_eq!(
            plan.routes,
            vec![
                PodRoute {
                    destination: "10.244.2.0/24".parse().unwrap(),
                    gateway: Ipv4Addr::new(192, 168, 1, 2),
                    via_vtep: false
                },
                PodRoute {
                    destination: "10.244.3.0/24".parse().unwrap(),
                    gateway: Ipv4Addr::new(192, 168, 1, 3),
                    via_vtep: false
                },
            ]
        );
        assert!(plan.neighbours.is_empty() && plan.fdb.is_empty() && plan.skipped.is_empty());
    }

    #[test]
    fn host_gw_refuses_a_node_behind_a_router_and_says_why() {
        let nodes = vec![node("b", "10.244.2.0/24", "172.16.0.2", None)];
        let plan = plan(Backend::HostGw, &local(), &nodes, &lan());
        assert!(plan.routes.is_empty());
        assert_eq!(plan.skipped["b"], SkipReason::NotAdjacent(Ipv4Addr::new(172, 16, 0, 2)));
        let message = plan.skipped["b"].to_string();
        assert!(message.contains("L2") && message.contains("--network-backend=vxlan"), "{message}");
        assert!(!plan.skipped["b"].is_transient());
    }

    #[test]
    fn vxlan_routes_onlink_to_the_remote_dot_zero_with_neighbour_and_fdb() {
        let mut b = node("b", "10.244.2.0/24", "172.16.0.2", Some("02:56:00:00:00:02"));
        // A published tunnel address wins over the InternalIP.
        b.metadata.as_mut().unwrap().annotations.insert(PUBLIC_IP_ANNOTATION.into(), "172.16.9.2".into());
        let nodes = vec![b, node("c", "10.244.3.0/24", "172.17.0.3", None)];
        let plan = plan(Backend::Vxlan, &local(), &nodes, &lan());
        let mac: Mac = "02:56:00:00:00:02".parse().unwrap();
        assert_eq!(
            plan.routes,
            vec![PodRoute {
                destination: "10.244.2.0/24".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 244, 2, 0),
                via_vtep: true
            }]
        );
        assert_eq!(plan.neighbours, vec![VtepNeighbour { address: Ipv4Addr::new(10, 244, 2, 0), mac }]);
        assert_eq!(plan.fdb, vec![FdbEntry { mac, remote: Ipv4Addr::new(172, 16, 9, 2) }]);
        // c has not published its MAC: waited for, not an error.
        assert_eq!(plan.skipped["c"], SkipReason::NoVtepMac);
        assert!(plan.skipped["c"].is_transient());
    }

    #[test]
    fn unusable_nodes_are_skipped_with_a_reason_and_the_rest_still_routed() {
        let nodes = vec![
            node("b", "", "192.168.1.2", None),
            node("c", "10.244.3.0/25x", "192.168.1.3", None),
            node("d", "10.244.4.0/24", "", None),
            node("e", "10.244.1.128/25", "192.168.1.5", None),
            node("f", "10.244.6.0/24", "192.168.1.6", None),
            node("g", "10.244.6.128/25", "192.168.1.7", None),
            node("h", "10.244.8.0/24", "not-an-ip", None),
        ];
        let plan = plan(Backend::HostGw, &local(), &nodes, &lan());
        assert_eq!(plan.routes.len(), 1);
        assert_eq!(plan.routes[0].gateway, Ipv4Addr::new(192, 168, 1, 6));
        assert_eq!(plan.skipped["b"], SkipReason::NoPodCidr);
        assert!(matches!(plan.skipped["c"], SkipReason::BadPodCidr(_)));
        assert_eq!(plan.skipped["d"], SkipReason::NoAddress);
        assert!(matches!(plan.skipped["e"], SkipReason::OverlapsLocal(_)));
        assert!(matches!(&plan.skipped["g"], SkipReason::OverlapsNode { other, .. } if other == "f"));
        assert!(matches!(plan.skipped["h"], SkipReason::BadAddress(_)));
        let bad_mac = vec![node("b", "10.244.2.0/24", "192.168.1.2", Some("02:56:zz:00:00:02"))];
        let plan = super::plan(Backend::Vxlan, &local(), &bad_mac, &lan());
        assert!(matches!(&plan.skipped["b"], SkipReason::BadVtepMac(e) if e.contains("zz")));
    }

    #[test]
    fn the_none_backend_plans_nothing_and_backends_parse_by_name() {
        let nodes = vec![node("b", "10.244.2.0/24", "192.168.1.2", None)];
        assert_eq!(plan(Backend::None, &local(), &nodes, &lan()), Plan::default());
        for text in ["host-gw", "vxlan", "none"] {
            assert_eq!(text.parse::<Backend>().unwrap().to_string(), text);
        }
        assert!("udp".parse::<Backend>().unwrap_err().contains("host-gw, vxlan or none"));
    }

    #[test]
    fn macs_round_trip_and_bad_ones_are_refused() {
        let mac: Mac = "02:56:0A:1b:2c:3d".parse().unwrap();
        assert_eq!(mac.to_string(), "02:56:0a:1b:2c:3d");
        for bad in ["02:56:0a:1b:2c", "02:56:0a:1b:2c:3d:4e", "0256:0a:1b:2c:3d", ""] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
