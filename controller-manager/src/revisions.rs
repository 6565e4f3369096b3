//! ControllerRevisions: the history of a StatefulSet's or DaemonSet's pod
//! template. Each distinct template is one revision named `<owner>-<hash>`
//! (the hash of the template, as a Deployment's ReplicaSets are named), owned by
//! its set and labelled as the set's pods; pods carry the revision's name in
//! `controller-revision-hash`. Going back to an old template reuses its revision
//! with a new number. Revisions no pod uses beyond revisionHistoryLimit are removed.

use std::collections::BTreeMap;

use client::{Api, Client};
use proto::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use proto::core::v1::PodTemplateSpec;
use proto::meta::v1::{ObjectMeta, RawExtension};
use proto::{ApiError, Reason, Resource};

use crate::controllers::deployment::template_hash;
use crate::ownership::controller_reference;

/// The label on pods naming the revision they were made from.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The revision name for `template` of the set `owner`.
pub fn name_for(owner: &str, template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    format!("{owner}-{}", template_hash::compute(template, collision_count))
}

/// The revision's data: `{"spec":{"template":...}}` in Kubernetes form, as
/// Kubernetes stores it (readable with `get controllerrevision -o yaml`).
pub fn data_for(template: &PodTemplateSpec) -> RawExtension {
    let holder = StatefulSet {
        metadata: None,
        spec: Some(StatefulSetSpec { template: Some(template.clone()), ..Default::default() }),
        status: None,
    };
    let template = proto::codec::encode(&holder).get("spec").and_then(|s| s.get("template")).cloned();
    let data = serde_json::json!({ "spec": { "template": template } });
    RawExtension { raw: serde_json::to_vec(&data).unwrap_or_default().into() }
}

/// The template a revision holds, if its data reads as one.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let raw = &revision.data.as_ref()?.raw;
    let data: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let holder = serde_json::json!({ "spec": { "template": data.get("spec")?.get("template")? } });
    proto::codec::decode::<StatefulSet>(&holder).ok()?.spec?.template
}

/// A set's history after a sync.
pub struct History {
    /// The revision of the set's template now.
    pub update: ControllerRevision,
    /// The revision the set had rolled out before (the update one if none).
    pub current: ControllerRevision,
}

/// Makes sure the revision of `template` exists and is the newest, finds the
/// current one, and prunes unused revisions beyond `limit`. `owned` are the set's
/// revisions; `in_use` tells whether some pod still runs a revision.
#[allow(clippy::too_many_arguments)]
pub async fn sync<K: Resource>(
    client: &Client,
    owner: &K,
    labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
    mut owned: Vec<ControllerRevision>,
    current_name: &str,
    limit: i32,
    in_use: impl Fn(&str) -> bool,
) -> Result<History, ApiError> {
    let meta = owner.metadata();
    let api: Api<ControllerRevision> = Api::namespaced(client, &meta.namespace);
    owned.sort_by_key(|r| r.revision);
    let newest = owned.last().map_or(0, |r| r.revision);
    let name = name_for(&meta.name, template, collision_count);
    let update = match owned.iter().find(|r| r.metadata().name == name) {
        Some(existing) if existing.revision == newest => existing.clone(),
        // Back to an old template: it becomes the newest revision again.
        Some(existing) => {
            let mut bumped = existing.clone();
            bumped.revision = newest + 1;
            api.update(&bumped).await?
        }
        None => {
            let revision = ControllerRevision {
                metadata: Some(ObjectMeta {
                    name: name.clone(),
                    namespace: meta.namespace.clone(),
                    labels: labels.clone(),
                    owner_references: vec![controller_reference(owner)],
                    ..Default::default()
                }),
                data: Some(data_for(template)),
                revision: newest + 1,
            };
            match api.create(&revision).await {
                Ok(created) => created,
                // Ours, not yet in the cache.
                Err(e) if e.is(Reason::AlreadyExists) => api.get(&name).await?,
                Err(e) => return Err(e),
            }
        }
    };
    let current = owned.iter().find(|r| r.metadata().name == current_name).cloned().unwrap_or_else(|| update.clone());

    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    let prunable: Vec<&ControllerRevision> = owned
        .iter()
        .filter(|r| {
            let n = &r.metadata().name;
            *n != update.metadata().name && *n != current.metadata().name && !in_use(n)
        })
        .collect();
    for old in prunable.iter().take(prunable.len().saturating_sub(keep)) {
        match api.delete(&old.metadata().name, Default::default()).await {
            Ok(_) => {}
            Err(e) if e.is(Reason::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(History { update, current })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::{Container, PodSpec};

    #[test]
    fn a_revision_gives_back_its_template() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: [("app".into(), "db".into())].into(), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: "busybox:1".into(), ..Default::default() }],
                ..Default::default()
            }),
        };
        let revision = ControllerRevision { metadata: None, data: Some(data_for(&template)), revision: 1 };
        assert_eq!(template_of(&revision), Some(template.clone()));
        let mut other = template.clone();
        other.spec.as_mut().unwrap().containers[0].image = "busybox:2".into();
        assert_ne!(name_for("db", &template, None), name_for("db", &other, None));
        assert_eq!(name_for("db", &template, None), name_for("db", &template.clone(), None));
    }
}
