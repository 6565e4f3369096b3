//! The Resources service: decodes requests, dispatches them to the kind's registry,
//! records metrics, and streams watches in batches.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use prost::Message as _;
use proto::apiserver::v1::resources_server::Resources;
use proto::apiserver::v1::{
    BindRequest, CreateRequest, DeleteRequest, DeleteResponse, GetRequest, ListRequest, ListResponse, ObjectResponse,
    PatchRequest, UpdateRequest, WatchEvent, WatchRequest, WatchResponse,
};
use proto::meta::v1::ListMeta;
use proto::{ApiError, Reason};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::registry::ListOptions;
use crate::registry::api::ResourceApi;
use crate::registry::kinds::Registries;
use crate::registry::patch::PatchType;
use crate::watchcache::{Delivery, Watcher, bookmark};

/// At most this many events go into one watch response.
const WATCH_BATCH: usize = 256;

pub struct ResourcesService {
    registries: Arc<Registries>,
    metrics: Metrics,
    /// Flips to true on shutdown, ending every open watch.
    shutdown: watch::Receiver<bool>,
}

impl ResourcesService {
    pub fn new(registries: Arc<Registries>, metrics: Metrics, shutdown: watch::Receiver<bool>) -> Self {
        ResourcesService { registries, metrics, shutdown }
    }

    fn api(&self, resource: &str) -> Result<&Arc<dyn ResourceApi>, ApiError> {
        self.registries.get(resource).ok_or_else(|| {
            ApiError::new(
                Reason::NotFound,
                format!("the server does not have a resource type \"{resource}\"; `ctl api-resources` lists them"),
            )
        })
    }

