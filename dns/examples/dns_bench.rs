//! Prints figures of the cluster DNS against a real etcd and apiserver on this
//! machine: time to sync N Services, authoritative queries/s over UDP with
//! concurrent clients (and latency percentiles), and how soon a new Service
//! resolves. Run: `cargo build -p apiserver && cargo run -p dns --example dns_bench -- [SERVICES]`
//! (add --release to both for release figures).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client::{Api, Client};
use dns::wire::{CLASS_IN, Header, Message, Name, Question, RecordType};
use proto::core::v1::{Service, ServicePort, ServiceSpec};
use proto::meta::v1::ObjectMeta;
use tokio::net::UdpSocket;

const CLIENTS: usize = 8;
const MEASURE: Duration = Duration::from_secs(3);

fn service(name: &str) -> Service {
    Service {
        metadata: Some(ObjectMeta { name: name.into(), ..Default::default() }),
        spec: Some(ServiceSpec {
            ports: vec![ServicePort { name: "http".into(), port: 80, protocol: "TCP".into(), ..Default::default() }],
            ..Default::default()
        }),
        status: None,
    }
}

fn query(name: &str) -> anyhow::Result<Message> {
    Ok(Message {
        header: Header { id: rand::random(), recursion_desired: true, ..Default::default() },
        questions: vec![Question { name: Name::parse(name)?, qtype: RecordType::A, qclass: CLASS_IN }],
        ..Default::default()
    })
}

/// Sends queries for random Services one after another until `stop`; returns
/// the latencies of the answers.
async fn client_loop(server: SocketAddr, services: usize, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<Duration>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut buf = vec![0u8; 4096];
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let i = rand::random_range(0..services);
        let bytes = query(&format!("svc-{i}.default.svc.cluster.local"))?.encode()?;
        let sent = Instant::now();
        socket.send(&bytes).await?;
        match tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let answer = Message::decode(&buf[..n])?;
                anyhow::ensure!(answer.answers.len() == 1, "svc-{i}: unexpected answer {answer:?}");
                latencies.push(sent.elapsed());
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => eprintln!("a query got no answer within 2 s"),
        }
    }
    Ok(latencies)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let services: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(1000);
    let etcd = testkit::Etcd::start().await?;
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await?;
    let client = Client::new(&apiserver.grpc_endpoint(), "default")?;
    let api: Api<Service> = Api::namespaced(&client, "default");

    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..services {
        let api = api.clone();
        pending.spawn(async move { api.create(&service(&format!("svc-{i}"))).await });
        while pending.len() >= 16 {
            pending.join_next().await.transpose()?.transpose()?;
        }
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    println!("created {services} Services in {:.2?}", started.elapsed());

    let mut config = dns::Config::new("127.0.0.1:0".parse()?);
    config.upstreams = Vec::new();
    let started = Instant::now();
    let server = dns::Server::bind_with_client(config, &client).await?;
    let address = server.local_addr();
    let status = server.status();
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    while !status.synced() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "DNS synced {} Services in {:.2?} (list + watch start + records)",
        status.service_count(),
        started.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS).map(|_| tokio::spawn(client_loop(address, services, stop.clone()))).collect();
    tokio::time::sleep(MEASURE).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await??);
    }
    latencies.sort();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "{CLIENTS} UDP clients, A queries for random Services: {:.0} answers/s; p50 {:.2?}, p99 {:.2?}",
        latencies.len() as f64 / MEASURE.as_secs_f64(),
        at(0.50).copied().unwrap_or_default(),
        at(0.99).copied().unwrap_or_default(),
    );

    // From the apiserver's answer to the create until the name resolves.
    let created = Instant::now();
    api.create(&service("late")).await?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(address).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        socket.send(&query("late.default.svc.cluster.local")?.encode()?).await?;
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await??;
        if !Message::decode(&buf[..n])?.answers.is_empty() {
            break;
        }
        anyhow::ensure!(created.elapsed() < Duration::from_secs(30), "the new Service never resolved");
    }
    println!("a new Service resolved {:.2?} after its create returned", created.elapsed());
    let _ = stop_server.send(());
    task.await??;
    Ok(())
}
