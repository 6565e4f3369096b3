//! Which server and namespace a command talks to: flags over the kubeconfig context.

use std::path::PathBuf;

use anyhow::{Context, Result};
use client::Client;
use client::kubeconfig::Kubeconfig;

use crate::cli::Global;

pub struct Connection {
    pub client: Client,
    /// The namespace of -n, else the context's, else "default".
    pub namespace: String,
    /// Whether -n was given (a manifest's own namespace must then agree with it).
    pub explicit_namespace: bool,
    /// -A: every namespace.
    pub all_namespaces: bool,
}

impl Connection {
    pub fn server(&self) -> &str {
        self.client.server()
    }

    /// The namespace a list of a kind reads: "" for every namespace or a cluster-scoped kind.
    pub fn list_namespace(&self, info: &proto::KindInfo) -> String {
        if !info.namespaced || self.all_namespaces { String::new() } else { self.namespace.clone() }
    }

    /// The namespace an object named on the command line lives in.
    pub fn scoped(&self, info: &proto::KindInfo) -> String {
        if info.namespaced { self.namespace.clone() } else { String::new() }
    }
}

/// The kubeconfig file this invocation reads and writes, and whether it exists.
pub fn kubeconfig_path(global: &Global) -> Result<PathBuf> {
    Kubeconfig::locate(global.kubeconfig.as_deref())
        .context("no kubeconfig: pass --kubeconfig or --server, or set $KUBECONFIG (deploy/local-up.sh writes one)")
}

pub fn load_kubeconfig(global: &Global) -> Result<(PathBuf, Kubeconfig)> {
    let path = kubeconfig_path(global)?;
    if !path.exists() {
        anyhow::bail!(
            "kubeconfig {} does not exist: pass --kubeconfig or --server, or set $KUBECONFIG",
            path.display()
        );
    }
    let config = Kubeconfig::load(&path)?;
    Ok((path, config))
}

pub fn connect(global: &Global) -> Result<Connection> {
    let (server, context_namespace) = match &global.server {
        Some(server) => (server.clone(), "default".to_string()),
        None => {
            let (_, config) = load_kubeconfig(global)?;
            let resolved = config.resolve(global.context.as_deref())?;
            (resolved.cluster.server, resolved.namespace)
        }
    };
    let namespace = global.namespace.clone().unwrap_or(context_namespace);
    // The client's errors name the address.
    let client = Client::new(&server, &namespace)?;
    Ok(Connection {
        client,
        namespace,
        explicit_namespace: global.namespace.is_some(),
        all_namespaces: global.all_namespaces,
    })
}

/// A connection that is never used: for client-side dry runs of generators, which
/// kubectl can do with no cluster configured at all.
pub fn offline(global: &Global) -> Result<Connection> {
    let namespace = global.namespace.clone().unwrap_or_else(|| "default".to_string());
    // Never dialled: the channel connects lazily and nothing is sent.
    let client = Client::new("http://127.0.0.1:1", &namespace).context("building an unused client")?;
    Ok(Connection {
        client,
        namespace,
        explicit_namespace: global.namespace.is_some(),
        all_namespaces: global.all_namespaces,
    })
}
