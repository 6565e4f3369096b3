//! The helper processes, run as hidden subcommands of the kubelet binary itself (as
//! `runc init` is): the kubelet's async, multi-threaded process never forks. The
//! single-threaded launcher (`launcher`) forks them, so a helper is single-threaded from
//! its first instruction and forking and setting up namespaces in it is safe.
//!
//! - `__pause NAMESPACES HOSTNAME`: unshares the pod's namespaces (net,ipc,uts, and pid
//!   for shareProcessNamespace, whose init it forks), says "ok" on stdout and sleeps,
//!   holding them for the pod's containers.
//! - `__container DIR`: reads DIR/launch.json, joins the sandbox's namespaces, forks the
//!   container's first process into a new mount namespace on an overlay root (and a PID
//!   namespace of its own, unless hostPID or shareProcessNamespace), and stays as its
//!   monitor, recording `started.json` and then `exited.json` (with the
//!   termination message: the container's file, which the child opens inside the
//!   container and hands over before exec, is read after the exit, when the
//!   container's mounts are gone); what it has to complain of goes to DIR/monitor.log,
//!   made only then.
//! - `__exec DIR [--tty] -- CMD...`: runs a command inside a running container (probes,
//!   preStop, `exec`), in its namespaces and cgroup with its user, env and cwd; with
//!   `--tty` its stdin is a terminal that becomes the command's controlling terminal.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid, fork};

use crate::runtime::launch::{Exited, Launch, Mount, MountKind, Started, TerminationMessage, read_json, write_json};
use crate::runtime::launcher;
use crate::runtime::logs::{LineSplitter, LogWriter, Stream};

pub const PAUSE: &str = "__pause";
/// What the pause process says once its namespaces are made, followed by the pid of
/// the PID namespace's init when it made one.
pub const PAUSE_READY: &str = "ok";
pub const CONTAINER: &str = "__container";
pub const EXEC: &str = "__exec";

/// Runs a helper if `args` (argv without the program) name one; otherwise returns.
pub fn dispatch(args: &[String]) {
    let code = match args.first().map(String::as_str) {
        Some(PAUSE) => pause(&args[1..]),
        Some(CONTAINER) => container(&args[1..]),
        Some(EXEC) => exec(&args[1..]),
        Some(launcher::LAUNCHER) => launcher::serve(),
        _ => return,
    };
    std::process::exit(code);
}

