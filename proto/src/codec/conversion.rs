//! Older apiVersions of the served kinds, converted to the served version before
//! decoding, with the defaults those versions had.
//!
//! Manifests written for older Kubernetes releases still say `extensions/v1beta1` or
//! `apps/v1beta1`. Their schemas are the served ones plus a few differences: the
//! selector could be left out (it defaulted to the pod template's labels), and some
//! defaults differed (extensions/v1beta1 Deployments surged and tolerated one pod, kept
//! every old ReplicaSet and had no progress deadline). Writing those defaults in
//! explicitly keeps such manifests behaving as they did.

use serde_json::{Map, Value as Json, json};

use crate::resource::{KindInfo, kinds};

/// An old apiVersion's kind, the kind it is served as, and how to convert it.
struct OldVersion {
    api_version: &'static str,
    kind: &'static str,
    served: &'static KindInfo,
    convert: fn(&mut Map<String, Json>) -> Result<(), String>,
}

const OLD_VERSIONS: &[OldVersion] = &[
    OldVersion {
        api_version: "extensions/v1beta1",
        kind: "Deployment",
        served: &kinds::DEPLOYMENT,
        convert: deployment_extensions_v1beta1,
    },
    OldVersion {
        api_version: "apps/v1beta1",
        kind: "Deployment",
        served: &kinds::DEPLOYMENT,
        convert: deployment_apps_v1beta1,
    },
    OldVersion {
        api_version: "apps/v1beta2",
        kind: "Deployment",
        served: &kinds::DEPLOYMENT,
        convert: default_selector,
    },
    OldVersion {
        api_version: "extensions/v1beta1",
        kind: "ReplicaSet",
        served: &kinds::REPLICA_SET,
        convert: default_selector,
    },
    OldVersion {
        api_version: "apps/v1beta2",
        kind: "ReplicaSet",
        served: &kinds::REPLICA_SET,
        convert: default_selector,
    },
    OldVersion {
        api_version: "extensions/v1beta1",
        kind: "DaemonSet",
        served: &kinds::DAEMON_SET,
        convert: daemonset_extensions_v1beta1,
    },
    OldVersion {
        api_version: "apps/v1beta2",
        kind: "DaemonSet",
        served: &kinds::DAEMON_SET,
        convert: default_selector,
    },
    OldVersion {
        api_version: "apps/v1beta1",
        kind: "StatefulSet",
        served: &kinds::STATEFUL_SET,
        convert: statefulset_apps_v1beta1,
    },
    OldVersion {
        api_version: "apps/v1beta2",
        kind: "StatefulSet",
        served: &kinds::STATEFUL_SET,
        convert: default_selector,
    },
    OldVersion {
        api_version: "apps/v1beta1",
        kind: "ControllerRevision",
        served: &kinds::CONTROLLER_REVISION,
        convert: unchanged,
    },
    OldVersion {
        api_version: "apps/v1beta2",
        kind: "ControllerRevision",
        served: &kinds::CONTROLLER_REVISION,
        convert: unchanged,
    },
    OldVersion { api_version: "batch/v1beta1", kind: "CronJob", served: &kinds::CRON_JOB, convert: unchanged },
    OldVersion { api_version: "coordination.k8s.io/v1beta1", kind: "Lease", served: &kinds::LEASE, convert: unchanged },
];

/// If `api_version`/`kind` is an older version of a served kind, converts `object` in
/// place to the served version and returns that kind. `Ok(None)`: not an old version.
pub fn to_served(
    api_version: &str,
    kind: &str,
    object: &mut Map<String, Json>,
) -> Result<Option<&'static KindInfo>, String> {
    let Some(old) = OLD_VERSIONS.iter().find(|o| o.api_version == api_version && o.kind == kind) else {
        return Ok(None);
    };
    (old.convert)(object)?;
    object.insert("apiVersion".to_string(), Json::String(old.served.api_version()));
    Ok(Some(old.served))
}

/// Whether some version of `kind` is known, for a helpful error on an unknown version.
pub fn known_versions(kind: &str) -> Vec<String> {
    let mut versions: Vec<String> = crate::resource::KINDS
        .iter()
        .filter(|k| k.kind == kind)
        .map(|k| k.api_version())
        .chain(OLD_VERSIONS.iter().filter(|o| o.kind == kind).map(|o| o.api_version.to_string()))
        .collect();
    versions.dedup();
    versions
}

fn unchanged(_: &mut Map<String, Json>) -> Result<(), String> {
    Ok(())
}

fn spec(object: &mut Map<String, Json>) -> Option<&mut Map<String, Json>> {
    object.get_mut("spec").and_then(Json::as_object_mut)
}

