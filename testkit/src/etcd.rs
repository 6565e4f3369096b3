//! Real etcd members (Debian's `etcd-server`) on free loopback ports, each in its own
//! temporary data directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::Result;
use crate::daemon::Daemon;
use crate::ports::free_port;

const READY_WITHIN: Duration = Duration::from_secs(30);

struct Member {
    daemon: Daemon,
    client_url: String,
}

/// A cluster of `n` etcd members; members can be killed and restarted to test failover.
pub struct EtcdCluster {
    members: Vec<Member>,
    _dir: TempDir,
}

/// A single-member etcd.
pub struct Etcd {
    cluster: EtcdCluster,
}

impl Etcd {
    pub async fn start() -> Result<Etcd> {
        Ok(Etcd { cluster: EtcdCluster::start(1).await? })
    }

    /// The client URLs, for `--etcd-servers`.
    pub fn endpoints(&self) -> Vec<String> {
        self.cluster.endpoints()
    }

    pub async fn client(&self) -> Result<etcd_client::Client> {
        self.cluster.client().await
    }

    /// Kills the member with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.cluster.kill(0);
    }
}

impl EtcdCluster {
    pub async fn start(n: usize) -> Result<EtcdCluster> {
        let dir = tempfile::Builder::new().prefix("rudder-etcd-").tempdir()?;
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut members = Vec::with_capacity(n);
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let data_dir: PathBuf = dir.path().join(format!("m{i}"));
            let args = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial_cluster}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_string(),
                // Timed progress notifications are the only ones etcd 3.4 orders with
                // events; they drive the apiserver's bookmarks.
                "--experimental-watch-progress-notify-interval=5s".to_string(),
                "--logger=zap".to_string(),
                "--log-level=warn".to_string(),
            ];
            let log = dir.path().join(format!("m{i}.log"));
            let daemon = Daemon::spawn(&format!("etcd member m{i}"), std::path::Path::new("etcd"), &args, &log)?;
            members.push(Member { daemon, client_url });
        }
        let mut cluster = EtcdCluster { members, _dir: dir };
        for i in 0..n {
            cluster.wait_ready(i).await?;
        }
        Ok(cluster)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// A client of every member.
    pub async fn client(&self) -> Result<etcd_client::Client> {
        Ok(etcd_client::Client::connect(self.endpoints(), None).await?)
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        self.members[i].daemon.kill();
    }

    /// Starts member `i` again on its old data directory and waits until it serves.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.members[i].daemon.restart()?;
        self.wait_ready(i).await
    }

    /// Waits until member `i` answers a linearizable read, which needs a quorum.
    async fn wait_ready(&mut self, i: usize) -> Result<()> {
        let started = Instant::now();
        let url = self.members[i].client_url.clone();
        loop {
            if let Some(error) = self.members[i].daemon.exited_error() {
                return Err(error);
            }
            let attempt = async {
                let mut client = etcd_client::Client::connect([url.as_str()], None).await?;
                client.get("/readiness-probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                return Ok(());
            }
            if started.elapsed() > READY_WITHIN {
                return Err(self.members[i].daemon.not_ready_error(started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // Kill members before the data directory goes.
        for member in &mut self.members {
            member.daemon.kill();
        }
    }
}
