//! The pod startup benchmark: a real etcd, apiserver and kubelet on this host (root
//! only), the busybox test image imported, then N pods bound to the node (spec.nodeName
//! set, so no scheduler) each with one long-running busybox container. Per pod, the
//! latency from the start of its create call to the watch event showing it Running and
//! Ready; p50/p99, pods/s over the batch, and the kubelet's RSS while they run.
//! Everything it starts or makes (pods, containers, cgroups, bridge, nftables table,
//! processes) is removed at the end, also when it fails or is interrupted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use client::{Api, Client, ListParams, WatchEvent};
use futures::StreamExt as _;
use proto::Resource as _;
use proto::core::v1::{Container, Node, Pod, PodSpec};
use proto::meta::v1::{DeleteOptions, ObjectMeta};

use crate::stats::{Latencies, mib, peak_rss, rate};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Concurrent pod creates (the burst mode: the default).
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Paced mode: create one pod every this many milliseconds instead of in a burst,
    /// so that the latency is that of a node keeping up rather than of a queue.
    #[arg(long, conflicts_with = "one_by_one")]
    interval_ms: Option<u64>,
    /// Sequential mode: create each pod only once the one before is Running and Ready
    /// (a single pod's latency, with nothing else going on).
    #[arg(long)]
    one_by_one: bool,
    /// How long to wait for every pod to be Running and Ready.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Copy the kubelet's log here at the end (run with RUST_LOG=kubelet=debug to see
    /// each pod's steps with their timestamps).
    #[arg(long)]
    kubelet_log: Option<PathBuf>,
    /// Where the benchmark makes its scratch directory, the kubelet's --root-dir among it
    /// [default: the system's temp dir]. The filesystem matters: see the README.
    #[arg(long)]
    scratch_dir: Option<PathBuf>,
}

const NAMESPACE: &str = "default";
const NODE: &str = "bench-node";

fn pod(i: usize) -> Pod {
    Pod {
        metadata: Some(ObjectMeta { name: format!("startup-{i}"), namespace: NAMESPACE.into(), ..Default::default() }),
        spec: Some(PodSpec {
            node_name: NODE.into(),
            // busybox sleep as a pid namespace's init ignores SIGTERM: don't wait 30 s for it.
            termination_grace_period_seconds: Some(1),
            containers: vec![Container {
                name: "main".into(),
                image: "rudder/busybox:test".into(),
                image_pull_policy: "Never".into(),
                command: vec!["sleep".into(), "3600".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.clone().unwrap_or_default();
    status.phase == "Running" && status.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True")
}

/// A process's current resident set size (VmRSS), in bytes.
fn current_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) a process has used. /proc counts it in USER_HZ ticks,
/// which the kernel ABI fixes at 100 per second whatever the kernel's HZ.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time a single-threaded process has used, in nanoseconds (finer than /proc's
/// 10 ms ticks, which would round a short-lived helper's work down to nothing).
fn task_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    Some(Duration::from_nanos(stat.split_whitespace().next()?.parse().ok()?))
}

/// This process's child named `comm` (etcd, started by testkit).
fn child_named(comm: &str) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        parent(*pid) == Some(me) && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
    })
}

/// A process's parent.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// What runs beside the kubelet for its pods, summed: its helper processes (pause and
/// container monitors are re-execs of its binary) and the containers' processes (the
/// monitors' children, whose CPU time includes the setup they did before their exec).
#[derive(Default)]
struct PodProcesses {
    helpers: usize,
    helpers_rss: u64,
    helpers_cpu: Duration,
    containers: usize,
    containers_cpu: Duration,
}

fn pod_processes(binary: &Path, kubelet_pid: u32) -> PodProcesses {
    let mut found = PodProcesses::default();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    let binary = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let pids: Vec<u32> = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    let is_helper = |pid: u32| {
        pid != kubelet_pid && std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == Some(&binary)
    };
    let helpers: std::collections::HashSet<u32> = pids.iter().copied().filter(|p| is_helper(*p)).collect();
    for pid in pids {
        if helpers.contains(&pid) {
            found.helpers += 1;
            found.helpers_rss += current_rss(pid).unwrap_or(0);
            found.helpers_cpu += task_cpu_time(pid).unwrap_or_default();
        } else if parent(pid).is_some_and(|p| helpers.contains(&p)) {
            found.containers += 1;
            found.containers_cpu += task_cpu_time(pid).unwrap_or_default();
        }
    }
    found
}

/// CPU time the whole machine spent busy (every state but idle and iowait), from /proc/stat.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice: inside user and nice]
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| fields.get(*i)).sum();
    Some(Duration::from_millis(busy * 10))
}

