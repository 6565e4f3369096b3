//! Stale UDP conntrack entries. UDP has no connection to close: a client that keeps
//! sending to a Service would keep its NAT entry to an endpoint that is gone, or its
//! un-NATed entry from before the Service had endpoints, until the entry idles out.
//! So when an endpoint of a UDP Service goes away, or a UDP Service gets its first
//! endpoint, the matching entries are deleted with the `conntrack` tool.

use crate::model::{Protocol, ServicePort, Snapshot};

/// One `conntrack -D` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleFlows {
    pub args: Vec<String>,
}

impl std::fmt::Display for StaleFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conntrack -D {}", self.args.join(" "))
    }
}

fn flows(args: &[&str]) -> StaleFlows {
    StaleFlows { args: args.iter().map(|a| a.to_string()).collect() }
}

/// What to delete going from `old` to `new` (a pure function, for tests).
pub fn stale_flows(old: &Snapshot, new: &Snapshot) -> Vec<StaleFlows> {
    let mut out = Vec::new();
    let udp = |s: &Snapshot| -> std::collections::HashMap<String, ServicePort> {
        s.service_ports.iter().filter(|p| p.protocol == Protocol::Udp).map(|p| (p.id(), p.clone())).collect()
    };
    let (before, after) = (udp(old), udp(new));
    for (id, was) in &before {
        let now = after.get(id);
        for endpoint in &was.endpoints {
            if now.is_some_and(|p| p.endpoints.contains(endpoint)) {
                continue;
            }
            let (ip, port, ep) = (was.cluster_ip.to_string(), was.port.to_string(), endpoint.ip().to_string());
            out.push(flows(&["-p", "udp", "--orig-dst", &ip, "--orig-port-dst", &port, "--dst-nat", &ep]));
            if let Some(node_port) = was.node_port {
                out.push(flows(&["-p", "udp", "--orig-port-dst", &node_port.to_string(), "--dst-nat", &ep]));
            }
        }
    }
    for (id, now) in &after {
        let had_endpoints = before.get(id).is_some_and(|p| !p.endpoints.is_empty());
        if now.endpoints.is_empty() || had_endpoints {
            continue;
        }
        let (ip, port) = (now.cluster_ip.to_string(), now.port.to_string());
        out.push(flows(&["-p", "udp", "--orig-dst", &ip, "--orig-port-dst", &port]));
        if let Some(node_port) = now.node_port {
            out.push(flows(&["-p", "udp", "--orig-port-dst", &node_port.to_string()]));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("cannot run conntrack: {0} (install Debian's conntrack package)")]
    Spawn(std::io::Error),
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// Deletes the entries `flows` names. Finding none is not an error.
pub async fn delete(flows: &StaleFlows) -> Result<(), ConntrackError> {
    let output = tokio::process::Command::new("conntrack")
        .arg("-D")
        .args(&flows.args)
        .output()
        .await
        .map_err(ConntrackError::Spawn)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // conntrack exits 1 when nothing matched, saying "0 flow entries have been deleted".
    if output.status.success() || stderr.contains("0 flow entries") {
        return Ok(());
    }
    Err(ConntrackError::Failed { command: flows.to_string(), stderr: stderr.trim().to_string() })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use super::*;

    fn udp(endpoints: &[&str]) -> Snapshot {
        Snapshot {
            service_ports: vec![ServicePort {
                namespace: "kube-system".into(),
                name: "dns".into(),
                port_name: "dns".into(),
                protocol: Protocol::Udp,
                cluster_ip: "10.96.0.10".parse().unwrap(),
                port: 53,
                node_port: None,
                affinity_seconds: None,
                endpoints: endpoints.iter().map(|e| e.parse::<SocketAddrV4>().unwrap()).collect(),
                remote_ips: Vec::new(),
            }],
            node_ips: vec![],
        }
    }

    #[test]
    fn a_removed_udp_endpoint_loses_its_nat_entries() {
        let stale = stale_flows(&udp(&["10.244.0.2:53", "10.244.0.3:53"]), &udp(&["10.244.0.3:53"]));
        assert_eq!(stale.len(), 1);
        assert_eq!(
            stale[0].to_string(),
            "conntrack -D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --dst-nat 10.244.0.2"
        );
    }

    #[test]
    fn a_udp_service_getting_its_first_endpoint_loses_unnated_entries() {
        let stale = stale_flows(&udp(&[]), &udp(&["10.244.0.3:53"]));
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].to_string(), "conntrack -D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53");
        assert!(stale_flows(&udp(&["10.244.0.3:53"]), &udp(&["10.244.0.3:53"])).is_empty());
    }
}
