//! The real kube-proxy serving the cluster DNS (`--cluster-dns-address`) in a node
//! namespace with a pod on its bridge (see `common`): the pod asks the node-local
//! address over UDP and TCP; a Service's name answers its ClusterIP, an unknown name
//! NXDOMAIN, and the name goes when the Service does. `--cleanup` removes the
//! address's interface. Root only (network namespaces).

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use client::Api;
use common::{Cluster, Netns, World};
use dns::wire::{CLASS_IN, Header, Message, Name, Question, RData, Rcode, RecordType};
use proto::core::v1::Service;
use serde_json::json;

/// A node-local link address, as a node would use (see kube-proxy's cluster_dns).
const DNS_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);

fn dns_address() -> SocketAddrV4 {
    SocketAddrV4::new(DNS_IP, 53)
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let message = Message {
        header: Header { id, recursion_desired: true, ..Header::default() },
        questions: vec![Question {
            name: Name::parse(name).expect("a valid name"),
            qtype: RecordType::A,
            qclass: CLASS_IN,
        }],
        ..Message::default()
    };
    message.encode().expect("a query encodes")
}

/// What a test looks at in an answer: the rcode and the A records.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    rcode: Rcode,
    addresses: Vec<Ipv4Addr>,
}

fn answer_of(id: u16, bytes: &[u8]) -> std::io::Result<Answer> {
    let message = Message::decode(bytes).map_err(|e| std::io::Error::other(format!("undecodable answer: {e}")))?;
    if message.header.id != id || !message.header.response {
        return Err(std::io::Error::other(format!("not the answer to query {id}: {:?}", message.header)));
    }
    let addresses = message
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(ip) => Some(ip),
            _ => None,
        })
        .collect();
    Ok(Answer { rcode: message.rcode(), addresses })
}

/// One A query over UDP from inside `netns`.
async fn ask_udp(netns: &Netns, name: &str) -> std::io::Result<Answer> {
    let name = name.to_string();
    netns
        .run(move || {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            let id = next_id();
            socket.send_to(&query(id, &name), dns_address())?;
            let mut buffer = [0u8; 1500];
            let (len, _) = socket.recv_from(&mut buffer)?;
            answer_of(id, &buffer[..len])
        })
        .await
}

/// One A query over TCP (two-byte length framing) from inside `netns`.
async fn ask_tcp(netns: &Netns, name: &str) -> std::io::Result<Answer> {
    let name = name.to_string();
    netns
        .run(move || {
            let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(dns_address()), Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let id = next_id();
            let bytes = query(id, &name);
            let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
            stream.write_all(&len.to_be_bytes())?;
            stream.write_all(&bytes)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len)?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut answer)?;
            answer_of(id, &answer)
        })
        .await
}

