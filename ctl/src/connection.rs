//! Which server and namespace a command talks to: flags over the kubeconfig context.

use anyhow::{Context, Result};
use client::Client;
use client::kubeconfig::Kubeconfig;

use crate::cli::Global;

pub struct Connection {
    pub client: Client,
    /// The namespace of -n, else the context's, else "default".
    pub namespace: String,
}

pub fn connect(global: &Global) -> Result<Connection> {
    let (server, context_namespace) = match &global.server {
        Some(server) => (server.clone(), "default".to_string()),
        None => {
            let path = Kubeconfig::locate(global.kubeconfig.as_deref()).context(
                "no kubeconfig: pass --kubeconfig or --server, or set $KUBECONFIG (deploy/local-up.sh writes one)",
            )?;
            if !path.exists() {
                anyhow::bail!(
                    "kubeconfig {} does not exist: pass --kubeconfig or --server, or set $KUBECONFIG",
                    path.display()
                );
            }
            let config = Kubeconfig::load(&path)?;
            let resolved = config.resolve(global.context.as_deref())?;
            if resolved.cluster.server.starts_with("https://") {
                anyhow::bail!("context \"{}\": https servers are not supported by this build", resolved.context);
            }
            (resolved.cluster.server, resolved.namespace)
        }
    };
    let namespace = global.namespace.clone().unwrap_or(context_namespace);
    let client = Client::new(&server, &namespace).with_context(|| format!("server address {server:?}"))?;
    Ok(Connection { client, namespace })
}
