//! The VXLAN tunnel endpoint (VTEP), in the manner of flannel's vxlan backend: one
//! device (`rudder.1`: VNI 1, UDP 8472, source address this node's InternalIP,
//! learning off) holding the .0 of this node's pod CIDR as a /32. For every other
//! node it carries a permanent neighbour entry (the remote .0 -> the remote device's
//! MAC) and a forwarding entry (that MAC -> the remote node's address), so neither
//! ARP nor flooding ever crosses the overlay.
//!
//! The device is the kubelet's by name: every neighbour and forwarding entry on it is
//! the kubelet's to add and remove, and nothing outside it is touched.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan};

use super::cidr::Ipv4Cidr;
use super::plan::{FdbEntry, Mac, VtepNeighbour};
use super::{EEXIST, NetworkError, errno, fnv32, link_index, nl};

/// The device's settings; the defaults are flannel's, so the same firewall rules
/// (UDP 8472 between nodes) apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSettings {
    pub device: String,
    pub vni: u32,
    pub port: u16,
}

impl Default for VxlanSettings {
    fn default() -> Self {
        VxlanSettings { device: "rudder.1".into(), vni: 1, port: 8472 }
    }
}

/// VXLAN adds 50 bytes (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14).
const VXLAN_OVERHEAD: u32 = 50;

/// The device as set up.
#[derive(Debug, Clone, Copy)]
pub struct Vtep {
    pub index: u32,
    pub mac: Mac,
}

/// A MAC derived from the node's name: locally administered, and the same after the
/// device is recreated, so peers' entries stay right across kubelet restarts.
pub fn vtep_mac(node_name: &str) -> Mac {
    let h = fnv32(node_name).to_be_bytes();
    Mac([0x02, 0x56, h[0], h[1], h[2], h[3]])
}

fn link_mac(link: &LinkMessage) -> Option<Mac> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) if bytes.len() == 6 => {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(bytes);
            Some(Mac(mac))
        }
        _ => None,
    })
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

/// The VXLAN attributes of a link, or None when it is no VXLAN device.
fn vxlan_info(link: &LinkMessage) -> Option<Vec<InfoVxlan>> {
    let infos = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    })?;
    if !infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vxlan))) {
        return None;
    }
    Some(
        infos
            .iter()
            .find_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(data)) => Some(data.clone()),
                _ => None,
            })
            .unwrap_or_default(),
    )
}

async fn get_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, NetworkError> {
    match handle.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("finding {name}"))(e)),
    }
}

async fn get_link_by_index(handle: &Handle, index: u32) -> Result<Option<LinkMessage>, NetworkError> {
    match handle.link().get().match_index(index).execute().try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("finding interface {index}"))(e)),
    }
}

/// Creates the device, or checks it and recreates it when its VNI, port, source
/// address or MAC is not what this node needs; gives it the .0 of `pod_cidr` as a
/// /32 (and no other address) and sets it up. `underlay` is the interface holding
/// `local_ip`: the device is bound to it and its MTU is that minus the overhead.
pub async fn ensure_vtep(
    handle: &Handle,
    settings: &VxlanSettings,
    node_name: &str,
    local_ip: Ipv4Addr,
    underlay: u32,
    pod_cidr: Ipv4Cidr,
) -> Result<Vtep, NetworkError> {
    let name = &settings.device;
    let mac = vtep_mac(node_name);
    let underlay_link = get_link_by_index(handle, underlay).await?.ok_or_else(|| NetworkError::Netlink {
        what: format!("the interface holding {local_ip}"),
        message: "vanished".into(),
    })?;
    let mtu = link_mtu(&underlay_link).unwrap_or(1500).saturating_sub(VXLAN_OVERHEAD);
    if let Some(existing) = get_link(handle, name).await? {
        let fits = vxlan_info(&existing).is_some_and(|info| {
            info.contains(&InfoVxlan::Id(settings.vni))
                && info.contains(&InfoVxlan::Port(settings.port))
                && info.contains(&InfoVxlan::Local(local_ip))
                && info.contains(&InfoVxlan::Link(underlay))
                && info.contains(&InfoVxlan::Learning(false))
        }) && link_mac(&existing) == Some(mac);
        if !fits {
            tracing::info!(device = %name, "the VXLAN device does not match this node's settings; recreating it");
            handle
                .link()
                .del(existing.header.index)
                .execute()
                .await
                .map_err(nl(format!("deleting the stale {name}")))?;
        }
    }
    if get_link(handle, name).await?.is_none() {
        let link = LinkVxlan::new(name, settings.vni)
            .port(settings.port)
            .local(local_ip)
            .dev(underlay)
            .learning(false)
            .address(mac.0.to_vec())
            .mtu(mtu)
            .build();
        match handle.link().add(link).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => {
                return Err(
                    nl(format!("creating VXLAN device {name} (VNI {}, port {})", settings.vni, settings.port))(e),
                );
            }
        }
    }
    let index = link_index(handle, name)
        .await?
        .ok_or_else(|| NetworkError::Netlink { what: name.clone(), message: "vanished after creation".into() })?;
    // Exactly one address: the .0 of the pod CIDR (a new pod CIDR replaces the old).
    let want = pod_cidr.network;
    let addresses: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl(format!("listing the addresses of {name}")))?;
    let mut has_want = false;
    for message in addresses {
        let ip = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if message.header.family != AddressFamily::Inet {
            continue;
        }
        if ip == Some(want) && message.header.prefix_len == 32 {
            has_want = true;
        } else {
            handle.address().del(message).execute().await.map_err(nl(format!("removing a stale address of {name}")))?;
        }
    }
    if !has_want {
        match handle.address().add(index, IpAddr::V4(want), 32).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(nl(format!("adding {want}/32 to {name}"))(e)),
        }
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {name} up")))?;
    Ok(Vtep { index, mac })
}

