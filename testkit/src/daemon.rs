//! One child process with its output in a log file, killed when dropped or when the
//! test process dies.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Error, Result};

pub struct Daemon {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `program args...`, appending its stdout and stderr to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Daemon> {
        let mut daemon = Daemon {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            log: log.to_path_buf(),
            child: None,
        };
        daemon.start()?;
        Ok(daemon)
    }

    fn start(&mut self) -> Result<()> {
        let out = File::options().create(true).append(true).open(&self.log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe and allocates nothing.
        unsafe {
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let child =
            command.spawn().map_err(|source| Error::Spawn { program: self.program.display().to_string(), source })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Starts the same command again (after kill or terminate).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.start()
    }

    pub(crate) fn exited_error(&mut self) -> Option<Error> {
        let status = self.exited()?;
        Some(Error::Exited {
            what: self.name.clone(),
            status,
            log: self.log.display().to_string(),
            tail: self.log_tail(),
        })
    }

    pub(crate) fn not_ready_error(&self, waited: Duration) -> Error {
        Error::NotReady { what: self.name.clone(), waited, log: self.log.display().to_string(), tail: self.log_tail() }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The path of one of the workspace's binaries, next to the running test or benchmark
/// (target/<profile>/, or its parent when run from target/<profile>/deps/ or
/// target/<profile>/examples/).
pub fn binary_path(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() { Ok(path) } else { Err(Error::MissingBinary(path)) }
}
