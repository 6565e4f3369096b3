//! The garbage collector: follows ownerReferences across every kind it watches.
//! - An object all of whose owners are gone is deleted (background propagation).
//! - An owner being deleted in the foreground (`foregroundDeletion` finalizer) has
//!   its dependents deleted first; its finalizer is cleared once none is left.
//! - An owner being deleted with `orphan` propagation has its references removed
//!   from its dependents, then its finalizer cleared, so the dependents stay.
//!
//! It is level-triggered: any change in any watched kind schedules a sweep of the
//! whole graph from the informers' caches (sweeps coalesce), so a missed event
//! costs time, never correctness.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use client::runtime::Informer;
use client::{ListParams, PatchType};
use prost::Message as _;
use proto::meta::v1::{DeleteOptions, ObjectMeta, PartialObjectMetadata};
use proto::{ApiError, KindInfo, Reason, Resource};
use tokio::sync::Notify;

use crate::context::Context;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// One watched kind, seen through its metadata.
trait Watched: Send + Sync {
    fn info(&self) -> &'static KindInfo;
    fn metas(&self) -> Vec<ObjectMeta>;
    fn synced(&self) -> bool;
    /// Wakes `notify` on every change.
    fn forward(&self, notify: Arc<Notify>) -> tokio::task::JoinHandle<()>;
}

impl<K: Resource> Watched for Arc<Informer<K>> {
    fn info(&self) -> &'static KindInfo {
        K::INFO
    }

    fn metas(&self) -> Vec<ObjectMeta> {
        self.store().list().iter().map(|o| o.metadata().clone()).collect()
    }

    fn synced(&self) -> bool {
        self.has_synced()
    }

    fn forward(&self, notify: Arc<Notify>) -> tokio::task::JoinHandle<()> {
        let mut changes = self.subscribe();
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                notify.notify_one();
            }
        })
    }
}

pub struct GarbageCollector {
    ctx: Arc<Context>,
    kinds: Vec<Box<dyn Watched>>,
}

