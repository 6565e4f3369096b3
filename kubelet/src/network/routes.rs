//! The kernel side of the pod routes: the routes to other nodes' pod CIDRs in the
//! main table, marked as the kubelet's by a routing protocol number of its own (as
//! flannel and calico mark theirs). Only routes with that mark are ever changed or
//! removed; a route someone else made to the same destination is left alone and
//! reported. `ip route show proto 82` lists the kubelet's routes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::cidr::Ipv4Cidr;
use super::plan::PodRoute;
use super::{EEXIST, NetworkError, errno, nl};

/// The routing protocol number that marks a route as the kubelet's ("R"). Unused by
/// the protocols iproute2 knows (see /etc/iproute2/rt_protos).
pub const RTPROT_RUDDER: u8 = 82;

/// A route of the kubelet's as the kernel holds it.
#[derive(Debug, Clone)]
pub struct InstalledRoute {
    pub destination: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub output_interface: Option<u32>,
    pub onlink: bool,
    message: RouteMessage,
}

impl InstalledRoute {
    fn matches(&self, want: &PodRoute, vtep_index: Option<u32>) -> bool {
        let device_ok = if want.via_vtep {
            self.onlink && vtep_index.is_some() && self.output_interface == vtep_index
        } else {
            // host-gw leaves the choice of device to the kernel.
            !self.onlink
        };
        self.destination == want.destination && self.gateway == Some(want.gateway) && device_ok
    }
}

/// What one pass changed, and what it could not do.
#[derive(Debug, Clone, Default)]
pub struct RouteChanges {
    pub added: Vec<Ipv4Cidr>,
    pub removed: Vec<Ipv4Cidr>,
    /// destination -> what went wrong
    pub failed: BTreeMap<String, String>,
}

fn parse_route(message: RouteMessage) -> Option<InstalledRoute> {
    let header = &message.header;
    if header.address_family != AddressFamily::Inet || header.protocol != RouteProtocol::Other(RTPROT_RUDDER) {
        return None;
    }
    let mut table = u32::from(header.table);
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut output_interface = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(index) => output_interface = Some(*index),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let onlink = header.flags.contains(RouteFlags::Onlink);
    let destination = Ipv4Cidr { network: destination, prefix: header.destination_prefix_length };
    Some(InstalledRoute { destination, gateway, output_interface, onlink, message })
}

/// The kubelet's routes in the main table.
pub async fn owned_routes(handle: &Handle) -> Result<Vec<InstalledRoute>, NetworkError> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let routes: Vec<RouteMessage> =
        handle.route().get(filter).execute().try_collect().await.map_err(nl("listing routes"))?;
    Ok(routes.into_iter().filter_map(parse_route).collect())
}

/// Makes the kubelet's routes exactly `desired`: removes its routes that are not
/// wanted (or differ), adds the missing ones. `vtep_index` is the VXLAN device that
/// routes with `via_vtep` go through.
pub async fn apply_routes(
    handle: &Handle,
    desired: &[PodRoute],
    vtep_index: Option<u32>,
) -> Result<RouteChanges, NetworkError> {
    let mut changes = RouteChanges::default();
    let installed = owned_routes(handle).await?;
    let mut present = Vec::new();
    for route in installed {
        if desired.iter().any(|want| route.matches(want, vtep_index)) {
            present.push(route.destination);
            continue;
        }
        match handle.route().del(route.message.clone()).execute().await {
            Ok(()) => changes.removed.push(route.destination),
            Err(e) if errno(&e) == Some(libc::ESRCH) => {} // gone meanwhile
            Err(e) => {
                changes.failed.insert(route.destination.to_string(), format!("removing the stale route: {e}"));
            }
        }
    }
    for want in desired {
        if present.contains(&want.destination) {
            continue;
        }
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(want.destination.network, want.destination.prefix)
            .gateway(want.gateway)
            .protocol(RouteProtocol::Other(RTPROT_RUDDER));
        if want.via_vtep {
            let Some(index) = vtep_index else {
                changes.failed.insert(want.destination.to_string(), "the VXLAN device is missing".into());
                continue;
            };
            builder = builder.output_interface(index).onlink();
        }
        match handle.route().add(builder.build()).execute().await {
            Ok(()) => changes.added.push(want.destination),
            Err(e) if errno(&e) == Some(EEXIST) => {
                // Ours would have been listed above: this one belongs to someone else.
                changes.failed.insert(
                    want.destination.to_string(),
                    format!(
                        "a route to {} that the kubelet does not own is in the way (see `ip route show {}`); \
                         remove it to let the kubelet route this node's pods",
                        want.destination, want.destination
                    ),
                );
            }
            Err(e) => {
                changes.failed.insert(want.destination.to_string(), format!("adding via {}: {e}", want.gateway));
            }
        }
    }
    Ok(changes)
}

/// The subnets this network namespace has an address in: the nodes reachable
/// without a router.
pub async fn connected_subnets(handle: &Handle) -> Result<Vec<Ipv4Cidr>, NetworkError> {
    let addresses: Vec<_> = handle.address().get().execute().try_collect().await.map_err(nl("listing addresses"))?;
    let mut subnets = Vec::new();
    for message in addresses {
        let prefix = message.header.prefix_len;
        if message.header.family != AddressFamily::Inet || prefix >= 32 {
            continue;
        }
        let Some(ip) = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        }) else {
            continue;
        };
        if ip.is_loopback() {
            continue;
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        let subnet = Ipv4Cidr { network: Ipv4Addr::from(u32::from(ip) & mask), prefix };
        if !subnets.contains(&subnet) {
            subnets.push(subnet);
        }
    }
    Ok(subnets)
}

/// The interface that holds `ip`, if any: the underlay device of the VXLAN device.
pub async fn interface_with_address(handle: &Handle, ip: Ipv4Addr) -> Result<Option<u32>, NetworkError> {
    let addresses: Vec<_> = handle.address().get().execute().try_collect().await.map_err(nl("listing addresses"))?;
    Ok(addresses
        .into_iter()
        .find(|m| {
            m.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(a)) | AddressAttribute::Address(IpAddr::V4(a)) if *a == ip))
        })
        .map(|m| m.header.index))
}