/// The monitor's DIR/monitor.log, set once it knows DIR.
static MONITOR_LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// A complaint of the monitor: appended to DIR/monitor.log (made on the first; most
/// containers never need one), else to stderr.
fn complain(message: &str) {
    let written = MONITOR_LOG.get().is_some_and(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{message}\n").as_bytes()))
            .is_ok()
    });
    if !written {
        eprintln!("{message}");
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn namespace_flag(name: &str) -> Option<CloneFlags> {
    Some(match name {
        "net" => CloneFlags::CLONE_NEWNET,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "pid" | crate::runtime::launch::SHARED_PID => CloneFlags::CLONE_NEWPID,
        "mnt" => CloneFlags::CLONE_NEWNS,
        _ => return None,
    })
}

fn pause(args: &[String]) -> i32 {
    let (Some(namespaces), Some(hostname)) = (args.first(), args.get(1)) else {
        eprintln!("usage: kubelet {PAUSE} net,ipc,uts HOSTNAME");
        return 2;
    };
    let mut flags = CloneFlags::empty();
    for name in namespaces.split(',').filter(|s| !s.is_empty()) {
        match namespace_flag(name) {
            Some(flag) => flags |= flag,
            None => {
                eprintln!("{PAUSE}: unknown namespace {name}");
                return 2;
            }
        }
    }
    if let Err(e) = unshare(flags) {
        eprintln!("{PAUSE}: unshare {namespaces}: {e}");
        return 1;
    }
    if flags.contains(CloneFlags::CLONE_NEWUTS)
        && let Err(e) = nix::unistd::sethostname(hostname)
    {
        eprintln!("{PAUSE}: sethostname {hostname}: {e}");
        return 1;
    }
    // unshare(CLONE_NEWPID) moves only this process's children into the new PID
    // namespace: its first child is the namespace's init and holds it.
    let init = if flags.contains(CloneFlags::CLONE_NEWPID) {
        // SAFETY: this helper is single-threaded from its first instruction.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => hold_pid_namespace(),
            Ok(ForkResult::Parent { child }) => Some(child),
            Err(e) => {
                eprintln!("{PAUSE}: fork of the PID namespace's init: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    let said = match init {
        Some(init) => format!("{PAUSE_READY} {init}\n"),
        None => format!("{PAUSE_READY}\n"),
    };
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(said.as_bytes()).and_then(|()| stdout.flush());
    match init {
        // The sandbox ends with its PID namespace, so that a dead one is seen and made again.
        Some(init) => loop {
            match waitpid(init, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                _ => return 1,
            }
        },
        None => loop {
            nix::unistd::pause();
        },
    }
}

/// PID 1 of a pod's shared PID namespace: the processes orphaned in any of its
/// containers become its children, and with SIGCHLD ignored the kernel reaps them.
fn hold_pid_namespace() -> ! {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGCHLD, nix::sys::signal::SigHandler::SigIgn) };
    loop {
        nix::unistd::pause();
    }
}

/// A message to the parent through the error pipe, then exit: the child's setup failed.
fn fail(pipe: &mut File, what: String) -> ! {
    let _ = pipe.write_all(what.as_bytes());
    // SAFETY: _exit is always safe; it skips atexit handlers that belong to the parent.
    unsafe { nix::libc::_exit(127) }
}

/// What the monitor says on the kubelet's pipe once it has recorded the start.
pub const STARTED: &str = "started";

/// The monitor's stdout is the kubelet's pipe, on which it says `STARTED` once the
/// start is recorded (an end without it: look for exited.json). It is moved off fd 1
/// at once, close-on-exec, so that neither the monitor's later output nor the
/// container's program (which gets its own stdout) holds the kubelet's pipe open.
fn take_notifier() -> Option<File> {
    // SAFETY: plain fd syscalls on this process's own descriptors.
    let fd = unsafe { nix::libc::fcntl(1, nix::libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just made and nothing else owns it.
    let notifier = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: as above.
        unsafe { nix::libc::dup2(null.as_raw_fd(), 1) };
    }
    Some(notifier)
}

fn container(args: &[String]) -> i32 {
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: kubelet {CONTAINER} DIR");
        return 2;
    };
    let notifier = take_notifier();
    let _ = MONITOR_LOG.set(dir.join("monitor.log"));
    let launch: Launch = match read_json(&dir.join("launch.json")) {
        Ok(l) => l,
        Err(e) => {
            complain(&format!("{CONTAINER}: reading {}/launch.json: {e}", dir.display()));
            return 1;
        }
    };
    let record_failure = |message: String| {
        let exited =
            Exited { exit_code: 128, signal: 0, finished_at: now(), start_error: Some(message), message: None };
        let _ = write_json(&launch.exit_file, &exited);
        1
    };
    if let Err(e) = join_namespaces(launch.sandbox_pid, &launch.join) {
        return record_failure(e);
    }
    if launch.own_pid_namespace()
        && let Err(e) = unshare(CloneFlags::CLONE_NEWPID)
    {
        return record_failure(format!("unshare(pid): {e}"));
    }
    let (go_read, go_write) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return record_failure(format!("pipe: {e}")),
    };
    let (err_read, err_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return record_failure(format!("pipe: {e}")),
    };
    // The container's termination message file, opened by the child inside the
    // container and handed over before exec: the monitor reads it after the exit,
    // when the container's mounts are gone.
    let message_socket = match &launch.termination_message {
        None => None,
        Some(_) => {
            let pair = nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::SeqPacket,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            );
            match pair {
                Ok(pair) => Some(pair),
                Err(e) => return record_failure(format!("socketpair: {e}")),
            }
        }
    };
    // The container's stdout and stderr: pipes the monitor copies into the log.
    let output = match &launch.log {
        None => None,
        Some(target) => {
            let writer = match LogWriter::open(&target.path, target.rotation) {
                Ok(w) => w,
                Err(e) => return record_failure(format!("opening the log {}: {e}", target.path.display())),
            };
            let pipes = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .and_then(|out| Ok((out, nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)));
            match pipes {
                Ok((out, err)) => Some((writer, out, err)),
                Err(e) => return record_failure(format!("pipe: {e}")),
            }
        }
    };
    // SAFETY: this helper process is single-threaded (it never starts a thread), so the
    // child may allocate and do anything the parent could.
    match unsafe { fork() } {
        Err(e) => record_failure(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(go_write);
            drop(err_read);
            let message_socket = message_socket.map(|(monitor_end, child_end)| {
                drop(monitor_end);
                child_end
            });
            let mut errors = File::from(err_write);
            if let Some((_, (out_read, out_write), (err_out_read, err_out_write))) = output {
                drop(out_read);
                drop(err_out_read);
                // dup2 clears close-on-exec on the copies: the container gets them as 1 and 2.
                // SAFETY: plain fd syscalls on fds this process owns.
                let ok = unsafe {
                    nix::libc::dup2(out_write.as_raw_fd(), 1) >= 0 && nix::libc::dup2(err_out_write.as_raw_fd(), 2) >= 0
                };
                if !ok {
                    fail(&mut errors, format!("dup2 of the log pipes: {}", std::io::Error::last_os_error()));
                }
            }
            let mut go = File::from(go_read);
            let mut byte = [0u8; 1];
            if go.read(&mut byte).map(|n| n == 0).unwrap_or(true) {
                fail(&mut errors, "the monitor went away before the container started".into());
            }
            match start_in_child(&launch, message_socket.as_ref()) {
                Ok(never) => match never {},
                Err(message) => fail(&mut errors, message),
            }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(go_read);
            drop(err_write);
            let message_socket = message_socket.map(|(monitor_end, child_end)| {
                drop(child_end);
                monitor_end
            });
            let copier = output.map(|(writer, (out_read, out_write), (err_read, err_write))| {
                drop(out_write);
                drop(err_write);
                LogCopier::start(writer, out_read, err_read)
            });
            monitor(&launch, child, go_write, err_read, copier, notifier, message_socket)
        }
    }
}

