//! The namespace controller: empties a Terminating namespace — every namespaced
//! kind, pods included — then clears its `kubernetes` finalizer so the apiserver
//! removes it.

use std::sync::Arc;
use std::time::Duration;

use client::runtime::{Informer, WorkQueue, key_of};
use client::{Api, ListParams};
use prost::Message as _;
use proto::core::v1::Namespace;
use proto::meta::v1::{DeleteOptions, PartialObjectMetadata};
use proto::resource::KINDS;
use proto::{ApiError, Reason, Resource};

use crate::context::Context;

/// The finalizer the apiserver puts on every namespace.
const FINALIZER: &str = "kubernetes";

pub struct NamespaceController {
    ctx: Arc<Context>,
    namespaces: Arc<Informer<Namespace>>,
    queue: WorkQueue<String>,
}

impl NamespaceController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(NamespaceController { namespaces: ctx.informers.get::<Namespace>(), ctx, queue: WorkQueue::default() })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.namespaces.wait_synced().await;
        let mut changes = self.namespaces.subscribe();
        let mut tasks = Vec::new();
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                if change.object().metadata().deletion_timestamp.is_some() {
                    this.queue.add(key_of(change.object().as_ref()));
                }
            }
        }));
        for _ in 0..workers.max(1) {
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(key) = this.queue.get().await {
                    match this.sync(&key).await {
                        Ok(true) => this.queue.forget(&key),
                        // Content is still going away: look again shortly.
                        Ok(false) => this.queue.add_after(key.clone(), Duration::from_secs(1)),
                        Err(e) => {
                            tracing::warn!(namespace = key, error = %e, "emptying the namespace failed; retrying");
                            this.queue.add_rate_limited(key.clone());
                        }
                    }
                    this.queue.done(&key);
                }
            }));
        }
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    /// Ok(true) once the namespace is empty and released.
    async fn sync(&self, name: &str) -> Result<bool, ApiError> {
        let Some(ns) = self.namespaces.store().get(name) else { return Ok(true) };
        if ns.metadata().deletion_timestamp.is_none() {
            return Ok(true);
        }
        let mut remaining = 0;
        for info in KINDS.iter().filter(|k| k.namespaced) {
            let list = self.ctx.client.list(info, name, &ListParams::default()).await?;
            for item in &list.items {
                let meta = PartialObjectMetadata::decode(item.as_ref())
                    .map_err(|e| ApiError::internal(format!("decoding a {} in {name}: {e}", info.kind)))?
                    .metadata
                    .unwrap_or_default();
                remaining += 1;
                if meta.deletion_timestamp.is_some() {
                    continue;
                }
                let options = DeleteOptions { propagation_policy: "Background".into(), ..Default::default() };
                match self.ctx.client.delete(info, name, &meta.name, options).await {
                    Ok(_) => {}
                    Err(e) if e.is(Reason::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if remaining > 0 {
            return Ok(false);
        }
        let mut released = ns.as_ref().clone();
        if let Some(spec) = released.spec.as_mut() {
            spec.finalizers.retain(|f| f != FINALIZER);
        }
        let api: Api<Namespace> = Api::all(&self.ctx.client);
        match api.update(&released).await {
            Ok(_) => Ok(true),
            Err(e) if e.is(Reason::NotFound) => Ok(true),
            Err(e) => Err(e),
        }
    }
}
