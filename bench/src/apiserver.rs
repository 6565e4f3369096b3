//! The apiserver benchmark.
//!
//! 1. Creates/s and latency through the apiserver at concurrency 16 and 64, against
//!    raw etcd create-if-absent transactions of the same payloads at the same
//!    concurrency (the ceiling: the apiserver does one such transaction per create).
//! 2. Watch fan-out: events/s delivered to 1,000 concurrent watchers.
//! 3. Mutating latency at a steady 1,000 writes/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Api, Client, ListParams, WatchEvent};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use futures::StreamExt as _;
use prost::Message as _;
use proto::Resource as _;
use proto::core::v1::ConfigMap;
use proto::meta::v1::ObjectMeta;
use tokio::sync::Barrier;

use crate::stats::{Latencies, rate};

#[derive(clap::Args)]
pub struct Options {
    /// Creates per concurrency level and target.
    #[arg(long, default_value_t = 20_000)]
    creates: usize,
    /// Concurrent watchers for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Events written while the watchers watch.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Seconds of steady 1,000 writes/s.
    #[arg(long, default_value_t = 10)]
    steady_seconds: u64,
}

/// A ConfigMap of about 1 KiB, the payload of every create.
fn payload(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            namespace: "default".to_string(),
            labels: [("app".to_string(), "bench".to_string()), ("tier".to_string(), "load".to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        data: [("blob".to_string(), "x".repeat(900))].into_iter().collect(),
        ..Default::default()
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let etcd = testkit::Etcd::start().await?;
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await?;
    println!("apiserver benchmark: etcd {} | apiserver {}", etcd.endpoints()[0], apiserver.grpc_endpoint());
    println!();
    println!("{:<28} {:>12}  latency", "creates", "per second");

    for concurrency in [16usize, 64] {
        let raw = raw_etcd_creates(&etcd, concurrency, options.creates).await?;
        let api = apiserver_creates(&apiserver, concurrency, options.creates).await?;
        println!("{:<28} {:>12.0}  {}", format!("raw etcd txn, {concurrency} clients"), raw.0, raw.1.summary());
        println!("{:<28} {:>12.0}  {}", format!("apiserver, {concurrency} clients"), api.0, api.1.summary());
        println!("{:<28} {:>11.0}%", "  apiserver / raw etcd", 100.0 * api.0 / raw.0);
    }
    println!();
    watch_fan_out(&apiserver, options.watchers, options.events).await?;
    println!();
    steady_writes(&apiserver, 1000, Duration::from_secs(options.steady_seconds)).await?;
    Ok(())
}

/// Runs `total` operations split over `concurrency` tasks; returns ops/s and latencies.
async fn measure<F, Fut>(concurrency: usize, total: usize, op: F) -> anyhow::Result<(f64, Latencies)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (op, barrier) = (op.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut samples = Vec::new();
            let mut i = worker;
            while i < total {
                let started = Instant::now();
                op(i).await?;
                samples.push(started.elapsed());
                i += concurrency;
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(total);
    for task in tasks {
        samples.extend(task.await??);
    }
    let elapsed = started.elapsed();
    Ok((rate(samples.len(), elapsed), Latencies::new(samples)))
}

async fn raw_etcd_creates(etcd: &testkit::Etcd, concurrency: usize, total: usize) -> anyhow::Result<(f64, Latencies)> {
    let client = etcd.client().await?;
    let prefix = format!("/bench-raw/{concurrency}/");
    measure(concurrency, total, move |i| {
        let mut kv = client.kv_client();
        let key = format!("{prefix}{i}");
        let value: Vec<u8> = payload(&format!("c{i}")).encode_to_vec();
        async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), value, None)])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let response = kv.txn(txn).await?;
            anyhow::ensure!(response.succeeded(), "key {key} existed");
            Ok(())
        }
    })
    .await
}

async fn apiserver_creates(
    apiserver: &testkit::ApiServer,
    concurrency: usize,
    total: usize,
) -> anyhow::Result<(f64, Latencies)> {
    let client = Client::new(&apiserver.grpc_endpoint(), "default")?;
    let info = ConfigMap::INFO;
    measure(concurrency, total, move |i| {
        let client = client.clone();
        let object: Bytes = payload(&format!("c{concurrency}-{i}")).encode_to_vec().into();
        async move {
            client.create(info, "default", object, false).await?;
            Ok(())
        }
    })
    .await
}

async fn watch_fan_out(apiserver: &testkit::ApiServer, watchers: usize, events: usize) -> anyhow::Result<()> {
    // Spread the watchers over several connections, as separate processes would.
    let connections: Vec<Client> =
        (0..16).map(|_| Client::new(&apiserver.grpc_endpoint(), "default")).collect::<Result<_, _>>()?;
    let writer = Api::<ConfigMap>::namespaced(&connections[0], "default");
    let mut object = writer.create(&payload("fan-out")).await?;
    let start = object.metadata().resource_version.clone();
    let params = ListParams::fields("metadata.name=fan-out");

    let ready = Arc::new(Barrier::new(watchers + 1));
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let api = Api::<ConfigMap>::namespaced(&connections[w % connections.len()], "default");
        let (params, start, ready) = (params.clone(), start.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = api.watch(&params, &start).await?;
            ready.wait().await;
            let mut seen = 0;
            while seen < events {
                match stream.next().await {
                    Some(Ok(WatchEvent::Modified(_))) => seen += 1,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::anyhow!("watcher {w}: {e}")),
                    None => return Err(anyhow::anyhow!("watcher {w}: the stream ended")),
                }
            }
            Ok::<_, anyhow::Error>(Instant::now())
        }));
    }
    ready.wait().await;
    let started = Instant::now();
    for i in 0..events {
        object.data.insert("n".to_string(), i.to_string());
        object = writer.update(&object).await?;
    }
    let written = started.elapsed();
    let mut last = started;
    for task in tasks {
        last = last.max(task.await??);
    }
    let elapsed = last - started;
    let delivered = watchers * events;
    println!(
        "watch fan-out: {events} events to {watchers} watchers = {delivered} deliveries in {:.2} s (writes took {:.2} s): {:.0} events/s",
        elapsed.as_secs_f64(),
        written.as_secs_f64(),
        rate(delivered, elapsed)
    );
    Ok(())
}

async fn steady_writes(apiserver: &testkit::ApiServer, per_second: u64, duration: Duration) -> anyhow::Result<()> {
    let client = Client::new(&apiserver.grpc_endpoint(), "default")?;
    let info = ConfigMap::INFO;
    let total = (per_second * duration.as_secs()) as usize;
    let interval = Duration::from_secs_f64(1.0 / per_second as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        // Open loop: each write starts on schedule whether or not earlier ones finished.
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let client = client.clone();
        let object: Bytes = payload(&format!("steady-{i}")).encode_to_vec().into();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            client.create(info, "default", object, false).await.map(|_| begun.elapsed())
        }));
    }
    let mut samples = Vec::with_capacity(total);
    for task in tasks {
        samples.push(task.await??);
    }
    let elapsed = started.elapsed();
    let latencies = Latencies::new(samples);
    println!(
        "steady load: {total} creates at {per_second}/s (achieved {:.0}/s): {}",
        rate(total, elapsed),
        latencies.summary()
    );
    Ok(())
}
