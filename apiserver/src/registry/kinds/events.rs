//! Events: selectable by the object they are about (`involvedObject.*`), reason,
//! type and source, as Kubernetes allows, so `describe` finds an object's Events.

use proto::core::v1::Event;

use crate::registry::Strategy;

pub struct EventStrategy;

const FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

impl Strategy<Event> for EventStrategy {
    fn field_names(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn fields(&self, event: &Event) -> Vec<(&'static str, String)> {
        let o = event.involved_object.clone().unwrap_or_default();
        let source = event.source.as_ref().map(|s| s.component.clone()).unwrap_or_default();
        let values = [
            o.kind,
            o.namespace,
            o.name,
            o.uid,
            o.api_version,
            o.resource_version,
            o.field_path,
            event.reason.clone(),
            event.reporting_component.clone(),
            source,
            event.r#type.clone(),
        ];
        FIELDS.iter().copied().zip(values).collect()
    }
}
