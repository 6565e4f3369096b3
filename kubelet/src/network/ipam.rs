//! Host-local IP allocation: one file per allocated address, named by the address and
//! holding the pod's uid, created with O_EXCL so two pods can never get one address,
//! and persisted so a restarted kubelet hands out nothing twice.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cidr::Ipv4Cidr;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("the pod CIDR {0} has no free address left")]
    Exhausted(Ipv4Cidr),
    #[error("IPAM state in {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
}

impl Ipam {
    pub fn open(dir: &Path, cidr: Ipv4Cidr) -> Result<Ipam, IpamError> {
        let dir = dir.join(cidr.to_string().replace('/', "_"));
        std::fs::create_dir_all(&dir).map_err(|source| IpamError::Io { path: dir.display().to_string(), source })?;
        Ok(Ipam { dir, cidr })
    }

    fn owner(&self, ip: Ipv4Addr) -> Option<String> {
        std::fs::read_to_string(self.dir.join(ip.to_string())).ok().map(|s| s.trim().to_string())
    }

    /// Every allocation: (address, pod uid).
    pub fn allocations(&self) -> Vec<(Ipv4Addr, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| {
                let ip: Ipv4Addr = e.file_name().to_str()?.parse().ok()?;
                Some((ip, self.owner(ip)?))
            })
            .collect()
    }

    /// The pod's address: the one it already has, else the next free one after the
    /// last handed out (so a just-freed address is not reused at once).
    pub fn allocate(&self, pod_uid: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some((ip, _)) = self.allocations().into_iter().find(|(_, owner)| owner == pod_uid) {
            return Ok(ip);
        }
        let last_path = self.dir.join("last-reserved");
        let last: u32 = std::fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .filter(|ip| self.cidr.contains(*ip))
            .map(|ip| u32::from(ip) - u32::from(self.cidr.network))
            .unwrap_or(1);
        // Host numbers 2 ..= size-2: 0 is the network, 1 the gateway, the last broadcast.
        let size = self.cidr.size() as u32;
        let usable = size.saturating_sub(3);
        for step in 1..=usable {
            // Position of the last handed out among the usable ones (-1: none yet).
            let last_position = i64::from(last) - 2;
            let n = 2 + ((last_position + i64::from(step)).rem_euclid(i64::from(usable))) as u32;
            let Some(ip) = self.cidr.nth(n) else { continue };
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(pod_uid.as_bytes())
                        .map_err(|source| IpamError::Io { path: path.display().to_string(), source })?;
                    let _ = std::fs::write(&last_path, ip.to_string());
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(IpamError::Io { path: path.display().to_string(), source }),
            }
        }
        Err(IpamError::Exhausted(self.cidr))
    }

    /// Frees whatever the pod holds.
    pub fn release(&self, pod_uid: &str) {
        for (ip, owner) in self.allocations() {
            if owner == pod_uid {
                let _ = std::fs::remove_file(self.dir.join(ip.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_stable_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let cidr: Ipv4Cidr = "10.9.0.0/29".parse().unwrap();
        let ipam = Ipam::open(dir.path(), cidr).unwrap();
        let a = ipam.allocate("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(ipam.allocate("a").unwrap(), a);
        let reopened = Ipam::open(dir.path(), cidr).unwrap();
        let b = reopened.allocate("b").unwrap();
        assert_ne!(a, b);
        for uid in ["c", "d", "e"] {
            reopened.allocate(uid).unwrap();
        }
        // .2 through .6 are taken: a /29 has no more.
        assert!(matches!(reopened.allocate("f"), Err(IpamError::Exhausted(_))));
        reopened.release("c");
        let f = reopened.allocate("f").unwrap();
        assert!(cidr.contains(f) && f != cidr.gateway());
        assert_eq!(reopened.allocations().len(), 5);
    }
}
