//! kube-proxy: how long its nftables syncs take for 1,000 and 10,000 Services x 5
//! endpoints (the whole table, then one endpoint change), measured through the real
//! proxier inside a scratch network namespace; and requests/s through a ClusterIP
//! against straight to the pod, with the load client, the node and the pod each in a
//! namespace of their own. Nothing leaves those namespaces.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube_proxy::model::{Protocol, ServicePort, Snapshot};
use kube_proxy::nftables::{NftablesProxier, Options as NftOptions, Ruleset};
use kube_proxy::sync::Proxier as _;

use crate::stats::{Latencies, ms};

#[derive(clap::Args)]
pub struct Options {
    /// Endpoint changes timed per size.
    #[arg(long, default_value_t = 10)]
    changes: usize,
    /// Seconds of load per target in the throughput comparison.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections of the load client.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// A named network namespace, removed on drop.
struct Netns(String);

impl Netns {
    fn create(role: &str) -> anyhow::Result<Netns> {
        let name = format!("kpxbench{}-{role}", std::process::id());
        ip(&["netns", "add", &name])?;
        let netns = Netns(name);
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `f` on a new thread inside the namespace (its sockets and children too).
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().context("running ip (install iproute2)")?;
    if !output.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// `services` Services of `endpoints` endpoints each, as a node of a large cluster sees
/// them: endpoints spread over 10.244.0.0/16, of which only those in 10.244.0.0/24 are
/// this node's pods.
fn snapshot(services: usize, endpoints: usize) -> Snapshot {
    let this_node = kube_proxy::model::Cidr { address: Ipv4Addr::new(10, 244, 0, 0), prefix: 24 };
    let service_ports = (0..services)
        .map(|i| {
            let i = u32::try_from(i).unwrap_or(0);
            let endpoints: Vec<SocketAddrV4> = (0..endpoints)
                .map(|e| {
                    let ip = u32::from(Ipv4Addr::new(10, 244, 0, 0)) + i * 8 + u32::try_from(e).unwrap_or(0) + 1;
                    SocketAddrV4::new(Ipv4Addr::from(ip), 8080)
                })
                .collect();
            ServicePort {
                namespace: "bench".into(),
                name: format!("svc-{i}"),
                port_name: "http".into(),
                protocol: Protocol::Tcp,
                cluster_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i + 1),
                port: 80,
                node_port: None,
                affinity_seconds: None,
                remote_ips: endpoints.iter().map(|e| *e.ip()).filter(|ip| !this_node.contains(*ip)).collect(),
                endpoints,
            }
        })
        .collect();
    Snapshot { service_ports, node_ips: vec![Ipv4Addr::new(192, 168, 50, 1)] }
}

/// CPU time (user + system) so far of this thread, and of the waited-for children
/// (the `nft` runs, whose system time includes the kernel applying the transaction).
#[derive(Clone, Copy)]
struct Cpu {
    ours: Duration,
    nft: Duration,
}

impl Cpu {
    fn now() -> anyhow::Result<Cpu> {
        use nix::sys::resource::{UsageWho, getrusage};
        let total = |who| -> anyhow::Result<Duration> {
            let usage = getrusage(who)?;
            let micros = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            Ok(micros(usage.user_time()) + micros(usage.system_time()))
        };
        Ok(Cpu { ours: total(UsageWho::RUSAGE_THREAD)?, nft: total(UsageWho::RUSAGE_CHILDREN)? })
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu { ours: self.ours.saturating_sub(start.ours), nft: self.nft.saturating_sub(start.nft) }
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CPU kube-proxy {:.1} ms + nft {:.1} ms", ms(self.ours), ms(self.nft))
    }
}

struct SyncTimes {
    full: Duration,
    full_cpu: Cpu,
    changes: Latencies,
    /// The median CPU of the changes (each side's own median).
    change_cpu: Cpu,
    /// The median time of building the changed ruleset and its update text.
    plan: Duration,
    rules: usize,
}

/// Full sync and per-change figures for one size, in the namespace.
fn sync_times(netns: &Netns, services: usize, changes: usize) -> anyhow::Result<SyncTimes> {
    netns
        .enter(move || -> anyhow::Result<SyncTimes> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut proxier = NftablesProxier::new(NftOptions::default());
                let mut state = snapshot(services, 5);
                let (start, cpu) = (Instant::now(), Cpu::now()?);
                let report = proxier.sync(&state).await?;
                let (full, full_cpu) = (start.elapsed(), Cpu::now()?.since(cpu));
                let mut samples = Vec::new();
                let (mut ours, mut nft) = (Vec::new(), Vec::new());
                for change in 0..changes {
                    // One endpoint of one Service moves to another address.
                    let port = &mut state.service_ports[change * 7 % services];
                    port.endpoints[0] = SocketAddrV4::new(Ipv4Addr::new(10, 250, 0, (change % 250) as u8 + 1), 8080);
                    let (start, cpu) = (Instant::now(), Cpu::now()?);
                    let report = proxier.sync(&state).await?;
                    samples.push(start.elapsed());
                    let cpu = Cpu::now()?.since(cpu);
                    ours.push(cpu.ours);
                    nft.push(cpu.nft);
                    if report.full {
                        bail!("an endpoint change rewrote the whole table");
                    }
                }
                NftablesProxier::cleanup(kube_proxy::nftables::DEFAULT_TABLE).await?;
                // The in-process part alone: rules for the changed snapshot, and the
                // difference to send.
                let options = NftOptions::default();
                let mut applied = Ruleset::build(&state, &options, None);
                let mut plan = Vec::new();
                for change in 0..changes {
                    let port = &mut state.service_ports[change * 11 % services];
                    port.endpoints[1] = SocketAddrV4::new(Ipv4Addr::new(10, 251, 0, (change % 250) as u8 + 1), 8080);
                    let start = Instant::now();
                    let next = Ruleset::build(&state, &options, Some(&applied));
                    let update = next.update_transaction(&applied);
                    plan.push(start.elapsed());
                    if update.is_empty() {
                        bail!("an endpoint change produced no update");
                    }
                    applied = next;
                }
                let change_cpu =
                    Cpu { ours: Latencies::new(ours).percentile(50.0), nft: Latencies::new(nft).percentile(50.0) };
                Ok(SyncTimes {
                    full,
                    full_cpu,
                    changes: Latencies::new(samples),
                    change_cpu,
                    plan: Latencies::new(plan).percentile(50.0),
                    rules: report.rules,
                })
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the sync thread panicked"))?
}

/// Requests/s of `concurrency` loops of connect, read the reply, reset, for `seconds`.
fn load(client: &Netns, to: SocketAddrV4, seconds: u64, concurrency: usize) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (done, stop) = (done.clone(), stop.clone());
            client.enter(move || -> anyhow::Result<()> {
                let mut buffer = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    let mut stream = std::net::TcpStream::connect(to).with_context(|| format!("connecting to {to}"))?;
                    stream.write_all(b"?")?;
                    let _ = stream.read(&mut buffer)?;
                    // Closed with a reset: ~60,000 connections a run would otherwise leave
                    // as many TIME_WAIT sockets in the pod, which slow the next runs to a
                    // crawl (reused 4-tuples) and so penalise whichever target runs later.
                    nix::sys::socket::setsockopt(
                        &stream,
                        nix::sys::socket::sockopt::Linger,
                        &nix::libc::linger { l_onoff: 1, l_linger: 0 },
                    )?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a load worker panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}

fn throughput(options: &Options) -> anyhow::Result<(f64, f64)> {
    let node = Netns::create("node")?;
    let pod = Netns::create("pod")?;
    let client = Netns::create("client")?;
    let exec = |netns: &Netns, args: &[&str]| -> anyhow::Result<()> {
        let mut all = vec!["netns", "exec", netns.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    };
    exec(&node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    node.ip(&["link", "add", "br0", "address", "02:00:0a:f4:00:01", "type", "bridge"])?;
    node.ip(&["addr", "add", "10.244.0.1/24", "dev", "br0"])?;
    node.ip(&["link", "set", "br0", "up"])?;
    for (netns, port, address) in [(&pod, "veth10", "10.244.0.10/24"), (&client, "veth20", "10.244.0.20/24")] {
        node.ip(&["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &netns.0])?;
        node.ip(&["link", "set", port, "master", "br0", "up"])?;
        netns.ip(&["addr", "add", address, "dev", "eth0"])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        netns.ip(&["route", "add", "default", "via", "10.244.0.1"])?;
    }
    let pod_ip = Ipv4Addr::new(10, 244, 0, 10);
    // The server: answer each connection's first bytes, then close.
    let listener =
        pod.enter(|| std::net::TcpListener::bind("0.0.0.0:8080")).join().map_err(|_| anyhow::anyhow!("bind"))??;
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let _ = listener.set_nonblocking(true);
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut buffer = [0u8; 64];
                    if stream.read(&mut buffer).await.is_ok() {
                        let _ = stream.write_all(b"pod\n").await;
                    }
                });
            }
        });
    });
    let cluster_ip = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 1), 80);
    let mut state = snapshot(1, 1);
    state.service_ports[0].endpoints = vec![SocketAddrV4::new(pod_ip, 8080)];
    node.enter(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async { NftablesProxier::new(NftOptions::default()).sync(&state).await.map(|_| ()) })?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the sync thread panicked"))??;
    // Runs go direct, ClusterIP, ClusterIP, direct, so that whatever the earlier runs
    // leave behind (TIME_WAIT sockets in the pod, load on the machine) weighs on both.
    // Each starts from a clean conntrack table: a direct run's entries have the reply
    // tuples that DNATed connections from the same client ports would get.
    let direct_to = SocketAddrV4::new(pod_ip, 8080);
    let (mut direct, mut through) = (0.0, 0.0);
    for to in [direct_to, cluster_ip, cluster_ip, direct_to] {
        exec(&node, &["conntrack", "-F"])?;
        let rate = load(&client, to, options.seconds, options.concurrency)?;
        println!(
            "  {:<17} {rate:>7.0} requests/s",
            if to == direct_to { "straight to pod" } else { "through ClusterIP" }
        );
        if to == direct_to {
            direct += rate / 2.0;
        } else {
            through += rate / 2.0;
        }
    }
    Ok((direct, through))
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let scratch = Netns::create("sync")?;
    println!("kube-proxy nftables sync (Services x 5 endpoints, applied with nft in a scratch namespace):");
    for services in [1_000, 10_000] {
        let times = sync_times(&scratch, services, options.changes)?;
        println!(
            "  {services:>6} Services: full sync {:.1} ms ({} rules and elements; {})\n{:>17} one endpoint change: {} (median {}; ruleset and update text alone {:.2} ms)",
            ms(times.full),
            times.rules,
            times.full_cpu,
            "",
            times.changes.summary(),
            times.change_cpu,
            ms(times.plan)
        );
    }
    drop(scratch);
    let options = Arc::new(options);
    let (direct, through) = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || throughput(&options)).await??
    };
    println!(
        "requests/s, one connection per request, {} concurrent, two runs of {} s each (direct, ClusterIP, ClusterIP, direct): straight to the pod {direct:.0}, through the ClusterIP {through:.0} ({:.0}%)",
        options.concurrency,
        options.seconds,
        100.0 * through / direct
    );
    Ok(())
}
