//! The server's settings and their defaults, including the upstream resolvers
//! read from the node's /etc/resolv.conf.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::Error;
use crate::wire::Name;

/// Where the cluster DNS listens and what it serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of both the UDP and the TCP listener (port 0: any free port, the
    /// same for both).
    pub listen: SocketAddr,
    /// The cluster domain, "cluster.local" by default.
    pub domain: String,
    /// Resolvers for names outside the domain, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// TTL of the answers, and the negative-caching TTL.
    pub ttl: u32,
    /// How long to wait for one upstream before trying the next.
    pub upstream_timeout: Duration,
    /// Bind even when no interface has the address yet (IP_FREEBIND): a node's
    /// DNS can listen on the pod bridge's address before the kubelet creates the
    /// bridge. Off by default, so a mistyped address fails at once.
    pub free_bind: bool,
}

pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// CoreDNS' default for the kubernetes plugin: short, since Services change.
pub const DEFAULT_TTL: u32 = 5;
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

impl Config {
    /// Defaults for `listen`, with the upstreams of /etc/resolv.conf (none when
    /// the file cannot be read: names outside the domain then get SERVFAIL).
    pub fn new(listen: SocketAddr) -> Config {
        let upstreams = match std::fs::read_to_string(RESOLV_CONF) {
            Ok(text) => upstreams_from_resolv_conf(&text, listen),
            Err(e) => {
                tracing::warn!(path = RESOLV_CONF, error = %e, "cannot read the node's resolvers; names outside the cluster domain will fail");
                Vec::new()
            }
        };
        Config {
            listen,
            domain: DEFAULT_DOMAIN.to_string(),
            upstreams,
            ttl: DEFAULT_TTL,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            free_bind: false,
        }
    }

    /// Upstreams from another resolv.conf-format file.
    pub fn with_resolv_conf(mut self, path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::ResolvConf { path: path.display().to_string(), source })?;
        self.upstreams = upstreams_from_resolv_conf(&text, self.listen);
        Ok(self)
    }

    /// The domain as a name, checked.
    pub fn domain_name(&self) -> Result<Name, Error> {
        let bad = |why: &str| Error::InvalidDomain { domain: self.domain.clone(), why: why.to_string() };
        let name = Name::parse(&self.domain).map_err(|e| bad(&e.to_string()))?;
        if name.labels().is_empty() {
            return Err(bad("it is empty; use a name such as cluster.local"));
        }
        let valid_label = |l: &Vec<u8>| {
            l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && l.first() != Some(&b'-')
                && l.last() != Some(&b'-')
        };
        if !name.labels().iter().all(valid_label) {
            return Err(bad("each label must be letters, digits and inner hyphens, e.g. cluster.local"));
        }
        Ok(name)
    }
}

/// The `nameserver` lines of a resolv.conf, on port 53, skipping the server's own
/// address (a node whose resolv.conf already points at the cluster DNS must not
/// forward to itself in a loop).
pub fn upstreams_from_resolv_conf(text: &str, listen: SocketAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            // A scoped IPv6 address (fe80::1%eth0) cannot be a SocketAddr: skipped.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .filter(|upstream| !is_self(*upstream, listen))
        .collect()
}

fn is_self(upstream: SocketAddr, listen: SocketAddr) -> bool {
    if upstream.port() != listen.port() {
        return false;
    }
    // Listening on every address includes loopback; a local address on the same
    // port is then this server too.
    upstream.ip() == listen.ip() || (listen.ip().is_unspecified() && upstream.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_without_ourselves() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver 10.0.0.10\n nameserver  ::1 \nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n";
        let listen: SocketAddr = "10.0.0.10:53".parse().unwrap();
        let got = upstreams_from_resolv_conf(text, listen);
        assert_eq!(got, vec!["192.0.2.53:53".parse().unwrap(), "[::1]:53".parse().unwrap()]);
    }

    #[test]
    fn listening_everywhere_skips_local_resolvers_on_the_same_port() {
        let text = "nameserver 127.0.0.53\nnameserver 192.0.2.1\n";
        let everywhere: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert_eq!(upstreams_from_resolv_conf(text, everywhere), vec!["192.0.2.1:53".parse().unwrap()]);
        // On another port, the local resolver is a different server.
        let other: SocketAddr = "0.0.0.0:5353".parse().unwrap();
        assert_eq!(upstreams_from_resolv_conf(text, other).len(), 2);
    }

    #[test]
    fn domain_is_checked() {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap());
        assert_eq!(config.domain_name().unwrap().to_string(), "cluster.local");
        config.domain = "Cluster.Example.".into();
        assert!(config.domain_name().is_ok());
        for bad in ["", ".", "a..b", "under_score.local", "-x.local"] {
            config.domain = bad.into();
            let err = config.domain_name().unwrap_err().to_string();
            assert!(err.contains("cluster domain"), "{bad}: {err}");
        }
    }
}