impl GarbageCollector {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        use proto::{apps, batch, core};
        let i = &ctx.informers;
        let kinds: Vec<Box<dyn Watched>> = vec![
            Box::new(i.get::<core::v1::Pod>()),
            Box::new(i.get::<apps::v1::ReplicaSet>()),
            Box::new(i.get::<apps::v1::Deployment>()),
            Box::new(i.get::<core::v1::ReplicationController>()),
            Box::new(i.get::<apps::v1::StatefulSet>()),
            Box::new(i.get::<apps::v1::DaemonSet>()),
            Box::new(i.get::<apps::v1::ControllerRevision>()),
            Box::new(i.get::<batch::v1::Job>()),
            Box::new(i.get::<batch::v1::CronJob>()),
            Box::new(i.get::<core::v1::ConfigMap>()),
            Box::new(i.get::<core::v1::Secret>()),
            Box::new(i.get::<core::v1::Service>()),
            Box::new(i.get::<core::v1::Endpoints>()),
            Box::new(i.get::<core::v1::PersistentVolumeClaim>()),
            Box::new(i.get::<core::v1::ServiceAccount>()),
            Box::new(i.get::<core::v1::Node>()),
        ];
        Arc::new(GarbageCollector { ctx, kinds })
    }

    pub async fn run(self: Arc<Self>) {
        while !self.kinds.iter().all(|k| k.synced()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let notify = Arc::new(Notify::new());
        let tasks: Vec<_> = self.kinds.iter().map(|k| k.forward(notify.clone())).collect();
        let _stop = crate::tasks::AbortOnDrop(tasks);
        loop {
            // Coalesce bursts; sweep at least every 30 s as a safety net.
            let _ = tokio::time::timeout(Duration::from_secs(30), notify.notified()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "garbage collection sweep failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                notify.notify_one();
            }
        }
    }

    async fn sweep(&self) -> Result<(), ApiError> {
        let objects: Vec<(&'static KindInfo, ObjectMeta)> =
            self.kinds.iter().flat_map(|k| k.metas().into_iter().map(move |m| (k.info(), m))).collect();
        let by_uid: HashMap<&str, &(&'static KindInfo, ObjectMeta)> =
            objects.iter().map(|o| (o.1.uid.as_str(), o)).collect();
        // Owners that still have dependents pointing at them.
        let mut referenced: HashSet<String> = HashSet::new();

        for (info, meta) in &objects {
            if meta.owner_references.is_empty() {
                continue;
            }
            let owners: Vec<&(&'static KindInfo, ObjectMeta)> =
                meta.owner_references.iter().filter_map(|r| by_uid.get(r.uid.as_str()).copied()).collect();
            if owners.is_empty() {
                if self.owners_really_gone(meta).await? {
                    self.delete(info, meta, "Background").await?;
                }
                continue;
            }
            let mut orphaned_from: Vec<&str> = Vec::new();
            for (_, owner) in &owners {
                referenced.insert(owner.uid.clone());
                if owner.deletion_timestamp.is_none() {
                    continue;
                }
                if owner.finalizers.iter().any(|f| f == ORPHAN) {
                    orphaned_from.push(owner.uid.as_str());
                } else if owner.finalizers.iter().any(|f| f == FOREGROUND) && meta.deletion_timestamp.is_none() {
                    self.delete(info, meta, "Foreground").await?;
                }
            }
            if !orphaned_from.is_empty() {
                let kept: Vec<serde_json::Value> = meta
                    .owner_references
                    .iter()
                    .filter(|r| !orphaned_from.contains(&r.uid.as_str()))
                    .map(|r| {
                        serde_json::json!({
                            "apiVersion": r.api_version,
                            "kind": r.kind,
                            "name": r.name,
                            "uid": r.uid,
                            "controller": r.controller,
                            "blockOwnerDeletion": r.block_owner_deletion,
                        })
                    })
                    .collect();
                let patch = serde_json::json!({"metadata": {"ownerReferences": kept}});
                self.patch(info, meta, &patch).await?;
                for uid in orphaned_from {
                    referenced.remove(uid);
                }
            }
        }

        // Owners whose dependents are all handled: release their finalizer.
        for (info, meta) in &objects {
            if meta.deletion_timestamp.is_none() || referenced.contains(&meta.uid) {
                continue;
            }
            let remaining: Vec<&String> = meta.finalizers.iter().filter(|f| *f != ORPHAN && *f != FOREGROUND).collect();
            if remaining.len() != meta.finalizers.len() {
                let patch = serde_json::json!({"metadata": {"finalizers": remaining}});
                self.patch(info, meta, &patch).await?;
            }
        }
        Ok(())
    }

    /// Caches can lag behind a just-created owner: check with the apiserver before
    /// deleting anything.
    async fn owners_really_gone(&self, meta: &ObjectMeta) -> Result<bool, ApiError> {
        for reference in &meta.owner_references {
            let Some(info) = proto::resource::KINDS
                .iter()
                .copied()
                .find(|k| k.kind == reference.kind && k.api_version() == reference.api_version)
            else {
                continue;
            };
            let namespace = if info.namespaced { meta.namespace.as_str() } else { "" };
            let params = ListParams::fields(&format!("metadata.name={}", reference.name));
            let list = self.ctx.client.list(info, namespace, &params).await?;
            for item in &list.items {
                let owner = PartialObjectMetadata::decode(item.as_ref()).ok().and_then(|p| p.metadata);
                if owner.is_some_and(|o| o.uid == reference.uid) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn delete(&self, info: &KindInfo, meta: &ObjectMeta, propagation: &str) -> Result<(), ApiError> {
        let options = DeleteOptions { propagation_policy: propagation.to_string(), ..Default::default() };
        match self.ctx.client.delete(info, &meta.namespace, &meta.name, options).await {
            Ok(_) => {
                tracing::info!(kind = info.kind, namespace = %meta.namespace, name = %meta.name, "deleted a dependent");
                Ok(())
            }
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn patch(&self, info: &KindInfo, meta: &ObjectMeta, patch: &serde_json::Value) -> Result<(), ApiError> {
        let body = serde_json::to_vec(patch).map_err(|e| ApiError::internal(e.to_string()))?;
        match self.ctx.client.patch(info, &meta.namespace, &meta.name, PatchType::Merge, &body, false, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(Reason::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
