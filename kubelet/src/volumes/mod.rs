//! Pod volumes on the host: each volume of a pod becomes a host path that containers
//! bind-mount. emptyDir (a directory, tmpfs for medium Memory), hostPath (created or
//! checked by type), configMap, secret, downwardAPI and projected (files written by
//! the kubelet, rewritten when the objects change), nfs (the export mounted through the node's NFS client), and
//! persistentVolumeClaim (the bound PV's hostPath, local path or NFS export).
//! Everything the kubelet creates lives under `<root>/<pod-uid>/` and is removed by
//! `teardown`.

pub mod nfs;
pub mod projection;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use client::{Api, Client};
use proto::Reason;
use proto::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume};
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
            let host = self.setup_one(pod, &meta.uid, &meta.namespace, volume).await?;
            volumes.insert(volume.name.clone(), host);
        }
        Ok(volumes)
    }

    async fn setup_one(
        &self,
        pod: &Pod,
        uid: &str,
        namespace: &str,
        volume: &Volume,
    ) -> Result<HostVolume, VolumeError> {
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
            let data = self.object_data(name, namespace, &source.name, source.optional, config_map_data).await?;
            let files = projection::select(name, &data, &source.items, source.default_mode.unwrap_or(0o644))?;
            return write_volume(name, &base.join("configmap").join(name), &files);
        }
        if let Some(source) = &volume.secret {
            let data = self.object_data(name, namespace, &source.secret_name, source.optional, secret_data).await?;
            let files = projection::select(name, &data, &source.items, source.default_mode.unwrap_or(0o644))?;
            return write_volume(name, &base.join("secret").join(name), &files);
        }
        if let Some(source) = &volume.downward_api {
            let files = projection::downward_api(name, pod, &source.items, source.default_mode.unwrap_or(0o644))?;
            return write_volume(name, &base.join("downward-api").join(name), &files);
        }
        if let Some(source) = &volume.projected {
            let mode = source.default_mode.unwrap_or(0o644);
            let mut files = Vec::new();
            for (i, part) in source.sources.iter().enumerate() {
                if let Some(cm) = &part.config_map {
                    let data = self.object_data(name, namespace, &cm.name, cm.optional, config_map_data).await?;
                    files.extend(projection::select(name, &data, &cm.items, mode)?);
                } else if let Some(secret) = &part.secret {
                    let data = self.object_data(name, namespace, &secret.name, secret.optional, secret_data).await?;
                    files.extend(projection::select(name, &data, &secret.items, mode)?);
                } else if let Some(downward) = &part.downward_api {
                    files.extend(projection::downward_api(name, pod, &downward.items, mode)?);
                } else {
                    let what = if part.service_account_token.is_some() {
                        "serviceAccountToken (this cluster issues no service account tokens)"
                    } else if part.cluster_trust_bundle.is_some() {
                        "clusterTrustBundle"
                    } else {
                        "an empty source"
                    };
                    return Err(invalid(
                        name,
                        format!("projected.sources[{i}] is {what}; use configMap, secret or downwardAPI sources"),
                    ));
                }
            }
            return write_volume(name, &base.join("projected").join(name), &files);
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
            "this volume type is not supported (use emptyDir, hostPath, configMap, secret, downwardAPI, projected, nfs or persistentVolumeClaim)",
        ))
    }

    /// The keys and values of the `K` named `object` (as `data` reads them from it);
    /// nothing when it is missing and `optional`.
    async fn object_data<K: proto::Resource>(
        &self,
        volume: &str,
        namespace: &str,
        object: &str,
        optional: Option<bool>,
        data: impl FnOnce(K) -> BTreeMap<String, Vec<u8>>,
    ) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
        let kind = K::INFO.singular;
        match Api::<K>::namespaced(&self.client, namespace).get_opt(object).await {
            Ok(Some(found)) => Ok(data(found)),
            Ok(None) if optional == Some(true) => Ok(BTreeMap::new()),
            Ok(None) => Err(invalid(volume, format!("{kind} \"{object}\" not found"))),
            Err(e) => Err(invalid(volume, format!("reading {kind} \"{object}\": {e}"))),
        }
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

fn config_map_data(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm.data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    data.extend(cm.binary_data.into_iter().map(|(k, v)| (k, v.to_vec())));
    data
}

fn secret_data(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret.data.into_iter().map(|(k, v)| (k, v.to_vec())).collect();
    data.extend(secret.string_data.into_iter().map(|(k, v)| (k, v.into_bytes())));
    data
}

/// A volume of files the kubelet writes: read-only to its containers.
fn write_volume(name: &str, dir: &Path, files: &[projection::File]) -> Result<HostVolume, VolumeError> {
    projection::write(name, dir, files)?;
    Ok(HostVolume { path: dir.to_path_buf(), read_only: true })
}

#[cfg(test)]
mod tests {
    use super::*;

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
