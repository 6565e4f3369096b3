//! The node-local image store: an OCI image layout (blobs by digest, layers unpacked once
//! and shared by the images that use them, whiteouts made overlayfs whiteouts), filled by
//! pulls from OCI / Docker v2 registries and by imports of `docker save` and OCI archive
//! tarballs. Every blob is checked against its digest on the way in.
//!
//! It hands out read-only layer directories for overlay mounts; it does not mount, run
//! or track containers (callers say which images are in use when collecting garbage).

mod archive;
mod digest;
mod http;
mod layout;
mod oci;
mod pull;
mod reference;
mod registry;
mod unpack;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio_rustls::rustls;

pub use digest::Digest;
pub use reference::Reference;
pub use unpack::{is_opaque, is_whiteout};

use layout::Layout;
use oci::{ConfigFile, Descriptor, Manifest};

/// An image ready to run: its layers unpacked, bottom first.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// The normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// `sha256:<config digest>`, the image ID Docker shows.
    pub id: String,
    /// `sha256:<manifest digest>`: with the repository it names the exact content
    /// (`<registry>/<repository>@<manifest_digest>`, Kubernetes' imageID).
    pub manifest_digest: String,
    /// Unpacked layer directories, bottom first; read-only (overlay lower dirs).
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

impl Image {
    /// `<registry>/<repository>@<manifest digest>`, what Kubernetes reports as imageID.
    pub fn repo_digest(&self) -> String {
        match Reference::parse(&self.reference) {
            Ok(r) => format!("{}@{}", r.name(), self.manifest_digest),
            Err(_) => self.manifest_digest.clone(),
        }
    }
}

/// The parts of an image's config that decide how its containers start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `K=V` entries.
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Parses a pod spec's imagePullPolicy; an empty one gets Kubernetes' default for
    /// `image` (Always for `:latest` or no tag, IfNotPresent otherwise).
    pub fn from_spec(policy: &str, image: &str) -> Result<PullPolicy, String> {
        match policy {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            "" => Ok(match Reference::parse(image) {
                Ok(r) if r.digest.is_none() && r.tag.as_deref() == Some("latest") => PullPolicy::Always,
                _ => PullPolicy::IfNotPresent,
            }),
            other => Err(format!("imagePullPolicy {other:?} is not one of Always, IfNotPresent, Never")),
        }
    }
}

/// Credentials for one registry (from a pod's imagePullSecrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry as in image references (`docker.io`, `mydocker.io:5000`); a URL such
    /// as `https://index.docker.io/v1/` (as in .dockerconfigjson) is accepted too.
    pub registry: String,
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    pub registries: Vec<RegistryHost>,
}

/// Per-registry settings. A registry without an entry is reached over HTTPS with the
/// system's CAs, except a loopback one (`localhost`, `127.x`), reached over plain HTTP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryHost {
    /// As written in image references, e.g. `mydocker.io:5000`.
    pub host: String,
    /// Where to connect instead, e.g. `127.0.0.1:5000`.
    pub mirror: Option<String>,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// PEM CA certificates trusted for this registry besides the system's.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "image {image} is not present on this node and imagePullPolicy is Never: import it on the node or change the policy"
    )]
    NeverPull { image: String },
    #[error("pulling {image}: {message}")]
    Pull { image: String, message: String },
    #[error("{image}: {message}")]
    Invalid { image: String, message: String },
    #[error("registry configuration: {0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |e| ImageError::Io(context, e)
}

/// One image in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    pub reference: String,
    pub id: String,
    pub manifest_digest: String,
    /// Bytes of its config and layer blobs as the manifest declares them.
    pub size: u64,
}

/// What a garbage collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_images: Vec<String>,
    pub freed_bytes: u64,
}

