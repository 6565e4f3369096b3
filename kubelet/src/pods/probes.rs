//! Startup, liveness and readiness probes of one pod's containers: exec (through the
//! runtime), tcpSocket and httpGet (from the node to the pod's address), with initial
//! delay, period, timeout and success/failure thresholds. Results are read by the pod
//! worker, which is poked when one changes.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::core::v1::{Container, Probe};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::runtime::Runtime;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeState {
    /// The startup probe has succeeded (or there is none).
    pub started: bool,
    /// The readiness probe's verdict (true when there is none).
    pub ready: bool,
    /// Set when liveness (or startup) failed past its threshold: why.
    pub failed: Option<String>,
}

type Results = Arc<Mutex<HashMap<String, ProbeState>>>;

pub struct Prober {
    results: Results,
    tasks: HashMap<String, JoinHandle<()>>,
    poke: mpsc::UnboundedSender<()>,
}

fn lock(results: &Results) -> std::sync::MutexGuard<'_, HashMap<String, ProbeState>> {
    results.lock().unwrap_or_else(|p| p.into_inner())
}

impl Prober {
    pub fn new(poke: mpsc::UnboundedSender<()>) -> Self {
        Prober { results: Arc::default(), tasks: HashMap::new(), poke }
    }

    /// Starts probing container `id` unless it already is.
    pub fn start(&mut self, id: &str, container: &Container, ip: Ipv4Addr, runtime: Arc<dyn Runtime>) {
        if self.tasks.contains_key(id) {
            return;
        }
        let initial = ProbeState {
            started: container.startup_probe.is_none(),
            ready: container.readiness_probe.is_none(),
            failed: None,
        };
        lock(&self.results).insert(id.to_string(), initial);
        let run = Run {
            id: id.to_string(),
            container: container.clone(),
            ip,
            runtime,
            results: self.results.clone(),
            poke: self.poke.clone(),
        };
        self.tasks.insert(id.to_string(), tokio::spawn(run.all()));
    }

    pub fn state(&self, id: &str) -> ProbeState {
        lock(&self.results).get(id).cloned().unwrap_or_default()
    }

    /// Stops probing `id` and forgets its results.
    pub fn stop(&mut self, id: &str) {
        if let Some(task) = self.tasks.remove(id) {
            task.abort();
        }
        lock(&self.results).remove(id);
    }

    pub fn stop_all(&mut self) {
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.stop(&id);
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[derive(Clone)]
struct Run {
    id: String,
    container: Container,
    ip: Ipv4Addr,
    runtime: Arc<dyn Runtime>,
    results: Results,
    poke: mpsc::UnboundedSender<()>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

fn seconds(value: i32, default: u64) -> Duration {
    Duration::from_secs(if value > 0 { value as u64 } else { default })
}

impl Run {
    fn update(&self, change: impl FnOnce(&mut ProbeState)) {
        let mut results = lock(&self.results);
        if let Some(state) = results.get_mut(&self.id) {
            let before = state.clone();
            change(state);
            if *state != before {
                let _ = self.poke.send(());
            }
        }
    }

    async fn all(self) {
        if let Some(probe) = self.container.startup_probe.clone()
            && !self.clone().probe(Kind::Startup, probe).await
        {
            return;
        }
        // Both in this task, so aborting it stops both.
        let liveness = self.container.liveness_probe.clone();
        let readiness = self.container.readiness_probe.clone();
        let live = async {
            if let Some(probe) = liveness {
                self.clone().probe(Kind::Liveness, probe).await;
            }
        };
        let ready = async {
            if let Some(probe) = readiness {
                self.clone().probe(Kind::Readiness, probe).await;
            }
        };
        tokio::join!(live, ready);
    }

    /// Runs one probe; returns true when a startup probe succeeded.
    async fn probe(self, kind: Kind, probe: Probe) -> bool {
        tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.max(0) as u64)).await;
        let period = seconds(probe.period_seconds, 10);
        let timeout = seconds(probe.timeout_seconds, 1);
        let success_threshold = probe.success_threshold.max(1) as u32;
        let failure_threshold = if probe.failure_threshold > 0 { probe.failure_threshold as u32 } else { 3 };
        let (mut successes, mut failures) = (0u32, 0u32);
        loop {
            let result = match tokio::time::timeout(timeout, self.check(&probe, timeout)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timeout after {timeout:?}")),
            };
            match result {
                Ok(()) => {
                    failures = 0;
                    successes += 1;
                    if successes >= success_threshold || kind != Kind::Readiness {
                        match kind {
                            Kind::Startup => {
                                self.update(|s| s.started = true);
                                return true;
                            }
                            Kind::Readiness => self.update(|s| s.ready = true),
                            Kind::Liveness => {}
                        }
                    }
                }
                Err(why) => {
                    successes = 0;
                    failures += 1;
                    tracing::debug!(container = %self.id, why, "probe failed");
                    if failures >= failure_threshold {
                        match kind {
                            Kind::Readiness => self.update(|s| s.ready = false),
                            Kind::Liveness | Kind::Startup => {
                                let what = if kind == Kind::Startup { "Startup" } else { "Liveness" };
                                let message = format!("{what} probe failed: {why}");
                                self.update(|s| s.failed = Some(message));
                                return false;
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    fn port(&self, port: &Option<proto::meta::v1::IntOrString>) -> Result<u16, String> {
        let port = port.as_ref().ok_or("the probe names no port")?;
        if let Some(n) = port.as_int() {
            return u16::try_from(n).map_err(|_| format!("port {n} is out of range"));
        }
        let name = port.as_str().unwrap_or_default();
        self.container
            .ports
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("the container has no port named {name:?}"))
    }

    async fn check(&self, probe: &Probe, timeout: Duration) -> Result<(), String> {
        if let Some(exec) = &probe.exec {
            let result = self.runtime.exec(&self.id, &exec.command, timeout).await.map_err(|e| e.to_string())?;
            return if result.exit_code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "command exited with {}: {}",
                    result.exit_code,
                    String::from_utf8_lossy(&result.output).trim()
                ))
            };
        }
        if let Some(tcp) = &probe.tcp_socket {
            let port = self.port(&tcp.port)?;
            let host = if tcp.host.is_empty() { self.ip.to_string() } else { tcp.host.clone() };
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
            return Ok(());
        }
        if let Some(http) = &probe.http_get {
            let port = self.port(&http.port)?;
            if http.scheme.eq_ignore_ascii_case("HTTPS") {
                return Err("HTTPS probes are not supported by this kubelet".into());
            }
            let host = if http.host.is_empty() { self.ip.to_string() } else { http.host.clone() };
            let path = if http.path.is_empty() { "/" } else { http.path.as_str() };
            let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
            let mut request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
            );
            for header in &http.http_headers {
                request.push_str(&format!("{}: {}\r\n", header.name, header.value));
            }
            request.push_str("\r\n");
            stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut head = vec![0u8; 64];
            let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
            let line = String::from_utf8_lossy(&head[..n]);
            let code: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("not an HTTP answer")?;
            return if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            };
        }
        if probe.grpc.is_some() {
            return Err("gRPC probes are not supported by this kubelet".into());
        }
        Err("the probe has no handler (exec, tcpSocket or httpGet)".into())
    }
}
