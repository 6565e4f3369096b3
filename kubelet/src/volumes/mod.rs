//! Pod volumes on the host: each volume of a pod becomes a host path that containers
//! bind-mount. emptyDir (a directory, tmpfs for medium Memory), hostPath (created or
//! checked by type), configMap and secret (files written from the object, rewritten
//! when it changes), nfs (the export mounted through the node's NFS client), and
//! persistentVolumeClaim (the bound PV's hostPath, local path or NFS export).
//! Everything the kubelet creates lives under `<root>/<pod-uid>/` and is removed by
//! `teardown`.

pub mod nfs;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use client::{Api, Client};
use proto::Reason;
use proto::core::v1::{ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume};
use proto::quantity::Amount;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume}: {source}")]
    Io { volume: String, source: std::io::Error },
}

/// A volume ready to mount: where it is on the host and whether it must be read-only.
#[derive(Debug, Clone, PartialEq)]
pub struct HostVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

pub struct Volumes {
    root: PathBuf,
    client: Client,
}

fn invalid(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::Invalid { volume: volume.into(), message: message.into() }
}

fn io(volume: &str) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { volume: volume.into(), source }
}

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    let (Ok(here), Some(Ok(parent))) = (std::fs::metadata(path), path.parent().map(std::fs::metadata)) else {
        return false;
    };
    here.dev() != parent.dev()
}

