//! The endpoints loop: Service and Pod changes become Service keys; a sync writes
//! the Service's Endpoints from the pods its selector matches. A Service without a
//! selector is left alone, so Endpoints its user wrote (an external database) stay.

use std::sync::Arc;

use client::Api;
use client::runtime::{Change, Informer, WorkQueue, key_of};
use proto::core::v1::{Endpoints, Pod, Service};
use proto::labels::Selector;
use proto::meta::v1::ObjectMeta;
use proto::{ApiError, Reason, Resource};

use super::subsets::subsets;
use crate::context::Context;

pub struct EndpointsController {
    ctx: Arc<Context>,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    queue: WorkQueue<String>,
}

fn selector_of(service: &Service) -> Option<Selector> {
    let selector = &service.spec.as_ref()?.selector;
    (!selector.is_empty()).then(|| Selector::from_map(selector))
}

impl EndpointsController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(EndpointsController {
            services: ctx.informers.get::<Service>(),
            pods: ctx.informers.get::<Pod>(),
            endpoints: ctx.informers.get::<Endpoints>(),
            ctx,
            queue: WorkQueue::default(),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.services.wait_synced().await;
        self.pods.wait_synced().await;
        self.endpoints.wait_synced().await;
        let mut service_changes = self.services.subscribe();
        let mut pod_changes = self.pods.subscribe();
        let mut endpoints_changes = self.endpoints.subscribe();
        let mut tasks = Vec::new();
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = service_changes.recv().await {
                this.queue.add(key_of(change.object().as_ref()));
            }
        }));
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = pod_changes.recv().await {
                match &change {
                    Change::Updated { old, new } => {
                        this.enqueue_services_of(old);
                        this.enqueue_services_of(new);
                    }
                    Change::Added(pod) | Change::Deleted(pod) => this.enqueue_services_of(pod),
                }
            }
        }));
        // Someone else changing an Endpoints we manage: put it back.
        let this = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = endpoints_changes.recv().await {
                if matches!(change, Change::Updated { .. } | Change::Deleted(_)) {
                    this.queue.add(key_of(change.object().as_ref()));
                }
            }
        }));
        let this = self.clone();
        tasks.extend(crate::tasks::spawn_workers(&self.queue, workers, "endpoints", move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        }));
        let _stop = crate::tasks::AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    }

    fn enqueue_services_of(&self, pod: &Pod) {
        let meta = pod.metadata();
        for service in self.services.store().by_index(client::runtime::store::BY_NAMESPACE, &meta.namespace) {
            if selector_of(&service).is_some_and(|s| s.matches(&meta.labels)) {
                self.queue.add(key_of(service.as_ref()));
            }
        }
    }

    async fn sync(&self, key: &str) -> Result<(), ApiError> {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Endpoints> = Api::namespaced(&self.ctx.client, namespace);
        let Some(service) = self.services.store().get(key) else {
            // The Service is gone; so are its Endpoints (the garbage collector would
            // too, but users expect it at once).
            if self.endpoints.store().get(key).is_some() {
                match api.delete(name, Default::default()).await {
                    Ok(_) => {}
                    Err(e) if e.is(Reason::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        };
        let Some(selector) = selector_of(&service) else { return Ok(()) };
        let pods: Vec<Pod> =
            self.pods.store().select(Some(namespace), &selector).into_iter().map(|p| p.as_ref().clone()).collect();
        let wanted_subsets = subsets(&service, &pods);
        let service_labels = service.metadata().labels.clone();
        match self.endpoints.store().get(key) {
            Some(current) if current.subsets == wanted_subsets && current.metadata().labels == service_labels => Ok(()),
            Some(current) => {
                let mut updated = current.as_ref().clone();
                updated.subsets = wanted_subsets;
                updated.metadata_mut().labels = service_labels;
                api.update(&updated).await.map(|_| ())
            }
            None => {
                let endpoints = Endpoints {
                    metadata: Some(ObjectMeta {
                        name: name.to_string(),
                        namespace: namespace.to_string(),
                        labels: service_labels,
                        ..Default::default()
                    }),
                    subsets: wanted_subsets,
                };
                // AlreadyExists (created before the informer saw it) retries the sync.
                api.create(&endpoints).await.map(|_| ())
            }
        }
    }
}
