//! The pod network on one node: a bridge holding the first address of the node's pod
//! CIDR, one veth pair per pod with `eth0` inside the pod, host-local IP allocation
//! persisted under the root dir, a default route via the bridge, and masquerade for
//! pod traffic leaving the cluster CIDR in the kubelet's own nftables table.
//!
//! A netlink socket belongs to the network namespace of the thread that opens it, so
//! work inside a pod's namespace runs on a thread of its own that has joined it.

pub mod cidr;
pub mod ipam;
pub mod overlay;
pub mod plan;
pub mod routes;
pub mod vxlan;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd as _;
use std::path::Path;

use futures::TryStreamExt as _;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use cidr::Ipv4Cidr;
use ipam::{Ipam, IpamError};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("netlink: {what}: {message}")]
    Netlink { what: String, message: String },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("nftables: {0}")]
    Nft(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |e| NetworkError::Netlink { what, message: e.to_string() }
}

/// The errno in a netlink error answer.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

const EEXIST: i32 = 17;

/// The pod's end of its veth pair, inside its network namespace.
const POD_INTERFACE: &str = "eth0";

/// A stable, small hash for interface names.
fn fnv32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The host end of a pod's veth pair.
pub fn host_veth_name(pod_uid: &str) -> String {
    format!("rdr{:08x}", fnv32(pod_uid))
}

fn connect() -> Result<Handle, NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| NetworkError::Io { what: "opening a netlink socket".into(), source: e })?;
    tokio::spawn(connection);
    Ok(handle)
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    match handle.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(19) => Ok(None), // ENODEV
        Err(e) => Err(nl(format!("finding {name}"))(e)),
    }
}

#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub bridge: String,
    pub pod_cidr: Ipv4Cidr,
    /// Pod traffic to addresses outside this is masqueraded.
    pub cluster_cidr: Ipv4Cidr,
    pub nft_table: String,
}

pub struct PodNetwork {
    config: NetworkConfig,
    ipam: Ipam,
}

