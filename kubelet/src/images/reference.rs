//! Image references parsed and normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`; the first path component is a registry only when
//! it has a `.` or a `:` or is `localhost`; a tag, a `@sha256:` digest, or both.

use std::fmt;

use super::digest::Digest;

/// The registry Docker's short names resolve to.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (and port) as written, `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path within the registry, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses `image`; the error says what is wrong with it.
    pub fn parse(image: &str) -> Result<Reference, String> {
        let bad = |why: &str| Err(format!("invalid image reference {image:?}: {why}"));
        if image.is_empty() {
            return bad("it is empty");
        }
        if image.trim() != image || image.chars().any(char::is_whitespace) {
            return bad("it contains whitespace");
        }
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => match Digest::parse(digest) {
                Ok(digest) => (rest, Some(digest)),
                Err(why) => return bad(&why),
            },
            None => (image, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return bad(&format!(
                "tag {tag:?} must be 1-128 characters of letters, digits, '_', '.' or '-', not starting with '.' or '-'"
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if !valid_host(&registry) {
            return bad(&format!("registry {registry:?} is not a host name with an optional :port"));
        }
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty() {
            return bad("the repository name is empty");
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return bad(&format!("repository name {repository:?} must be lowercase"));
        }
        for component in repository.split('/') {
            if !valid_path_component(component) {
                return bad(&format!(
                    "path component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
                ));
            }
        }
        if registry.len() + 1 + repository.len() > 255 {
            return bad("the repository name is longer than 255 characters");
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one
    /// (it pins the content), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_path_component(component: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(image: &str) -> String {
        Reference::parse(image).unwrap().to_string()
    }

    #[test]
    fn short_names_resolve_to_docker_hub_library() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("rudder/busybox:test"), "docker.io/rudder/busybox:test");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
    }

    #[test]
    fn registries_with_ports_and_digests() {
        let r = Reference::parse("mydocker.io:5000/zhidan-server:0.1").unwrap();
        assert_eq!(r.registry, "mydocker.io:5000");
        assert_eq!(r.repository, "zhidan-server");
        assert_eq!(r.tag.as_deref(), Some("0.1"));
        assert_eq!(norm("localhost/a/b"), "localhost/a/b:latest");
        assert_eq!(norm("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(norm(&format!("busybox:1@{d}")), format!("docker.io/library/busybox:1@{d}"));
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let err = |s: &str| Reference::parse(s).unwrap_err();
        assert!(err("").contains("empty"));
        assert!(err("Busybox").contains("must be lowercase"));
        assert!(err("busybox:").contains("tag"));
        assert!(err("busybox:-x").contains("tag"));
        assert!(err("busybox@sha256:xyz").contains("64 lowercase hex"));
        assert!(err("busybox@md5:abc").contains("only sha256"));
        assert!(err("a b").contains("whitespace"));
        assert!(err("my..host:5000/x").contains("registry"));
        assert!(err("foo/-bar").contains("path component"));
        assert!(err("host:5000/").contains("empty"));
    }
}
