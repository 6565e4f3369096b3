//! A controller: informers feed keys into a `WorkQueue`, N workers reconcile one
//! key at a time, in the manner of kube-runtime's `Controller`. It owns the wiring
//! (subscriptions, owner mapping, resync, retries with backoff); what a key means
//! is the reconcile function's business.
//!
//! The reconcile function gets the key (`namespace/name`) and the object as the
//! informer's cache holds it now (None once it is deleted), and answers with an
//! [`Action`]: wait for the next change, or look again after a delay. An error (or
//! a panic) is logged and the key retried with its per-key exponential backoff,
//! for ever.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use client::runtime::{Action, Controller, SharedInformers};
//! use proto::apps::v1::ReplicaSet;
//! use proto::core::v1::Pod;
//!
//! # async fn example(client: client::Client) {
//! let informers = SharedInformers::new(&client);
//! let controller = Controller::new(informers.get::<ReplicaSet>())
//!     .owns(informers.get::<Pod>()) // a pod's change wakes its owning ReplicaSet
//!     .workers(4)
//!     .resync_every(Duration::from_secs(300));
//! // Runs until dropped (for instance when leadership is lost).
//! controller
//!     .run(|key: String, rs: Option<Arc<ReplicaSet>>| async move {
//!         let Some(rs) = rs else { return Ok::<_, std::io::Error>(Action::await_change()) };
//!         // ... compare rs's spec with the pods in the cache and act on the difference
//!         let _ = (key, rs);
//!         Ok(Action::requeue(Duration::from_secs(30)))
//!     })
//!     .await;
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use proto::Resource;
use tokio::task::JoinHandle;

use super::informer::{Change, Informer};
use super::store::{ObjectKey, key_of};
use super::workqueue::{RetryPolicy, WorkQueue, spawn_resync};

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the object (or something mapped to it) changes.
    AwaitChange,
    /// Reconcile the key again after the delay, even if nothing changes.
    Requeue(Duration),
}

impl Action {
    pub fn await_change() -> Self {
        Action::AwaitChange
    }

    pub fn requeue(after: Duration) -> Self {
        Action::Requeue(after)
    }
}

/// Keys of `K` a change of some other object maps to.
type Mapper<C> = Arc<dyn Fn(&C) -> Vec<ObjectKey> + Send + Sync>;

/// Starts forwarding an informer's changes, mapped to keys, into the queue.
type Source = Box<dyn FnOnce(WorkQueue<ObjectKey>) -> JoinHandle<()> + Send>;

pub struct Controller<K: Resource> {
    informer: Arc<Informer<K>>,
    queue: WorkQueue<ObjectKey>,
    sources: Vec<Source>,
    /// The first list of every informer the controller reads.
    synced: Vec<Pin<Box<dyn Future<Output = ()> + Send>>>,
    workers: usize,
    resync: Option<Duration>,
}

impl<K: Resource> Controller<K> {
    /// A controller of `K`: every change of a `K` enqueues its key. One worker,
    /// client-go's retry policy, no resync until configured.
    pub fn new(informer: Arc<Informer<K>>) -> Self {
        Controller {
            informer: informer.clone(),
            queue: WorkQueue::default(),
            sources: Vec::new(),
            synced: Vec::new(),
            workers: 1,
            resync: None,
        }
        .watches(informer, |object: &K| vec![key_of(object)])
    }

    /// Changes of `C` wake the `K`s named in their ownerReferences (by kind), as a
    /// ReplicaSet is woken by its pods. Both the old and the new object count, so
    /// an owner is told when a child is released too.
    pub fn owns<C: Resource>(self, informer: Arc<Informer<C>>) -> Self {
        self.watches(informer, |child: &C| {
            let meta = child.metadata();
            meta.owner_references
                .iter()
                .filter(|r| r.kind == K::INFO.kind)
                .map(|r| if K::INFO.namespaced { format!("{}/{}", meta.namespace, r.name) } else { r.name.clone() })
                .collect()
        })
    }

    /// Changes of `C` wake the keys `map` names, as an Endpoints controller is woken
    /// for the Services selecting a changed pod.
    pub fn watches<C: Resource>(
        mut self,
        informer: Arc<Informer<C>>,
        map: impl Fn(&C) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self {
        let map: Mapper<C> = Arc::new(map);
        let synced = informer.clone();
        self.synced.push(Box::pin(async move { synced.wait_synced().await }));
        self.sources.push(Box::new(move |queue| {
            let mut changes = informer.subscribe();
            tokio::spawn(async move {
                while let Some(change) = changes.recv().await {
                    let mut keys = map(change.object());
                    if let Change::Updated { old, .. } = &change {
                        keys.extend(map(old));
                    }
                    for key in keys {
                        queue.add(key);
                    }
                }
            })
        }));
        self
    }

    /// How many keys are reconciled at once (each key by one worker at a time).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Re-adds every cached key every `period`.
    pub fn resync_every(mut self, period: Duration) -> Self {
        self.resync = Some(period);
        self
    }

    /// Backoff of failed reconciles (default: 5 ms doubling to 1000 s).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.queue = WorkQueue::new(policy);
        self
    }

    /// The controller's queue, for keys enqueued from elsewhere.
    pub fn queue(&self) -> WorkQueue<ObjectKey> {
        self.queue.clone()
    }

    /// Waits until every informer has listed once, then reconciles for ever.
    /// Dropping the future stops the workers, the subscriptions and the resync
    /// at once (a reconcile in flight is cancelled at its next await).
    pub async fn run<F, Fut, E>(self, reconcile: F)
    where
        F: Fn(ObjectKey, Option<Arc<K>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let Controller { informer, queue, sources, synced, workers, resync } = self;
        let mut tasks = Tasks { handles: Vec::new(), queue: queue.clone() };
        // Subscribe first: the replay of each cache enqueues everything already known.
        for source in sources {
            tasks.handles.push(source(queue.clone()));
        }
        // Wait for the informers' first lists so a reconcile never sees a half-filled cache.
        futures::future::join_all(synced).await;
        if let Some(period) = resync {
            tasks.handles.push(spawn_resync(informer.store(), queue.clone(), period));
        }
        let reconcile = Arc::new(reconcile);
        for _ in 0..workers {
            let (queue, store, reconcile) = (queue.clone(), informer.store(), reconcile.clone());
            tasks.handles.push(tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    let object = store.get(&key);
                    // A panicking reconcile is a failure of that key, not the loss of
                    // a worker and a key stuck "processing" for ever.
                    let outcome = AssertUnwindSafe(reconcile(key.clone(), object)).catch_unwind().await;
                    match outcome {
                        Ok(Ok(Action::AwaitChange)) => queue.forget(&key),
                        Ok(Ok(Action::Requeue(after))) => {
                            queue.forget(&key);
                            queue.add_after(key.clone(), after);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(kind = K::INFO.kind, %key, error = %e, "reconcile failed; retrying with backoff");
                            queue.add_rate_limited(key.clone());
                        }
                        Err(_) => {
                            tracing::error!(kind = K::INFO.kind, %key, "reconcile panicked; retrying with backoff");
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            }));
        }
        // Everything runs in the spawned tasks; this future only keeps them alive.
        std::future::pending::<()>().await;
    }
}

/// The controller's tasks, stopped when `run`'s future is dropped.
struct Tasks {
    handles: Vec<JoinHandle<()>>,
    queue: WorkQueue<ObjectKey>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.queue.shut_down();
        for handle in &self.handles {
            handle.abort();
        }
    }
}
