//! The scheduler benchmark, in the manner of Kubernetes' scheduler_perf
//! SchedulingBasic: nodes and pending pods are created first, then the real
//! scheduler binary starts; we measure pods/s from its start until every pod is
//! bound, the per-pod latency from its first scheduling attempt to its binding
//! (the scheduler's own histogram), and the scheduler's peak RSS.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use client::{Api, Client, ListParams, WatchEvent};
use futures::StreamExt as _;
use proto::Resource as _;
use proto::core::v1::{Container, Node, NodeCondition, NodeStatus, Pod, PodSpec, ResourceRequirements};
use proto::meta::v1::{ObjectMeta, Quantity};

use crate::stats::{mib, peak_rss, rate};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent creates while setting up.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn q(s: &str) -> Quantity {
    Quantity { string: s.to_string() }
}

fn node(i: usize) -> Node {
    Node {
        metadata: Some(ObjectMeta {
            name: format!("node-{i}"),
            labels: [("kubernetes.io/hostname".to_string(), format!("node-{i}"))].into_iter().collect(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: [
                ("cpu".to_string(), q("4")),
                ("memory".to_string(), q("32Gi")),
                ("pods".to_string(), q("110")),
            ]
            .into_iter()
            .collect(),
            conditions: vec![NodeCondition { r#type: "Ready".into(), status: "True".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: Some(ObjectMeta { name: format!("pod-{i}"), namespace: "default".into(), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "pause".into(),
                image: "registry.k8s.io/pause:3.10".into(),
                resources: Some(ResourceRequirements {
                    requests: [("cpu".to_string(), q("100m")), ("memory".to_string(), q("500Mi"))]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let etcd = testkit::Etcd::start().await?;
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await?;
    let client = Client::new(&apiserver.grpc_endpoint(), "default")?;
    println!("scheduler benchmark: {} nodes, {} pending pods", options.nodes, options.pods);
    let nodes: Api<Node> = Api::all(&client);
    let pods: Api<Pod> = Api::namespaced(&client, "default");
    let setup = Instant::now();
    let created = futures::stream::iter(0..options.nodes)
        .map(|i| {
            let nodes = nodes.clone();
            async move { nodes.create(&node(i)).await }
        })
        .buffer_unordered(options.concurrency)
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    anyhow::ensure!(created == 0, "{created} node creates failed");
    let failed = futures::stream::iter(0..options.pods)
        .map(|i| {
            let pods = pods.clone();
            async move { pods.create(&pod(i)).await }
        })
        .buffer_unordered(options.concurrency)
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    anyhow::ensure!(failed == 0, "{failed} pod creates failed");
    println!("  setup: {:.1} s", setup.elapsed().as_secs_f64());

    let list = pods.list(&ListParams { limit: 1, ..Default::default() }).await?;
    let mut watch = pods.watch(&ListParams::default(), &list.resource_version).await?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", testkit::free_port());
    let args: Vec<String> = ["--master", &apiserver.grpc_endpoint(), "--http-address", &http, "--leader-elect=false"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let started = Instant::now();
    let mut scheduler =
        testkit::Daemon::spawn("scheduler", &testkit::binary_path("scheduler")?, &args, &dir.path().join("s.log"))?;
    let pid = scheduler.pid().unwrap_or(0);
    let mut bound: HashSet<String> = HashSet::with_capacity(options.pods);
    let mut first: Option<Duration> = None;
    let deadline = Duration::from_secs(600);
    while bound.len() < options.pods {
        let event = tokio::time::timeout(Duration::from_secs(30), watch.next()).await;
        let Ok(Some(event)) = event else {
            anyhow::bail!("the watch ended after {} bound; scheduler log:\n{}", bound.len(), scheduler.log_tail());
        };
        if let WatchEvent::Modified(p) = event?
            && p.spec.as_ref().is_some_and(|s| !s.node_name.is_empty())
        {
            first.get_or_insert_with(|| started.elapsed());
            bound.insert(p.metadata().name.clone());
        }
        anyhow::ensure!(started.elapsed() < deadline, "not all pods bound within {deadline:?}");
    }
    let elapsed = started.elapsed();
    let rss = peak_rss(pid).unwrap_or(0);
    let (_, metrics) = testkit::http_get(&http, "/metrics").await?;
    let name = "scheduler_pod_scheduling_duration_seconds";
    let p = |x| crate::metrics::histogram_percentile(&metrics, name, x).map_or(f64::NAN, |s| s * 1000.0);
    println!(
        "  {} pods bound in {:.2} s from the scheduler's start: {:.0} pods/s (first binding after {:.2} s; {:.0} pods/s after it)",
        options.pods,
        elapsed.as_secs_f64(),
        rate(options.pods, elapsed),
        first.unwrap_or_default().as_secs_f64(),
        rate(options.pods, elapsed - first.unwrap_or_default()),
    );
    println!("  per-pod latency, first attempt to binding: p50 <= {:.2} ms  p99 <= {:.2} ms", p(50.0), p(99.0));
    println!("  scheduler peak RSS (VmHWM): {:.1} MiB", mib(rss));
    scheduler.terminate(Duration::from_secs(5));
    Ok(())
}
