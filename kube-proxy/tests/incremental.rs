//! An incremental sync leaves the kernel with exactly the table that a full sync of
//! the same ruleset writes. Both are applied with nft inside a namespace of the test's
//! own and compared through `nft list table`, with the elements of each set and the
//! sets and chains themselves sorted: the kernel lists hash sets, and chains in the
//! order they were made, in an order of its own.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::Netns;
use kube_proxy::model::{Protocol, ServicePort, Snapshot};
use kube_proxy::nftables::{DEFAULT_TABLE, NftablesProxier, Options, Ruleset, nft};
use kube_proxy::sync::Proxier as _;

/// Endpoints at even host numbers are on other nodes.
fn port(name: &str, protocol: Protocol, host: u32, endpoints: &[u32]) -> ServicePort {
    let address = |e: &u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + e);
    ServicePort {
        namespace: "default".into(),
        name: name.into(),
        port_name: String::new(),
        protocol,
        cluster_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + host),
        port: 80,
        node_port: None,
        affinity_seconds: None,
        endpoints: endpoints.iter().map(|e| SocketAddrV4::new(address(e), 8080)).collect(),
        remote_ips: endpoints.iter().filter(|e| *e % 2 == 0).map(address).collect(),
    }
}

/// 40 TCP ports with two endpoints each, one without endpoints, a UDP NodePort and
/// two ports with ClientIP affinity.
fn before() -> Snapshot {
    let mut ports: Vec<ServicePort> =
        (0..40).map(|i| port(&format!("s{i:02}"), Protocol::Tcp, i + 1, &[i * 4 + 1, i * 4 + 2])).collect();
    ports[11].endpoints.clear();
    let mut udp = port("u1", Protocol::Udp, 100, &[201, 202]);
    udp.node_port = Some(30053);
    ports.push(udp);
    for (name, host) in [("a1", 101), ("a2", 102)] {
        let mut sticky = port(name, Protocol::Tcp, host, &[host + 200, host + 300]);
        sticky.affinity_seconds = Some(60);
        ports.push(sticky);
    }
    sorted(ports, vec![Ipv4Addr::new(192, 168, 50, 1)])
}

/// Every kind of change at once.
fn after() -> Snapshot {
    let mut ports = before().service_ports;
    let find = |ports: &mut Vec<ServicePort>, name: &str| -> usize {
        ports.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("no port {name}"))
    };
    let i = find(&mut ports, "s03");
    ports[i].endpoints[0] = SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, 1), 8080);
    let i = find(&mut ports, "s05");
    ports[i].endpoints.push(SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, 2), 8080));
    let i = find(&mut ports, "s09");
    ports[i].endpoints.clear();
    let i = find(&mut ports, "s11");
    ports[i].endpoints = vec![SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, 3), 8080)];
    let i = find(&mut ports, "s13");
    ports[i].node_port = Some(30013);
    let i = find(&mut ports, "u1");
    ports[i].endpoints.pop();
    let i = find(&mut ports, "a1");
    ports[i].affinity_seconds = Some(120);
    let i = find(&mut ports, "a2");
    ports[i].endpoints.pop();
    // Its endpoint on another node turns out to be here after all.
    let i = find(&mut ports, "s15");
    ports[i].remote_ips.clear();
    // s07 and s32..s39 go; a newcomer with one endpoint joins s11's group.
    ports.retain(|p| p.name != "s07" && !(p.name.starts_with("s3") && p.name.as_str() >= "s32"));
    ports.push(port("n1", Protocol::Tcp, 120, &[250]));
    sorted(ports, vec![Ipv4Addr::new(192, 168, 50, 1), Ipv4Addr::new(192, 168, 50, 9)])
}

fn sorted(mut service_ports: Vec<ServicePort>, node_ips: Vec<Ipv4Addr>) -> Snapshot {
    service_ports.sort_by_key(ServicePort::id);
    Snapshot { service_ports, node_ips }
}

/// The table's sets, maps and chains, one string each, sorted, with each
/// `elements = { ... }` sorted too. Rules keep their order.
fn normalized(listing: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in listing.lines() {
        let depth = line.len() - line.trim_start_matches('\t').len();
        match (depth, block.as_mut()) {
            (1, None) if line.ends_with('{') => block = Some(line.trim().to_string()),
            (1, Some(_)) if line.trim() == "}" => blocks.extend(block.take().map(|b| sort_elements(&b))),
            (_, Some(text)) if !line.trim().is_empty() => {
                text.push(' ');
                text.push_str(line.trim());
            }
            _ => {}
        }
    }
    blocks.sort();
    blocks
}

fn sort_elements(block: &str) -> String {
    let Some(start) = block.find("elements = { ") else { return block.to_string() };
    let body_start = start + "elements = { ".len();
    let Some(length) = block[body_start..].find(" }") else { return block.to_string() };
    let mut elements: Vec<&str> = block[body_start..body_start + length].split(", ").collect();
    elements.sort();
    format!("{}{}{}", &block[..body_start], elements.join(", "), &block[body_start + length..])
}

#[test]
fn an_incremental_sync_leaves_the_table_a_full_sync_writes() {
    let netns = Netns::create("incr");
    let (incremental, full, first) = netns.enter(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let options = Options::default();
            let (before, after) = (before(), after());
            let mut proxier = NftablesProxier::new(options.clone());
            assert!(proxier.sync(&before).await.expect("first sync").full);
            let first = listing();
            assert!(!proxier.sync(&after).await.expect("second sync").full, "the second sync should be incremental");
            let incremental = listing();
            // The very ruleset the proxier built for `after`, written whole.
            let ruleset = Ruleset::build(&after, &options, Some(&Ruleset::build(&before, &options, None)));
            nft::apply(&ruleset.full_transaction()).await.expect("full transaction");
            (incremental, listing(), first)
        })
    });
    assert_eq!(normalized(&incremental), normalized(&full), "incremental:\n{incremental}\nfull:\n{full}");
    // Not a comparison of two empty or unchanged tables.
    assert!(normalized(&full).len() > 20, "{full}");
    assert_ne!(normalized(&first), normalized(&full));
    for expected in [
        "map endpoints/tcp/3",
        "map endpoints/tcp/1",
        "map nodeport-endpoints/udp/1",
        "10.250.0.1 . 8080",
        "aff/120/",
        "30053 . 0 : 10.244.0.201 . 8080",
        "tcp . 30013 : goto np/tcp/2",
    ] {
        assert!(full.contains(expected), "{expected} missing:\n{full}");
    }
    assert!(!full.contains("endpoints/udp/2"), "u1's two-endpoint groups should be gone:\n{full}");
}

/// `nft list table` from the calling thread's namespace.
fn listing() -> String {
    let output = std::process::Command::new("nft").args(["list", "table", "ip", DEFAULT_TABLE]).output().expect("nft");
    assert!(output.status.success(), "nft list: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
