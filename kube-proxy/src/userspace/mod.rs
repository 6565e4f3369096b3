//! The userspace proxier (`--proxy-mode=userspace`), for hosts without nftables:
//! every ClusterIP sits on a dummy interface kube-proxy owns (`interface`), and
//! kube-proxy itself listens on each ClusterIP:port (and on each NodePort, on every
//! address) and forwards TCP (`tcp`) and UDP (`udp`) to the endpoints, round robin
//! (`backends`).

pub mod backends;
pub mod interface;
pub mod tcp;
pub mod udp;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use backends::Backends;
use interface::ServiceInterface;

use crate::model::{Protocol, Snapshot};
use crate::sync::{Proxier, SyncError, SyncReport};

/// Where one listener listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Listen {
    address: SocketAddrV4,
    protocol: Protocol,
}

struct Listener {
    backends: Arc<Backends>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct UserspaceProxier {
    interface: ServiceInterface,
    listeners: HashMap<Listen, Listener>,
}

impl UserspaceProxier {
    pub async fn new(interface_name: &str) -> Result<UserspaceProxier, SyncError> {
        let interface = ServiceInterface::ensure(interface_name)
            .await
            .map_err(|e| SyncError::Userspace(format!("the service interface {interface_name}: {e}")))?;
        Ok(UserspaceProxier { interface, listeners: HashMap::new() })
    }

    async fn open(listen: Listen, backends: Arc<Backends>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let address = SocketAddr::V4(listen.address);
        Ok(match listen.protocol {
            Protocol::Tcp => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                socket.bind(address)?;
                tokio::spawn(tcp::serve(socket.listen(1024)?, backends))
            }
            Protocol::Udp => tokio::spawn(udp::serve(tokio::net::UdpSocket::bind(address).await?, backends)),
        })
    }
}

#[async_trait::async_trait]
impl Proxier for UserspaceProxier {
    async fn sync(&mut self, snapshot: &Snapshot) -> Result<SyncReport, SyncError> {
        let cluster_ips: BTreeSet<Ipv4Addr> = snapshot.service_ports.iter().map(|p| p.cluster_ip).collect();
        // Addresses first: a listener can bind only an address the node has.
        let interface_error = self.interface.set_addresses(&cluster_ips).await.err();
        let mut wanted: HashMap<Listen, (&[SocketAddrV4], Option<Duration>)> = HashMap::new();
        for port in &snapshot.service_ports {
            let affinity = port.affinity_seconds.map(|s| Duration::from_secs(u64::from(s)));
            let at = SocketAddrV4::new(port.cluster_ip, port.port);
            wanted.insert(Listen { address: at, protocol: port.protocol }, (&port.endpoints, affinity));
            if let Some(node_port) = port.node_port {
                let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, node_port);
                wanted.insert(Listen { address: any, protocol: port.protocol }, (&port.endpoints, affinity));
            }
        }
        self.listeners.retain(|listen, _| wanted.contains_key(listen));
        let mut failures = Vec::new();
        for (listen, (endpoints, affinity)) in wanted {
            if let Some(listener) = self.listeners.get(&listen) {
                listener.backends.set(endpoints, affinity);
                continue;
            }
            let backends = Arc::new(Backends::default());
            backends.set(endpoints, affinity);
            match Self::open(listen, backends.clone()).await {
                Ok(task) => {
                    self.listeners.insert(listen, Listener { backends, task });
                }
                Err(e) => failures.push(format!("listening on {} {}: {e}", listen.protocol, listen.address)),
            }
        }
        if let Some(e) = interface_error {
            failures.insert(0, e.to_string());
        }
        if !failures.is_empty() {
            return Err(SyncError::Userspace(failures.join("; ")));
        }
        Ok(SyncReport { rules: self.listeners.len(), full: false })
    }
}
