//! A range of allocatable values (IPv4 addresses of a CIDR, or ports) and the hint of
//! which are in use.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Mutex;

use rand::RngExt as _;

use crate::storage::keys::Keys;

/// An IPv4 CIDR for Service ClusterIPs ("10.96.0.0/12").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl FromStr for ServiceCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').ok_or_else(|| format!("\"{s}\" is not a CIDR such as 10.96.0.0/12"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("\"{s}\": \"{addr}\" is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("\"{s}\": the prefix length must be between 8 and 30"))?;
        let mask = u32::MAX << (32 - prefix_len);
        Ok(ServiceCidr { network: Ipv4Addr::from(u32::from(addr) & mask), prefix_len })
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl ServiceCidr {
    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix_len)
    }

    /// Whether `ip` is a usable address of the range (not its network or broadcast address).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.network));
        offset >= 1 && offset < self.size() - 1
    }
}

/// A port range for NodePorts ("30000-32767").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
        match s.split_once('-').map(|(a, b)| (parse(a), parse(b))) {
            Some((Some(first), Some(last))) if first <= last => Ok(PortRange { first, last }),
            _ => Err(format!("\"{s}\" is not a port range such as 30000-32767")),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl PortRange {
    pub fn contains(&self, port: i32) -> bool {
        (i32::from(self.first)..=i32::from(self.last)).contains(&port)
    }
}

/// Allocates values of one range. Values are u32 offsets; `render` turns one into
/// its text form (an address or a port number).
pub struct RangeAllocator {
    /// The range's name in reservation keys: "serviceips", "servicenodeports".
    name: &'static str,
    /// The range as configured, for error messages ("10.96.0.0/12").
    description: String,
    keys: Keys,
    first: u32,
    size: u32,
    render: fn(u32) -> String,
    used: Mutex<HashSet<u32>>,
}

impl RangeAllocator {
    pub fn for_service_ips(cidr: ServiceCidr, keys: Keys) -> Self {
        RangeAllocator {
            name: "serviceips",
            description: cidr.to_string(),
            keys,
            first: u32::from(cidr.network) + 1,
            size: cidr.size() - 2,
            render: |v| Ipv4Addr::from(v).to_string(),
            used: Mutex::new(HashSet::new()),
        }
    }

    pub fn for_node_ports(range: PortRange, keys: Keys) -> Self {
        RangeAllocator {
            name: "servicenodeports",
            description: range.to_string(),
            keys,
            first: u32::from(range.first),
            size: u32::from(range.last) - u32::from(range.first) + 1,
            render: |v| v.to_string(),
            used: Mutex::new(HashSet::new()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Whether `value` belongs to the range.
    pub fn contains(&self, value: u32) -> bool {
        self.offset_of(value).is_some()
    }

    /// The reservation key of a value, given as its text form.
    pub fn key(&self, text: &str) -> String {
        self.keys.reservation(self.name, text)
    }

    fn used(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        self.used.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn offset_of(&self, value: u32) -> Option<u32> {
        value.checked_sub(self.first).filter(|o| *o < self.size)
    }

    /// Picks a free value (by the hint), starting at a random point of the range so
    /// that concurrent pickers rarely collide. None: the range is full.
    pub fn pick(&self, also_exclude: &[u32]) -> Option<(u32, String)> {
        let used = self.used();
        let start = rand::rng().random_range(0..self.size);
        (0..self.size)
            .map(|i| self.first + (start + i) % self.size)
            .find(|v| !used.contains(v) && !also_exclude.contains(v))
            .map(|v| (v, (self.render)(v)))
    }

    /// Whether the hint says `value` is taken.
    pub fn is_used(&self, value: u32) -> bool {
        self.used().contains(&value)
    }

    pub fn mark_used(&self, value: u32) {
        if self.offset_of(value).is_some() {
            self.used().insert(value);
        }
    }

    pub fn mark_free(&self, value: u32) {
        self.used().remove(&value);
    }

    /// Marks the value whose reservation key is `key` used or free, if the key
    /// belongs to this range.
    pub fn mark_key(&self, key: &str, used: bool, parse: impl Fn(&str) -> Option<u32>) {
        let prefix = self.keys.reservations(self.name);
        if let Some(value) = key.strip_prefix(&prefix).and_then(parse) {
            if used {
                self.mark_used(value);
            } else {
                self.mark_free(value);
            }
        }
    }

    pub fn reservations_prefix(&self) -> String {
        self.keys.reservations(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        let cidr: ServiceCidr = "10.96.0.0/12".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert!(cidr.contains("10.96.0.10".parse().unwrap()));
        assert!(cidr.contains("10.111.255.254".parse().unwrap()));
        assert!(!cidr.contains("10.96.0.0".parse().unwrap()));
        assert!(!cidr.contains("10.111.255.255".parse().unwrap()));
        assert!(!cidr.contains("192.168.192.72".parse().unwrap()));
        assert!("10.96.0.0".parse::<ServiceCidr>().is_err());
        let ports: PortRange = "30000-32767".parse().unwrap();
        assert!(ports.contains(30000) && ports.contains(32767) && !ports.contains(8010));
        assert!("5-1".parse::<PortRange>().is_err());
    }

    #[test]
    fn picks_every_value_once_then_reports_full() {
        let alloc = RangeAllocator::for_node_ports(PortRange { first: 100, last: 104 }, Keys::new("/r"));
        let mut seen = HashSet::new();
        while let Some((v, text)) = alloc.pick(&[]) {
            assert_eq!(text, v.to_string());
            assert!(seen.insert(v));
            alloc.mark_used(v);
        }
        assert_eq!(seen.len(), 5);
        alloc.mark_free(102);
        assert_eq!(alloc.pick(&[]).map(|p| p.0), Some(102));
        assert_eq!(alloc.key("30001"), "/r/ranges/servicenodeports/30001");
    }
}
