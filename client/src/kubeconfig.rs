//! kubeconfig files in kubectl's format: clusters, users, contexts and the current
//! context, found through `--kubeconfig`, `$KUBECONFIG` or `~/.kube/config`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid kubeconfig: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no kubeconfig found: pass --kubeconfig, set $KUBECONFIG, create ~/.kube/config, or pass --server")]
    NotFound,
    #[error("context \"{0}\" is not in the kubeconfig (`ctl config get-contexts` lists them)")]
    NoContext(String),
    #[error("the kubeconfig has no current context: run `ctl config use-context NAME`")]
    NoCurrentContext,
    #[error("cluster \"{0}\" named by the context is not in the kubeconfig")]
    NoCluster(String),
    #[error("user \"{0}\" named by the context is not in the kubeconfig")]
    NoUser(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The settings one context resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub context: String,
    pub cluster: Cluster,
    pub user: User,
    /// The context's namespace, "default" when it names none.
    pub namespace: String,
}

impl Kubeconfig {
    /// The file to use: the explicit path, else the first path in $KUBECONFIG, else
    /// ~/.kube/config.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(path) = explicit {
            return Some(path.to_path_buf());
        }
        if let Ok(paths) = std::env::var("KUBECONFIG")
            && let Some(first) = std::env::split_paths(&paths).find(|p| !p.as_os_str().is_empty())
        {
            return Some(first);
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube").join("config"))
    }

    pub fn load(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KubeconfigError::Read { path: path.to_path_buf(), source })?;
        serde_yaml::from_str(&text)
            .map_err(|e| KubeconfigError::Parse { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Writes the file whole through a temporary file, so a crash never leaves half
    /// a kubeconfig.
    pub fn save(&self, path: &Path) -> Result<(), KubeconfigError> {
        let text = serde_yaml::to_string(self)
            .map_err(|e| KubeconfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let write = |p: &Path| -> std::io::Result<()> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, text.as_bytes())?;
            std::fs::rename(&tmp, p)
        };
        write(path).map_err(|source| KubeconfigError::Write { path: path.to_path_buf(), source })
    }

    /// Resolves `context` (default: the current context).
    pub fn resolve(&self, context: Option<&str>) -> Result<Resolved, KubeconfigError> {
        let name = match context {
            Some(name) => name.to_string(),
            None if self.current_context.is_empty() => {
                return Err(KubeconfigError::NoCurrentContext);
            }
            None => self.current_context.clone(),
        };
        let ctx =
            self.contexts.iter().find(|c| c.name == name).ok_or_else(|| KubeconfigError::NoContext(name.clone()))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| KubeconfigError::NoCluster(ctx.context.cluster.clone()))?;
        let user = if ctx.context.user.is_empty() {
            User::default()
        } else {
            self.users
                .iter()
                .find(|u| u.name == ctx.context.user)
                .map(|u| u.user.clone())
                .ok_or_else(|| KubeconfigError::NoUser(ctx.context.user.clone()))?
        };
        let namespace =
            if ctx.context.namespace.is_empty() { "default".to_string() } else { ctx.context.namespace.clone() };
        Ok(Resolved { context: name, cluster: cluster.cluster.clone(), user, namespace })
    }

    /// A kubeconfig with one cluster, user and context, as bring-up scripts write.
    pub fn single(name: &str, server: &str) -> Kubeconfig {
        Kubeconfig {
            api_version: "v1".to_string(),
            kind: "Config".to_string(),
            clusters: vec![NamedCluster {
                name: name.to_string(),
                cluster: Cluster { server: server.to_string(), ..Default::default() },
            }],
            contexts: vec![NamedContext {
                name: name.to_string(),
                context: Context { cluster: name.to_string(), user: "admin".to_string(), namespace: String::new() },
            }],
            users: vec![NamedUser { name: "admin".to_string(), user: User::default() }],
            current_context: name.to_string(),
            preferences: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: http://127.0.0.1:6443
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: Zm9v
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: dev}
- name: prod
  context: {cluster: prod, user: ops}
current-context: local
users:
- name: admin
  user: {}
- name: ops
  user: {token: secret}
"#;

    #[test]
    fn resolves_contexts() {
        let config: Kubeconfig = serde_yaml::from_str(SAMPLE).unwrap();
        let local = config.resolve(None).unwrap();
        assert_eq!(local.cluster.server, "http://127.0.0.1:6443");
        assert_eq!(local.namespace, "dev");
        let prod = config.resolve(Some("prod")).unwrap();
        assert_eq!(prod.namespace, "default");
        assert_eq!(prod.user.token.as_deref(), Some("secret"));
        assert!(matches!(config.resolve(Some("nope")), Err(KubeconfigError::NoContext(_))));
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config");
        let config = Kubeconfig::single("local", "http://127.0.0.1:6443");
        config.save(&path).unwrap();
        assert_eq!(Kubeconfig::load(&path).unwrap(), config);
    }
}
