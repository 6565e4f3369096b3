//! The node's network namespace: the kubelet and kube-proxy run inside it (entered
//! with `nsenter --net`, which leaves the mount namespace alone, so cgroups and the
//! kubelet's mounts stay the host's), so its bridge, pod network, nftables rules and
//! Service addresses never touch the host's. A veth pair links it to the host: the
//! node's InternalIP is on the inside end, so the host reaches NodePorts over a link
//! the test made. Processes inside reach the apiserver and the registry on the
//! host's loopback through relays the test runs (`relay`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use crate::Error;

/// A named network namespace with a veth to the host; deleted on drop.
pub struct NodeNetns {
    pub name: String,
    /// The node's end of the link: its InternalIP.
    pub node_ip: Ipv4Addr,
    /// The host's end.
    pub host_ip: Ipv4Addr,
    host_link: String,
    relays: Vec<tokio::task::JoinHandle<()>>,
}

fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn { program: program.to_string(), source })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl NodeNetns {
    /// Creates `name` with a /30 link to the host: the host on 198.18.`octet`.1, the
    /// node on .2 (198.18.0.0/15 is reserved for network tests, so it meets no real
    /// network). `routed` CIDRs (the Service range) get a route over the link, so the
    /// node's own connections to ClusterIPs are routed before kube-proxy's output
    /// hook translates them; the node has no default route, so nothing it sends can
    /// leave through the host.
    pub fn create(name: &str, octet: u8, routed: &[&str]) -> Result<NodeNetns, Error> {
        let host_ip = Ipv4Addr::new(198, 18, octet, 1);
        let node_ip = Ipv4Addr::new(198, 18, octet, 2);
        run("ip", &["netns", "add", name])?;
        // From here on, drop removes what was made.
        let host_link = format!("{}h", truncate(name, 14));
        let netns = NodeNetns { name: name.to_string(), node_ip, host_ip, host_link, relays: Vec::new() };
        netns.ip(&["link", "set", "lo", "up"])?;
        run("ip", &["link", "add", &netns.host_link, "type", "veth", "peer", "name", "eth0", "netns", name])?;
        run("ip", &["addr", "add", &format!("{host_ip}/30"), "dev", &netns.host_link])?;
        run("ip", &["link", "set", &netns.host_link, "up"])?;
        netns.ip(&["addr", "add", &format!("{node_ip}/30"), "dev", "eth0"])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        for cidr in routed {
            netns.ip(&["route", "add", cidr, "via", &host_ip.to_string()])?;
        }
        Ok(netns)
    }

    /// `ip -n <name> ...`
    pub fn ip(&self, args: &[&str]) -> Result<String, Error> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// The namespace's file, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `nsenter --net=<path> <program> <args>`: the argument list to run a program
    /// inside (only the network namespace changes).
    pub fn wrap(&self, program: &str, args: &[String]) -> Vec<String> {
        let mut all = vec![format!("--net={}", self.path().display()), "--".to_string(), program.to_string()];
        all.extend(args.iter().cloned());
        all
    }

    /// Runs a program inside and returns its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<std::process::Output, Error> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Command::new("nsenter")
            .args(self.wrap(program, &args))
            .output()
            .map_err(|source| Error::Spawn { program: "nsenter".into(), source })
    }

    /// Runs `f` on a fresh thread that has entered the namespace (sockets it makes
    /// belong to the namespace), off the async runtime's threads.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        tokio::task::spawn_blocking(move || enter(path, f)).await.expect("a blocking task")
    }

    /// Forwards connections to 127.0.0.1:`port` inside the namespace to `target` on
    /// the host (the apiserver, the registry), for as long as the namespace lives.
    pub async fn relay(&mut self, port: u16, target: SocketAddr) -> Result<(), Error> {
        let path = self.path();
        let listener = tokio::task::spawn_blocking(move || {
            enter(path, move || {
                let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
                listener.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(listener)
            })
        })
        .await
        .expect("a blocking task")
        .map_err(|source| Error::Io { what: format!("listening on 127.0.0.1:{port} in {}", self.name), source })?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|source| Error::Io { what: "a relay listener".into(), source })?;
        self.relays.push(tokio::spawn(async move {
            while let Ok((mut inside, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // Made on a runtime thread, so in the host's namespace.
                    if let Ok(mut host) = tokio::net::TcpStream::connect(target).await {
                        let _ = host.set_nodelay(true);
                        let _ = inside.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inside, &mut host).await;
                    }
                });
            }
        }));
        Ok(())
    }
}

fn truncate(text: &str, max: usize) -> &str {
    &text[..text.len().min(max)]
}

fn enter<T>(path: PathBuf, f: impl FnOnce() -> T + Send) -> T
where
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("entering {}: {e}", path.display()));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Drop for NodeNetns {
    fn drop(&mut self) {
        for relay in &self.relays {
            relay.abort();
        }
        // Deleting the namespace deletes its veth end and with it the host's.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).output();
    }
}
