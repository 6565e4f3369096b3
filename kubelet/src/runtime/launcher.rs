//! The launcher: one single-threaded helper process (`kubelet __launcher`, exec'd once
//! per kubelet) that forks the kubelet's helpers (`__pause`, `__container`, `__exec`)
//! when the kubelet asks, instead of the kubelet exec'ing its own binary for each of
//! them. A fork of a small single-threaded process costs a fraction of an exec: no
//! dynamic loading and relocation of a large binary, and none of the CPU-feature probing
//! glibc and libgcc do at every program start (each `cpuid` traps to the hypervisor in
//! a VM). It was the largest cost of a helper's start (measured by bench pod-startup).
//!
//! The kubelet's multi-threaded process still never forks: the launcher is its only
//! exec'd helper, and forks only itself. A forked helper runs exactly the code an
//! exec'd one would (`helper::dispatch`), with the command line it would have had
//! (so `ps` shows the pod it serves), in its own process group, with the stdin, stdout
//! and stderr the kubelet handed over.
//!
//! Protocol, on a SOCK_SEQPACKET socket that is the launcher's stdin:
//! - kubelet -> launcher: `id (u64 LE) | argv joined by NUL`, with three descriptors
//!   (SCM_RIGHTS) for the helper's stdin, stdout and stderr;
//! - launcher -> kubelet: `S id pid` once forked, with a pidfd of the helper (which the
//!   kubelet signals it through: the launcher reaps it, so its pid alone could name a
//!   later process), `F id errno` when the fork failed, and `X pid status` (the raw wait
//!   status) when a helper it forked has exited.
//!
//! The launcher exits when the kubelet closes its end (the kubelet stopped or died);
//! the helpers run on, as they did when the kubelet exec'd them, and a restarted
//! kubelet finds them through their records and starts a launcher of its own.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::IoSlice;
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, send, sendmsg,
    socketpair,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::helper;

/// The launcher's hidden subcommand.
pub const LAUNCHER: &str = "__launcher";

/// The helpers the launcher forks; anything else is refused.
const LAUNCHED: [&str; 3] = [helper::PAUSE, helper::CONTAINER, helper::EXEC];

/// The longest request: a helper's few arguments are far shorter.
const MAX_REQUEST: usize = 64 * 1024;

/// Room for a helper's command line: the launcher is started with an argument of this
/// many spaces, which its forked helpers overwrite with their own arguments.
const COMMAND_LINE_ROOM: usize = 512;

const SPAWNED: u8 = b'S';
const FAILED: u8 = b'F';
const EXITED: u8 = b'X';

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("starting the launcher process: {0}")]
    Start(std::io::Error),
    #[error("talking to the launcher process: {0}")]
    Io(std::io::Error),
    #[error("the launcher process has exited")]
    Gone,
    #[error("the launcher could not fork: {0}")]
    Fork(nix::errno::Errno),
}

/// A helper the launcher forked.
pub struct Helper {
    pub pid: i32,
    exit: Option<oneshot::Receiver<i32>>,
    /// Names the process even once it has exited and been reaped, so a signal sent
    /// through it can never reach a later process with its pid (the launcher, not the
    /// kubelet, reaps it). None on kernels before 5.3.
    pidfd: Option<OwnedFd>,
    kill_on_drop: bool,
}

impl Helper {
    /// Waits until the helper has exited: its status, or None when the launcher went
    /// away first (the helper may still run; its records tell).
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        let status = self.exit.as_mut()?.await.ok().map(ExitStatus::from_raw);
        self.exit = None;
        self.kill_on_drop = false;
        status
    }

    /// Kills the helper (SIGKILL) if it is dropped before `wait` has seen it exit.
    pub fn kill_on_drop(mut self) -> Helper {
        self.kill_on_drop = true;
        self
    }

    /// Sends SIGKILL; nothing once it has exited.
    pub fn kill(&self) {
        match &self.pidfd {
            Some(pidfd) => {
                // SAFETY: pidfd_send_signal with a pidfd this Helper owns, a valid
                // signal, no siginfo and no flags.
                unsafe {
                    nix::libc::syscall(
                        nix::libc::SYS_pidfd_send_signal,
                        pidfd.as_raw_fd(),
                        nix::libc::SIGKILL,
                        std::ptr::null::<nix::libc::siginfo_t>(),
                        0,
                    )
                };
            }
            None => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.kill_on_drop {
            self.kill();
        }
    }
}

