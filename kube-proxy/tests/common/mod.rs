//! The world of a kube-proxy test, all inside network namespaces this test creates
//! and removes (also on failure): a "node" namespace where the real kube-proxy binary
//! runs, with a bridge for pods; "pods" (namespaces on that bridge) running small
//! TCP and UDP servers that answer with their name; an "outside" namespace linked to
//! the node for NodePort traffic from off the node. A real etcd and apiserver run on
//! the host's loopback; the node reaches the apiserver through a relay the test runs,
//! so no traffic to a Service address ever happens outside these namespaces.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use client::{Api, Client, PatchType};
use proto::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, Service};
use proto::meta::v1::ObjectMeta;

pub const NODE_NAME: &str = "kpx-node";
/// The node's address on the link to the outside namespace (its InternalIP).
pub const NODE_IP: &str = "192.168.50.1";
pub const OUTSIDE_IP: &str = "192.168.50.2";
pub const BRIDGE_IP: &str = "10.244.0.1";
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// How long any awaited condition may take; generous, never a timing assertion.
pub const DEADLINE: Duration = Duration::from_secs(30);

static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(output.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(role: &str) -> Netns {
        let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
        let name = format!("kpx{}-{n}-{role}", std::process::id());
        ip(&["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// `ip -n <netns> ...`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        Command::new("ip").args(&all).output().unwrap_or_else(|e| panic!("ip netns exec {program}: {e}"))
    }

    /// Runs `f` on a fresh thread that has entered the namespace: sockets it makes
    /// belong to the namespace for good.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        enter(self.name.clone(), f)
    }

    /// `enter` from async code, off the runtime's threads.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || enter(name, f)).await.expect("blocking task")
    }
}

fn enter<T: Send + 'static>(name: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// The node, its pods and the outside.
pub struct World {
    pub node: Netns,
    pub outside: Netns,
    pub pods: Vec<(String, Netns, Ipv4Addr)>,
}

impl World {
    pub fn new() -> World {
        let node = Netns::create("node");
        node.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        node.ip(&["link", "add", "br0", "address", "02:00:0a:f4:00:01", "type", "bridge"]);
        node.ip(&["addr", "add", &format!("{BRIDGE_IP}/24"), "dev", "br0"]);
        node.ip(&["link", "set", "br0", "up"]);
        let outside = Netns::create("out");
        node.ip(&["link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", &outside.name]);
        node.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "uplink"]);
        node.ip(&["link", "set", "uplink", "up"]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "eth0"]);
        outside.ip(&["link", "set", "eth0", "up"]);
        outside.ip(&["route", "add", "default", "via", NODE_IP]);
        // A host needs a route to the service CIDR for its own connections to be
        // routed before the output hook DNATs them; like a real host's default route,
        // and it leads only into the test's own namespaces.
        node.ip(&["route", "add", "default", "via", OUTSIDE_IP]);
        World { node, outside, pods: Vec::new() }
    }

    /// A pod on the node's bridge at 10.244.0.<host>.
    pub fn add_pod(&mut self, name: &str, host: u8) -> Ipv4Addr {
        let pod = Netns::create(name);
        let address = Ipv4Addr::new(10, 244, 0, host);
        let port = format!("veth{host}");
        self.node.ip(&["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &pod.name]);
        self.node.ip(&["link", "set", &port, "master", "br0", "up"]);
        // As the kubelet must: with br_netfilter, a pod's connection to its own
        // Service is DNATed back out of the port it came in by, which the bridge
        // allows only in hairpin mode.
        self.node.ip(&["link", "set", &port, "type", "bridge_slave", "hairpin", "on"]);
        pod.ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        pod.ip(&["link", "set", "eth0", "up"]);
        pod.ip(&["route", "add", "default", "via", BRIDGE_IP]);
        self.pods.push((name.to_string(), pod, address));
        address
    }

    pub fn pod(&self, name: &str) -> &Netns {
        &self.pods.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no pod {name}")).1
    }
}

/// A TCP server in `netns` on `port` that answers every connection with `reply`
/// and closes it; it lives as long as the test process.
pub fn serve_tcp(netns: &Netns, port: u16, reply: &str) {
    let reply = reply.to_string();
    let listener = netns.enter(move || std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(reply.as_bytes());
        }
    });
}

/// A UDP server in `netns` on `port` that answers every datagram with `reply`.
pub fn serve_udp(netns: &Netns, port: u16, reply: &str) {
    let reply = reply.to_string();
    let socket = netns.enter(move || UdpSocket::bind(("0.0.0.0", port)).expect("bind"));
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        while let Ok((_, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(reply.as_bytes(), from);
        }
    });
}