/// The kubelet and everything it made; dropping it stops the kubelet and runs
/// `kubelet cleanup` with the same flags (pods, cgroups, bridge, nftables table).
/// Fields drop in order: the kubelet's guard first, then the apiserver and etcd, and
/// the temporary directory last.
struct Cluster {
    kubelet: KubeletGuard,
    client: Client,
    apiserver: testkit::ApiServer,
    _etcd: testkit::Etcd,
    dir: tempfile::TempDir,
}

struct KubeletGuard {
    binary: PathBuf,
    args: Vec<String>,
    daemon: Option<testkit::Daemon>,
}

impl KubeletGuard {
    fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(testkit::Daemon::pid)
    }

    fn log_tail(&self) -> String {
        self.daemon.as_ref().map(testkit::Daemon::log_tail).unwrap_or_default()
    }
}

impl Drop for KubeletGuard {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate(Duration::from_secs(10));
        }
        let mut args = vec!["cleanup".to_string()];
        args.extend(self.args.iter().cloned());
        match Command::new(&self.binary).args(&args).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("kubelet cleanup failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("kubelet cleanup could not run: {e}"),
        }
    }
}

async fn start_cluster(scratch_dir: Option<&Path>) -> anyhow::Result<Cluster> {
    let kubelet_binary = testkit::binary_path("kubelet").context("build it: cargo build --release -p kubelet")?;
    let mut scratch = tempfile::Builder::new();
    scratch.prefix("rudder-bench-pod-startup-");
    let dir = match scratch_dir {
        Some(parent) => scratch.tempdir_in(parent).with_context(|| format!("--scratch-dir {}", parent.display()))?,
        None => scratch.tempdir()?,
    };
    let root = dir.path().join("root");
    let images = dir.path().join("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-test-images.sh");
    let out = Command::new("bash").arg(&script).arg(&images).output().context("running build-test-images.sh")?;
    anyhow::ensure!(out.status.success(), "build-test-images.sh: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(&kubelet_binary)
        .args(["import-image", "--root-dir"])
        .arg(&root)
        .arg(images.join("busybox.oci.tar"))
        .output()
        .context("running kubelet import-image")?;
    anyhow::ensure!(out.status.success(), "kubelet import-image: {}", String::from_utf8_lossy(&out.stderr));

    let etcd = testkit::Etcd::start().await?;
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await?;
    let client = Client::new(&apiserver.grpc_endpoint(), NAMESPACE)?;
    let pid = std::process::id();
    let http = format!("127.0.0.1:{}", testkit::free_port());
    let args: Vec<String> = vec![
        "--master".into(),
        apiserver.grpc_endpoint(),
        "--hostname-override".into(),
        NODE.into(),
        "--node-ip".into(),
        "127.0.0.1".into(),
        "--root-dir".into(),
        root.display().to_string(),
        "--http-address".into(),
        http.clone(),
        "--pod-cidr".into(),
        format!("10.199.{}.0/24", pid % 250),
        "--bridge-name".into(),
        format!("rb{}", pid % 1_000_000),
        "--nft-table".into(),
        format!("rudder-bench-{pid}"),
        "--cgroup-parent".into(),
        format!("rudder-bench-{pid}"),
    ];
    let mut kubelet = KubeletGuard { binary: kubelet_binary.clone(), args: args.clone(), daemon: None };
    kubelet.daemon = Some(testkit::Daemon::spawn("kubelet", &kubelet_binary, &args, &dir.path().join("kubelet.log"))?);
    let cluster = Cluster { kubelet, client, apiserver, _etcd: etcd, dir };

    // Ready: the pod network is set up and the Node reports Ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = matches!(testkit::http_get(&http, "/readyz").await, Ok((200, _)));
        let node = Api::<Node>::all(&cluster.client).get_opt(NODE).await.ok().flatten();
        let node_ready = node
            .and_then(|n| n.status)
            .is_some_and(|s| s.conditions.iter().any(|c| c.r#type == "Ready" && c.status == "True"));
        if ready && node_ready {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the kubelet was not ready within 60 s; its log:\n{}",
            cluster.kubelet.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(cluster)
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::Uid::effective().is_root(),
        "the pod startup benchmark runs real containers: run it as root"
    );
    anyhow::ensure!(options.pods > 0 && options.concurrency > 0, "--pods and --concurrency must be at least 1");
    let cluster = start_cluster(options.scratch_dir.as_deref()).await?;
    // Ctrl-C ends the run through the same cleanup as a failure.
    let result = tokio::select! {
        result = measure(&cluster, &options) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = &result {
        eprintln!(
            "kubelet log ({}):\n{}",
            cluster.dir.path().join("kubelet.log").display(),
            cluster.kubelet.log_tail()
        );
        eprintln!("failed: {e:#}");
    }
    if let Some(to) = &options.kubelet_log {
        let from = cluster.dir.path().join("kubelet.log");
        if let Err(e) = std::fs::copy(&from, to) {
            eprintln!("copying the kubelet's log to {}: {e}", to.display());
        }
    }
    drop(cluster);
    result
}

async fn measure(cluster: &Cluster, options: &Options) -> anyhow::Result<()> {
    let kubelet_pid = cluster.kubelet.pid().ok_or_else(|| anyhow::anyhow!("the kubelet did not start"))?;
    let apiserver_pid = cluster.apiserver.pid().ok_or_else(|| anyhow::anyhow!("the apiserver did not start"))?;
    let pods: Api<Pod> = Api::namespaced(&cluster.client, NAMESPACE);
    let mode = match (options.one_by_one, options.interval_ms) {
        (true, _) => "one by one, each once the one before is Ready".to_string(),
        (false, Some(ms)) => format!("paced, one create every {ms} ms"),
        (false, None) => format!("a burst of {} concurrent creates", options.concurrency),
    };
    println!(
        "pod startup benchmark: {} pods (one busybox container each, image present) on one node, {mode}",
        options.pods
    );
    let idle_rss = current_rss(kubelet_pid).unwrap_or(0);
    let cpu_before = cpu_time(kubelet_pid).unwrap_or_default();
    let apiserver_before = cpu_time(apiserver_pid).unwrap_or_default();
    let etcd_pid = child_named("etcd");
    let etcd_before = etcd_pid.and_then(cpu_time).unwrap_or_default();
    let machine_before = machine_busy().unwrap_or_default();

    let list = pods.list(&ListParams { limit: 1, ..Default::default() }).await?;
    let mut watch = pods.watch(&ListParams::default(), &list.resource_version).await?;
    // How many pods are Running and Ready: the sequential mode's creates wait on it.
    let (ready_count, ready_seen) = tokio::sync::watch::channel(0usize);
    let batch_start = Instant::now();
    let create = |i: usize| {
        let pods = pods.clone();
        let mut ready_seen = ready_seen.clone();
        async move {
            if options.one_by_one {
                let _ = ready_seen.wait_for(|n| *n >= i).await;
            } else if let Some(ms) = options.interval_ms {
                tokio::time::sleep_until((batch_start + Duration::from_millis(ms) * i as u32).into()).await;
            }
            let at = Instant::now();
            pods.create(&pod(i)).await.map(|p| (p.metadata().name.clone(), at))
        }
    };
    let concurrency =
        if options.one_by_one || options.interval_ms.is_some() { options.pods } else { options.concurrency };
    let creates = futures::stream::iter(0..options.pods).map(create).buffer_unordered(concurrency).collect::<Vec<_>>();
    // Watch while creating: a pod may be Ready before the last create returns.
    let mut ready_at: HashMap<String, Instant> = HashMap::with_capacity(options.pods);
    let deadline = Duration::from_secs(options.timeout_secs);
    let watching = async {
        while ready_at.len() < options.pods {
            let left = deadline.saturating_sub(batch_start.elapsed());
            let event = match tokio::time::timeout(left, watch.next()).await {
                Err(_) => {
                    anyhow::bail!("{} of {} pods Running and Ready after {deadline:?}", ready_at.len(), options.pods)
                }
                Ok(None) => anyhow::bail!("the pod watch ended after {} pods were ready", ready_at.len()),
                Ok(Some(event)) => event?,
            };
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event
                && running_and_ready(&p)
            {
                ready_at.entry(p.metadata().name.clone()).or_insert_with(Instant::now);
                ready_count.send_replace(ready_at.len());
            }
        }
        anyhow::Ok(())
    };
    let (created, watched) = tokio::join!(creates, watching);
    watched?;
    let batch = batch_start.elapsed();
    let kubelet_cpu = cpu_time(kubelet_pid).unwrap_or_default().saturating_sub(cpu_before);
    let apiserver_cpu = cpu_time(apiserver_pid).unwrap_or_default().saturating_sub(apiserver_before);
    let etcd_cpu = etcd_pid.and_then(cpu_time).unwrap_or_default().saturating_sub(etcd_before);
    let machine_cpu = machine_busy().unwrap_or_default().saturating_sub(machine_before);
    let processes = pod_processes(&cluster.kubelet.binary, kubelet_pid);
    let mut created_at = HashMap::with_capacity(options.pods);
    for result in created {
        let (name, at) = result.context("creating a pod")?;
        created_at.insert(name, at);
    }
    let latencies: Vec<Duration> =
        ready_at.iter().filter_map(|(name, ready)| Some(ready.duration_since(*created_at.get(name)?))).collect();
    anyhow::ensure!(
        latencies.len() == options.pods,
        "only {} of the ready pods were created by this run",
        latencies.len()
    );
    let latencies = Latencies::new(latencies);

    // RSS while every pod runs (after the burst: the status posts have settled).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let running_rss = current_rss(kubelet_pid).unwrap_or(0);
    let peak = peak_rss(kubelet_pid).ok_or_else(|| anyhow::anyhow!("the kubelet exited"))?;

    let per_pod = |d: Duration| d.as_secs_f64() * 1000.0 / options.pods as f64;
    println!("  create -> Running and Ready (watch): {}", latencies.summary());
    println!(
        "  batch: {} pods Running and Ready in {:.2} s: {:.1} pods/s",
        options.pods,
        batch.as_secs_f64(),
        rate(options.pods, batch)
    );
    println!(
        "  CPU during the batch, per pod: kubelet {:.1} ms, its helpers {:.1} ms, container setup {:.1} ms, apiserver {:.1} ms, etcd {:.1} ms; the whole machine {:.2} of {:.2} s ({} CPUs, other work included)",
        per_pod(kubelet_cpu),
        per_pod(processes.helpers_cpu),
        per_pod(processes.containers_cpu),
        per_pod(apiserver_cpu),
        per_pod(etcd_cpu),
        machine_cpu.as_secs_f64(),
        batch.as_secs_f64() * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    println!(
        "  kubelet RSS: {:.1} MiB idle, {:.1} MiB with {} pods running, peak (VmHWM) {:.1} MiB",
        mib(idle_rss),
        mib(running_rss),
        options.pods,
        mib(peak)
    );
    println!(
        "  helper processes (pause + container monitors): {}, {:.1} MiB RSS in all; container processes: {}",
        processes.helpers,
        mib(processes.helpers_rss),
        processes.containers
    );

    // Delete them all and wait until the kubelet has removed every one.
    let deleting = Instant::now();
    for name in created_at.keys() {
        pods.delete(name, DeleteOptions::default()).await.with_context(|| format!("deleting pod {name}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = pods.list(&ListParams::default()).await?.items.len();
        if left == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{left} pods were not removed within 120 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("  all pods deleted and removed by the kubelet in {:.2} s", deleting.elapsed().as_secs_f64());
    Ok(())
}
