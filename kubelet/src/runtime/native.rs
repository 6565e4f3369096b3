//! The native runtime: a sandbox is a pause process (`kubelet __pause`) holding the
//! pod's net, IPC and UTS namespaces; a container is started by a monitor process
//! (`kubelet __container DIR`) that stays its parent and records its start and exit in
//! DIR. Both are forked by the launcher. All state lives under `<root>/<pod-uid>/`, so a
//! restarted kubelet finds every sandbox and container again (their processes named by
//! pid and start time) and never starts one twice.
//!
//! Each file or directory made on the node's disk costs a pod's start more than
//! anything else the kubelet does (ext4 inode allocation, most of all when many were
//! recently deleted), so a container gets only what it needs: `launch.json` (the
//! helper's input and the kubelet's record), `started.json`, later `exited.json`,
//! and the overlay's `upper` and `work`. `monitor.log` appears only when the monitor
//! has something to say. Two things are shared by every container (names starting
//! with a dot, never a pod uid): `.rootfs`, the empty directory each container's
//! overlay root is mounted on inside its own mount namespace, and `.init-layer`, a
//! read-only top layer with empty /etc/hosts, /etc/resolv.conf and /etc/hostname, so
//! that bind-mounting the pod's files there copies nothing up into the container's
//! upper directory (as Docker's init layer).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::sync::mpsc;

use super::cgroups::Cgroups;
use super::helper;
use super::launch::{Exited, Launch, LogTarget, Meta, Started, read_json, write_json};
use super::launcher::{self, Launcher};
use super::logs::Rotation;
use super::process;
use super::{
    ContainerConfig, ContainerInfo, ContainerState, ExecResult, ExecSession, Runtime, RuntimeError, Sandbox,
    SandboxConfig, Terminal, TerminalSize,
};

const START_WITHIN: Duration = Duration::from_secs(20);

/// The shared mount point of containers' overlay roots, under the runtime's root.
const ROOTFS_MOUNT: &str = ".rootfs";
/// The shared top layer holding the targets of the kubelet's /etc file mounts.
const INIT_LAYER: &str = ".init-layer";
/// The files the init layer holds (empty): the pod's own are bind-mounted on them.
pub const INIT_LAYER_FILES: [&str; 3] = ["etc/hosts", "etc/resolv.conf", "etc/hostname"];

