//! One strategy per kind, and the table of every kind's registry.

pub mod basic;
pub mod config;
pub mod events;
pub mod namespaces;
pub mod nodes;
pub mod pods;
pub mod services;
pub mod volumes;
pub mod workloads;

use std::collections::HashMap;
use std::sync::Arc;

use proto::resource::KINDS;
use proto::{Resource, apps, batch, coordination, core};

use super::api::ResourceApi;
use super::{Context, Registry, Shape, Strategy};
use crate::allocation::RangeAllocator;
use crate::watchcache::WatchCache;

/// Every kind's registry, by plural.
pub struct Registries {
    by_plural: HashMap<&'static str, Arc<dyn ResourceApi>>,
    pub pods: Arc<Registry<core::v1::Pod>>,
    pub namespaces: Arc<Registry<core::v1::Namespace>>,
}

pub struct Allocators {
    pub service_ips: Arc<RangeAllocator>,
    pub node_ports: Arc<RangeAllocator>,
}

impl Registries {
    /// Builds every registry. `namespaces` is the cache admission reads; it becomes
    /// the Namespace registry's own cache.
    pub fn new(ctx: Arc<Context>, allocators: Allocators, cache_capacity: usize) -> Self {
        let mut by_plural: HashMap<&'static str, Arc<dyn ResourceApi>> = HashMap::new();
        fn add<K: Resource + Shape>(
            map: &mut HashMap<&'static str, Arc<dyn ResourceApi>>,
            registry: Arc<Registry<K>>,
        ) -> Arc<Registry<K>> {
            map.insert(K::INFO.plural, registry.clone());
            registry
        }
        let c = cache_capacity;
        let namespaces = Registry::with_cache(
            Arc::new(namespaces::NamespaceStrategy) as Arc<dyn Strategy<core::v1::Namespace>>,
            ctx.clone(),
            ctx.namespaces.clone(),
        );
        let namespaces = add(&mut by_plural, Arc::new(namespaces));
        let pods = add(&mut by_plural, Arc::new(Registry::new(Arc::new(pods::PodStrategy), ctx.clone(), c)));
        add(&mut by_plural, Arc::new(Registry::new(Arc::new(nodes::NodeStrategy), ctx.clone(), c)));
        let services = services::ServiceStrategy::new(allocators.service_ips, allocators.node_ports);
        add(&mut by_plural, Arc::new(Registry::new(Arc::new(services), ctx.clone(), c)));
        macro_rules! with {
            ($($ty:ty => $strategy:expr),* $(,)?) => {$(
                add(&mut by_plural, Arc::new(Registry::<$ty>::new(Arc::new($strategy), ctx.clone(), c)));
            )*};
        }
        with!(
            core::v1::ConfigMap => config::ConfigMapStrategy,
            core::v1::Secret => config::SecretStrategy,
            core::v1::Event => events::EventStrategy,
            core::v1::ReplicationController => workloads::ReplicationControllerStrategy,
            core::v1::PersistentVolume => volumes::PersistentVolumeStrategy,
            core::v1::PersistentVolumeClaim => volumes::PersistentVolumeClaimStrategy,
            apps::v1::Deployment => workloads::DeploymentStrategy,
            apps::v1::ReplicaSet => workloads::ReplicaSetStrategy,
            apps::v1::StatefulSet => workloads::StatefulSetStrategy,
            apps::v1::DaemonSet => workloads::DaemonSetStrategy,
            batch::v1::Job => workloads::JobStrategy,
            batch::v1::CronJob => workloads::CronJobStrategy,
        );
        macro_rules! basic {
            ($($ty:ty),*) => {$(
                add(&mut by_plural, Arc::new(Registry::<$ty>::new(Arc::new(basic::Basic), ctx.clone(), c)));
            )*};
        }
        basic!(core::v1::Endpoints, core::v1::ServiceAccount, apps::v1::ControllerRevision, coordination::v1::Lease);
        debug_assert_eq!(by_plural.len(), KINDS.len(), "every kind has a registry");
        Registries { by_plural, pods, namespaces }
    }

    /// The registry for a resource name: "pods", "deployments", "deployments.apps".
    pub fn get(&self, resource: &str) -> Option<&Arc<dyn ResourceApi>> {
        let (plural, group) = match resource.split_once('.') {
            Some((plural, group)) => (plural, Some(group)),
            None => (resource, None),
        };
        self.by_plural
            .get(plural)
            .filter(|api| group.is_none_or(|g| g == api.info().group || (g == "core" && api.info().group.is_empty())))
    }

    pub fn caches(&self) -> Vec<Arc<WatchCache>> {
        self.by_plural.values().map(|api| api.cache().clone()).collect()
    }
}

/// The Namespace watch cache, built before the registries because admission of every
/// namespaced kind reads it.
pub fn namespace_cache(ctx_keys: &crate::storage::keys::Keys, cache_capacity: usize) -> Arc<WatchCache> {
    let codec = Registry::<core::v1::Namespace>::codec(Arc::new(namespaces::NamespaceStrategy));
    WatchCache::new(
        &proto::resource::kinds::NAMESPACE,
        ctx_keys.collection(&proto::resource::kinds::NAMESPACE, None),
        codec,
        cache_capacity,
    )
}