/// The kubelet's side: starts the launcher when first needed (and again if it died).
pub struct Launcher {
    program: PathBuf,
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Launcher {
    /// A launcher that runs `program` (the kubelet binary) with `__launcher`.
    pub fn new(program: PathBuf) -> Launcher {
        Launcher { program, current: tokio::sync::Mutex::new(None) }
    }

    /// Forks the helper `args` (`__pause ...`, `__container DIR`, `__exec ...`) with the
    /// given stdin, stdout and stderr. A request the launcher never got (it had died)
    /// goes to a new launcher; one it got is never sent twice: it may have forked.
    pub async fn spawn(&self, args: &[&str], stdio: [OwnedFd; 3]) -> Result<Helper, LaunchError> {
        let mut retried = false;
        loop {
            let connection = {
                let mut current = self.current.lock().await;
                match current.as_ref().filter(|c| !c.is_closed()) {
                    Some(connection) => connection.clone(),
                    None => {
                        let connection = Connection::start(&self.program)?;
                        *current = Some(connection.clone());
                        connection
                    }
                }
            };
            match connection.spawn(args, &stdio).await {
                Err(Unsent(e)) if !retried => {
                    tracing::debug!(error = %e, "the launcher had gone; asking a new one");
                    connection.close();
                    retried = true;
                }
                Err(Unsent(e)) => return Err(e),
                Ok(sent) => return sent,
            }
        }
    }
}

/// A request that never reached the launcher.
struct Unsent(LaunchError);

/// What the reader hands back: a fork's outcome by request id, an exit by pid.
#[derive(Default)]
struct Pending {
    spawns: HashMap<u64, oneshot::Sender<Result<Helper, nix::errno::Errno>>>,
    exits: HashMap<i32, oneshot::Sender<i32>>,
    closed: bool,
}

struct Connection {
    socket: AsyncFd<OwnedFd>,
    next_id: AtomicU64,
    pending: Mutex<Pending>,
}

impl Connection {
    fn start(program: &std::path::Path) -> Result<Arc<Connection>, LaunchError> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|e| LaunchError::Start(e.into()))?;
        // Only our end is non-blocking: the launcher waits on its own.
        set_nonblocking(&ours).map_err(LaunchError::Start)?;
        let mut process = tokio::process::Command::new(program)
            .arg(LAUNCHER)
            .arg(" ".repeat(COMMAND_LINE_ROOM))
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(LaunchError::Start)?;
        let connection = Arc::new(Connection {
            // SAFETY: an OwnedFd keeps its one descriptor open until dropped with it.
            socket: unsafe { AsyncFd::register(ours) }.map_err(|e| LaunchError::Start(e.into()))?,
            next_id: AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
        });
        let reader = connection.clone();
        tokio::spawn(async move {
            if let Err(e) = reader.read().await {
                tracing::warn!(error = %e, "lost the launcher process; starting another when next needed");
            }
            reader.close();
            // Reaped here; it exits once its socket is closed, if it has not already.
            drop(reader);
            let _ = process.wait().await;
        });
        Ok(connection)
    }

    fn is_closed(&self) -> bool {
        self.pending.lock().map(|p| p.closed).unwrap_or(true)
    }

    /// Marks the connection unusable and fails everyone waiting on it.
    fn close(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.closed = true;
            pending.spawns.clear();
            pending.exits.clear();
        }
    }

    /// Sends one request and waits for its answer; Err when it could not be sent.
    async fn spawn(&self, args: &[&str], stdio: &[OwnedFd; 3]) -> Result<Result<Helper, LaunchError>, Unsent> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tell, told) = oneshot::channel();
        {
            let mut pending = self.pending.lock().map_err(|_| Unsent(LaunchError::Gone))?;
            if pending.closed {
                return Err(Unsent(LaunchError::Gone));
            }
            pending.spawns.insert(id, tell);
        }
        let mut request = id.to_le_bytes().to_vec();
        request.extend_from_slice(args.join("\0").as_bytes());
        let fds: Vec<RawFd> = stdio.iter().map(|fd| fd.as_raw_fd()).collect();
        let sent = loop {
            let mut ready = match self.socket.writable().await {
                Ok(ready) => ready,
                Err(e) => break Err(e),
            };
            let attempt = ready.try_io(|socket| {
                sendmsg::<()>(
                    socket.as_raw_fd(),
                    &[IoSlice::new(&request)],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(std::io::Error::from)
            });
            if let Ok(result) = attempt {
                break result;
            }
        };
        if let Err(e) = sent {
            if let Ok(mut pending) = self.pending.lock() {
                pending.spawns.remove(&id);
            }
            return Err(Unsent(LaunchError::Io(e)));
        }
        Ok(match told.await {
            Ok(Ok(helper)) => Ok(helper),
            Ok(Err(errno)) => Err(LaunchError::Fork(errno)),
            Err(_) => Err(LaunchError::Gone),
        })
    }

    /// Reads the launcher's messages until it goes away.
    async fn read(&self) -> std::io::Result<()> {
        let mut buffer = [0u8; 64];
        loop {
            let mut ready = self.socket.readable().await?;
            let Ok(read) = ready.try_io(|socket| {
                let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
                let mut space = nix::cmsg_space!([RawFd; 1]);
                let received =
                    recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
                Ok((received.bytes, received_fds(&received).into_iter().next()))
            }) else {
                continue;
            };
            match read? {
                (0, _) => return Ok(()),
                (n, pidfd) => self.handle(&buffer[..n], pidfd),
            }
        }
    }

    fn handle(&self, message: &[u8], pidfd: Option<OwnedFd>) {
        let Ok(mut pending) = self.pending.lock() else { return };
        let int = |range: std::ops::Range<usize>| {
            message.get(range).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(i32::from_le_bytes)
        };
        let id = message.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
        match (message.first(), id) {
            (Some(&SPAWNED), Some(id)) => {
                let Some(pid) = int(9..13) else { return };
                // Registered before any later message is read: its exit cannot be missed.
                let (tell, exit) = oneshot::channel();
                pending.exits.insert(pid, tell);
                if let Some(waiter) = pending.spawns.remove(&id) {
                    let _ = waiter.send(Ok(Helper { pid, exit: Some(exit), pidfd, kill_on_drop: false }));
                }
            }
            (Some(&FAILED), Some(id)) => {
                let errno = nix::errno::Errno::from_raw(int(9..13).unwrap_or(0));
                if let Some(waiter) = pending.spawns.remove(&id) {
                    let _ = waiter.send(Err(errno));
                }
            }
            (Some(&EXITED), _) => {
                if let (Some(pid), Some(status)) = (int(1..5), int(5..9))
                    && let Some(tell) = pending.exits.remove(&pid)
                {
                    let _ = tell.send(status);
                }
            }
            _ => tracing::warn!(?message, "the launcher said something unexpected"),
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Descriptors for a helper's stdio: /dev/null.
pub fn null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::options().read(true).write(true).open("/dev/null")?.into())
}