pub struct NativeRuntime {
    root: PathBuf,
    cgroups: Cgroups,
    cgroup_parent: String,
    /// Gets the pod's uid when one of its containers or its sandbox exits.
    exits: mpsc::UnboundedSender<String>,
    log_rotation: Rotation,
    init_layer: PathBuf,
    /// Forks the pause processes and container monitors.
    launcher: Launcher,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { what, source }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl NativeRuntime {
    pub fn new(
        root: &Path,
        cgroups: Cgroups,
        cgroup_parent: &str,
        exits: mpsc::UnboundedSender<String>,
    ) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(root.join(ROOTFS_MOUNT)).map_err(io_err(format!("creating {}", root.display())))?;
        let init_layer = root.join(INIT_LAYER);
        for file in INIT_LAYER_FILES {
            let path = init_layer.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
            }
            if !path.exists() {
                std::fs::write(&path, b"").map_err(io_err(format!("creating {}", path.display())))?;
            }
        }
        let program = std::env::current_exe().map_err(io_err("finding the kubelet binary"))?;
        Ok(NativeRuntime {
            root: root.to_path_buf(),
            cgroups,
            cgroup_parent: cgroup_parent.to_string(),
            launcher: Launcher::new(program),
            exits,
            log_rotation: Rotation::default(),
            init_layer,
        })
    }

    /// When container logs are rotated (--container-log-max-size, --container-log-max-files).
    pub fn with_log_rotation(mut self, rotation: Rotation) -> Self {
        self.log_rotation = rotation;
        self
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    fn pod_cgroup(&self, uid: &str) -> String {
        format!("{}/pod{uid}", self.cgroup_parent)
    }

    fn container_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let (uid, rest) = id
            .split_once('_')
            .ok_or_else(|| RuntimeError::Container { id: id.into(), message: "malformed container id".into() })?;
        Ok(self.pod_dir(uid).join("containers").join(rest))
    }

    fn read_sandbox(&self, uid: &str) -> Option<Sandbox> {
        let sandbox: Sandbox = read_json(&self.pod_dir(uid).join("sandbox.json")).ok()?;
        process::is_recorded(sandbox.pid, sandbox.pid_start, uid).then_some(sandbox)
    }

    /// The kubelet's record of the container in `dir` (meta.json: started by an older kubelet).
    /// Read on every relist, so only the record is decoded, not the whole launch.
    fn meta(dir: &Path) -> Option<Meta> {
        #[derive(serde::Deserialize)]
        struct Record {
            #[serde(default)]
            meta: Option<Meta>,
        }
        match read_json::<Record>(&dir.join("launch.json")).ok()?.meta {
            Some(meta) => Some(meta),
            None => read_json(&dir.join("meta.json")).ok(),
        }
    }

    /// The image's layers with the init layer on top, unless an image layer has an
    /// /etc that is not a directory (a symlink, a whiteout): the init layer's /etc
    /// would hide it, so such a container makes its mount targets in its upper dir.
    fn with_init_layer(&self, layers: &[PathBuf]) -> Vec<PathBuf> {
        let mut layers = layers.to_vec();
        let etc = layers.iter().rev().find_map(|l| std::fs::symlink_metadata(l.join("etc")).ok());
        if etc.is_none_or(|m| m.is_dir()) {
            layers.push(self.init_layer.clone());
        }
        layers
    }

    fn info(&self, uid: &str, dir: &Path) -> Option<ContainerInfo> {
        let meta = Self::meta(dir)?;
        let id = format!("{uid}_{}_{}", meta.name, meta.attempt);
        let started: Option<Started> = read_json(&dir.join("started.json")).ok();
        let exited: Option<Exited> = read_json(&dir.join("exited.json")).ok();
        let dir_text = dir.display().to_string();
        let state = match (started, exited) {
            (_, Some(exited)) => self.exited_state(&meta, exited, read_json::<Started>(&dir.join("started.json")).ok()),
            (Some(started), None) => {
                if process::is_recorded(started.monitor_pid, started.monitor_start, &dir_text) {
                    ContainerState::Running { started_at: started.started_at }
                } else {
                    ContainerState::Exited {
                        exit_code: 137,
                        signal: 0,
                        started_at: Some(started.started_at),
                        finished_at: now(),
                        reason: "ContainerStatusUnknown".into(),
                        message: "the container's monitor process is gone; its exit is unknown".into(),
                    }
                }
            }
            (None, None) => {
                // Launched but never recorded as started: a monitor that died early.
                let age = std::fs::metadata(dir.join("launch.json"))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .unwrap_or_default();
                if age < START_WITHIN {
                    ContainerState::Running { started_at: now() }
                } else {
                    ContainerState::Exited {
                        exit_code: 128,
                        signal: 0,
                        started_at: None,
                        finished_at: now(),
                        reason: "StartError".into(),
                        message: "the container never started".into(),
                    }
                }
            }
        };
        Some(ContainerInfo {
            id,
            name: meta.name,
            attempt: meta.attempt,
            image: meta.image,
            image_id: meta.image_id,
            state,
        })
    }

    fn exited_state(&self, meta: &Meta, exited: Exited, started: Option<Started>) -> ContainerState {
        let left = exited.message.unwrap_or_default();
        let (reason, message) = if let Some(why) = exited.start_error {
            ("StartError".to_string(), why)
        } else if self.cgroups.oom_kills(&meta.cgroup) > 0 {
            ("OOMKilled".to_string(), left)
        } else if exited.exit_code == 0 {
            ("Completed".to_string(), left)
        } else {
            ("Error".to_string(), left)
        };
        ContainerState::Exited {
            exit_code: exited.exit_code,
            signal: exited.signal,
            started_at: started.map(|s| s.started_at),
            finished_at: exited.finished_at,
            reason,
            message,
        }
    }

    async fn wait_gone(pid: i32, start: u64, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !process::is_recorded(pid, start, needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Removes a cgroup once its processes are gone (they die asynchronously).
    async fn remove_cgroup(&self, name: &str) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.cgroups.kill_all(name);
            match self.cgroups.remove(name) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn reap(&self, mut child: launcher::Helper, uid: String) {
        let exits = self.exits.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = exits.send(uid);
        });
    }
}