/// A fresh query id, so an answer is matched to its query.
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Asks over UDP until the answer satisfies `ok`; panics with the last outcome and
/// kube-proxy's log after the deadline.
async fn wait_answer(cluster: &Cluster, name: &str, what: &str, ok: impl Fn(&Answer) -> bool) -> Answer {
    let start = Instant::now();
    loop {
        let outcome = ask_udp(cluster.world.pod("client"), name).await;
        if let Ok(answer) = &outcome
            && ok(answer)
        {
            return outcome.unwrap_or_else(|_| unreachable!());
        }
        if start.elapsed() > common::DEADLINE {
            panic!(
                "{what}: {name} still answers {outcome:?} after {:?}; kube-proxy:\n{}",
                common::DEADLINE,
                cluster.proxy_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_dns_answers_pods_from_services_and_follows_deletion() {
    let mut world = World::new();
    world.add_pod("client", 30);
    let mut cluster = Cluster::start(world).await;
    let web = cluster
        .create_service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .await;
    cluster.set_endpoints("web", "http", "TCP", 8080, &[Ipv4Addr::new(10, 244, 0, 40)]).await;
    // The upstream is an address on the pod bridge where nothing listens: no query
    // of this test may leave its namespaces.
    cluster
        .start_proxy(&[
            "--cluster-cidr",
            common::CLUSTER_CIDR,
            "--cluster-dns-address",
            &DNS_IP.to_string(),
            "--dns-upstream",
            "10.244.0.254",
        ])
        .await;

    // kube-proxy holds the address on its own interface, so the pod's query (sent
    // through its default route) is delivered on the node.
    let interface = cluster.world.node.exec("ip", &["-4", "-o", "addr", "show", "dev", "rudder-dns"]);
    let listing = String::from_utf8_lossy(&interface.stdout);
    assert!(listing.contains(&format!("inet {DNS_IP}/32")), "rudder-dns: {listing}");

    let cluster_ip: Ipv4Addr = web.spec.as_ref().unwrap().cluster_ip.parse().unwrap();
    let name = "web.default.svc.cluster.local";
    // /readyz waited for the DNS's records, so the first answer is already right.
    let answer = ask_udp(cluster.world.pod("client"), name).await.unwrap();
    assert_eq!(answer, Answer { rcode: Rcode::NoError, addresses: vec![cluster_ip] }, "UDP {name}");
    let answer = ask_tcp(cluster.world.pod("client"), name).await.unwrap();
    assert_eq!(answer, Answer { rcode: Rcode::NoError, addresses: vec![cluster_ip] }, "TCP {name}");

    let unknown = "nothing.default.svc.cluster.local";
    let answer = ask_udp(cluster.world.pod("client"), unknown).await.unwrap();
    assert_eq!(answer, Answer { rcode: Rcode::NxDomain, addresses: vec![] }, "{unknown}");

    // A Service created while running appears; a deleted one goes.
    let late = cluster
        .create_service(json!({
            "metadata": {"name": "late", "namespace": "default"},
            "spec": {"ports": [{"port": 81, "targetPort": 8081}]},
        }))
        .await;
    let late_ip: Ipv4Addr = late.spec.as_ref().unwrap().cluster_ip.parse().unwrap();
    wait_answer(&cluster, "late.default.svc.cluster.local", "a new Service", |a| a.addresses == [late_ip]).await;

    Api::<Service>::namespaced(&cluster.client, "default").delete("web", Default::default()).await.unwrap();
    wait_answer(&cluster, name, "a deleted Service", |a| a.rcode == Rcode::NxDomain).await;
    let answer = ask_udp(cluster.world.pod("client"), "late.default.svc.cluster.local").await.unwrap();
    assert_eq!(answer.addresses, vec![late_ip], "the other Service stays");

    let (status, metrics) = common::http_get(&cluster.world.node, &cluster.http, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("kube_proxy_dns_responses_total{kind=\"nxdomain\"}"), "{metrics}");
    assert!(metrics.contains("kube_proxy_dns_services 1"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // The address stays while kube-proxy is stopped; --cleanup removes it.
    if let Some(mut proxy) = cluster.proxy.take() {
        proxy.terminate(Duration::from_secs(10));
    }
    let binary = testkit::binary_path("kube-proxy").unwrap();
    let out = cluster.world.node.exec(&binary.display().to_string(), &["--cleanup"]);
    assert!(out.status.success(), "kube-proxy --cleanup: {}", String::from_utf8_lossy(&out.stderr));
    let interface = cluster.world.node.exec("ip", &["link", "show", "dev", "rudder-dns"]);
    assert!(!interface.status.success(), "rudder-dns is still there after --cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_dns_address_stops_kube_proxy_with_the_reason() {
    let cluster = Cluster::start(World::new()).await;
    let args = cluster.proxy_command(&["--cluster-dns-address", "169.254.20"]);
    let out = std::process::Command::new("ip").args(&args).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cluster-dns-address: \"169.254.20\" is not an IP address"), "{stderr}");
}
