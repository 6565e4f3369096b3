//! The container runtime behind the `Runtime` trait, so that a CRI runtime can be
//! added later: pod sandboxes (the namespaces a pod's containers share) and
//! containers in them. The native implementation (`native`) uses Linux namespaces,
//! cgroups and overlayfs directly. A runtime knows nothing of the API: the pod workers
//! translate pods into these configs.

pub mod cgroups;
pub mod helper;
pub mod launch;
pub mod launcher;
pub mod logs;
pub mod native;
pub mod privileges;
pub mod process;
pub mod seccomp;
pub mod terminal;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use cgroups::Limits;
pub use launch::Mount;
pub use terminal::{Terminal, TerminalSize};

/// An image ready to run: its layers on disk and its config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSpec {
    pub reference: String,
    /// "sha256:<config digest>".
    pub id: String,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// "K=V".
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    pub pod_uid: String,
    pub hostname: String,
    pub host_network: bool,
    /// hostIPC: the pod's containers share the host's IPC namespace.
    pub host_ipc: bool,
    /// shareProcessNamespace: the pod's containers share one PID namespace.
    pub share_pid: bool,
    pub limits: Limits,
}

/// A running sandbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    pub pod_uid: String,
    /// The process holding the namespaces.
    pub pid: i32,
    /// Its start time, which tells it from a later process with its pid (see
    /// `process`); 0 in the records of older kubelets.
    #[serde(default)]
    pub pid_start: u64,
    pub host_network: bool,
    /// Absent in the records of older kubelets, which refused hostIPC.
    #[serde(default)]
    pub host_ipc: bool,
    /// Absent in the records of older kubelets, which refused shareProcessNamespace.
    #[serde(default)]
    pub share_pid: bool,
}

impl Sandbox {
    /// The namespaces the sandbox's pause process makes: network and hostname unless
    /// the pod uses the host's network, IPC unless the host's IPC, PID when shared.
    pub fn held(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if !self.host_network {
            names.extend(["net", "uts"]);
        }
        if !self.host_ipc {
            names.push("ipc");
        }
        if self.share_pid {
            names.push("pid");
        }
        names
    }

    /// What the pod's containers join, as the files under the pause process's
    /// /proc/PID/ns: its PID namespace is the one it made for its children.
    pub fn joined(&self) -> Vec<String> {
        self.held().into_iter().map(|name| if name == "pid" { launch::SHARED_PID } else { name }.to_string()).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    pub name: String,
    /// 0 for the first run, then one more per restart.
    pub attempt: u32,
    pub image: ImageSpec,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub mounts: Vec<Mount>,
    pub limits: Limits,
    /// stdout and stderr go here.
    pub log_path: PathBuf,
    pub privileges: privileges::Privileges,
    pub termination_message: Option<launch::TerminationMessage>,
    /// hostPID: the container runs in the host's PID namespace.
    pub host_pid: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    Running { started_at: i64 },
    Exited { exit_code: i32, signal: i32, started_at: Option<i64>, finished_at: i64, reason: String, message: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    /// "<pod-uid>_<name>_<attempt>".
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    pub state: ContainerState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub output: Vec<u8>,
}

/// A command running in a container for `exec`, its streams connected to the caller.
pub struct ExecSession {
    /// The command's input; None when the caller sends none (it reads end-of-file).
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// None on a terminal, where everything arrives on stdout.
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub terminal: Option<Terminal>,
    /// Resolves to the exit status (128+N for signal N); dropping it kills the command.
    pub exit: Pin<Box<dyn Future<Output = Result<i32, RuntimeError>> + Send>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("sandbox of pod {pod}: {message}")]
    Sandbox { pod: String, message: String },
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Starts the pod's sandbox (or returns the running one).
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox, RuntimeError>;
    /// The pod's sandbox if it is running.
    async fn sandbox(&self, pod_uid: &str) -> Option<Sandbox>;
    /// Kills every container of the pod and the sandbox, and removes what they left.
    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError>;
    /// Pods the runtime holds anything for (running or not).
    async fn pods(&self) -> Vec<String>;

    async fn start_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String, RuntimeError>;
    /// The pod's containers, every attempt still kept, oldest first.
    async fn containers(&self, pod_uid: &str) -> Vec<ContainerInfo>;
    /// Sends a signal to the container's first process.
    async fn signal(&self, id: &str, signal: nix::sys::signal::Signal) -> Result<(), RuntimeError>;
    /// SIGKILLs every process of the container.
    async fn kill(&self, id: &str) -> Result<(), RuntimeError>;
    /// Runs a command in the container; `timeout` ends it.
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError>;
    /// Starts a command in a running container with its streams handed back, on a
    /// terminal of the given size when `tty` is set.
    async fn exec_session(
        &self,
        id: &str,
        command: &[String],
        stdin: bool,
        tty: Option<TerminalSize>,
    ) -> Result<ExecSession, RuntimeError>;
    /// Removes an exited container's files and cgroup.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
}