#[async_trait::async_trait]
impl Runtime for NativeRuntime {
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let uid = &config.pod_uid;
        if let Some(sandbox) = self.read_sandbox(uid) {
            return Ok(sandbox);
        }
        let fail = |message: String| RuntimeError::Sandbox { pod: uid.clone(), message };
        let dir = self.pod_dir(uid);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        self.cgroups.create(&self.pod_cgroup(uid), &config.limits)?;
        let sandbox = Sandbox {
            pod_uid: uid.clone(),
            pid: 0,
            pid_start: 0,
            host_network: config.host_network,
            host_ipc: config.host_ipc,
            share_pid: config.share_pid,
        };
        let namespaces = sandbox.held().join(",");
        let start_err = |e: &dyn std::fmt::Display| fail(format!("starting the pause process: {e}"));
        let (stdout, stdio) = launcher::answering_stdio().map_err(|e| start_err(&e))?;
        let child = self
            .launcher
            .spawn(&[helper::PAUSE, namespaces.as_str(), &config.hostname, uid], stdio)
            .await
            .map_err(|e| start_err(&e))?;
        let pid = child.pid;
        let mut line = String::new();
        let read = tokio::time::timeout(START_WITHIN, tokio::io::BufReader::new(stdout).read_line(&mut line)).await;
        // "ok", or "ok PID" when it forked the init of a shared PID namespace.
        let said = line.trim().strip_prefix(helper::PAUSE_READY).filter(|_| matches!(read, Ok(Ok(_))));
        let Some(init) = said.map(|rest| rest.trim().parse::<i32>().ok()) else {
            child.kill();
            return Err(fail("the pause process did not set up the namespaces (see the kubelet's log)".into()));
        };
        // Read while the pause process certainly lives: it waits for the kubelet.
        let Some(pid_start) = process::start_time(pid) else {
            return Err(fail("the pause process exited after setting up the namespaces".into()));
        };
        let sandbox = Sandbox { pid, pid_start, ..sandbox };
        let procs = self.cgroups.procs_files(&self.pod_cgroup(uid));
        for file in procs {
            for process in std::iter::once(pid).chain(init) {
                std::fs::write(&file, process.to_string()).map_err(io_err(format!("writing {}", file.display())))?;
            }
        }
        write_json(&dir.join("sandbox.json"), &sandbox).map_err(io_err("recording the sandbox"))?;
        self.reap(child, uid.clone());
        Ok(sandbox)
    }

    async fn sandbox(&self, pod_uid: &str) -> Option<Sandbox> {
        self.read_sandbox(pod_uid)
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let dir = self.pod_dir(pod_uid);
        let cgroup = self.pod_cgroup(pod_uid);
        self.cgroups.kill_all(&cgroup);
        if let Ok(sandbox) = read_json::<Sandbox>(&dir.join("sandbox.json"))
            && process::is_recorded(sandbox.pid, sandbox.pid_start, pod_uid)
        {
            let _ = kill(Pid::from_raw(sandbox.pid), Signal::SIGKILL);
            Self::wait_gone(sandbox.pid, sandbox.pid_start, pod_uid, Duration::from_secs(10)).await;
        }
        // Monitors exit once their container has; wait so nothing writes into the dir.
        for info in self.containers(pod_uid).await {
            if let Ok(dir) = self.container_dir(&info.id)
                && let Ok(started) = read_json::<Started>(&dir.join("started.json"))
            {
                let dir_text = dir.display().to_string();
                Self::wait_gone(started.monitor_pid, started.monitor_start, &dir_text, Duration::from_secs(10)).await;
            }
        }
        self.remove_cgroup(&cgroup).await?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::Io { what: format!("removing {}", dir.display()), source: e }),
        }
    }

    async fn pods(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn start_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let uid = &sandbox.pod_uid;
        let id = format!("{uid}_{}_{}", config.name, config.attempt);
        let fail = |message: String| RuntimeError::Container { id: id.clone(), message };
        let dir = self.container_dir(&id)?;
        if dir.join("launch.json").exists() || dir.join("meta.json").exists() {
            return Err(fail("already created".into()));
        }
        for sub in ["upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let cgroup = format!("{}/{}_{}", self.pod_cgroup(uid), config.name, config.attempt);
        self.cgroups.create(&cgroup, &config.limits)?;
        let launch = Launch {
            sandbox_pid: sandbox.pid,
            join: sandbox.joined(),
            layers: self.with_init_layer(&config.image.layers),
            upper_dir: dir.join("upper"),
            work_dir: dir.join("work"),
            // Mounted in the container's own mount namespace only: one directory serves all.
            rootfs: self.root.join(ROOTFS_MOUNT),
            mounts: config.mounts.clone(),
            argv: config.argv.clone(),
            env: config.env.clone(),
            cwd: config.cwd.clone(),
            uid: config.uid,
            gid: config.gid,
            groups: config.groups.clone(),
            cgroup_procs: self.cgroups.procs_files(&cgroup),
            started_file: dir.join("started.json"),
            exit_file: dir.join("exited.json"),
            log: Some(LogTarget { path: config.log_path.clone(), rotation: self.log_rotation }),
            privileges: Some(config.privileges.clone()),
            meta: Some(Meta {
                name: config.name.clone(),
                attempt: config.attempt,
                image: config.image.reference.clone(),
                image_id: config.image.id.clone(),
                cgroup,
            }),
            termination_message: config.termination_message.clone(),
            host_pid: config.host_pid,
        };
        write_json(&dir.join("launch.json"), &launch).map_err(io_err("writing launch.json"))?;
        // The container's output goes to its log through the monitor; the monitor's own
        // complaints (a log it cannot write) to DIR/monitor.log, which it makes only
        // then; anything else (a panic) to the kubelet's stderr, as the pause process's.
        let start_err = |e: &dyn std::fmt::Display| fail(format!("starting the container helper: {e}"));
        let (said, stdio) = launcher::answering_stdio().map_err(|e| start_err(&e))?;
        let dir_text = dir.to_string_lossy();
        let child = self.launcher.spawn(&[helper::CONTAINER, &dir_text], stdio).await.map_err(|e| start_err(&e))?;
        self.reap(child, uid.clone());
        // The helper says when it has recorded the start; it ends without a word when
        // it could not start the container (it recorded why) or died.
        let mut line = String::new();
        let mut said = tokio::io::BufReader::new(said);
        if tokio::time::timeout(START_WITHIN, said.read_line(&mut line)).await.is_err() {
            return Err(fail("the helper did not start the container in time".into()));
        }
        if line.trim() != helper::STARTED && !dir.join("exited.json").exists() {
            return Err(fail(
                "the container helper ended before it started the container (see its monitor.log or the kubelet's log)"
                    .into(),
            ));
        }
        Ok(id)
    }

    async fn containers(&self, pod_uid: &str) -> Vec<ContainerInfo> {
        let dir = self.pod_dir(pod_uid).join("containers");
        let mut infos: Vec<ContainerInfo> = std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().filter_map(|e| self.info(pod_uid, &e.path())).collect())
            .unwrap_or_default();
        infos.sort_by(|a, b| (a.name.as_str(), a.attempt).cmp(&(b.name.as_str(), b.attempt)));
        infos
    }

    async fn signal(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        let Ok(started) = read_json::<Started>(&dir.join("started.json")) else { return Ok(()) };
        if dir.join("exited.json").exists() {
            return Ok(());
        }
        let _ = kill(Pid::from_raw(started.pid), signal);
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        if let Some(meta) = Self::meta(&dir) {
            self.cgroups.kill_all(&meta.cgroup);
        }
        self.signal(id, Signal::SIGKILL).await
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let fail = |message: String| RuntimeError::Container { id: id.into(), message };
        let dir = self.container_dir(id)?.to_string_lossy().into_owned();
        let (mut stdout, stdout_end) = launcher::output_pipe().map_err(|e| fail(format!("exec: {e}")))?;
        let (mut stderr, stderr_end) = launcher::output_pipe().map_err(|e| fail(format!("exec: {e}")))?;
        let null = launcher::null().map_err(|e| fail(format!("exec: {e}")))?;
        let args: Vec<&str> =
            [helper::EXEC, dir.as_str(), "--"].into_iter().chain(command.iter().map(String::as_str)).collect();
        let mut child = self
            .launcher
            .spawn(&args, [null, stdout_end, stderr_end])
            .await
            .map_err(|e| fail(format!("exec: {e}")))?
            .kill_on_drop();
        let run = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (read_out, read_err) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            read_out.and(read_err).map_err(|e| fail(format!("exec: {e}")))?;
            let status = child.wait().await;
            out.extend_from_slice(&err);
            Ok(ExecResult { exit_code: status.and_then(|s| s.code()).unwrap_or(126), output: out })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            // Dropping the helper kills it.
            Err(_) => Err(fail(format!("command timed out after {timeout:?}"))),
        }
    }

    async fn exec_session(
        &self,
        id: &str,
        command: &[String],
        stdin: bool,
        tty: Option<TerminalSize>,
    ) -> Result<ExecSession, RuntimeError> {
        let fail = |message: String| RuntimeError::Container { id: id.into(), message };
        let dir = self.container_dir(id)?;
        if !dir.join("started.json").exists() || dir.join("exited.json").exists() {
            return Err(fail("is not running".into()));
        }
        let dir = dir.to_string_lossy().into_owned();
        let mut args = vec![helper::EXEC, dir.as_str()];
        if tty.is_some() {
            args.push("--tty");
        }
        args.push("--");
        args.extend(command.iter().map(String::as_str));
        let start_err = |e: &dyn std::fmt::Display| fail(format!("starting the exec helper: {e}"));
        let (stdio, session) = match tty {
            Some(size) => {
                let (terminal, slave) = Terminal::open(size).map_err(|e| fail(format!("opening a terminal: {e}")))?;
                let copy = |fd: &std::os::fd::OwnedFd| fd.try_clone().map_err(|e| start_err(&e));
                let stdio = [copy(&slave)?, copy(&slave)?, slave];
                let (reader, writer) = terminal.io().map_err(|e| fail(format!("terminal: {e}")))?;
                let stdin = stdin.then_some(writer);
                (stdio, (stdin, reader, None, Some(terminal)))
            }
            None => {
                let (input, input_end): (Option<Pin<Box<dyn AsyncWrite + Send>>>, _) = if stdin {
                    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| start_err(&e))?;
                    let write = tokio::net::unix::pipe::Sender::from_owned_fd(write).map_err(|e| start_err(&e))?;
                    (Some(Box::pin(write)), read)
                } else {
                    (None, launcher::null().map_err(|e| start_err(&e))?)
                };
                let (stdout, stdout_end) = launcher::output_pipe().map_err(|e| start_err(&e))?;
                let (stderr, stderr_end) = launcher::output_pipe().map_err(|e| start_err(&e))?;
                let stderr = Box::pin(stderr) as Pin<Box<dyn AsyncRead + Send>>;
                ([input_end, stdout_end, stderr_end], (input, Box::pin(stdout) as _, Some(stderr), None))
            }
        };
        // Our copies of the terminal's slave side close here, or the terminal never ends.
        let mut child = self.launcher.spawn(&args, stdio).await.map_err(|e| start_err(&e))?.kill_on_drop();
        let (stdin, stdout, stderr, terminal) = session;
        let id = id.to_string();
        let exit = Box::pin(async move {
            match child.wait().await {
                Some(status) => Ok(status
                    .code()
                    .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s))
                    .unwrap_or(126)),
                None => Err(RuntimeError::Container { id, message: "the exec helper's launcher went away".into() }),
            }
        });
        Ok(ExecSession { stdin, stdout, stderr, terminal, exit })
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id)?;
        if let Some(meta) = Self::meta(&dir) {
            self.remove_cgroup(&meta.cgroup).await?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::Io { what: format!("removing {}", dir.display()), source: e }),
        }
    }
}
