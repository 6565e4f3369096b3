//! The registry of each kind behind one object-safe interface, so the gRPC service
//! dispatches by resource name and moves encoded objects only.

use std::sync::Arc;

use bytes::Bytes;
use proto::meta::v1::DeleteOptions;
use proto::{ApiError, KindInfo, Resource};

use super::patch::PatchType;
use super::{ListOptions, ListPage, Registry, Shape};
use crate::watchcache::{WatchCache, Watcher};

#[async_trait::async_trait]
pub trait ResourceApi: Send + Sync {
    fn info(&self) -> &'static KindInfo;
    fn cache(&self) -> &Arc<WatchCache>;
    async fn create(&self, namespace: &str, object: &[u8], dry_run: bool) -> Result<Bytes, ApiError>;
    async fn get(&self, namespace: &str, name: &str, resource_version: &str) -> Result<Bytes, ApiError>;
    async fn list(&self, options: &ListOptions<'_>) -> Result<ListPage, ApiError>;
    async fn update(&self, namespace: &str, object: &[u8], dry_run: bool, status: bool) -> Result<Bytes, ApiError>;
    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        namespace: &str,
        name: &str,
        kind: PatchType,
        body: &[u8],
        dry_run: bool,
        status: bool,
    ) -> Result<Bytes, ApiError>;
    async fn delete(&self, namespace: &str, name: &str, options: &DeleteOptions) -> Result<(Bytes, bool), ApiError>;
    async fn watch(
        &self,
        namespace: Option<&str>,
        labels: &str,
        fields: &str,
        resource_version: &str,
    ) -> Result<Watcher, ApiError>;
}

fn encode<K: Resource>(object: K) -> Bytes {
    object.encode_to_vec().into()
}

#[async_trait::async_trait]
impl<K: Resource + Shape> ResourceApi for Registry<K> {
    fn info(&self) -> &'static KindInfo {
        K::INFO
    }

    fn cache(&self) -> &Arc<WatchCache> {
        Registry::cache(self)
    }

    async fn create(&self, namespace: &str, object: &[u8], dry_run: bool) -> Result<Bytes, ApiError> {
        Registry::create_encoded(self, namespace, object, dry_run).await.map(|(_, encoded)| encoded)
    }

    async fn get(&self, namespace: &str, name: &str, resource_version: &str) -> Result<Bytes, ApiError> {
        Registry::get(self, namespace, name, resource_version).await
    }

    async fn list(&self, options: &ListOptions<'_>) -> Result<ListPage, ApiError> {
        Registry::list(self, options).await
    }

    async fn update(&self, namespace: &str, object: &[u8], dry_run: bool, status: bool) -> Result<Bytes, ApiError> {
        Registry::update(self, namespace, object, dry_run, status).await.map(encode)
    }

    async fn patch(
        &self,
        namespace: &str,
        name: &str,
        kind: PatchType,
        body: &[u8],
        dry_run: bool,
        status: bool,
    ) -> Result<Bytes, ApiError> {
        Registry::patch(self, namespace, name, kind, body, dry_run, status).await.map(encode)
    }

    async fn delete(&self, namespace: &str, name: &str, options: &DeleteOptions) -> Result<(Bytes, bool), ApiError> {
        Registry::delete(self, namespace, name, options).await.map(|(o, removed)| (encode(o), removed))
    }

    async fn watch(
        &self,
        namespace: Option<&str>,
        labels: &str,
        fields: &str,
        resource_version: &str,
    ) -> Result<Watcher, ApiError> {
        Registry::watch(self, namespace, labels, fields, resource_version).await
    }
}
