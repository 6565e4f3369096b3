//! The JSON documents of OCI images and Docker v2 schema 2 images: descriptors,
//! indexes (manifest lists), manifests and image configs, with their media types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The annotation naming an image in an OCI layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker's) annotation with the full image name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Everything a manifest endpoint may answer with, in the order we prefer.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// How a layer blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    /// The compression of a layer media type, or None for one we cannot unpack.
    pub fn of_layer(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(Compression::Gzip),
            // Non-distributable layers are ordinary tar(+gzip) blobs too.
            "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An OCI index or a Docker manifest list.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest or a Docker v2 schema 2 manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// Just enough of a document to learn what it is when the server's Content-Type (or an
/// archive) does not say.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

/// What a manifest-endpoint document turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    Index,
    Manifest,
    Schema1,
}

impl DocumentKind {
    /// Classifies a manifest document from its media type (from the header or its own
    /// `mediaType` field) and, failing that, its shape.
    pub fn classify(content_type: Option<&str>, body: &[u8]) -> Result<DocumentKind, String> {
        let probe: Probe = serde_json::from_slice(body).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
        let declared = probe.media_type.as_deref().or(content_type.map(|c| c.split(';').next().unwrap_or("").trim()));
        match declared {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => return Ok(DocumentKind::Index),
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => return Ok(DocumentKind::Manifest),
            Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => return Ok(DocumentKind::Schema1),
            _ => {}
        }
        if probe.schema_version == Some(1) {
            return Ok(DocumentKind::Schema1);
        }
        if probe.manifests.is_some() {
            return Ok(DocumentKind::Index);
        }
        if probe.config.is_some() {
            return Ok(DocumentKind::Manifest);
        }
        Err(format!(
            "the manifest has media type {:?}, which is neither an image index nor an image manifest",
            declared.unwrap_or("(none)")
        ))
    }
}

/// The image config blob (only the parts the kubelet uses).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Picks linux/amd64 from an index; the error lists what the index offers.
pub fn pick_platform(index: &Index) -> Result<&Descriptor, String> {
    let is_manifest = |d: &Descriptor| {
        matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_MANIFEST_LIST)
    };
    if let Some(d) = index
        .manifests
        .iter()
        .find(|d| is_manifest(d) && d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"))
    {
        return Ok(d);
    }
    // An index without platforms (as in a single-image OCI layout) names one image.
    let unplatformed: Vec<&Descriptor> =
        index.manifests.iter().filter(|d| is_manifest(d) && d.platform.is_none()).collect();
    if unplatformed.len() == 1 {
        return Ok(unplatformed[0]);
    }
    let offered: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    Err(format!(
        "the image index has no linux/amd64 image (it offers: {})",
        if offered.is_empty() { "nothing".to_string() } else { offered.join(", ") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(media_type: &str, platform: Option<(&str, &str)>) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
            platform: platform.map(|(os, arch)| Platform { os: os.into(), architecture: arch.into(), variant: None }),
            annotations: Default::default(),
            urls: vec![],
        }
    }

    #[test]
    fn picks_linux_amd64_and_explains_when_absent() {
        let mut index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![desc(OCI_MANIFEST, Some(("linux", "arm64"))), desc(OCI_MANIFEST, Some(("linux", "amd64")))],
        };
        assert_eq!(pick_platform(&index).unwrap().platform.as_ref().unwrap().architecture, "amd64");
        index.manifests.remove(1);
        assert!(pick_platform(&index).unwrap_err().contains("offers: linux/arm64"));
    }

    #[test]
    fn classifies_documents() {
        assert_eq!(
            DocumentKind::classify(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            DocumentKind::Index
        );
        assert_eq!(
            DocumentKind::classify(Some(DOCKER_MANIFEST), br#"{"schemaVersion":2,"config":{}}"#).unwrap(),
            DocumentKind::Manifest
        );
        assert_eq!(DocumentKind::classify(None, br#"{"schemaVersion":1}"#).unwrap(), DocumentKind::Schema1);
        assert!(DocumentKind::classify(None, b"nope").is_err());
    }
}