/// Descriptors for a helper's stdio: the kubelet's own stderr.
pub fn kubelet_stderr() -> std::io::Result<OwnedFd> {
    std::io::stderr().as_fd().try_clone_to_owned()
}

/// A pipe for a helper's stdout: the kubelet's reading end and the helper's writing one.
pub fn output_pipe() -> std::io::Result<(tokio::net::unix::pipe::Receiver, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((tokio::net::unix::pipe::Receiver::from_owned_fd(read)?, write))
}

/// The stdio of a helper that answers the kubelet on stdout (pause, container): no
/// input, its stdout a pipe to the kubelet (whose end comes first), the kubelet's stderr.
pub fn answering_stdio() -> std::io::Result<(tokio::net::unix::pipe::Receiver, [OwnedFd; 3])> {
    let (answer, stdout) = output_pipe()?;
    Ok((answer, [null()?, stdout, kubelet_stderr()?]))
}

// The launcher's side, in the `__launcher` process.

/// `kubelet __launcher`: serves the kubelet on stdin until it closes it.
pub fn serve() -> i32 {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};

    // The socket moves off fd 0, which becomes /dev/null.
    // SAFETY: plain fd syscalls on this process's own descriptors; fd 0 is the socket
    // the kubelet gave this process, owned by nothing else here.
    let socket = unsafe {
        let fd = nix::libc::fcntl(0, nix::libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 {
            eprintln!("{LAUNCHER}: no socket on stdin");
            return 2;
        }
        OwnedFd::from_raw_fd(fd)
    };
    if let Ok(null) = null() {
        // SAFETY: as above.
        unsafe { nix::libc::dup2(null.as_raw_fd(), 0) };
    }
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let unblocked = match chld.thread_swap_mask(SigmaskHow::SIG_BLOCK) {
        Ok(previous) => previous,
        Err(e) => {
            eprintln!("{LAUNCHER}: blocking SIGCHLD: {e}");
            return 1;
        }
    };
    let signals = match SignalFd::with_flags(&chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{LAUNCHER}: signalfd: {e}");
            return 1;
        }
    };
    let argv0 = std::env::args_os().next().unwrap_or_default();
    // Every helper forked from here has its arguments where this process has them.
    let arguments = argument_area();
    let mut buffer = vec![0u8; MAX_REQUEST];
    loop {
        let mut polled = [
            nix::libc::pollfd { fd: socket.as_raw_fd(), events: nix::libc::POLLIN, revents: 0 },
            nix::libc::pollfd { fd: signals.as_raw_fd(), events: nix::libc::POLLIN, revents: 0 },
        ];
        // SAFETY: `polled` is a valid array of two pollfd for the call's length.
        if unsafe { nix::libc::poll(polled.as_mut_ptr(), 2, -1) } < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            eprintln!("{LAUNCHER}: poll: {}", nix::errno::Errno::last());
            return 1;
        }
        if polled[1].revents != 0 {
            while let Ok(Some(_)) = signals.read_signal() {}
            report_exits(&socket);
        }
        if polled[0].revents == 0 {
            continue;
        }
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let mut space = nix::cmsg_space!([RawFd; 3]);
        let (length, fds, truncated) =
            match recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(received) => {
                    let fds = received_fds(&received);
                    let truncated = received.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                    (received.bytes, fds, truncated)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("{LAUNCHER}: reading a request: {e}");
                    return 1;
                }
            };
        // The kubelet has gone: so does the launcher (its helpers stay).
        if length == 0 {
            return 0;
        }
        let request = &buffer[..length];
        let Some(id) = request.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else { continue };
        let args: Vec<String> =
            request[8..].split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let stdio: Option<[OwnedFd; 3]> = fds.try_into().ok();
        let (Some(stdio), false, true) =
            (stdio, truncated, args.first().is_some_and(|a| LAUNCHED.contains(&a.as_str())))
        else {
            reply(&socket, FAILED, &id, nix::errno::Errno::EINVAL as i32);
            continue;
        };
        // SAFETY: this process is single-threaded (it is a fresh exec that starts no
        // thread), so the child may do anything the parent could.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // Only what the helper was given: not the launcher's socket or signals.
                // SAFETY: plain fd syscalls; the child never returns to the loop, so
                // these descriptors' owners are never dropped here.
                unsafe {
                    nix::libc::close(socket.as_raw_fd());
                    nix::libc::close(signals.as_raw_fd());
                }
                let _ = unblocked.thread_set_mask();
                let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
                for (target, fd) in stdio.iter().enumerate() {
                    // SAFETY: as above; dup2 onto 0..=2 clears close-on-exec there.
                    unsafe { nix::libc::dup2(fd.as_raw_fd(), target as RawFd) };
                }
                drop(stdio);
                set_command_line(arguments, &argv0, &args);
                helper::dispatch(&args);
                std::process::exit(127);
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(stdio);
                // Opened before the child can be reaped (only this loop reaps), so it
                // names this child and no other.
                // SAFETY: pidfd_open of a pid with no flags returns a new descriptor or -1.
                let pidfd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, child.as_raw(), 0) };
                // SAFETY: a descriptor pidfd_open just made for this process alone.
                let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
                reply_with(&socket, SPAWNED, &id, child.as_raw(), pidfd.as_ref());
            }
            Err(e) => reply(&socket, FAILED, &id, e as i32),
        }
    }
}

