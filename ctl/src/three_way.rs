//! kubectl's three-way merge for `apply`, as a JSON merge patch: from the last
//! applied manifest (`original`), the new one (`modified`) and the live object
//! (`current`). Fields the new manifest dropped since the last apply are removed;
//! fields it sets are set where the live object differs; fields neither manifest
//! mentions (server defaults, other writers' fields) are left alone. Lists are
//! replaced whole, as merge patches do, when the manifest's list changed or the live
//! one no longer holds it.

use serde_json::{Map, Value as Json};

/// The annotation that holds the last applied manifest, as kubectl names it.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The merge patch that takes `current` to what `modified` asks, removing what
/// `original` had and `modified` no longer has. An empty object means "nothing to do".
pub fn patch(original: &Json, modified: &Json, current: &Json) -> Json {
    let empty = Map::new();
    let original = original.as_object().unwrap_or(&empty);
    let modified_map = modified.as_object().unwrap_or(&empty);
    let current_map = current.as_object().unwrap_or(&empty);
    Json::Object(patch_maps(original, modified_map, current_map))
}

fn patch_maps(
    original: &Map<String, Json>,
    modified: &Map<String, Json>,
    current: &Map<String, Json>,
) -> Map<String, Json> {
    let mut out = Map::new();
    // Deletions: in the last manifest, gone from the new one, still live.
    for key in original.keys() {
        if !modified.contains_key(key) && current.get(key).is_some_and(|v| !v.is_null()) {
            out.insert(key.clone(), Json::Null);
        }
    }
    for (key, wanted) in modified {
        let live = current.get(key);
        let before = original.get(key);
        match (wanted, live) {
            (Json::Object(wanted), Some(Json::Object(live))) => {
                let empty = Map::new();
                let before = before.and_then(Json::as_object).unwrap_or(&empty);
                let nested = patch_maps(before, wanted, live);
                if !nested.is_empty() {
                    out.insert(key.clone(), Json::Object(nested));
                }
            }
            (Json::Array(_), Some(live @ Json::Array(_))) => {
                let manifest_changed = before.is_some_and(|b| b != wanted);
                if manifest_changed || !contains(live, wanted) {
                    out.insert(key.clone(), wanted.clone());
                }
            }
            (wanted, Some(live)) if wanted == live => {}
            (Json::Null, None) => {}
            (wanted, _) => {
                out.insert(key.clone(), wanted.clone());
            }
        }
    }
    out
}

/// Whether `live` holds every field of `wanted` with the same value (lists element
/// by element, of the same length): server-filled defaults inside do not count as
/// a difference.
pub fn contains(live: &Json, wanted: &Json) -> bool {
    match (live, wanted) {
        (Json::Object(live), Json::Object(wanted)) => {
            wanted.iter().all(|(key, value)| live.get(key).is_some_and(|l| contains(l, value)) || value.is_null())
        }
        (Json::Array(live), Json::Array(wanted)) => {
            live.len() == wanted.len() && live.iter().zip(wanted).all(|(l, w)| contains(l, w))
        }
        (live, wanted) => live == wanted,
    }
}

/// RFC 7386: what the server does with a merge patch (for client-side dry runs).
pub fn merge(target: &Json, patch: &Json) -> Json {
    let Json::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Json::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            let current = target.remove(key).unwrap_or(Json::Null);
            target.insert(key.clone(), merge(&current, value));
        }
    }
    Json::Object(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_dropped_from_the_manifest_is_removed() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1", "y": "2"}});
        let modified = json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "1"}});
        let current = json!({"metadata": {"labels": {"a": "1", "b": "2", "other": "3"}, "uid": "u"}, "data": {"x": "1", "y": "2"}});
        assert_eq!(
            patch(&original, &modified, &current),
            json!({"metadata": {"labels": {"b": null}}, "data": {"y": null}})
        );
    }

    #[test]
    fn fields_others_set_are_kept_and_unchanged_manifests_patch_nothing() {
        let manifest = json!({"spec": {"replicas": 2, "ports": [{"port": 80}]}});
        let current =
            json!({"spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}});
        assert_eq!(patch(&manifest, &manifest, &current), json!({}));
        // A first apply of an object created otherwise: no original.
        assert_eq!(patch(&json!({}), &manifest, &current), json!({}));
    }

    #[test]
    fn changed_values_and_lists_are_set() {
        let original = json!({"spec": {"replicas": 2, "ports": [{"port": 80, "name": "http"}]}});
        let modified = json!({"spec": {"replicas": 3, "ports": [{"port": 80}]}});
        let current = json!({"spec": {"replicas": 2, "ports": [{"port": 80, "name": "http", "protocol": "TCP"}]}});
        assert_eq!(patch(&original, &modified, &current), json!({"spec": {"replicas": 3, "ports": [{"port": 80}]}}));
        // Someone changed the live list: the manifest's list is put back.
        let drifted = json!({"spec": {"replicas": 3, "ports": [{"port": 81}]}});
        assert_eq!(patch(&modified, &modified, &drifted), json!({"spec": {"ports": [{"port": 80}]}}));
    }

    #[test]
    fn merge_follows_rfc7386() {
        let target = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        assert_eq!(
            merge(&target, &json!({"a": {"b": null, "e": 3}, "d": [2]})),
            json!({"a": {"c": 2, "e": 3}, "d": [2]})
        );
    }
}
