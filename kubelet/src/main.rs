//! The kubelet binary: `kubelet [flags]` runs the node agent; `kubelet import-image
//! --root-dir D FILE` loads an image archive into the node's store (as `docker load`);
//! `kubelet cleanup [flags]` stops every pod it runs and removes what it made on the
//! host. Hidden `__pause`, `__container` and `__exec` are its own helper processes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::Parser as _;
use client::runtime::Informer;
use client::{Api, Client, ListParams};
use kubelet::config::{Flags, Settings};
use kubelet::images::{ImageStore, RegistryConfig, RegistryHost};
use kubelet::network::{self, NetworkConfig, PodNetwork};
use kubelet::node::{Health, NodeAgent};
use kubelet::pods::{manager, worker};
use kubelet::runtime::Runtime as _;
use kubelet::runtime::cgroups::Cgroups;
use kubelet::runtime::native::NativeRuntime;
use kubelet::volumes::Volumes;
use proto::core::v1::Service;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Helpers first, before any thread exists (see runtime::helper).
    kubelet::runtime::helper::dispatch(&args);
    // One malloc arena: the kubelet's few threads rarely allocate at once, and an arena
    // per thread kept ~1.5 MiB more resident with 100 pods (measured by bench pod-startup).
    // SAFETY: mallopt only sets a malloc parameter; no thread exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match args.first().map(String::as_str) {
        Some("import-image") => runtime.block_on(import_image(&args[1..])),
        Some("cleanup") => {
            ops::logging::init();
            let flags = Flags::parse_from(std::iter::once("kubelet".to_string()).chain(args[1..].iter().cloned()));
            runtime.block_on(cleanup(Settings::load(flags)?))
        }
        _ => {
            ops::logging::init();
            runtime.block_on(run(Settings::load(Flags::parse())?))
        }
    }
}

/// Hands memory freed after a burst of pod starts back to the system. The heap keeps
/// what a burst's transient buffers (netlink, JSON, gRPC) fragmented; measured by
/// bench pod-startup.
async fn return_freed_memory() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        every.tick().await;
        // SAFETY: malloc_trim only releases free heap pages; any thread may call it.
        unsafe { libc::malloc_trim(0) };
    }
}