fn reply(socket: &OwnedFd, kind: u8, id: &[u8; 8], value: i32) {
    reply_with(socket, kind, id, value, None);
}

/// A reply, with a descriptor passed along when there is one.
fn reply_with(socket: &OwnedFd, kind: u8, id: &[u8; 8], value: i32, fd: Option<&OwnedFd>) {
    let mut message = vec![kind];
    message.extend_from_slice(id);
    message.extend_from_slice(&value.to_le_bytes());
    let fds: Vec<RawFd> = fd.iter().map(|fd| fd.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let _ = sendmsg::<()>(socket.as_raw_fd(), &[IoSlice::new(&message)], control, MsgFlags::MSG_NOSIGNAL, None);
}

/// The descriptors a message carried (SCM_RIGHTS), owned.
fn received_fds(message: &nix::sys::socket::RecvMsg<'_, '_, ()>) -> Vec<OwnedFd> {
    message
        .cmsgs()
        .into_iter()
        .flatten()
        .flat_map(|c| match c {
            // SAFETY: the kernel just installed these descriptors for this process alone.
            ControlMessageOwned::ScmRights(fds) => {
                fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

/// Reaps every helper that has exited and tells the kubelet.
fn report_exits(socket: &OwnedFd) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to an int.
        let pid = unsafe { nix::libc::waitpid(-1, &mut status, nix::libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        let mut message = vec![EXITED];
        message.extend_from_slice(&pid.to_le_bytes());
        message.extend_from_slice(&status.to_le_bytes());
        let _ = send(socket.as_raw_fd(), &message, MsgFlags::MSG_NOSIGNAL);
    }
}

/// Makes /proc/self/cmdline read as if the helper had been exec'd (`kubelet __pause
/// ...`), so `ps` shows which pod each helper serves. The kernel reads the command line
/// from the process's own argument area, which the launcher was given room in (see
/// `COMMAND_LINE_ROOM`): the helper's arguments are written over it, padded with NULs,
/// through /proc/self/mem. A line that does not fit leaves the launcher's own.
fn set_command_line(arguments: Option<(u64, u64)>, argv0: &OsStr, args: &[String]) {
    use std::os::unix::fs::FileExt as _;
    let Some((start, end)) = arguments else { return };
    let mut line = argv0.as_bytes().to_vec();
    line.push(0);
    for arg in args {
        line.extend_from_slice(arg.as_bytes());
        line.push(0);
    }
    let Some(room) = end.checked_sub(start).and_then(|r| usize::try_from(r).ok()) else { return };
    if line.len() > room {
        return;
    }
    line.resize(room, 0);
    if let Ok(memory) = std::fs::File::options().write(true).open("/proc/self/mem") {
        let _ = memory.write_all_at(&line, start);
    }
}

/// Where this process's arguments lie in its memory (fields 48 and 49 of /proc/self/stat).
fn argument_area() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(45);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}
