//! The Event recorder: controllers say what they did to an object ("Scheduled",
//! "SuccessfulCreate", "FailedScheduling"), and the recorder writes core/v1 Events in
//! the background. A repeat of the same event on the same object bumps the existing
//! Event's count and lastTimestamp instead of writing a new one. Recording never
//! blocks or fails the caller: when the apiserver is slow, events are dropped
//! (and logged) rather than slowing a control loop.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
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

/// Events written to the apiserver at once; distinct events don't wait on each other.
const IN_FLIGHT: usize = 16;

/// Writes what is queued in batches: repeats of one event within a batch become one
/// write with the whole count, and distinct events are written concurrently, so a
/// burst (a scheduler binding thousands of pods) drains instead of overflowing.
async fn write_events(client: Client, source: EventSource, mut rx: mpsc::Receiver<Record>) {
    let mut written: HashMap<Identity, Event> = HashMap::new();
    let mut batch = Vec::with_capacity(QUEUE);
    while rx.recv_many(&mut batch, QUEUE).await > 0 {
        let pending = coalesce(batch.drain(..));
        let writes = pending.into_iter().map(|(id, record, repeats)| {
            let previous = written.get(&id).cloned();
            let (client, source) = (&client, &source);
            async move { (id, write_event(client, source, record, repeats, previous).await) }
        });
        let results: Vec<_> = stream::iter(writes).buffer_unordered(IN_FLIGHT).collect().await;
        for (id, event) in results {
            let Some(event) = event else { continue };
            if written.len() >= REMEMBERED {
                written.clear();
            }
            written.insert(id, event);
        }
    }
}

/// Folds identical records together, keeping first-seen order.
fn coalesce(records: impl Iterator<Item = Record>) -> Vec<(Identity, Record, i32)> {
    let mut position: HashMap<Identity, usize> = HashMap::new();
    let mut out: Vec<(Identity, Record, i32)> = Vec::new();
    for record in records {
        let id = identity(&record);
        match position.get(&id) {
            Some(&i) => out[i].2 = out[i].2.saturating_add(1),
            None => {
                position.insert(id.clone(), out.len());
                out.push((id, record, 1));
            }
        }
    }
    out
}

/// Bumps the count of the Event written before for this identity, or creates a new
/// one; returns what the apiserver stored, or None when the write failed (logged).
async fn write_event(
    client: &Client,
    source: &EventSource,
    record: Record,
    repeats: i32,
    previous: Option<Event>,
) -> Option<Event> {
    let namespace = if record.object.namespace.is_empty() { "default" } else { &record.object.namespace };
    let api: Api<Event> = Api::namespaced(client, namespace);
    let now = Time::now();
    if let Some(mut event) = previous {
        event.count = event.count.saturating_add(repeats);
        event.last_timestamp = Some(now);
        // Whoever else touched the Event, the count is ours to bump.
        event.metadata_mut().resource_version.clear();
        match api.update(&event).await {
            Ok(updated) => return Some(updated),
            // Deleted meanwhile (TTL, namespace deletion): write it afresh.
            Err(e) if e.is(Reason::NotFound) => {}
            Err(e) => {
                tracing::warn!(error = %e, reason = %record.reason, "updating an event failed");
                return None;
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
        count: repeats,
        r#type: record.kind.as_str().to_string(),
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
        ..Default::default()
    };
    match api.create(&event).await {
        Ok(created) => Some(created),
        Err(e) => {
            tracing::warn!(error = %e, reason = %event.reason, "writing an event failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, reason: &str) -> Record {
        Record {
            object: ObjectReference {
                kind: "Pod".into(),
                name: name.into(),
                uid: format!("uid-{name}"),
                ..Default::default()
            },
            kind: EventType::Normal,
            reason: reason.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn coalesce_folds_repeats_and_keeps_order() {
        let records = vec![record("a", "X"), record("b", "X"), record("a", "X"), record("a", "Y"), record("a", "X")];
        let out = coalesce(records.into_iter());
        let summary: Vec<_> = out.iter().map(|(_, r, n)| (r.object.name.as_str(), r.reason.as_str(), *n)).collect();
        assert_eq!(summary, vec![("a", "X", 3), ("b", "X", 1), ("a", "Y", 1)]);
    }
}