impl PodNetwork {
    pub fn new(config: NetworkConfig, state_dir: &Path) -> Result<PodNetwork, NetworkError> {
        let ipam = Ipam::open(&state_dir.join("ipam"), config.pod_cidr)?;
        Ok(PodNetwork { config, ipam })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Creates (or checks) the bridge with its address and MAC, and the masquerade rule.
    pub async fn setup(&self) -> Result<(), NetworkError> {
        let handle = connect()?;
        let name = &self.config.bridge;
        let index = match link_index(&handle, name).await? {
            Some(index) => index,
            None => {
                // A bridge takes a port's MAC unless it has its own; a fixed one keeps
                // the gateway's MAC stable as pods come and go.
                let h = fnv32(name).to_be_bytes();
                let mac = vec![0x02, 0x52, h[0], h[1], h[2], h[3]];
                match handle.link().add(LinkBridge::new(name).address(mac).build()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => return Err(nl(format!("creating bridge {name}"))(e)),
                }
                link_index(&handle, name).await?.ok_or_else(|| NetworkError::Netlink {
                    what: format!("bridge {name}"),
                    message: "vanished".into(),
                })?
            }
        };
        let gateway = self.config.pod_cidr.gateway();
        match handle.address().add(index, IpAddr::V4(gateway), self.config.pod_cidr.prefix).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(nl(format!("adding {gateway} to {name}"))(e)),
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("setting {name} up")))?;
        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() != "1").unwrap_or(true) {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|source| NetworkError::Io { what: "enabling net.ipv4.ip_forward".into(), source })?;
        }
        self.apply_masquerade().await
    }

    async fn apply_masquerade(&self) -> Result<(), NetworkError> {
        let t = &self.config.nft_table;
        let script = format!(
            "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {pod} ip daddr != {cluster} masquerade\n  }}\n}}\n",
            pod = self.config.pod_cidr,
            cluster = self.config.cluster_cidr,
        );
        nft(&script).await
    }

    /// Gives the pod whose network namespace `netns_pid` holds its address, `eth0`
    /// and default route. Idempotent: a pod already wired keeps its address.
    pub async fn attach(&self, pod_uid: &str, netns_pid: i32) -> Result<Ipv4Addr, NetworkError> {
        let ip = self.ipam.allocate(pod_uid)?;
        let handle = connect()?;
        let host = host_veth_name(pod_uid);
        let bridge = link_index(&handle, &self.config.bridge).await?.ok_or_else(|| NetworkError::Netlink {
            what: self.config.bridge.clone(),
            message: "the bridge is missing".into(),
        })?;
        if let Some(index) = link_index(&handle, &host).await? {
            // Wired before (a kubelet restart): check from inside that eth0 is there.
            if self.in_pod(netns_pid, ip, false).await.is_ok() {
                return Ok(ip);
            }
            let _ = handle.link().del(index).execute().await;
        }
        // One request makes the pair with its pod end already named eth0 inside the
        // pod's namespace and its host end up on the bridge: moving and renaming a
        // device afterwards costs the kernel (under its global rtnl lock) far more.
        let peer = LinkUnspec::new_with_name(POD_INTERFACE).setns_by_pid(netns_pid as u32).build();
        let pair = LinkVeth::new(&host, POD_INTERFACE)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge)
            .up()
            .build();
        handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(nl(format!("creating veth {host} on {}", self.config.bridge)))?;
        self.in_pod(netns_pid, ip, true).await?;
        Ok(ip)
    }

    /// Configures (when `configure` is set) or checks the pod's eth0, from a thread
    /// inside the pod's network namespace. The thread is the work's own and ends with
    /// it: a pooled thread would stay in the namespace (and keep it alive) afterwards.
    async fn in_pod(&self, pid: i32, ip: Ipv4Addr, configure: bool) -> Result<(), NetworkError> {
        let prefix = self.config.pod_cidr.prefix;
        let gateway = self.config.pod_cidr.gateway();
        let work = move || -> Result<(), NetworkError> {
            let path = format!("/proc/{pid}/ns/net");
            let file = std::fs::File::open(&path)
                .map_err(|source| NetworkError::Io { what: format!("opening {path}"), source })?;
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::Io {
                what: format!("joining the network namespace of process {pid}"),
                source: e.into(),
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|source| NetworkError::Io { what: "a runtime for the pod's netlink socket".into(), source })?;
            runtime.block_on(async move {
                let handle = connect()?;
                let index = link_index(&handle, POD_INTERFACE).await?.ok_or_else(|| NetworkError::Netlink {
                    what: POD_INTERFACE.into(),
                    message: "missing in the pod".into(),
                })?;
                if !configure {
                    return Ok(());
                }
                handle
                    .address()
                    .add(index, IpAddr::V4(ip), prefix)
                    .execute()
                    .await
                    .map_err(nl(format!("adding {ip}/{prefix} to eth0")))?;
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(nl("setting eth0 up"))?;
                // The loopback device of a new namespace is always index 1.
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(1).up().build())
                    .execute()
                    .await
                    .map_err(nl("setting lo up"))?;
                let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(index).build();
                handle
                    .route()
                    .add(route)
                    .execute()
                    .await
                    .map_err(nl(format!("adding the default route via {gateway}")))?;
                Ok(())
            })
        };
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("pod-netns".into())
            .spawn(move || {
                let _ = done.send(work());
            })
            .map_err(|source| NetworkError::Io { what: "starting the pod network thread".into(), source })?;
        result.await.map_err(|_| NetworkError::Io {
            what: "the pod network thread".into(),
            source: std::io::Error::other("it ended without an answer"),
        })?
    }

    /// Removes the pod's veth (if its namespace still exists) and frees its address.
    pub async fn detach(&self, pod_uid: &str) -> Result<(), NetworkError> {
        let handle = connect()?;
        if let Some(index) = link_index(&handle, &host_veth_name(pod_uid)).await? {
            match handle.link().del(index).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(19) => {}
                Err(e) => return Err(nl("deleting the pod's veth")(e)),
            }
        }
        self.ipam.release(pod_uid);
        Ok(())
    }
}

/// Removes the bridge and the kubelet's nftables table (for `kubelet cleanup`).
pub async fn remove_host_state(bridge: &str, nft_table: &str) -> Result<(), NetworkError> {
    let handle = connect()?;
    if let Some(index) = link_index(&handle, bridge).await? {
        handle.link().del(index).execute().await.map_err(nl(format!("deleting bridge {bridge}")))?;
    }
    nft(&format!("table ip {nft_table}\ndelete table ip {nft_table}\n")).await
}

async fn nft(script: &str) -> Result<(), NetworkError> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError::Nft(format!("running nft (install the nftables package): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(|e| NetworkError::Nft(e.to_string()))?;
    }
    let out = child.wait_with_output().await.map_err(|e| NetworkError::Nft(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Nft(format!("{}\n{script}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}
