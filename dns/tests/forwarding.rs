//! Names outside the cluster domain go to the upstream resolvers: here a fake
//! resolver on 127.0.0.1 (never a real one). Truncated upstream answers are asked
//! again over TCP; an upstream that is down or silent ends in SERVFAIL.

mod common;

use std::time::Duration;

use common::{FakeUpstream, RunningDns, addresses, ask_tcp, ask_udp, ask_udp_message, closed_udp_port, cluster, query};
use dns::wire::{Rcode, RecordType};

#[tokio::test]
async fn forwards_to_the_upstream_over_udp_and_tcp() {
    let cluster = cluster().await;
    let upstream = FakeUpstream::start().await;
    // The first upstream is down: the second one answers.
    let dns = RunningDns::start(&cluster.client, vec![closed_udp_port(), upstream.address], true).await;

    let answer = ask_udp(dns.address, "1.example.test", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::NoError);
    assert!(!answer.header.authoritative, "a forwarded answer is not ours");
    assert_eq!(addresses(&answer), ["192.0.2.1"]);
    let answer = ask_udp(dns.address, "nothing.test", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::NxDomain, "the upstream's NXDOMAIN passes through");

    // 40 records do not fit 512 bytes: the upstream truncates over UDP, the server
    // asks it again over TCP. A client with EDNS (1232 bytes) gets them all over UDP…
    let big = query("40.example.test", RecordType::A, true);
    let answer = ask_udp_message(dns.address, &big).await;
    assert!(!answer.header.truncated);
    assert_eq!(answer.answers.len(), 40);
    // …one without gets TC and asks over TCP, which carries everything.
    let answer = ask_udp(dns.address, "40.example.test", RecordType::A).await;
    assert!(answer.header.truncated);
    assert!(answer.answers.is_empty());
    let answer = ask_tcp(dns.address, "40.example.test", RecordType::A).await;
    assert_eq!(answer.answers.len(), 40);

    // The cluster's own names are never forwarded.
    let answer = ask_udp(dns.address, "kubernetes.default.svc.cluster.local", RecordType::A).await;
    assert!(answer.header.authoritative);
    assert_eq!(dns.status.counts().forwarded, 5);
    dns.stop().await;
}

#[tokio::test]
async fn servfail_when_no_upstream_answers() {
    let cluster = cluster().await;
    // Refused at once.
    let dns = RunningDns::start(&cluster.client, vec![closed_udp_port()], true).await;
    let answer = ask_udp(dns.address, "1.example.test", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::ServFail);
    let answer = ask_tcp(dns.address, "1.example.test", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::ServFail);
    dns.stop().await;

    // Silent: a socket that reads and never answers; the server gives up after
    // its upstream timeout (500 ms in these tests), well before the client's 10 s.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = RunningDns::start(&cluster.client, vec![silent.local_addr().unwrap()], true).await;
    let answer = ask_udp(dns.address, "1.example.test", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::ServFail);
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), silent.recv_from(&mut buf)).await.unwrap().unwrap();
    assert!(n > 12, "the silent upstream was asked");
    dns.stop().await;

    // No upstream at all.
    let dns = RunningDns::start(&cluster.client, Vec::new(), true).await;
    let answer = ask_udp(dns.address, "1.example.test", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::ServFail);
    assert_eq!(dns.status.counts().servfail, 1);
    dns.stop().await;
}

#[tokio::test]
async fn before_its_records_sync_the_domain_is_servfail_and_the_rest_still_forwards() {
    // An apiserver address nothing listens on: the informers never list.
    let client = client::Client::new(&format!("http://127.0.0.1:{}", testkit::free_port()), "default").unwrap();
    let upstream = FakeUpstream::start().await;
    let dns = RunningDns::start(&client, vec![upstream.address], false).await;
    assert!(!dns.status.synced());
    let answer = ask_udp(dns.address, "web.default.svc.cluster.local", RecordType::A).await;
    assert_eq!(answer.rcode(), Rcode::ServFail, "no NXDOMAIN a client could cache");
    let answer = ask_udp(dns.address, "2.example.test", RecordType::A).await;
    assert_eq!(addresses(&answer), ["192.0.2.1", "192.0.2.2"]);
    dns.stop().await;
}

#[tokio::test]
async fn free_bind_listens_on_an_address_no_interface_has_yet() {
    let client = client::Client::new(&format!("http://127.0.0.1:{}", testkit::free_port()), "default").unwrap();
    let informers = client::runtime::SharedInformers::new(&client);
    // An address of no interface here (nothing is sent to it).
    let absent: std::net::SocketAddr = format!("10.255.255.254:{}", testkit::free_port()).parse().unwrap();
    let mut config = dns::Config::new(absent);
    config.upstreams = Vec::new();
    let error = dns::Server::bind(config.clone(), &informers).await.err().expect("binding an absent address fails");
    let text = error.to_string();
    assert!(text.contains("10.255.255.254") && text.contains("TCP"), "{text}");
    config.free_bind = true;
    let server = dns::Server::bind(config, &informers).await.expect("free bind works");
    assert_eq!(server.local_addr(), absent);
}
