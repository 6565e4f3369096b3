//! What the cluster DNS tests share: a real etcd and apiserver, the DNS server on
//! a free loopback port, a small DNS client, and a fake upstream resolver on
//! loopback (the tests never query a real resolver).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use client::Client;
use dns::forward::{read_framed, write_framed};
use dns::wire::{CLASS_IN, Header, Message, Name, Question, RData, Rcode, Record, RecordType};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a condition may take to come true (generous: CI shares 2 cores).
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub client: Client,
    pub apiserver: testkit::ApiServer,
    pub etcd: testkit::Etcd,
}

pub async fn cluster() -> Cluster {
    let etcd = testkit::Etcd::start().await.expect("etcd starts");
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await.expect("the apiserver starts");
    let client = Client::new(&apiserver.grpc_endpoint(), "default").expect("a client");
    Cluster { client, apiserver, etcd }
}

/// A DNS server running on 127.0.0.1:<free port>; stops when dropped.
pub struct RunningDns {
    pub address: SocketAddr,
    pub status: dns::Status,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), dns::Error>>>,
}

impl RunningDns {
    /// Starts the server with `upstreams`; waits for its records to sync when
    /// `wait_synced`.
    pub async fn start(client: &Client, upstreams: Vec<SocketAddr>, wait_synced: bool) -> RunningDns {
        let mut config = dns::Config::new("127.0.0.1:0".parse().expect("an address"));
        config.upstreams = upstreams;
        config.upstream_timeout = Duration::from_millis(500);
        let server = dns::Server::bind_with_client(config, client).await.expect("the DNS server binds");
        let address = server.local_addr();
        let status = server.status();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let dns = RunningDns { address, status, stop: Some(stop), task: Some(task) };
        if wait_synced {
            let started = Instant::now();
            while !dns.status.synced() {
                assert!(started.elapsed() < DEADLINE, "the DNS records did not sync");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        dns
    }

    /// Stops the server and waits for it to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task did not panic").expect("the server ended cleanly");
        }
    }
}

impl Drop for RunningDns {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    Message {
        header: Header { id: rand::random(), recursion_desired: true, ..Default::default() },
        questions: vec![Question { name: Name::parse(name).expect("a valid name"), qtype, qclass: CLASS_IN }],
        additional: if edns { vec![Record::opt(1232)] } else { Vec::new() },
        ..Default::default()
    }
}

/// Asks `server` over UDP and checks the answer belongs to the question.
pub async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    ask_udp_message(server, &query(name, qtype, false)).await
}

pub async fn ask_udp_message(server: SocketAddr, query: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a client socket");
    socket.send_to(&query.encode().expect("the query encodes"), server).await.expect("the query is sent");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .expect("an answer within 10 s")
        .expect("receiving works");
    let answer = Message::decode(&buf[..n]).expect("the answer decodes");
    assert_eq!(answer.header.id, query.header.id, "the answer carries the query's id");
    assert!(answer.header.response);
    assert_eq!(answer.questions, query.questions, "the answer repeats the question");
    answer
}

/// Asks `server` over TCP.
pub async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let query = query(name, qtype, false);
    let mut stream = TcpStream::connect(server).await.expect("TCP connects");
    write_framed(&mut stream, &query.encode().expect("the query encodes")).await.expect("the query is sent");
    let bytes = tokio::time::timeout(Duration::from_secs(10), read_framed(&mut stream))
        .await
        .expect("an answer within 10 s")
        .expect("reading works");
    let answer = Message::decode(&bytes).expect("the answer decodes");
    assert_eq!(answer.header.id, query.header.id);
    assert_eq!(answer.questions, query.questions);
    answer
}

/// The A and AAAA addresses of the answer section, sorted.
pub fn addresses(message: &Message) -> Vec<String> {
    let mut out: Vec<String> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(ip) => Some(ip.to_string()),
            RData::Aaaa(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Asks until `done` holds for the answer, or panics after the deadline.
pub async fn ask_until(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    what: &str,
    done: impl Fn(&Message) -> bool,
) -> Message {
    let started = Instant::now();
    loop {
        let answer = ask_udp(server, name, qtype).await;
        if done(&answer) {
            return answer;
        }
        assert!(started.elapsed() < DEADLINE, "{what}: last answer for {name}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn is_nxdomain(message: &Message) -> bool {
    message.rcode() == Rcode::NxDomain
}

/// A stand-in for the node's resolver on 127.0.0.1 (UDP and TCP, one port):
/// `<n>.example.test` has n A records 192.0.2.1..n; over UDP an answer that
/// does not fit 512 bytes comes back truncated (TC, no records); everything else
/// is NXDOMAIN.
pub struct FakeUpstream {
    pub address: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("the fake upstream binds TCP");
        let address = tcp.local_addr().expect("an address");
        let udp = UdpSocket::bind(address).await.expect("the fake upstream binds UDP on the same port");
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                if let Some(answer) = fake_answer(&buf[..n], 512) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    while let Ok(query) = read_framed(&mut stream).await {
                        let Some(answer) = fake_answer(&query, 65535) else { return };
                        if write_framed(&mut stream, &answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeUpstream { address, tasks: vec![udp_task, tcp_task] }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn fake_answer(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    let query = Message::decode(bytes).ok()?;
    let question = query.questions.first()?.clone();
    let text = question.name.to_lowercase_text()?;
    let count = text.strip_suffix(".example.test").and_then(|n| n.parse::<u8>().ok());
    let mut answer = Message::response_to(&query, Rcode::NoError);
    answer.header.recursion_available = true;
    match count {
        Some(n) if question.qtype == RecordType::A => {
            for i in 1..=n {
                answer.answers.push(Record::new(question.name.clone(), 60, RData::A(Ipv4Addr::new(192, 0, 2, i))));
            }
        }
        Some(_) => {}
        None => answer.set_rcode(Rcode::NxDomain),
    }
    answer.encode_within(limit).ok()
}

/// A UDP port on 127.0.0.1 that nothing listens on: queries to it are refused.
pub fn closed_udp_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
    socket.local_addr().expect("an address")
    // The socket closes here; the port stays unused (a small race, which tests accept).
}