impl Volumes {
    pub fn new(root: &Path, client: &Client) -> Volumes {
        Volumes { root: root.to_path_buf(), client: client.clone() }
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    /// Sets up every volume of the pod (again: configMaps and secrets are refreshed).
    pub async fn setup(&self, pod: &Pod) -> Result<HashMap<String, HostVolume>, VolumeError> {
        let meta = pod.metadata.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut volumes = HashMap::new();
        for volume in &spec.volumes {
            let host = self.setup_one(&meta.uid, &meta.namespace, volume).await?;
            volumes.insert(volume.name.clone(), host);
        }
        Ok(volumes)
    }

    async fn setup_one(&self, uid: &str, namespace: &str, volume: &Volume) -> Result<HostVolume, VolumeError> {
        let name = volume.name.as_str();
        let base = self.pod_dir(uid);
        if let Some(empty) = &volume.empty_dir {
            let dir = base.join("empty-dir").join(name);
            std::fs::create_dir_all(&dir).map_err(io(name))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io(name))?;
            if empty.medium == "Memory" && !is_mount_point(&dir) {
                let mut options = "mode=1777".to_string();
                if let Some(limit) = &empty.size_limit {
                    let bytes = Amount::parse(&limit.string)
                        .map_err(|e| invalid(name, format!("emptyDir.sizeLimit {}: {e}", limit.string)))?
                        .value();
                    options.push_str(&format!(",size={bytes}"));
                }
                nix::mount::mount(
                    Some("tmpfs"),
                    &dir,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                    Some(options.as_str()),
                )
                .map_err(|e| invalid(name, format!("mounting tmpfs on {}: {e}", dir.display())))?;
            } else if !matches!(empty.medium.as_str(), "" | "Memory") {
                return Err(invalid(
                    name,
                    format!("emptyDir.medium {:?} is not supported (use \"\" or Memory)", empty.medium),
                ));
            }
            return Ok(HostVolume { path: dir, read_only: false });
        }
        if let Some(host) = &volume.host_path {
            return host_path(name, Path::new(&host.path), host.r#type.as_deref().unwrap_or(""));
        }
        if let Some(source) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(&self.client, namespace);
            let files = match api.get_opt(&source.name).await {
                Ok(Some(cm)) => {
                    let mut files: BTreeMap<String, Vec<u8>> =
                        cm.data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                    files.extend(cm.binary_data.into_iter().map(|(k, v)| (k, v.to_vec())));
                    files
                }
                Ok(None) if source.optional == Some(true) => BTreeMap::new(),
                Ok(None) => return Err(invalid(name, format!("configmap \"{}\" not found", source.name))),
                Err(e) => return Err(invalid(name, format!("reading configmap \"{}\": {e}", source.name))),
            };
            let dir = base.join("configmap").join(name);
            write_projection(name, &dir, &files, &source.items, source.default_mode.unwrap_or(0o644))?;
            return Ok(HostVolume { path: dir, read_only: true });
        }
        if let Some(source) = &volume.secret {
            let api: Api<Secret> = Api::namespaced(&self.client, namespace);
            let files = match api.get_opt(&source.secret_name).await {
                Ok(Some(secret)) => {
                    let mut files: BTreeMap<String, Vec<u8>> =
                        secret.data.into_iter().map(|(k, v)| (k, v.to_vec())).collect();
                    files.extend(secret.string_data.into_iter().map(|(k, v)| (k, v.into_bytes())));
                    files
                }
                Ok(None) if source.optional == Some(true) => BTreeMap::new(),
                Ok(None) => return Err(invalid(name, format!("secret \"{}\" not found", source.secret_name))),
                Err(e) => return Err(invalid(name, format!("reading secret \"{}\": {e}", source.secret_name))),
            };
            let dir = base.join("secret").join(name);
            write_projection(name, &dir, &files, &source.items, source.default_mode.unwrap_or(0o644))?;
            return Ok(HostVolume { path: dir, read_only: true });
        }
        if let Some(source) = &volume.nfs {
            let dir = base.join("nfs").join(name);
            let export =
                nfs::Export { server: &source.server, path: &source.path, read_only: source.read_only, options: &[] };
            nfs::mount(name, &export, &dir).await?;
            return Ok(HostVolume { path: dir, read_only: source.read_only });
        }
        if let Some(source) = &volume.persistent_volume_claim {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(&self.client, namespace);
            let claim = match claims.get(&source.claim_name).await {
                Ok(c) => c,
                Err(e) if e.is(Reason::NotFound) => {
                    return Err(invalid(name, format!("persistentvolumeclaim \"{}\" not found", source.claim_name)));
                }
                Err(e) => return Err(invalid(name, format!("reading claim \"{}\": {e}", source.claim_name))),
            };
            let pv_name = claim.spec.map(|s| s.volume_name).unwrap_or_default();
            if pv_name.is_empty() {
                return Err(invalid(name, format!("claim \"{}\" is not bound to a volume yet", source.claim_name)));
            }
            let pvs: Api<PersistentVolume> = Api::all(&self.client);
            let pv = pvs
                .get(&pv_name)
                .await
                .map_err(|e| invalid(name, format!("reading persistentvolume \"{pv_name}\": {e}")))?;
            let spec = pv.spec.unwrap_or_default();
            let path = if let Some(h) = &spec.host_path {
                host_path(name, Path::new(&h.path), h.r#type.as_deref().unwrap_or(""))?.path
            } else if let Some(local) = &spec.local {
                PathBuf::from(&local.path)
            } else if let Some(export) = &spec.nfs {
                let dir = base.join("nfs").join(name);
                let export = nfs::Export {
                    server: &export.server,
                    path: &export.path,
                    read_only: export.read_only || source.read_only,
                    options: &spec.mount_options,
                };
                nfs::mount(name, &export, &dir).await?;
                dir
            } else {
                return Err(invalid(
                    name,
                    format!(
                        "persistentvolume \"{pv_name}\" is not hostPath, local or nfs; no other kind is supported on this node"
                    ),
                ));
            };
            return Ok(HostVolume { path, read_only: source.read_only });
        }
        Err(invalid(
            name,
            "this volume type is not supported (use emptyDir, hostPath, configMap, secret, nfs or persistentVolumeClaim)",
        ))
    }

    /// Unmounts and removes everything the kubelet made for the pod's volumes.
    pub fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let dir = self.pod_dir(pod_uid);
        // Mounts go first: removing the directory tree through a live NFS mount would
        // delete the export's files. A detached unmount cannot hang on a dead server.
        let mounts = ["empty-dir", "nfs"].map(|kind| dir.join(kind));
        for entries in mounts.iter().filter_map(|kind| std::fs::read_dir(kind).ok()) {
            for entry in entries.flatten() {
                if is_mount_point(&entry.path()) {
                    nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                        invalid(
                            &entry.file_name().to_string_lossy(),
                            format!("unmounting {}: {e}", entry.path().display()),
                        )
                    })?;
                }
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VolumeError::Io { volume: dir.display().to_string(), source: e }),
        }
    }

    /// Pods that have volume state here.
    pub fn pods(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}

