//! The apiserver benchmark.
//!
//! 1. Creates/s and latency through the apiserver at concurrency 16 and 64, against
//!    raw etcd create-if-absent transactions of the same payloads at the same
//!    concurrency (the ceiling: the apiserver does one such transaction per create).
//!    Each apiserver run is compared with the raw runs before and after it, and every
//!    run reports what each process spent per create, so a change in the ratio can be
//!    traced to etcd, the apiserver or the load generator.
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

use crate::metrics;
use crate::stats::{Latencies, rate};

/// The CPU time a process has used so far (all threads, user and system), read from
/// /proc/PID/stat, whose times are in USER_HZ ticks: 100 per second on Linux.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Context switches so far, voluntary and not, over all of a process's threads: each is
/// a wake-up or preemption, which costs far more than its syscall on a virtual machine.
fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        // A thread may have ended since the directory was read.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        total += status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(total)
}

/// etcd's WAL fsyncs so far, from its /metrics: each ends one raft batch of writes.
async fn etcd_fsyncs(address: &str) -> Option<u64> {
    let (_, text) = testkit::http_get(address, "/metrics").await.ok()?;
    metrics::total(&text, "etcd_disk_wal_fsync_duration_seconds_count", &[]).map(|n| n as u64)
}

/// The pid of this process's child named `name` (testkit's etcd does not expose it).
fn child_pid(name: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let comm = &stat[stat.find('(')? + 1..stat.rfind(')')?];
        let parent = stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?;
        (comm == name && parent == me).then_some(pid)
    })
}

/// The processes whose CPU time a measurement accounts for.
struct Processes {
    etcd: Option<u32>,
    apiserver: Option<u32>,
    /// host:port of etcd's client URL, which also serves its /metrics.
    etcd_address: String,
}

/// CPU time used by each process during one measurement, and context switches made.
#[derive(Default)]
struct CpuUse {
    etcd: Duration,
    apiserver: Duration,
    bench: Duration,
    /// Context switches of etcd, the apiserver and the bench.
    switches: [u64; 3],
    /// etcd's WAL fsyncs, where its metrics could be read.
    fsyncs: Option<u64>,
}

impl Processes {
    async fn sample(&self) -> CpuUse {
        let fsyncs = etcd_fsyncs(&self.etcd_address).await;
        let of = |pid: Option<u32>| pid.and_then(cpu_time).unwrap_or_default();
        let switches = |pid: Option<u32>| pid.and_then(context_switches).unwrap_or_default();
        let bench = Some(std::process::id());
        CpuUse {
            etcd: of(self.etcd),
            apiserver: of(self.apiserver),
            bench: of(bench),
            switches: [switches(self.etcd), switches(self.apiserver), switches(bench)],
            fsyncs,
        }
    }
}

impl CpuUse {
    fn since(&self, before: &CpuUse) -> CpuUse {
        CpuUse {
            etcd: self.etcd.saturating_sub(before.etcd),
            apiserver: self.apiserver.saturating_sub(before.apiserver),
            bench: self.bench.saturating_sub(before.bench),
            switches: std::array::from_fn(|i| self.switches[i].saturating_sub(before.switches[i])),
            fsyncs: self.fsyncs.zip(before.fsyncs).map(|(now, then)| now.saturating_sub(then)),
        }
    }

    /// CPU microseconds and context switches per operation, per process.
    fn per_op(&self, ops: usize) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / ops.max(1) as f64;
        let per = |n: u64| n as f64 / ops.max(1) as f64;
        let batch = match self.fsyncs {
            Some(fsyncs) => format!("{:.1}", ops as f64 / fsyncs.max(1) as f64),
            None => "?".to_string(),
        };
        format!(
            "cpu/op: etcd {:>4.0} us  apiserver {:>4.0} us  bench {:>4.0} us | switches/op {:.1}/{:.1}/{:.1} | ops/fsync {batch}",
            us(self.etcd),
            us(self.apiserver),
            us(self.bench),
            per(self.switches[0]),
            per(self.switches[1]),
            per(self.switches[2]),
        )
    }
}

