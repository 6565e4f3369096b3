//! Putting the apiserver together: connect to etcd, load the watch caches and the
//! allocation hints, serve gRPC and HTTP until shutdown.

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use proto::apiserver::v1::discovery_server::DiscoveryServer;
use proto::apiserver::v1::resources_server::ResourcesServer;
use proto::streaming::v1::streaming_server::StreamingServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::allocation::RangeAllocator;
use crate::config::Settings;
use crate::grpc::discovery::DiscoveryService;
use crate::grpc::resources::ResourcesService;
use crate::grpc::streaming::StreamingService;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::registry::Context;
use crate::registry::kinds::{Allocators, Registries, namespace_cache};
use crate::storage::keys::Keys;
use crate::storage::{Etcd, StorageError};

/// Largest request or response message: big lists travel in one message.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

pub async fn run(settings: Settings, shutdown_signal: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let etcd = connect(&settings, metrics.clone()).await?;
    let keys = Keys::new(&settings.etcd_prefix);

    let allocators = Allocators {
        service_ips: Arc::new(RangeAllocator::for_service_ips(settings.service_cluster_ip_range, keys.clone())),
        node_ports: Arc::new(RangeAllocator::for_node_ports(settings.service_node_port_range, keys.clone())),
    };
    load_allocations(&etcd, &allocators).await?;

    let namespaces = namespace_cache(&keys, settings.watch_cache_size);
    let ctx = Arc::new(Context { etcd: etcd.clone(), keys, namespaces });
    let registries = Arc::new(Registries::new(ctx, allocators, settings.watch_cache_size));
    let caches = registries.caches();
    for cache in &caches {
        tokio::spawn(cache.clone().run(etcd.clone()));
    }

    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal.await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });

    let http_listener = TcpListener::bind(settings.http_address)
        .await
        .with_context(|| format!("listening on {} (--http-address)", settings.http_address))?;
    let bootstrapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(crate::bootstrap::system_namespaces(registries.namespaces.clone(), bootstrapped.clone()));
    let health = Arc::new(Health { etcd, caches, metrics: metrics.clone(), bootstrapped });
    let mut http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(ops::serve(http_listener, health, async move {
        let _ = http_shutdown.wait_for(|down| *down).await;
    }));

    let grpc_listener = TcpListener::bind(settings.listen_address)
        .await
        .with_context(|| format!("listening on {} (--listen-address)", settings.listen_address))?;
    tracing::info!(grpc = %settings.listen_address, http = %settings.http_address, "serving");
    let streaming = StreamingService::new(registries.clone());
    let resources = ResourcesService::new(registries, metrics, shutdown.clone());
    let mut grpc_shutdown = shutdown.clone();
    // Without TCP_NODELAY a small response waits for the client's delayed ACK: ~40 ms
    // per call whenever a connection is not busy enough to keep its pipe full.
    // Each connection's small writes are coalesced into one per scheduler turn (see
    // grpc::coalesce).
    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener)
        .with_nodelay(Some(true))
        .map(|stream| stream.map(crate::grpc::coalesce::Coalesced::new));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(
            ResourcesServer::new(resources)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(DiscoveryServer::new(DiscoveryService))
        .add_service(StreamingServer::new(streaming))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = grpc_shutdown.wait_for(|down| *down).await;
        })
        .await
        .context("serving gRPC")?;
    let _ = http_task.await;
    Ok(())
}

/// Connects to etcd, waiting for it a while: under systemd the apiserver may start
/// before etcd does.
async fn connect(settings: &Settings, metrics: Metrics) -> anyhow::Result<Etcd> {
    let endpoints = settings.etcd_servers.join(",");
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        match Etcd::connect(&settings.etcd_servers, metrics.clone()).await {
            Ok(etcd) => match etcd.current_revision().await {
                Ok(_) => return Ok(etcd),
                Err(e) if attempt >= 20 => {
                    return Err(e).with_context(|| format!("reaching etcd at {endpoints}"));
                }
                Err(e) => tracing::warn!(error = %e, endpoints, "etcd is not answering yet"),
            },
            // Only an endpoint the client cannot use fails here (etcd being down shows
            // in the read above): waiting will not mend it.
            Err(e) if attempt >= 20 || !matches!(e, StorageError::Unavailable(_)) => {
                return Err(e).with_context(|| format!("connecting to etcd at {endpoints}"));
            }
            Err(e) => tracing::warn!(error = %e, endpoints, "cannot connect to etcd yet"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(3));
    }
    unreachable!("the loop returns")
}

/// Seeds the allocators' hints with the values already reserved in etcd.
async fn load_allocations(etcd: &Etcd, allocators: &Allocators) -> anyhow::Result<()> {
    for (allocator, parse) in [
        (&allocators.service_ips, (|s: &str| s.parse::<Ipv4Addr>().ok().map(u32::from)) as fn(&str) -> Option<u32>),
        (&allocators.node_ports, |s: &str| s.parse::<u32>().ok()),
    ] {
        let prefix = allocator.reservations_prefix();
        let (entries, _, _) = etcd.list(&prefix, None, 0, 0).await.context("loading allocations")?;
        for (key, _) in entries {
            allocator.mark_key(&key, true, parse);
        }
    }
    Ok(())
}