fn host_path(name: &str, path: &Path, kind: &str) -> Result<HostVolume, VolumeError> {
    let meta = std::fs::metadata(path);
    let wrong = |what: &str| invalid(name, format!("hostPath {} is not {what} (type {kind})", path.display()));
    match kind {
        "" | "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(io(name))?;
                if kind == "DirectoryOrCreate" {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io(name))?;
                }
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io(name))?;
                }
                std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(name))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(io(name))?;
            } else if meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return Err(wrong("a file"));
            }
        }
        "Directory" => {
            if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return Err(wrong("an existing directory"));
            }
        }
        "File" => {
            if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(wrong("an existing file"));
            }
        }
        "Socket" => {
            if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) {
                return Err(wrong("a socket"));
            }
        }
        "CharDevice" => {
            if !meta.as_ref().is_ok_and(|m| m.file_type().is_char_device()) {
                return Err(wrong("a character device"));
            }
        }
        "BlockDevice" => {
            if !meta.as_ref().is_ok_and(|m| m.file_type().is_block_device()) {
                return Err(wrong("a block device"));
            }
        }
        other => {
            return Err(invalid(
                name,
                format!(
                    "hostPath type {other:?} is unknown (use DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice or BlockDevice)"
                ),
            ));
        }
    }
    Ok(HostVolume { path: path.to_path_buf(), read_only: false })
}

/// Writes `files` (all keys, or just `items`) into `dir`, leaving unchanged files alone
/// and removing files of keys that went away.
fn write_projection(
    name: &str,
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    default_mode: i32,
) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(name))?;
    let wanted: Vec<(String, &Vec<u8>, i32)> = if items.is_empty() {
        files.iter().map(|(k, v)| (k.clone(), v, default_mode)).collect()
    } else {
        let mut wanted = Vec::new();
        for item in items {
            let data = files
                .get(&item.key)
                .ok_or_else(|| invalid(name, format!("key \"{}\" is not in the object", item.key)))?;
            wanted.push((item.path.clone(), data, item.mode.unwrap_or(default_mode)));
        }
        wanted
    };
    for (path, data, mode) in &wanted {
        let rel = Path::new(path);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(invalid(name, format!("item path {path:?} must be relative and must not contain \"..\"")));
        }
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(name))?;
        }
        if std::fs::read(&target).ok().as_ref() != Some(*data) {
            let tmp = target.with_extension("rudder-tmp");
            std::fs::write(&tmp, data).map_err(io(name))?;
            std::fs::rename(&tmp, &target).map_err(io(name))?;
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode((*mode as u32) & 0o7777))
            .map_err(io(name))?;
    }
    let tops: Vec<String> = wanted
        .iter()
        .filter_map(|(p, _, _)| Path::new(p).components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()))
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if !tops.contains(&file) {
                let _ = if entry.path().is_dir() {
                    std::fs::remove_dir_all(entry.path())
                } else {
                    std::fs::remove_file(entry.path())
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_write_items_with_modes_and_drop_stale_keys() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("v");
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), b"1".to_vec());
        files.insert("b".to_string(), b"2".to_vec());
        write_projection("v", &target, &files, &[], 0o600).unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::metadata(target.join("b")).unwrap().permissions().mode() & 0o777, 0o600);
        let items = vec![KeyToPath { key: "b".into(), path: "sub/bee".into(), mode: Some(0o400) }];
        write_projection("v", &target, &files, &items, 0o644).unwrap();
        assert!(!target.join("a").exists());
        assert_eq!(std::fs::read(target.join("sub/bee")).unwrap(), b"2");
        let bad = vec![KeyToPath { key: "b".into(), path: "../x".into(), mode: None }];
        assert!(write_projection("v", &target, &files, &bad, 0o644).unwrap_err().to_string().contains(".."));
    }

    #[test]
    fn host_paths_are_created_or_checked_by_type() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("made");
        host_path("v", &d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        let f = dir.path().join("f/file");
        host_path("v", &f, "FileOrCreate").unwrap();
        assert!(f.is_file());
        assert!(
            host_path("v", &dir.path().join("nope"), "Directory")
                .unwrap_err()
                .to_string()
                .contains("not an existing directory")
        );
        assert!(host_path("v", &f, "Directory").is_err());
        assert!(host_path("v", &d, "Socket").is_err());
        assert!(host_path("v", &d, "Weird").unwrap_err().to_string().contains("unknown"));
    }
}
