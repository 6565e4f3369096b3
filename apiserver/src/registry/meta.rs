//! Rules for metadata that hold for every kind: names, labels, annotations, owner
//! references, finalizers, and what a client may not change on update.

use proto::KindInfo;
use proto::codec::FieldError;
use proto::meta::v1::ObjectMeta;
use proto::validation;

use super::strategy::NameRule;

/// Annotation and label limits are Kubernetes'.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

pub fn validate(meta: &ObjectMeta, info: &KindInfo, rule: NameRule) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if meta.name.is_empty() {
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        let problems = match rule {
            NameRule::Subdomain | NameRule::Any => validation::is_dns1123_subdomain(&meta.name),
            NameRule::Label => validation::is_dns1123_label(&meta.name),
            NameRule::Label1035 => validation::is_dns1035_label(&meta.name),
        };
        for problem in problems {
            errors.push(FieldError::invalid("metadata.name", &meta.name, &problem));
        }
    }
    if info.namespaced {
        for problem in validation::is_dns1123_label(&meta.namespace) {
            errors.push(FieldError::invalid("metadata.namespace", &meta.namespace, &problem));
        }
    } else if !meta.namespace.is_empty() {
        errors.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    for (key, value) in &meta.labels {
        for problem in validation::is_qualified_name(key) {
            errors.push(FieldError::invalid("metadata.labels", key, &problem));
        }
        for problem in validation::is_valid_label_value(value) {
            errors.push(FieldError::invalid("metadata.labels", value, &problem));
        }
    }
    let mut annotations_size = 0;
    for (key, value) in &meta.annotations {
        for problem in validation::is_qualified_name(&key.to_ascii_lowercase()) {
            errors.push(FieldError::invalid("metadata.annotations", key, &problem));
        }
        annotations_size += key.len() + value.len();
    }
    if annotations_size > MAX_ANNOTATIONS_BYTES {
        errors.push(FieldError::too_long("metadata.annotations", MAX_ANNOTATIONS_BYTES));
    }
    let mut controllers = 0;
    for (i, owner) in meta.owner_references.iter().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        if owner.api_version.is_empty() {
            errors.push(FieldError::required(format!("{path}.apiVersion"), ""));
        }
        if owner.kind.is_empty() {
            errors.push(FieldError::required(format!("{path}.kind"), ""));
        }
        if owner.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        if owner.uid.is_empty() {
            errors.push(FieldError::required(format!("{path}.uid"), ""));
        }
        if owner.controller == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        errors.push(FieldError::invalid(
            "metadata.ownerReferences",
            controllers,
            "Only one reference can have Controller set to true",
        ));
    }
    for (i, finalizer) in meta.finalizers.iter().enumerate() {
        let path = format!("metadata.finalizers[{i}]");
        for problem in validation::is_qualified_name(finalizer) {
            errors.push(FieldError::invalid(&path, finalizer, &problem));
        }
        if meta.finalizers[..i].contains(finalizer) {
            errors.push(FieldError::duplicate(&path, finalizer));
        }
    }
    errors
}

/// Carries over what a client may not change on update and checks what it may only
/// change in some ways. `generation` is bumped by the caller, which knows the kind's
/// spec.
pub fn carry_over(new: &mut ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !new.uid.is_empty() && new.uid != old.uid {
        errors.push(FieldError::immutable("metadata.uid", &new.uid));
    }
    new.uid = old.uid.clone();
    new.creation_timestamp = old.creation_timestamp;
    new.deletion_timestamp = old.deletion_timestamp;
    new.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    new.generate_name = old.generate_name.clone();
    new.generation = old.generation;
    new.self_link.clear();
    new.managed_fields.clear();
    new.resource_version.clear();
    if old.deletion_timestamp.is_some() {
        for finalizer in &new.finalizers {
            if !old.finalizers.contains(finalizer) {
                errors.push(FieldError::forbidden(
                    "metadata.finalizers",
                    &format!("no new finalizers can be added if the object is being deleted, found new finalizer \"{finalizer}\""),
                ));
            }
        }
    }
    errors
}