    /// Runs one unary call, recording its verb, resource, result and latency.
    async fn call<T>(
        &self,
        verb: &'static str,
        resource: &str,
        work: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let label = self.registries.get(resource).map_or("unknown", |api| api.info().plural);
        let result = work.await;
        let code = match &result {
            Ok(_) => "OK",
            Err(e) => e.reason().as_str(),
        };
        self.metrics.request(verb, label, code, started.elapsed());
        match result {
            Ok(value) => Ok(Response::new(value)),
            Err(e) => Err(e.into()),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Resources for ResourcesService {
    async fn create(&self, request: Request<CreateRequest>) -> Result<Response<ObjectResponse>, Status> {
        let r = request.into_inner();
        self.call("create", &r.resource, async {
            let object = self.api(&r.resource)?.create(&r.namespace, &r.object, r.dry_run).await?;
            Ok(ObjectResponse { object })
        })
        .await
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<ObjectResponse>, Status> {
        let r = request.into_inner();
        self.call("get", &r.resource, async {
            let object = self.api(&r.resource)?.get(&r.namespace, &r.name, &r.resource_version).await?;
            Ok(ObjectResponse { object })
        })
        .await
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let r = request.into_inner();
        self.call("list", &r.resource, async {
            let options = ListOptions {
                namespace: Some(r.namespace.as_str()).filter(|ns| !ns.is_empty()),
                label_selector: &r.label_selector,
                field_selector: &r.field_selector,
                limit: r.limit,
                continue_token: &r.r#continue,
                resource_version: &r.resource_version,
            };
            let page = self.api(&r.resource)?.list(&options).await?;
            Ok(ListResponse {
                metadata: Some(ListMeta {
                    resource_version: page.resource_version,
                    r#continue: page.continue_token,
                    remaining_item_count: page.remaining,
                    ..Default::default()
                }),
                items: page.items,
            })
        })
        .await
    }

    async fn update(&self, request: Request<UpdateRequest>) -> Result<Response<ObjectResponse>, Status> {
        let r = request.into_inner();
        self.call("update", &r.resource, async {
            let object = self.api(&r.resource)?.update(&r.namespace, &r.object, r.dry_run, false).await?;
            Ok(ObjectResponse { object })
        })
        .await
    }

    async fn update_status(&self, request: Request<UpdateRequest>) -> Result<Response<ObjectResponse>, Status> {
        let r = request.into_inner();
        self.call("update_status", &r.resource, async {
            let object = self.api(&r.resource)?.update(&r.namespace, &r.object, r.dry_run, true).await?;
            Ok(ObjectResponse { object })
        })
        .await
    }

    async fn patch(&self, request: Request<PatchRequest>) -> Result<Response<ObjectResponse>, Status> {
        let r = request.into_inner();
        self.call("patch", &r.resource, async {
            let kind = PatchType::parse(&r.patch_type).map_err(ApiError::bad_request)?;
            let object =
                self.api(&r.resource)?.patch(&r.namespace, &r.name, kind, &r.patch, r.dry_run, r.status).await?;
            Ok(ObjectResponse { object })
        })
        .await
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let r = request.into_inner();
        self.call("delete", &r.resource, async {
            let options = r.options.unwrap_or_default();
            let (object, removed) = self.api(&r.resource)?.delete(&r.namespace, &r.name, &options).await?;
            Ok(DeleteResponse { object, removed })
        })
        .await
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let started = Instant::now();
        let result = async {
            let api = self.api(&r.resource)?;
            let namespace = Some(r.namespace.as_str()).filter(|ns| !ns.is_empty());
            let watcher = api.watch(namespace, &r.label_selector, &r.field_selector, &r.resource_version).await?;
            Ok::<_, ApiError>((api.info().plural, watcher))
        }
        .await;
        let label = self.registries.get(&r.resource).map_or("unknown", |api| api.info().plural);
        let code = result.as_ref().map_or_else(|e| e.reason().as_str(), |_| "OK");
        self.metrics.request("watch", label, code, started.elapsed());
        let (plural, watcher) = result?;
        let stream = watch_stream(WatchState {
            watcher,
            bookmarks: r.allow_bookmarks,
            shutdown: self.shutdown.clone(),
            _open: OpenWatch::new(self.metrics.clone(), plural),
        });
        Ok(Response::new(stream))
    }

    async fn bind(&self, request: Request<BindRequest>) -> Result<Response<ObjectResponse>, Status> {
        let r = request.into_inner();
        self.call("bind", "pods", async {
            let binding = r.binding.ok_or_else(|| ApiError::bad_request("binding is required"))?;
            let pod = self.registries.pods.bind(binding).await?;
            Ok(ObjectResponse { object: pod.encode_to_vec().into() })
        })
        .await
    }
}

/// Counts a watch as open for as long as its stream lives.
struct OpenWatch {
    metrics: Metrics,
    resource: &'static str,
}

impl OpenWatch {
    fn new(metrics: Metrics, resource: &'static str) -> Self {
        metrics.watcher_opened(resource);
        OpenWatch { metrics, resource }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.metrics.watcher_closed(self.resource);
    }
}

struct WatchState {
    watcher: Watcher,
    bookmarks: bool,
    shutdown: watch::Receiver<bool>,
    _open: OpenWatch,
}

fn watch_stream(state: WatchState) -> WatchStream {
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            let batch = tokio::select! {
                batch = state.watcher.next_batch(WATCH_BATCH) => batch,
                _ = state.shutdown.wait_for(|down| *down) => {
                    let error = ApiError::unavailable("the apiserver is shutting down; watch again");
                    return Some((Err(error.into()), None));
                }
            };
            match batch {
                Ok(deliveries) => {
                    let events: Vec<WatchEvent> = deliveries
                        .into_iter()
                        .filter_map(|delivery| match delivery {
                            Delivery::Event(kind, object) => {
                                Some(WatchEvent { r#type: kind.as_str().to_string(), object })
                            }
                            Delivery::Bookmark(revision) if state.bookmarks => {
                                Some(WatchEvent { r#type: "BOOKMARK".to_string(), object: bookmark(revision) })
                            }
                            Delivery::Bookmark(_) => None,
                        })
                        .collect();
                    if events.is_empty() {
                        continue;
                    }
                    state._open.metrics.watch_events_sent(state._open.resource, events.len() as u64);
                    return Some((Ok(WatchResponse { events }), Some(state)));
                }
                Err(error) => return Some((Err(error.into()), None)),
            }
        }
    }))
}
