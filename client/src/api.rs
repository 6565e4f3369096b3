//! `Api<K>`: the typed face of the client for one kind, in one namespace or all.

use std::marker::PhantomData;
use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use proto::meta::v1::DeleteOptions;
use proto::{ApiError, Reason, Resource};

use crate::client::{Client, ListParams, PatchType, RawEvent};

/// A typed watch event.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    Bookmark(String),
}

/// A typed list page.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    pub resource_version: String,
    pub continue_token: String,
}

pub type WatchStream<K> = Pin<Box<dyn Stream<Item = Result<WatchEvent<K>, ApiError>> + Send>>;

#[derive(Clone)]
pub struct Api<K> {
    client: Client,
    /// Empty: every namespace (lists and watches) or a cluster-scoped kind.
    namespace: String,
    _kind: PhantomData<fn() -> K>,
}

fn decode<K: Resource>(bytes: &[u8]) -> Result<K, ApiError> {
    K::decode(bytes).map_err(|e| ApiError::internal(format!("the server sent an undecodable {}: {e}", K::INFO.kind)))
}

impl<K: Resource> Api<K> {
    /// The kind in one namespace (ignored for cluster-scoped kinds).
    pub fn namespaced(client: &Client, namespace: &str) -> Self {
        let namespace = if K::INFO.namespaced { namespace.to_string() } else { String::new() };
        Api { client: client.clone(), namespace, _kind: PhantomData }
    }

    /// The kind across every namespace (for cluster-scoped kinds, simply the kind).
    pub fn all(client: &Client) -> Self {
        Api { client: client.clone(), namespace: String::new(), _kind: PhantomData }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The namespace a write goes to: this Api's, else the object's.
    fn target_namespace(&self, object: &K) -> String {
        if self.namespace.is_empty() { object.metadata().namespace.clone() } else { self.namespace.clone() }
    }

    pub async fn create(&self, object: &K) -> Result<K, ApiError> {
        let ns = self.target_namespace(object);
        decode(&self.client.create(K::INFO, &ns, object.encode_to_vec().into(), false).await?)
    }

    pub async fn get(&self, name: &str) -> Result<K, ApiError> {
        decode(&self.client.get(K::INFO, &self.namespace, name).await?)
    }

    /// The object, or None if it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, ApiError> {
        match self.get(name).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if e.is(Reason::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>, ApiError> {
        let raw = self.client.list(K::INFO, &self.namespace, params).await?;
        let items = raw.items.iter().map(|b| decode(b)).collect::<Result<_, _>>()?;
        Ok(ObjectList { items, resource_version: raw.resource_version, continue_token: raw.continue_token })
    }

    /// Replaces spec and metadata. A resourceVersion in the object makes this a
    /// compare-and-swap.
    pub async fn update(&self, object: &K) -> Result<K, ApiError> {
        let ns = self.target_namespace(object);
        decode(&self.client.update(K::INFO, &ns, object.encode_to_vec().into(), false, false).await?)
    }

    pub async fn update_status(&self, object: &K) -> Result<K, ApiError> {
        let ns = self.target_namespace(object);
        decode(&self.client.update(K::INFO, &ns, object.encode_to_vec().into(), false, true).await?)
    }

    pub async fn patch(&self, name: &str, kind: PatchType, patch: &serde_json::Value) -> Result<K, ApiError> {
        let body = serde_json::to_vec(patch).map_err(|e| ApiError::bad_request(e.to_string()))?;
        decode(&self.client.patch(K::INFO, &self.namespace, name, kind, &body, false, false).await?)
    }

    pub async fn patch_status(&self, name: &str, kind: PatchType, patch: &serde_json::Value) -> Result<K, ApiError> {
        let body = serde_json::to_vec(patch).map_err(|e| ApiError::bad_request(e.to_string()))?;
        decode(&self.client.patch(K::INFO, &self.namespace, name, kind, &body, false, true).await?)
    }

    /// Deletes; returns the object and whether it is gone.
    pub async fn delete(&self, name: &str, options: DeleteOptions) -> Result<(K, bool), ApiError> {
        let (bytes, removed) = self.client.delete(K::INFO, &self.namespace, name, options).await?;
        Ok((decode(&bytes)?, removed))
    }

    /// Watches changes after `resource_version` ("" for the current state first).
    pub async fn watch(&self, params: &ListParams, resource_version: &str) -> Result<WatchStream<K>, ApiError> {
        let raw = self.client.watch(K::INFO, &self.namespace, params, resource_version, true).await?;
        Ok(Box::pin(raw.map(|event| {
            event.and_then(|event| {
                Ok(match event {
                    RawEvent::Added(b) => WatchEvent::Added(decode(&b)?),
                    RawEvent::Modified(b) => WatchEvent::Modified(decode(&b)?),
                    RawEvent::Deleted(b) => WatchEvent::Deleted(decode(&b)?),
                    RawEvent::Bookmark(rv) => WatchEvent::Bookmark(rv),
                })
            })
        })))
    }
}
