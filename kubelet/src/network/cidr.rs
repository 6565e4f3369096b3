//! An IPv4 network in CIDR form ("10.244.1.0/24").

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// The n-th address of the network (0 is the network address itself).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = self.size();
        (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first host address: the bridge's, the pods' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1).unwrap_or(self.network)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("\"{text}\" is not an IPv4 CIDR such as 10.244.1.0/24: {why}")]
pub struct CidrError {
    text: String,
    why: String,
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let fail = |why: &str| CidrError { text: text.into(), why: why.into() };
        let (ip, prefix) = text.split_once('/').ok_or_else(|| fail("no /prefix"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| fail("bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| fail("bad prefix length"))?;
        if prefix > 30 {
            return Err(fail("the prefix must be at most 30 to hold a gateway and pods"));
        }
        let cidr = Ipv4Cidr { network: ip, prefix };
        if u32::from(ip) & cidr.mask() != u32::from(ip) {
            return Err(fail("host bits are set"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_counts() {
        let c: Ipv4Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(c.nth(255), Some(Ipv4Addr::new(10, 244, 1, 255)));
        assert_eq!(c.nth(256), None);
        assert!(c.contains(Ipv4Addr::new(10, 244, 1, 77)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 2, 1)));
        assert!("10.244.1.1/24".parse::<Ipv4Cidr>().unwrap_err().to_string().contains("host bits"));
    }
}
