//! The Event recorder: controllers say what they did to an object ("Scheduled",
//! "SuccessfulCreate", "FailedScheduling"), and the recorder writes core/v1 Events in
//! the background. A repeat of the same event on the same object bumps the existing
//! Event's count and lastTimestamp instead of writing a new one. Recording never
//! blocks or fails the caller: when the apiserver is slow, events are dropped
//! (and logged) rather than slowing a control loop.

use std::collections::HashMap;

use proto::core::v1::{Event, EventSource, ObjectReference};
use proto::meta::v1::{ObjectMeta, Time};
use proto::{Reason, Resource};
use tokio::sync::mpsc;

use crate::{Api, Client};

/// Events waiting to be written before new ones are dropped.
const QUEUE: usize = 1000;
/// Distinct events remembered for aggregation.
const REMEMBERED: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Record {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Record>,
}

/// A reference to `object` for an Event's involvedObject.
pub fn reference_of<K: Resource>(object: &K) -> ObjectReference {
    let meta = object.metadata();
    ObjectReference {
        kind: K::INFO.kind.to_string(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        api_version: K::INFO.api_version(),
        resource_version: meta.resource_version.clone(),
        field_path: String::new(),
    }
}

impl EventRecorder {
    /// A recorder reporting as `component` on `host`; its writer runs on the
    /// current tokio runtime until every clone is dropped.
    pub fn new(client: &Client, component: &str, host: &str) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let source = EventSource { component: component.to_string(), host: host.to_string() };
        tokio::spawn(write_events(client.clone(), source, rx));
        EventRecorder { tx }
    }

    pub fn normal<K: Resource>(&self, object: &K, reason: &str, message: impl Into<String>) {
        self.record(reference_of(object), EventType::Normal, reason, message);
    }

    pub fn warning<K: Resource>(&self, object: &K, reason: &str, message: impl Into<String>) {
        self.record(reference_of(object), EventType::Warning, reason, message);
    }

    pub fn record(&self, object: ObjectReference, kind: EventType, reason: &str, message: impl Into<String>) {
        let record = Record { object, kind, reason: reason.to_string(), message: message.into() };
        if let Err(e) = self.tx.try_send(record) {
            tracing::warn!(error = %e, "dropping an event: the recorder's queue is full");
        }
    }
}

/// What makes two events the same for aggregation.
type Identity = (String, String, String, String, EventType, String, String);

fn identity(record: &Record) -> Identity {
    let o = &record.object;
    (
        o.uid.clone(),
        o.kind.clone(),
        o.namespace.clone(),
        o.name.clone(),
        record.kind,
        record.reason.clone(),
        record.message.clone(),
    )
}

async fn write_events(client: Client, source: EventSource, mut rx: mpsc::Receiver<Record>) {
    let mut written: HashMap<Identity, Event> = HashMap::new();
    while let Some(record) = rx.recv().await {
        let namespace = if record.object.namespace.is_empty() { "default" } else { &record.object.namespace };
        let api: Api<Event> = Api::namespaced(&client, namespace);
        let id = identity(&record);
        let now = Time::now();
        if let Some(previous) = written.get(&id) {
            let mut event = previous.clone();
            event.count += 1;
            event.last_timestamp = Some(now);
            // Whoever else touched the Event, the count is ours to bump.
            event.metadata_mut().resource_version.clear();
            match api.update(&event).await {
                Ok(updated) => {
                    written.insert(id, updated);
                    continue;
                }
                Err(e) if e.is(Reason::NotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, reason = %record.reason, "updating an event failed");
                    continue;
                }
            }
        }
        let nanos = now.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(now.nanos));
        let event = Event {
            metadata: Some(ObjectMeta {
                name: format!("{}.{:x}", record.object.name, nanos),
                namespace: namespace.to_string(),
                ..Default::default()
            }),
            involved_object: Some(record.object),
            reason: record.reason,
            message: record.message,
            source: Some(source.clone()),
            first_timestamp: Some(now),
            last_timestamp: Some(now),
            count: 1,
            r#type: record.kind.as_str().to_string(),
            reporting_component: source.component.clone(),
            reporting_instance: source.host.clone(),
            ..Default::default()
        };
        match api.create(&event).await {
            Ok(created) => {
                if written.len() >= REMEMBERED {
                    written.clear();
                }
                written.insert(id, created);
            }
            Err(e) => tracing::warn!(error = %e, reason = %event.reason, "writing an event failed"),
        }
    }
}