/// Copies the container's stdout and stderr into its log. Single-threaded: after
/// unshare(CLONE_NEWPID) this process may not start threads, so it polls both pipes.
struct LogCopier {
    writer: LogWriter,
    /// stdout, stderr; None once ended.
    pipes: [(Option<File>, Stream, LineSplitter); 2],
    failed: bool,
}

impl LogCopier {
    fn start(writer: LogWriter, stdout: OwnedFd, stderr: OwnedFd) -> LogCopier {
        LogCopier {
            writer,
            pipes: [
                (Some(File::from(stdout)), Stream::Stdout, LineSplitter::default()),
                (Some(File::from(stderr)), Stream::Stderr, LineSplitter::default()),
            ],
            failed: false,
        }
    }

    fn open(&self) -> bool {
        self.pipes.iter().any(|(p, _, _)| p.is_some())
    }

    /// Waits up to `timeout_ms` for output and copies what came.
    fn pump(&mut self, timeout_ms: i32) {
        let mut fds: Vec<nix::libc::pollfd> = self
            .pipes
            .iter()
            .map(|(p, _, _)| nix::libc::pollfd {
                fd: p.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: nix::libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { nix::libc::poll(fds.as_mut_ptr(), fds.len() as nix::libc::nfds_t, timeout_ms) };
        if n <= 0 {
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let (pipe, stream, splitter) = &mut self.pipes[i];
            let Some(file) = pipe.as_mut() else { continue };
            let read = file.read(&mut buf);
            let writer = &mut self.writer;
            let failed = &mut self.failed;
            let mut write = |partial: bool, content: &[u8]| {
                // A full disk must not block the container: keep draining, say it once.
                if let Err(e) = writer.write(*stream, partial, content)
                    && !*failed
                {
                    *failed = true;
                    complain(&format!("{CONTAINER}: writing the container's log: {e}"));
                }
            };
            match read {
                Ok(0) | Err(_) => {
                    splitter.finish(&mut write);
                    *pipe = None;
                }
                Ok(n) => splitter.push(&buf[..n], &mut write),
            }
        }
    }
}

/// Waits for the container's first process while copying its output. Once that
/// process is gone the kernel kills the rest of its PID namespace, so the pipes close
/// at once; the bound only guards against a writer that escaped it. A container in
/// the host's PID namespace has no such end: what is left in its cgroup (`leftovers`,
/// a cgroup.procs file) is killed here, as containerd's shim does.
fn wait_copying(
    child: nix::unistd::Pid,
    mut copier: Option<LogCopier>,
    leftovers: Option<&Path>,
) -> nix::Result<WaitStatus> {
    let Some(copier) = copier.as_mut() else {
        let status = loop {
            match waitpid(child, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        };
        if let Some(procs) = leftovers {
            kill_leftovers(procs);
        }
        return status;
    };
    let mut exited = None;
    let mut deadline = None;
    loop {
        if exited.is_none() {
            match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
                other => {
                    if let Some(procs) = leftovers {
                        kill_leftovers(procs);
                    }
                    exited = Some(other);
                    deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(5));
                }
            }
        }
        if !copier.open() {
            break;
        }
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            complain(&format!("{CONTAINER}: the container's output did not end; its log may miss the last lines"));
            break;
        }
        copier.pump(200);
    }
    match exited {
        Some(status) => status,
        None => loop {
            match waitpid(child, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other,
            }
        },
    }
}