/// Removes the device (and with it every route, neighbour and forwarding entry on
/// it): for a node that no longer runs the vxlan backend, and `kubelet cleanup`.
pub async fn remove_vtep(handle: &Handle, settings: &VxlanSettings) -> Result<bool, NetworkError> {
    match get_link(handle, &settings.device).await? {
        // Only a VXLAN device by that name is the kubelet's.
        Some(link) if vxlan_info(&link).is_some() => {
            handle
                .link()
                .del(link.header.index)
                .execute()
                .await
                .map_err(nl(format!("deleting {}", settings.device)))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// One neighbour or forwarding entry on the device, as the kernel holds it.
struct Entry {
    address: Option<Ipv4Addr>,
    mac: Option<Mac>,
    permanent: bool,
    message: NeighbourMessage,
}

fn parse_entry(message: NeighbourMessage) -> Entry {
    let mut address = None;
    let mut mac = None;
    for a in &message.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => address = Some(*ip),
            // In a forwarding (bridge family) entry the remote comes unparsed.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) if bytes.len() == 4 => {
                address = Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) if bytes.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(bytes);
                mac = Some(Mac(m));
            }
            _ => {}
        }
    }
    let permanent = message.header.state == NeighbourState::Permanent;
    Entry { address, mac, permanent, message }
}

async fn entries(handle: &Handle, family: AddressFamily, index: u32) -> Result<Vec<Entry>, NetworkError> {
    let all: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(family)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing neighbour entries"))?;
    Ok(all.into_iter().filter(|m| m.header.ifindex == index).map(parse_entry).collect())
}

/// What one pass changed on the device.
#[derive(Debug, Clone, Default)]
pub struct EntryChanges {
    pub added: usize,
    pub removed: usize,
}

/// Makes the device's IPv4 neighbour entries exactly `desired`.
pub async fn apply_neighbours(
    handle: &Handle,
    vtep: &Vtep,
    desired: &[VtepNeighbour],
) -> Result<EntryChanges, NetworkError> {
    let mut changes = EntryChanges::default();
    let mut present = Vec::new();
    for entry in entries(handle, AddressFamily::Inet, vtep.index).await? {
        let wanted =
            entry.permanent && desired.iter().any(|d| Some(d.address) == entry.address && Some(d.mac) == entry.mac);
        if wanted {
            present.extend(entry.address);
            continue;
        }
        match handle.neighbours().del(entry.message).execute().await {
            Ok(()) => changes.removed += 1,
            Err(e) if errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(nl("removing a stale neighbour entry")(e)),
        }
    }
    for want in desired.iter().filter(|d| !present.contains(&d.address)) {
        handle
            .neighbours()
            .add(vtep.index, IpAddr::V4(want.address))
            .link_layer_address(&want.mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding neighbour {} -> {}", want.address, want.mac)))?;
        changes.added += 1;
    }
    Ok(changes)
}

/// Makes the device's forwarding entries exactly `desired`.
pub async fn apply_fdb(handle: &Handle, vtep: &Vtep, desired: &[FdbEntry]) -> Result<EntryChanges, NetworkError> {
    let mut changes = EntryChanges::default();
    let mut present = Vec::new();
    for entry in entries(handle, AddressFamily::Bridge, vtep.index).await? {
        // The dump also lists the device's own multicast and unicast addresses;
        // only entries with a remote are forwarding entries.
        if entry.address.is_none() {
            continue;
        }
        let wanted = desired.iter().any(|d| Some(d.mac) == entry.mac && Some(d.remote) == entry.address);
        if wanted {
            present.extend(entry.mac);
            continue;
        }
        match handle.neighbours().del(entry.message).execute().await {
            Ok(()) => changes.removed += 1,
            Err(e) if errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(nl("removing a stale forwarding entry")(e)),
        }
    }
    for want in desired.iter().filter(|d| !present.contains(&d.mac)) {
        handle
            .neighbours()
            .add_bridge(vtep.index, &want.mac.0)
            .destination(IpAddr::V4(want.remote))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding forwarding entry {} -> {}", want.mac, want.remote)))?;
        changes.added += 1;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_macs_are_stable_unicast_and_locally_administered() {
        let a = vtep_mac("node-a");
        assert_eq!(a, vtep_mac("node-a"));
        assert_ne!(a, vtep_mac("node-b"));
        // Bit 0 of the first byte clear: unicast. Bit 1 set: locally administered.
        assert_eq!(a.0[0] & 0b11, 0b10);
    }
}