/// One TCP request from inside `netns`: the reply, or the error.
pub async fn tcp_request(netns: &Netns, to: SocketAddrV4) -> std::io::Result<String> {
    netns
        .run(move || {
            let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(10))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            Ok(reply)
        })
        .await
}

/// `count` TCP requests; the replies in order (a failed request panics).
pub async fn tcp_requests(netns: &Netns, to: SocketAddrV4, count: usize) -> Vec<String> {
    netns
        .run(move || {
            (0..count)
                .map(|i| {
                    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(10))
                        .unwrap_or_else(|e| panic!("request {i} to {to}: {e}"));
                    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut reply = String::new();
                    stream.read_to_string(&mut reply).unwrap_or_else(|e| panic!("reading reply {i} from {to}: {e}"));
                    reply
                })
                .collect()
        })
        .await
}

/// Waits until a TCP request from `netns` to `to` satisfies `ok`; panics with the
/// last outcome after the deadline.
pub async fn wait_tcp(netns: &Netns, to: SocketAddrV4, what: &str, ok: impl Fn(&std::io::Result<String>) -> bool) {
    let start = Instant::now();
    loop {
        let outcome = tcp_request(netns, to).await;
        if ok(&outcome) {
            return;
        }
        if start.elapsed() > DEADLINE {
            panic!("{what}: {to} still answers {outcome:?} after {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A UDP client socket inside a namespace, kept for several exchanges (same source port).
pub struct UdpClient {
    socket: std::sync::Arc<UdpSocket>,
}

impl UdpClient {
    pub fn new(netns: &Netns) -> UdpClient {
        let socket = netns.enter(|| UdpSocket::bind("0.0.0.0:0").expect("bind"));
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        UdpClient { socket: std::sync::Arc::new(socket) }
    }

    /// One datagram out; the reply, if one came within half a second.
    pub async fn ask(&self, to: SocketAddrV4) -> Option<String> {
        let socket = self.socket.clone();
        tokio::task::spawn_blocking(move || {
            socket.send_to(b"?", to).ok()?;
            let mut buffer = [0u8; 1500];
            let (len, _) = socket.recv_from(&mut buffer).ok()?;
            Some(String::from_utf8_lossy(&buffer[..len]).into_owned())
        })
        .await
        .expect("blocking task")
    }

    /// Asks until the reply satisfies `ok`, or panics after the deadline.
    pub async fn wait(&self, to: SocketAddrV4, what: &str, ok: impl Fn(&Option<String>) -> bool) {
        let start = Instant::now();
        loop {
            let reply = self.ask(to).await;
            if ok(&reply) {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!("{what}: {to} still answers {reply:?} after {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Forwards connections to 127.0.0.1:<port> inside `netns` to `target` on the host,
/// so a process in the namespace reaches the host's apiserver. Returns the port.
pub async fn relay_into(netns: &Netns, target: SocketAddr) -> u16 {
    let listener = netns.enter(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        listener
    });
    let port = listener.local_addr().expect("address").port();
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    tokio::spawn(async move {
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
    });
    port
}

/// A minimal blocking HTTP GET from inside a namespace: (status, body).
pub async fn http_get(netns: &Netns, address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let (address, path) = (address.to_string(), path.to_string());
    netns
        .run(move || {
            let mut stream = TcpStream::connect(&address)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
            let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            Ok((status, body.to_string()))
        })
        .await
}

/// etcd, the apiserver, the network namespaces and kube-proxy in the node.
pub struct Cluster {
    // Dropped in this order: kube-proxy first, then the namespaces.
    pub proxy: Option<testkit::Daemon>,
    pub world: World,
    pub client: Client,
    pub apiserver_port: u16,
    pub http: String,
    pub apiserver: testkit::ApiServer,
    pub etcd: testkit::Etcd,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(world: World) -> Cluster {
        let etcd = testkit::Etcd::start().await.unwrap();
        let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
        let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();
        let target: SocketAddr = apiserver.grpc_endpoint().trim_start_matches("http://").parse().unwrap();
        let apiserver_port = relay_into(&world.node, target).await;
        let node =
            Node { metadata: Some(ObjectMeta { name: NODE_NAME.into(), ..Default::default() }), ..Default::default() };
        let nodes = Api::<Node>::all(&client);
        nodes.create(&node).await.unwrap();
        let status = serde_json::json!({"status": {"addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": NODE_NAME},
        ]}});
        nodes.patch_status(NODE_NAME, PatchType::Merge, &status).await.unwrap();
        Cluster {
            proxy: None,
            world,
            client,
            apiserver_port,
            http: "127.0.0.1:10256".to_string(),
            apiserver,
            etcd,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The kube-proxy binary with `extra` flags, run in the node namespace.
    pub fn proxy_command(&self, extra: &[&str]) -> Vec<String> {
        let binary = testkit::binary_path("kube-proxy").unwrap();
        let mut args: Vec<String> = vec!["netns".into(), "exec".into(), self.world.node.name.clone()];
        args.push(binary.display().to_string());
        for arg in [
            "--master",
            &format!("http://127.0.0.1:{}", self.apiserver_port),
            "--hostname-override",
            NODE_NAME,
            "--http-address",
            &self.http,
            "--min-sync-interval",
            "50ms",
            "--sync-period",
            "5s",
        ] {
            args.push(arg.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts kube-proxy and waits for its first sync (/readyz).
    pub async fn start_proxy(&mut self, extra: &[&str]) {
        let args = self.proxy_command(extra);
        let log = self.dir.path().join("kube-proxy.log");
        self.proxy = Some(testkit::Daemon::spawn("kube-proxy", Path::new("ip"), &args, &log).unwrap());
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = http_get(&self.world.node, &self.http, "/readyz").await {
                return;
            }
            let proxy = self.proxy.as_mut().unwrap();
            if let Some(status) = proxy.exited() {
                panic!("kube-proxy exited with {status}:\n{}", proxy.log_tail());
            }
            if start.elapsed() > DEADLINE {
                panic!("kube-proxy not ready after {DEADLINE:?}:\n{}", proxy.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until kube-proxy's table, as `nft list` prints it, satisfies `ok`.
    pub async fn wait_table(&self, what: &str, ok: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let output = self.world.node.exec("nft", &["list", "table", "ip", "rudder-proxy"]);
            let table = String::from_utf8_lossy(&output.stdout).into_owned();
            if ok(&table) {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!("{what}: the table is still\n{table}\nkube-proxy's log:\n{}", self.proxy_log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn proxy_log(&self) -> String {
        self.proxy.as_ref().map(|p| p.log_tail()).unwrap_or_default()
    }

    /// Creates a selector-less Service from YAML-ish JSON and returns it as stored
    /// (with its ClusterIP and NodePorts).
    pub async fn create_service(&self, service: serde_json::Value) -> Service {
        let service: Service = proto::codec::decode(&service).unwrap();
        Api::<Service>::namespaced(&self.client, "default").create(&service).await.unwrap()
    }

    /// Writes the Service's Endpoints: these addresses on `port` named `port_name`.
    pub async fn set_endpoints(&self, name: &str, port_name: &str, protocol: &str, port: i32, ips: &[Ipv4Addr]) {
        let api = Api::<Endpoints>::namespaced(&self.client, "default");
        let subsets = if ips.is_empty() {
            vec![]
        } else {
            vec![EndpointSubset {
                // Every pod of the world is on the node, as the endpoints controller says.
                addresses: ips
                    .iter()
                    .map(|ip| EndpointAddress {
                        ip: ip.to_string(),
                        node_name: Some(NODE_NAME.into()),
                        ..Default::default()
                    })
                    .collect(),
                not_ready_addresses: vec![],
                ports: vec![EndpointPort {
                    name: port_name.into(),
                    port,
                    protocol: protocol.into(),
                    ..Default::default()
                }],
            }]
        };
        match api.get_opt(name).await.unwrap() {
            Some(mut existing) => {
                existing.subsets = subsets;
                api.update(&existing).await.unwrap();
            }
            None => {
                let endpoints = Endpoints {
                    metadata: Some(ObjectMeta { name: name.into(), namespace: "default".into(), ..Default::default() }),
                    subsets,
                };
                api.create(&endpoints).await.unwrap();
            }
        }
    }
}

/// The ClusterIP:port of a stored Service's first port.
pub fn cluster_address(service: &Service) -> SocketAddrV4 {
    let spec = service.spec.as_ref().unwrap();
    SocketAddrV4::new(spec.cluster_ip.parse().unwrap(), u16::try_from(spec.ports[0].port).unwrap())
}

/// The first port's NodePort on the node's address.
pub fn node_port_address(service: &Service) -> SocketAddrV4 {
    let spec = service.spec.as_ref().unwrap();
    SocketAddrV4::new(NODE_IP.parse().unwrap(), u16::try_from(spec.ports[0].node_port).unwrap())
}

/// How often each reply came.
pub fn tally(replies: &[String]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for reply in replies {
        *counts.entry(reply.clone()).or_insert(0) += 1;
    }
    counts
}