fn monitor(
    launch: &Launch,
    child: nix::unistd::Pid,
    go: OwnedFd,
    errors: OwnedFd,
    copier: Option<LogCopier>,
    notifier: Option<File>,
    message_socket: Option<OwnedFd>,
) -> i32 {
    let mut setup_error = None;
    for procs in &launch.cgroup_procs {
        if let Err(e) = std::fs::write(procs, child.as_raw().to_string()) {
            setup_error = Some(format!("joining cgroup {}: {e}", procs.display()));
        }
    }
    let monitor_pid = std::process::id() as i32;
    let monitor_start = crate::runtime::process::start_time(monitor_pid).unwrap_or(0);
    let started = Started { pid: child.as_raw(), monitor_pid, monitor_start, started_at: now() };
    if let Err(e) = write_json(&launch.started_file, &started) {
        setup_error.get_or_insert(format!("writing {}: {e}", launch.started_file.display()));
    }
    if let Some(mut notifier) = notifier {
        let _ = writeln!(notifier, "{STARTED}");
    }
    let mut go = File::from(go);
    if setup_error.is_none() {
        let _ = go.write_all(b"g");
    }
    drop(go);
    // The error pipe closes on a successful exec (CLOEXEC) or carries why it failed.
    let mut message = String::new();
    let _ = File::from(errors).read_to_string(&mut message);
    // Sent before the exec that closed the error pipe, or never (then the socket is at its end).
    let message_file = message_socket.and_then(|socket| receive_file(&socket));
    // The log is complete before the exit is recorded: whoever sees the exit (a
    // `logs -f`) has every line on disk.
    let leftovers = (!launch.own_pid_namespace()).then(|| launch.cgroup_procs.first()).flatten();
    let status = wait_copying(child, copier, leftovers.map(PathBuf::as_path));
    let (exit_code, signal) = match status {
        Ok(WaitStatus::Exited(_, code)) => (code, 0),
        Ok(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, sig as i32),
        _ => (255, 0),
    };
    let start_error = setup_error.or((!message.is_empty()).then_some(message));
    let exit_code = if start_error.is_some() { 128 } else { exit_code };
    let message =
        launch.termination_message.as_ref().and_then(|m| termination_message(launch, m, message_file, exit_code));
    let exited = Exited { exit_code, signal, finished_at: now(), start_error, message };
    if let Err(e) = write_json(&launch.exit_file, &exited) {
        complain(&format!("{CONTAINER}: writing {}: {e}", launch.exit_file.display()));
        return 1;
    }
    0
}