/// One measured run: ops/s, latencies, CPU used.
struct Run {
    rate: f64,
    latencies: Latencies,
    cpu: CpuUse,
}

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
    /// Rounds of the creates comparison per concurrency level: each is an apiserver run
    /// between two raw etcd runs (the first round's second is the next one's first), so
    /// load from other processes on the machine, and etcd's growing store, affect both.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only the creates comparison (no watch fan-out, no steady load).
    #[arg(long)]
    creates_only: bool,
    /// Diagnostic: raw etcd runs also keep an etcd watch on the keys they create, as
    /// the apiserver's watch cache does, to show what feeding a watch costs etcd.
    /// The target's ceiling is the unwatched run.
    #[arg(long)]
    raw_watched: bool,
    /// The apiserver's --worker-threads [default: the apiserver's, one per core].
    #[arg(long)]
    apiserver_threads: Option<usize>,
    /// The concurrency levels of the creates comparison (the targets are at 16 and 64).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    clients: Vec<usize>,
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
    let threads_flag = options.apiserver_threads.map(|n| format!("--worker-threads={n}"));
    let extra: Vec<&str> = threads_flag.iter().map(String::as_str).collect();
    let apiserver = testkit::ApiServer::start_with(&etcd.endpoints(), &extra).await?;
    println!(
        "apiserver benchmark: etcd {} | apiserver {} ({} worker threads)",
        etcd.endpoints()[0],
        apiserver.grpc_endpoint(),
        match options.apiserver_threads {
            Some(n) => n.to_string(),
            None => "one per core".to_string(),
        },
    );
    println!("creates of ~1 KiB ConfigMaps, {} per run; raw etcd and apiserver runs alternate", options.creates);
    println!(
        "(switches/op: context switches of etcd/apiserver/bench per create; ops/fsync: creates per etcd WAL fsync)"
    );
    println!();
    println!("{:<34} {:>10}  latency", "creates", "per second");

    let etcd_address = etcd.endpoints()[0].trim_start_matches("http://").to_string();
    let processes = Processes { etcd: child_pid("etcd"), apiserver: apiserver.pid(), etcd_address };
    if options.raw_watched {
        println!("(raw etcd runs watched: each has an etcd watch on its keys)");
    }
    let rounds = options.rounds.max(1);
    let show = |target: &str, concurrency: usize, round: usize, run: &Run| {
        let tag = format!("{target} {concurrency} clients, run {round}");
        println!("{:<34} {:>10.0}  {}", tag, run.rate, run.latencies.summary());
        println!("{:<34} {:>10}  {}", "", "", run.cpu.per_op(options.creates));
    };
    for &concurrency in &options.clients {
        let mut ratios = Vec::with_capacity(rounds);
        let raw_run =
            |round| raw_etcd_creates(&etcd, &processes, concurrency, round, options.creates, options.raw_watched);
        let mut raw_before = raw_run(0).await?;
        show("raw etcd txn,", concurrency, 1, &raw_before);
        for round in 0..rounds {
            let (api, split) = apiserver_creates(&apiserver, &processes, concurrency, round, options.creates).await?;
            show("apiserver,   ", concurrency, round + 1, &api);
            println!("{:<34} {:>10}  {split}", "", "");
            let raw_after = raw_run(round + 1).await?;
            show("raw etcd txn,", concurrency, round + 2, &raw_after);
            // Every run adds its keys to etcd, and each create costs etcd a little more
            // the bigger its store: measured against the raw runs on either side, an
            // apiserver run is not charged for that drift.
            let ratio = 200.0 * api.rate / (raw_before.rate + raw_after.rate);
            println!("{:<34} {:>9.0}%", "  apiserver / raw etcd either side", ratio);
            ratios.push(ratio);
            raw_before = raw_after;
        }
        ratios.sort_by(f64::total_cmp);
        let middle = ratios.len() / 2;
        // With an even number of rounds the median is the mean of the two middle ones.
        let median = if ratios.len() % 2 == 0 { (ratios[middle - 1] + ratios[middle]) / 2.0 } else { ratios[middle] };
        println!(
            "{:<34} {:>9.0}%  (median; range {:.0}%..{:.0}% over {rounds} rounds)",
            format!("apiserver / raw etcd, {concurrency} clients"),
            median,
            ratios[0],
            ratios[ratios.len() - 1],
        );
        println!();
    }
    if options.creates_only {
        return Ok(());
    }
    watch_fan_out(&apiserver, options.watchers, options.events).await?;
    println!();
    steady_writes(&apiserver, 1000, Duration::from_secs(options.steady_seconds)).await?;
    Ok(())
}

