//! Import of image archives, as `docker load` does: a `docker save` tarball
//! (manifest.json naming a config and layer tars per image) or an OCI archive (an OCI
//! image layout: oci-layout, index.json, blobs/), either one optionally gzipped. The
//! archive is unpacked into the store's tmp/ and its files verified and moved into blobs/.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::digest::{Digest, HashingReader};
use super::oci::{self, Descriptor, Index, Manifest};
use super::reference::Reference;
use super::{ImageError, Inner, io_error};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Removes the unpacked archive however the import ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn import(inner: &Inner, archive: &Path) -> Result<Vec<String>, ImageError> {
    let shown = archive.display().to_string();
    let invalid = |message: String| ImageError::Invalid { image: shown.clone(), message };
    let dir = TempDir(inner.layout.temp_path("import"));
    fs::create_dir(&dir.0).map_err(io_error("creating the import directory"))?;
    extract(archive, &dir.0).map_err(|e| invalid(format!("not a readable tar archive: {e}")))?;
    let images = if dir.0.join("manifest.json").is_file() {
        docker_images(inner, &dir.0).map_err(invalid)?
    } else if dir.0.join("index.json").is_file() {
        oci_images(inner, &dir.0).map_err(invalid)?
    } else {
        return Err(invalid(
            "is neither a `docker save` archive (no manifest.json) nor an OCI archive (no index.json)".into(),
        ));
    };
    if images.is_empty() {
        return Err(invalid("holds no named image (docker save: RepoTags; OCI: a ref.name annotation)".into()));
    }
    let mut imported = Vec::new();
    for (reference, descriptor) in images {
        inner.materialize(&reference, &descriptor)?;
        inner.record(&reference, descriptor)?;
        imported.push(reference);
    }
    Ok(imported)
}

fn extract(archive: &Path, dest: &Path) -> std::io::Result<()> {
    let mut file = BufReader::new(File::open(archive)?);
    let mut magic = [0u8; 2];
    let gzipped = file.read_exact(&mut magic).is_ok() && magic == GZIP_MAGIC;
    let file = BufReader::new(File::open(archive)?);
    let stream: Box<dyn Read> = if gzipped { Box::new(GzDecoder::new(file)) } else { Box::new(file) };
    // Archive::unpack refuses entries that would land outside `dest`.
    tar::Archive::new(stream).unpack(dest)
}

/// A file of the unpacked archive, followed through symlinks (docker save links layers
/// shared by several images) but never out of the archive.
fn archive_file(dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let path = fs::canonicalize(dir.join(relative)).map_err(|e| format!("{relative}: {e}"))?;
    let root = fs::canonicalize(dir).map_err(|e| e.to_string())?;
    if !path.starts_with(&root) || !path.is_file() {
        return Err(format!("{relative} is not a file inside the archive"));
    }
    Ok(path)
}

/// Moves an archive file into the store as a blob whose digest it is checked to have.
fn adopt(inner: &Inner, path: &Path, digest: &Digest, size: Option<u64>) -> Result<(), String> {
    if inner.layout.has_blob(digest) {
        return Ok(());
    }
    inner.layout.adopt_blob(path, digest, size).map_err(|e| format!("{}: {e}", path.display()))
}

fn docker_images(inner: &Inner, dir: &Path) -> Result<Vec<(String, Descriptor)>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let bytes = fs::read(dir.join("manifest.json")).map_err(|e| format!("manifest.json: {e}"))?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest.json is not a docker save manifest: {e}"))?;
    let mut out = Vec::new();
    for entry in entries {
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            tracing::warn!(config = %entry.config, "skipping an untagged image in the archive");
            continue;
        }
        let config_path = archive_file(dir, &entry.config)?;
        let config_bytes = fs::read(&config_path).map_err(|e| format!("{}: {e}", entry.config))?;
        let config_digest = inner.layout.write_blob(&config_bytes, None).map_err(|e| e.to_string())?;
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let path = archive_file(dir, layer)?;
            let mut magic = [0u8; 2];
            let gzipped =
                File::open(&path).and_then(|mut f| f.read_exact(&mut magic)).is_ok_and(|()| magic == GZIP_MAGIC);
            let (digest, size) = HashingReader::new(File::open(&path).map_err(|e| format!("{layer}: {e}"))?)
                .finish()
                .map_err(|e| format!("{layer}: {e}"))?;
            adopt(inner, &path, &digest, Some(size))?;
            layers.push(Descriptor {
                media_type: if gzipped {
                    oci::DOCKER_LAYER_GZIP
                } else {
                    "application/vnd.docker.image.rootfs.diff.tar"
                }
                .to_string(),
                digest: digest.to_string(),
                size,
                platform: None,
                annotations: Default::default(),
                urls: vec![],
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::DOCKER_MANIFEST.to_string()),
            config: Descriptor {
                media_type: oci::DOCKER_CONFIG.to_string(),
                digest: config_digest.to_string(),
                size: config_bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
                urls: vec![],
            },
            layers,
        };
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let manifest_digest = inner.layout.write_blob(&manifest_bytes, None).map_err(|e| e.to_string())?;
        let descriptor = Descriptor {
            media_type: oci::DOCKER_MANIFEST.to_string(),
            digest: manifest_digest.to_string(),
            size: manifest_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
            urls: vec![],
        };
        for tag in tags {
            let reference = Reference::parse(&tag)?;
            out.push((reference.to_string(), descriptor.clone()));
        }
    }
    Ok(out)
}

