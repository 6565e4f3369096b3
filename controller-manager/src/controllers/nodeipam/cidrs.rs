//! The pool of node pod CIDRs: the cluster CIDR cut into equal subnets (a /24 per
//! node out of 10.244.0.0/16 by default), each handed out at most once until freed.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').ok_or_else(|| format!("\"{s}\" is not a CIDR such as 10.244.0.0/16"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("\"{s}\": \"{ip}\" is not an IPv4 address"))?;
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("\"{s}\": bad prefix length"))?;
        let mask = mask(prefix);
        if u32::from(ip) & !mask != 0 {
            return Err(format!(
                "\"{s}\" has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(ip) & mask)
            ));
        }
        Ok(Cidr { base: ip, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
}

/// The subnets of a cluster CIDR and which are taken.
#[derive(Debug)]
pub struct CidrPool {
    cluster: Cidr,
    subnet_prefix: u8,
    taken: BTreeSet<u32>,
    /// Where the next search starts, so freed subnets are not reused at once.
    next: u32,
}

impl CidrPool {
    pub fn new(cluster: Cidr, subnet_prefix: u8) -> Result<Self, String> {
        if subnet_prefix < cluster.prefix || subnet_prefix > 30 {
            return Err(format!(
                "a node CIDR mask of /{subnet_prefix} does not fit the cluster CIDR {cluster}: use a size between /{} and /30",
                cluster.prefix
            ));
        }
        Ok(CidrPool { cluster, subnet_prefix, taken: BTreeSet::new(), next: 0 })
    }

    /// How many subnets the pool has in all.
    pub fn size(&self) -> u32 {
        1u32 << (self.subnet_prefix - self.cluster.prefix).min(31)
    }

    fn index_of(&self, cidr: &Cidr) -> Option<u32> {
        let offset = u32::from(cidr.base).checked_sub(u32::from(self.cluster.base))?;
        let index = offset >> (32 - self.subnet_prefix);
        (cidr.prefix == self.subnet_prefix && index < self.size()).then_some(index)
    }

    fn cidr_at(&self, index: u32) -> Cidr {
        Cidr {
            base: Ipv4Addr::from(u32::from(self.cluster.base) + (index << (32 - self.subnet_prefix))),
            prefix: self.subnet_prefix,
        }
    }

    /// Marks a subnet a node already has as taken. False when it is not one of the
    /// pool's subnets (another cluster CIDR or mask size).
    pub fn occupy(&mut self, cidr: &Cidr) -> bool {
        match self.index_of(cidr) {
            Some(index) => {
                self.taken.insert(index);
                true
            }
            None => false,
        }
    }

    /// A free subnet, now taken; None when every subnet is in use.
    pub fn allocate(&mut self) -> Option<Cidr> {
        let size = self.size();
        for step in 0..size {
            let index = (self.next + step) % size;
            if self.taken.insert(index) {
                self.next = (index + 1) % size;
                return Some(self.cidr_at(index));
            }
        }
        None
    }

    pub fn release(&mut self, cidr: &Cidr) {
        if let Some(index) = self.index_of(cidr) {
            self.taken.remove(&index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_strictly() {
        assert_eq!("10.244.0.0/16".parse::<Cidr>().unwrap().to_string(), "10.244.0.0/16");
        let error = "10.244.1.0/16".parse::<Cidr>().unwrap_err();
        assert!(error.contains("did you mean 10.244.0.0/16"), "{error}");
        assert!("10.244.0.0".parse::<Cidr>().is_err());
        assert!("10.244.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn subnets_are_handed_out_once_and_reused_only_after_release() {
        let mut pool = CidrPool::new("10.244.0.0/22".parse().unwrap(), 24).unwrap();
        assert_eq!(pool.size(), 4);
        assert!(pool.occupy(&"10.244.1.0/24".parse().unwrap()));
        assert!(!pool.occupy(&"10.245.0.0/24".parse().unwrap()), "outside the cluster CIDR");
        let got: Vec<String> = (0..3).map(|_| pool.allocate().unwrap().to_string()).collect();
        assert_eq!(got, ["10.244.0.0/24", "10.244.2.0/24", "10.244.3.0/24"]);
        assert_eq!(pool.allocate(), None, "full");
        pool.release(&"10.244.2.0/24".parse().unwrap());
        assert_eq!(pool.allocate().unwrap().to_string(), "10.244.2.0/24");
    }

    #[test]
    fn a_mask_that_does_not_fit_is_refused_with_the_range() {
        let error = CidrPool::new("10.244.0.0/16".parse().unwrap(), 8).unwrap_err();
        assert!(error.contains("/16") && error.contains("/30"), "{error}");
    }
}