/// SIGKILLs every process listed in `procs` until none is left (a few rounds: one
/// may fork while the list is read).
fn kill_leftovers(procs: &Path) {
    for _ in 0..10 {
        let pids: Vec<i32> = std::fs::read_to_string(procs)
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Kubernetes' limits: the file's first 4096 bytes; of the log, 80 lines or 2048 bytes.
const MESSAGE_FILE_BYTES: u64 = 4096;
const MESSAGE_LOG_LINES: usize = 80;
const MESSAGE_LOG_BYTES: usize = 2048;

/// Makes the termination message file inside the container (writable by any user, as
/// Kubernetes makes it) and hands it to the monitor. Best effort: a path that cannot
/// be made (a read-only directory) leaves the container without a message, not failed.
fn share_termination_file(path: &Path, socket: &OwnedFd) {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    // Emptied: what an image left at the path is not this container's message.
    let Ok(file) =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o666).open(path)
    else {
        return;
    };
    // The mode given to open is reduced by the umask.
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
    let fds = [file.as_raw_fd()];
    let _ = nix::sys::socket::sendmsg::<()>(
        socket.as_raw_fd(),
        &[std::io::IoSlice::new(b"m")],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    );
}

fn receive_file(socket: &OwnedFd) -> Option<File> {
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let received = nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let fd = received.cmsgs().ok()?.find_map(|c| match c {
        nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    })?;
    // SAFETY: the kernel just installed this descriptor in this process for us alone.
    Some(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// What the container left in its termination message file, else (if asked and it
/// failed) the tail of its log; None when there is nothing.
fn termination_message(
    launch: &Launch,
    policy: &TerminationMessage,
    file: Option<File>,
    exit_code: i32,
) -> Option<String> {
    let mut text = Vec::new();
    if let Some(file) = file {
        let _ = file.take(MESSAGE_FILE_BYTES).read_to_end(&mut text);
    }
    if text.is_empty()
        && policy.fallback_to_logs
        && exit_code != 0
        && let Some(log) = &launch.log
    {
        text = crate::runtime::logs::tail(&log.path, MESSAGE_LOG_LINES, MESSAGE_LOG_BYTES).unwrap_or_default();
    }
    (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned())
}

fn join_namespaces(pid: i32, names: &[String]) -> Result<(), String> {
    // Open every namespace first: joining the mount namespace changes what /proc is.
    let mut files = Vec::new();
    for name in names {
        let flag = namespace_flag(name).ok_or_else(|| format!("unknown namespace {name}"))?;
        let path = format!("/proc/{pid}/ns/{name}");
        let file = File::open(&path).map_err(|e| format!("opening {path} (is the pod sandbox running?): {e}"))?;
        files.push((name, flag, file));
    }
    for (name, flag, file) in files {
        setns(file.as_fd(), flag).map_err(|e| format!("setns({name}) into process {pid}: {e}"))?;
    }
    Ok(())
}

fn mount_err(what: &str, target: &Path, e: nix::Error) -> String {
    format!("mounting {what} on {}: {e}", target.display())
}

/// Makes sure `path` exists as a directory, or as a file when `file` is set.
fn ensure_target(path: &Path, file: bool) -> Result<(), String> {
    if file {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        if !path.exists() {
            File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        }
        Ok(())
    } else {
        std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))
    }
}

/// `target` (absolute inside the container) under the new root, refusing `..`.
fn under_root(root: &Path, target: &Path) -> Result<PathBuf, String> {
    if target.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("mount target {} must not contain \"..\"", target.display()));
    }
    Ok(root.join(target.strip_prefix("/").unwrap_or(target)))
}

