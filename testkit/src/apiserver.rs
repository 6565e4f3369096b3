//! The real apiserver binary on free loopback ports.

use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Result;
use crate::daemon::{Daemon, binary_path};
use crate::ports::free_port;

const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct ApiServer {
    daemon: Daemon,
    grpc_port: u16,
    http_port: u16,
    _dir: TempDir,
}

impl ApiServer {
    pub async fn start(etcd_endpoints: &[String]) -> Result<ApiServer> {
        Self::start_with(etcd_endpoints, &[]).await
    }

    /// Starts the apiserver with extra flags (`--service-cluster-ip-range=...`).
    pub async fn start_with(etcd_endpoints: &[String], extra: &[&str]) -> Result<ApiServer> {
        let dir = tempfile::Builder::new().prefix("rudder-apiserver-").tempdir()?;
        let (grpc_port, http_port) = (free_port(), free_port());
        // A prefix of its own, so servers sharing an etcd in one test never meet.
        let prefix = format!("/registry-{grpc_port}");
        let mut args = vec![
            format!("--etcd-servers={}", etcd_endpoints.join(",")),
            format!("--etcd-prefix={prefix}"),
            format!("--listen-address=127.0.0.1:{grpc_port}"),
            format!("--http-address=127.0.0.1:{http_port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let log = dir.path().join("apiserver.log");
        let daemon = Daemon::spawn("apiserver", &binary_path("apiserver")?, &args, &log)?;
        let mut server = ApiServer { daemon, grpc_port, http_port, _dir: dir };
        server.wait_ready().await?;
        Ok(server)
    }

    /// "http://127.0.0.1:PORT", for clients.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// "127.0.0.1:PORT" of /healthz, /readyz and /metrics.
    pub fn http_address(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.daemon.log_path()).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// SIGTERM and wait; the exit status shows whether shutdown was clean.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon.terminate(Duration::from_secs(10))
    }

    /// Stops the server (SIGTERM) and starts it again on the same ports and flags.
    pub async fn restart(&mut self) -> Result<()> {
        self.terminate();
        self.daemon.restart()?;
        self.wait_ready().await
    }

    /// GETs a path on the HTTP port and returns (status code, body).
    pub async fn http_get(&self, path: &str) -> Result<(u16, String)> {
        http_get(&self.http_address(), path).await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(error) = self.daemon.exited_error() {
                return Err(error);
            }
            if let Ok((200, _)) = self.http_get("/readyz").await {
                return Ok(());
            }
            if started.elapsed() > READY_WITHIN {
                return Err(self.daemon.not_ready_error(started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A minimal HTTP/1.0 GET, enough for health endpoints and /metrics.
pub async fn http_get(address: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}
