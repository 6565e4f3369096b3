//! The controller-manager benchmark: time and pods/s to converge N Deployments of R
//! replicas (every ReplicaSet and pod created, every Deployment's status caught up),
//! and the controller-manager's peak RSS. No kubelet runs, so pods stay Pending:
//! this measures the control loops and the API, not containers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use client::{Api, Client, ListParams, WatchEvent};
use futures::StreamExt as _;
use proto::apps::v1::{Deployment, DeploymentSpec};
use proto::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use proto::meta::v1::{LabelSelector, ObjectMeta};

use crate::stats::{mib, peak_rss, rate};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 1000)]
    deployments: usize,
    #[arg(long, default_value_t = 10)]
    replicas: i32,
    /// Concurrent clients creating the Deployments.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels: std::collections::BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    Deployment {
        metadata: Some(ObjectMeta { name: name.into(), namespace: "default".into(), ..Default::default() }),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector { match_labels: labels.clone(), ..Default::default() }),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels, ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "web".into(), image: "web:v1".into(), ..Default::default() }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let etcd = testkit::Etcd::start().await?;
    let apiserver = testkit::ApiServer::start(&etcd.endpoints()).await?;
    let client = Client::new(&apiserver.grpc_endpoint(), "default")?;
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", testkit::free_port());
    let args: Vec<String> =
        ["--master", &apiserver.grpc_endpoint(), "--http-address", &http].iter().map(|s| s.to_string()).collect();
    let manager = testkit::Daemon::spawn(
        "controller-manager",
        &testkit::binary_path("controller-manager")?,
        &args,
        &dir.path().join("controller-manager.log"),
    )?;
    let pid = manager.pid().ok_or_else(|| anyhow::anyhow!("the controller-manager did not start"))?;
    let total_pods = options.deployments * options.replicas as usize;
    println!(
        "controller-manager benchmark: {} Deployments x {} replicas = {total_pods} pods",
        options.deployments, options.replicas
    );

    // Count pods as they appear, from before the first create.
    let pods: Api<Pod> = Api::all(&client);
    let start_rv = pods.list(&ListParams { limit: 1, ..Default::default() }).await?.resource_version;
    let created = Arc::new(AtomicUsize::new(0));
    let mut watch = pods.watch(&ListParams::default(), &start_rv).await?;
    let counter = created.clone();
    let all_pods = tokio::spawn(async move {
        while let Some(event) = watch.next().await {
            if let WatchEvent::Added(_) = event?
                && counter.fetch_add(1, Ordering::Relaxed) + 1 == total_pods
            {
                return Ok(Instant::now());
            }
        }
        anyhow::bail!("the pod watch ended early")
    });

    let started = Instant::now();
    let deployments: Api<Deployment> = Api::namespaced(&client, "default");
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = Vec::new();
    for _ in 0..options.concurrency {
        let (deployments, next) = (deployments.clone(), next.clone());
        let (count, replicas) = (options.deployments, options.replicas);
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                deployments.create(&deployment(&format!("bench-{i}"), replicas)).await?;
            }
        }));
    }
    for creator in creators {
        creator.await??;
    }
    let created_all = started.elapsed();
    println!("{:<44} {:>8.2} s", "all Deployments created", created_all.as_secs_f64());

    let pods_done = tokio::time::timeout(Duration::from_secs(1800), all_pods).await???;
    let pods_elapsed = pods_done - started;
    println!(
        "{:<44} {:>8.2} s  ({:.0} pods/s)",
        "all pods created",
        pods_elapsed.as_secs_f64(),
        rate(total_pods, pods_elapsed)
    );

    // Converged: every Deployment reports all its replicas, at its generation.
    loop {
        let list = deployments.list(&ListParams::default()).await?;
        let behind = list
            .items
            .iter()
            .filter(|d| {
                let status = d.status.clone().unwrap_or_default();
                status.replicas != options.replicas
                    || status.updated_replicas != options.replicas
                    || status.observed_generation < d.metadata.as_ref().map_or(0, |m| m.generation)
            })
            .count();
        if behind == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("{behind} Deployments had not caught up after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converged = started.elapsed();
    println!(
        "{:<44} {:>8.2} s  ({:.0} pods/s)",
        "every Deployment's status caught up",
        converged.as_secs_f64(),
        rate(total_pods, converged)
    );
    match peak_rss(pid) {
        Some(bytes) => println!("{:<44} {:>8.1} MiB", "controller-manager peak RSS", mib(bytes)),
        None => println!("controller-manager peak RSS: the process is gone"),
    }
    Ok(())
}