fn start_in_child(launch: &Launch, message_socket: Option<&OwnedFd>) -> Result<std::convert::Infallible, String> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(mnt): {e}"))?;
    // Nothing mounted from here on may leak back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .map_err(|e| format!("making / a slave mount: {e}"))?;
    let root = &launch.rootfs;
    std::fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let lower: Vec<String> = launch.layers.iter().rev().map(|p| p.display().to_string()).collect();
    if lower.is_empty() {
        return Err("the image has no layers".into());
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        launch.upper_dir.display(),
        launch.work_dir.display()
    );
    mount(Some("overlay"), root, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
        .map_err(|e| mount_err("the overlay root", root, e))?;

    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = root.join("proc");
    ensure_target(&proc_dir, false)?;
    mount(Some("proc"), &proc_dir, Some("proc"), nosuid, None::<&str>).map_err(|e| mount_err("proc", &proc_dir, e))?;
    let sys = root.join("sys");
    ensure_target(&sys, false)?;
    mount(Some("sysfs"), &sys, Some("sysfs"), nosuid | MsFlags::MS_RDONLY, None::<&str>)
        .map_err(|e| mount_err("sysfs", &sys, e))?;
    let dev = root.join("dev");
    ensure_target(&dev, false)?;
    mount(Some("tmpfs"), &dev, Some("tmpfs"), MsFlags::MS_NOSUID, Some("mode=755,size=65536k"))
        .map_err(|e| mount_err("tmpfs", &dev, e))?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        ensure_target(&target, true)?;
        let source = Path::new("/dev").join(name);
        mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| mount_err(&source.display().to_string(), &target, e))?;
    }
    let pts = dev.join("pts");
    ensure_target(&pts, false)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| mount_err("devpts", &pts, e))?;
    let shm = dev.join("shm");
    ensure_target(&shm, false)?;
    mount(Some("shm"), &shm, Some("tmpfs"), nosuid, Some("mode=1777,size=65536k"))
        .map_err(|e| mount_err("tmpfs", &shm, e))?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(to, dev.join(link));
    }
    for m in &launch.mounts {
        mount_one(root, m)?;
    }

    // pivot_root with the old root stacked under the new one, then detached.
    nix::unistd::chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root {}: {e}", root.display()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    // After the volumes are mounted (the path may be in one), before the root is sealed.
    if let (Some(message), Some(socket)) = (&launch.termination_message, message_socket) {
        share_termination_file(&message.path, socket);
    }

    let program = resolve_program(&launch.argv, &launch.env)?;
    let cwd = if launch.cwd.is_empty() { "/" } else { launch.cwd.as_str() };
    std::fs::create_dir_all(cwd).map_err(|e| format!("creating the working directory {cwd}: {e}"))?;
    if let Some(privileges) = &launch.privileges {
        privileges.seal_root()?;
        privileges.restrict_capabilities()?;
        privileges.filter_system_calls()?;
    }
    let groups: Vec<Gid> = launch.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(Gid::from_raw(launch.gid)).map_err(|e| format!("setgid {}: {e}", launch.gid))?;
    nix::unistd::setuid(Uid::from_raw(launch.uid)).map_err(|e| format!("setuid {}: {e}", launch.uid))?;
    nix::unistd::chdir(cwd).map_err(|e| format!("chdir {cwd}: {e}"))?;
    if let Some(privileges) = &launch.privileges {
        privileges.seal_process()?;
    }
    exec_program(&program, &launch.argv, &launch.env)
}

