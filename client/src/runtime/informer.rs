//! An informer keeps a `Store` of one kind in step with the apiserver: it lists,
//! then watches from the list's resourceVersion. When the watch cannot resume
//! (Expired) it relists and reconciles the store with what it finds, emitting
//! Deleted for objects that vanished meanwhile, so subscribers always see a
//! consistent sequence of changes. Any number of subscribers share one watch.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use proto::{ApiError, Reason, Resource};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::store::{ObjectKey, Store, key_of};
use crate::{Api, Client, ListParams, WatchEvent};

/// What subscribers receive.
#[derive(Debug, Clone)]
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K: Resource> Change<K> {
    /// The object as it is now (for a deletion, as it was last seen).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

/// Page size of the informer's lists.
const LIST_PAGE: i64 = 500;

pub struct Informer<K: Resource> {
    api: Api<K>,
    params: ListParams,
    store: Store<K>,
    /// Held while a change is applied and sent, so a new subscriber's replay of the
    /// store and the changes after it neither overlap nor leave a gap.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>,
    synced: watch::Sender<bool>,
}

impl<K: Resource> Informer<K> {
    /// An informer over `api` (one namespace or all) with optional label/field
    /// selectors in `params`. Nothing happens until `run`.
    pub fn new(api: Api<K>, params: ListParams) -> Arc<Self> {
        let (synced, _) = watch::channel(false);
        Arc::new(Informer { api, params, store: Store::new(), subscribers: Mutex::new(Vec::new()), synced })
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Changes from now on, starting with an Added for every object already cached.
    /// Unbounded: a slow subscriber costs memory, never another subscriber's time.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscribers = self.lock_subscribers();
        for object in self.store.list() {
            let _ = tx.send(Change::Added(object));
        }
        subscribers.push(tx);
        rx
    }

    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits for the first complete list.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    fn lock_subscribers(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Change<K>>>> {
        self.subscribers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(subscribers: &mut Vec<mpsc::UnboundedSender<Change<K>>>, change: Change<K>) {
        subscribers.retain(|s| s.send(change.clone()).is_ok());
    }

    /// Lists and watches until the task is dropped, relisting whenever the watch
    /// cannot resume.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Backoff::default();
        let mut resource_version: Option<String> = None;
        loop {
            let rv = match &resource_version {
                Some(rv) => rv.clone(),
                None => match self.relist().await {
                    Ok(rv) => {
                        self.synced.send_replace(true);
                        backoff.reset();
                        resource_version = Some(rv.clone());
                        rv
                    }
                    Err(e) => {
                        tracing::warn!(kind = K::INFO.kind, error = %e, "listing failed; retrying");
                        backoff.wait().await;
                        continue;
                    }
                },
            };
            let mut stream = match self.api.watch(&self.params, &rv).await {
                Ok(stream) => stream,
                Err(e) => {
                    if e.is(Reason::Expired) {
                        resource_version = None;
                    } else {
                        tracing::warn!(kind = K::INFO.kind, error = %e, "watching failed; retrying");
                    }
                    // Also after Expired: a revision that expires as soon as it is
                    // listed must not turn into a tight list loop.
                    backoff.wait().await;
                    continue;
                }
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => {
                        backoff.reset();
                        resource_version = Some(self.apply(event));
                    }
                    Err(e) if e.is(Reason::Expired) => {
                        tracing::info!(kind = K::INFO.kind, "watch expired; relisting");
                        resource_version = None;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(kind = K::INFO.kind, error = %e, "the watch broke; resuming");
                        break;
                    }
                }
            }
            // A stream the server ended resumes from the last revision seen, after a
            // pause so a server that keeps ending streams is not hammered.
            if resource_version.is_some() {
                backoff.wait().await;
            }
        }
    }

    /// Applies one watch event; returns the resourceVersion reached.
    fn apply(&self, event: WatchEvent<K>) -> String {
        let mut subscribers = self.lock_subscribers();
        match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                let rv = object.metadata().resource_version.clone();
                let new = Arc::new(object);
                let change = match self.store.insert(new.clone()) {
                    None => Change::Added(new),
                    Some(old) => Change::Updated { old, new },
                };
                Self::emit(&mut subscribers, change);
                rv
            }
            WatchEvent::Deleted(object) => {
                let rv = object.metadata().resource_version.clone();
                if self.store.remove(&key_of(&object)).is_some() {
                    Self::emit(&mut subscribers, Change::Deleted(Arc::new(object)));
                }
                rv
            }
            WatchEvent::Bookmark(rv) => rv,
        }
    }

    /// Lists everything afresh and reconciles the store with it. Returns the
    /// list's resourceVersion.
    async fn relist(&self) -> Result<String, ApiError> {
        let mut items = Vec::new();
        let mut params = self.params.clone();
        params.limit = LIST_PAGE;
        let resource_version = loop {
            let page = self.api.list(&params).await?;
            items.extend(page.items);
            if page.continue_token.is_empty() {
                break page.resource_version;
            }
            params.continue_token = page.continue_token;
        };
        let mut subscribers = self.lock_subscribers();
        let mut seen: HashSet<ObjectKey> = HashSet::with_capacity(items.len());
        for object in items {
            seen.insert(key_of(&object));
            let new = Arc::new(object);
            match self.store.insert(new.clone()) {
                None => Self::emit(&mut subscribers, Change::Added(new)),
                Some(old) if old.metadata().resource_version != new.metadata().resource_version => {
                    Self::emit(&mut subscribers, Change::Updated { old, new })
                }
                Some(_) => {}
            }
        }
        for key in self.store.keys() {
            if !seen.contains(&key)
                && let Some(gone) = self.store.remove(&key)
            {
                Self::emit(&mut subscribers, Change::Deleted(gone));
            }
        }
        Ok(resource_version)
    }
}

/// Exponential backoff between failed attempts: 100 ms doubling to 30 s.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }

    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
}

/// A started informer of some kind, and its task.
type RunningInformer = (Arc<dyn Any + Send + Sync>, JoinHandle<()>);

/// One informer per kind for a whole process, whatever number of controllers ask
/// for it: every kind is watched once, across all namespaces. Dropping the factory
/// stops its informers.
pub struct SharedInformers {
    client: Client,
    informers: Mutex<HashMap<TypeId, RunningInformer>>,
}

impl SharedInformers {
    pub fn new(client: &Client) -> Self {
        SharedInformers { client: client.clone(), informers: Mutex::new(HashMap::new()) }
    }

    /// The process's informer of `K`, started on first use. Must be called within
    /// a tokio runtime.
    pub fn get<K: Resource>(&self) -> Arc<Informer<K>> {
        let mut informers = self.informers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((informer, _)) = informers.get(&TypeId::of::<K>())
            && let Ok(informer) = informer.clone().downcast::<Informer<K>>()
        {
            return informer;
        }
        let informer = Informer::new(Api::<K>::all(&self.client), ListParams::default());
        let task = tokio::spawn(informer.clone().run());
        informers.insert(TypeId::of::<K>(), (informer.clone(), task));
        informer
    }
}

impl Drop for SharedInformers {
    fn drop(&mut self) {
        let informers = self.informers.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, (_, task)) in informers.drain() {
            task.abort();
        }
    }
}
