//! The watch cache: one etcd watch per resource feeds the current state of every
//! object and a bounded window of recent events, from which any number of client
//! watches fan out.
//!
//! Exactness: events enter the window and the broadcast channel under one lock, and a
//! client watch snapshots the window and subscribes under the same lock, so it sees
//! every event after its starting revision exactly once, in order. A start older than
//! the window answers Expired, and the client relists. A watcher that falls further
//! behind than the channel holds is closed with a reason; it never slows the others.
//!
//! The cache's revision advances only on events and on etcd's *timed* progress
//! notifications. Etcd 3.4 answers a *requested* progress notification (and a watch's
//! "created" response) with the store's revision, which can run ahead of events not yet
//! sent (etcd-io/etcd#15220), so neither is trusted. A watch that must start from the
//! current state therefore reads that state from etcd rather than waiting for the cache.

pub mod filter;
pub mod slim;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::EventType as EtcdEventType;
use prost::Message as _;
use proto::meta::v1::{ObjectMeta, PartialObjectMetadata};
use proto::{ApiError, KindInfo, Reason};
use tokio::sync::broadcast;

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

/// Where a client watch starts.
#[derive(Debug)]
pub enum Start {
    /// Every change after this revision.
    After(i64),
    /// The cache's current state as ADDED events, then every later change (a watch
    /// from resourceVersion "0": any recent state will do).
    CachedState,
    /// The given state, read from etcd at `revision`, as ADDED events, then every
    /// change after it.
    Snapshot { objects: Vec<Arc<CachedObject>>, revision: i64 },
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

    /// Starts a client watch from `start`.
    pub fn watch(&self, start: Start, filter: Filter) -> Result<Watcher, ApiError> {
        let state = self.read();
        if !state.ready {
            return Err(ApiError::unavailable(format!("the watch cache of {} is still loading", self.info.plural)));
        }
        let mut pending = VecDeque::new();
        let min_revision = match start {
            Start::After(r) => {
                if r < state.floor {
                    return Err(too_old(r, state.floor));
                }
                pending.extend(window_after(&state, r, &filter));
                r
            }
            Start::CachedState => {
                for object in state.objects.values().filter(|o| filter.matches(&o.attrs)) {
                    pending.push_back((EventType::Added, object.clone()));
                }
                state.revision
            }
            Start::Snapshot { objects, revision } => {
                if revision < state.floor {
                    return Err(too_old(revision, state.floor));
                }
                for object in objects.into_iter().filter(|o| filter.matches(&o.attrs)) {
                    pending.push_back((EventType::Added, object));
                }
                // The cache may already be past the snapshot: those events follow it.
                pending.extend(window_after(&state, revision, &filter));
                revision
            }
        };
        let receiver = state.sender.subscribe();
        let delivered = min_revision.max(state.revision);
        Ok(Watcher { pending, receiver, min_revision, delivered, filter, info: self.info })
    }

    /// The objects under `key_prefix` as etcd holds them now, for `Start::Snapshot`.
    pub async fn snapshot(&self, etcd: &Etcd, key_prefix: &str) -> Result<Start, StorageError> {
        let (objects, revision) = self.load(etcd, key_prefix).await?;
        Ok(Start::Snapshot { objects: objects.into_values().collect(), revision })
    }

    /// Keeps the cache in step with etcd until the process ends.
    pub async fn run(self: Arc<Self>, etcd: Etcd) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if !self.is_ready()
                && let Err(e) = self.reload(&etcd).await
            {
                tracing::warn!(resource = self.info.plural, error = %e, "loading the watch cache failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
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
        let (objects, revision) = self.load(etcd, &self.prefix).await?;
        let mut state = self.write();
        let (sender, _) = broadcast::channel(self.capacity);
        state.sender = sender;
        state.objects = objects;
        state.window.clear();
        state.floor = revision;
        state.revision = revision;
        state.ready = true;
        drop(state);
        tracing::debug!(resource = self.info.plural, revision, "watch cache loaded");
        Ok(())
    }

    /// Every object under `key_prefix` at one revision, read in pages.
    async fn load(
        &self,
        etcd: &Etcd,
        key_prefix: &str,
    ) -> Result<(BTreeMap<String, Arc<CachedObject>>, i64), StorageError> {
        let mut objects = BTreeMap::new();
        let mut start: Option<String> = None;
        let mut revision = 0;
        loop {
            let (entries, read_revision, more) = etcd.list(key_prefix, start.as_deref(), revision, 1000).await?;
            revision = read_revision;
            let last_key = entries.last().map(|(k, _)| k.clone());
            for (key, stored) in entries {
                match self.codec.index(&key, &stored.value, stored.mod_revision) {
                    Ok(object) => {
                        objects.insert(key, Arc::new(object));
                    }
                    Err(e) => tracing::error!(key, error = %e, "skipping an undecodable object in etcd"),
                }
            }
            match (more, last_key) {
                (true, Some(last)) => start = Some(format!("{last}\0")),
                _ => return Ok((objects, revision)),
            }
        }
    }

    /// Applies etcd's events until the watch breaks.
    async fn follow(&self, etcd: &Etcd) -> Result<(), StorageError> {
        let start = self.revision() + 1;
        let mut stream = etcd.watch(&self.prefix, start).await?;
        loop {
            let response = stream.message().await.map_err(crate::storage::etcd::classify)?;
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
            if response.created() {
                // Its header is the store's revision, not what this watch has sent.
                continue;
            }
            if response.events().is_empty() {
                // A timed progress notification: these go through the same queue as
                // events, so everything up to this revision has been seen.
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
        if state.window.len() >= self.capacity
            && let Some(evicted) = state.window.pop_front()
        {
            state.floor = evicted.revision;
        }
        state.window.push_back(event.clone());
        state.revision = state.revision.max(revision);
        // No receivers is not an error: nobody is watching right now.
        let _ = state.sender.send(Item::Event(event));
    }

    fn advance(&self, revision: i64) {
        let mut state = self.write();
        if revision <= state.revision {
            return;
        }
        state.revision = revision;
        let _ = state.sender.send(Item::Progress(revision));
    }
}

/// The window's events after `revision`, as `filter` sees them.
fn window_after<'a>(
    state: &'a State,
    revision: i64,
    filter: &'a Filter,
) -> impl Iterator<Item = (EventType, Arc<CachedObject>)> + 'a {
    state
        .window
        .iter()
        .filter(move |e| e.revision > revision)
        .filter_map(move |e| transition(e, filter).map(|kind| (kind, e.object.clone())))
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
pub fn with_revision(bytes: &[u8], revision: i64) -> Bytes {
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
