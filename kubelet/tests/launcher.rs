//! The launcher on its own (the real kubelet binary's `__launcher`): it forks helpers
//! with the stdio it is handed and the command line they would have had exec'd, reports
//! how each ended, kills one whose handle is dropped when asked to, refuses what is not
//! a helper, and is started again after it dies.
//! Needs no root: the helper used is a pause process that makes no namespace.

use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use kubelet::runtime::launcher::{self, LaunchError, Launcher};
use tokio::io::AsyncBufReadExt as _;

fn launcher() -> Launcher {
    Launcher::new(testkit::binary_path("kubelet").expect("build the kubelet first: cargo build -p kubelet"))
}

/// A pause process holding no namespace: it says "ok" and waits for a signal.
async fn pause(launcher: &Launcher, name: &str) -> Result<(launcher::Helper, String), LaunchError> {
    let (said, write) = launcher::output_pipe().unwrap();
    let stdio = [launcher::null().unwrap(), write, launcher::kubelet_stderr().unwrap()];
    let helper = launcher.spawn(&["__pause", "", "unused", name], stdio).await?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), tokio::io::BufReader::new(said).read_line(&mut line))
        .await
        .expect("the pause process answers")
        .unwrap();
    Ok((helper, line))
}

fn command_line(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// The launcher process: the parent of a helper it forked.
fn parent(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn helpers_are_forked_with_their_stdio_and_command_line_and_their_exits_reported() {
    let launcher = launcher();
    let mut children = Children(Vec::new());
    let (mut helper, said) = pause(&launcher, "pod-a").await.unwrap();
    children.0.push(helper.pid);
    assert_eq!(said, "ok\n", "the helper's stdout is the pipe handed over");
    let args = command_line(helper.pid);
    assert_eq!(&args[1..], ["__pause", "unused", "pod-a"], "{args:?}");
    assert!(args[0].ends_with("kubelet"), "{args:?}");
    let launcher_pid = parent(helper.pid);
    assert!(command_line(launcher_pid).contains(&"__launcher".to_string()));
    // In a process group of its own, as the exec'd helpers were.
    assert_eq!(nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(helper.pid))).unwrap().as_raw(), helper.pid);

    // A second helper comes from the same launcher.
    let (mut other, _) = pause(&launcher, "pod-b").await.unwrap();
    children.0.push(other.pid);
    assert_eq!(parent(other.pid), launcher_pid);

    let pid = helper.pid;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), helper.wait()).await.expect("the exit is reported");
    assert_eq!(status.and_then(|s| s.signal()), Some(15), "{status:?}");
    assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "reaped by the launcher");

    // One killed on drop dies with its handle (through its pidfd), and is reaped.
    let (doomed, _) = pause(&launcher, "pod-d").await.unwrap();
    let doomed_pid = doomed.pid;
    children.0.push(doomed_pid);
    drop(doomed.kill_on_drop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(format!("/proc/{doomed_pid}")).is_ok() {
        assert!(std::time::Instant::now() < deadline, "a helper dropped with kill_on_drop lives on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Anything but a helper is refused, and the launcher goes on serving.
    let stdio = [launcher::null().unwrap(), launcher::null().unwrap(), launcher::null().unwrap()];
    let refused = launcher.spawn(&["__launcher"], stdio).await;
    assert!(matches!(refused, Err(LaunchError::Fork(nix::errno::Errno::EINVAL))), "{:?}", refused.err());

    // A dead launcher is replaced; helpers it forked live on.
    let orphan = other.pid;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), other.wait()).await.unwrap();
    assert_eq!(status, None, "no exit can be reported for a helper whose launcher died");
    let (again, said) = pause(&launcher, "pod-c").await.unwrap();
    assert_eq!(said, "ok\n");
    children.0.push(again.pid);
    assert_ne!(parent(again.pid), launcher_pid, "a new launcher");
    assert_eq!(command_line(orphan)[2..], ["unused", "pod-b"], "pod-b's pause process outlived its launcher");
}

/// Kills the helpers a test made, also when it fails.
struct Children(Vec<i32>);

impl Drop for Children {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