/// A missing selector defaults to the pod template's labels.
fn default_selector(object: &mut Map<String, Json>) -> Result<(), String> {
    let Some(spec) = spec(object) else {
        return Ok(());
    };
    if spec.get("selector").is_some_and(|s| !s.is_null()) {
        return Ok(());
    }
    let labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.as_object().is_some_and(|l| !l.is_empty()))
        .cloned();
    if let Some(labels) = labels {
        spec.insert("selector".to_string(), json!({ "matchLabels": labels }));
    }
    Ok(())
}

fn reject_rollback_to(object: &mut Map<String, Json>) -> Result<(), String> {
    if spec(object).is_some_and(|s| s.contains_key("rollbackTo")) {
        return Err(
            "spec.rollbackTo: no longer supported; roll back with `ctl rollout undo deployment/NAME --to-revision=N`"
                .to_string(),
        );
    }
    Ok(())
}

fn set_default(map: &mut Map<String, Json>, key: &str, value: Json) {
    if map.get(key).is_none_or(Json::is_null) {
        map.insert(key.to_string(), value);
    }
}

fn deployment_extensions_v1beta1(object: &mut Map<String, Json>) -> Result<(), String> {
    reject_rollback_to(object)?;
    default_selector(object)?;
    let Some(spec) = spec(object) else {
        return Ok(());
    };
    set_default(spec, "revisionHistoryLimit", json!(i32::MAX));
    set_default(spec, "progressDeadlineSeconds", json!(i32::MAX));
    set_default(spec, "strategy", json!({}));
    if let Some(strategy) = spec.get_mut("strategy").and_then(Json::as_object_mut) {
        let rolling = strategy.get("type").is_none_or(|t| t.is_null() || t == "RollingUpdate");
        if rolling {
            set_default(strategy, "type", json!("RollingUpdate"));
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(update) = strategy.get_mut("rollingUpdate").and_then(Json::as_object_mut) {
                set_default(update, "maxSurge", json!(1));
                set_default(update, "maxUnavailable", json!(1));
            }
        }
    }
    Ok(())
}

fn deployment_apps_v1beta1(object: &mut Map<String, Json>) -> Result<(), String> {
    reject_rollback_to(object)?;
    default_selector(object)?;
    if let Some(spec) = spec(object) {
        set_default(spec, "revisionHistoryLimit", json!(2));
    }
    Ok(())
}

fn daemonset_extensions_v1beta1(object: &mut Map<String, Json>) -> Result<(), String> {
    default_selector(object)?;
    let Some(spec) = spec(object) else {
        return Ok(());
    };
    // templateGeneration only drove extensions/v1beta1's own update bookkeeping; the
    // served version tracks template changes with ControllerRevisions instead.
    spec.remove("templateGeneration");
    set_default(spec, "updateStrategy", json!({ "type": "OnDelete" }));
    Ok(())
}

fn statefulset_apps_v1beta1(object: &mut Map<String, Json>) -> Result<(), String> {
    default_selector(object)?;
    if let Some(spec) = spec(object) {
        set_default(spec, "updateStrategy", json!({ "type": "OnDelete" }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn extensions_deployment_gets_selector_and_old_defaults() {
        let mut o = object(json!({
            "apiVersion": "extensions/v1beta1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": 1}},
                     "template": {"metadata": {"labels": {"app": "web"}}}}
        }));
        let served = to_served("extensions/v1beta1", "Deployment", &mut o).unwrap();
        assert_eq!(served, Some(&kinds::DEPLOYMENT));
        assert_eq!(o["apiVersion"], "apps/v1");
        assert_eq!(o["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
        assert_eq!(o["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": 1, "maxUnavailable": 1}));
        assert_eq!(o["spec"]["strategy"]["type"], "RollingUpdate");
        assert_eq!(o["spec"]["revisionHistoryLimit"], json!(i32::MAX));
    }

    #[test]
    fn explicit_selector_is_kept_and_recreate_gets_no_rolling_defaults() {
        let mut o = object(json!({
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": {"app": "web"}}}}
        }));
        to_served("extensions/v1beta1", "Deployment", &mut o).unwrap();
        assert_eq!(o["spec"]["selector"], json!({"matchLabels": {"a": "b"}}));
        assert_eq!(o["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn rollback_to_is_refused_with_the_replacement() {
        let mut o = object(json!({"spec": {"rollbackTo": {"revision": 1}}}));
        let err = to_served("apps/v1beta1", "Deployment", &mut o).unwrap_err();
        assert!(err.contains("rollout undo"), "{err}");
    }

    #[test]
    fn served_versions_are_not_converted() {
        let mut o = Map::new();
        assert_eq!(to_served("apps/v1", "Deployment", &mut o).unwrap(), None);
        assert_eq!(known_versions("Deployment")[0], "apps/v1");
        assert!(known_versions("Deployment").contains(&"extensions/v1beta1".to_string()));
    }
}
