//! The watch cache: one etcd watch per resource feeds the current state of every
//! object and a bounded window of recent events, from which any number of client
//! watches fan out.
//!
//! Exactness: events enter the window and the broadcast channel under one lock, and a
//! client watch snapshots the window and subscribes under the same lock, so it sees
//! every event after its starting revision exactly once, in order. A start older than
//! the window answers Expired, and the client relists. A watcher that falls further
//! behind than the channel holds is closed with a reason; it never slows the others.

pub mod filter;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::EventType as EtcdEventType;
use prost::Message as _;
use proto::meta::v1::{ObjectMeta, PartialObjectMetadata};
use proto::{ApiError, KindInfo, Reason};
use tokio::sync::{broadcast, watch};

use crate::storage::{Etcd, StorageError};
pub use filter::{Attrs, Filter};

/// One object as the cache holds it: encoded with its resourceVersion set, plus the
/// attributes selectors need.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub bytes: Bytes,
    pub revision: i64,
    pub attrs: Attrs,
}

/// Turns stored values into cached objects; one per kind.
pub trait ObjectCodec: Send + Sync + 'static {
    /// Decodes a stored value, sets its resourceVersion to `revision`, and extracts
    /// its selectable attributes.
    fn index(&self, key: &str, value: &[u8], revision: i64) -> Result<CachedObject, String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Event {
    pub kind: EventType,
    pub revision: i64,
    /// The new state; for a deletion, the last state with the deletion's revision.
    pub object: Arc<CachedObject>,
    /// The previous state's attributes, for filters that an update moves an object
    /// into or out of.
    pub prev: Option<Attrs>,
}

#[derive(Debug, Clone)]
enum Item {
    Event(Arc<Event>),
    /// Every event up to this revision has been delivered.
    Progress(i64),
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    window: VecDeque<Arc<Event>>,
    /// Every event after this revision is in the window.
    floor: i64,
    /// The revision the cache has caught up to.
    revision: i64,
    sender: broadcast::Sender<Item>,
    ready: bool,
}

pub struct WatchCache {
    info: &'static KindInfo,
    prefix: String,
    codec: Arc<dyn ObjectCodec>,
    capacity: usize,
    state: RwLock<State>,
    /// The cache's revision, for callers waiting for it to catch up.
    revision_tx: watch::Sender<i64>,
    progress_wanted: tokio::sync::Notify,
}

/// A client watch on the cache.
pub struct Watcher {
    pending: VecDeque<(EventType, Arc<CachedObject>)>,
    receiver: broadcast::Receiver<Item>,
    /// Events at or before this revision are not delivered: the client has them.
    /// (The channel only ever carries events after the watch's snapshot of the
    /// window; this matters when a client asks for a revision the cache has not
    /// reached yet.)
    min_revision: i64,
    /// The newest revision delivered, so bookmarks only ever move forward.
    delivered: i64,
    filter: Filter,
    info: &'static KindInfo,
}

/// What a client watch receives.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(EventType, Bytes),
    Bookmark(i64),
}

