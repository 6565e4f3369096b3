//! One pull: which endpoint and credentials serve a reference, then manifest (through
//! an index to linux/amd64), config and the layer blobs the store lacks, each verified.

use super::Inner;
use super::RegistryAuth;
use super::digest::Digest;
use super::http::Url;
use super::layout::Layout;
use super::oci::{self, Compression, ConfigFile, Descriptor, DocumentKind, Index, Manifest};
use super::reference::{DOCKER_HUB, Reference};
use super::registry::{Credentials, Endpoint, RegistryClient};

/// Docker Hub's API host.
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// A registry as written in settings or a .dockerconfigjson (`https://index.docker.io/v1/`)
/// in the form references use (`docker.io`).
pub fn normalize_registry(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).unwrap_or(text);
    let host = text.split('/').next().unwrap_or(text);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// The base URL for a mirror written as `host:port` or with a scheme.
pub fn mirror_url(mirror: &str, insecure: bool) -> Result<Url, String> {
    let text = if mirror.starts_with("http://") || mirror.starts_with("https://") {
        mirror.to_string()
    } else {
        format!("{}://{mirror}", if insecure { "http" } else { "https" })
    };
    let url = Url::parse(&text)?;
    Ok(Url { path_and_query: "/".into(), ..url })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn endpoint_for(inner: &Inner, registry: &str) -> Result<Endpoint, String> {
    let settings = inner.registries.registries.iter().find(|h| normalize_registry(&h.host) == registry);
    let tls = inner.tls.get(registry).cloned().unwrap_or_else(|| inner.default_tls.clone());
    let base = match settings {
        Some(settings) => {
            let target = settings.mirror.clone().unwrap_or_else(|| {
                if registry == DOCKER_HUB { DOCKER_HUB_ENDPOINT.to_string() } else { registry.to_string() }
            });
            mirror_url(&target, settings.insecure)?
        }
        None => {
            let target = if registry == DOCKER_HUB { DOCKER_HUB_ENDPOINT } else { registry };
            let url = mirror_url(target, false)?;
            if is_loopback(&url.host) { mirror_url(target, true)? } else { url }
        }
    };
    Ok(Endpoint { registry: registry.to_string(), base, tls })
}

pub fn credentials_for(reference: &Reference, auth: &[RegistryAuth]) -> Option<Credentials> {
    auth.iter()
        .find(|a| normalize_registry(&a.registry) == reference.registry)
        .map(|a| Credentials { username: a.username.clone(), password: a.password.clone() })
}

/// Fetches what the store lacks of `reference` and returns the descriptor of its
/// (platform) manifest, whose blobs are then all in the store.
pub async fn pull(
    layout: &Layout,
    reference: &Reference,
    endpoint: Endpoint,
    credentials: Option<Credentials>,
) -> Result<Descriptor, String> {
    let mut client = RegistryClient::new(endpoint, &reference.repository, credentials);
    let mut document = client.manifest(&reference.manifest_reference()).await?;
    if let Some(pinned) = &reference.digest
        && &document.digest != pinned
    {
        return Err(format!(
            "the registry's manifest has digest {}, not the {pinned} the image reference pins",
            document.digest
        ));
    }
    let mut kind = DocumentKind::classify(document.content_type.as_deref(), &document.bytes)?;
    // An index may (rarely) point at another index; follow a few levels.
    for _ in 0..3 {
        if kind != DocumentKind::Index {
            break;
        }
        let index: Index =
            serde_json::from_slice(&document.bytes).map_err(|e| format!("the image index is malformed: {e}"))?;
        let chosen = oci::pick_platform(&index)?.clone();
        let digest = Digest::parse(&chosen.digest).map_err(|e| format!("the image index: {e}"))?;
        document = client.manifest(digest.as_str()).await?;
        if document.digest != digest {
            return Err(format!(
                "the manifest for linux/amd64 has digest {}, not the {digest} its index names",
                document.digest
            ));
        }
        kind = DocumentKind::classify(document.content_type.as_deref(), &document.bytes)?;
    }
    match kind {
        DocumentKind::Manifest => {}
        DocumentKind::Schema1 => {
            return Err("the registry serves this image only as a Docker schema 1 manifest, which is not supported: push it again with a current client".into());
        }
        DocumentKind::Index => return Err("image indexes are nested too deeply".into()),
    }
    let manifest: Manifest =
        serde_json::from_slice(&document.bytes).map_err(|e| format!("the image manifest is malformed: {e}"))?;
    let media_type = manifest.media_type.clone().unwrap_or_else(|| {
        document.content_type.as_deref().filter(|c| *c == oci::DOCKER_MANIFEST).unwrap_or(oci::OCI_MANIFEST).to_string()
    });
    layout.write_blob(&document.bytes, Some(&document.digest)).map_err(|e| format!("storing the manifest: {e}"))?;

    let config_digest = Digest::parse(&manifest.config.digest).map_err(|e| format!("the manifest's config: {e}"))?;
    if !layout.has_blob(&config_digest) {
        client.blob(layout, &config_digest, manifest.config.size).await?;
    }
    let config_bytes = layout.read_blob(&config_digest).map_err(|e| format!("the image config: {e}"))?;
    let config: ConfigFile =
        serde_json::from_slice(&config_bytes).map_err(|e| format!("the image config is malformed: {e}"))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(format!(
            "the manifest lists {} layers but the config {} diff_ids",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        ));
    }
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        if Compression::of_layer(&layer.media_type).is_none() {
            return Err(format!(
                "layer {} has media type {:?}; only tar and tar+gzip layers are supported",
                layer.digest, layer.media_type
            ));
        }
        let digest = Digest::parse(&layer.digest).map_err(|e| format!("a layer of the manifest: {e}"))?;
        let diff_id = Digest::parse(diff_id).map_err(|e| format!("a diff_id of the config: {e}"))?;
        // An unpacked layer (from another image) needs no download.
        if !layout.has_layer(&diff_id) && !layout.has_blob(&digest) {
            client.blob(layout, &digest, layer.size).await?;
        }
    }
    Ok(Descriptor {
        media_type,
        digest: document.digest.to_string(),
        size: document.bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
        urls: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_normalize_as_in_references() {
        assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_registry("mydocker.io:5000"), "mydocker.io:5000");
        assert_eq!(normalize_registry("http://mydocker.io:5000/"), "mydocker.io:5000");
    }

    #[test]
    fn mirrors_take_a_scheme_from_insecure() {
        assert_eq!(mirror_url("127.0.0.1:5000", true).unwrap().to_string(), "http://127.0.0.1:5000/");
        assert_eq!(mirror_url("mirror.example", false).unwrap().to_string(), "https://mirror.example/");
        assert_eq!(mirror_url("https://m:8443", true).unwrap().to_string(), "https://m:8443/");
        assert!(mirror_url("a:b:c", true).is_err());
    }
}
