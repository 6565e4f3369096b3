//! A real OCI registry (Debian's `docker-registry`, distribution 2.8) on a free
//! loopback port, its storage in a temporary directory, for image pull tests; and
//! pushing OCI archives into it with `skopeo`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::daemon::Daemon;
use crate::ports::free_port;
use crate::{Error, Result};

const PROGRAM: &str = "/usr/bin/docker-registry";
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct Registry {
    daemon: Daemon,
    port: u16,
    _dir: TempDir,
}

impl Registry {
    /// Starts a registry on 127.0.0.1:<free port> over plain HTTP.
    pub async fn start() -> Result<Registry> {
        let dir = tempfile::Builder::new().prefix("rudder-registry-").tempdir()?;
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )?;
        let log = dir.path().join("registry.log");
        let args = vec!["serve".to_string(), config.display().to_string()];
        let daemon = Daemon::spawn("docker-registry", Path::new(PROGRAM), &args, &log)?;
        let mut registry = Registry { daemon, port, _dir: dir };
        registry.wait_ready().await?;
        Ok(registry)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT".
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.daemon.log_tail()
    }

    /// Pushes the image named `reference` inside the OCI archive `archive` as
    /// `repository:tag` (`skopeo copy oci-archive:... docker://...`).
    pub fn push(&self, archive: &Path, reference: &str, repository_and_tag: &str) -> Result<()> {
        let source = format!("oci-archive:{}:{reference}", archive.display());
        let destination = format!("docker://{}/{repository_and_tag}", self.address());
        let output = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", &source, &destination])
            .output()
            .map_err(|source| Error::Spawn { program: "skopeo".into(), source })?;
        if !output.status.success() {
            return Err(Error::Io(std::io::Error::other(format!(
                "skopeo copy {source} {destination}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))));
        }
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(error) = self.daemon.exited_error() {
                return Err(error);
            }
            if let Ok((200, _)) = crate::http_get(&self.address(), "/v2/").await {
                return Ok(());
            }
            if started.elapsed() > READY_WITHIN {
                return Err(self.daemon.not_ready_error(started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