impl WatchCache {
    pub fn new(info: &'static KindInfo, prefix: String, codec: Arc<dyn ObjectCodec>, capacity: usize) -> Arc<Self> {
        let (sender, _) = broadcast::channel(capacity.max(16));
        let (revision_tx, _) = watch::channel(0);
        Arc::new(WatchCache {
            info,
            prefix,
            codec,
            capacity: capacity.max(16),
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                window: VecDeque::new(),
                floor: 0,
                revision: 0,
                sender,
                ready: false,
            }),
            revision_tx,
            progress_wanted: tokio::sync::Notify::new(),
        })
    }

    pub fn info(&self) -> &'static KindInfo {
        self.info
    }

    pub fn is_ready(&self) -> bool {
        self.read().ready
    }

    pub fn revision(&self) -> i64 {
        self.read().revision
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Objects under `key_prefix` matching `filter`, in key order, and the revision
    /// they are current at.
    pub fn list(&self, key_prefix: &str, filter: &Filter) -> (Vec<Arc<CachedObject>>, i64) {
        let state = self.read();
        let items = state
            .objects
            .range(key_prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(key_prefix))
            .filter(|(_, o)| filter.matches(&o.attrs))
            .map(|(_, o)| o.clone())
            .collect();
        (items, state.revision)
    }

    /// Waits until the cache has seen `revision`, asking etcd for a progress
    /// notification so an idle resource catches up at once.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> Result<(), ApiError> {
        let mut rx = self.revision_tx.subscribe();
        let wait = async {
            loop {
                if *rx.borrow_and_update() >= revision {
                    return;
                }
                self.progress_wanted.notify_one();
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            ApiError::new(
                Reason::Timeout,
                format!("the watch cache of {} did not reach revision {revision} in time", self.info.plural),
            )
        })
    }

    /// Starts a client watch. `from`: Some(R) for every change after R; None for the
    /// current state as ADDED events followed by every later change.
    pub fn watch(&self, from: Option<i64>, filter: Filter) -> Result<Watcher, ApiError> {
        let state = self.read();
        if !state.ready {
            return Err(ApiError::unavailable(format!("the watch cache of {} is still loading", self.info.plural)));
        }
        let mut pending = VecDeque::new();
        let min_revision = match from {
            Some(r) => {
                if r < state.floor {
                    return Err(too_old(r, state.floor));
                }
                for event in state.window.iter().filter(|e| e.revision > r) {
                    if let Some(kind) = transition(event, &filter) {
                        pending.push_back((kind, event.object.clone()));
                    }
                }
                r
            }
            None => {
                for object in state.objects.values().filter(|o| filter.matches(&o.attrs)) {
                    pending.push_back((EventType::Added, object.clone()));
                }
                state.revision
            }
        };
        let receiver = state.sender.subscribe();
        let delivered = min_revision.max(state.revision);
        Ok(Watcher { pending, receiver, min_revision, delivered, filter, info: self.info })
    }

    /// Keeps the cache in step with etcd until the process ends.
    pub async fn run(self: Arc<Self>, etcd: Etcd) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if !self.is_ready() {
                if let Err(e) = self.reload(&etcd).await {
                    tracing::warn!(resource = self.info.plural, error = %e, "loading the watch cache failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            match self.follow(&etcd).await {
                Ok(()) => {}
                Err(StorageError::Compacted { .. }) => {
                    tracing::warn!(resource = self.info.plural, "etcd compacted past the watch cache; reloading");
                    self.write().ready = false;
                }
                Err(e) => {
                    tracing::warn!(resource = self.info.plural, error = %e, "the etcd watch broke; resuming");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            backoff = Duration::from_millis(100);
        }
    }

    /// Loads every object afresh. Client watches open across a reload cannot be
    /// continued exactly, so they are closed and their clients relist.
    async fn reload(&self, etcd: &Etcd) -> Result<(), StorageError> {
        let mut objects = BTreeMap::new();
        let mut start: Option<String> = None;
        let mut revision = 0;
        loop {
            let (entries, read_revision, more) = etcd.list(&self.prefix, start.as_deref(), revision, 1000).await?;
            revision = read_revision;
            let last_key = entries.last().map(|(k, _)| k.clone());
            for (key, stored) in entries {
                match self.codec.index(&key, &stored.value, stored.mod_revision) {
                    Ok(object) => {
                        objects.insert(key, Arc::new(object));
                    }
                    Err(e) => {
                        tracing::error!(key, error = %e, "skipping an undecodable object in etcd")
                    }
                }
            }
            match (more, last_key) {
                (true, Some(last)) => start = Some(format!("{last}\0")),
                _ => break,
            }
        }
        let mut state = self.write();
        let (sender, _) = broadcast::channel(self.capacity);
        state.sender = sender;
        state.objects = objects;
        state.window.clear();
        state.floor = revision;
        state.revision = revision;
        state.ready = true;
        drop(state);
        self.revision_tx.send_replace(revision);
        tracing::debug!(resource = self.info.plural, revision, "watch cache loaded");
        Ok(())
    }

    /// Applies etcd's events until the watch breaks.
    async fn follow(&self, etcd: &Etcd) -> Result<(), StorageError> {
        let start = self.revision() + 1;
        let mut stream = etcd.watch(&self.prefix, start).await?;
        let mut progress_timer = tokio::time::interval(Duration::from_secs(5));
        loop {
            let response = tokio::select! {
                response = stream.message() => response.map_err(crate::storage::etcd::classify)?,
                _ = progress_timer.tick() => {
                    stream.request_progress().await.map_err(crate::storage::etcd::classify)?;
                    continue;
                }
                _ = self.progress_wanted.notified() => {
                    stream.request_progress().await.map_err(crate::storage::etcd::classify)?;
                    continue;
                }
            };
            let Some(response) = response else {
                return Err(StorageError::Unavailable("the etcd watch stream ended".to_string()));
            };
            if response.canceled() {
                if response.compact_revision() > 0 {
                    return Err(StorageError::Compacted { requested: start });
                }
                return Err(StorageError::Unavailable(format!(
                    "etcd canceled the watch: {}",
                    response.cancel_reason()
                )));
            }
            if response.events().is_empty() {
                // A progress notification: everything up to this revision has been seen.
                if let Some(header) = response.header() {
                    self.advance(header.revision());
                }
                continue;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                match event.event_type() {
                    EtcdEventType::Put => self.apply_put(key, kv.value(), kv.mod_revision()),
                    EtcdEventType::Delete => self.apply_delete(&key, kv.mod_revision()),
                }
            }
        }
    }

    fn apply_put(&self, key: String, value: &[u8], revision: i64) {
        let object = match self.codec.index(&key, value, revision) {
            Ok(object) => Arc::new(object),
            Err(e) => {
                tracing::error!(key, error = %e, "ignoring an undecodable object written to etcd");
                return;
            }
        };
        let mut state = self.write();
        let prev = state.objects.insert(key, object.clone());
        let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
        let event = Event { kind, revision, object, prev: prev.map(|p| p.attrs.clone()) };
        self.push(&mut state, event);
    }

    fn apply_delete(&self, key: &str, revision: i64) {
        let mut state = self.write();
        let Some(prev) = state.objects.remove(key) else {
            return;
        };
        let object = Arc::new(CachedObject {
            key: prev.key.clone(),
            bytes: with_revision(&prev.bytes, revision),
            revision,
            attrs: prev.attrs.clone(),
        });
        let event = Event { kind: EventType::Deleted, revision, object, prev: Some(prev.attrs.clone()) };
        self.push(&mut state, event);
    }

    fn push(&self, state: &mut State, event: Event) {
        let revision = event.revision;
        let event = Arc::new(event);
        if state.window.len() >= self.capacity {
            if let Some(evicted) = state.window.pop_front() {
                state.floor = evicted.revision;
            }
        }
        state.window.push_back(event.clone());
        state.revision = state.revision.max(revision);
        // No receivers is not an error: nobody is watching right now.
        let _ = state.sender.send(Item::Event(event));
        self.revision_tx.send_replace(state.revision);
    }

    fn advance(&self, revision: i64) {
        let mut state = self.write();
        if revision <= state.revision {
            return;
        }
        state.revision = revision;
        let _ = state.sender.send(Item::Progress(revision));
        drop(state);
        self.revision_tx.send_replace(revision);
    }
}

fn too_old(requested: i64, floor: i64) -> ApiError {
    ApiError::expired(format!(
        "too old resource version: {requested} (the server keeps changes after {floor}); list again and watch from the list's resourceVersion"
    ))
}

/// The event a filter sees: an update that moves an object into the filter is an
/// ADDED, out of it a DELETED.
fn transition(event: &Event, filter: &Filter) -> Option<EventType> {
    let now = filter.matches(&event.object.attrs);
    let before = event.prev.as_ref().is_some_and(|p| filter.matches(p));
    match event.kind {
        EventType::Added => now.then_some(EventType::Added),
        EventType::Deleted => before.then_some(EventType::Deleted),
        EventType::Modified => match (before, now) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
    }
}

/// An object's encoding with metadata.resourceVersion replaced. Protobuf merges a
/// repeated embedded message field into the first, so appending a `metadata` holding
/// only the new resourceVersion sets it without decoding the object.
pub fn with_revision(bytes: &Bytes, revision: i64) -> Bytes {
    let patch = PartialObjectMetadata {
        metadata: Some(ObjectMeta { resource_version: revision.to_string(), ..Default::default() }),
    };
    let mut out = Vec::with_capacity(bytes.len() + 24);
    out.extend_from_slice(bytes);
    patch.encode(&mut out).unwrap_or_default();
    Bytes::from(out)
}

/// The encoding of a bookmark: an object of any kind with only its resourceVersion.
pub fn bookmark(revision: i64) -> Bytes {
    PartialObjectMetadata {
        metadata: Some(ObjectMeta { resource_version: revision.to_string(), ..Default::default() }),
    }
    .encode_to_vec()
    .into()
}

impl Watcher {
    /// The next events for this watch, at most `max`, waiting for at least one.
    /// An error ends the watch: the client fell behind, or the cache was reloaded.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, ApiError> {
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some((kind, object)) = self.pending.pop_front() else {
                break;
            };
            batch.push(Delivery::Event(kind, object.bytes.clone()));
        }
        if !batch.is_empty() {
            return Ok(batch);
        }
        let first = self.receiver.recv().await;
        self.accept(first, &mut batch)?;
        while batch.len() < max {
            match self.receiver.try_recv() {
                Err(broadcast::error::TryRecvError::Empty) => break,
                other => {
                    let item = other.map_err(|e| match e {
                        broadcast::error::TryRecvError::Lagged(n) => broadcast::error::RecvError::Lagged(n),
                        _ => broadcast::error::RecvError::Closed,
                    });
                    self.accept(item, &mut batch)?;
                }
            }
        }
        Ok(batch)
    }

    fn accept(
        &mut self,
        item: Result<Item, broadcast::error::RecvError>,
        batch: &mut Vec<Delivery>,
    ) -> Result<(), ApiError> {
        match item {
            Ok(Item::Event(event)) => {
                if event.revision > self.min_revision {
                    self.delivered = self.delivered.max(event.revision);
                    if let Some(kind) = transition(&event, &self.filter) {
                        batch.push(Delivery::Event(kind, event.object.bytes.clone()));
                    }
                }
                Ok(())
            }
            Ok(Item::Progress(revision)) => {
                if revision > self.delivered {
                    self.delivered = revision;
                    batch.push(Delivery::Bookmark(revision));
                }
                Ok(())
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => Err(ApiError::new(
                Reason::TooManyRequests,
                format!(
                    "watch of {} closed: the client fell {missed} events behind; watch again from the last resourceVersion received",
                    self.info.plural
                ),
            )),
            Err(broadcast::error::RecvError::Closed) => Err(ApiError::expired(format!(
                "watch of {} closed: the server reloaded its cache from etcd; list again",
                self.info.plural
            ))),
        }
    }
}
