//! What the kubelet hands its helper process to start one container: everything the
//! helper needs, resolved to host paths and plain values, written as JSON into the
//! container's state directory. The helper reads nothing else.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum MountKind {
    /// A bind mount of a host file or directory.
    Bind,
    /// A fresh tmpfs with these mount options ("size=64m").
    Tmpfs(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    pub kind: MountKind,
    pub source: PathBuf,
    /// Inside the container.
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Launch {
    /// The pause process whose namespaces the container joins.
    pub sandbox_pid: i32,
    /// Which of its namespaces: "net", "ipc", "uts".
    pub join: Vec<String>,
    /// Image layers, bottom first.
    pub layers: Vec<PathBuf>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    pub rootfs: PathBuf,
    pub mounts: Vec<Mount>,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The cgroup.procs files the container's first process is written to.
    pub cgroup_procs: Vec<PathBuf>,
    /// Written once the container's first process runs: `Started`.
    pub started_file: PathBuf,
    /// Written when it exits: `Exited`.
    pub exit_file: PathBuf,
    /// Where the container's stdout and stderr go, as a CRI-format log the monitor
    /// writes and rotates; absent (launches of older kubelets): the monitor's own.
    #[serde(default)]
    pub log: Option<LogTarget>,
    /// Capabilities, no_new_privs and a read-only root; absent (launches of older
    /// kubelets): every capability, as those ran.
    #[serde(default)]
    pub privileges: Option<super::privileges::Privileges>,
    /// What the kubelet keeps about the container (the helper ignores it), here rather
    /// than in a file of its own: one inode less per container start. Absent
    /// (launches of older kubelets): in meta.json beside this file.
    #[serde(default)]
    pub meta: Option<Meta>,
    /// Where the container may leave a message on exit (terminationMessagePath); absent:
    /// none is read (launches of older kubelets, or no path).
    #[serde(default)]
    pub termination_message: Option<TerminationMessage>,
    /// hostPID: no PID namespace of its own. Without one (also under
    /// shareProcessNamespace), when its first process exits the monitor kills what it
    /// left: no namespace's end does it.
    #[serde(default)]
    pub host_pid: bool,
}

/// How `join` names the pod's shared PID namespace (shareProcessNamespace): the file
/// under the pause process's /proc/PID/ns for the namespace it made for its children.
pub const SHARED_PID: &str = "pid_for_children";

impl Launch {
    /// Whether the container has a PID namespace of its own: not with hostPID, nor
    /// when it joins the pod's shared one (shareProcessNamespace).
    pub fn own_pid_namespace(&self) -> bool {
        !self.host_pid && !self.join.iter().any(|name| name == SHARED_PID)
    }
}

/// The container's termination message: a file it writes, read back by the monitor
/// once it exits, the tail of its log in its place if asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TerminationMessage {
    /// Inside the container.
    pub path: PathBuf,
    /// terminationMessagePolicy FallbackToLogsOnError: an empty file and a failed
    /// container give the log's tail.
    pub fallback_to_logs: bool,
}

/// The kubelet's own record of a container: its identity, image and cgroup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    pub cgroup: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogTarget {
    pub path: PathBuf,
    pub rotation: super::logs::Rotation,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    /// The container's first process, as the host sees it.
    pub pid: i32,
    /// The helper (monitor) process.
    pub monitor_pid: i32,
    /// Its start time (see `process`); 0 in the records of older kubelets.
    #[serde(default)]
    pub monitor_start: u64,
    /// Unix seconds.
    pub started_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exited {
    pub exit_code: i32,
    /// The signal that ended it, 0 if none.
    pub signal: i32,
    pub finished_at: i64,
    /// Why it could not start (exec failed, a mount failed), if it never ran.
    pub start_error: Option<String>,
    /// The container's termination message, if it left one.
    #[serde(default)]
    pub message: Option<String>,
}

/// Writes JSON to `path` atomically (temporary file, then rename).
pub fn write_json<T: Serialize>(path: &std::path::Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> std::io::Result<T> {
    let text = std::fs::read(path)?;
    serde_json::from_slice(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