#[derive(clap::Parser)]
#[command(name = "kubelet import-image", about = "Loads a `docker save` or OCI archive into the node's image store.")]
struct ImportFlags {
    /// The kubelet's --root-dir.
    #[arg(long, default_value = "/var/lib/rudder-kubelet")]
    root_dir: PathBuf,
    /// The kubelet's --image-root [default: <root-dir>/images].
    #[arg(long)]
    image_root: Option<PathBuf>,
    /// Archives to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

async fn import_image(args: &[String]) -> anyhow::Result<()> {
    let flags =
        ImportFlags::parse_from(std::iter::once("kubelet import-image".to_string()).chain(args.iter().cloned()));
    let root = flags.image_root.unwrap_or_else(|| flags.root_dir.join("images"));
    let store = ImageStore::open(&root, RegistryConfig::default())?;
    for file in &flags.files {
        let refs = store.import_archive(file).await.with_context(|| format!("importing {}", file.display()))?;
        for r in refs {
            println!("Loaded image: {r}");
        }
    }
    Ok(())
}

fn registry_config(settings: &Settings) -> RegistryConfig {
    RegistryConfig {
        registries: settings
            .registries
            .iter()
            .map(|r| RegistryHost {
                host: r.host.clone(),
                mirror: r.mirror.clone(),
                insecure: r.insecure,
                ca_file: r.ca_file.clone(),
            })
            .collect(),
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = Client::for_daemon(settings.master.as_deref(), settings.kubeconfig.as_deref())?;
    let cgroups = Cgroups::detect()?;
    tracing::info!(node = %settings.node_name, cgroups = ?cgroups.version(), root = %settings.root_dir.display(), "starting");
    std::fs::create_dir_all(&settings.root_dir)
        .with_context(|| format!("creating --root-dir {}", settings.root_dir.display()))?;
    let images = ImageStore::open(&settings.image_root, registry_config(&settings))?;
    let health = Health::default();
    let agent = Arc::new(NodeAgent::new(&client, &settings, health.clone()));

    let listener = tokio::net::TcpListener::bind(settings.http_address)
        .await
        .with_context(|| format!("listening on {} (--http-address)", settings.http_address))?;
    let probe = Arc::new(Probe {
        client: client.clone(),
        health: health.clone(),
        runtime_dir: settings.root_dir.join("runtime"),
    });
    tokio::spawn(ops::serve(listener, probe, std::future::pending()));
    tokio::spawn(return_freed_memory());
    let streaming_listener = tokio::net::TcpListener::bind(settings.streaming_address)
        .await
        .with_context(|| format!("listening on {} (--address, --port)", settings.streaming_address))?;

    let work = async {
        loop {
            match agent.register().await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "registering the node; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        let lease = agent.clone();
        tokio::spawn(async move { lease.run_lease().await });
        let status = agent.clone();
        tokio::spawn(async move { status.run_status().await });

        let pod_cidr = agent.wait_pod_cidr().await;
        let config = NetworkConfig {
            bridge: settings.bridge_name.clone(),
            pod_cidr,
            cluster_cidr: settings.cluster_cidr.unwrap_or(pod_cidr),
            nft_table: settings.nft_table.clone(),
        };
        let network = Arc::new(PodNetwork::new(config, &settings.root_dir.join("network"))?);
        network.setup().await.context("setting up the pod network")?;
        health.network_ready.store(true, Ordering::SeqCst);
        tracing::info!(bridge = %settings.bridge_name, %pod_cidr, "the pod network is ready");
        let overlay = kubelet::network::overlay::OverlayConfig {
            backend: settings.network_backend,
            node_name: settings.node_name.clone(),
            node_ip: agent.node_ip(),
            pod_cidr,
            vxlan: Default::default(),
        };
        tokio::spawn(kubelet::network::overlay::OverlayController::new(&client, overlay).run());

        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let runtime: Arc<dyn kubelet::runtime::Runtime> = Arc::new(
            NativeRuntime::new(&settings.root_dir.join("runtime"), cgroups, &settings.cgroup_parent, events)?
                .with_log_rotation(settings.log_rotation),
        );
        let streaming = kubelet::streaming::serve(
            streaming_listener,
            runtime.clone(),
            settings.log_dir.clone(),
            std::future::pending(),
        );
        tokio::spawn(async move {
            if let Err(e) = streaming.await {
                tracing::error!(error = %e, "the streaming endpoint (logs, exec) stopped");
            }
        });
        tracing::info!(address = %settings.streaming_address, "serving logs and exec");
        let services = Informer::new(Api::<Service>::all(&client), ListParams::default());
        tokio::spawn(services.clone().run());
        let ctx = Arc::new(worker::Context {
            client: client.clone(),
            services,
            runtime,
            network,
            volumes: Volumes::new(&settings.root_dir.join("pods"), &client),
            images,
            settings: settings.clone(),
            node_ip: agent.node_ip(),
        });
        manager::run(ctx, events_rx).await;
        anyhow::Ok(())
    };
    tokio::select! {
        result = work => result?,
        _ = ops::signals::shutdown() => {}
    }
    // Pods keep running: a kubelet started again adopts them.
    tracing::info!("stopped; pods keep running");
    Ok(())
}

/// Stops every pod this kubelet's root dir knows, and removes its bridge, nftables
/// table, routes to other nodes' pods, VXLAN device, cgroups, mounts and state.
async fn cleanup(settings: Settings) -> anyhow::Result<()> {
    let cgroups = Cgroups::detect()?;
    let (events, _events_rx) = tokio::sync::mpsc::unbounded_channel();
    let runtime =
        NativeRuntime::new(&settings.root_dir.join("runtime"), cgroups.clone(), &settings.cgroup_parent, events)?;
    // No apiserver is needed: everything is local.
    let client = Client::new("http://127.0.0.1:1", "default")?;
    let volumes = Volumes::new(&settings.root_dir.join("pods"), &client);
    let mut failures = Vec::new();
    for uid in runtime.pods().await {
        if let Err(e) = runtime.remove_sandbox(&uid).await {
            failures.push(format!("pod {uid}: {e}"));
        }
    }
    for uid in volumes.pods() {
        if let Err(e) = volumes.teardown(&uid) {
            failures.push(format!("volumes of pod {uid}: {e}"));
        }
    }
    cgroups.kill_all(&settings.cgroup_parent);
    if let Err(e) = cgroups.remove(&settings.cgroup_parent) {
        failures.push(e.to_string());
    }
    if let Err(e) = network::remove_host_state(&settings.bridge_name, &settings.nft_table).await {
        failures.push(e.to_string());
    }
    if let Err(e) = network::overlay::remove_all(&Default::default()).await {
        failures.push(e.to_string());
    }
    let _ = std::fs::remove_dir_all(settings.root_dir.join("network"));
    if failures.is_empty() {
        println!("cleaned up {}", settings.root_dir.display());
        Ok(())
    } else {
        anyhow::bail!("cleanup left things behind:\n{}", failures.join("\n"))
    }
}

struct Probe {
    client: Client,
    health: Health,
    runtime_dir: PathBuf,
}

#[async_trait::async_trait]
impl ops::Probe for Probe {
    async fn ready(&self) -> Result<(), String> {
        if !self.health.network_ready.load(Ordering::SeqCst) {
            return Err("the pod network is not set up yet".into());
        }
        self.client.version().await.map(|_| ()).map_err(|e| format!("the apiserver: {e}"))
    }

    fn metrics(&self) -> String {
        let pods = std::fs::read_dir(&self.runtime_dir).map(|d| d.count()).unwrap_or(0);
        let ready = u8::from(self.health.network_ready.load(Ordering::SeqCst));
        format!(
            "# HELP kubelet_running_pods Pods with state in the runtime.\n# TYPE kubelet_running_pods gauge\nkubelet_running_pods {pods}\n# HELP kubelet_network_ready Whether the pod network is set up.\n# TYPE kubelet_network_ready gauge\nkubelet_network_ready {ready}\n"
        )
    }
}
