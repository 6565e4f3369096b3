//! The cross-node pod network on real kernels: several "hosts" as network namespaces,
//! each with a "pod" namespace behind a veth holding an address in the host's pod
//! CIDR, joined by a bridge (one L2 network) or by a router namespace (two subnets).
//! The route programming runs inside each host namespace, from a thread that joined
//! it, and real traffic (ping) between the pods proves the routes work; removing a
//! node from the list proves its routes, neighbour and forwarding entries go. The
//! last two run the informer-driven controller against a real apiserver. Root only.

use std::net::Ipv4Addr;
use std::os::fd::AsFd as _;
use std::process::Command;
use std::time::{Duration, Instant};

use kubelet::network::cidr::Ipv4Cidr;
use kubelet::network::overlay::{self, OverlayConfig, SyncReport};
use kubelet::network::plan::{Backend, PUBLIC_IP_ANNOTATION, SkipReason, VTEP_MAC_ANNOTATION};
use kubelet::network::vxlan::VxlanSettings;
use proto::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
use proto::meta::v1::ObjectMeta;

fn root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipped: creating network namespaces, veths and routes needs root");
    }
    root
}

/// Runs a command; panics with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, removed (with every interface in it) when dropped, also
/// when the test fails.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Netns {
        // Left over from a crashed run with the same pid: start clean.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    /// `ip -n NAME ARGS...`
    fn ip(&self, args: &str) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        Command::new("ip").args(&all).output().unwrap_or_else(|e| panic!("ip netns exec: {e}"))
    }

    fn forward(&self) {
        let out = self.exec(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        assert!(out.status.success(), "enabling forwarding in {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The kubelet's routes here (`ip route show proto 82`).
    fn owned_routes(&self) -> String {
        self.ip("route show proto 82")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A host namespace with its pod: the pod's eth0 holds .2 of the pod CIDR, the host
/// side of its veth .1 (as the kubelet's bridge does).
struct Host {
    name: String,
    ip: Ipv4Addr,
    pod_cidr: Ipv4Cidr,
    ns: Netns,
    pod: Netns,
}

impl Host {
    /// `uplink` is the namespace the host's eth0 peer goes into (as `peer_name`).
    fn new(test: &str, n: u32, uplink: &Netns, peer_name: &str, ip: &str, gateway: Option<&str>, cidr: &str) -> Host {
        let pid = std::process::id();
        let ns = Netns::new(format!("ov{pid}-{test}-h{n}"));
        let pod = Netns::new(format!("ov{pid}-{test}-p{n}"));
        uplink.ip(&format!("link add {peer_name} type veth peer name eth0 netns {}", ns.name));
        uplink.ip(&format!("link set {peer_name} up"));
        ns.ip(&format!("addr add {ip} dev eth0"));
        ns.ip("link set eth0 up");
        if let Some(gateway) = gateway {
            ns.ip(&format!("route add default via {gateway}"));
        }
        ns.forward();
        let pod_cidr: Ipv4Cidr = cidr.parse().unwrap();
        let gw = pod_cidr.gateway();
        let pod_ip = pod_cidr.nth(2).unwrap();
        ns.ip(&format!("link add pod type veth peer name eth0 netns {}", pod.name));
        ns.ip(&format!("addr add {gw}/{} dev pod", pod_cidr.prefix));
        ns.ip("link set pod up");
        pod.ip(&format!("addr add {pod_ip}/{} dev eth0", pod_cidr.prefix));
        pod.ip("link set eth0 up");
        pod.ip(&format!("route add default via {gw}"));
        let ip = ip.split('/').next().unwrap().parse().unwrap();
        Host { name: format!("node-{n}"), ip, pod_cidr, ns, pod }
    }

    fn pod_ip(&self) -> Ipv4Addr {
        self.pod_cidr.nth(2).unwrap()
    }

    fn node(&self) -> Node {
        node(&self.name, &self.pod_cidr.to_string(), &self.ip.to_string())
    }

    fn config(&self, backend: Backend) -> OverlayConfig {
        OverlayConfig {
            backend,
            node_name: self.name.clone(),
            node_ip: self.ip,
            pod_cidr: self.pod_cidr,
            vxlan: VxlanSettings::default(),
        }
    }

    /// The module's sync, run inside this host's namespace from a thread that joined
    /// it, with a runtime of its own (a netlink socket belongs to its opener's
    /// namespace).
    fn sync(&self, backend: Backend, nodes: &[Node]) -> SyncReport {
        let path = self.ns.path();
        let config = self.config(backend);
        let nodes = nodes.to_vec();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(overlay::sync(&config, &nodes))
        })
        .join()
        .expect("the sync thread panicked")
        .unwrap_or_else(|e| panic!("sync: {e}"))
    }

    /// Whether this host's pod gets an answer from `to` (one ping, 1 s).
    fn pod_pings(&self, to: Ipv4Addr) -> bool {
        self.pod.exec(&["busybox", "ping", "-c1", "-W1", &to.to_string()]).status.success()
    }

    /// A few tries: the first packet may wait on ARP in the namespaces.
    fn pod_reaches(&self, to: Ipv4Addr) -> bool {
        (0..3).any(|_| self.pod_pings(to))
    }
}

fn node(name: &str, cidr: &str, ip: &str) -> Node {
    Node {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(NodeSpec { pod_cidr: cidr.into(), pod_cidrs: vec![cidr.into()], ..Default::default() }),
        status: Some(NodeStatus {
            addresses: vec![NodeAddress { r#type: "InternalIP".into(), address: ip.into() }],
            ..Default::default()
        }),
    }
}

#[test]
fn host_gw_routes_carry_pod_traffic_on_one_lan_and_follow_the_node_list() {
    if !root() {
        return;
    }
    let pid = std::process::id();
    let lan = Netns::new(format!("ov{pid}-hostgw-lan"));
    lan.ip("link add br0 type bridge");
    lan.ip("link set br0 address 02:00:00:00:77:01 up");
    let hosts: Vec<Host> = (1..=3)
        .map(|n| {
            let host = Host::new(
                "hostgw",
                n,
                &lan,
                &format!("lan{n}"),
                &format!("192.168.77.{n}/24"),
                None,
                &format!("10.77.{n}.0/24"),
            );
            lan.ip(&format!("link set lan{n} master br0"));
            host
        })
        .collect();
    let all: Vec<Node> = hosts.iter().map(Host::node).collect();
    for host in &hosts {
        let report = host.sync(Backend::HostGw, &all);
        assert_eq!(report.routes.added.len(), 2, "{}: {report:?}", host.name);
        assert!(report.plan.skipped.is_empty() && report.routes.failed.is_empty(), "{report:?}");
    }
    for from in &hosts {
        for to in hosts.iter().filter(|h| h.name != from.name) {
            assert!(from.pod_reaches(to.pod_ip()), "pod of {} cannot reach pod of {}", from.name, to.name);
        }
    }
    let [h1, h2, h3] = &hosts[..] else { unreachable!() };
    let routes = h1.ns.owned_routes();
    assert!(routes.contains("10.77.2.0/24 via 192.168.77.2"), "{routes}");
    assert!(routes.contains("10.77.3.0/24 via 192.168.77.3"), "{routes}");

    // Routes someone else made stay, also one in the way of a node's pod CIDR,
    // which is reported instead of taken over.
    h1.ns.ip("route add 10.99.0.0/24 via 192.168.77.3");
    h1.ns.ip("route add 10.77.4.0/24 via 192.168.77.3 proto static");
    let mut with_four = all.clone();
    with_four.push(node("node-4", "10.77.4.0/24", "192.168.77.4"));
    let report = h1.sync(Backend::HostGw, &with_four);
    assert!(report.routes.added.is_empty() && report.routes.removed.is_empty(), "{report:?}");
    let error = &report.routes.failed["10.77.4.0/24"];
    assert!(error.contains("does not own"), "{error}");
    let routes = h1.ns.ip("route show");
    assert!(routes.contains("10.99.0.0/24 via 192.168.77.3"), "{routes}");
    assert!(routes.contains("10.77.4.0/24 via 192.168.77.3 dev eth0 proto static"), "{routes}");
    h1.ns.ip("route del 10.77.4.0/24");

    // A route deleted by hand comes back on the next sync.
    h1.ns.ip("route del 10.77.2.0/24");
    assert!(!h1.pod_pings(h2.pod_ip()), "reached node-2's pod without a route");
    let report = h1.sync(Backend::HostGw, &all);
    assert_eq!(report.routes.added, vec!["10.77.2.0/24".parse::<Ipv4Cidr>().unwrap()]);
    assert!(h1.pod_reaches(h2.pod_ip()));

    // node-3 leaves: its routes go from the others, and nothing else does.
    let without_three = vec![h1.node(), h2.node()];
    for host in [h1, h2] {
        let report = host.sync(Backend::HostGw, &without_three);
        assert_eq!(report.routes.removed, vec!["10.77.3.0/24".parse::<Ipv4Cidr>().unwrap()], "{report:?}");
        assert!(!host.ns.owned_routes().contains("10.77.3.0"), "{}", host.ns.owned_routes());
    }
    assert!(!h1.pod_pings(h3.pod_ip()), "node-3's pod is still reachable after its node left");
    assert!(h1.pod_reaches(h2.pod_ip()));
    assert!(h1.ns.ip("route show").contains("10.99.0.0/24 via 192.168.77.3"));
}

#[test]
fn vxlan_carries_pod_traffic_across_a_router_that_host_gw_refuses() {
    if !root() {
        return;
    }
    let pid = std::process::id();
    let router = Netns::new(format!("ov{pid}-vxlan-rt"));
    router.forward();
    let h1 = Host::new("vxlan", 1, &router, "net1", "192.168.81.1/24", Some("192.168.81.254"), "10.81.1.0/24");
    let h2 = Host::new("vxlan", 2, &router, "net2", "192.168.82.1/24", Some("192.168.82.254"), "10.81.2.0/24");
    router.ip("addr add 192.168.81.254/24 dev net1");
    router.ip("addr add 192.168.82.254/24 dev net2");
    // The router knows nothing of the pod CIDRs: only encapsulated traffic crosses.

    let nodes = vec![h1.node(), h2.node()];
    let report = h1.sync(Backend::HostGw, &nodes);
    assert_eq!(report.plan.skipped["node-2"], SkipReason::NotAdjacent(h2.ip), "{report:?}");
    assert!(report.routes.added.is_empty() && h1.ns.owned_routes().trim().is_empty(), "{}", h1.ns.owned_routes());
    assert!(!h1.pod_pings(h2.pod_ip()));

    // First pass: each node makes its device; peers have no MAC published yet.
    let r1 = h1.sync(Backend::Vxlan, &nodes);
    let r2 = h2.sync(Backend::Vxlan, &nodes);
    assert_eq!(r1.plan.skipped["node-2"], SkipReason::NoVtepMac);
    let (mac1, mac2) = (r1.vtep_mac.expect("node-1's VTEP MAC"), r2.vtep_mac.expect("node-2's VTEP MAC"));
    let published = |host: &Host, mac: String| {
        let mut node = host.node();
        let annotations = &mut node.metadata.as_mut().unwrap().annotations;
        annotations.insert(VTEP_MAC_ANNOTATION.into(), mac);
        annotations.insert(PUBLIC_IP_ANNOTATION.into(), host.ip.to_string());
        node
    };
    let nodes = vec![published(&h1, mac1.to_string()), published(&h2, mac2.to_string())];
    for host in [&h1, &h2] {
        let report = host.sync(Backend::Vxlan, &nodes);
        assert_eq!(report.routes.added.len(), 1, "{report:?}");
        assert_eq!((report.neighbours.added, report.fdb.added), (1, 1), "{report:?}");
        assert!(report.plan.skipped.is_empty() && report.routes.failed.is_empty(), "{report:?}");
    }
    assert!(h1.pod_reaches(h2.pod_ip()), "node-1's pod cannot reach node-2's over VXLAN");
    assert!(h2.pod_reaches(h1.pod_ip()), "node-2's pod cannot reach node-1's over VXLAN");

    let link = h1.ns.ip("-d link show rudder.1");
    for part in ["vxlan id 1 ", "local 192.168.81.1", "dstport 8472", "nolearning", &mac1.to_string()] {
        assert!(link.contains(part), "no {part:?} in {link}");
    }
    assert!(h1.ns.ip("addr show dev rudder.1").contains("inet 10.81.1.0/32"));
    assert!(
        h1.ns.owned_routes().contains("10.81.2.0/24 via 10.81.2.0 dev rudder.1 onlink"),
        "{}",
        h1.ns.owned_routes()
    );
    let neighbours = h1.ns.ip("neigh show dev rudder.1");
    assert!(neighbours.contains(&format!("10.81.2.0 lladdr {mac2} PERMANENT")), "{neighbours}");
    let fdb = String::from_utf8_lossy(&h1.ns.exec(&["bridge", "fdb", "show", "dev", "rudder.1"]).stdout).into_owned();
    assert!(fdb.contains(&format!("{mac2} dst 192.168.82.1")), "{fdb}");

    // A second pass changes nothing.
    let again = h1.sync(Backend::Vxlan, &nodes);
    assert!(again.routes.added.is_empty() && again.routes.removed.is_empty(), "{again:?}");
    assert_eq!((again.neighbours.added, again.fdb.added, again.neighbours.removed, again.fdb.removed), (0, 0, 0, 0));

    // node-2 leaves: its route, neighbour and forwarding entries go.
    let report = h1.sync(Backend::Vxlan, &nodes[..1]);
    assert_eq!(report.routes.removed.len(), 1, "{report:?}");
    assert_eq!((report.neighbours.removed, report.fdb.removed), (1, 1), "{report:?}");
    assert!(h1.ns.owned_routes().trim().is_empty(), "{}", h1.ns.owned_routes());
    assert!(!h1.ns.ip("neigh show dev rudder.1").contains("10.81.2.0"));
    let fdb = String::from_utf8_lossy(&h1.ns.exec(&["bridge", "fdb", "show", "dev", "rudder.1"]).stdout).into_owned();
    assert!(!fdb.contains(&mac2.to_string()), "{fdb}");
    assert!(!h1.pod_pings(h2.pod_ip()));

    // Switching the node to host-gw removes the device.
    h1.sync(Backend::HostGw, &nodes[..1]);
    assert!(!h1.ns.exec(&["ip", "link", "show", "rudder.1"]).status.success(), "rudder.1 is still there");
}

/// Polls `check` until it holds; fails the test after `limit` (a stuck test fails
/// rather than hangs).
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_controller_follows_node_objects_and_repairs_deleted_routes() {
    if !root() {
        return;
    }
    use client::{Api, Client};
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();

    let pid = std::process::id();
    let lan = Netns::new(format!("ov{pid}-ctl-lan"));
    lan.ip("link add br0 type bridge");
    lan.ip("link set br0 address 02:00:00:00:78:01 up");
    let h1 = Host::new("ctl", 1, &lan, "lan1", "192.168.78.1/24", None, "10.78.1.0/24");
    let h2 = Host::new("ctl", 2, &lan, "lan2", "192.168.78.2/24", None, "10.78.2.0/24");
    lan.ip("link set lan1 master br0");
    lan.ip("link set lan2 master br0");

    let nodes = Api::<Node>::all(&client);
    for host in [&h1, &h2] {
        let mut object = host.node();
        let status = object.status.take();
        nodes.create(&object).await.unwrap();
        let mut stored = nodes.get(&host.name).await.unwrap();
        stored.status = status;
        nodes.update_status(&stored).await.unwrap();
    }
    // The controller talks to the apiserver from the test's namespace and programs
    // node-1's namespace.
    let controller = overlay::OverlayController::new(&client, h1.config(Backend::HostGw))
        .resync_every(Duration::from_millis(500))
        .in_netns(h1.ns.path());
    let _task = AbortOnDrop(tokio::spawn(controller.run()));

    let limit = Duration::from_secs(30);
    eventually("the route to node-2's pods", limit, || h1.ns.owned_routes().contains("10.78.2.0/24 via 192.168.78.2"))
        .await;
    // node-2 routes back by hand: the test drives only node-1 with the controller.
    h2.ns.ip("route add 10.78.1.0/24 via 192.168.78.1");
    assert!(h1.pod_reaches(h2.pod_ip()));

    // The node publishes its backend.
    let mut published = false;
    let start = Instant::now();
    while !published {
        let own = nodes.get("node-1").await.unwrap();
        published =
            own.metadata.unwrap().annotations.get("rudder.io/backend-type").map(String::as_str) == Some("host-gw");
        assert!(start.elapsed() < limit, "node-1 never published its backend");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deleted by hand: the periodic resync puts it back.
    h1.ns.ip("route del 10.78.2.0/24");
    eventually("the route deleted by hand to come back", limit, || h1.ns.owned_routes().contains("10.78.2.0/24")).await;

    // node-2's address changes: the route follows.
    h2.ns.ip("addr add 192.168.78.12/24 dev eth0");
    let mut stored = nodes.get("node-2").await.unwrap();
    stored.status.as_mut().unwrap().addresses[0].address = "192.168.78.12".into();
    nodes.update_status(&stored).await.unwrap();
    eventually("the route via node-2's new address", limit, || {
        h1.ns.owned_routes().contains("10.78.2.0/24 via 192.168.78.12")
    })
    .await;
    assert!(h1.pod_reaches(h2.pod_ip()));

    // node-2 is deleted: its route goes.
    nodes.delete("node-2", Default::default()).await.unwrap();
    eventually("the route to the deleted node's pods to go", limit, || h1.ns.owned_routes().trim().is_empty()).await;
}

/// Stops a spawned controller when the test ends, also when it fails.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test]
async fn two_vxlan_controllers_exchange_their_vtep_macs_through_node_annotations() {
    if !root() {
        return;
    }
    use client::{Api, Client};
    let etcd = testkit::Etcd::start().await.unwrap();
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.unwrap();
    let client = Client::new(&apiserver.grpc_endpoint(), "default").unwrap();

    let pid = std::process::id();
    let router = Netns::new(format!("ov{pid}-ctlvx-rt"));
    router.forward();
    let h1 = Host::new("ctlvx", 1, &router, "net1", "192.168.91.1/24", Some("192.168.91.254"), "10.91.1.0/24");
    let h2 = Host::new("ctlvx", 2, &router, "net2", "192.168.92.1/24", Some("192.168.92.254"), "10.91.2.0/24");
    router.ip("addr add 192.168.91.254/24 dev net1");
    router.ip("addr add 192.168.92.254/24 dev net2");

    let nodes = Api::<Node>::all(&client);
    for host in [&h1, &h2] {
        let mut object = host.node();
        let status = object.status.take();
        nodes.create(&object).await.unwrap();
        let mut stored = nodes.get(&host.name).await.unwrap();
        stored.status = status;
        nodes.update_status(&stored).await.unwrap();
    }
    // Each node's controller programs its own host namespace; neither is told the
    // other's MAC: it must come through the other's Node annotation.
    let _controllers: Vec<AbortOnDrop> = [&h1, &h2]
        .into_iter()
        .map(|host| {
            let controller = overlay::OverlayController::new(&client, host.config(Backend::Vxlan))
                .resync_every(Duration::from_millis(500))
                .in_netns(host.ns.path());
            AbortOnDrop(tokio::spawn(controller.run()))
        })
        .collect();

    let limit = Duration::from_secs(30);
    eventually("the VXLAN routes on both nodes", limit, || {
        h1.ns.owned_routes().contains("10.91.2.0/24 via 10.91.2.0 dev rudder.1 onlink")
            && h2.ns.owned_routes().contains("10.91.1.0/24 via 10.91.1.0 dev rudder.1 onlink")
    })
    .await;
    let own = nodes.get("node-2").await.unwrap();
    let annotations = own.metadata.unwrap().annotations;
    assert_eq!(annotations.get(PUBLIC_IP_ANNOTATION).map(String::as_str), Some("192.168.92.1"));
    let mac2 = annotations.get(VTEP_MAC_ANNOTATION).cloned().expect("node-2 published its VTEP MAC");
    assert!(h1.ns.ip("neigh show dev rudder.1").contains(&format!("10.91.2.0 lladdr {mac2} PERMANENT")));
    assert!(h1.pod_reaches(h2.pod_ip()), "node-1's pod cannot reach node-2's");
    assert!(h2.pod_reaches(h1.pod_ip()), "node-2's pod cannot reach node-1's");

    // node-2 is deleted: node-1 drops its route, neighbour and forwarding entries.
    nodes.delete("node-2", Default::default()).await.unwrap();
    eventually("node-1 to forget node-2", limit, || {
        let fdb =
            String::from_utf8_lossy(&h1.ns.exec(&["bridge", "fdb", "show", "dev", "rudder.1"]).stdout).into_owned();
        h1.ns.owned_routes().trim().is_empty()
            && !h1.ns.ip("neigh show dev rudder.1").contains("10.91.2.0")
            && !fdb.contains(&mac2)
    })
    .await;
    assert!(!h1.pod_pings(h2.pod_ip()));
}