fn mount_one(root: &Path, m: &Mount) -> Result<(), String> {
    let target = under_root(root, &m.target)?;
    match &m.kind {
        MountKind::Bind => {
            let is_file = std::fs::metadata(&m.source)
                .map(|md| !md.is_dir())
                .map_err(|e| format!("volume source {} for {}: {e}", m.source.display(), m.target.display()))?;
            ensure_target(&target, is_file)?;
            mount(Some(&m.source), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| mount_err(&m.source.display().to_string(), &target, e))?;
            if m.read_only {
                mount(
                    None::<&str>,
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(|e| mount_err("a read-only remount", &target, e))?;
            }
        }
        MountKind::Tmpfs(options) => {
            ensure_target(&target, false)?;
            let flags = if m.read_only { MsFlags::MS_RDONLY } else { MsFlags::empty() };
            mount(Some("tmpfs"), &target, Some("tmpfs"), flags, Some(options.as_str()))
                .map_err(|e| mount_err("tmpfs", &target, e))?;
        }
    }
    Ok(())
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// argv[0] as a path: itself if it has a slash, else found on the container's PATH.
fn resolve_program(argv: &[String], env: &[String]) -> Result<PathBuf, String> {
    let first = argv.first().ok_or("no command: the container and its image give neither command nor entrypoint")?;
    if first.contains('/') {
        return Ok(PathBuf::from(first));
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(first);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() && candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!("exec: \"{first}\": executable file not found in $PATH ({path})"))
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, String> {
    items.iter().map(|s| CString::new(s.as_str()).map_err(|_| format!("{s:?} contains a NUL byte"))).collect()
}

fn exec_program(program: &Path, argv: &[String], env: &[String]) -> Result<std::convert::Infallible, String> {
    let path =
        CString::new(program.as_os_str().as_encoded_bytes()).map_err(|_| "program path has a NUL".to_string())?;
    let argv = cstrings(argv)?;
    let env = cstrings(env)?;
    default_signals();
    nix::unistd::execve(&path, &argv, &env).map_err(|e| format!("exec {}: {e}", program.display()))
}

/// Every signal at its default action and none blocked, as runc starts a container's
/// program: an ignored signal and the signal mask survive exec, and a helper, as every
/// Rust program, ignores SIGPIPE (a pipeline such as `cat file | head` in the container
/// would see write errors instead of ending quietly).
fn default_signals() {
    for signal in (1..32).chain(nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX()) {
        if signal != nix::libc::SIGKILL && signal != nix::libc::SIGSTOP {
            // SAFETY: resets a disposition to SIG_DFL, which installs no handler.
            unsafe { nix::libc::signal(signal, nix::libc::SIG_DFL) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// The command ends when its exec helper does: the kubelet kills the helper of a probe
/// past its timeout or of an exec session whose client went away, and the command must
/// not live on in the container (containerd kills such an exec's process). Set last,
/// since a change of user clears it. The helper is outside the container's PID
/// namespace, so the command sees its parent as pid 0 until the helper is gone.
fn end_with_this_helper() {
    let parent = nix::unistd::getppid();
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is involved.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL as nix::libc::c_ulong, 0, 0, 0) };
    if nix::unistd::getppid() != parent {
        // SAFETY: see `fail`.
        unsafe { nix::libc::_exit(137) }
    }
}

fn exec(args: &[String]) -> i32 {
    let tty = args.get(1).is_some_and(|a| a == "--tty");
    let skip = if tty { 2 } else { 1 };
    let (Some(dir), Some("--")) = (args.first(), args.get(skip).map(String::as_str)) else {
        eprintln!("usage: kubelet {EXEC} DIR [--tty] -- COMMAND...");
        return 2;
    };
    let command = &args[skip + 1..];
    let dir = Path::new(dir);
    let (launch, started): (Launch, Started) =
        match (read_json(&dir.join("launch.json")), read_json(&dir.join("started.json"))) {
            (Ok(l), Ok(s)) => (l, s),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{EXEC}: the container in {} is not running: {e}", dir.display());
                return 126;
            }
        };
    // The monitor records the start while the container's first process is still
    // setting up its root; joining it then would see a half-made mount namespace.
    // Wait (briefly) until it runs the container's program instead of this binary.
    let own = std::fs::read_link("/proc/self/exe").ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while own.is_some()
        && std::fs::read_link(format!("/proc/{}/exe", started.pid)).ok() == own
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for procs in &launch.cgroup_procs {
        let _ = std::fs::write(procs, std::process::id().to_string());
    }
    let names: Vec<String> = ["ipc", "uts", "net", "pid", "mnt"].iter().map(|s| s.to_string()).collect();
    if let Err(e) = join_namespaces(started.pid, &names) {
        eprintln!("{EXEC}: {e}");
        return 126;
    }
    // SAFETY: single-threaded helper; see `container`.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("{EXEC}: fork: {e}");
            126
        }
        Ok(ForkResult::Child) => {
            let result = (|| {
                let mut env = launch.env.clone();
                if tty {
                    // The terminal on stdin becomes the command's controlling terminal,
                    // so ^C and job control reach it.
                    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
                    // SAFETY: TIOCSCTTY takes an int argument; fd 0 is the terminal.
                    if unsafe { nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) } < 0 {
                        return Err(format!("making the terminal controlling: {}", std::io::Error::last_os_error()));
                    }
                    if !env.iter().any(|e| e.starts_with("TERM=")) {
                        env.push("TERM=xterm".into());
                    }
                }
                let program = resolve_program(command, &env)?;
                // An exec'd process is held to the container's own privileges.
                if let Some(privileges) = &launch.privileges {
                    privileges.restrict_capabilities()?;
                    privileges.filter_system_calls()?;
                }
                let groups: Vec<Gid> = launch.groups.iter().map(|g| Gid::from_raw(*g)).collect();
                nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
                nix::unistd::setgid(Gid::from_raw(launch.gid)).map_err(|e| format!("setgid: {e}"))?;
                nix::unistd::setuid(Uid::from_raw(launch.uid)).map_err(|e| format!("setuid: {e}"))?;
                if let Some(privileges) = &launch.privileges {
                    privileges.seal_process()?;
                }
                let cwd = if launch.cwd.is_empty() { "/" } else { launch.cwd.as_str() };
                let _ = nix::unistd::chdir(cwd);
                end_with_this_helper();
                exec_program(&program, command, &env)
            })();
            let Err(message) = result;
            eprintln!("{message}");
            // SAFETY: see `fail`.
            unsafe { nix::libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                _ => return 126,
            }
        },
    }
}