fn oci_images(inner: &Inner, dir: &Path) -> Result<Vec<(String, Descriptor)>, String> {
    let bytes = fs::read(dir.join("index.json")).map_err(|e| format!("index.json: {e}"))?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| format!("index.json is not an OCI index: {e}"))?;
    let read_blob = |digest: &Digest| -> Result<(PathBuf, Vec<u8>), String> {
        let path = archive_file(dir, &format!("blobs/sha256/{}", digest.hex()))?;
        let bytes = fs::read(&path).map_err(|e| format!("blob {digest}: {e}"))?;
        if Digest::of(&bytes) != *digest {
            return Err(format!("blob {digest} failed verification: its content has digest {}", Digest::of(&bytes)));
        }
        Ok((path, bytes))
    };
    let mut out = Vec::new();
    for top in &index.manifests {
        let Some(name) = image_name(top)? else {
            tracing::warn!(digest = %top.digest, "skipping an image without a name in the archive");
            continue;
        };
        let mut descriptor = top.clone();
        for _ in 0..3 {
            if descriptor.media_type != oci::OCI_INDEX && descriptor.media_type != oci::DOCKER_MANIFEST_LIST {
                break;
            }
            let digest = Digest::parse(&descriptor.digest)?;
            let (path, bytes) = read_blob(&digest)?;
            let nested: Index = serde_json::from_slice(&bytes).map_err(|e| format!("index {digest}: {e}"))?;
            let chosen = oci::pick_platform(&nested)?.clone();
            adopt(inner, &path, &digest, None)?;
            descriptor = chosen;
        }
        let digest = Digest::parse(&descriptor.digest)?;
        let (path, bytes) = read_blob(&digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| format!("manifest {digest} is not an image manifest: {e}"))?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let blob_digest = Digest::parse(&blob.digest)?;
            let blob_path = archive_file(dir, &format!("blobs/sha256/{}", blob_digest.hex()))
                .or_else(|e| if inner.layout.has_blob(&blob_digest) { Ok(PathBuf::new()) } else { Err(e) })?;
            adopt(inner, &blob_path, &blob_digest, Some(blob.size))?;
        }
        adopt(inner, &path, &digest, Some(bytes.len() as u64))?;
        let media_type = manifest.media_type.clone().unwrap_or_else(|| descriptor.media_type.clone());
        out.push((
            name,
            Descriptor {
                media_type,
                digest: digest.to_string(),
                size: bytes.len() as u64,
                platform: None,
                annotations: Default::default(),
                urls: vec![],
            },
        ));
    }
    Ok(out)
}

/// The full reference an OCI index entry names: containerd's annotation, else ref.name
/// when it is a reference rather than a bare tag.
fn image_name(descriptor: &Descriptor) -> Result<Option<String>, String> {
    if let Some(name) = descriptor.annotations.get(oci::CONTAINERD_NAME) {
        return Reference::parse(name).map(|r| Some(r.to_string()));
    }
    let Some(name) = descriptor.annotations.get(oci::REF_NAME) else { return Ok(None) };
    if !name.contains('/') && !name.contains(':') {
        return Err(format!(
            "index.json names an image only by the tag {name:?}; name it by its full reference (for example `skopeo copy oci:DIR:{name} oci-archive:FILE:example.org/repo:{name}`)"
        ));
    }
    Reference::parse(name).map(|r| Some(r.to_string()))
}
