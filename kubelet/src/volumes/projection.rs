//! Volumes whose files the kubelet writes itself: configMap, secret, downwardAPI and
//! projected (several of those in one directory). Each is first a list of files
//! (path, bytes, mode), then written into the volume's directory, where unchanged
//! files are left alone and files no longer wanted are removed, so a refresh after
//! the object changes updates the volume in place.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path};

use proto::core::v1::{DownwardApiVolumeFile, KeyToPath, Pod};

use super::{VolumeError, invalid, io};

/// One file of a volume: its path inside the volume, its content and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: i32,
}

/// An object's keys as files: all of them, or only `items` (each under its own path,
/// with its own mode). A key named by an item must exist.
pub fn select(
    volume: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    default_mode: i32,
) -> Result<Vec<File>, VolumeError> {
    if items.is_empty() {
        return Ok(data.iter().map(|(k, v)| File { path: k.clone(), data: v.clone(), mode: default_mode }).collect());
    }
    items
        .iter()
        .map(|item| {
            let data = data
                .get(&item.key)
                .ok_or_else(|| invalid(volume, format!("key \"{}\" is not in the object", item.key)))?;
            Ok(File { path: item.path.clone(), data: data.clone(), mode: item.mode.unwrap_or(default_mode) })
        })
        .collect()
}

/// Downward API files: the pod's metadata by fieldRef, a container's resources by
/// resourceFieldRef, formatted as the kubelet in Kubernetes writes them.
pub fn downward_api(
    volume: &str,
    pod: &Pod,
    items: &[DownwardApiVolumeFile],
    default_mode: i32,
) -> Result<Vec<File>, VolumeError> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut files = Vec::new();
    for item in items {
        let text = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), None) => {
                let path = field.field_path.as_str();
                let key_in = |prefix: &str| path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']");
                match path {
                    "metadata.name" => meta.name.clone(),
                    "metadata.namespace" => meta.namespace.clone(),
                    "metadata.uid" => meta.uid.clone(),
                    "metadata.labels" => map_lines(&meta.labels),
                    "metadata.annotations" => map_lines(&meta.annotations),
                    _ => match (key_in("metadata.labels"), key_in("metadata.annotations")) {
                        (Some(key), _) => meta.labels.get(key).cloned().unwrap_or_default(),
                        (_, Some(key)) => meta.annotations.get(key).cloned().unwrap_or_default(),
                        _ => {
                            return Err(invalid(
                                volume,
                                format!(
                                    "items[{}].fieldRef {path:?} is not supported in a volume (use metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations, or one label or annotation as metadata.labels['KEY'])",
                                    item.path
                                ),
                            ));
                        }
                    },
                }
            }
            (None, Some(resource)) => {
                let container = spec
                    .containers
                    .iter()
                    .chain(&spec.init_containers)
                    .find(|c| c.name == resource.container_name)
                    .ok_or_else(|| {
                        invalid(
                            volume,
                            format!(
                                "items[{}].resourceFieldRef.containerName {:?} is not a container of the pod (a volume must name one)",
                                item.path, resource.container_name
                            ),
                        )
                    })?;
                let divisor = resource.divisor.as_ref().map(|d| d.string.as_str());
                crate::pods::spec::resource_value(container, &resource.resource, divisor)
                    .map_err(|e| invalid(volume, format!("items[{}]: {e}", item.path)))?
            }
            _ => {
                return Err(invalid(
                    volume,
                    format!("items[{}] must have exactly one of fieldRef and resourceFieldRef", item.path),
                ));
            }
        };
        files.push(File { path: item.path.clone(), data: text.into_bytes(), mode: item.mode.unwrap_or(default_mode) });
    }
    Ok(files)
}

/// `key="value"` lines sorted by key, the values quoted.
fn map_lines(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
}