/// Runs `total` operations split over `concurrency` tasks; returns ops/s, latencies and
/// the CPU time each process used meanwhile.
async fn measure<F, Fut>(processes: &Processes, concurrency: usize, total: usize, op: F) -> anyhow::Result<Run>
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
    let cpu_before = processes.sample().await;
    barrier.wait().await;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(total);
    for task in tasks {
        samples.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu = processes.sample().await.since(&cpu_before);
    Ok(Run { rate: rate(samples.len(), elapsed), latencies: Latencies::new(samples), cpu })
}

async fn raw_etcd_creates(
    etcd: &testkit::Etcd,
    processes: &Processes,
    concurrency: usize,
    round: usize,
    total: usize,
    watched: bool,
) -> anyhow::Result<Run> {
    let client = etcd.client().await?;
    // Keys and names shaped like the apiserver's, so both move the same bytes.
    let prefix = "/bench-raw/configmaps/default/";
    // Drained by a task of its own, as the apiserver's cache drains its watch.
    let watcher = if watched {
        let options = etcd_client::WatchOptions::new().with_prefix();
        let mut stream = client.watch_client().watch(prefix, Some(options)).await?;
        Some(tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} }))
    } else {
        None
    };
    let run = measure(processes, concurrency, total, move |i| {
        let mut kv = client.kv_client();
        let name = format!("c{concurrency}-{round}-{i}");
        let key = format!("{prefix}{name}");
        let value: Vec<u8> = payload(&name).encode_to_vec();
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
    .await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    run
}

async fn apiserver_creates(
    apiserver: &testkit::ApiServer,
    processes: &Processes,
    concurrency: usize,
    round: usize,
    total: usize,
) -> anyhow::Result<(Run, String)> {
    let client = Client::new(&apiserver.grpc_endpoint(), "default")?;
    let info = ConfigMap::INFO;
    let before = ServerTimes::scrape(apiserver).await?;
    let run = measure(processes, concurrency, total, move |i| {
        let client = client.clone();
        let object: Bytes = payload(&format!("c{concurrency}-{round}-{i}")).encode_to_vec().into();
        async move {
            client.create(info, "default", object, false).await?;
            Ok(())
        }
    })
    .await?;
    let split = ServerTimes::scrape(apiserver).await?.since(&before);
    Ok((run, split))
}

/// Totals of the apiserver's own latency histograms: where a create's time goes.
struct ServerTimes {
    /// (sum of seconds, count) of create requests, as the apiserver timed them.
    creates: (f64, f64),
    /// (sum of seconds, count) of etcd transactions.
    txns: (f64, f64),
}

impl ServerTimes {
    async fn scrape(apiserver: &testkit::ApiServer) -> anyhow::Result<ServerTimes> {
        let (status, text) = apiserver.http_get("/metrics").await?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        let total = |metric: &str, labels: &[&str]| metrics::total(&text, metric, labels).unwrap_or_default();
        let create = ["verb=\"create\"", "resource=\"configmaps\""];
        let creates = (
            total("apiserver_request_duration_seconds_sum", &create),
            total("apiserver_request_duration_seconds_count", &create),
        );
        let txn = ["operation=\"txn\""];
        let txns = (
            total("apiserver_etcd_request_duration_seconds_sum", &txn),
            total("apiserver_etcd_request_duration_seconds_count", &txn),
        );
        Ok(ServerTimes { creates, txns })
    }

    /// Mean time per create inside the apiserver, and of that in etcd, since `before`.
    fn since(&self, before: &ServerTimes) -> String {
        let mean = |now: (f64, f64), then: (f64, f64)| 1e3 * (now.0 - then.0) / (now.1 - then.1).max(1.0);
        format!(
            "mean ms/create: in apiserver {:.2}, of which etcd txn {:.2}",
            mean(self.creates, before.creates),
            mean(self.txns, before.txns)
        )
    }
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
