//! The dummy interface (`rudder-svc`) that holds every ClusterIP in userspace mode,
//! so kube-proxy can bind its listeners to them (a bridge without ports where the
//! kernel has no dummy interfaces). Driven through the `ip` tool.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

pub const DEFAULT_NAME: &str = "rudder-svc";

#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("cannot run ip: {0} (install Debian's iproute2 package, and run kube-proxy as root)")]
    Spawn(std::io::Error),
    #[error("`ip {command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

pub struct ServiceInterface {
    name: String,
    /// The addresses the interface holds.
    addresses: BTreeSet<Ipv4Addr>,
}

async fn ip(args: &[&str], input: Option<String>) -> Result<String, InterfaceError> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(InterfaceError::Spawn)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await.map_err(InterfaceError::Spawn)?;
    }
    let output = child.wait_with_output().await.map_err(InterfaceError::Spawn)?;
    if !output.status.success() {
        return Err(InterfaceError::Failed {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl ServiceInterface {
    /// Creates the interface (or adopts it from an earlier run) and brings it up.
    pub async fn ensure(name: &str) -> Result<ServiceInterface, InterfaceError> {
        if ip(&["link", "show", "dev", name], None).await.is_err() {
            // Kernels without the dummy module get a bridge without ports: it holds
            // local addresses just as well and forwards nothing.
            if let Err(e) = ip(&["link", "add", name, "type", "dummy"], None).await {
                tracing::info!(error = %e, "no dummy interfaces here; using a bridge without ports");
                ip(&["link", "add", name, "type", "bridge"], None).await?;
            }
        }
        ip(&["link", "set", name, "up"], None).await?;
        let listing = ip(&["-4", "-o", "addr", "show", "dev", name], None).await?;
        // Lines read "3: rudder-svc    inet 10.96.0.10/32 scope global rudder-svc ...".
        let addresses = listing
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace().skip_while(|w| *w != "inet");
                words.nth(1)?.split('/').next()?.parse().ok()
            })
            .collect();
        Ok(ServiceInterface { name: name.to_string(), addresses })
    }

    /// Makes the interface hold exactly `wanted`.
    pub async fn set_addresses(&mut self, wanted: &BTreeSet<Ipv4Addr>) -> Result<(), InterfaceError> {
        let mut batch = String::new();
        for gone in self.addresses.difference(wanted) {
            batch.push_str(&format!("addr del {gone}/32 dev {}\n", self.name));
        }
        for new in wanted.difference(&self.addresses) {
            batch.push_str(&format!("addr add {new}/32 dev {}\n", self.name));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let result = ip(&["-batch", "-"], Some(batch)).await;
        // After a failure the interface's state is partly unknown: reread it.
        if result.is_err() {
            if let Ok(reread) = ServiceInterface::ensure(&self.name).await {
                self.addresses = reread.addresses;
            }
        } else {
            self.addresses = wanted.clone();
        }
        result.map(|_| ())
    }

    /// Removes the interface and with it every address (--cleanup, shutdown).
    pub async fn remove(name: &str) -> Result<(), InterfaceError> {
        if ip(&["link", "show", "dev", name], None).await.is_err() {
            return Ok(());
        }
        ip(&["link", "del", name], None).await.map(|_| ())
    }
}
