//! What the node is made of, read from the kernel: CPUs, memory, disk, PIDs, the OS,
//! and the node's addresses. Pure reads; nothing here changes the host.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use proto::core::v1::NodeSystemInfo;
use proto::meta::v1::Quantity;
use proto::quantity::Amount;

pub fn cpu_count() -> i64 {
    std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1)
}

/// A field of /proc/meminfo in bytes ("MemTotal", "MemAvailable").
pub fn meminfo_bytes(field: &str) -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: i64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// (total, available) bytes of the filesystem holding `path`.
pub fn disk_bytes(path: &Path) -> Option<(i64, i64)> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let block = stat.fragment_size() as i64;
    Some((stat.blocks() as i64 * block, stat.blocks_available() as i64 * block))
}

/// (processes now, the kernel's pid_max).
pub fn pid_usage() -> Option<(i64, i64)> {
    let max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok()?.trim().parse().ok()?;
    let count = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .count() as i64;
    Some((count, max))
}

/// Capacity: cpu, memory, pods, ephemeral-storage (of the root dir's filesystem).
pub fn capacity(root_dir: &Path, max_pods: u32) -> BTreeMap<String, Amount> {
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Amount::from_int(cpu_count()));
    if let Some(memory) = meminfo_bytes("MemTotal") {
        capacity.insert("memory".to_string(), Amount::from_int(memory));
    }
    capacity.insert("pods".to_string(), Amount::from_int(i64::from(max_pods)));
    if let Some((total, _)) = disk_bytes(root_dir) {
        capacity.insert("ephemeral-storage".to_string(), Amount::from_int(total));
    }
    capacity
}

/// Capacity minus what is reserved, never below zero.
pub fn allocatable(
    capacity: &BTreeMap<String, Amount>,
    reserved: &BTreeMap<String, Amount>,
) -> BTreeMap<String, Amount> {
    capacity
        .iter()
        .map(|(name, amount)| {
            let left = match reserved.get(name) {
                Some(r) => amount.checked_sub(*r).filter(|a| a.nanos() >= 0).unwrap_or_else(Amount::zero),
                None => *amount,
            };
            (name.clone(), left)
        })
        .collect()
}

pub fn quantities(amounts: &BTreeMap<String, Amount>) -> BTreeMap<String, Quantity> {
    amounts.iter().map(|(k, v)| (k.clone(), Quantity { string: v.to_string() })).collect()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn system_info() -> NodeSystemInfo {
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let machine = uname.as_ref().map(|u| u.machine().to_string_lossy().into_owned()).unwrap_or_default();
    let architecture = match machine.as_str() {
        "x86_64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    };
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "Linux".into());
    NodeSystemInfo {
        machine_id: read_trimmed("/etc/machine-id"),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        kernel_version: kernel,
        os_image,
        container_runtime_version: format!("rudder-native://{}", env!("CARGO_PKG_VERSION")),
        kubelet_version: format!("v{}", env!("CARGO_PKG_VERSION")),
        operating_system: "linux".into(),
        architecture,
        ..Default::default()
    }
}

/// The first IPv4 address of an interface that is up and not loopback; 127.0.0.1 if none.
pub fn default_node_ip() -> Ipv4Addr {
    use nix::net::if_::InterfaceFlags;
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else { return Ipv4Addr::LOCALHOST };
    for ifaddr in addresses {
        if !ifaddr.flags.contains(InterfaceFlags::IFF_UP) || ifaddr.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        if let Some(ip) = ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|s| s.ip()) {
            return ip;
        }
    }
    Ipv4Addr::LOCALHOST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_subtracts_reservations_and_stops_at_zero() {
        let capacity: BTreeMap<String, Amount> =
            [("cpu".into(), Amount::from_int(2)), ("memory".into(), Amount::from_int(1000))].into();
        let reserved: BTreeMap<String, Amount> =
            [("cpu".into(), Amount::from_milli(500)), ("memory".into(), Amount::from_int(5000))].into();
        let left = allocatable(&capacity, &reserved);
        assert_eq!(left["cpu"].milli_value(), 1500);
        assert!(left["memory"].is_zero());
    }

    #[test]
    fn the_machine_is_readable() {
        assert!(cpu_count() >= 1);
        assert!(meminfo_bytes("MemTotal").unwrap() > 0);
        assert!(!system_info().kernel_version.is_empty());
    }
}
