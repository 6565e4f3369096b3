//! A stateful pod's identity: its name `<set>-<ordinal>`, its hostname and
//! subdomain (the set's serviceName, for stable DNS names), and its claims
//! `<template>-<set>-<ordinal>`, made from the volumeClaimTemplates and mounted
//! in place of the template's volumes of the same name.

use std::collections::BTreeMap;

use proto::Resource;
use proto::apps::v1::StatefulSet;
use proto::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use proto::meta::v1::ObjectMeta;

use crate::ownership::controller_reference;
use crate::revisions::HASH_LABEL;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of a pod named `<set>-<ordinal>`, written as Kubernetes writes it.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{}", pod_name(set, ordinal))
}

/// The set's claims for `ordinal`, labelled with the set's selector labels and not
/// owned by the set, so they outlive its pods and the set itself.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let meta = set.metadata();
    let spec = set.spec.clone().unwrap_or_default();
    let selector_labels = spec.selector.map(|s| s.match_labels).unwrap_or_default();
    spec.volume_claim_templates
        .into_iter()
        .map(|template| {
            let template_meta = template.metadata.unwrap_or_default();
            let mut labels: BTreeMap<String, String> = template_meta.labels;
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: Some(ObjectMeta {
                    name: claim_name(&template_meta.name, &meta.name, ordinal),
                    namespace: meta.namespace.clone(),
                    labels,
                    annotations: template_meta.annotations,
                    ..Default::default()
                }),
                spec: template.spec,
                status: None,
            }
        })
        .collect()
}

/// The pod for `ordinal` from `template` (the template of `revision`).
pub fn pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let meta = set.metadata();
    let spec = set.spec.clone().unwrap_or_default();
    let name = pod_name(&meta.name, ordinal);
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels;
    labels.insert(HASH_LABEL.into(), revision.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = name.clone();
    pod_spec.subdomain = spec.service_name.clone();
    for claim in &spec.volume_claim_templates {
        let volume = claim.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        pod_spec.volumes.retain(|v| v.name != volume);
        pod_spec.volumes.push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&volume, &meta.name, ordinal),
                read_only: false,
            }),
            ..Default::default()
        });
    }
    Pod {
        metadata: Some(ObjectMeta {
            name,
            namespace: meta.namespace.clone(),
            labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: vec![controller_reference(set)],
            ..Default::default()
        }),
        spec: Some(pod_spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_read_only_from_canonical_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-012"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webs-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(claim_name("data", "web", 2), "data-web-2");
    }
}