/// Makes `dir` hold exactly `files`.
pub fn write(volume: &str, dir: &Path, files: &[File]) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(volume))?;
    let mut seen = BTreeMap::new();
    for file in files {
        let rel = Path::new(&file.path);
        if file.path.is_empty() || rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(invalid(
                volume,
                format!("item path {:?} must be relative, not empty, and must not contain \"..\"", file.path),
            ));
        }
        if seen.insert(file.path.as_str(), ()).is_some() {
            return Err(invalid(volume, format!("two items write the same path {:?}", file.path)));
        }
    }
    for file in files {
        let target = dir.join(&file.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume))?;
        }
        if std::fs::read(&target).ok().as_ref() != Some(&file.data) {
            // Written beside and renamed over, so a container never reads half a file.
            let tmp = target.with_extension("rudder-tmp");
            std::fs::write(&tmp, &file.data).map_err(io(volume))?;
            std::fs::rename(&tmp, &target).map_err(io(volume))?;
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode((file.mode as u32) & 0o7777))
            .map_err(io(volume))?;
    }
    let tops: Vec<String> = files
        .iter()
        .filter_map(|f| Path::new(&f.path).components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()))
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !tops.contains(&name) {
                let removed = if entry.path().is_dir() {
                    std::fs::remove_dir_all(entry.path())
                } else {
                    std::fs::remove_file(entry.path())
                };
                removed.map_err(io(volume))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proto::core::v1::{Container, ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements};
    use proto::meta::v1::{ObjectMeta, Quantity};

    use super::*;

    #[test]
    fn keys_become_files_with_modes_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("v");
        let data = BTreeMap::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]);
        write("v", &target, &select("v", &data, &[], 0o600).unwrap()).unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::metadata(target.join("b")).unwrap().permissions().mode() & 0o777, 0o600);
        let items = vec![KeyToPath { key: "b".into(), path: "sub/bee".into(), mode: Some(0o400) }];
        write("v", &target, &select("v", &data, &items, 0o644).unwrap()).unwrap();
        assert!(!target.join("a").exists());
        assert_eq!(std::fs::read(target.join("sub/bee")).unwrap(), b"2");
        let missing = vec![KeyToPath { key: "c".into(), path: "c".into(), mode: None }];
        assert!(select("v", &data, &missing, 0o644).unwrap_err().to_string().contains("key \"c\" is not in"));
        let escape = [File { path: "../x".into(), data: vec![], mode: 0o644 }];
        assert!(write("v", &target, &escape).unwrap_err().to_string().contains(".."));
        let twice = [
            File { path: "p".into(), data: vec![], mode: 0o644 },
            File { path: "p".into(), data: vec![1], mode: 0o644 },
        ];
        assert!(write("v", &target, &twice).unwrap_err().to_string().contains("same path \"p\""));
    }

    fn field(path: &str, field_path: &str) -> DownwardApiVolumeFile {
        DownwardApiVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector { api_version: "v1".into(), field_path: field_path.into() }),
            ..Default::default()
        }
    }

    #[test]
    fn downward_api_files_hold_metadata_and_resources_as_kubernetes_writes_them() {
        let pod = Pod {
            metadata: Some(ObjectMeta {
                name: "web-0".into(),
                namespace: "shop".into(),
                labels: BTreeMap::from([("tier".into(), "front".into()), ("app".into(), "web \"x\"".into())]),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    resources: Some(ResourceRequirements {
                        limits: BTreeMap::from([("memory".into(), Quantity { string: "64Mi".into() })]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let memory = DownwardApiVolumeFile {
            path: "mem".into(),
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: "main".into(),
                resource: "limits.memory".into(),
                divisor: Some(Quantity { string: "1Mi".into() }),
            }),
            mode: Some(0o400),
            ..Default::default()
        };
        let items = [
            field("name", "metadata.name"),
            field("labels", "metadata.labels"),
            field("tier", "metadata.labels['tier']"),
            memory,
        ];
        let files = downward_api("info", &pod, &items, 0o644).unwrap();
        let text: Vec<(&str, String, i32)> =
            files.iter().map(|f| (f.path.as_str(), String::from_utf8_lossy(&f.data).into_owned(), f.mode)).collect();
        assert_eq!(
            text,
            [
                ("name", "web-0".to_string(), 0o644),
                ("labels", "app=\"web \\\"x\\\"\"\ntier=\"front\"".to_string(), 0o644),
                ("tier", "front".to_string(), 0o644),
                ("mem", "64".to_string(), 0o400),
            ]
        );
        let error = downward_api("info", &pod, &[field("ip", "status.podIP")], 0o644).unwrap_err().to_string();
        assert!(error.contains("items[ip].fieldRef \"status.podIP\" is not supported in a volume"), "{error}");
        let mut nameless = items[3].clone();
        nameless.resource_field_ref.as_mut().unwrap().container_name.clear();
        let error = downward_api("info", &pod, &[nameless], 0o644).unwrap_err().to_string();
        assert!(error.contains("containerName \"\" is not a container of the pod"), "{error}");
    }
}