/// The image store; cheap to clone, shared by every pod worker.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    registries: RegistryConfig,
    /// TLS settings per configured registry host, and for all others.
    tls: HashMap<String, Arc<rustls::ClientConfig>>,
    default_tls: Arc<rustls::ClientConfig>,
    refs: Mutex<BTreeMap<String, Descriptor>>,
    /// One pull at a time per reference, so concurrent pods share one download.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pulls and imports hold it shared; garbage collection exclusively, so it never
    /// removes a blob that a pull has written but not yet recorded.
    gc: tokio::sync::RwLock<()>,
    /// Images already checked and described, by manifest digest (content-addressed, so
    /// an entry never goes stale while its layers exist): a burst of pods of one image
    /// then neither re-reads and re-hashes its blobs nor queues on the pull lock.
    described: Mutex<HashMap<String, Image>>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`, checking the registry settings.
    pub fn open(root: &Path, registries: RegistryConfig) -> Result<ImageStore, ImageError> {
        let layout = Layout::open(root).map_err(io_error(format!("opening the image store at {}", root.display())))?;
        let refs = layout.load_refs().map_err(io_error("reading the image store's index.json"))?;
        let mut tls = HashMap::new();
        for host in &registries.registries {
            let normalized = pull::normalize_registry(&host.host);
            if let Err(e) = Reference::parse(&format!("{normalized}/x")) {
                return Err(ImageError::Config(format!("registry host {:?}: {e}", host.host)));
            }
            if let Some(mirror) = &host.mirror {
                pull::mirror_url(mirror, host.insecure)
                    .map_err(|e| ImageError::Config(format!("mirror of {}: {e}", host.host)))?;
            }
            let config = http::tls_config(host.ca_file.as_deref())
                .map_err(|e| ImageError::Config(format!("registry {}: {e}", host.host)))?;
            tls.insert(normalized, config);
        }
        let default_tls = http::tls_config(None).map_err(ImageError::Config)?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                layout,
                registries,
                tls,
                default_tls,
                refs: Mutex::new(refs),
                pulls: Mutex::new(HashMap::new()),
                gc: tokio::sync::RwLock::new(()),
                described: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        self.inner.layout.root()
    }

    /// Makes `image` present as `policy` says and returns it unpacked.
    pub async fn ensure(&self, image: &str, policy: PullPolicy, auth: &[RegistryAuth]) -> Result<Image, ImageError> {
        let reference =
            Reference::parse(image).map_err(|message| ImageError::Invalid { image: image.to_string(), message })?;
        let key = reference.to_string();
        // A digest pins the content, so even Always needs no registry round trip then.
        let local_will_do = policy != PullPolicy::Always || reference.digest.is_some();
        if local_will_do {
            let _no_gc = self.inner.gc.read().await;
            if let Some(found) = self.inner.described(&reference) {
                return Ok(found);
            }
        }
        let lock = {
            let mut pulls = self.inner.pulls.lock().unwrap_or_else(|p| p.into_inner());
            pulls.entry(key.clone()).or_default().clone()
        };
        let _one_pull = lock.lock().await;
        let _no_gc = self.inner.gc.read().await;

        if local_will_do && let Some(found) = self.local(&reference).await {
            return Ok(found);
        }
        if policy == PullPolicy::Never {
            return Err(ImageError::NeverPull { image: key });
        }
        let endpoint = pull::endpoint_for(&self.inner, &reference.registry)
            .map_err(|message| ImageError::Pull { image: key.clone(), message })?;
        let credentials = pull::credentials_for(&reference, auth);
        let manifest = pull::pull(&self.inner.layout, &reference, endpoint, credentials)
            .await
            .map_err(|message| ImageError::Pull { image: key.clone(), message })?;
        let store = self.clone();
        let key2 = key.clone();
        tokio::task::spawn_blocking(move || {
            let image = store.inner.materialize(&key2, &manifest)?;
            store.inner.record(&key2, manifest.clone())?;
            store.inner.remember(&manifest, &image);
            Ok(image)
        })
        .await
        .map_err(|e| ImageError::Pull { image: key, message: format!("unpacking stopped: {e}") })?
    }

    /// The image if it is present and complete.
    async fn local(&self, reference: &Reference) -> Option<Image> {
        let key = reference.to_string();
        let descriptor = {
            let refs = self.inner.refs.lock().unwrap_or_else(|p| p.into_inner());
            refs.get(&key).cloned().or_else(|| {
                // Pulled by tag earlier, now asked for by digest.
                let digest = reference.digest.as_ref()?;
                refs.values().find(|d| d.digest == digest.as_str()).cloned()
            })
        }?;
        let store = self.clone();
        let found = tokio::task::spawn_blocking(move || {
            let image = store.inner.materialize(&key, &descriptor)?;
            store.inner.remember(&descriptor, &image);
            Ok::<_, ImageError>(image)
        })
        .await;
        match found {
            Ok(Ok(image)) => Some(image),
            Ok(Err(e)) => {
                tracing::warn!(image = %reference, error = %e, "recorded image is incomplete; pulling it again");
                None
            }
            Err(_) => None,
        }
    }

    /// Imports every image in a `docker save` or OCI archive tarball (optionally
    /// gzipped) and returns their references.
    pub async fn import_archive(&self, archive: &Path) -> Result<Vec<String>, ImageError> {
        let _no_gc = self.inner.gc.read().await;
        let store = self.clone();
        let path = archive.to_path_buf();
        tokio::task::spawn_blocking(move || archive::import(&store.inner, &path)).await.map_err(|e| {
            ImageError::Invalid { image: archive.display().to_string(), message: format!("import stopped: {e}") }
        })?
    }

    /// The images recorded in the store.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let refs = self.inner.refs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = Vec::new();
        for (reference, descriptor) in refs {
            let manifest = self.inner.read_manifest(&reference, &descriptor)?;
            out.push(ImageSummary {
                id: manifest.config.digest.clone(),
                manifest_digest: descriptor.digest.clone(),
                size: manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
                reference,
            });
        }
        Ok(out)
    }

    /// Removes every image not named in `in_use` (by reference as in a pod spec, by
    /// image ID or by manifest digest), then the blobs and unpacked layers no remaining
    /// image uses.
    pub async fn remove_unused(&self, in_use: &HashSet<String>) -> Result<GcReport, ImageError> {
        let _exclusive = self.inner.gc.write().await;
        let store = self.clone();
        let in_use = in_use.clone();
        tokio::task::spawn_blocking(move || store.inner.remove_unused(&in_use))
            .await
            .map_err(|e| ImageError::Io("garbage collection".into(), io::Error::other(e.to_string())))?
    }

    /// Runs `remove_unused` when the filesystem holding the store is at least
    /// `high_percent` full (Kubernetes' imageGCHighThresholdPercent, default 85).
    pub async fn collect_garbage(
        &self,
        in_use: &HashSet<String>,
        high_percent: u8,
    ) -> Result<Option<GcReport>, ImageError> {
        if self.disk_usage_percent()? < high_percent {
            return Ok(None);
        }
        self.remove_unused(in_use).await.map(Some)
    }

    /// How full (0-100) the filesystem holding the store is, as `df` counts it.
    pub fn disk_usage_percent(&self) -> Result<u8, ImageError> {
        let stat = nix::sys::statvfs::statvfs(self.root())
            .map_err(|e| ImageError::Io(format!("statfs {}", self.root().display()), e.into()))?;
        let used = stat.blocks().saturating_sub(stat.blocks_free()) as u128;
        let usable = used + stat.blocks_available() as u128;
        Ok(if usable == 0 { 0 } else { ((used * 100).div_ceil(usable)).min(100) as u8 })
    }
}

impl Inner {
    /// The image as described before, if its reference still names the same manifest
    /// and its unpacked layers are still there.
    fn described(&self, reference: &Reference) -> Option<Image> {
        let key = reference.to_string();
        let digest = {
            let refs = self.refs.lock().unwrap_or_else(|p| p.into_inner());
            match refs.get(&key) {
                Some(d) => d.digest.clone(),
                // Pulled by tag earlier, now asked for by digest.
                None => {
                    let wanted = reference.digest.as_ref()?;
                    refs.values().find(|d| d.digest == wanted.as_str())?.digest.clone()
                }
            }
        };
        let mut image = self.described.lock().unwrap_or_else(|p| p.into_inner()).get(&digest)?.clone();
        if !image.layers.iter().all(|l| l.is_dir()) {
            return None;
        }
        image.reference = key;
        Some(image)
    }

    fn remember(&self, manifest: &Descriptor, image: &Image) {
        self.described.lock().unwrap_or_else(|p| p.into_inner()).insert(manifest.digest.clone(), image.clone());
    }

    fn record(&self, reference: &str, manifest: Descriptor) -> Result<(), ImageError> {
        let mut refs = self.refs.lock().unwrap_or_else(|p| p.into_inner());
        refs.insert(reference.to_string(), manifest);
        self.layout.save_refs(&refs).map_err(io_error("writing the image store's index.json"))
    }

    fn read_manifest(&self, image: &str, descriptor: &Descriptor) -> Result<Manifest, ImageError> {
        let invalid = |message: String| ImageError::Invalid { image: image.to_string(), message };
        let digest = Digest::parse(&descriptor.digest).map_err(invalid)?;
        let bytes = self.layout.read_blob(&digest).map_err(|e| invalid(format!("manifest blob: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("manifest {digest} is not an image manifest: {e}")))
    }

    fn read_config(&self, image: &str, manifest: &Manifest) -> Result<(Digest, ConfigFile), ImageError> {
        let invalid = |message: String| ImageError::Invalid { image: image.to_string(), message };
        let digest = Digest::parse(&manifest.config.digest).map_err(invalid)?;
        let bytes = self.layout.read_blob(&digest).map_err(|e| invalid(format!("config blob: {e}")))?;
        let config: ConfigFile = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("config {digest} is not an image config: {e}")))?;
        Ok((digest, config))
    }

    /// Checks that the image's blobs are present, unpacks the layers not yet unpacked,
    /// and describes it. Blocking.
    fn materialize(&self, image: &str, descriptor: &Descriptor) -> Result<Image, ImageError> {
        let invalid = |message: String| ImageError::Invalid { image: image.to_string(), message };
        let manifest = self.read_manifest(image, descriptor)?;
        let (config_digest, config) = self.read_config(image, &manifest)?;
        if !config.os.is_empty() && config.os != "linux" {
            return Err(invalid(format!("the image is for {}, not linux", config.os)));
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "the manifest lists {} layers but the config {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let diff_id = Digest::parse(diff_id).map_err(invalid)?;
            if !self.layout.has_layer(&diff_id) {
                self.unpack(image, layer, &diff_id)?;
            }
            layers.push(self.layout.layer_dir(&diff_id));
        }
        let run = config.config.unwrap_or_default();
        Ok(Image {
            reference: image.to_string(),
            id: config_digest.to_string(),
            manifest_digest: descriptor.digest.clone(),
            layers,
            config: ImageConfig {
                entrypoint: run.entrypoint.unwrap_or_default(),
                cmd: run.cmd.unwrap_or_default(),
                env: run.env.unwrap_or_default(),
                working_dir: run.working_dir.unwrap_or_default(),
                user: run.user.unwrap_or_default(),
            },
        })
    }

    fn unpack(&self, image: &str, layer: &Descriptor, diff_id: &Digest) -> Result<(), ImageError> {
        let invalid = |message: String| ImageError::Invalid { image: image.to_string(), message };
        let digest = Digest::parse(&layer.digest).map_err(invalid)?;
        let compression = oci::Compression::of_layer(&layer.media_type)
            .ok_or_else(|| invalid(format!("layer {digest} has media type {:?}, which cannot be unpacked (only tar and tar+gzip layers are supported)", layer.media_type)))?;
        let blob = self.layout.blob_path(&digest);
        if !blob.is_file() {
            return Err(invalid(format!("layer blob {digest} is missing from the store")));
        }
        let temp = self.layout.temp_path("layer");
        let result = unpack::unpack_layer(&blob, compression, diff_id, &temp);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&temp);
            return Err(invalid(format!("unpacking layer {digest}: {e}")));
        }
        let dest = self.layout.layer_dir(diff_id);
        if let Err(e) = fs::rename(&temp, &dest) {
            let _ = fs::remove_dir_all(&temp);
            // Another pull unpacked the same layer first: theirs is as good as ours.
            if !dest.is_dir() {
                return Err(ImageError::Io(format!("moving layer {diff_id} into place"), e));
            }
        }
        Ok(())
    }

    fn remove_unused(&self, in_use: &HashSet<String>) -> Result<GcReport, ImageError> {
        let normalized: HashSet<String> = in_use
            .iter()
            .map(|s| Reference::parse(s).map(|r| r.to_string()).unwrap_or_else(|_| s.clone()))
            .chain(in_use.iter().cloned())
            .collect();
        let mut report = GcReport::default();
        let mut refs = self.refs.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep_blobs: HashSet<String> = HashSet::new();
        let mut keep_layers: HashSet<String> = HashSet::new();
        let mut removed = Vec::new();
        for (reference, descriptor) in refs.iter() {
            let manifest = self.read_manifest(reference, descriptor).ok();
            let id = manifest.as_ref().map(|m| m.config.digest.clone()).unwrap_or_default();
            let used =
                normalized.contains(reference) || normalized.contains(&id) || normalized.contains(&descriptor.digest);
            if !used {
                removed.push(reference.clone());
                continue;
            }
            keep_blobs.insert(descriptor.digest.clone());
            if let Some(manifest) = manifest {
                keep_blobs.insert(manifest.config.digest.clone());
                keep_blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
                if let Ok((_, config)) = self.read_config(reference, &manifest) {
                    keep_layers.extend(config.rootfs.diff_ids);
                }
            }
        }
        for reference in &removed {
            refs.remove(reference);
        }
        // Blobs and layers may go below: describe what is left afresh.
        self.described.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.layout.save_refs(&refs).map_err(io_error("writing the image store's index.json"))?;
        drop(refs);
        report.removed_images = removed;
        for digest in self.layout.blobs().map_err(io_error("listing blobs"))? {
            if !keep_blobs.contains(digest.as_str()) {
                let path = self.layout.blob_path(&digest);
                report.freed_bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(io_error(format!("removing {}", path.display())))?;
            }
        }
        for diff_id in self.layout.layers().map_err(io_error("listing unpacked layers"))? {
            if !keep_layers.contains(diff_id.as_str()) {
                let path = self.layout.layer_dir(&diff_id);
                report.freed_bytes += tree_size(&path);
                fs::remove_dir_all(&path).map_err(io_error(format!("removing {}", path.display())))?;
            }
        }
        Ok(report)
    }
}

fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map(|entries| entries.filter_map(Result::ok).map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
}
